//! The temp-file workloads of `tmpfsd bench`. Each runs in a fresh scratch
//! directory on the target, leaves nothing behind, and returns its figures.
//! They use plain std I/O, as programs do: no O_DIRECT, no fsync (temp
//! files are not meant to be durable), single-threaded.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Set by the signal thread: every workload stops at its next step.
pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sizes of the workloads (`--quick` shrinks them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    /// Sequential file, bytes.
    pub seq: u64,
    /// Random-I/O file, bytes.
    pub rand: u64,
    /// Seconds per random-I/O measurement.
    pub rand_time: Duration,
    /// Files for small_files.
    pub small_n: u64,
    /// Files for the one-directory workload.
    pub dir_n: u64,
    /// stat calls, and open+close pairs, of one file.
    pub meta_n: u64,
    /// getxattr calls for a missing name.
    pub probe_n: u64,
    /// Iterations of the NamedTemporaryFile loop.
    pub named_n: u64,
    /// Iterations of the SpooledTemporaryFile loop.
    pub spooled_n: u64,
    /// Files in the synthetic source tree.
    pub tree_files: u64,
}

impl Sizes {
    pub(super) const FULL: Sizes = Sizes {
        seq: 1 << 30,
        rand: 256 << 20,
        rand_time: Duration::from_secs(3),
        small_n: 10_000,
        dir_n: 20_000,
        meta_n: 200_000,
        probe_n: 20_000,
        named_n: 2_000,
        spooled_n: 30,
        tree_files: 6_000,
    };
    pub(super) const QUICK: Sizes = Sizes {
        seq: 256 << 20,
        rand: 64 << 20,
        rand_time: Duration::from_secs(1),
        small_n: 2_000,
        dir_n: 5_000,
        meta_n: 50_000,
        probe_n: 5_000,
        named_n: 500,
        spooled_n: 8,
        tree_files: 1_500,
    };
}

/// Whether more of a figure is better (throughput) or less (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Better {
    Higher,
    Lower,
}

/// One figure a workload measured.
#[derive(Debug, Clone)]
pub(super) struct Figure {
    pub metric: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub value: f64,
}

fn rate(metric: &'static str, unit: &'static str, count: f64, took: Duration) -> Figure {
    Figure {
        metric,
        unit,
        better: Better::Higher,
        value: count / took.as_secs_f64().max(1e-9),
    }
}

fn seconds(metric: &'static str, took: Duration) -> Figure {
    Figure {
        metric,
        unit: "s",
        better: Better::Lower,
        value: took.as_secs_f64(),
    }
}

/// The workloads, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    Seq,
    Rand,
    Small,
    Dir,
    Meta,
    Probe,
    Named,
    Spooled,
    Tree,
}

impl Workload {
    pub(super) const ALL: [Workload; 9] = [
        Workload::Seq,
        Workload::Rand,
        Workload::Small,
        Workload::Dir,
        Workload::Meta,
        Workload::Probe,
        Workload::Named,
        Workload::Spooled,
        Workload::Tree,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Workload::Seq => "seq",
            Workload::Rand => "rand",
            Workload::Small => "small",
            Workload::Dir => "dir",
            Workload::Meta => "meta",
            Workload::Probe => "probe",
            Workload::Named => "named",
            Workload::Spooled => "spooled",
            Workload::Tree => "tree",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }

    /// How many of what the workload does, to count its requests per
    /// unit; none for one that runs for a time rather than a count.
    pub(super) fn units(self, sizes: &Sizes) -> Option<(u64, &'static str)> {
        match self {
            // Each MiB written (and then read back).
            Workload::Seq => Some((sizes.seq.div_ceil(MIB as u64), "MiB")),
            Workload::Rand => None,
            Workload::Small => Some((sizes.small_n, "file")),
            Workload::Dir => Some((sizes.dir_n, "file")),
            // A stat and an open + close of the one name, each `n` times.
            Workload::Meta => Some((2 * sizes.meta_n, "call")),
            Workload::Probe => Some((sizes.probe_n, "call")),
            Workload::Named => Some((sizes.named_n, "file")),
            Workload::Spooled => Some((sizes.spooled_n, "file")),
            Workload::Tree => Some((sizes.tree_files, "file")),
        }
    }

    /// Runs the workload in `dir` (an empty scratch directory).
    pub(super) fn run(self, dir: &Path, sizes: &Sizes, tarball: &[u8]) -> Result<Vec<Figure>> {
        match self {
            Workload::Seq => sequential(dir, sizes.seq),
            Workload::Rand => random(dir, sizes.rand, sizes.rand_time),
            Workload::Small => small_files(dir, sizes.small_n),
            Workload::Dir => one_directory(dir, sizes.dir_n),
            Workload::Meta => hot_name(dir, sizes.meta_n),
            Workload::Probe => uncached_calls(dir, sizes.probe_n),
            Workload::Named => named_tempfiles(dir, sizes.named_n),
            Workload::Spooled => spooled_tempfiles(dir, sizes.spooled_n),
            Workload::Tree => untar_and_remove(dir, tarball),
        }
    }
}

/// Content that no layer can special-case (not zeros, not repeating).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Touches and frees `bytes` of memory, so that the file system under test,
/// not a host that reclaimed idle guest memory, pays for the next writes.
pub(super) fn prewarm(bytes: u64) {
    let Ok(len) = usize::try_from(bytes) else { return };
    let mut v: Vec<u8> = Vec::with_capacity(len);
    v.resize(len, 1);
    std::hint::black_box(&v);
}

const MIB: usize = 1 << 20;

fn sequential(dir: &Path, size: u64) -> Result<Vec<Figure>> {
    let path = dir.join("seq.dat");
    let block = pattern(MIB, 1);
    prewarm(size + (256 << 20));
    let t = Instant::now();
    let mut f = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut done = 0u64;
    while done < size {
        check_interrupt()?;
        f.write_all(&block)?;
        done += MIB as u64;
    }
    drop(f);
    let write = t.elapsed();
    let mut buf = vec![0u8; MIB];
    let t = Instant::now();
    let mut f = File::open(&path)?;
    let mut got = 0u64;
    loop {
        check_interrupt()?;
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let read = t.elapsed();
    drop(f);
    fs::remove_file(&path)?;
    if got != done {
        bail!("read {got} bytes back from {}, wrote {done}", path.display());
    }
    Ok(vec![
        rate("seq_write", "MB/s", done as f64 / 1e6, write),
        rate("seq_read", "MB/s", got as f64 / 1e6, read),
    ])
}

/// xorshift64*: reproducible offsets without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn random(dir: &Path, size: u64, time: Duration) -> Result<Vec<Figure>> {
    const BS: u64 = 4096;
    let path = dir.join("rand.dat");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = pattern(MIB, 2);
    let mut off = 0;
    while off < size {
        f.write_all_at(&block, off)?;
        off += MIB as u64;
    }
    let blocks = size / BS;
    let mut rng = Rng(0x5EED);
    let small = pattern(BS as usize, 3);
    let mut buf = vec![0u8; BS as usize];
    let mut figures = Vec::new();
    for (metric, write) in [("rand_write_4k", true), ("rand_read_4k", false)] {
        let t = Instant::now();
        let mut ops = 0u64;
        while t.elapsed() < time {
            check_interrupt()?;
            for _ in 0..256 {
                let at = (rng.next() % blocks) * BS;
                if write {
                    f.write_all_at(&small, at)?;
                } else {
                    f.read_exact_at(&mut buf, at)?;
                }
            }
            ops += 256;
        }
        figures.push(rate(metric, "IOPS", ops as f64, t.elapsed()));
    }
    drop(f);
    fs::remove_file(&path)?;
    Ok(figures)
}

fn small_files(dir: &Path, n: u64) -> Result<Vec<Figure>> {
    let data = pattern(4096, 4);
    let t = Instant::now();
    for i in 0..n {
        if i % 256 == 0 {
            check_interrupt()?;
        }
        let path = dir.join(format!("s{i}"));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(&data)?;
        drop(f);
        fs::remove_file(&path)?;
    }
    Ok(vec![rate("small_create_unlink", "ops/s", n as f64, t.elapsed())])
}

fn one_directory(dir: &Path, n: u64) -> Result<Vec<Figure>> {
    let sub = dir.join("d");
    fs::create_dir(&sub)?;
    let data = pattern(4096, 5);
    let name = |i: u64| sub.join(format!("file-{i:08}"));
    let t = Instant::now();
    for i in 0..n {
        if i % 256 == 0 {
            check_interrupt()?;
        }
        let mut f = OpenOptions::new().write(true).create_new(true).open(name(i))?;
        f.write_all(&data)?;
    }
    let create = t.elapsed();
    let t = Instant::now();
    let listed = fs::read_dir(&sub)?.filter(|e| e.is_ok()).count() as u64;
    let list = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let size = fs::metadata(name(i))?.len();
        if size != data.len() as u64 {
            bail!("{} has size {size}, wrote {}", name(i).display(), data.len());
        }
    }
    let stat = t.elapsed();
    check_interrupt()?;
    let t = Instant::now();
    for i in 0..n {
        fs::remove_file(name(i))?;
    }
    fs::remove_dir(&sub)?;
    let unlink = t.elapsed();
    if listed != n {
        bail!("listing {} found {listed} entries, created {n}", sub.display());
    }
    Ok(vec![
        rate("dir_create", "ops/s", n as f64, create),
        rate("dir_list", "entries/s", n as f64, list),
        rate("dir_stat", "ops/s", n as f64, stat),
        rate("dir_unlink", "ops/s", n as f64, unlink),
    ])
}

/// One name used over and over, as a build's or a script's temp files
/// are: stat it, then open and close it (read-only), `n` times each.
fn hot_name(dir: &Path, n: u64) -> Result<Vec<Figure>> {
    let path = dir.join("hot");
    fs::write(&path, b"x").with_context(|| format!("cannot create {}", path.display()))?;
    let t = Instant::now();
    for i in 0..n {
        if i % 4096 == 0 {
            check_interrupt()?;
        }
        let size = fs::metadata(&path)?.len();
        if size != 1 {
            bail!("{} has size {size}, wrote 1", path.display());
        }
    }
    let stat = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        if i % 4096 == 0 {
            check_interrupt()?;
        }
        drop(File::open(&path)?);
    }
    let open = t.elapsed();
    fs::remove_file(&path)?;
    Ok(vec![
        rate("stat_hot", "ops/s", n as f64, stat),
        rate("open_close", "ops/s", n as f64, open),
    ])
}

/// A call no cache answers, `n` times: `getxattr` of a name the file does
/// not have. The kernel caches no extended attributes of a FUSE file, so
/// on a FUSE file system that has them each call is one round trip to the
/// daemon, the price of every request the kernel cannot answer itself;
/// on tmpfs or a disk it is a system call (and on a FUSE file system
/// without extended attributes too, after the first). Its rate, with the
/// requests per unit of work below the table, says what the other figures
/// can be.
fn uncached_calls(dir: &Path, n: u64) -> Result<Vec<Figure>> {
    let path = dir.join("probe");
    fs::write(&path, b"").with_context(|| format!("cannot create {}", path.display()))?;
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let t = Instant::now();
    for i in 0..n {
        if i % 4096 == 0 {
            check_interrupt()?;
        }
        match tmpfsd::sys::getxattr(&c_path, c"user.tmpfsd-bench.missing", &mut []) {
            Ok(_) => bail!("{} has an attribute it was never given", path.display()),
            // A file system without extended attributes says so instead.
            Err(e) if matches!(e.raw_os_error(), Some(NO_ATTRIBUTE | libc::ENOTSUP)) => {}
            Err(e) => return Err(e).with_context(|| format!("getxattr on {}", path.display())),
        }
    }
    let took = t.elapsed();
    fs::remove_file(&path)?;
    Ok(vec![rate("getxattr_missing", "ops/s", n as f64, took)])
}

/// The errno of `getxattr` for a missing attribute.
#[cfg(target_os = "linux")]
const NO_ATTRIBUTE: i32 = libc::ENODATA;
/// The errno of `getxattr` for a missing attribute.
#[cfg(target_os = "macos")]
const NO_ATTRIBUTE: i32 = libc::ENOATTR;

/// What Python's NamedTemporaryFile does: a random name created with
/// O_EXCL and mode 0600, written, read back, closed and unlinked.
fn named_tempfiles(dir: &Path, n: u64) -> Result<Vec<Figure>> {
    let data = pattern(64 << 10, 6);
    let mut back = vec![0u8; data.len()];
    let mut rng = Rng(0xA11CE);
    prewarm(256 << 20);
    let t = Instant::now();
    for i in 0..n {
        if i % 64 == 0 {
            check_interrupt()?;
        }
        let path = dir.join(format!("tmp{:012x}", rng.next() >> 16));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(&data)?;
        f.seek(SeekFrom::Start(0))?;
        f.read_exact(&mut back)?;
        drop(f);
        fs::remove_file(&path)?;
    }
    let took = t.elapsed();
    if back != data {
        bail!("a named temp file read back different bytes");
    }
    Ok(vec![rate("named_tempfile_64k", "ops/s", n as f64, took)])
}

/// What Python's SpooledTemporaryFile(max_size=1 MiB) does with 8 MiB:
/// bytes gather in memory, roll over into an unnamed file in `dir` past
/// 1 MiB, and are read back before the file is closed. Like Python's
/// `open`, the file is buffered by its `st_blksize` (writes larger than
/// the buffer go straight through).
fn spooled_tempfiles(dir: &Path, n: u64) -> Result<Vec<Figure>> {
    const TOTAL: usize = 8 * MIB;
    const MAX_MEMORY: usize = MIB;
    let piece = pattern(64 << 10, 7);
    let mut back = vec![0u8; piece.len()];
    prewarm(256 << 20);
    let t = Instant::now();
    for _ in 0..n {
        check_interrupt()?;
        let mut memory: Vec<u8> = Vec::new();
        let mut file: Option<BufWriter<File>> = None;
        let mut written = 0;
        while written < TOTAL {
            match &mut file {
                Some(f) => f.write_all(&piece)?,
                None if memory.len() + piece.len() > MAX_MEMORY => {
                    let f = tempfile::tempfile_in(dir)
                        .with_context(|| format!("cannot roll over into {}", dir.display()))?;
                    // Python falls back to 8 KiB where st_blksize says nothing.
                    let blksize = usize::try_from(f.metadata()?.blksize()).ok();
                    let buffer = blksize.filter(|&b| b > 1).unwrap_or(8192);
                    let mut f = BufWriter::with_capacity(buffer, f);
                    f.write_all(&memory)?;
                    f.write_all(&piece)?;
                    file = Some(f);
                }
                None => memory.extend_from_slice(&piece),
            }
            written += piece.len();
        }
        let mut f = file
            .context("the spooled file never rolled over")?
            .into_inner()
            .map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(0))?;
        for _ in 0..TOTAL / piece.len() {
            f.read_exact(&mut back)?;
        }
        if back != piece {
            bail!("a spooled temp file read back different bytes");
        }
    }
    Ok(vec![rate("spooled_8m", "ops/s", n as f64, t.elapsed())])
}

fn untar_and_remove(dir: &Path, tarball: &[u8]) -> Result<Vec<Figure>> {
    let root = dir.join("tree");
    fs::create_dir(&root)?;
    prewarm(256 << 20);
    check_interrupt()?;
    let t = Instant::now();
    tar::Archive::new(tarball)
        .unpack(&root)
        .with_context(|| format!("cannot unpack the source tree into {}", root.display()))?;
    let untar = t.elapsed();
    check_interrupt()?;
    let t = Instant::now();
    fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    let rm = t.elapsed();
    Ok(vec![seconds("untar", untar), seconds("rm_rf", rm)])
}

/// A synthetic source tree as a tarball: `files` files of source-like
/// sizes (most a few KiB, a few large) in nested directories, with a
/// symlink per directory. Deterministic, so every target unpacks the same.
pub(super) fn source_tarball(files: u64) -> Result<Vec<u8>> {
    let mut rng = Rng(0x7A2);
    let mut b = tar::Builder::new(Vec::new());
    let dirs = (files / 8).max(1);
    let mut dir_names: Vec<String> = Vec::with_capacity(dirs as usize);
    for d in 0..dirs {
        let parent = if d < 8 {
            String::from("src")
        } else {
            dir_names[(rng.next() % (d / 2).max(1)) as usize].clone()
        };
        let name = format!("{parent}/m{d}");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &name, std::io::empty())?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("{name}/current"), ".")?;
        dir_names.push(name);
    }
    let body = pattern(1 << 20, 8);
    for i in 0..files {
        // Mostly 1–16 KiB, one in 64 up to 1 MiB.
        let size = if i % 64 == 0 {
            rng.next() % (1 << 20)
        } else {
            1024 + rng.next() % (15 << 10)
        } as usize;
        let dir = &dir_names[(rng.next() % dirs) as usize];
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(size as u64);
        b.append_data(&mut h, format!("{dir}/f{i}.rs"), &body[..size])?;
    }
    Ok(b.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_runs_and_cleans_up() {
        let sizes = Sizes {
            seq: 4 << 20,
            rand: 1 << 20,
            rand_time: Duration::from_millis(20),
            small_n: 20,
            dir_n: 30,
            meta_n: 50,
            probe_n: 20,
            named_n: 5,
            spooled_n: 2,
            tree_files: 40,
        };
        let tarball = source_tarball(sizes.tree_files).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for w in Workload::ALL {
            let figures = w.run(dir.path(), &sizes, &tarball).unwrap();
            assert!(!figures.is_empty(), "{}", w.name());
            for f in &figures {
                assert!(f.value.is_finite() && f.value > 0.0, "{} {}", f.metric, f.value);
            }
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{} left files", w.name());
        }
    }

    #[test]
    fn the_tarball_is_deterministic_and_unpacks() {
        let a = source_tarball(100).unwrap();
        assert_eq!(a, source_tarball(100).unwrap());
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(&a[..]).unpack(dir.path()).unwrap();
        let files = walk(dir.path());
        assert_eq!(files, 100);
    }

    fn walk(p: &Path) -> usize {
        let mut n = 0;
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                n += walk(&e.path());
            } else if t.is_file() {
                n += 1;
            }
        }
        n
    }
}
