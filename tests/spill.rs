//! The spill tier through a real mount: tier changes are invisible to
//! readers, writers and mmap; a full spill disk is ENOSPC for that writer
//! only; nothing is left on disk, even after SIGKILL.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{bin, eventually, LoopFs, MountGuard};

/// The byte at `off` of the test pattern: a function of the offset, so any
/// reader can check any range without shared state.
fn pattern(off: u64) -> u8 {
    let x = off.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (off as u8)
}

fn fill(off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(off + i as u64);
    }
}

fn check(off: u64, buf: &[u8]) {
    for (i, b) in buf.iter().enumerate() {
        assert_eq!(*b, pattern(off + i as u64), "byte at offset {}", off + i as u64);
    }
}

/// A thread that reads random ranges of `file` of up to `len` bytes,
/// within the first `written` bytes, and checks them against the pattern,
/// until `done` is set and it has checked at least `min_reads`.
fn checking_reader(
    file: File,
    len: usize,
    seed: u64,
    min_reads: u64,
    written: &Arc<AtomicU64>,
    done: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (written, done) = (Arc::clone(written), Arc::clone(done));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; len];
        let (mut x, mut reads) = (seed, 0u64);
        while !done.load(Ordering::Acquire) || reads < min_reads {
            let have = written.load(Ordering::Acquire);
            if have == 0 {
                continue;
            }
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let off = (x >> 20) % have;
            let n = buf.len().min((have - off) as usize);
            file.read_exact_at(&mut buf[..n], off).unwrap();
            check(off, &buf[..n]);
            reads += 1;
        }
    })
}

#[test]
fn tier_changes_under_concurrent_readers_writers_and_mmap() {
    let m = MountGuard::new("spool=256k,max_ram=2m");
    let path = m.join("moving");
    File::create(&path).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Another writer fills the RAM budget, so the spiller moves files too.
    let others = {
        let dir = m.path().to_path_buf();
        std::thread::spawn(move || {
            for i in 0..40u64 {
                let mut buf = vec![0u8; 200_000];
                fill(i * 1000, &mut buf);
                fs::write(dir.join(format!("other{i}")), &buf).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3u64)
        .map(|t| checking_reader(File::open(&path).unwrap(), 100_000, t + 1, 0, &written, &done))
        .collect();
    // The mmap reader maps the first 64 KiB before the file spills and
    // keeps checking it while it moves to disk and back.
    let mut first = vec![0u8; 65536];
    fill(0, &mut first);
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    f.write_all_at(&first, 0).unwrap();
    written.store(65536, Ordering::Release);
    // SAFETY: a fresh shared read-only mapping of 64 KiB of an open file.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            65536,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is 64 KiB long and stays mapped until munmap below.
    let view = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), 65536) };
    let mut off = 65536u64;
    let mut buf = vec![0u8; 128 << 10];
    while off < (8 << 20) {
        fill(off, &mut buf);
        f.write_all_at(&buf, off).unwrap();
        off += buf.len() as u64;
        written.store(off, Ordering::Release);
        check(0, view);
    }
    others.join().unwrap();
    let c = m.counters();
    assert!(c["spills"].as_u64().unwrap() >= 2, "{c}");
    // Back to RAM: truncate far below the threshold, mmap still right.
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    f.set_len(32 << 10).unwrap();
    // (Pages past the new end must not be touched: POSIX says SIGBUS.)
    check(0, &view[..32 << 10]);
    let c = m.counters();
    assert!(c["returns"].as_u64().unwrap() >= 1, "{c}");
    let mut back = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut back).unwrap();
    check(0, &back);
    assert_eq!(back.len(), 32 << 10);
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(map, 65536) };
    for i in 0..40u64 {
        let data = fs::read(m.join(format!("other{i}"))).unwrap();
        check(i * 1000, &data);
    }
}

#[test]
fn a_full_spill_disk_gives_that_writer_enospc_and_harms_nothing_else() {
    let disk = LoopFs::new(48);
    let mut m = MountGuard::new(&format!(
        "size=1g,spool=1m,max_ram=4m,spill_dir={}",
        disk.path().display()
    ));
    let mut keep = vec![0u8; 3 << 20];
    fill(0, &mut keep);
    fs::write(m.join("keep"), &keep).unwrap();
    let mut f = File::create(m.join("filler")).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    fill(7, &mut chunk);
    let mut written = 0u64;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 100 << 20, "the disk never filled");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(m.daemon_alive());
    assert_eq!(fs::read(m.join("keep")).unwrap(), keep);
    drop(f);
    fs::remove_file(m.join("filler")).unwrap();
    // The space comes back, and writing works again.
    eventually(10, "the spill disk has room again", || disk.used() < 10 << 20);
    fs::write(m.join("again"), &chunk).unwrap();
    assert_eq!(fs::read(m.join("again")).unwrap(), chunk);
    assert!(m.unmount().success());
}

#[test]
fn enospc_on_a_spilled_file_never_zeroes_what_it_held() {
    let disk = LoopFs::new(48);
    let mut m = MountGuard::new(&format!("size=1g,spool=64k,spill_dir={}", disk.path().display()));
    let path = m.join("f");
    let mut head = vec![0u8; 3 << 20];
    fill(0, &mut head);
    fs::write(&path, &head).unwrap();
    // A block past the end of what the file reserved so far.
    let far = (3 << 20) + (512 << 10);
    let mut block = vec![0u8; 4096];
    fill(far, &mut block);
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    f.write_all_at(&block, far).unwrap();
    // The spill disk full to its last block, by someone else.
    let hog_path = disk.path().join("hog");
    let mut hog = File::create(&hog_path).unwrap();
    let page = vec![1u8; 4096];
    while hog.write_all(&page).is_ok() {}
    drop(hog);
    // Appending at 3 MiB asks for blocks around the far one; the disk
    // has none, and the far block must survive the refusal.
    let err = f.write_all_at(&[9u8; 4096], 3 << 20).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // Read past the kernel's page cache: the daemon's bytes.
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    let mut got = vec![0u8; 4096];
    direct.read_exact_at(&mut got, far).unwrap();
    check(far, &got);
    let mut got = vec![0u8; 3 << 20];
    direct.read_exact_at(&mut got, 0).unwrap();
    check(0, &got);
    fs::remove_file(&hog_path).unwrap();
    assert!(m.daemon_alive());
}

const MARKER: &[u8] = b"tmpfsd-kill9-marker-2f1c9a";

#[test]
fn a_full_copy_on_write_spill_disk_loses_no_answered_write() {
    // On btrfs a write into blocks that fallocate reserved can still run
    // out of room (an overwrite is written elsewhere): there each write
    // must be copied before it is answered.
    let disk = LoopFs::btrfs(128);
    let m = MountGuard::new(&format!("spool=64k,spill_dir={}", disk.path().display()));
    let f = new_rw(&m.join("f"));
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        fill(size, &mut buf);
        match f.write_at(&buf, size) {
            Ok(n) => size += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
    }
    assert!(size > 64 << 20, "only {size} bytes before ENOSPC");
    // Every last block goes to a second file.
    let g = File::create(m.join("g")).unwrap();
    let mut gsize = 0u64;
    while let Ok(n) = g.write_at(&[3u8; 4096], gsize) {
        gsize += n as u64;
    }
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // Overwrite f with other bytes: what each write says it took must be
    // there afterwards, and the rest must still be the old bytes.
    let mut taken = vec![0usize; size.div_ceil(1 << 20) as usize];
    let (mut refused, mut short) = (0, 0);
    for (i, t) in taken.iter_mut().enumerate() {
        let off = (i as u64) << 20;
        let len = (size - off).min(1 << 20) as usize;
        let new = vec![0xA5u8; len];
        match f.write_at(&new, off) {
            Ok(n) => {
                short += usize::from(n < len);
                *t = n;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "overwriting at {off}: {e}");
                refused += 1;
            }
        }
    }
    eprintln!("btrfs spill disk: {size} bytes, then {gsize} in a second file; overwrites refused {refused}, short {short}, of {}", taken.len());
    assert!(
        refused > 0,
        "the full disk refused no overwrite: the test proves nothing"
    );
    f.sync_all().unwrap();
    let mut got = vec![0u8; 1 << 20];
    for (i, t) in taken.iter().enumerate() {
        let off = (i as u64) << 20;
        let len = (size - off).min(1 << 20) as usize;
        f.read_exact_at(&mut got[..len], off).unwrap();
        assert!(
            got[..*t].iter().all(|b| *b == 0xA5),
            "an answered write at {off} is lost"
        );
        check(off + *t as u64, &got[*t..len]);
    }
}

#[test]
fn after_sigkill_no_file_data_is_left_on_the_spill_disk() {
    let mut disk = LoopFs::new(48);
    let mut m = MountGuard::new(&format!("spool=64k,spill_dir={}", disk.path().display()));
    let data: Vec<u8> = MARKER.iter().copied().cycle().take(4 << 20).collect();
    fs::write(m.join("secret"), &data).unwrap();
    let c = m.counters();
    assert!(c["files_spilled"].as_u64().unwrap() >= 1, "{c}");
    let spill_dirs = || {
        fs::read_dir(disk.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "lost+found")
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(spill_dirs().len(), 1);
    m.kill9();
    // The killed daemon could not remove its directory, but it is empty.
    for d in fs::read_dir(disk.path()).unwrap().flatten() {
        if d.file_name() != "lost+found" {
            assert_eq!(
                fs::read_dir(d.path()).unwrap().count(),
                0,
                "files left in {}",
                d.path().display()
            );
        }
    }
    drop(m);
    // The next mount removes the stale directory.
    let m2 = MountGuard::new(&format!("spill_dir={}", disk.path().display()));
    let live = spill_dirs();
    let pid2 = m2.daemon_pid();
    assert_eq!(live.len(), 1, "the stale directory was not removed: {live:?}");
    drop(m2);
    let left = spill_dirs();
    // Failed once under a loaded full suite and never alone: the pid tells
    // whether the directory left is the second daemon's own.
    assert!(
        left.is_empty(),
        "unmount must remove the spill directory: {left:?} left (second daemon was pid {pid2})"
    );
    let image = disk.unmount_and_read_image();
    let found = image.windows(MARKER.len()).any(|w| w == MARKER);
    assert!(!found, "file contents found in the raw spill image");
}

#[test]
fn a_4gib_stream_with_max_ram_256m_reads_back_and_rss_stays_bounded() {
    let m = MountGuard::new("max_ram=256m");
    let path = m.join("stream");
    let total: u64 = 4 << 30;
    let mut buf = vec![0u8; 1 << 20];
    let mut f = File::create(&path).unwrap();
    let mut off = 0;
    while off < total {
        fill_fast(off, &mut buf);
        f.write_all(&buf).unwrap();
        off += buf.len() as u64;
    }
    drop(f);
    let mut f = File::open(&path).unwrap();
    let mut got = vec![0u8; 1 << 20];
    off = 0;
    while off < total {
        f.read_exact(&mut got).unwrap();
        fill_fast(off, &mut buf);
        assert!(got == buf, "mismatch in the MiB at {off}");
        off += got.len() as u64;
    }
    let mut extra = [0u8; 1];
    assert_eq!(f.read(&mut extra).unwrap(), 0);
    let c = m.counters();
    assert_eq!(c["files_spilled"], 1, "{c}");
    let hwm_kb = m.proc_kb("VmHWM");
    eprintln!("4 GiB stream with max_ram=256m: daemon peak RSS {hwm_kb} kB");
    assert!(
        hwm_kb < (256 + 64) * 1024,
        "daemon peak RSS {hwm_kb} kB with max_ram=256m"
    );
    fs::remove_file(&path).unwrap();
}

#[test]
fn memory_of_deleted_files_goes_back_once_the_mount_is_idle() {
    let m = MountGuard::new("spool=1g,max_ram=2g");
    let path = m.join("big");
    let mut buf = vec![0u8; 1 << 20];
    let mut f = File::create(&path).unwrap();
    for i in 0..384u64 {
        fill_fast(i << 20, &mut buf);
        f.write_all(&buf).unwrap();
    }
    drop(f);
    let held_kb = m.proc_kb("VmRSS");
    assert!(held_kb > 300 * 1024, "a 384 MiB file in RAM, daemon RSS {held_kb} kB");
    fs::remove_file(&path).unwrap();
    // Kept a few seconds for reuse, then handed back.
    eventually(30, "the daemon gives the deleted file's memory back", || {
        m.proc_kb("VmRSS") < 64 * 1024
    });
}

#[test]
fn many_small_files_over_max_ram_are_packed_with_few_descriptors() {
    // 10,000 files of 6 KiB: 60 MB, far over max_ram=8m, and each too
    // small for a spill file (and a descriptor) of its own.
    let m = MountGuard::new("max_ram=8m");
    let dir = m.join("d");
    fs::create_dir(&dir).unwrap();
    let mut buf = vec![0u8; 6 << 10];
    for i in 0..10_000u64 {
        fill(i << 16, &mut buf);
        fs::write(dir.join(i.to_string()), &buf).unwrap();
    }
    eventually(30, "RAM use back under max_ram", || {
        m.counters()["ram_bytes"].as_u64().unwrap() <= 8 << 20
    });
    let c = m.counters();
    assert!(c["files_packed"].as_u64().unwrap() > 8_000, "{c}");
    assert_eq!(c["pack_files"], 1, "{c}");
    let fds = fs::read_dir(format!("/proc/{}/fd", m.pid())).unwrap().count();
    assert!(fds < 64, "the daemon holds {fds} descriptors");
    let rss_kb = m.proc_kb("VmRSS");
    eprintln!("10,000 files of 6 KiB with max_ram=8m: daemon RSS {rss_kb} kB, {fds} descriptors, {c}");
    assert!(
        rss_kb < 40 * 1024,
        "daemon RSS {rss_kb} kB holding 60 MB of packed files"
    );
    for i in 0..10_000u64 {
        let got = fs::read(dir.join(i.to_string())).unwrap();
        assert_eq!(got.len(), 6 << 10, "file {i}");
        check(i << 16, &got);
    }
    // Grown past a slot, a packed file moves out with its bytes.
    let mut f = OpenOptions::new().append(true).open(dir.join("7")).unwrap();
    f.write_all(&[b'!'; 100_000]).unwrap();
    drop(f);
    let got = fs::read(dir.join("7")).unwrap();
    check(7 << 16, &got[..6 << 10]);
    assert!(got[6 << 10..].iter().all(|b| *b == b'!') && got.len() == (6 << 10) + 100_000);
    fs::remove_dir_all(&dir).unwrap();
    eventually(10, "every byte given back", || m.counters()["bytes"] == 0);
}

#[test]
fn small_files_keep_their_bytes_while_the_spiller_moves_them_between_all_tiers() {
    // A 256 KiB budget and files of up to ~100 KiB: the spiller packs,
    // spills and brings files back while four writers change them.
    let m = MountGuard::new("max_ram=256k,spool=1m");
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let dir = m.path().to_path_buf();
            std::thread::spawn(move || churn_small_files(&dir, w, 3000))
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let c = m.counters();
    eprintln!("four writers of small files under max_ram=256k: {c}");
    assert!(
        c["spills"].as_u64().unwrap() > 100 && c["returns"].as_u64().unwrap() > 100,
        "{c}"
    );
    // Writers past the budget by a sixteenth move their own file out, so
    // RAM passes 272 KiB by what four writers and four returns add at once
    // (two 64 KiB chunks each at most): 1.3 MiB. Seen: 0.80 to 0.94 MB.
    assert!(c["ram_high_water"].as_u64().unwrap() < 1536 << 10, "{c}");
}

/// Random writes, truncates, deletes and reads of 20 files named for
/// worker `w` in `dir`, each read checked against a model of the bytes.
fn churn_small_files(dir: &std::path::Path, w: u64, ops: usize) {
    let mut x = 0x9E37_79B9_7F4A_7C15 ^ (w + 1);
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let open_or_create = |path: &std::path::Path| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    };
    let mut model: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    for _ in 0..ops {
        let k = next(20);
        let path = dir.join(format!("w{w}-{k}"));
        match next(20) {
            0..=6 => {
                let (off, n, b) = (next(90_000) as usize, next(9000) as usize, next(256) as u8);
                let f = open_or_create(&path);
                f.write_all_at(&vec![b; n], off as u64).unwrap();
                let cur = model.entry(k).or_default();
                if n > 0 {
                    if cur.len() < off + n {
                        cur.resize(off + n, 0);
                    }
                    cur[off..off + n].fill(b);
                }
            }
            7..=9 => {
                let len = next(80_000);
                let f = open_or_create(&path);
                f.set_len(len).unwrap();
                model.entry(k).or_default().resize(len as usize, 0);
            }
            10 => {
                if model.remove(&k).is_some() {
                    fs::remove_file(&path).unwrap();
                }
            }
            _ => {
                if let Some(want) = model.get(&k) {
                    assert!(fs::read(&path).unwrap() == *want, "{}: bytes differ", path.display());
                }
            }
        }
    }
    for (k, want) in &model {
        let path = dir.join(format!("w{w}-{k}"));
        assert!(
            fs::read(&path).unwrap() == *want,
            "{}: bytes differ at the end",
            path.display()
        );
    }
}

/// An empty file at `path`, open for reading and writing.
fn new_rw(path: &std::path::Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

/// A cheap pattern for large streams: one pseudo-random word per 8 bytes.
fn fill_fast(off: u64, buf: &mut [u8]) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        let pos = off / 8 + i as u64;
        w.copy_from_slice(&pos.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    }
}

#[test]
fn unlinked_spilled_files_are_freed_on_last_close() {
    let disk = LoopFs::new(48);
    let m = MountGuard::new(&format!("spool=64k,spill_dir={}", disk.path().display()));
    let before = disk.used();
    let mut f = new_rw(&m.join("f"));
    f.write_all(&vec![1u8; 8 << 20]).unwrap();
    // Under writeback=on the bytes would reach the daemon only by fsync.
    f.sync_all().unwrap();
    fs::remove_file(m.join("f")).unwrap();
    assert!(
        disk.used() >= before + (8 << 20),
        "the open file's bytes must still be there"
    );
    let mut back = vec![0u8; 8 << 20];
    f.read_exact_at(&mut back, 0).unwrap();
    assert!(back.iter().all(|b| *b == 1));
    drop(f);
    eventually(10, "the spill disk is back where it was", || {
        disk.used() <= before + (1 << 20)
    });
}

#[test]
fn delete_on_close_removes_a_file_at_its_last_close() {
    let m = MountGuard::new("delete_on_close");
    let mut f = File::create(m.join("t")).unwrap();
    f.write_all(b"temporary").unwrap();
    let g = File::open(m.join("t")).unwrap();
    drop(f);
    assert!(m.join("t").exists(), "removed while still open");
    drop(g);
    eventually(10, "the file is removed", || !m.join("t").exists());
    fs::create_dir(m.join("dir")).unwrap();
    assert!(m.join("dir").exists(), "directories are not files");
}

#[test]
fn expire_removes_untouched_files_but_never_an_open_one() {
    let m = MountGuard::new("expire=1s");
    fs::write(m.join("old"), b"x").unwrap();
    let open = File::create(m.join("open")).unwrap();
    eventually(15, "the untouched file expires", || !m.join("old").exists());
    assert!(m.join("open").exists(), "an open file expired");
    drop(open);
    eventually(15, "the closed file expires too", || !m.join("open").exists());
}

#[test]
fn bad_spill_options_are_refused_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"").unwrap();
    let d = dir.to_str().unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("spill_dir=/nonexistent/x".into(), "spill_dir"),
        (format!("spill_dir={}", file.display()), "not a directory"),
        ("spill_dir=/dev/shm".into(), "memory-backed"),
        ("spill_dir=/proc".into(), "cannot create"),
        ("spool=0".into(), "greater than zero"),
        ("max_ram=0".into(), "greater than zero"),
        ("expire=0".into(), "greater than zero"),
        ("expire=10x".into(), "unknown unit"),
        ("spool=2g,size=1g".into(), "above size="),
        ("max_ram=lots".into(), "not a size"),
    ];
    for (opt, needle) in cases {
        let out = std::process::Command::new(bin())
            .args(["mount", d, "-o", &opt])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{opt} was accepted");
        assert_eq!(err.lines().count(), 1, "{opt}: {err}");
        assert!(err.contains(needle), "{opt}: {err:?} does not say {needle:?}");
    }
    assert!(tmpfsd::sys::mount_at(&dir.canonicalize().unwrap()).unwrap().is_none());
}

#[test]
fn unmount_returns_once_every_spill_byte_is_freed() {
    let disk = LoopFs::new(48);
    let m = MountGuard::new(&format!("spool=64k,spill_dir={}", disk.path().display()));
    let before = disk.used();
    fs::write(m.join("big"), vec![7u8; 24 << 20]).unwrap();
    assert!(disk.used() >= before + (24 << 20), "the file is not on the spill disk");
    let out = Command::new(bin()).arg("unmount").arg(m.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No waiting here: once unmount has returned, everything is gone.
    let left: Vec<_> = fs::read_dir(disk.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("tmpfsd-spill-"))
        .collect();
    assert!(left.is_empty(), "spill directory left after unmount returned: {left:?}");
    assert!(
        disk.used() <= before + (1 << 20),
        "spill disk still holds {} bytes after unmount returned",
        disk.used() - before
    );
    assert!(m.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn a_large_file_crossing_the_spool_threshold_is_copied_out_while_in_use() {
    // Holding 40 MiB (32 MiB or more) when it crosses spool=40m, the file
    // is copied out by the spool thread while it stays in RAM: the writer
    // goes on, and readers that skip the page cache (O_DIRECT: answered by
    // the daemon) check what they read while the file moves.
    const MIB: u64 = 1 << 20;
    let m = MountGuard::new("spool=40m");
    let path = m.join("big");
    let f = File::create(&path).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let direct = || {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .unwrap()
    };
    let readers: Vec<_> = (0..2u64)
        .map(|t| checking_reader(direct(), 256 << 10, t + 7, 10, &written, &done))
        .collect();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..64 {
        fill(i * MIB, &mut buf);
        f.write_all_at(&buf, i * MIB).unwrap();
        written.store((i + 1) * MIB, Ordering::Release);
    }
    eventually(30, "the file is spilled", || m.counters()["files_spilled"] == 1);
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    let c = m.counters();
    assert_eq!(
        (c["spills"].as_u64(), c["ram_bytes"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );
    // Past the threshold in RAM: the write that crossed it was not held
    // up by a move of the whole file.
    assert!(c["ram_high_water"].as_u64().unwrap() > 40 * MIB, "{c}");
    let mut back = Vec::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back.len() as u64, 64 * MIB);
    check(0, &back);
}
