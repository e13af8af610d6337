//! Thin operating-system helpers shared by the command and the tests: the
//! mount table, unmounting, a check that a path is a live tmpfsd mount, and
//! the daemon record that lets `unmount` wait for the daemon to finish.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
#[cfg(target_os = "linux")]
use std::process::Command;

mod record;
pub use record::{daemon_of, wait_for_exit, DaemonRecord};

/// The file-system type tmpfsd mounts show in the mount table.
pub const FS_TYPE: &str = "fuse.tmpfsd";

/// The source name tmpfsd mounts show in the mount table.
pub const SOURCE: &str = "tmpfsd";

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The super-block's device, `major:minor` (for FUSE, the minor is the
    /// connection's number in fusectl).
    pub dev: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File-system type, e.g. `fuse.tmpfsd`.
    pub fs_type: String,
    /// Source, e.g. `tmpfsd`.
    pub source: String,
    /// Super-block options, e.g. `rw,user_id=1000,group_id=1000`.
    pub super_options: String,
}

impl MountEntry {
    /// The uid that mounted a FUSE file system (its `user_id=` option).
    #[must_use]
    pub fn fuse_owner(&self) -> Option<u32> {
        self.super_options
            .split(',')
            .find_map(|o| o.strip_prefix("user_id="))
            .and_then(|v| v.parse().ok())
    }

    /// Whether this is a tmpfsd mount: `fuse.tmpfsd` when mounted through
    /// fusermount3, plain `fuse` with source `tmpfsd` when mounted directly.
    #[must_use]
    pub fn is_tmpfsd(&self) -> bool {
        self.fs_type == FS_TYPE || (matches!(self.fs_type.as_str(), "fuse" | "fuseblk") && self.source == SOURCE)
    }
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` for a space).
fn unescape(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

/// Parses mountinfo text.
#[must_use]
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let dev = l.nth(2)?.to_string();
            let mount_point = l.nth(1)?;
            let mut r = right.split(' ');
            Some(MountEntry {
                dev,
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: r.next()?.to_string(),
                source: r.next()?.to_string(),
                super_options: r.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The mount table of this process.
///
/// # Errors
/// /proc/self/mountinfo could not be read.
#[cfg(target_os = "linux")]
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The mount table, from getmntinfo(3). Entries take the Linux shapes the
/// rest of this module reads: a macFUSE mount of tmpfsd shows as type
/// `fuse` with source `tmpfsd`, and its owner as `user_id=`.
///
/// # Errors
/// getmntinfo failed.
#[cfg(target_os = "macos")]
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    use std::ffi::CStr;
    let mut list: *mut libc::statfs = std::ptr::null_mut();
    // SAFETY: getmntinfo points `list` at an array it owns, of n entries.
    let n = unsafe { libc::getmntinfo(&mut list, libc::MNT_NOWAIT) };
    let Ok(n) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    if list.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: as above.
    let entries = unsafe { std::slice::from_raw_parts(list, n) };
    Ok(entries
        .iter()
        .map(|m| {
            // SAFETY: the name fields are NUL-terminated C strings.
            let text = |f: &[libc::c_char]| unsafe { CStr::from_ptr(f.as_ptr()) }.to_string_lossy().into_owned();
            let fs_type = text(&m.f_fstypename);
            let fuse = ["macfuse", "osxfuse", "fuse-t"].iter().any(|t| fs_type.starts_with(t));
            MountEntry {
                dev: {
                    // SAFETY: fsid_t is two i32s (its field is private in libc).
                    let v: [i32; 2] = unsafe { std::mem::transmute(m.f_fsid) };
                    format!("{}:{}", v[0], v[1])
                },
                mount_point: PathBuf::from(text(&m.f_mntonname)),
                fs_type: if fuse { "fuse".to_string() } else { fs_type },
                source: text(&m.f_mntfromname),
                super_options: format!("user_id={}", m.f_owner),
            }
        })
        .collect())
}

/// The mount whose mount point is exactly `path` (the last one, if stacked).
///
/// # Errors
/// The mount table could not be read.
pub fn mount_at(path: &Path) -> io::Result<Option<MountEntry>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == path))
}

/// FUSE's super-block magic, as statfs reports it.
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// `statfs(2)` f_type of `path`.
///
/// # Errors
/// statfs failed (ENOTCONN for a dead FUSE mount).
pub fn fs_type_magic(path: &Path) -> io::Result<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// getxattr(2): reads the extended attribute `name` of `path` into `buf`
/// and returns its length; an empty `buf` asks for the length only.
///
/// # Errors
/// ENODATA (ENOATTR on macOS) for a missing attribute, ERANGE when `buf`
/// is too small, ENOTSUP where the file system has no such attributes.
pub fn getxattr(path: &std::ffi::CStr, name: &std::ffi::CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: valid NUL-terminated strings and a buffer of the given
    // length (never written through when the length is 0).
    #[cfg(target_os = "linux")]
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: as above (macOS adds a position and options).
    #[cfg(target_os = "macos")]
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), 0, 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The error of starting `fusermount3`, saying what to install when it
/// is missing.
#[cfg(target_os = "linux")]
pub(crate) fn fusermount3_error(e: io::Error) -> io::Error {
    fusermount3_error_on(e, std::env::var_os("PATH").as_deref())
}

/// [`fusermount3_error`] for the search path `path`. execvp(3) reports
/// EACCES, not ENOENT, when the program is nowhere on the path but some
/// directory of it could not be searched (root's directories, for a user
/// who kept root's PATH): that is a missing fusermount3 too. A
/// fusermount3 that is there but may not be run (mode 4750 for a group
/// the user is not in) keeps its own error.
#[cfg(target_os = "linux")]
fn fusermount3_error_on(e: io::Error, path: Option<&std::ffi::OsStr>) -> io::Error {
    let on_path = || path.is_some_and(|p| std::env::split_paths(p).any(|d| d.join("fusermount3").is_file()));
    let missing = match e.kind() {
        io::ErrorKind::NotFound => true,
        io::ErrorKind::PermissionDenied => !on_path(),
        _ => false,
    };
    if missing {
        io::Error::new(io::ErrorKind::NotFound, "fusermount3 not found (install fuse3)")
    } else {
        io::Error::new(e.kind(), format!("cannot run fusermount3: {e}"))
    }
}

/// Unmounts `path`: directly as root, through `fusermount3 -u` otherwise.
/// With `lazy`, a busy mount is detached now and goes away when its last
/// user lets go.
///
/// # Errors
/// EBUSY (without `lazy`), EINVAL when `path` is not a mount point, or
/// fusermount3's own error.
#[cfg(target_os = "linux")]
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    // Not -q: that silences the reasons too, which the caller needs
    // (EBUSY gets its own message).
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg("--").arg(path).output().map_err(fusermount3_error)?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    if msg.contains("busy") {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    let msg = msg.trim().trim_start_matches("fusermount3: ");
    Err(io::Error::other(if msg.is_empty() {
        format!("fusermount3 -u failed ({})", out.status)
    } else {
        msg.to_string()
    }))
}

/// Unmounts `path` with unmount(2), which macFUSE and the BSDs allow the
/// user who mounted; `lazy` forces it (MNT_FORCE), as they have no detach.
///
/// # Errors
/// EBUSY (without `lazy`), EINVAL when `path` is not a mount point, EPERM
/// for another user's mount.
#[cfg(not(target_os = "linux"))]
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let flags = if lazy { libc::MNT_FORCE } else { 0 };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::unmount(c.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `path` (not lazily), retrying while it is busy for up to
/// `grace`. A mount is often busy for a moment after its last file was
/// closed: a child forked by another thread of the closing program holds
/// copies of its descriptors until it execs, and a shell's last command may
/// still be winding down in it.
///
/// # Errors
/// As [`unmount`]; EBUSY once `grace` has passed with the mount still busy.
pub fn unmount_with_grace(path: &Path, grace: std::time::Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        match unmount(path, false) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_fusermount3_is_named_however_exec_reports_it() {
        let denied = || io::Error::from_raw_os_error(libc::EACCES);
        let empty = tempfile::tempdir().unwrap();
        let with = tempfile::tempdir().unwrap();
        std::fs::write(with.path().join("fusermount3"), b"").unwrap();
        let msg = |e: io::Error| e.to_string();
        assert_eq!(
            msg(fusermount3_error_on(io::Error::from_raw_os_error(libc::ENOENT), None)),
            "fusermount3 not found (install fuse3)"
        );
        // EACCES from a path that has no fusermount3: missing.
        let e = fusermount3_error_on(denied(), Some(empty.path().as_os_str()));
        assert_eq!(
            (e.kind(), msg(e)),
            (io::ErrorKind::NotFound, "fusermount3 not found (install fuse3)".into())
        );
        // EACCES with one there: that one may not be run.
        let path = std::env::join_paths([empty.path(), with.path()]).unwrap();
        let e = fusermount3_error_on(denied(), Some(&path));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(msg(e).starts_with("cannot run fusermount3: Permission denied"));
    }

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,nosuid - fuse.tmpfsd tmpfsd rw,user_id=1000,group_id=1000\n\
                    37 35 98:0 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].dev, "98:0");
        assert!(m[0].is_tmpfsd());
        assert_eq!(m[0].fuse_owner(), Some(1000));
        assert!(!m[1].is_tmpfsd());
        assert_eq!(m[1].fuse_owner(), None);
    }
}
