//! A file's bytes, and the budget that bounds them.
//!
//! [`FileData`] is the one interface the core uses for file contents. It is
//! an explicit tier state: today every file is [`FileData::Ram`]; the spill
//! tier adds a second variant behind the same methods, so nothing outside
//! `storage` ever sees a chunk or a map.

pub mod budget;
pub mod ram;

use budget::{Budget, NoSpace};
use ram::RamFile;

/// Which tier holds a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Sparse chunks in memory.
    Ram,
}

/// The contents of one regular file.
#[derive(Debug)]
pub enum FileData {
    /// Held in memory.
    Ram(RamFile),
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
        }
    }

    /// Logical size.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            Self::Ram(f) => f.len(),
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
        }
    }

    /// Reads at `off` into `buf`; returns the count (short at end of file).
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        match self {
            Self::Ram(f) => f.read_at(off, buf),
        }
    }

    /// Writes `data` at `off`.
    ///
    /// # Errors
    /// [`NoSpace`] with nothing changed.
    pub fn write_at(&mut self, off: u64, data: &[u8], budget: &Budget) -> Result<(), NoSpace> {
        match self {
            Self::Ram(f) => f.write_at(off, data, budget),
        }
    }

    /// Truncates or extends.
    pub fn set_len(&mut self, len: u64, budget: &Budget) {
        match self {
            Self::Ram(f) => f.set_len(len, budget),
        }
    }

    /// fallocate mode 0 (`keep_size == false`) or KEEP_SIZE.
    ///
    /// # Errors
    /// [`NoSpace`] with nothing changed.
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool, budget: &Budget) -> Result<(), NoSpace> {
        match self {
            Self::Ram(f) => f.allocate(off, len, keep_size, budget),
        }
    }

    /// FALLOC_FL_PUNCH_HOLE.
    pub fn punch_hole(&mut self, off: u64, len: u64, budget: &Budget) {
        match self {
            Self::Ram(f) => f.punch_hole(off, len, budget),
        }
    }

    /// SEEK_DATA.
    #[must_use]
    pub fn seek_data(&self, off: u64) -> Option<u64> {
        match self {
            Self::Ram(f) => f.seek_data(off),
        }
    }

    /// SEEK_HOLE.
    #[must_use]
    pub fn seek_hole(&self, off: u64) -> Option<u64> {
        match self {
            Self::Ram(f) => f.seek_hole(off),
        }
    }

    /// Frees everything, returning it to the budget.
    pub fn release(&mut self, budget: &Budget) {
        match self {
            Self::Ram(f) => f.release(budget),
        }
    }
}
