//! `tmpfsd run [-o OPTS] -- CMD [ARGS...]`: a private mount for one command.
//!
//! The mount is served by this process while CMD runs with TMPDIR, TMP and
//! TEMP pointing at it. When CMD ends, the mount is detached and this
//! process exits, which closes the FUSE connection: processes CMD left
//! behind lose their files (ENOTCONN), and every byte is freed. A first
//! SIGINT, SIGTERM or SIGHUP is passed on to CMD; a second kills it.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context};
use tmpfsd::{sys, MountConfig};

use super::mount::{start, Running};
use crate::{logging, usage, CliError, Exit};

pub(crate) fn run(options: &[String], command: &[OsString], log_level: &str) -> Result<u8, CliError> {
    let config = MountConfig::from_options(options).map_err(usage)?;
    let Some((program, args)) = command.split_first() else {
        return Err(usage("run needs a command: tmpfsd run [-o OPTS] -- CMD [ARGS...]"));
    };
    logging::init(log_level, None)?;
    let dir = super::private_mount_point("tmpfsd-run.")?;
    let result = serve_command(&dir, &config, program, args);
    // Nothing of the mount point survives, whatever happened.
    let _ = std::fs::remove_dir(&dir);
    let code = result?;
    // Exit now: the session threads may still serve processes CMD left
    // behind; exiting closes the connection under them.
    std::process::exit(i32::from(code));
}

fn serve_command(dir: &Path, config: &MountConfig, program: &OsString, args: &[OsString]) -> Result<u8, CliError> {
    let Running {
        fs: _fs,
        background,
        session: _,
        signals,
        spill_dir,
    } = start(dir, config)?;
    let cleanup = || {
        let _ = sys::unmount(dir, true);
        if let Some(p) = &spill_dir {
            // Its files have no names: the directory is empty.
            let _ = std::fs::remove_dir(p);
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(args).envs(tmpfsd_vars(dir));
    // The command must not inherit the termination signals this process
    // blocks (std keeps the signal mask across exec).
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            cleanup();
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => Exit::NotFound,
                _ => Exit::CannotExecute,
            };
            return Err(CliError {
                code,
                error: anyhow!("cannot run {}: {e}", program.to_string_lossy()),
            });
        }
    };
    let pid = child.id() as libc::pid_t;
    std::thread::Builder::new()
        .name("tmpfsd-signals".into())
        .spawn(move || forward_signals(&signals, pid))
        .context("cannot start the signal thread")?;
    let status = child.wait().context("cannot wait for the command")?;
    background.stop();
    cleanup();
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
        _ => 1,
    })
}

fn tmpfsd_vars(dir: &Path) -> [(&'static str, &Path); 3] {
    [("TMPDIR", dir), ("TMP", dir), ("TEMP", dir)]
}

/// Passes the first termination signal on to the command; kills it on the
/// second.
fn forward_signals(set: &libc::sigset_t, pid: libc::pid_t) {
    let mut seen = 0;
    loop {
        let mut sig = 0;
        // SAFETY: set is an initialised signal set, sig a valid out pointer.
        if unsafe { libc::sigwait(set, &mut sig) } != 0 {
            continue;
        }
        seen += 1;
        let send = if seen == 1 { sig } else { libc::SIGKILL };
        tracing::info!(signal = sig, "passing a signal on to the command");
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, send) };
    }
}
