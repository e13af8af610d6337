//! The packed tier: small files spilled under memory pressure, each in a
//! 64 KiB slot of a few shared disk files.
//!
//! A spill file of its own costs a file descriptor, and a process may hold
//! only about 20,000: too few for the many small files that fill a mount's
//! RAM budget just as well as one big file does. So a file of at most
//! [`SLOT`] bytes that the budget pushes out of RAM goes into a slot of a
//! pack file instead. Pack files are nameless like spill files (made in the
//! same private directory, gone with the daemon), each a sparse file of
//! 65,536 slots, and the mount opens another only when all
//! slots of the ones it has are taken.
//!
//! A packed file holds disk blocks only for the 4 KiB pages it has
//! written: each page is reserved with `fallocate` (and charged to the
//! budget) before its first byte lands, so a full disk gives ENOSPC at the
//! write, and a page that a truncate or a hole punch leaves wholly unused
//! is punched out again. Bytes of a held page past the end of the file are
//! always zero, so growing the file needs no write. A write or a size past
//! the slot moves the file out of the pack (see `FileData`), as does
//! anything the slot cannot hold.
//!
//! Writes are copied before they are answered: a packed file is small, and
//! a `pwrite` error then reaches the write that caused it. After an I/O
//! error the file answers EIO from then on, as a spilled file does.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::budget::Budget;
use super::spill::{fallocate, nameless_file, poison, write_some_at, SpillError, KEEP_SIZE, PUNCH_HOLE};

/// The largest file a slot holds.
pub const SLOT: u64 = 64 << 10;
/// The unit of disk space a packed file holds and is charged for.
const PAGE: u64 = 4096;
const PAGES: u32 = (SLOT / PAGE) as u32;
/// Slots in one pack file: 4 GiB of (sparse) address space.
const SLOTS_PER_FILE: u64 = 1 << 16;

/// The pack files of one spill directory and their free slots.
#[derive(Debug)]
pub struct Packs {
    dir: PathBuf,
    state: Mutex<PackState>,
}

#[derive(Debug, Default)]
struct PackState {
    files: Vec<Arc<File>>,
    /// Slots given back, reused before new ones.
    free: Vec<u64>,
    /// Slots below this were handed out at some time.
    next: u64,
}

/// One slot, owned by one packed file; given back by [`PackedFile::release`]
/// (or when dropped).
#[derive(Debug)]
struct Slot {
    packs: Arc<Packs>,
    file: Arc<File>,
    id: u64,
}

impl Slot {
    /// Where the slot starts in its pack file.
    fn base(&self) -> u64 {
        self.id % SLOTS_PER_FILE * SLOT
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The slot's blocks go back to the disk; the slot to the free list.
        if let Err(e) = fallocate(&self.file, PUNCH_HOLE | KEEP_SIZE, self.base(), SLOT) {
            // A slot that may still hold bytes is not handed out again.
            tracing::error!("cannot free a slot of a pack file: {e}");
            return;
        }
        self.packs.state.lock().free.push(self.id);
    }
}

impl Packs {
    /// Pack files made on demand in `dir` (the spill directory).
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            state: Mutex::new(PackState::default()),
        }
    }

    /// A free, empty slot.
    fn take(self: &Arc<Self>) -> io::Result<Slot> {
        let mut st = self.state.lock();
        let id = match st.free.pop() {
            Some(id) => id,
            None => {
                let id = st.next;
                if id / SLOTS_PER_FILE == st.files.len() as u64 {
                    let file = nameless_file(&self.dir)?;
                    file.set_len(SLOTS_PER_FILE * SLOT)?;
                    st.files.push(Arc::new(file));
                }
                st.next += 1;
                id
            }
        };
        let file = Arc::clone(&st.files[(id / SLOTS_PER_FILE) as usize]);
        Ok(Slot {
            packs: Arc::clone(self),
            file,
            id,
        })
    }

    /// Pack files open (for tests and counters).
    #[must_use]
    pub fn files(&self) -> usize {
        self.state.lock().files.len()
    }
}

/// Bit `i` stands for page `i` of a slot.
fn page_bits(first: u64, end: u64) -> u32 {
    let (first, end) = (first.min(u64::from(PAGES)), end.min(u64::from(PAGES)));
    if first >= end {
        return 0;
    }
    let n = end - first;
    (if n == 32 { u32::MAX } else { (1u32 << n) - 1 }) << first
}

/// A small file's bytes in a slot of a pack file.
#[derive(Debug)]
pub struct PackedFile {
    slot: Option<Slot>,
    len: u64,
    /// Pages of the slot that hold disk blocks (and are charged).
    pages: u32,
    failed: AtomicBool,
}

impl PackedFile {
    /// An empty file in a free slot of `packs`.
    ///
    /// # Errors
    /// No pack file could be made.
    pub fn create(packs: &Arc<Packs>) -> io::Result<Self> {
        Ok(Self {
            slot: Some(packs.take()?),
            len: 0,
            pages: 0,
            failed: AtomicBool::new(false),
        })
    }

    /// Logical size.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Disk bytes held, charged to the budget.
    #[must_use]
    pub fn allocated(&self) -> u64 {
        u64::from(self.pages.count_ones()) * PAGE
    }

    /// Whether an earlier I/O error poisoned the file.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, what: &str, e: &io::Error) -> SpillError {
        poison(&self.failed, "pack file", what, e)
    }

    /// The slot, or `Failed` for a poisoned (or released) file.
    fn slot(&self) -> Result<&Slot, SpillError> {
        match &self.slot {
            Some(s) if !self.failed() => Ok(s),
            _ => Err(SpillError::Failed),
        }
    }

    /// Whether `[off, end)` fits in the slot.
    #[must_use]
    pub fn fits(off: u64, end: u64) -> bool {
        off <= end && end <= SLOT
    }

    /// Copies bytes at `off` into `buf` up to the end of the file.
    ///
    /// # Errors
    /// [`SpillError::Failed`] for a poisoned file or a read error.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, SpillError> {
        let slot = self.slot()?;
        if off >= self.len {
            return Ok(0);
        }
        let n = ((self.len - off) as usize).min(buf.len());
        if let Err(e) = slot.file.read_exact_at(&mut buf[..n], slot.base() + off) {
            return Err(self.fail("read", &e));
        }
        Ok(n)
    }

    /// Reserves the pages of `[off, end)` not held yet: budget first, then
    /// the disk. On failure nothing has changed.
    fn reserve(&mut self, off: u64, end: u64, budget: &Budget) -> Result<(), SpillError> {
        let want = page_bits(off / PAGE, end.div_ceil(PAGE)) & !self.pages;
        if want == 0 {
            return Ok(());
        }
        let bytes = u64::from(want.count_ones()) * PAGE;
        budget.reserve_bytes(bytes).map_err(|_| SpillError::NoSpace)?;
        // One call over the span of the missing pages: pages already held
        // inside it are left as they are by fallocate.
        let first = u64::from(want.trailing_zeros());
        let last = u64::from(32 - want.leading_zeros());
        let slot = self.slot()?;
        if let Err(e) = fallocate(&slot.file, 0, slot.base() + first * PAGE, (last - first) * PAGE) {
            budget.release_bytes(bytes);
            return Err(match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => SpillError::NoSpace,
                _ => self.fail("fallocate", &e),
            });
        }
        self.pages |= want;
        Ok(())
    }

    /// Writes `data` at `off`; the range must fit the slot.
    ///
    /// # Errors
    /// [`SpillError::NoSpace`] with nothing changed (or, where the spill
    /// disk ran out partway, with a prefix written); [`SpillError::Failed`].
    pub fn write_at(&mut self, off: u64, data: &[u8], budget: &Budget) -> Result<(), SpillError> {
        match self.write_some(off, data, budget)? {
            n if n < data.len() => Err(SpillError::NoSpace),
            _ => Ok(()),
        }
    }

    /// Writes `data` at `off` and returns how many bytes landed: all, or
    /// fewer where a spill disk whose reservations promise nothing
    /// (copy-on-write) ran out partway, as a disk file system answers a
    /// short write. The range must fit the slot.
    ///
    /// # Errors
    /// [`SpillError::NoSpace`] with nothing written; [`SpillError::Failed`].
    pub fn write_some(&mut self, off: u64, data: &[u8], budget: &Budget) -> Result<usize, SpillError> {
        let end = off + data.len() as u64;
        debug_assert!(Self::fits(off, end), "a write past the slot");
        self.slot()?;
        if data.is_empty() {
            return Ok(0);
        }
        self.reserve(off, end, budget)?;
        let slot = self.slot()?;
        let done = write_some_at(&slot.file, data, slot.base() + off, &self.failed, "pack file")?;
        self.len = self.len.max(off + done as u64);
        Ok(done)
    }

    /// Zeroes `[off, end)` of the slot: pages it covers whole are given back
    /// (to the disk and the budget), the rest is zeroed in place.
    fn zero(&mut self, off: u64, end: u64, budget: &Budget) -> Result<(), SpillError> {
        if off >= end {
            return Ok(());
        }
        let slot = self.slot()?;
        if let Err(e) = fallocate(&slot.file, PUNCH_HOLE | KEEP_SIZE, slot.base() + off, end - off) {
            return Err(self.fail("punch hole", &e));
        }
        let freed = page_bits(off.div_ceil(PAGE), end / PAGE) & self.pages;
        self.pages &= !freed;
        budget.release_bytes(u64::from(freed.count_ones()) * PAGE);
        Ok(())
    }

    /// Truncates or extends; `len` must fit the slot.
    ///
    /// # Errors
    /// [`SpillError::Failed`].
    pub fn set_len(&mut self, len: u64, budget: &Budget) -> Result<(), SpillError> {
        debug_assert!(len <= SLOT, "a size past the slot");
        self.slot()?;
        if len < self.len {
            // Everything past the new end reads as zero if it grows again.
            self.zero(len, SLOT, budget)?;
        }
        self.len = len;
        Ok(())
    }

    /// FALLOC_FL_PUNCH_HOLE within the file.
    ///
    /// # Errors
    /// [`SpillError::Failed`].
    pub fn punch_hole(&mut self, off: u64, len: u64, budget: &Budget) -> Result<(), SpillError> {
        self.slot()?;
        let end = off.saturating_add(len).min(self.len);
        self.zero(off, end, budget)
    }

    /// fallocate mode 0 or KEEP_SIZE; the range must fit the slot.
    ///
    /// # Errors
    /// [`SpillError::NoSpace`] with nothing changed; [`SpillError::Failed`].
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool, budget: &Budget) -> Result<(), SpillError> {
        let end = off.saturating_add(len);
        debug_assert!(Self::fits(off, end), "an allocation past the slot");
        self.slot()?;
        self.reserve(off, end, budget)?;
        if !keep_size {
            self.len = self.len.max(end);
        }
        Ok(())
    }

    /// SEEK_DATA: the first held page at or after `off`.
    #[must_use]
    pub fn seek_data(&self, off: u64) -> Option<u64> {
        if off >= self.len {
            return None;
        }
        let held = self.pages & page_bits(off / PAGE, u64::from(PAGES));
        (held != 0)
            .then(|| (u64::from(held.trailing_zeros()) * PAGE).max(off))
            .filter(|p| *p < self.len)
    }

    /// SEEK_HOLE: the first page at or after `off` holding nothing, or the
    /// end of the file.
    #[must_use]
    pub fn seek_hole(&self, off: u64) -> Option<u64> {
        if off >= self.len {
            return None;
        }
        let holes = !self.pages & page_bits(off / PAGE, u64::from(PAGES));
        let hole = if holes == 0 {
            self.len
        } else {
            u64::from(holes.trailing_zeros()) * PAGE
        };
        Some(hole.max(off).min(self.len))
    }

    /// The held pages' bytes, in runs of (offset, bytes) up to the end of
    /// the file: what a move to another tier copies.
    ///
    /// # Errors
    /// [`SpillError::Failed`] for a poisoned file or a read error.
    pub fn pieces(&self) -> Result<Vec<(u64, Vec<u8>)>, SpillError> {
        let mut out = Vec::new();
        let mut page = 0u64;
        while page < u64::from(PAGES) {
            if self.pages & (1 << page) == 0 {
                page += 1;
                continue;
            }
            let first = page;
            while page < u64::from(PAGES) && self.pages & (1 << page) != 0 {
                page += 1;
            }
            let (off, end) = (first * PAGE, (page * PAGE).min(self.len));
            if off >= end {
                break;
            }
            let mut buf = vec![0u8; (end - off) as usize];
            self.read_at(off, &mut buf)?;
            out.push((off, buf));
        }
        Ok(out)
    }

    /// Gives the slot and its disk space back.
    pub fn release(&mut self, budget: &Budget) {
        budget.release_bytes(self.allocated());
        self.pages = 0;
        self.len = 0;
        self.slot = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs() -> (tempfile::TempDir, Arc<Packs>, Budget) {
        let dir = tempfile::tempdir().unwrap();
        let packs = Arc::new(Packs::new(dir.path().to_path_buf()));
        (dir, packs, Budget::new(1 << 30, 1 << 30))
    }

    fn contents(f: &PackedFile) -> Vec<u8> {
        let mut buf = vec![0xAA; f.len() as usize + 10];
        let n = f.read_at(0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn page_bits_cover_the_range() {
        assert_eq!(page_bits(0, 0), 0);
        assert_eq!(page_bits(0, 1), 1);
        assert_eq!(page_bits(1, 3), 0b110);
        assert_eq!(page_bits(0, 16), 0xFFFF);
        assert_eq!(page_bits(15, 99), 1 << 15);
        assert_eq!(page_bits(16, 99), 0);
    }

    #[test]
    fn writes_read_back_and_charge_whole_pages() {
        let (_d, packs, budget) = packs();
        let mut f = PackedFile::create(&packs).unwrap();
        f.write_at(0, b"hello", &budget).unwrap();
        f.write_at(10_000, b"world", &budget).unwrap();
        assert_eq!(f.len(), 10_005);
        // Pages 0 and 2 are held, page 1 is a hole.
        assert_eq!(f.allocated(), 2 * PAGE);
        assert_eq!(budget.bytes(), 2 * PAGE);
        let c = contents(&f);
        assert_eq!(&c[..5], b"hello");
        assert!(c[5..10_000].iter().all(|b| *b == 0));
        assert_eq!(&c[10_000..], b"world");
        assert_eq!((f.seek_data(5000), f.seek_hole(0)), (Some(8192), Some(4096)));
        assert_eq!(f.seek_hole(8192), Some(10_005));
        f.release(&budget);
        assert_eq!(budget.bytes(), 0);
    }

    #[test]
    fn truncate_then_grow_reads_zeros_and_frees_pages() {
        let (_d, packs, budget) = packs();
        let mut f = PackedFile::create(&packs).unwrap();
        f.write_at(0, &[7u8; 20_000], &budget).unwrap();
        assert_eq!(f.allocated(), 5 * PAGE);
        f.set_len(5000, &budget).unwrap();
        // Page 0 is whole, page 1 keeps the last bytes, pages 2-4 go.
        assert_eq!((f.allocated(), budget.bytes()), (2 * PAGE, 2 * PAGE));
        f.set_len(SLOT, &budget).unwrap();
        let c = contents(&f);
        assert!(c[..5000].iter().all(|b| *b == 7));
        assert!(c[5000..].iter().all(|b| *b == 0), "stale bytes past a truncation");
        f.punch_hole(0, 4096, &budget).unwrap();
        assert_eq!(f.allocated(), PAGE);
        assert!(contents(&f)[..5000].iter().all(|b| *b == 0 || *b == 7));
        assert!(contents(&f)[..4096].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_freed_slot_comes_back_empty() {
        let (_d, packs, budget) = packs();
        let mut a = PackedFile::create(&packs).unwrap();
        a.write_at(0, &[9u8; 8192], &budget).unwrap();
        a.release(&budget);
        let mut b = PackedFile::create(&packs).unwrap();
        b.set_len(8192, &budget).unwrap();
        assert!(contents(&b).iter().all(|x| *x == 0), "bytes of the slot's last owner");
        assert_eq!((b.allocated(), packs.files()), (0, 1));
    }

    #[test]
    fn the_budget_refuses_with_nothing_changed() {
        let (_d, packs, _) = packs();
        let budget = Budget::new(PAGE, 1 << 30);
        let mut f = PackedFile::create(&packs).unwrap();
        f.write_at(0, b"x", &budget).unwrap();
        assert_eq!(f.write_at(PAGE, b"y", &budget), Err(SpillError::NoSpace));
        assert_eq!((f.len(), f.allocated(), contents(&f)), (1, PAGE, b"x".to_vec()));
        // Within the page already held it still writes.
        f.write_at(100, b"z", &budget).unwrap();
        assert_eq!(f.len(), 101);
    }

    #[test]
    fn pieces_are_the_held_pages_up_to_the_end() {
        let (_d, packs, budget) = packs();
        let mut f = PackedFile::create(&packs).unwrap();
        f.write_at(100, b"a", &budget).unwrap();
        f.write_at(3 * PAGE, b"bc", &budget).unwrap();
        let p = f.pieces().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].0, p[0].1.len(), p[0].1[100]), (0, PAGE as usize, b'a'));
        assert_eq!((p[1].0, p[1].1.as_slice()), (3 * PAGE, b"bc".as_slice()));
    }
}
