//! The spill tier: a file's bytes in an unlinked disk file, read through a
//! memory map and written with `pwrite` into blocks reserved beforehand.
//!
//! # Nothing left behind
//! Spill files live in a private directory (mode 0700) that the mount
//! creates under `spill_dir=` and removes at unmount. Each file is made with
//! `O_TMPFILE` (or created and unlinked at once where the file system lacks
//! it), so it never has a name: when the daemon exits, however it exits, the
//! kernel frees the blocks.
//!
//! # ENOSPC before the answer, no SIGBUS
//! A write is answered once it can no longer fail for want of space, and
//! its bytes are copied after ([`SpillFile::prepare_write`]). So every
//! write first reserves its range with `fallocate`, which fails cleanly
//! with ENOSPC, and the disk file's size is never below the logical size,
//! so no access through the map lands past its end. That promise holds on
//! ext4, XFS and tmpfs only: on other spill file systems (copy-on-write,
//! network) each write is copied before it is answered, and running out
//! there is that write's ENOSPC, or a short write. Reservations of a
//! growing file come in steps proportional to its size (1 MiB to 64 MiB),
//! so sequential writes rarely need the syscall.
//!
//! # Bounded memory
//! Resident pages of a shared file map count towards the daemon's RSS.
//! Writes do not map pages; each read drops the pages around the range it
//! read (rounded out to 2 MiB) with `MADV_DONTNEED` when it is done,
//! which leaves their contents in the page cache and the file: however much
//! is spilled, and across however many files, the maps add at most the
//! requests in flight to the daemon's RSS. The next access to those pages
//! costs a minor fault, small next to a FUSE round trip.
//!
//! # Passthrough
//! While the kernel holds the file for FUSE passthrough opens
//! ([`SpillFile::begin_passthrough`]), it reads and writes the disk file
//! itself. The disk file's size is then the file's size, exactly (the
//! kernel reads up to it), the map is dropped, and whatever the daemon
//! still does to the file (truncate, fallocate, copy_file_range) goes
//! through pread/pwrite after re-reading the size. Blocks the kernel
//! writes are charged to the budget whenever the daemon looks
//! ([`SpillFile::settle_passthrough`]: statfs, status, the spiller each
//! second), at its next change to the file and at the end of the mode:
//! the `size=` limit then refuses the daemon's writes, while the kernel's
//! own cannot be refused and are bounded by the spill disk.
//!
//! # Failures stick
//! After an I/O error other than ENOSPC, the file answers EIO from then on
//! and the error is logged once: it never serves half-correct data. A disk
//! error under the map arrives as SIGBUS in the middle of a copy; copies
//! go through the private `sigbus` module, which turns it into such an
//! I/O error instead of the end of the daemon.

use std::ffi::CString;
use std::fs::{File, FileTimes, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use memmap2::{MmapMut, MmapOptions, UncheckedAdvice};

use super::budget::Budget;
use super::pack::Packs;
use super::sigbus;

/// The map covers offsets below this; I/O past it uses pread/pwrite (a
/// sparse file written near 2^62 cannot be mapped).
const MAP_LIMIT: u64 = 1 << 44;
const MIN_STEP: u64 = 1 << 20;
const MAX_STEP: u64 = 64 << 20;
const PAGE: u64 = 4096;
/// What a read drops from the map is rounded out to this: a fault maps
/// more than its page (fault-around, and whole large folios, which the
/// page cache builds up to 2 MiB from `pwrite`s), and pages left mapped
/// past a read's range would stay in the daemon's RSS.
const DROP_ALIGN: u64 = 2 << 20;

/// Why a spill operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpillError {
    /// The size limit or the spill disk is full; nothing was changed.
    NoSpace,
    /// Past the largest file the spill file system holds; nothing changed.
    TooBig,
    /// The file failed earlier or now; it answers EIO from now on.
    Failed,
}

/// File-system magic numbers of memory-backed file systems, which make no
/// sense as a spill directory.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6_u32 as i64;

/// The private directory that holds a mount's spill files.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    packs: Arc<Packs>,
    /// Whether its file system keeps fallocate's promise that writes into
    /// the reserved blocks find room (see [`keeps_reservations`]).
    answer_first: bool,
}

impl SpillDir {
    /// Creates a private (0700) directory under `parent`. Refuses a parent
    /// on tmpfs or ramfs unless `allow_memory_fs`: spilling from RAM into
    /// RAM frees nothing.
    ///
    /// # Errors
    /// A message naming the problem: missing or unwritable parent, or a
    /// memory-backed one.
    pub fn create(parent: &Path, allow_memory_fs: bool) -> Result<Self, String> {
        let meta = std::fs::metadata(parent).map_err(|e| format!("spill_dir {}: {e}", parent.display()))?;
        if !meta.is_dir() {
            return Err(format!("spill_dir {} is not a directory", parent.display()));
        }
        if !allow_memory_fs && is_memory_fs(parent) {
            return Err(format!(
                "spill_dir {} is on a memory-backed file system (tmpfs or ramfs); spilling there frees no RAM",
                parent.display()
            ));
        }
        remove_stale(parent);
        // SAFETY: getuid/getpid have no preconditions.
        let (uid, pid) = unsafe { (libc::getuid(), libc::getpid()) };
        for attempt in 0..100u32 {
            let path = parent.join(format!("tmpfsd-spill-{uid}-{pid}-{attempt}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let answer_first = statfs_magic(&path).is_ok_and(keeps_reservations);
                    if !answer_first {
                        tracing::info!(
                            "spill_dir {}: writes to spill files are copied before they are answered \
                             (a file system where fallocate does not promise room for them)",
                            parent.display()
                        );
                    }
                    return Ok(Self {
                        packs: Arc::new(Packs::new(path.clone())),
                        path,
                        answer_first,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "spill_dir {}: cannot create a directory in it: {e}",
                        parent.display()
                    ))
                }
            }
        }
        Err(format!("spill_dir {}: no free directory name", parent.display()))
    }

    /// The directory's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new, nameless, empty file in the directory.
    ///
    /// # Errors
    /// The file could not be created.
    pub fn new_file(&self) -> io::Result<File> {
        nameless_file(&self.path)
    }

    /// The shared files that hold small spilled files.
    #[must_use]
    pub fn packs(&self) -> &Arc<Packs> {
        &self.packs
    }
}

/// A new, nameless, empty file in `dir`.
pub(super) fn nameless_file(dir: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_EXCL | libc::O_CLOEXEC)
            .open(dir)
        {
            Ok(f) => return Ok(f),
            // Not supported by this file system: fall back below.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("s{n}"));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
        {
            Ok(f) => {
                std::fs::remove_file(&p)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        // Every file in it is nameless: the directory is empty.
        match std::fs::remove_dir(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove spill directory {}: {e}", self.path.display()),
        }
    }
}

/// Removes empty spill directories of daemons that no longer run (a daemon
/// killed with SIGKILL cannot remove its own; its files are already gone).
fn remove_stale(parent: &Path) {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&format!("tmpfsd-spill-{uid}-")))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let alive =
            unsafe { libc::kill(pid, 0) } == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Whether writes into blocks that fallocate reserved on a file system of
/// this type always find room: ext4 and XFS (which keep a reserve for
/// converting unwritten extents) and tmpfs. Not on copy-on-write file
/// systems (btrfs, bcachefs, ZFS write elsewhere, and may run out), nor
/// on network or unknown ones, where quotas and servers decide.
fn keeps_reservations(magic: i64) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    matches!(magic, EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC | TMPFS_MAGIC)
}

/// Whether `path` is on tmpfs or ramfs.
#[must_use]
pub fn is_memory_fs(path: &Path) -> bool {
    matches!(statfs_magic(path), Ok(TMPFS_MAGIC | RAMFS_MAGIC))
}

fn statfs_magic(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: zeroed is a valid statfs; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// fallocate(2)'s KEEP_SIZE: reserve or punch without changing the size.
#[cfg(target_os = "linux")]
pub(super) const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
/// fallocate(2)'s PUNCH_HOLE (always with [`KEEP_SIZE`]).
#[cfg(target_os = "linux")]
pub(super) const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
/// [`fallocate`]'s KEEP_SIZE where the system has no fallocate(2).
#[cfg(not(target_os = "linux"))]
pub(super) const KEEP_SIZE: i32 = 0x01;
/// [`fallocate`]'s PUNCH_HOLE where the system has no fallocate(2).
#[cfg(not(target_os = "linux"))]
pub(super) const PUNCH_HOLE: i32 = 0x02;

/// fallocate(2) with mode 0, [`KEEP_SIZE`] or [`PUNCH_HOLE`] | [`KEEP_SIZE`].
#[cfg(target_os = "linux")]
pub(super) fn fallocate(file: &File, mode: i32, off: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(off), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: fallocate on a descriptor we own.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// fallocate(2)'s effect on file contents where there is no fallocate
/// (macOS, the BSDs): a punched range is zeroed by writing zeros over the
/// data in it (its blocks stay on the disk), a reservation reserves
/// nothing and mode 0 only extends the size. Without reservations a full
/// disk reaches a write as the write's own error, which such systems
/// answer in time because they copy each write before answering it (see
/// `keeps_reservations`).
#[cfg(not(target_os = "linux"))]
pub(super) fn fallocate(file: &File, mode: i32, off: u64, len: u64) -> io::Result<()> {
    fallocate_by_writes(file, mode, off, len)
}

/// The body of [`fallocate`] where there is none, built on Linux too so
/// that its tests run here.
#[cfg(any(test, not(target_os = "linux")))]
fn fallocate_by_writes(file: &File, mode: i32, off: u64, len: u64) -> io::Result<()> {
    let end = off
        .checked_add(len)
        .filter(|e| i64::try_from(*e).is_ok())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
    let size = file.metadata()?.len();
    if mode & PUNCH_HOLE == 0 {
        if mode & KEEP_SIZE == 0 && end > size {
            file.set_len(end)?;
        }
        return Ok(());
    }
    // Only the data in the range is written over: a hole across a large
    // sparse file costs what the file holds, not its size.
    let zeros = [0u8; 64 * 1024];
    let (mut pos, stop) = (off, end.min(size));
    while pos < stop {
        let Some(data) = lseek(file, pos, libc::SEEK_DATA) else {
            break;
        };
        let hole = lseek(file, data, libc::SEEK_HOLE).map_or(stop, |h| h.min(stop));
        let mut at = data;
        while at < hole {
            let n = usize::try_from(hole - at).map_or(zeros.len(), |n| n.min(zeros.len()));
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        pos = hole;
    }
    Ok(())
}

/// lseek(2) on `file`; `None` for ENXIO (no data, or no hole, from `off`
/// on) and other errors. pread and pwrite ignore the position it sets.
fn lseek(file: &File, off: u64, whence: i32) -> Option<u64> {
    // SAFETY: lseek on a descriptor the caller owns.
    let r = unsafe { libc::lseek(file.as_raw_fd(), i64::try_from(off).ok()?, whence) };
    u64::try_from(r).ok()
}

/// Writes non-empty `data` at `off` of a `kind` file (for the log) and
/// returns how many bytes landed: fewer than all only when the file system
/// ran out of room (ENOSPC, EDQUOT) partway, as a disk file system answers
/// a short write; [`SpillError::NoSpace`] when nothing landed. Any other
/// error poisons the file (`failed`).
pub(super) fn write_some_at(
    file: &File,
    data: &[u8],
    off: u64,
    failed: &AtomicBool,
    kind: &str,
) -> Result<usize, SpillError> {
    let mut done = 0;
    while done < data.len() {
        match file.write_at(&data[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => break,
            Err(e) => return Err(poison(failed, kind, "write", &e)),
        }
    }
    if done == 0 {
        return Err(SpillError::NoSpace);
    }
    Ok(done)
}

/// Marks a file failed after the I/O error `e` in `what`; logged once per
/// file, which answers EIO from then on.
pub(super) fn poison(failed: &AtomicBool, kind: &str, what: &str, e: &io::Error) -> SpillError {
    if !failed.swap(true, Ordering::Relaxed) {
        tracing::error!("{kind} {what} failed: {e}; the file answers EIO from now on");
    }
    SpillError::Failed
}

/// What [`SpillFile::prepare_write`] left of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// The copy, for [`SpillFile::finish_write`].
    Copy,
    /// Nothing: this many bytes were written, fewer than asked only when
    /// the spill disk ran out partway.
    Done(usize),
}

/// One spilled file.
pub struct SpillFile {
    file: File,
    map: Option<MmapMut>,
    /// [`sigbus::faults`] when `map` was made: while it is unchanged, no
    /// page of the map can have been replaced with a zero page.
    map_faults: u64,
    /// Logical size.
    len: u64,
    /// The disk file's size: never below `len`.
    disk_len: u64,
    /// Every block below this offset is reserved on disk.
    reserved: u64,
    /// The end of the blocks that fallocate(2) asked for: a trim of the
    /// reservation step keeps them.
    kept_end: u64,
    /// Bytes charged to the budget (the disk file's allocated blocks).
    charged: u64,
    /// Passthrough opens: while non-zero the kernel writes the file too.
    passthrough: u32,
    /// Writes may be answered before their copy (see [`SpillDir`]).
    answer_first: bool,
    failed: AtomicBool,
}

impl std::fmt::Debug for SpillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillFile")
            .field("len", &self.len)
            .field("reserved", &self.reserved)
            .field("charged", &self.charged)
            .field("passthrough", &self.passthrough)
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SpillFile {
    /// An empty spilled file in `dir`.
    ///
    /// # Errors
    /// The file could not be created.
    pub fn create(dir: &SpillDir) -> io::Result<Self> {
        Ok(Self {
            file: dir.new_file()?,
            map: None,
            map_faults: 0,
            len: 0,
            disk_len: 0,
            reserved: 0,
            kept_end: 0,
            charged: 0,
            passthrough: 0,
            answer_first: dir.answer_first,
            failed: AtomicBool::new(false),
        })
    }

    /// Logical size (in passthrough, the disk file's size as of now).
    #[must_use]
    pub fn len(&self) -> u64 {
        if self.passthrough > 0 {
            if let Ok(m) = self.file.metadata() {
                return m.len();
            }
        }
        self.len
    }

    /// Whether the file is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether passthrough opens hold the file.
    #[must_use]
    pub fn in_passthrough(&self) -> bool {
        self.passthrough > 0
    }

    /// Starts one passthrough open: cuts the disk file to the logical size
    /// (the kernel reads up to its end), gives the file's modification
    /// time `mtime` (so that a later change shows as a newer time) and
    /// returns a descriptor of it for the kernel. The file then stays in
    /// this mode until as many [`SpillFile::end_passthrough`] calls.
    ///
    /// # Errors
    /// The descriptor could not be duplicated (nothing changed), or the
    /// disk file could not be cut ([`SpillError::Failed`] from then on).
    pub fn begin_passthrough(&mut self, mtime: SystemTime) -> io::Result<File> {
        if self.failed() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let dup = self.file.try_clone()?;
        if self.passthrough == 0 {
            self.map = None;
            if self.disk_len != self.len {
                if let Err(e) = self.file.set_len(self.len) {
                    self.fail("truncate", &e);
                    return Err(e);
                }
                self.disk_len = self.len;
                self.reserved = self.reserved.min(self.len / PAGE * PAGE);
                self.kept_end = self.kept_end.min(self.len);
            }
            let _ = self.file.set_times(FileTimes::new().set_modified(mtime));
        }
        self.passthrough += 1;
        Ok(dup)
    }

    /// Ends one passthrough open; after the last, takes the size and the
    /// allocation the kernel left.
    pub fn end_passthrough(&mut self, budget: &Budget) {
        self.passthrough = self.passthrough.saturating_sub(1);
        if self.passthrough == 0 {
            let _ = self.sync(budget);
        }
    }

    /// In passthrough: size, allocated bytes, modification and change
    /// times of the disk file (the kernel's writes move them), from one
    /// fstat; `None` otherwise.
    #[must_use]
    pub fn passthrough_state(&self) -> Option<(u64, u64, SystemTime, SystemTime)> {
        if self.passthrough == 0 {
            return None;
        }
        let m = self.file.metadata().ok()?;
        let ctime = SystemTime::UNIX_EPOCH
            + std::time::Duration::new(u64::try_from(m.ctime()).ok()?, u32::try_from(m.ctime_nsec()).ok()?);
        Some((m.len(), m.blocks() * 512, m.modified().ok()?, ctime))
    }

    /// In passthrough: charges (or gives back) what the kernel's writes
    /// have allocated since the last look, so that the budget holds them
    /// before the last close. Nothing to do otherwise.
    ///
    /// # Errors
    /// The disk file cannot be stat'ed.
    pub fn settle_passthrough(&mut self, budget: &Budget) -> Result<(), SpillError> {
        if self.passthrough == 0 {
            return Ok(());
        }
        self.settle(budget)
    }

    /// In passthrough: sets the disk file's modification time, which the
    /// file's own follows while the kernel holds it.
    pub fn set_passthrough_mtime(&self, mtime: SystemTime) {
        if self.passthrough > 0 {
            let _ = self.file.set_times(FileTimes::new().set_modified(mtime));
        }
    }

    /// Takes size and allocation from the disk file (which the kernel
    /// changes in passthrough) and settles the budget to it.
    fn sync(&mut self, budget: &Budget) -> Result<(), SpillError> {
        let size = match self.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Err(self.fail("fstat", &e)),
        };
        self.len = size;
        self.disk_len = size;
        self.reserved = self.reserved.min(size / PAGE * PAGE);
        self.settle(budget)
    }

    /// Disk bytes held, charged to the budget.
    #[must_use]
    pub fn allocated(&self) -> u64 {
        self.charged
    }

    /// Whether an earlier I/O error poisoned the file.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, what: &str, e: &io::Error) -> SpillError {
        poison(&self.failed, "spill file", what, e)
    }

    fn check(&self) -> Result<(), SpillError> {
        if self.failed() {
            Err(SpillError::Failed)
        } else {
            Ok(())
        }
    }

    /// Re-reads the disk allocation and settles the budget to it.
    fn settle(&mut self, budget: &Budget) -> Result<(), SpillError> {
        let blocks = match self.file.metadata() {
            Ok(m) => m.blocks() * 512,
            Err(e) => return Err(self.fail("fstat", &e)),
        };
        if blocks > self.charged {
            budget.force_bytes(blocks - self.charged);
        } else {
            budget.release_bytes(self.charged - blocks);
        }
        self.charged = blocks;
        Ok(())
    }

    /// Reserves disk blocks for `[off, end)` (and grows the disk file to
    /// cover it), charging the budget first. A file growing at its end
    /// reserves in proportional steps; when the budget or the disk cannot
    /// take a step, the write's own pages are tried before ENOSPC.
    fn reserve(&mut self, off: u64, end: u64, budget: &Budget) -> Result<(), SpillError> {
        if end <= self.reserved {
            return Ok(());
        }
        let prefix = off <= self.reserved;
        let page_start = if prefix { self.reserved } else { off / PAGE * PAGE };
        let page_end = end.div_ceil(PAGE) * PAGE;
        let step = (end / 4).clamp(MIN_STEP, MAX_STEP);
        let step_end = end.div_ceil(step) * step;
        let mut reserved = Err(SpillError::NoSpace);
        if prefix && step_end != page_end {
            reserved = self
                .reserve_range(page_start, step_end, step_end - page_start, true, budget)
                .map(|()| step_end);
        }
        if reserved == Err(SpillError::NoSpace) {
            reserved = self
                .reserve_range(page_start, page_end, page_end - page_start, true, budget)
                .map(|()| page_end);
        }
        let to = reserved?;
        if prefix {
            self.reserved = to;
        }
        self.settle(budget)
    }

    /// Allocates `[from, to)` on disk and, with `grow`, makes the disk file
    /// at least `to` long; `bound` is at least what the allocation can take
    /// (the range's length, or its holes). The blocks are allocated with
    /// KEEP_SIZE and the size set after, so a failed fallocate changes
    /// neither the size nor a byte: what a partial allocation took stays
    /// (inside the range this file writes next) and is charged as it is.
    fn reserve_range(&mut self, from: u64, to: u64, bound: u64, grow: bool, budget: &Budget) -> Result<(), SpillError> {
        // Upper bound first, so that the limit is never passed. It is held
        // as part of the charge until `settle` trims it to the real
        // allocation: given back any earlier, it would let writers of
        // other files take the room this fallocate is using.
        if budget.reserve_bytes(bound).is_err() {
            return Err(SpillError::NoSpace);
        }
        self.charged += bound;
        if let Err(e) = fallocate(&self.file, KEEP_SIZE, from, to - from) {
            let _ = self.settle(budget);
            return Err(match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => SpillError::NoSpace,
                Some(libc::EFBIG) => SpillError::TooBig,
                _ => self.fail("fallocate", &e),
            });
        }
        if grow && self.disk_len < to {
            if let Err(e) = self.file.set_len(to) {
                let _ = self.settle(budget);
                return Err(self.fail("ftruncate", &e));
            }
            self.disk_len = to;
        }
        Ok(())
    }

    /// Makes the map cover `[0, end)` when `end` is within MAP_LIMIT. A map
    /// only serves reads, so a failed mmap (no address space left) costs
    /// nothing but speed: reads use pread until a later grow succeeds.
    fn map_to(&mut self, end: u64) {
        if end > MAP_LIMIT {
            return;
        }
        let have = self.map.as_ref().map_or(0, |m| m.len() as u64);
        if have < end {
            // Grow in large steps: remapping is a syscall and a TLB flush.
            let want = end.next_power_of_two().clamp(64 << 20, MAP_LIMIT);
            self.map = None;
            self.map_faults = sigbus::faults();
            // SAFETY: the file is private to this process (nameless, in a
            // 0700 directory), so nobody else truncates it under the map;
            // offsets are only accessed below the disk size (kept >= the
            // logical size) and only after their blocks were reserved.
            match unsafe { MmapOptions::new().len(want as usize).map_mut(&self.file) } {
                Ok(m) => self.map = Some(m),
                Err(e) => tracing::debug!(error = %e, "cannot map a spill file; its reads use pread"),
            }
        }
    }

    /// Drops the map's pages around `[off, end)` (rounded out to
    /// [`DROP_ALIGN`]) from this process (they stay in the page cache and
    /// the file).
    fn drop_pages(&self, off: u64, end: u64) {
        if let Some(m) = &self.map {
            let start = off / DROP_ALIGN * DROP_ALIGN;
            let stop = end.div_ceil(DROP_ALIGN) * DROP_ALIGN;
            let stop = stop.min(m.len() as u64);
            if start < stop {
                // SAFETY: a shared file mapping: dropping its pages loses
                // nothing, and no slice of the map outlives the call that
                // made it (a concurrent reader re-faults transparently).
                let _ = unsafe {
                    m.unchecked_advise_range(UncheckedAdvice::DontNeed, start as usize, (stop - start) as usize)
                };
            }
        }
    }

    /// Copies bytes at `off` into `buf` up to the end of the file. Shared:
    /// readers of one file run in parallel. Ranges the map does not cover
    /// (a hole made by extending the size, or past MAP_LIMIT) use pread.
    ///
    /// # Errors
    /// [`SpillError::Failed`] for a poisoned file or a read error.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, SpillError> {
        self.check()?;
        let len = self.len();
        if off >= len {
            return Ok(0);
        }
        let n = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let end = off + n as u64;
        // In passthrough there is no map (the kernel grows the file under
        // it): pread below. So too once a page of any map faulted (see
        // `sigbus::faults`): another reader's fault may have left a zero
        // page here that this copy would take for the file's bytes.
        if let Some(map) = &self.map {
            if end <= map.len() as u64 && sigbus::faults() == self.map_faults {
                let (start, len) = (map.as_ptr() as usize, map.len());
                if !sigbus::copy(&mut buf[..n], &map[off as usize..end as usize], start, len) {
                    return Err(self.fail("read", &io::Error::from_raw_os_error(libc::EIO)));
                }
                self.drop_pages(off, end);
                if sigbus::faults() == self.map_faults {
                    return Ok(n);
                }
            }
        }
        if let Err(e) = self.file.read_exact_at(&mut buf[..n], off) {
            return Err(self.fail("read", &e));
        }
        Ok(n)
    }

    /// Writes `data` at `off`, reserving disk space first.
    ///
    /// # Errors
    /// [`SpillError::NoSpace`] with nothing changed; [`SpillError::Failed`].
    pub fn write_at(&mut self, off: u64, data: &[u8], budget: &Budget) -> Result<(), SpillError> {
        match self.prepare_write(off, data, budget)? {
            Prepared::Copy => self.finish_write(off, data),
            Prepared::Done(n) if n < data.len() => Err(SpillError::NoSpace),
            Prepared::Done(_) => Ok(()),
        }
    }

    /// The half of a write that can fail for want of space: reserves the
    /// blocks, grows the map over them (for the reads to come) and sets the
    /// new size, leaving the copy to [`SpillFile::finish_write`]
    /// ([`Prepared::Copy`]), which must follow before anything else touches
    /// the file. Writes in passthrough, and all writes on a spill file
    /// system whose reservations do not promise room, are done here
    /// ([`Prepared::Done`]).
    ///
    /// # Errors
    /// [`SpillError::NoSpace`] with nothing written; [`SpillError::Failed`].
    pub fn prepare_write(&mut self, off: u64, data: &[u8], budget: &Budget) -> Result<Prepared, SpillError> {
        self.check()?;
        if data.is_empty() {
            return Ok(Prepared::Done(0));
        }
        let end = off + data.len() as u64;
        if self.passthrough > 0 {
            self.write_exact(off, data, budget)?;
            return Ok(Prepared::Done(data.len()));
        }
        self.reserve(off, end, budget)?;
        self.map_to(end);
        if !self.answer_first {
            return self.write_now(off, data);
        }
        self.len = self.len.max(end);
        Ok(Prepared::Copy)
    }

    /// A write copied before it is answered, where the reservation does
    /// not promise room for its bytes: running out is this write's ENOSPC
    /// (or a short count, when part of it landed, as a disk file system
    /// answers), and poisons nothing.
    fn write_now(&mut self, off: u64, data: &[u8]) -> Result<Prepared, SpillError> {
        let done = write_some_at(&self.file, data, off, &self.failed, "spill file")?;
        self.len = self.len.max(off + done as u64);
        Ok(Prepared::Done(done))
    }

    /// The copy of a write that [`SpillFile::prepare_write`] left to do:
    /// `pwrite` into blocks already reserved, so it fails only when the
    /// disk does, and the file then answers EIO from now on. (Not a copy
    /// into the map: each page stored through a map costs a fault that
    /// first zero-fills the page, then a `page_mkwrite`; a 1 GiB new file
    /// spilled at the defaults went from 526 to 715 MiB/s, medians of 6
    /// interleaved fio runs. The map shares the page cache, so its reads
    /// see the bytes at once.)
    ///
    /// # Errors
    /// [`SpillError::Failed`].
    pub fn finish_write(&mut self, off: u64, data: &[u8]) -> Result<(), SpillError> {
        if let Err(e) = self.file.write_all_at(data, off) {
            return Err(self.fail("write", &e));
        }
        Ok(())
    }

    /// A write in passthrough: blocks first (KEEP_SIZE, so that ENOSPC
    /// comes before any byte is written and the size stays exact), then
    /// pwrite, which moves the size only as far as the data.
    fn write_exact(&mut self, off: u64, data: &[u8], budget: &Budget) -> Result<(), SpillError> {
        self.allocate(off, data.len() as u64, true, budget)?;
        if let Err(e) = self.file.write_all_at(data, off) {
            return Err(self.fail("write", &e));
        }
        self.sync(budget)
    }

    /// Truncates or extends (extending leaves a hole: no blocks).
    ///
    /// # Errors
    /// [`SpillError::Failed`].
    pub fn set_len(&mut self, len: u64, budget: &Budget) -> Result<(), SpillError> {
        self.check()?;
        if self.passthrough > 0 {
            if let Err(e) = self.file.set_len(len) {
                if matches!(e.raw_os_error(), Some(libc::EFBIG | libc::EINVAL)) {
                    return Err(SpillError::TooBig);
                }
                return Err(self.fail("truncate", &e));
            }
            return self.sync(budget);
        }
        if len < self.disk_len {
            // Drop the map first: pages past the new end must not stay mapped.
            if len < self.map.as_ref().map_or(0, |m| m.len() as u64) {
                self.map = None;
            }
            if let Err(e) = self.file.set_len(len) {
                return Err(self.fail("truncate", &e));
            }
            self.disk_len = len;
            self.reserved = self.reserved.min(len / PAGE * PAGE);
            self.kept_end = self.kept_end.min(len);
            self.settle(budget)?;
        } else if len > self.disk_len {
            if let Err(e) = self.file.set_len(len) {
                if matches!(e.raw_os_error(), Some(libc::EFBIG | libc::EINVAL)) {
                    return Err(SpillError::TooBig);
                }
                return Err(self.fail("extend", &e));
            }
            self.disk_len = len;
        }
        self.len = len;
        Ok(())
    }

    /// FALLOC_FL_PUNCH_HOLE within the file.
    ///
    /// # Errors
    /// [`SpillError::Failed`].
    pub fn punch_hole(&mut self, off: u64, len: u64, budget: &Budget) -> Result<(), SpillError> {
        self.check()?;
        let end = off.saturating_add(len).min(self.len());
        if off >= end {
            return Ok(());
        }
        if let Err(e) = fallocate(&self.file, PUNCH_HOLE | KEEP_SIZE, off, end - off) {
            return Err(self.fail("punch hole", &e));
        }
        self.reserved = self.reserved.min(off / PAGE * PAGE);
        self.settle(budget)
    }

    /// fallocate mode 0 or KEEP_SIZE.
    ///
    /// # Errors
    /// [`SpillError::NoSpace`] with nothing changed; [`SpillError::Failed`].
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool, budget: &Budget) -> Result<(), SpillError> {
        self.check()?;
        let end = off.saturating_add(len);
        if self.passthrough > 0 {
            // The kernel writes the disk file too: take its size first, so
            // that the size is only ever grown below. KEEP_SIZE must reach
            // the disk file as such, since its size is the file's.
            self.sync(budget)?;
            let bound = self.holes(off, end);
            self.reserve_range(off, end, bound, !keep_size, budget)?;
            return self.sync(budget);
        }
        let bound = self.holes(off, end);
        self.reserve_range(off, end, bound, true, budget)?;
        self.kept_end = self.kept_end.max(end);
        if !keep_size {
            self.len = self.len.max(end);
        }
        self.settle(budget)
    }

    /// Bytes of `[off, end)` that hold no blocks, rounded out to pages: an
    /// upper bound of what allocating the range takes, so that fallocate
    /// over a file's own data does not need room for all of it again.
    /// (Reserved but unwritten blocks may count as holes, which only
    /// raises the bound.)
    fn holes(&self, off: u64, end: u64) -> u64 {
        /// Past this many holes the rest of the range counts as one.
        const MAX_RUNS: u32 = 1024;
        let (off, end) = (off / PAGE * PAGE, end.div_ceil(PAGE) * PAGE);
        let mut pos = off;
        let mut holes = 0;
        for _ in 0..MAX_RUNS {
            if pos >= end {
                return holes;
            }
            // No data from here on (or the seek failed): the rest counts.
            let Some(data) = self.lseek(pos, libc::SEEK_DATA) else {
                break;
            };
            holes += (data / PAGE * PAGE).min(end).saturating_sub(pos);
            let Some(hole) = self.lseek(data, libc::SEEK_HOLE) else {
                break;
            };
            pos = hole.div_ceil(PAGE) * PAGE;
        }
        holes + end.saturating_sub(pos)
    }

    /// Gives back the blocks reserved ahead of writes past the end (the
    /// reservation step, up to 64 MiB), keeping those that fallocate(2)
    /// asked for: called when the last handle closes, so that a closed
    /// file is charged for what it holds. The next write past the end
    /// reserves again.
    ///
    /// # Errors
    /// [`SpillError::Failed`].
    pub fn trim_reservation(&mut self, budget: &Budget) -> Result<(), SpillError> {
        if self.passthrough > 0 || self.failed() {
            return Ok(());
        }
        let keep = self.len.max(self.kept_end).div_ceil(PAGE) * PAGE;
        if self.reserved <= keep {
            return Ok(());
        }
        if let Err(e) = fallocate(&self.file, PUNCH_HOLE | KEEP_SIZE, keep, self.reserved - keep) {
            return Err(self.fail("punch hole", &e));
        }
        self.reserved = keep;
        self.settle(budget)
    }

    fn seek(&self, off: u64, whence: i32) -> Option<u64> {
        if off >= self.len() {
            return None;
        }
        self.lseek(off, whence)
    }

    /// [`lseek`] on the disk file, past the logical size too.
    fn lseek(&self, off: u64, whence: i32) -> Option<u64> {
        lseek(&self.file, off, whence)
    }

    /// SEEK_DATA (reserved but unwritten blocks count as data).
    #[must_use]
    pub fn seek_data(&self, off: u64) -> Option<u64> {
        let len = self.len();
        self.seek(off, libc::SEEK_DATA).filter(|p| *p < len)
    }

    /// SEEK_HOLE; the end of the file counts as a hole.
    #[must_use]
    pub fn seek_hole(&self, off: u64) -> Option<u64> {
        let len = self.len();
        if off >= len {
            return None;
        }
        Some(self.seek(off, libc::SEEK_HOLE).map_or(len, |p| p.min(len)))
    }

    /// Gives the disk space back to the budget; the file itself goes when
    /// this value is dropped.
    pub fn release(&mut self, budget: &Budget) {
        budget.release_bytes(self.charged);
        self.charged = 0;
        self.map = None;
        let _ = self.file.set_len(0);
        self.len = 0;
        self.disk_len = 0;
        self.reserved = 0;
        self.kept_end = 0;
        self.passthrough = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write-based fallocate (for systems without fallocate(2)) leaves
    /// the same bytes and size as Linux's, for every mode and range kind.
    #[test]
    fn fallocate_by_writes_matches_fallocate() {
        const M: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(dir.path().join(name))
                .unwrap();
            // Data, a hole, data: 3 MiB.
            f.write_all_at(&vec![0xa5; M as usize], 0).unwrap();
            f.write_all_at(&vec![0x5a; M as usize], 2 * M).unwrap();
            f
        };
        let (real, ours) = (open("real"), open("ours"));
        let ops = [
            (PUNCH_HOLE | KEEP_SIZE, M / 2, 2 * M),   // across data, hole, data
            (PUNCH_HOLE | KEEP_SIZE, 3 * M - 100, M), // past the end
            (PUNCH_HOLE | KEEP_SIZE, 10 * M, M),      // wholly past the end
            (KEEP_SIZE, 3 * M, 4 * M),                // reserve past the end
            (0, 100, 10),                             // inside the file
            (0, 4 * M, M + 7),                        // grows the file
            (PUNCH_HOLE | KEEP_SIZE, 5 * M - 3, 10),  // the new end
        ];
        for (mode, off, len) in ops {
            fallocate(&real, mode, off, len).unwrap();
            fallocate_by_writes(&ours, mode, off, len).unwrap();
            let (a, b) = (read_all(&real), read_all(&ours));
            assert_eq!(a.len(), b.len(), "size after mode {mode} at {off}+{len}");
            assert!(a == b, "bytes after mode {mode} at {off}+{len}");
        }
        let b = read_all(&ours);
        assert_eq!(b.len() as u64, 5 * M + 7);
        assert!(b[..(M / 2) as usize].iter().all(|&x| x == 0xa5));
        assert!(b[(M / 2) as usize..(5 * M / 2) as usize].iter().all(|&x| x == 0));
        assert!(b[(5 * M / 2) as usize..(3 * M - 100) as usize]
            .iter()
            .all(|&x| x == 0x5a));
        assert!(b[(3 * M - 100) as usize..].iter().all(|&x| x == 0));
        assert!(matches!(
            fallocate_by_writes(&ours, 0, u64::MAX - 1, 2).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EFBIG))
        ));
    }

    fn read_all(f: &File) -> Vec<u8> {
        let mut v = vec![0; usize::try_from(f.metadata().unwrap().len()).unwrap()];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn a_trim_gives_back_the_reservation_step_but_not_what_fallocate_asked_for() {
        let (_p, _d, budget, mut f) = spilled(&[1u8; 3 << 20]);
        // One more byte: the step (a quarter of the size, at least 1 MiB)
        // reserves up to 4 MiB.
        f.write_at(3 << 20, b"x", &budget).unwrap();
        assert_eq!((f.allocated(), budget.bytes()), (4 << 20, 4 << 20));
        f.trim_reservation(&budget).unwrap();
        assert_eq!((f.allocated(), budget.bytes()), ((3 << 20) + PAGE, (3 << 20) + PAGE));
        let mut b = [0u8; 2];
        assert_eq!(f.read_at((3 << 20) - 1, &mut b), Ok(2));
        assert_eq!(b, [1, b'x']);
        // Appends reserve again.
        f.write_at((3 << 20) + 1, &[2u8; 8192], &budget).unwrap();
        assert_eq!(f.allocated(), 4 << 20);
        // Blocks that fallocate(KEEP_SIZE) asked for past the end stay.
        f.allocate(0, 6 << 20, true, &budget).unwrap();
        f.trim_reservation(&budget).unwrap();
        assert_eq!((f.allocated(), f.len()), (6 << 20, (3 << 20) + 8193));
        // Truncated below them, they go with the truncation.
        f.set_len(1 << 20, &budget).unwrap();
        f.write_at(1 << 20, b"y", &budget).unwrap();
        f.trim_reservation(&budget).unwrap();
        assert_eq!(f.allocated(), (1 << 20) + PAGE);
    }

    #[test]
    fn fallocate_over_held_blocks_needs_room_only_for_the_holes() {
        let parent = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(parent.path(), true).unwrap();
        let budget = Budget::new(6 << 20, 1 << 30);
        let mut f = SpillFile::create(&dir).unwrap();
        f.write_at(0, &[1u8; 4 << 20], &budget).unwrap();
        f.write_at(5 << 20, &[1u8; 4096], &budget).unwrap();
        // 4 MiB + 4 KiB held of 6 MiB: allocating the first 5 MiB takes
        // the 1 MiB hole, not 5 MiB more.
        f.allocate(0, 5 << 20, false, &budget).unwrap();
        assert_eq!((f.allocated(), budget.bytes()), ((5 << 20) + 4096, (5 << 20) + 4096));
        // Past what the budget holds, still refused, nothing changed.
        assert_eq!(f.allocate(0, 8 << 20, true, &budget), Err(SpillError::NoSpace));
        assert_eq!(f.allocated(), (5 << 20) + 4096);
        let mut b = [0u8; 1];
        assert_eq!((f.read_at((5 << 20) - 1, &mut b), b), (Ok(1), [0]));
    }

    #[test]
    fn writes_are_answered_first_only_where_fallocate_promises_room() {
        let btrfs = 0x9123_683E_i64;
        assert!(!keeps_reservations(btrfs));
        assert!(keeps_reservations(0xEF53) && keeps_reservations(TMPFS_MAGIC));
        for answer_first in [true, false] {
            let parent = tempfile::tempdir().unwrap();
            let mut dir = SpillDir::create(parent.path(), true).unwrap();
            dir.answer_first = answer_first;
            let budget = Budget::new(1 << 30, 1 << 30);
            let mut f = SpillFile::create(&dir).unwrap();
            let copy_left = f.prepare_write(0, b"abc", &budget).unwrap() == Prepared::Copy;
            assert_eq!(copy_left, answer_first);
            // Copied at once: on disk before the write is answered.
            let mut b = [0u8; 3];
            f.file.read_exact_at(&mut b, 0).unwrap();
            assert_eq!(&b == b"abc", !answer_first);
            if copy_left {
                f.finish_write(0, b"abc").unwrap();
            }
            assert_eq!((f.read_at(0, &mut b), &b), (Ok(3), b"abc"));
        }
    }

    /// A spill file holding `data`, with its directory and budget (kept
    /// alive by the caller).
    fn spilled(data: &[u8]) -> (tempfile::TempDir, SpillDir, Budget, SpillFile) {
        let parent = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(parent.path(), true).unwrap();
        let budget = Budget::new(1 << 30, 1 << 30);
        let mut f = SpillFile::create(&dir).unwrap();
        f.write_at(0, data, &budget).unwrap();
        (parent, dir, budget, f)
    }

    #[test]
    fn a_spill_file_cut_short_under_its_map_answers_eio_from_then_on() {
        let data = vec![3u8; 1 << 20];
        let (_parent, _dir, budget, mut f) = spilled(&data);
        let mut back = vec![0u8; 1 << 20];
        assert_eq!(f.read_at(0, &mut back), Ok(1 << 20));
        assert_eq!(back, data);
        // What a failing disk does to a map: its pages raise SIGBUS.
        f.file.set_len(0).unwrap();
        assert_eq!(f.read_at(0, &mut back), Err(SpillError::Failed));
        assert!(f.failed());
        assert_eq!(f.read_at(0, &mut back), Err(SpillError::Failed), "failures stick");
        assert_eq!(f.write_at(0, &data, &budget), Err(SpillError::Failed));
        assert!(crate::storage::FileData::Spill(f).failed());
    }

    #[test]
    fn an_append_that_fits_is_not_refused_for_its_reservation_step() {
        let parent = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(parent.path(), true).unwrap();
        // Room for 2.5 MiB: the first 2 MiB take their own step exactly.
        let budget = Budget::new((5 << 20) / 2, 1 << 30);
        let mut f = SpillFile::create(&dir).unwrap();
        f.write_at(0, &[1u8; 2 << 20], &budget).unwrap();
        // Appending 4 KiB would reserve a 1 MiB step, which does not fit;
        // the write's own page does.
        assert_eq!(f.write_at(2 << 20, &[2u8; 4096], &budget), Ok(()));
        let mut back = vec![0u8; 4096];
        assert_eq!(f.read_at(2 << 20, &mut back), Ok(4096));
        assert!(back.iter().all(|b| *b == 2));
        assert_eq!(budget.bytes(), f.allocated());
        // Past what the budget holds: refused, and nothing changed.
        let len = f.len();
        assert_eq!(f.write_at(len, &vec![3u8; 1 << 20], &budget), Err(SpillError::NoSpace));
        assert_eq!(f.len(), len);
        assert_eq!(budget.bytes(), f.allocated());
        assert!(
            budget.bytes_high_water() <= (5 << 20) / 2,
            "{}",
            budget.bytes_high_water()
        );
    }

    #[test]
    fn a_zero_page_left_by_another_readers_fault_is_never_served() {
        let (_parent, _dir, _budget, f) = spilled(&[7u8; 1 << 20]);
        // Another reader's copy faults on a page cut away from under the
        // map (a failing disk) and has not poisoned the file yet: that
        // page is now a zero page in the shared map.
        let cut = 1 << 19;
        f.file.set_len(cut).unwrap();
        let map = f.map.as_ref().unwrap();
        let (start, len) = (map.as_ptr() as usize, map.len());
        let mut scratch = vec![0u8; 4096];
        let page = &map[cut as usize..cut as usize + 4096];
        let faulted = !sigbus::copy(&mut scratch, page, start, len);
        // (Reading `scratch` also keeps the copy from being optimised away.)
        assert!(faulted && scratch.iter().all(|b| *b == 0), "the other reader faults");
        assert!(!f.failed());
        // This reader must not take that zero page for the file's bytes.
        let mut back = vec![1u8; 4096];
        assert_eq!(
            f.read_at(cut, &mut back),
            Err(SpillError::Failed),
            "read {:?}",
            &back[..8]
        );
        // Bytes below the cut are still the file's own, read without the map.
        f.failed.store(false, Ordering::Relaxed);
        assert_eq!(f.read_at(0, &mut back), Ok(4096));
        assert!(back.iter().all(|b| *b == 7));
    }
}
