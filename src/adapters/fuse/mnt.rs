//! Linux mounting without fuser's unmount-on-exit.
//!
//! fuser 0.18 unmounts its mount point by path when a session ends, and
//! its check that the connection is still mounted is inverted (fixed
//! upstream after 0.18.0, cberner/fuser#703): after an external unmount
//! it unmounts the path again, which removes whatever was mounted there in
//! the meantime. `fusermount3 -u DIR && tmpfsd mount DIR` lost the new
//! mount that way whenever the old daemon took a few milliseconds to wind
//! down. tmpfsd therefore makes the mount itself, hands fuser only the
//! descriptor ([`fuser::Session::from_fd`]), and unmounts only what is
//! still its own: [`Connection::drop`] unmounts when the session ends
//! while the kernel still has the connection, never after an unmount.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::MsFlags;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::FS_NAME;

/// Mounts a FUSE file system at `mountpoint`: mount(2) directly where
/// permitted (root), else through the setuid `fusermount3` from fuse3.
/// Returns the /dev/fuse descriptor of the new connection.
///
/// # Errors
/// /dev/fuse cannot be opened, the mount point is unusable, mount(2)
/// failed for another reason than permissions, or fusermount3 is missing
/// or refused (its message is the error).
pub(super) fn mount(mountpoint: &Path, allow_other: bool) -> io::Result<OwnedFd> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")?;
    let root_mode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid},default_permissions",
        dev.as_raw_fd()
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let fs_type = format!("fuse.{FS_NAME}");
    match nix::mount::mount(
        Some(FS_NAME),
        mountpoint,
        Some(fs_type.as_str()),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(dev.into()),
        Err(nix::errno::Errno::EPERM) => {
            drop(dev);
            fusermount(mountpoint, allow_other)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Mounts through `fusermount3`, which sends the descriptor back over a
/// socket named by `_FUSE_COMMFD` (the protocol libfuse uses).
fn fusermount(mountpoint: &Path, allow_other: bool) -> io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut opts = format!("nosuid,nodev,default_permissions,fsname={FS_NAME},subtype={FS_NAME}");
    if allow_other {
        opts.push_str(",allow_other");
    }
    let theirs_fd: RawFd = theirs.as_raw_fd();
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-o")
        .arg(opts)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls fcntl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().map_err(crate::sys::fusermount3_error)?;
    drop(theirs);
    let received = receive_fd(&ours);
    drop(ours);
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    let status = child.wait()?;
    match received {
        Ok(fd) if status.success() => Ok(fd),
        _ => {
            let msg = stderr.trim().trim_start_matches("fusermount3: ");
            let kind = if msg.contains("user_allow_other") {
                io::ErrorKind::PermissionDenied
            } else {
                io::ErrorKind::Other
            };
            Err(io::Error::new(
                kind,
                if msg.is_empty() {
                    format!("fusermount3 failed ({status})")
                } else {
                    msg.to_string()
                },
            ))
        }
    }
}

/// Receives one descriptor (SCM_RIGHTS) from fusermount3.
fn receive_fd(socket: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => {}
            r => break r?,
        }
    };
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut owned: Vec<OwnedFd> = fds
                .into_iter()
                .filter(|fd| *fd >= 0)
                // SAFETY: the kernel just installed these descriptors in
                // this process; nothing else owns them.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            if !owned.is_empty() {
                return Ok(owned.swap_remove(0));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "fusermount3 sent no descriptor",
    ))
}

/// The mount as tmpfsd owns it: when dropped (the session has ended),
/// unmounts lazily what the session left mounted, which happens only when
/// it ended by an error:
/// - the kernel still has the connection (no POLLERR): the mount is live;
/// - the connection was aborted (fusectl's `abort`), so it answers
///   POLLERR, but the mount at the path is still the one made here (same
///   device) and answers ENOTCONN: a dead mount nobody can use.
///
/// A connection unmounted from outside also answers POLLERR; whatever is
/// mounted at the path by then is someone else's and is left alone (its
/// device number may even be this one's, reused, but it is not dead).
#[derive(Debug)]
pub(super) struct Connection {
    dev: File,
    path: PathBuf,
    /// The mount's device (`major:minor`) right after mounting.
    mount_dev: Option<String>,
}

impl Connection {
    /// Watches the connection of `dev` (a duplicate of the session's
    /// descriptor) mounted at `path`.
    #[must_use]
    pub(super) fn new(dev: OwnedFd, path: &Path) -> Self {
        let mount_dev = crate::sys::mount_at(path).ok().flatten().map(|m| m.dev);
        Self {
            dev: File::from(dev),
            path: path.to_path_buf(),
            mount_dev,
        }
    }

    /// Whether the mount at the path is still the one made here, with its
    /// connection gone (statfs answers ENOTCONN).
    fn is_dead_mount_of_ours(&self) -> bool {
        let Some(ours) = &self.mount_dev else { return false };
        let same = crate::sys::mount_at(&self.path)
            .ok()
            .flatten()
            .is_some_and(|m| &m.dev == ours);
        same && matches!(crate::sys::fs_type_magic(&self.path), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
    }

    /// Whether the kernel still has the connection mounted.
    #[must_use]
    pub(super) fn is_live(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.dev.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd, zero timeout.
            match unsafe { libc::poll(&mut pfd, 1, 0) } {
                0 => return true,
                1 => return pfd.revents & libc::POLLERR == 0,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => return false,
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.is_live() {
            tracing::warn!(dir = %self.path.display(), "session ended while mounted; unmounting");
        } else if self.is_dead_mount_of_ours() {
            tracing::warn!(dir = %self.path.display(), "connection aborted; removing its dead mount");
        } else {
            return;
        }
        if let Err(e) = crate::sys::unmount(&self.path, true) {
            tracing::warn!(dir = %self.path.display(), error = %e, "unmount failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test mounts with mount(2): it needs root"
        );
    }

    /// Unmounts whatever is left at the path, even when a test fails.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            while crate::sys::mount_at(&self.0).ok().flatten().is_some() {
                if crate::sys::unmount(&self.0, true).is_err() {
                    break;
                }
            }
        }
    }

    /// A FUSE connection mounted at a fresh directory with no session
    /// (nothing answers it). Fields drop in order: the descriptor, then
    /// the cleanup, then the directory.
    struct Mounted {
        path: PathBuf,
        fd: OwnedFd,
        _cleanup: Cleanup,
        _dir: tempfile::TempDir,
    }

    fn mounted() -> (Mounted, Connection) {
        root();
        let dir = tempfile::Builder::new().prefix("tmpfsd-mnt.").tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        let cleanup = Cleanup(path.clone());
        let fd = mount(&path, false).expect("mount");
        let conn = Connection::new(fd.try_clone().expect("dup the /dev/fuse descriptor"), &path);
        let m = Mounted {
            path,
            fd,
            _cleanup: cleanup,
            _dir: dir,
        };
        (m, conn)
    }

    /// Drops `conn` on another thread. A drop that blocks (a statfs of
    /// the mount, which nothing serves, waits for the connection's INIT
    /// to be answered) is released after ten seconds by refusing that
    /// INIT, and the test fails instead of hanging.
    fn drop_within(conn: Connection, m: &Mounted) {
        let (tx, rx) = std::sync::mpsc::channel();
        let dropper = std::thread::spawn(move || {
            drop(conn);
            let _ = tx.send(());
        });
        if rx.recv_timeout(std::time::Duration::from_secs(10)).is_err() {
            refuse_init(&m.fd);
            let _ = dropper.join();
            panic!("dropping the connection blocked on its own mount");
        }
        dropper.join().expect("the drop panicked");
    }

    /// Reads the connection's INIT request from `fd` and answers it with
    /// an error: the kernel then fails every waiting and later request.
    fn refuse_init(fd: &OwnedFd) {
        // The kernel refuses reads into buffers smaller than a request can be.
        let mut dev = File::from(fd.try_clone().expect("dup the /dev/fuse descriptor"));
        let mut buf = vec![0u8; (1 << 20) + 4096];
        let n = dev.read(&mut buf).expect("read the INIT request");
        assert!(n >= 16, "short request: {n} bytes");
        // fuse_out_header: len, error, unique (copied from fuse_in_header).
        let mut reply = Vec::with_capacity(16);
        reply.extend_from_slice(&16u32.to_ne_bytes());
        reply.extend_from_slice(&(-libc::EPROTO).to_ne_bytes());
        reply.extend_from_slice(&buf[8..16]);
        std::io::Write::write_all(&mut dev, &reply).expect("answer the INIT request");
    }

    /// A session that ends (by an error, say) while its connection is
    /// still mounted takes the mount with it: no daemon would answer it.
    #[test]
    fn a_connection_dropped_while_mounted_unmounts() {
        let (m, conn) = mounted();
        let path = &m.path;
        let entry = crate::sys::mount_at(path).unwrap();
        assert!(
            entry.as_ref().is_some_and(|m| m.fs_type.starts_with("fuse")),
            "not mounted: {entry:?}"
        );
        assert!(conn.is_live());
        drop_within(conn, &m);
        let left = crate::sys::mount_at(path).unwrap();
        assert!(left.is_none(), "the mount survived its connection: {left:?}");
    }

    /// After an unmount from outside, whatever is mounted at the path is
    /// someone else's: dropping the old connection leaves it alone.
    #[test]
    fn a_connection_unmounted_from_outside_leaves_the_next_mount_alone() {
        let (m, conn) = mounted();
        let path = &m.path;
        crate::sys::unmount(path, true).expect("unmount from outside");
        assert!(
            !conn.is_live(),
            "the kernel still reports the connection after its unmount"
        );
        nix::mount::mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::empty(), Some("size=1m"))
            .expect("mount a tmpfs in its place");
        drop_within(conn, &m);
        let left = crate::sys::mount_at(path).unwrap();
        assert!(
            left.as_ref().is_some_and(|m| m.fs_type == "tmpfs"),
            "the next mount was taken away: {left:?}"
        );
    }
}
