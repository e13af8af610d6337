//! Detaching: `tmpfsd mount` forks a daemon and returns only when the
//! daemon reports, through a pipe, that the mount answers (or why not).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::anyhow;

use crate::{CliError, Exit};

/// The daemon's end of the readiness pipe.
#[derive(Debug)]
pub(crate) struct Ready {
    pipe: Option<File>,
}

impl Ready {
    /// Tells the waiting parent that the mount answers.
    pub(crate) fn ok(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"ok\n");
        }
    }

    fn fail(&mut self, e: &CliError) {
        if let Some(mut p) = self.pipe.take() {
            let _ = write!(p, "{} {:#}", e.code as u8, e.error);
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    #[cfg(target_os = "linux")]
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // No pipe2 on macOS: the flag is set after, before any thread or child
    // exists that could inherit the descriptors in between.
    // SAFETY: as above.
    #[cfg(not(target_os = "linux"))]
    let r = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe returned two fresh descriptors that we now own.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    for fd in [&ends.0, &ends.1] {
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(ends)
}

/// Points stdin, stdout and stderr at /dev/null (keeping fds 0-2 taken,
/// so that /dev/fuse never lands on them).
fn silence_stdio() -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: both descriptors are valid.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `serve` in a detached child process and waits until it calls
/// [`Ready::ok`] or fails. Must be called while the process has one thread.
pub(crate) fn detach(serve: impl FnOnce(&mut Ready) -> Result<(), CliError>) -> Result<(), CliError> {
    let (rx, tx) = pipe().map_err(|e| anyhow!("cannot create a pipe: {e}"))?;
    // SAFETY: the process is single-threaded here (no runtime, no logging
    // threads yet), so the child may run arbitrary code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(anyhow!("cannot start the daemon: {}", std::io::Error::last_os_error()).into()),
        0 => {
            drop(rx);
            // SAFETY: setsid has no preconditions; it detaches us from the
            // terminal so that its signals do not reach the daemon.
            unsafe { libc::setsid() };
            let mut ready = Ready {
                pipe: Some(File::from(tx)),
            };
            let code = match silence_stdio().map_err(CliError::from).and_then(|()| serve(&mut ready)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{:#}", e.error);
                    let code = e.code as i32;
                    ready.fail(&e);
                    code
                }
            };
            std::process::exit(code);
        }
        _child => {
            // What `serve` owns (the spill directory, say) now belongs to
            // the child: the parent must not run its destructors.
            std::mem::forget(serve);
            drop(tx);
            let mut msg = String::new();
            let _ = File::from(rx).read_to_string(&mut msg);
            if msg.starts_with("ok") {
                return Ok(());
            }
            let (code, text) = msg.split_once(' ').unwrap_or(("1", ""));
            if text.is_empty() {
                return Err(anyhow!("the daemon exited before the mount was ready").into());
            }
            Err(CliError {
                code: if code == "2" { Exit::Usage } else { Exit::Failure },
                error: anyhow!("{text}"),
            })
        }
    }
}
