//! `tmpfsd`: mount, unmount and inspect tmpfsd file systems.

mod args;
mod cmd;
mod daemon;
mod logging;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 success, 1 the operation failed, 2 the command line was
/// wrong; `run` passes its command's status through, and uses the shell's
/// 126 (cannot execute) and 127 (not found) when the command cannot start.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exit {
    Failure = 1,
    Usage = 2,
    CannotExecute = 126,
    NotFound = 127,
}

/// An error that already knows its exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: Exit,
    pub(crate) error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        Self {
            code: Exit::Failure,
            error: e.into(),
        }
    }
}

/// A command-line mistake: exit code 2.
pub(crate) fn usage(msg: impl std::fmt::Display) -> CliError {
    CliError {
        code: Exit::Usage,
        error: anyhow::anyhow!("{msg}"),
    }
}

fn main() -> ExitCode {
    let args = match args::Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's report is several lines; keep the one that names the problem.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" names
            // them on the next line.
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first = format!("{first} {next}");
                }
            }
            eprintln!("tmpfsd: {first} (see 'tmpfsd --help')");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    match cmd::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "tmpfsd: {:#}", e.error);
            ExitCode::from(e.code as u8)
        }
    }
}
