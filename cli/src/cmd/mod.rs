//! One module per subcommand.

mod bench;
mod env;
mod mount;
mod run;
mod status;
mod unmount;

use crate::args::{Args, Command};
use crate::CliError;

/// Runs the command; returns the process exit code on success.
pub(crate) fn run(args: Args) -> Result<u8, CliError> {
    crate::logging::check_level(&args.log_level).map_err(crate::usage)?;
    if let Command::Run { options, command } = &args.command {
        return run::run(options, command, &args.log_level);
    }
    let args_level = args.log_level;
    match args.command {
        Command::Mount {
            dir,
            options,
            foreground,
            log_file,
        } => mount::run(&dir, &options, foreground, &args_level, log_file.as_deref()),
        Command::Unmount { dir, lazy } => unmount::run(&dir, lazy),
        Command::Status { dir, json } => status::run(dir.as_deref(), json),
        Command::Env { dir, shell } => env::run(&dir, shell),
        Command::Bench {
            dirs,
            reps,
            quick,
            only,
            options,
            json,
            plot,
        } => {
            let args = bench::BenchArgs {
                dirs,
                reps,
                quick,
                only,
                options,
                json,
                plot,
            };
            bench::run(&args, &args_level)
        }
        Command::Run { .. } => unreachable!("handled above"),
    }
    .map(|()| 0)
}

/// `path` made absolute without touching the file system beyond the
/// current directory (a dead FUSE mount answers ENOTCONN to stat).
pub(crate) fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}
