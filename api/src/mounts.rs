//! The mount table and directory checks, per platform.

use std::io;
use std::path::{Path, PathBuf};

/// tmpfsd mounts of the current user, newest last in the table, in table order.
#[cfg(target_os = "linux")]
pub(crate) fn own_tmpfsd_mounts() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    parse_mountinfo(&text, uid)
}

/// Parses mountinfo, keeping tmpfsd mounts whose `user_id=` is `uid`.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_mountinfo(text: &str, uid: u32) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let (fs_type, source, opts) = (r.next()?, r.next()?, r.next().unwrap_or(""));
            let tmpfsd = fs_type == "fuse.tmpfsd" || (fs_type == "fuse" && source == "tmpfsd");
            let owner = opts
                .split(',')
                .find_map(|o| o.strip_prefix("user_id="))?
                .parse::<u32>()
                .ok()?;
            (tmpfsd && owner == uid).then(|| PathBuf::from(unescape(mount_point)))
        })
        .collect()
}

#[cfg(any(target_os = "linux", test))]
fn unescape(field: &str) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
}

/// tmpfsd mounts of the current user, from getmntinfo.
#[cfg(target_os = "macos")]
pub(crate) fn own_tmpfsd_mounts() -> Vec<PathBuf> {
    use std::ffi::CStr;
    let mut list: *mut libc::statfs = std::ptr::null_mut();
    // SAFETY: getmntinfo fills `list` with a pointer to an array it owns.
    let n = unsafe { libc::getmntinfo(&mut list, libc::MNT_NOWAIT) };
    if n <= 0 || list.is_null() {
        return Vec::new();
    }
    // SAFETY: getuid has no preconditions; the array has n entries.
    let (uid, entries) = unsafe { (libc::getuid(), std::slice::from_raw_parts(list, n as usize)) };
    entries
        .iter()
        .filter(|m| m.f_owner == uid)
        .filter_map(|m| {
            // SAFETY: the fields are NUL-terminated C strings.
            let (from, on) = unsafe {
                (
                    CStr::from_ptr(m.f_mntfromname.as_ptr()),
                    CStr::from_ptr(m.f_mntonname.as_ptr()),
                )
            };
            (from.to_bytes() == b"tmpfsd").then(|| PathBuf::from(on.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Windows and other platforms: no mount table to read (WinFsp mounts are
/// found through `TMPFSD_DIR`).
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn own_tmpfsd_mounts() -> Vec<PathBuf> {
    Vec::new()
}

/// Whether an error says the directory is a FUSE mount whose daemon is gone.
pub(crate) fn is_dead_mount(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ENOTCONN)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Whether the current user can create files in `dir`: a real probe (one
/// unnamed file, removed at once), since permission bits say nothing for
/// root or a read-only mount.
pub(crate) fn writable(dir: &Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_tmpfsd_mounts_are_taken() {
        let text = "\
36 35 0:40 / /home/a/.fasttmp rw - fuse.tmpfsd tmpfsd rw,user_id=1000,group_id=1000
37 35 0:41 / /home/b/x\\040y rw - fuse tmpfsd rw,user_id=1000,group_id=1000
38 35 0:42 / /mnt/other rw - fuse.sshfs host: rw,user_id=1000,group_id=1000
39 35 0:43 / /home/c/t rw - fuse.tmpfsd tmpfsd rw,user_id=1001,group_id=1001
40 35 0:44 / /tmp rw - tmpfs tmpfs rw
";
        assert_eq!(
            parse_mountinfo(text, 1000),
            vec![PathBuf::from("/home/a/.fasttmp"), PathBuf::from("/home/b/x y")]
        );
        assert_eq!(parse_mountinfo(text, 1001), vec![PathBuf::from("/home/c/t")]);
    }
}
