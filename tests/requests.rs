//! Every fast-path choice is held to its request budget: the requests the
//! kernel sends for a workload are counted by the daemon (`tmpfsd status
//! --json`) and compared with what the choice allows. Round trips, not
//! daemon code, decide how fast small-file and metadata work is, so a
//! change that adds one per file fails here instead of going unnoticed
//! until someone runs the benchmarks. Counts, not clocks: nothing here is
//! timed.
//!
//! The budgets are those of the defaults on Linux 6.x; `forget` is left
//! out everywhere (the kernel sends it when it evicts, in batches).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use crate::common::MountGuard;

/// Requests by kind (non-zero kinds only).
type Counts = BTreeMap<String, u64>;

fn snapshot(m: &MountGuard) -> Counts {
    let c = m.counters();
    let requests = c["requests"].as_object().expect("the daemon counts requests");
    requests
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(k, v)| *v > 0 && k != "forget")
        .collect()
}

fn minus(after: &Counts, before: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The requests `work` made the kernel send, less those of reading the
/// counters themselves (measured once, just before).
fn requests_during(m: &MountGuard, work: impl FnOnce()) -> Counts {
    let a = snapshot(m);
    let b = snapshot(m);
    let reading = minus(&b, &a);
    work();
    let c = snapshot(m);
    let mut d = minus(&c, &b);
    for (k, v) in &reading {
        if let Some(n) = d.get_mut(k) {
            *n = n.saturating_sub(*v);
        }
    }
    d.retain(|_, v| *v > 0);
    d
}

fn get(c: &Counts, kind: &str) -> u64 {
    c.get(kind).copied().unwrap_or(0)
}

/// A fresh mount with the defaults, its first open and listing made (the
/// kernel learns at those that opens are stateless).
fn warm_mount() -> MountGuard {
    let m = MountGuard::new("");
    fs::write(m.join("warm"), b"w").unwrap();
    fs::read(m.join("warm")).unwrap();
    fs::read_dir(m.path()).unwrap().for_each(drop);
    m
}

#[test]
fn counters_count_each_kind_of_request() {
    let m = warm_mount();
    let d = requests_during(&m, || {
        fs::create_dir(m.join("d")).unwrap();
        fs::write(m.join("d/f"), b"abc").unwrap();
        fs::remove_file(m.join("d/f")).unwrap();
        fs::remove_dir(m.join("d")).unwrap();
    });
    for kind in ["mkdir", "mknod", "write", "unlink", "rmdir"] {
        assert_eq!(get(&d, kind), 1, "{kind}: {d:?}");
    }
}

#[test]
fn requests_answered_without_the_core_are_counted_too() {
    // A fresh mount: the kernel learns from the first CREATE and OPEN,
    // both answered ENOSYS by the adapter, that opens are stateless.
    let m = MountGuard::new("");
    let d = requests_during(&m, || {
        fs::write(m.join("f"), b"abc").unwrap();
        assert_eq!(fs::read(m.join("f")).unwrap(), b"abc");
    });
    assert_eq!((get(&d, "create"), get(&d, "open")), (1, 1), "{d:?}");
    assert_eq!(get(&d, "mknod"), 1, "{d:?}");
}

#[test]
fn opens_and_closes_send_no_requests() {
    let m = warm_mount();
    let p = m.join("f");
    fs::write(&p, vec![7u8; 4096]).unwrap();
    let d = requests_during(&m, || {
        for i in 0..100 {
            drop(File::open(&p).unwrap());
            let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
            f.write_at(b"x", i).unwrap();
        }
    });
    for kind in ["open", "flush", "release", "lookup", "getattr"] {
        assert_eq!(get(&d, kind), 0, "stateless opens, cached entry ({kind}): {d:?}");
    }
    assert_eq!(get(&d, "write"), 100, "{d:?}");
}

#[test]
fn a_file_written_many_times_is_checked_for_capabilities_once() {
    let m = warm_mount();
    let d = requests_during(&m, || {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.join("f"))
            .unwrap();
        for i in 0..200u64 {
            f.write_at(&[1u8; 4096], i * 4096).unwrap();
        }
    });
    assert_eq!(get(&d, "write"), 200, "{d:?}");
    assert!(get(&d, "getxattr") <= 1, "HANDLE_KILLPRIV_V2: {d:?}");
    assert!(get(&d, "getattr") <= 1, "{d:?}");
}

#[test]
fn names_present_and_missing_are_looked_up_once() {
    let m = warm_mount();
    fs::write(m.join("here"), b"h").unwrap();
    // The write made the kernel's copy of the times stale: one GETATTR.
    fs::metadata(m.join("here")).unwrap();
    let d = requests_during(&m, || {
        for _ in 0..200 {
            fs::metadata(m.join("here")).unwrap();
            assert!(fs::metadata(m.join("missing")).is_err());
        }
    });
    assert_eq!(get(&d, "getattr"), 0, "attributes cached for an hour: {d:?}");
    assert!(get(&d, "lookup") <= 1, "negative entries: {d:?}");
}

#[test]
fn a_listing_brings_the_attributes_that_stat_needs() {
    let m = warm_mount();
    let dir = m.join("d");
    fs::create_dir(&dir).unwrap();
    // Written files: each write makes the kernel's copy of their times
    // stale, so only the listing can spare a GETATTR per stat.
    for i in 0..300 {
        fs::write(dir.join(format!("f{i}")), [3u8; 100]).unwrap();
    }
    let listed = requests_during(&m, || assert_eq!(fs::read_dir(&dir).unwrap().count(), 300));
    assert!(get(&listed, "readdirplus") >= 1, "{listed:?}");
    assert_eq!(get(&listed, "readdir"), 0, "{listed:?}");
    let stats = requests_during(&m, || {
        for i in 0..300 {
            assert_eq!(fs::metadata(dir.join(format!("f{i}"))).unwrap().len(), 100);
        }
    });
    assert_eq!(get(&stats, "lookup") + get(&stats, "getattr"), 0, "{stats:?}");
}

#[test]
fn a_small_file_costs_at_most_seven_requests() {
    let m = warm_mount();
    let dir = m.join("d");
    fs::create_dir(&dir).unwrap();
    let n = 200u64;
    let d = requests_during(&m, || {
        for i in 0..n {
            let p = dir.join(format!("small-{i}"));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .unwrap();
            f.write_all(&[5u8; 4096]).unwrap();
            drop(f);
            fs::remove_file(&p).unwrap();
        }
    });
    // LOOKUP (the new name), MKNOD, WRITE, UNLINK; the kernel's
    // capability check at a new inode's first write (GETXATTR); and its
    // permission checks of the directory it has just changed (GETATTR,
    // before the create and before the unlink).
    let budget = [
        ("lookup", 1),
        ("mknod", 1),
        ("write", 1),
        ("unlink", 1),
        ("getxattr", 1),
        ("getattr", 2),
    ];
    for (kind, per_file) in budget {
        assert!(get(&d, kind) <= per_file * n, "{kind}: {d:?}");
    }
    let total: u64 = d.values().sum();
    assert!(total <= 7 * n, "{total} requests for {n} files: {d:?}");
}

#[test]
fn pages_written_or_read_once_are_served_by_the_kernel() {
    let m = warm_mount();
    let p = m.join("f");
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let d = requests_during(&m, || {
        fs::write(&p, &data).unwrap();
        for _ in 0..3 {
            let mut v = Vec::new();
            File::open(&p).unwrap().read_to_end(&mut v).unwrap();
            assert!(v == data);
        }
    });
    assert_eq!(get(&d, "read"), 0, "keep_cache: {d:?}");
}

#[test]
fn large_writes_and_reads_go_in_one_mib_requests() {
    let m = warm_mount();
    let p = m.join("f");
    let d = requests_during(&m, || {
        let mut f = File::create(&p).unwrap();
        f.write_all(&vec![9u8; 8 << 20]).unwrap();
    });
    assert!(get(&d, "write") <= 8, "max_write 1 MiB: {d:?}");
    // One read of 8 MiB that bypasses the page cache.
    let d = requests_during(&m, || {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&p)
            .unwrap();
        let mut buf = vec![0u8; (8 << 20) + 4096];
        let skew = buf.as_ptr().align_offset(4096);
        let n = f.read_at(&mut buf[skew..skew + (8 << 20)], 0).unwrap();
        assert_eq!(n, 8 << 20);
    });
    assert!((1..=8).contains(&get(&d, "read")), "max_pages 256: {d:?}");
}
