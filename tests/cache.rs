//! The kernel caches pages, entries, attributes and listings for an hour
//! and opens files without asking the daemon: none of it may ever serve
//! stale data. Changes made through one descriptor, by another process,
//! by truncation, across tiers and by the daemon itself (expire=) are
//! seen at once everywhere.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::Command;

use crate::common::{eventually, MountGuard};

fn sh(script: &str, dir: &std::path::Path) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{script} failed");
}

fn read_all(p: &std::path::Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[test]
fn two_descriptors_in_one_process_agree() {
    let m = MountGuard::new("");
    let p = m.join("f");
    fs::write(&p, b"old old old").unwrap();
    let reader = File::open(&p).unwrap();
    let mut buf = [0u8; 11];
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"old old old");
    let writer = OpenOptions::new().write(true).open(&p).unwrap();
    writer.write_all_at(b"new", 4).unwrap();
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"old new old");
    writer.set_len(3).unwrap();
    assert_eq!(reader.metadata().unwrap().len(), 3);
    let mut rest = Vec::new();
    (&reader).read_to_end(&mut rest).unwrap();
    assert_eq!(read_all(&p), b"old");
}

#[test]
fn another_process_writes_truncates_and_appends() {
    let m = MountGuard::new("");
    let p = m.join("f");
    fs::write(&p, b"0123456789").unwrap();
    let held = File::open(&p).unwrap();
    assert_eq!(read_all(&p), b"0123456789");
    // Replaced by another process (O_TRUNC and a write).
    sh("printf abc > f", m.path());
    assert_eq!(read_all(&p), b"abc");
    let mut buf = [0u8; 16];
    assert_eq!(held.read_at(&mut buf, 0).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
    // Appended to by another process: size and bytes show at once.
    sh("printf defgh >> f", m.path());
    assert_eq!(fs::metadata(&p).unwrap().len(), 8);
    assert_eq!(held.read_at(&mut buf, 0).unwrap(), 8);
    assert_eq!(&buf[..8], b"abcdefgh");
    // Truncated by another process.
    sh("truncate -s 2 f", m.path());
    assert_eq!(held.metadata().unwrap().len(), 2);
    assert_eq!(held.read_at(&mut buf, 0).unwrap(), 2);
    assert_eq!(read_all(&p), b"ab");
    // Overwritten in the middle with dd (no truncation).
    sh(
        "printf 0123456789 > f && printf XY | dd of=f bs=1 seek=4 conv=notrunc status=none",
        m.path(),
    );
    assert_eq!(read_all(&p), b"0123XY6789");
    assert_eq!(held.read_at(&mut buf, 0).unwrap(), 10);
    assert_eq!(&buf[..10], b"0123XY6789");
}

#[test]
fn a_shared_mapping_sees_other_writers() {
    let m = MountGuard::new("");
    let p = m.join("f");
    fs::write(&p, vec![b'a'; 8192]).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    assert_eq!(map[5000], b'a');
    sh("printf Z | dd of=f bs=1 seek=5000 conv=notrunc status=none", m.path());
    assert_eq!(map[5000], b'Z');
    assert_eq!(read_all(&p)[5000], b'Z');
}

#[test]
fn a_read_right_after_a_write_returns_sees_its_bytes() {
    // The daemon answers a write before it copies the bytes, and holds the
    // file until they are in. A reader that skips the page cache
    // (O_DIRECT) asks the daemon at once, in RAM and after the spill at
    // 16 MiB; the second pass overwrites, so a stale read would show the
    // first pass's bytes rather than zeros.
    let m = MountGuard::new("spool=16m");
    let p = m.join("f");
    let writer = File::create(&p).unwrap();
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .unwrap();
    const BLOCK: usize = 4 << 20;
    let mut got = vec![0u8; BLOCK];
    for pass in 0..2u8 {
        for k in 0..12u8 {
            let fill = pass * 100 + k + 1;
            let off = u64::from(k) * BLOCK as u64;
            writer.write_all_at(&vec![fill; BLOCK], off).unwrap();
            reader.read_exact_at(&mut got, off).unwrap();
            let bad = got.iter().position(|&b| b != fill);
            assert_eq!(bad, None, "pass {pass}, block {k}: a stale byte right after the write");
        }
    }
    assert_eq!(m.counters()["files_spilled"], 1);
}

#[test]
fn spilled_and_returned_files_stay_coherent() {
    // Writes from another process move the file across tiers while this
    // one holds it open and has its pages cached.
    let m = MountGuard::new("spool=64k");
    let p = m.join("big");
    let mut f = File::create(&p).unwrap();
    f.write_all(&vec![1u8; 1 << 20]).unwrap();
    drop(f);
    let held = File::open(&p).unwrap();
    let mut all = Vec::new();
    (&held).read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 1 << 20);
    sh(
        "printf 2222 | dd of=big bs=1 seek=700000 conv=notrunc status=none",
        m.path(),
    );
    let mut buf = [0u8; 6];
    held.read_exact_at(&mut buf, 699_999).unwrap();
    assert_eq!(&buf, &[1, b'2', b'2', b'2', b'2', 1]);
    // Back to RAM: truncated far below the threshold, then grown again.
    sh("truncate -s 1000 big && printf tail >> big", m.path());
    assert_eq!(held.metadata().unwrap().len(), 1004);
    let mut back = Vec::new();
    File::open(&p).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 1004);
    assert!(back[..1000].iter().all(|&b| b == 1));
    assert_eq!(&back[1000..], b"tail");
}

#[test]
fn names_removed_by_the_daemon_vanish_from_cached_lookups_and_listings() {
    let m = MountGuard::new("expire=1s");
    fs::create_dir(m.join("d")).unwrap();
    fs::write(m.join("d/gone"), b"x").unwrap();
    // Cache the entry, its attributes and the listing.
    assert!(m.join("d/gone").exists());
    assert_eq!(fs::read_dir(m.join("d")).unwrap().count(), 1);
    eventually(15, "the expired file disappears from lookups", || {
        !m.join("d/gone").exists()
    });
    assert_eq!(fs::read_dir(m.join("d")).unwrap().count(), 0, "listing still shows it");
    // The name can be used again at once.
    fs::write(m.join("d/gone"), b"again").unwrap();
    assert_eq!(fs::read(m.join("d/gone")).unwrap(), b"again");
}

#[test]
fn created_files_are_freed_after_unlink_once_opens_are_stateless() {
    // The kernel stops sending OPEN after the first one is declined, and
    // then sends no RELEASE for created files either: nothing may wait
    // for one.
    let m = MountGuard::new("");
    fs::write(m.join("first"), b"x").unwrap();
    assert_eq!(fs::read(m.join("first")).unwrap(), b"x");
    for i in 0..50 {
        let p = m.join(format!("f{i}"));
        let mut f = File::create(&p).unwrap();
        f.write_all(&[7u8; 100_000]).unwrap();
        drop(f);
        fs::remove_file(&p).unwrap();
    }
    // Held open across the unlink: alive until closed, then freed.
    let mut held = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("held"))
        .unwrap();
    held.write_all(&[9u8; 300_000]).unwrap();
    fs::remove_file(m.join("held")).unwrap();
    let mut back = Vec::new();
    let mut r = &held;
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0)).unwrap();
    r.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 300_000);
    drop(held);
    eventually(10, "every unlinked byte is freed", || {
        let c = m.counters();
        // What is left: the one-byte file "first" (one small buffer).
        c["bytes"].as_u64().unwrap() < 4096 && c["open_handles"] == 0 && c["inodes"] == 2
    });
}

/// Names and sizes of `dir` as a listing reports them: `ls -l`'s
/// readdir followed by a stat of each name, which the kernel answers from
/// the attributes the listing brought (READDIRPLUS).
fn listed_sizes(dir: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.metadata().unwrap().len())
        })
        .collect()
}

#[test]
fn a_listing_reports_what_other_writers_did_since_the_last_stat() {
    let m = MountGuard::new("");
    fs::create_dir(m.join("d")).unwrap();
    for (name, len) in [("grow", 10), ("cut", 5000), ("same", 7)] {
        fs::write(m.join("d").join(name), vec![1u8; len]).unwrap();
    }
    let before = listed_sizes(&m.join("d"));
    assert_eq!(before["grow"], 10);
    let t0 = fs::metadata(m.join("d/grow")).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Changed by another process, and by a descriptor held here.
    sh(
        "head -c 70000 /dev/zero >> grow && : > cut && printf new > fresh",
        &m.join("d"),
    );
    let held = OpenOptions::new().write(true).open(m.join("d/same")).unwrap();
    held.write_all_at(b"longer than seven", 0).unwrap();
    let after = listed_sizes(&m.join("d"));
    assert_eq!(after["grow"], 70_010);
    assert_eq!(after["cut"], 0);
    assert_eq!(after["same"], 17);
    assert_eq!(after["fresh"], 3);
    assert!(fs::metadata(m.join("d/grow")).unwrap().modified().unwrap() > t0);
    assert_eq!(read_all(&m.join("d/grow")).len(), 70_010);
}

#[test]
fn files_a_listing_brought_into_the_kernel_are_freed_after_unlink() {
    // Every entry of a READDIRPLUS reply takes a lookup reference that the
    // kernel returns with FORGET; a miscount keeps deleted files forever
    // or frees one the kernel still uses.
    let m = MountGuard::new("");
    fs::create_dir(m.join("d")).unwrap();
    for i in 0..300 {
        fs::write(m.join(format!("d/f{i}")), vec![3u8; 5000]).unwrap();
    }
    let mut held = File::open(m.join("d/f7")).unwrap();
    for _ in 0..3 {
        assert_eq!(listed_sizes(&m.join("d")).len(), 300);
    }
    // The kernel forgets what nothing holds (root only; CI runs as root).
    fs::write("/proc/sys/vm/drop_caches", "2").expect("drop_caches needs root");
    for (name, len) in listed_sizes(&m.join("d")) {
        assert_eq!(len, 5000, "{name}");
    }
    for i in 0..300 {
        fs::remove_file(m.join(format!("d/f{i}"))).unwrap();
    }
    let mut back = Vec::new();
    held.read_to_end(&mut back).unwrap();
    assert_eq!(back, vec![3u8; 5000], "the open file lost its bytes");
    drop(held);
    eventually(10, "every listed and unlinked file is freed", || {
        let c = m.counters();
        c["bytes"].as_u64().unwrap() == 0 && c["inodes"] == 2
    });
}

#[test]
fn a_name_looked_up_before_it_existed_is_seen_once_made_in_any_way() {
    // A lookup of a missing name is cached as a negative entry for an
    // hour: every way of making the name must replace it.
    let m = MountGuard::new("");
    fs::write(m.join("src"), b"source").unwrap();
    let names = ["sh", "creat", "excl", "dir", "symlink", "link", "renamed", "fifo"];
    for name in names {
        assert!(!m.join(name).exists());
        assert!(fs::metadata(m.join(name)).is_err(), "{name} exists too early");
    }
    sh("printf made > sh", m.path());
    File::create(m.join("creat")).unwrap().write_all(b"made").unwrap();
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.join("excl"))
        .unwrap();
    fs::create_dir(m.join("dir")).unwrap();
    std::os::unix::fs::symlink("src", m.join("symlink")).unwrap();
    fs::hard_link(m.join("src"), m.join("link")).unwrap();
    fs::write(m.join("tmp"), b"moved").unwrap();
    fs::rename(m.join("tmp"), m.join("renamed")).unwrap();
    sh("mkfifo fifo", m.path());
    for name in names {
        assert!(m.join(name).exists(), "{name} is hidden by a cached lookup");
    }
    assert_eq!(read_all(&m.join("sh")), b"made");
    assert_eq!(read_all(&m.join("creat")), b"made");
    assert_eq!(read_all(&m.join("symlink")), b"source");
    assert_eq!(read_all(&m.join("link")), b"source");
    assert_eq!(read_all(&m.join("renamed")), b"moved");
    assert!(!m.join("tmp").exists());
    // And the other way: removed names are missing at once.
    fs::remove_file(m.join("sh")).unwrap();
    assert!(!m.join("sh").exists());
    let listed: Vec<String> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.len(), 8, "{listed:?}");
}
