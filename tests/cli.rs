//! The command line: mistakes get one line and a non-zero exit; the daemon
//! mounts in the background and goes away on unmount or a signal.

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tmpfsd::sys;

use crate::common::{bin, MountGuard};

fn tmpfsd(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run tmpfsd")
}

/// Asserts a failure with exactly one line on stderr containing `needle`.
fn fails_with_one_line(args: &[&str], needle: &str) {
    let out = tmpfsd(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(err.lines().count(), 1, "{args:?} printed {err:?}");
    assert!(err.starts_with("tmpfsd: "), "{err:?}");
    assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn mistakes_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let dir = d.join("mnt");
    fs::create_dir(&dir).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    fails_with_one_line(&["mount", &s(&d.join("missing"))], "does not exist");
    fs::write(d.join("file"), b"").unwrap();
    fails_with_one_line(&["mount", &s(&d.join("file"))], "not a directory");
    fs::write(dir.join("x"), b"").unwrap();
    fails_with_one_line(&["mount", &s(&dir)], "not empty");
    fs::remove_file(dir.join("x")).unwrap();
    fails_with_one_line(&["mount", &s(&dir), "-o", "bogus"], "'bogus': unknown option");
    fails_with_one_line(&["mount", &s(&dir), "-o", "size=12q"], "size=12q");
    fails_with_one_line(&["mount", &s(&dir), "-o", "size="], "needs a value");
    fails_with_one_line(&["mount", &s(&dir), "-o", "mode=abc"], "octal");
    fails_with_one_line(&["mount", &s(&dir), "-o", "nr_inodes=5%"], "percentage");
    fails_with_one_line(&["mount", &s(&dir), "-o", "uid=root"], "numeric");
    fails_with_one_line(&["mount"], "required");
    fails_with_one_line(&["frobnicate"], "unrecognized subcommand");
    fails_with_one_line(&["mount", &s(&dir), "--bogus"], "--bogus");
    fails_with_one_line(&["unmount", &s(&dir)], "not a tmpfsd mount");
    fails_with_one_line(&["status", &s(&dir)], "not a tmpfsd mount");
    fails_with_one_line(&["--log-level", "loud", "status"], "log-level");
    // Nothing was mounted by any of that.
    assert!(sys::mount_at(&dir.canonicalize().unwrap()).unwrap().is_none());
}

#[test]
fn mount_help_lists_every_option() {
    for cmd in ["mount", "run", "bench"] {
        let out = tmpfsd(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let help = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let wanted = if cmd == "mount" {
            tmpfsd::config::OPTIONS.to_string()
        } else {
            "as for `mount`".to_string()
        };
        assert!(help.contains(&wanted), "{cmd} --help does not show {wanted:?}: {help}");
    }
}

#[test]
fn already_mounted_is_refused() {
    let m = MountGuard::new("");
    fails_with_one_line(&["mount", m.path().to_str().unwrap()], "already a mount point");
}

#[test]
fn daemon_mode_mount_status_unmount() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let d = dir.to_str().unwrap();
    let out = tmpfsd(&["mount", d, "-o", "size=100m,nr_inodes=1000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Returned only once the mount answers: usable at once, no waiting.
    let unmount_guard = Unmounter(dir.clone());
    fs::write(dir.join("f"), vec![1u8; 300_000]).unwrap();
    let out = tmpfsd(&["status", d, "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["state"], "live");
    assert_eq!(v[0]["size_bytes"], 100 << 20);
    assert_eq!(v[0]["inode_limit"], 1000);
    assert_eq!(v[0]["files"], 2);
    let used = v[0]["used_bytes"].as_u64().unwrap();
    assert!((300_000..400_000).contains(&used), "{used}");
    let table = String::from_utf8(tmpfsd(&["status"]).stdout).unwrap();
    assert!(table.contains(d), "{table}");
    // Busy: refused with a clear line, and the data stays.
    let f = fs::File::open(dir.join("f")).unwrap();
    let busy = tmpfsd(&["unmount", d]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("busy"));
    drop(f);
    let out = tmpfsd(&["unmount", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sys::mount_at(&dir).unwrap().is_none());
    assert!(!dir.join("f").exists(), "data must not survive the mount");
    drop(unmount_guard);
}

/// Unmounts a daemon-mode mount when a test fails half-way.
struct Unmounter(std::path::PathBuf);

impl Drop for Unmounter {
    fn drop(&mut self) {
        if sys::mount_at(&self.0).ok().flatten().is_some() {
            let _ = sys::unmount(&self.0, true);
        }
    }
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let m = MountGuard::new("");
        fs::write(m.join("f"), b"x").unwrap();
        let path = m.path().to_path_buf();
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(m.pid() as i32, sig) }, 0);
        let status = m
            .wait_exit(Duration::from_secs(20))
            .expect("daemon did not exit on the signal");
        assert!(status.success(), "signal {sig}: {status}");
        assert!(sys::mount_at(&path).unwrap().is_none());
    }
}

#[test]
fn sigterm_with_open_files_detaches_and_exits_after_close() {
    let m = MountGuard::new("");
    let path = m.path().to_path_buf();
    let f = fs::File::create(m.join("open")).unwrap();
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sys::mount_at(&path).unwrap().is_some() {
        assert!(Instant::now() < deadline, "mount was not detached");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(f);
    let status = m
        .wait_exit(Duration::from_secs(20))
        .expect("daemon did not exit after the last close");
    assert!(status.success());
}

#[test]
fn a_mount_made_right_after_an_outside_unmount_survives_the_old_daemon() {
    // Declared first, dropped last: every mount guard is gone by then.
    let dir = tempfile::Builder::new().prefix("tmpfsd-test.").tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap();
    // Each daemon takes 300 ms to wind down once its session has ended.
    let slow = [("TMPFSD_FAULT_SLOW_TEARDOWN_MS", "300")];
    let mut old = MountGuard::at(&path, "", &slow);
    for round in 0..3 {
        fs::write(old.join("big"), vec![7u8; 1 << 20]).unwrap();
        // Unmounted from outside (umount, fusermount3 -u), then mounted
        // again at once, before the old daemon has wound down.
        sys::unmount_with_grace(&path, Duration::from_secs(10)).unwrap();
        let new = MountGuard::at(&path, "", &slow);
        assert!(
            old.wait_exit_unmounted_elsewhere(Duration::from_secs(30))
                .is_some_and(|st| st.success()),
            "round {round}: the old daemon did not end cleanly"
        );
        assert!(
            sys::mount_at(&path).unwrap().is_some_and(|m| m.is_tmpfsd()),
            "round {round}: the old daemon took the new mount with it"
        );
        fs::write(new.join("after"), b"served").unwrap();
        assert_eq!(fs::read(new.join("after")).unwrap(), b"served");
        assert!(!new.join("big").exists(), "round {round}: a fresh mount is empty");
        old = new;
    }
    assert!(old.unmount().success());
}
