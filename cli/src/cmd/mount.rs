//! `tmpfsd mount DIR [-o OPTS] [--foreground]`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use tmpfsd::adapters::fuse;
use tmpfsd::core::Background;
use tmpfsd::storage::spill::SpillDir;
use tmpfsd::{sys, Caller, Fs, MountConfig};

use crate::daemon::{self, Ready};
use crate::{logging, usage, CliError};

pub(crate) fn run(
    dir: &Path,
    options: &[String],
    foreground: bool,
    log_level: &str,
    log_file: Option<&Path>,
) -> Result<(), CliError> {
    let config = MountConfig::from_options(options).map_err(usage)?;
    let dir = check_mount_point(dir, config.nonempty)?;
    if foreground {
        logging::init(log_level, log_file)?;
        serve(&dir, &config, None)
    } else {
        daemon::detach(|ready| {
            logging::init(log_level, log_file)?;
            serve(&dir, &config, Some(ready))
        })
    }
}

/// Refuses a mount point that is missing, not a directory, already a mount
/// point, or not empty (unless `nonempty`), with one line that says which.
fn check_mount_point(dir: &Path, nonempty: bool) -> Result<PathBuf, CliError> {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(anyhow!("mount point {shown} does not exist").into())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(anyhow!(
                "mount point {shown} is a dead mount (transport endpoint is not connected); run 'tmpfsd unmount {shown}' first"
            )
            .into())
        }
        Err(e) => return Err(anyhow!("cannot use mount point {shown}: {e}").into()),
    };
    if !meta.is_dir() {
        return Err(anyhow!("mount point {shown} is not a directory").into());
    }
    let dir = std::fs::canonicalize(dir).with_context(|| format!("cannot resolve mount point {shown}"))?;
    if let Some(m) = sys::mount_at(&dir).context("cannot read the mount table")? {
        return Err(anyhow!(
            "{} is already a mount point (of a {} file system)",
            dir.display(),
            m.fs_type
        )
        .into());
    }
    if !nonempty {
        let mut entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list mount point {}", dir.display()))?;
        if entries.next().is_some() {
            return Err(anyhow!(
                "mount point {} is not empty (use -o nonempty to mount over it)",
                dir.display()
            )
            .into());
        }
    }
    Ok(dir)
}

/// Blocks the termination signals in this thread and every thread it
/// starts later; one thread then takes them with sigwait.
pub(crate) fn block_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use; the masks
    // are valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Spilled files hold a descriptor each: use all the descriptors the hard
/// limit allows.
pub(crate) fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A mount being served by this process.
pub(crate) struct Running {
    pub(crate) fs: Arc<Fs>,
    pub(crate) background: Background,
    pub(crate) session: JoinHandle<std::io::Result<()>>,
    /// The termination signals, blocked in every thread of the process.
    pub(crate) signals: libc::sigset_t,
    pub(crate) spill_dir: Option<PathBuf>,
}

/// Everything `mount` and `run` share: the spill directory, the file
/// system and its background threads, the FUSE session on its own thread,
/// and a statfs that proves the mount answers.
pub(crate) fn start(dir: &Path, config: &MountConfig) -> Result<Running, CliError> {
    // Made here, in the serving process, so that the directory carries the
    // pid of the process that owns it (a later mount removes directories of
    // dead pids); for a daemon, an error still reaches the user through the
    // readiness pipe.
    let spill = match &config.spill_dir {
        Some(d) => Some(SpillDir::create(d, config.allow_tmpfs_spill).map_err(|e| anyhow!(e))?),
        None => None,
    };
    let spill_dir = spill.as_ref().map(|s| s.path().to_path_buf());
    // SAFETY: geteuid/getegid have no preconditions.
    let owner = unsafe {
        Caller {
            uid: libc::geteuid(),
            gid: libc::getegid(),
            pid: 0,
        }
    };
    let signals = block_signals();
    raise_fd_limit();
    let fs = Arc::new(Fs::with_spill_dir(config, owner, spill));
    let background = fs.start_background().context("cannot start the background threads")?;
    let session = fuse::mount(Arc::clone(&fs), dir, config).map_err(|e| mount_error(dir, config, &e))?;
    let session = std::thread::Builder::new()
        .name("tmpfsd-session".into())
        .spawn(move || session.run())
        .context("cannot start the session thread")?;
    // The mount is in place; the first request is answered once the
    // session runs. One statfs proves that it does.
    let answered = match sys::fs_type_magic(dir) {
        Ok(magic) if magic == sys::FUSE_SUPER_MAGIC => Ok(()),
        Ok(magic) => Err(anyhow!(
            "{} did not become a FUSE mount (file system type {magic:#x})",
            dir.display()
        )),
        Err(e) => Err(anyhow!("the mount at {} does not answer: {e}", dir.display())),
    };
    if let Err(e) = answered {
        let _ = sys::unmount(dir, true);
        // Seen when an unmount races the start-up: the session has ended
        // or ends now that the mount is gone; waiting for it and the
        // background threads frees the file system and removes its spill
        // directory. A mount still in place (not answering) is left to
        // its lazy unmount rather than waited for.
        if !matches!(sys::fs_type_magic(dir), Ok(m) if m == sys::FUSE_SUPER_MAGIC) {
            let _ = session.join();
            background.stop();
            drop(fs);
        }
        return Err(e.into());
    }
    tracing::info!(dir = %dir.display(), "mounted");
    Ok(Running {
        fs,
        background,
        session,
        signals,
        spill_dir,
    })
}

fn serve(dir: &Path, config: &MountConfig, ready: Option<&mut Ready>) -> Result<(), CliError> {
    let Running {
        fs,
        background,
        session,
        signals,
        ..
    } = start(dir, config)?;
    // Lets `tmpfsd unmount` wait for this process; removed last, once
    // every byte is freed.
    let _record = sys::DaemonRecord::create(dir);
    if let Some(ready) = ready {
        ready.ok();
    }
    let mount_point = dir.to_path_buf();
    std::thread::Builder::new()
        .name("tmpfsd-signals".into())
        .spawn(move || wait_for_signal(&signals, &mount_point))
        .context("cannot start the signal thread")?;
    let ended = session.join();
    // Every byte is freed and the spill directory removed here, before the
    // process exits.
    background.stop();
    drop(fs);
    match ended {
        Ok(Ok(())) => {
            tracing::info!(dir = %dir.display(), "unmounted");
            Ok(())
        }
        Ok(Err(e)) => Err(anyhow!("session at {} ended: {e}", dir.display()).into()),
        Err(_) => Err(anyhow!("session at {} ended by a panic", dir.display()).into()),
    }
}

/// SIGINT, SIGTERM or SIGHUP: unmount, lazily if files are still open, so
/// that the session ends and every byte is freed.
fn wait_for_signal(set: &libc::sigset_t, dir: &Path) {
    loop {
        let mut sig = 0;
        // SAFETY: set is an initialised signal set, sig a valid out pointer.
        if unsafe { libc::sigwait(set, &mut sig) } != 0 {
            continue;
        }
        tracing::info!(signal = sig, "unmounting on signal");
        match sys::unmount(dir, false) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("unmount of {} failed ({e}); detaching lazily", dir.display());
                if let Err(e) = sys::unmount(dir, true) {
                    tracing::error!("lazy unmount of {} failed: {e}", dir.display());
                } else {
                    return;
                }
            }
        }
    }
}

pub(crate) fn mount_error(dir: &Path, config: &MountConfig, e: &io::Error) -> CliError {
    let shown = dir.display();
    let msg = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) if config.allow_other => format!(
            "cannot mount {shown} with allow_other: {e} (non-root users need 'user_allow_other' in /etc/fuse.conf)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) if !dev_fuse_usable() => format!(
            "cannot mount {shown}: /dev/fuse is not readable and writable for this user (fuse3's udev rule gives it mode 0666)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => format!("cannot mount {shown}: {e}"),
        Some(libc::ENODEV) | Some(libc::ENOENT) if !Path::new("/dev/fuse").exists() => {
            format!("cannot mount {shown}: /dev/fuse is missing (load the fuse module)")
        }
        _ if e.kind() == io::ErrorKind::NotFound => {
            format!("cannot mount {shown}: fusermount3 not found (install fuse3 for mounts by non-root users)")
        }
        _ => format!("cannot mount {shown}: {e}"),
    };
    anyhow!(msg).into()
}

fn dev_fuse_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok()
}
