//! `passthrough=on`: opens of spilled files handed to the kernel, which
//! then reads and writes the spill file itself. Contents, sizes, times and
//! mmap must look the same as when the daemon serves them, across
//! processes and handles, and the kernel's page cache must never serve
//! what a passthrough write has since replaced. Where the kernel refuses
//! (an ordinary user's daemon has no CAP_SYS_ADMIN), files open as before.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;
use std::time::Duration;

use crate::common::{eventually, used_bytes, MountGuard};
use crate::unprivileged::{ordinary_user, sh_as};

const MIB: usize = 1 << 20;

fn pattern(off: usize, len: usize, salt: u8) -> Vec<u8> {
    (off..off + len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 12) as u8 ^ salt)
        .collect()
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Reads the whole file in another process.
fn read_elsewhere(path: &std::path::Path) -> Vec<u8> {
    let out = Command::new("cat").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn spilled_files_are_passed_through_and_stay_coherent() {
    let m = MountGuard::new("passthrough=on,spool=1m");
    let path = m.join("f");
    let mut want = pattern(0, 4 * MIB, 1);
    fs::write(&path, &want).unwrap();
    assert_eq!(m.counters()["files_spilled"], 1, "4 MiB is past spool=1m");
    let mtime0 = mtime_ns(&fs::metadata(&path).unwrap());

    let a = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    // Root's daemon may pass files through on this kernel; anyone else's
    // falls back to serving them, and both must behave the same below.
    let expect_passthrough = u64::from(is_root());
    assert_eq!(m.counters()["passthrough_opens"], expect_passthrough);

    // A write through the passed-through handle, past the end: size and
    // contents seen by a stat, a second handle and another process.
    std::thread::sleep(Duration::from_millis(20));
    let tail = pattern(4 * MIB, MIB, 2);
    a.write_all_at(&tail, 4 * MIB as u64).unwrap();
    want.extend_from_slice(&tail);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 5 * MIB as u64);
    assert!(
        mtime_ns(&meta) > mtime0,
        "a passthrough write moves the modification time"
    );
    let mut b = File::open(&path).unwrap();
    assert_eq!(m.counters()["passthrough_opens"], 2 * expect_passthrough);
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert!(got == want, "second handle reads what the first wrote");
    assert!(read_elsewhere(&path) == want, "another process too");

    // Truncate through the handle; the other handle sees the new end.
    let cut = 4 * MIB + MIB / 2;
    a.set_len(cut as u64).unwrap();
    want.truncate(cut);
    assert_eq!(fs::metadata(&path).unwrap().len(), cut as u64);
    let mut one = [0u8; 1];
    assert_eq!(b.read_at(&mut one, cut as u64).unwrap(), 0, "nothing past the new end");

    // A store through a shared map is read by pread on the other handle.
    {
        let mut map = unsafe { memmap2::MmapOptions::new().len(4096).map_mut(&a) }.unwrap();
        map[..5].copy_from_slice(b"mmap!");
        map.flush().unwrap();
        want[..5].copy_from_slice(b"mmap!");
    }
    let mut five = [0u8; 5];
    b.read_exact_at(&mut five, 0).unwrap();
    assert_eq!(&five, b"mmap!");

    drop(a);
    drop(b);
    assert_eq!(m.counters()["passthrough_opens"], 0);
    assert_eq!(fs::metadata(&path).unwrap().len(), cut as u64);
    assert!(fs::read(&path).unwrap() == want, "after the last close");
    let bytes = m.counters()["bytes"].as_u64().unwrap();
    assert!(bytes >= cut as u64, "the kernel's blocks are charged: {bytes} bytes");
}

#[test]
fn what_the_kernel_writes_by_passthrough_counts_before_the_close() {
    let m = MountGuard::new("passthrough=on,spool=1m,size=256m");
    let path = m.join("big");
    fs::write(&path, pattern(0, 2 * MIB, 3)).unwrap();
    let before = used_bytes(m.path());
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    assert_eq!(m.counters()["passthrough_opens"], u64::from(is_root()));
    let block = pattern(0, MIB, 4);
    for i in 0..32 {
        f.write_all_at(&block, (2 + i) * MIB as u64).unwrap();
    }
    // Still open: df and status already count the 32 MiB.
    let used = used_bytes(m.path());
    assert!(
        used >= before + 32 * MIB as u64,
        "df does not count the open file's writes: {before} -> {used} bytes"
    );
    let bytes = m.counters()["bytes"].as_u64().unwrap();
    assert!(bytes >= 34 * MIB as u64, "status counts {bytes} bytes");
    drop(f);
}

#[test]
fn a_file_back_in_ram_after_passthrough_writes_holds_them_not_older_cached_pages() {
    let m = MountGuard::new("passthrough=on,spool=1m");
    let path = m.join("g");
    // Served by the daemon (a new file starts in RAM and spills while
    // open); reading it back fills the kernel's page cache with 'a'.
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&vec![b'a'; 2 * MIB], 0).unwrap();
        let mut buf = vec![0u8; 2 * MIB];
        f.read_exact_at(&mut buf, 0).unwrap();
    }
    assert_eq!(m.counters()["files_spilled"], 1);
    // Spilled and closed: this open may be passed through; its write
    // bypasses the kernel's cache of the file.
    {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[b'b'; 4096], 0).unwrap();
    }
    // Far below the threshold: back to RAM, so the next open is served by
    // the daemon again, and may use the kernel's cache. (At once, or at
    // the release of the passthrough open, which the kernel sends after
    // close returns.)
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(64 << 10)
        .unwrap();
    eventually(10, "64 KiB comes back to RAM", || m.counters()["files_ram"] == 1);
    let mut head = [0u8; 4];
    File::open(&path).unwrap().read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"bbbb", "the page cached before the passthrough write is stale");
    let mut rest = vec![0u8; (64 << 10) - 4096];
    File::open(&path).unwrap().read_exact_at(&mut rest, 4096).unwrap();
    assert!(
        rest.iter().all(|b| *b == b'a'),
        "and the bytes it did not write are the old ones"
    );
}

#[test]
fn where_the_kernel_refuses_passthrough_files_open_as_usual() {
    // An ordinary user's daemon lacks CAP_SYS_ADMIN: FUSE_DEV_IOC_BACKING_OPEN
    // fails with EPERM, and the daemon must serve the open instead.
    let user = ordinary_user();
    let m = MountGuard::with("passthrough=on,spool=1m", &[], user);
    let script = "dd if=/dev/zero bs=1M count=4 status=none | tr '\\0' a > f && \
                  printf b | dd of=f bs=1 seek=4194304 conv=notrunc status=none && \
                  stat -c %s f && tail -c 3 f && echo";
    assert_eq!(sh_as(user, m.path(), script), "4194305\naab\n");
}

#[test]
fn opens_racing_across_tier_changes_never_fail() {
    // The kernel answers EIO to an open whose kind (passed through or
    // served) differs from that of opens it still holds on the file. Race
    // every transition: a writer that keeps growing a fresh file past the
    // threshold through one served handle while readers open and close it,
    // then readers and writers opening the spilled file at once while
    // another truncates it back under the threshold now and then.
    let m = MountGuard::new("passthrough=on,spool=256k");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4u8 {
        let (dir, stop) = (m.path().to_path_buf(), std::sync::Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = dir.join(format!("f{}", rounds % 3));
                let f = match t {
                    // A writer: creates or reopens, grows, sometimes cuts.
                    0 | 1 => OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path),
                    _ => File::open(&path),
                };
                let f = match f {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("open of {} failed: {e}", path.display()),
                };
                if t < 2 {
                    let len = f.metadata().unwrap().len();
                    f.write_all_at(&[t; 65536], len).unwrap();
                    if rounds % 16 == 15 {
                        f.set_len(4096).unwrap();
                    }
                } else {
                    let mut buf = vec![0u8; 65536];
                    f.read_at(&mut buf, 0).unwrap();
                }
                rounds += 1;
            }
            rounds
        }));
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(rounds > 100, "{rounds} rounds");
    // Every open ends at its release, which the kernel sends after close
    // returns.
    eventually(10, "no passthrough open is left", || {
        m.counters()["passthrough_opens"] == 0
    });
    let c = m.counters();
    assert!(
        c["spills"].as_u64().unwrap() > 0 && c["returns"].as_u64().unwrap() > 0,
        "{c}"
    );
    if is_root() {
        assert!(
            c["passthrough_opened"].as_u64().unwrap() > 0,
            "the race included passthrough opens: {c}"
        );
    }
}
