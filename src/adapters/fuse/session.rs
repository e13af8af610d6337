//! Mounting: the option list and the multi-threaded session.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::ffi::OsStr;

#[cfg(not(target_os = "linux"))]
use fuser::MountOption;
use fuser::{Config, INodeNo, Notifier, Session, SessionACL};

use super::{BusyPoll, FuseFs};
use crate::config::MountConfig;
use crate::core::{Fs, Invalidate, NodeId};

/// The name shown in the mount table: `tmpfsd` as source, `fuse.tmpfsd` as type.
pub const FS_NAME: &str = "tmpfsd";

/// Mounts `fs` at `mountpoint` and returns the session, ready to run: the
/// kernel's INIT has been answered, but requests are served only once the
/// session runs. Root mounts directly; other users go through the setuid
/// `fusermount3` from fuse3 (used when mount(2) is refused). On Linux the
/// mount is made here rather than by fuser, so that the end of the session
/// never unmounts a later mount at the same path (see `mnt`).
///
/// # Errors
/// The mount or the FUSE handshake failed (no /dev/fuse, no fusermount3,
/// a busy or missing mount point, `allow_other` refused).
pub fn mount(fs: Arc<Fs>, mountpoint: &Path, config: &MountConfig) -> io::Result<Session<FuseFs>> {
    let mut fuse_config = Config::default();
    fuse_config.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(worker_threads());
    // One descriptor per thread (FUSE_DEV_IOC_CLONE) needs /dev/fuse to be
    // opened again; the threads share one descriptor where it cannot be.
    fuse_config.clone_fd = cfg!(target_os = "linux")
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok();
    let mut fuse_fs = FuseFs::new(Arc::clone(&fs), config.writeback);
    let poll = (config.busy_poll_us > 0)
        .then(|| Arc::new(BusyPoll::new(Duration::from_micros(u64::from(config.busy_poll_us)))));
    if let Some(p) = &poll {
        fuse_fs = fuse_fs.with_busy_poll(Arc::clone(p));
    }
    #[cfg(target_os = "linux")]
    let session = {
        let dev = super::mnt::mount(mountpoint, config.allow_other)?;
        let fuse_fs = fuse_fs.with_connection(super::mnt::Connection::new(dev.try_clone()?, mountpoint));
        let acl = fuse_config.acl;
        Session::from_fd(fuse_fs, dev, acl, fuse_config)?
    };
    #[cfg(not(target_os = "linux"))]
    let session = {
        fuse_config.mount_options = vec![
            MountOption::FSName(FS_NAME.into()),
            MountOption::Subtype(FS_NAME.into()),
            MountOption::DefaultPermissions,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::RW,
        ];
        Session::new(fuse_fs, mountpoint, &fuse_config)?
    };
    if let Some(p) = poll {
        // The session's own descriptor is the one its last worker reads.
        p.attach(session.as_fd().try_clone_to_owned()?)?;
    }
    fs.set_invalidator(Box::new(KernelCache(session.notifier())));
    Ok(session)
}

/// Reports the core's own removals to the kernel, so that cached entries
/// (kept for an hour) do not outlive them.
struct KernelCache(Notifier);

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelCache")
    }
}

impl Invalidate for KernelCache {
    fn removed(&self, parent: NodeId, child: NodeId, name: &OsStr) {
        // ENOENT only says that the kernel had nothing cached.
        if let Err(e) = self.0.delete(INodeNo(parent.0), INodeNo(child.0), name) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::debug!(error = %e, "cache invalidation failed");
            }
        }
    }
}

/// Event-loop threads: one per core, at least two so that a slow request
/// never stalls every other, and one on platforms where fuser allows no more.
fn worker_threads() -> usize {
    if cfg!(target_os = "linux") {
        std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(2, 16)
    } else {
        1
    }
}
