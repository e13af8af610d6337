//! Limits, bad requests and panics: the daemon answers, harms nothing
//! else, and stays up.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::common::{errno_of, MountGuard};

#[test]
fn a_panicking_request_answers_eio_and_the_mount_lives() {
    let mut m = MountGuard::with("", &[("TMPFSD_FAULT_PANIC_NAME", "boom")], None);
    fs::write(m.join("before"), b"kept").unwrap();
    // Each of the eight worker threads could take the request: make sure
    // panics on every one of them leave the session serving.
    for _ in 0..32 {
        assert_eq!(errno_of(fs::metadata(m.join("boom"))), libc::EIO);
        assert_eq!(errno_of(File::create(m.join("boom"))), libc::EIO);
    }
    assert!(m.daemon_alive());
    assert_eq!(fs::read(m.join("before")).unwrap(), b"kept");
    fs::write(m.join("after"), b"works").unwrap();
    assert_eq!(fs::read(m.join("after")).unwrap(), b"works");
    assert!(m.unmount().success(), "the daemon must exit cleanly after unmount");
}

fn statvfs(p: &std::path::Path) -> libc::statvfs {
    // SAFETY: zeroed is a valid statvfs; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(crate::common::cpath(p).as_ptr(), &mut st) }, 0);
    st
}

#[test]
fn size_limit_gives_enospc_and_harms_nothing_else() {
    // Without the writeback cache (the default) ENOSPC comes from the
    // write itself.
    let mut m = MountGuard::new("size=8m");
    let keep: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    fs::write(m.join("keep"), &keep).unwrap();
    let st = statvfs(m.path());
    assert_eq!(st.f_blocks * st.f_frsize, 8 << 20);
    let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
    assert!((1_000_000..1_200_000).contains(&used), "df says {used} bytes used");
    let mut f = File::create(m.join("filler")).unwrap();
    let chunk = vec![1u8; 1 << 20];
    let mut written = 0;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written < 16 << 20, "the size limit was not enforced");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    drop(f);
    assert_eq!(fs::read(m.join("keep")).unwrap(), keep);
    let st = statvfs(m.path());
    assert!(st.f_bfree * st.f_frsize < 1 << 20);
    fs::remove_file(m.join("filler")).unwrap();
    // Space comes back once the file is gone and the kernel forgot it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = statvfs(m.path());
        if (st.f_blocks - st.f_bfree) * st.f_frsize < 1_200_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "space was not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::write(m.join("again"), vec![2u8; 4 << 20]).unwrap();
    assert!(m.daemon_alive());
}

#[test]
fn with_writeback_a_full_mount_reports_enospc_at_fsync_and_harms_nothing_else() {
    let mut m = MountGuard::new("size=8m,writeback=on");
    let keep: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    fs::write(m.join("keep"), &keep).unwrap();
    let mut f = File::create(m.join("filler")).unwrap();
    let chunk = vec![1u8; 1 << 20];
    // Writes land in the page cache; the daemon refuses them as they
    // arrive, and the error surfaces by fsync at the latest.
    let mut failed = None;
    for _ in 0..12 {
        if let Err(e) = f.write_all(&chunk) {
            failed = Some(e);
            break;
        }
    }
    let err = failed
        .or_else(|| f.sync_all().err())
        .expect("no ENOSPC past the size limit");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    assert_eq!(fs::read(m.join("keep")).unwrap(), keep);
    assert!(m.daemon_alive());
    fs::remove_file(m.join("filler")).unwrap();
    crate::common::eventually(10, "the space comes back", || {
        let st = statvfs(m.path());
        (st.f_blocks - st.f_bfree) * st.f_frsize < 1_200_000
    });
    fs::write(m.join("again"), vec![2u8; 4 << 20]).unwrap();
    assert_eq!(fs::read(m.join("again")).unwrap().len(), 4 << 20);
}

#[test]
fn inode_limit_gives_enospc() {
    let m = MountGuard::new("nr_inodes=50");
    let mut made = 0;
    let err = loop {
        match File::create(m.join(format!("f{made}"))) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 100);
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(made, 49, "the root directory counts as one inode");
    assert_eq!(errno_of(fs::create_dir(m.join("d"))), libc::ENOSPC);
    fs::remove_file(m.join("f0")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while File::create(m.join("again")).is_err() {
        assert!(std::time::Instant::now() < deadline, "inode was not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_requests_do_not_crash_the_daemon() {
    let mut m = MountGuard::new("size=64m");
    fs::write(m.join("victim"), b"untouched").unwrap();
    let f = File::create(m.join("f")).unwrap();
    for off in [u64::MAX / 2, i64::MAX as u64 - 1, 1 << 62] {
        let _ = f.write_all_at(b"xy", off);
    }
    let _ = f.set_len(1 << 62);
    let _ = fs::rename(m.path(), m.join("inside"));
    let _ = fs::create_dir(m.join("x".repeat(4000)));
    let long_target = "t".repeat(5000);
    let _ = std::os::unix::fs::symlink(&long_target, m.join("l"));
    let mut w = File::create(m.join("w")).unwrap();
    for _ in 0..100 {
        let _ = w.write_all(&[0u8; 100_000]);
    }
    drop((f, w));
    assert!(m.daemon_alive());
    assert_eq!(fs::read(m.join("victim")).unwrap(), b"untouched");
    assert!(m.unmount().success());
}

#[test]
fn parallel_clients_on_many_files() {
    let m = MountGuard::new("");
    let dir = m.path().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let p = dir.join(format!("t{t}-{i}"));
                    let data = vec![(t * 31 + i) as u8; 1000 + i * 37];
                    fs::write(&p, &data).unwrap();
                    assert_eq!(fs::read(&p).unwrap(), data);
                    if i % 3 == 0 {
                        fs::rename(&p, dir.join(format!("t{t}-r{i}"))).unwrap();
                    } else {
                        fs::remove_file(&p).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 8 * 67);
}

/// How many of the daemon's /dev/fuse descriptors are non-blocking: the
/// busy-polling worker's and the governor's duplicate of it, while it polls.
fn polling_descriptors(pid: u32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == std::path::Path::new("/dev/fuse")))
        .filter_map(|fd| fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())).ok())
        .filter_map(|info| {
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
            u32::from_str_radix(flags.trim(), 8).ok()
        })
        .filter(|flags| flags & libc::O_NONBLOCK as u32 != 0)
        .count()
}

#[test]
fn busy_polling_serves_bursts_and_sleeps_again_when_idle() {
    // The longest window (100 ms), so that the check right after a request
    // sees the polling worker even on a loaded machine.
    let m = MountGuard::new("busy_poll=100000");
    let pid = m.pid();
    // The start-up's own requests end with polling on; quiet, it stops.
    crate::common::eventually(10, "the idle mount stops polling", || polling_descriptors(pid) == 0);
    fs::write(m.join("first"), b"one").unwrap();
    assert!(polling_descriptors(pid) > 0, "a worker polls after a request");
    // A burst from this process and another, checked byte for byte.
    for i in 0..300 {
        fs::write(m.join(format!("f{i}")), format!("file {i}").repeat(100)).unwrap();
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("for i in $(seq 0 299); do cat f$i; done | md5sum; rm f*")
        .current_dir(m.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected: String = (0..300).map(|i| format!("file {i}").repeat(100)).collect();
    let md5 = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(expected.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.stdout, md5.stdout, "another process read what was written");
    assert_eq!(fs::read_dir(m.path()).unwrap().count(), 0);
    crate::common::eventually(10, "the polling worker sleeps again", || polling_descriptors(pid) == 0);
    // Asleep, the daemon still answers the next request.
    fs::write(m.join("later"), b"still served").unwrap();
    assert_eq!(fs::read(m.join("later")).unwrap(), b"still served");
    assert!(m.unmount().success());
}

/// The fusectl directory, mounted for the test if it was not (and
/// unmounted again when dropped).
struct FuseCtl {
    mounted_here: bool,
}

impl FuseCtl {
    const DIR: &'static str = "/sys/fs/fuse/connections";

    fn new() -> Self {
        let there = tmpfsd::sys::mount_at(std::path::Path::new(Self::DIR))
            .unwrap()
            .is_some_and(|m| m.fs_type == "fusectl");
        if there {
            return Self { mounted_here: false };
        }
        let st = std::process::Command::new("mount")
            .args(["-t", "fusectl", "fusectl", Self::DIR])
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount fusectl on {}", Self::DIR);
        Self { mounted_here: true }
    }
}

impl Drop for FuseCtl {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = std::process::Command::new("umount").arg(Self::DIR).status();
        }
    }
}

#[test]
fn a_connection_aborted_under_the_daemon_leaves_no_dead_mount() {
    // Aborting the connection (fusectl's abort, what an administrator does
    // to a hung FUSE mount) ends the session with an error while the mount
    // is still there: the daemon must not leave a mount point that answers
    // ENOTCONN. Root only: fusectl must be mounted to reach the switch.
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (fusectl)");
    let ctl = FuseCtl::new();
    let dir = tempfile::Builder::new().prefix("tmpfsd-test.").tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap();
    let m = MountGuard::at(&path, "", &[]);
    fs::write(m.join("f"), b"x").unwrap();
    let entry = tmpfsd::sys::mount_at(&path).unwrap().expect("mounted");
    let minor = entry.dev.split(':').nth(1).unwrap().to_string();
    fs::write(format!("{}/{minor}/abort", FuseCtl::DIR), b"1").unwrap();
    // The guard must not clean up for the daemon here: that is the test.
    m.wait_exit_unmounted_elsewhere(Duration::from_secs(20))
        .expect("the daemon exits");
    let left = tmpfsd::sys::mount_at(&path).unwrap();
    if left.is_some() {
        let _ = tmpfsd::sys::unmount(&path, true);
    }
    assert!(left.is_none(), "a dead mount was left at {}: {left:?}", path.display());
    drop(ctl);
}
