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

/// A fresh 0700 directory named `prefix`… in $XDG_RUNTIME_DIR, else the
/// temp directory: the mount point of a private mount (`run`, `bench`).
pub(crate) fn private_mount_point(prefix: &str) -> Result<std::path::PathBuf, crate::CliError> {
    use anyhow::Context;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .with_context(|| format!("cannot make a mount point in {}", base.display()))?;
    Ok(dir.keep())
}
