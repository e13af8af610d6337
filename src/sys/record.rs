//! The daemon record: the serving process notes its pid under a private
//! per-user directory, keyed by its mount point, so that `tmpfsd unmount`
//! can wait until that process has freed every byte and removed its spill
//! directory (the kernel unmount returns before the daemon has noticed).
//!
//! Best effort throughout: without a record, unmount simply does not wait.
//! Each new record removes those of daemons that are gone (killed with
//! SIGKILL, they could not remove their own), so the directory holds
//! about one record per live mount.

use std::fs::{self, DirBuilder, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory of this user's records: `$XDG_RUNTIME_DIR/tmpfsd`, else
/// `/tmp/tmpfsd-UID` (not `$TMPDIR`, which may well be a tmpfsd mount);
/// made 0700 and used only when it belongs to this user alone.
fn record_dir() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && Path::new(&d).is_dir() => Path::new(&d).join("tmpfsd"),
        _ => Path::new("/tmp").join(format!("tmpfsd-{uid}")),
    };
    let _ = DirBuilder::new().mode(0o700).create(&dir);
    let meta = fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(dir)
}

/// FNV-1a: stable across builds, so that any tmpfsd finds any other's record.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn record_path(mount_point: &Path) -> Option<PathBuf> {
    Some(record_dir()?.join(format!("{:016x}.pid", fnv1a(mount_point.as_os_str().as_bytes()))))
}

/// A process's state letter and start time in clock ticks since boot
/// (fields 3 and 22 of /proc/PID/stat); the start time tells a pid's
/// owner from a later reuse.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// This process's record for `mount_point`; removed when dropped.
#[derive(Debug)]
pub struct DaemonRecord {
    path: PathBuf,
}

impl DaemonRecord {
    /// Notes that this process serves `mount_point`. `None` when there is
    /// nowhere private to write.
    #[must_use]
    pub fn create(mount_point: &Path) -> Option<DaemonRecord> {
        let path = record_path(mount_point)?;
        let pid = std::process::id();
        let start = start_time(i32::try_from(pid).ok()?)?;
        let tmp = path.with_extension(format!("tmp{pid}"));
        let written = File::create(&tmp)
            .and_then(|mut f| writeln!(f, "{pid} {start} {}", mount_point.display()))
            .and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            return None;
        }
        if let Some(dir) = path.parent() {
            prune_dead(dir);
        }
        Some(DaemonRecord { path })
    }
}

/// Removes the records of processes that are gone: a daemon killed with
/// SIGKILL cannot remove its own, and nothing else would.
fn prune_dead(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_some_and(|x| x == "pid")
            && fs::read_to_string(&path).is_ok_and(|text| matches!(parse(&text), Some(r) if !alive(r)))
        {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The `(pid, start time)` a record holds.
fn parse(text: &str) -> Option<(i32, u64)> {
    let mut f = text.split_whitespace();
    let pid: i32 = f.next()?.parse().ok()?;
    let start: u64 = f.next()?.parse().ok()?;
    (pid > 0).then_some((pid, start))
}

/// Whether the process `(pid, start)` still runs (a later owner of the
/// pid does not count).
fn alive((pid, start): (i32, u64)) -> bool {
    start_time(pid) == Some(start)
}

impl Drop for DaemonRecord {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The live process that serves `mount_point`, from its record:
/// `(pid, start time)`.
#[must_use]
pub fn daemon_of(mount_point: &Path) -> Option<(i32, u64)> {
    let record = parse(&fs::read_to_string(record_path(mount_point)?).ok()?)?;
    alive(record).then_some(record)
}

/// Waits until the process `(pid, start)` has exited, up to `limit`.
/// Returns whether it did.
#[must_use]
pub fn wait_for_exit((pid, start): (i32, u64), limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        // Gone, or a zombie (state Z) whose memory and files are released.
        let alive = matches!(proc_stat(pid), Some((state, t)) if t == start && state != 'Z');
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_this_process_until_dropped() {
        let mp = std::env::temp_dir().join(format!("tmpfsd-record-test-{}", std::process::id()));
        let rec = DaemonRecord::create(&mp).expect("a private record directory");
        let (pid, start) = daemon_of(&mp).expect("the record just written");
        assert_eq!(pid, i32::try_from(std::process::id()).unwrap());
        assert_eq!(Some(start), start_time(pid));
        // This process is alive: waiting times out.
        assert!(!wait_for_exit((pid, start), Duration::from_millis(20)));
        drop(rec);
        assert_eq!(daemon_of(&mp), None);
    }

    #[test]
    fn a_record_of_a_reused_pid_is_ignored() {
        let mp = std::env::temp_dir().join(format!("tmpfsd-record-reuse-{}", std::process::id()));
        let path = record_path(&mp).unwrap();
        // Right pid, wrong start time: another process that got the pid.
        fs::write(&path, format!("{} 1 {}\n", std::process::id(), mp.display())).unwrap();
        assert_eq!(daemon_of(&mp), None);
        // (Another test's record may have pruned it already.)
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn a_new_record_prunes_those_of_dead_daemons_and_keeps_live_ones() {
        let id = std::process::id();
        let dead_mp = std::env::temp_dir().join(format!("tmpfsd-record-dead-{id}"));
        let dead = record_path(&dead_mp).unwrap();
        // A daemon that died without removing its record: an exited child.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).unwrap_or(1);
        child.wait().unwrap();
        fs::write(&dead, format!("{pid} {start} {}\n", dead_mp.display())).unwrap();
        // Something else in the directory that is not a record stays.
        let other = dead.with_extension("note");
        fs::write(&other, "not a record").unwrap();
        let live_mp = std::env::temp_dir().join(format!("tmpfsd-record-live-{id}"));
        let live = DaemonRecord::create(&live_mp).unwrap();
        let new_mp = std::env::temp_dir().join(format!("tmpfsd-record-new-{id}"));
        let new = DaemonRecord::create(&new_mp).unwrap();
        assert!(!dead.exists(), "the dead daemon's record is still there");
        assert!(other.exists());
        assert!(daemon_of(&live_mp).is_some() && daemon_of(&new_mp).is_some());
        fs::remove_file(&other).unwrap();
        drop((live, new));
    }

    #[test]
    fn waiting_for_an_exited_child_returns_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).unwrap_or(0);
        child.wait().unwrap();
        assert!(wait_for_exit((pid, start), Duration::from_secs(5)));
    }
}
