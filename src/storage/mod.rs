//! A file's bytes, and the budget that bounds them.
//!
//! [`FileData`] is the one interface the core uses for file contents. It is
//! an explicit tier state, [`FileData::Ram`] or [`FileData::Spill`], behind
//! the same methods; nothing outside `storage` sees a chunk or a map. Moving
//! between tiers ([`FileData::spill`], [`FileData::unspill`]) copies the
//! bytes while the caller holds the file's data lock, so readers and writers
//! of that file see the same contents before, during and after the move.

pub mod budget;
pub mod ram;
mod sigbus;
pub mod spill;

use budget::{Budget, NoSpace};
use ram::{RamFile, CHUNK_SIZE};
use spill::{SpillDir, SpillError, SpillFile};

/// Which tier holds a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Sparse chunks in memory.
    Ram,
    /// An unlinked disk file, through a memory map.
    Spill,
}

/// Why a storage operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageError {
    /// A limit or the spill disk is full; nothing was changed.
    NoSpace,
    /// Past the largest file the spill file system holds; nothing changed.
    TooBig,
    /// The file's spill storage failed; it answers EIO from now on.
    Io,
}

impl From<NoSpace> for StorageError {
    fn from(_: NoSpace) -> Self {
        Self::NoSpace
    }
}

impl From<SpillError> for StorageError {
    fn from(e: SpillError) -> Self {
        match e {
            SpillError::NoSpace => Self::NoSpace,
            SpillError::TooBig => Self::TooBig,
            SpillError::Failed => Self::Io,
        }
    }
}

/// A write whose space is reserved and whose size is set, its bytes not
/// yet copied: see [`FileData::prepare_write`].
#[derive(Debug)]
#[must_use = "a prepared write must be finished before the file is let go"]
pub struct PreparedWrite {
    off: u64,
    len: usize,
    copy: bool,
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// The contents of one regular file.
#[derive(Debug)]
pub enum FileData {
    /// Held in memory.
    Ram(RamFile),
    /// Held in a spill file.
    Spill(SpillFile),
}

impl Default for FileData {
    fn default() -> Self {
        Self::Ram(RamFile::new())
    }
}

impl FileData {
    /// The tier the bytes live in.
    #[must_use]
    pub fn tier(&self) -> Tier {
        match self {
            Self::Ram(_) => Tier::Ram,
            Self::Spill(_) => Tier::Spill,
        }
    }

    /// Whether the file's storage failed (an I/O error of its spill
    /// file): it answers EIO from then on.
    #[must_use]
    pub fn failed(&self) -> bool {
        match self {
            Self::Ram(_) => false,
            Self::Spill(f) => f.failed(),
        }
    }

    /// Logical size.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            Self::Ram(f) => f.len(),
            Self::Spill(f) => f.len(),
        }
    }

    /// Whether the file is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage held (what `st_blocks` reports).
    #[must_use]
    pub fn allocated(&self) -> u64 {
        match self {
            Self::Ram(f) => f.allocated(),
            Self::Spill(f) => f.allocated(),
        }
    }

    /// Reads at `off` into `buf`; returns the count (short at end of file).
    ///
    /// # Errors
    /// [`StorageError::Io`] for a failed spill file.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> StorageResult<usize> {
        match self {
            Self::Ram(f) => Ok(f.read_at(off, buf)),
            Self::Spill(f) => Ok(f.read_at(off, buf)?),
        }
    }

    /// Writes `data` at `off`.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] with nothing changed, or [`StorageError::Io`].
    pub fn write_at(&mut self, off: u64, data: &[u8], budget: &Budget) -> StorageResult<()> {
        match self {
            Self::Ram(f) => Ok(f.write_at(off, data, budget)?),
            Self::Spill(f) => Ok(f.write_at(off, data, budget)?),
        }
    }

    /// The half of a write of `data` at `off` that can fail: space is
    /// reserved and the new size set, so that the write can be answered
    /// before its bytes are copied by [`FileData::finish_write`], which must
    /// follow before the caller lets go of the file (some writes are done
    /// whole here; finishing them does nothing).
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] with nothing changed, or [`StorageError::Io`].
    pub fn prepare_write(&mut self, off: u64, data: &[u8], budget: &Budget) -> StorageResult<PreparedWrite> {
        let copy = match self {
            Self::Ram(f) => {
                f.prepare_write(off, data.len(), budget)?;
                !data.is_empty()
            }
            Self::Spill(f) => f.prepare_write(off, data, budget)?,
        };
        Ok(PreparedWrite {
            off,
            len: data.len(),
            copy,
        })
    }

    /// Copies the bytes of a write that [`FileData::prepare_write`]
    /// prepared; `data` must be the same bytes. Fails only when the spill
    /// disk does, and the file then answers EIO from now on.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    pub fn finish_write(&mut self, w: PreparedWrite, data: &[u8], budget: &Budget) -> StorageResult<()> {
        debug_assert_eq!(w.len, data.len(), "a prepared write finished with other bytes");
        if !w.copy {
            return Ok(());
        }
        match self {
            Self::Ram(f) => f.finish_write(w.off, data, budget),
            Self::Spill(f) => f.finish_write(w.off, data)?,
        }
        Ok(())
    }

    /// Truncates or extends.
    ///
    /// # Errors
    /// [`StorageError::Io`] for a failed spill file.
    pub fn set_len(&mut self, len: u64, budget: &Budget) -> StorageResult<()> {
        match self {
            Self::Ram(f) => {
                f.set_len(len, budget);
                Ok(())
            }
            Self::Spill(f) => Ok(f.set_len(len, budget)?),
        }
    }

    /// fallocate mode 0 (`keep_size == false`) or KEEP_SIZE.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] with nothing changed, or [`StorageError::Io`].
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool, budget: &Budget) -> StorageResult<()> {
        match self {
            Self::Ram(f) => Ok(f.allocate(off, len, keep_size, budget)?),
            Self::Spill(f) => Ok(f.allocate(off, len, keep_size, budget)?),
        }
    }

    /// FALLOC_FL_PUNCH_HOLE.
    ///
    /// # Errors
    /// [`StorageError::Io`] for a failed spill file.
    pub fn punch_hole(&mut self, off: u64, len: u64, budget: &Budget) -> StorageResult<()> {
        match self {
            Self::Ram(f) => {
                f.punch_hole(off, len, budget);
                Ok(())
            }
            Self::Spill(f) => Ok(f.punch_hole(off, len, budget)?),
        }
    }

    /// SEEK_DATA.
    #[must_use]
    pub fn seek_data(&self, off: u64) -> Option<u64> {
        match self {
            Self::Ram(f) => f.seek_data(off),
            Self::Spill(f) => f.seek_data(off),
        }
    }

    /// SEEK_HOLE.
    #[must_use]
    pub fn seek_hole(&self, off: u64) -> Option<u64> {
        match self {
            Self::Ram(f) => f.seek_hole(off),
            Self::Spill(f) => f.seek_hole(off),
        }
    }

    /// Frees everything, returning it to the budget.
    pub fn release(&mut self, budget: &Budget) {
        match self {
            Self::Ram(f) => f.release(budget),
            Self::Spill(f) => f.release(budget),
        }
    }

    /// Starts a passthrough open of a spilled file (see
    /// [`SpillFile::begin_passthrough`]): `None` in RAM, where the daemon
    /// serves every open. The file stays spilled until the matching
    /// [`FileData::end_passthrough`].
    pub fn begin_passthrough(&mut self, mtime: std::time::SystemTime) -> Option<std::io::Result<std::fs::File>> {
        match self {
            Self::Ram(_) => None,
            Self::Spill(f) => Some(f.begin_passthrough(mtime)),
        }
    }

    /// Ends a passthrough open started by [`FileData::begin_passthrough`].
    pub fn end_passthrough(&mut self, budget: &Budget) {
        if let Self::Spill(f) = self {
            f.end_passthrough(budget);
        }
    }

    /// In passthrough: charges the kernel's writes so far (see
    /// [`SpillFile::settle_passthrough`]); nothing otherwise.
    ///
    /// # Errors
    /// The disk file cannot be stat'ed.
    pub fn settle_passthrough(&mut self, budget: &Budget) -> Result<(), StorageError> {
        match self {
            Self::Spill(f) => f.settle_passthrough(budget).map_err(StorageError::from),
            Self::Ram(_) => Ok(()),
        }
    }

    /// Whether passthrough opens hold the file (it cannot change tiers).
    #[must_use]
    pub fn in_passthrough(&self) -> bool {
        matches!(self, Self::Spill(f) if f.in_passthrough())
    }

    /// In passthrough: size, allocated bytes, modification and change
    /// times as the kernel's writes left them.
    #[must_use]
    pub fn passthrough_state(&self) -> Option<(u64, u64, std::time::SystemTime, std::time::SystemTime)> {
        match self {
            Self::Spill(f) => f.passthrough_state(),
            Self::Ram(_) => None,
        }
    }

    /// In passthrough: sets the modification time the kernel's writes
    /// will move on from.
    pub fn set_passthrough_mtime(&self, mtime: std::time::SystemTime) {
        if let Self::Spill(f) = self {
            f.set_passthrough_mtime(mtime);
        }
    }

    /// Moves the bytes to a new spill file in `dir`; does nothing if they
    /// are spilled already. On failure the file stays in RAM, unchanged.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] (size limit or spill disk full), or
    /// [`StorageError::Io`] when the spill file cannot be made.
    pub fn spill(&mut self, dir: &SpillDir, budget: &Budget) -> StorageResult<()> {
        let Self::Ram(ram) = self else {
            return Ok(());
        };
        let mut file = SpillFile::create(dir).map_err(|e| {
            tracing::error!("cannot create a spill file in {}: {e}", dir.path().display());
            if e.raw_os_error() == Some(libc::ENOSPC) {
                StorageError::NoSpace
            } else {
                StorageError::Io
            }
        })?;
        let copied = ram
            .pieces()
            .try_for_each(|(off, bytes)| file.write_at(off, bytes, budget))
            .and_then(|()| file.set_len(ram.len(), budget));
        if let Err(e) = copied {
            file.release(budget);
            return Err(e.into());
        }
        ram.release(budget);
        *self = Self::Spill(file);
        Ok(())
    }

    /// Moves the bytes back into memory; does nothing if they are there
    /// already. On failure the file stays spilled, unchanged.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] when memory cannot be reserved, or
    /// [`StorageError::Io`] for a failed spill file.
    pub fn unspill(&mut self, budget: &Budget) -> StorageResult<()> {
        let Self::Spill(file) = self else {
            return Ok(());
        };
        let mut ram = RamFile::new();
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut off = 0;
        let len = file.len();
        let result = (|| {
            while off < len {
                let n = file.read_at(off, &mut buf)?;
                if n == 0 {
                    break;
                }
                // Holes stay holes.
                if buf[..n].iter().any(|b| *b != 0) {
                    ram.write_at(off, &buf[..n], budget)?;
                }
                off += n as u64;
            }
            ram.set_len(len, budget);
            Ok::<(), StorageError>(())
        })();
        if let Err(e) = result {
            ram.release(budget);
            return Err(e);
        }
        file.release(budget);
        *self = Self::Ram(ram);
        Ok(())
    }
}
