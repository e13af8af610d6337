//! `tmpfsd status [DIR] [--json]`: size, used, free and files of the
//! current user's tmpfsd mounts (all of them for root).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde::Serialize;
use tmpfsd::core::{Stats, STATS_XATTR};
use tmpfsd::sys;

use crate::CliError;

#[derive(Debug, Serialize)]
struct MountStatus {
    mount_point: PathBuf,
    owner_uid: Option<u32>,
    /// "live", or "dead" when the daemon is gone (ENOTCONN).
    state: &'static str,
    size_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
    files: u64,
    inode_limit: u64,
    /// The daemon's own counters (RAM and spill tiers), when it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    counters: Option<Stats>,
}

fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: zeroed is a valid statvfs; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

// statvfs field widths differ by platform (u32 on macOS, u64 on Linux).
#[allow(clippy::useless_conversion)]
fn status_of(m: &sys::MountEntry) -> MountStatus {
    let mut s = MountStatus {
        mount_point: m.mount_point.clone(),
        owner_uid: m.fuse_owner(),
        state: "dead",
        size_bytes: 0,
        used_bytes: 0,
        free_bytes: 0,
        files: 0,
        inode_limit: 0,
        counters: None,
    };
    if let Ok(st) = statvfs(&m.mount_point) {
        let frsize = u64::from(st.f_frsize);
        s.state = "live";
        s.size_bytes = u64::from(st.f_blocks) * frsize;
        s.free_bytes = u64::from(st.f_bfree) * frsize;
        s.used_bytes = s.size_bytes.saturating_sub(s.free_bytes);
        s.inode_limit = u64::from(st.f_files);
        s.files = u64::from(st.f_files).saturating_sub(u64::from(st.f_ffree));
        s.counters = read_counters(&m.mount_point);
    }
    s
}

/// The daemon's counters, read from the root's virtual xattr (one
/// GETXATTR request to the daemon, which counts it).
pub(super) fn read_counters(mount: &Path) -> Option<Stats> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mount.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(STATS_XATTR).ok()?;
    let mut buf = vec![0u8; 64 << 10];
    let n = sys::getxattr(&path, &name, &mut buf).ok()?;
    serde_json::from_slice(&buf[..n]).ok()
}

fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

pub(crate) fn run(dir: Option<&Path>, json: bool) -> Result<(), CliError> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mounts = sys::mounts().context("cannot read the mount table")?;
    let wanted = dir.map(super::absolute);
    let list: Vec<MountStatus> = mounts
        .iter()
        .filter(|m| m.is_tmpfsd())
        .filter(|m| uid == 0 || m.fuse_owner() == Some(uid))
        .filter(|m| wanted.as_ref().is_none_or(|w| *w == m.mount_point))
        .map(status_of)
        .collect();
    if let (Some(w), true) = (&wanted, list.is_empty()) {
        return Err(anyhow!("{} is not a tmpfsd mount of this user", w.display()).into());
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).context("cannot encode status")?
        );
        return Ok(());
    }
    if list.is_empty() {
        println!("no tmpfsd mounts");
        return Ok(());
    }
    println!(
        "{:<32} {:>5} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>7}",
        "MOUNT", "STATE", "SIZE", "USED", "FREE", "FILES", "RAM", "MAX_RAM", "SPILLED", "SPILLS"
    );
    for s in &list {
        let c = s.counters.as_ref();
        let opt = |f: fn(&Stats) -> u64| c.map_or_else(|| "-".to_string(), |c| human(f(c)));
        println!(
            "{:<32} {:>5} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>7}",
            s.mount_point.display(),
            s.state,
            human(s.size_bytes),
            human(s.used_bytes),
            human(s.free_bytes),
            s.files,
            opt(|c| c.ram_bytes),
            opt(|c| c.max_ram),
            opt(|c| c.spilled_bytes),
            c.map_or_else(|| "-".to_string(), |c| c.spills.to_string()),
        );
    }
    Ok(())
}
