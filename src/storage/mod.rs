//! A file's bytes, and the budget that bounds them.
//!
//! [`FileData`] is the one interface the core uses for file contents. It is
//! an explicit tier state, [`FileData::Ram`], [`FileData::Spill`] or
//! [`FileData::Packed`], behind the same methods; nothing outside `storage`
//! sees a chunk, a map or a slot. Moving between tiers ([`FileData::spill`],
//! [`FileData::pack`], [`FileData::unspill`]) copies the bytes while the
//! caller holds the file's data lock, so readers and writers of that file
//! see the same contents before, during and after the move. A large RAM
//! file can instead be copied out a slice at a time ([`CopyOut`]) while it
//! stays in use, and trade places with its copy at the end.

pub mod budget;
pub mod pack;
pub mod ram;
mod sigbus;
pub mod spill;

use budget::{Budget, NoSpace};
use pack::{PackedFile, SLOT};
use ram::{RamFile, CHUNK_SIZE};
use spill::{Prepared, SpillDir, SpillError, SpillFile};

/// Which tier holds a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Sparse chunks in memory.
    Ram,
    /// An unlinked disk file, through a memory map.
    Spill,
    /// A slot of a shared disk file: a small file spilled under memory
    /// pressure (see [`pack`]).
    Packed,
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

impl PreparedWrite {
    /// Bytes the write takes: all that were asked, or fewer when a spill
    /// disk ran out partway through a write done at once (a short write,
    /// as a disk file system answers one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the write takes no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// A RAM file's copy into a new spill file, made a slice at a time while
/// the file stays in RAM and in use: a file crossing the spool threshold
/// then costs its writer no pause for the whole copy. The RAM file stays
/// the one that answers until [`CopyOut::finish`], which copies what was
/// added or changed behind the copy and puts the spill file in its place.
/// Every step takes the file's data lock as the caller holds it; the copy
/// belongs to the RAM file it started from only as long as that file is
/// neither released nor moved ([`CopyOut::is_of`]).
///
/// The copy is charged to a budget of its own, as in every move (see
/// `FileData::move_to`), and handed over at the end.
#[derive(Debug)]
pub struct CopyOut {
    id: u64,
    to: FileData,
    staging: Budget,
}

impl CopyOut {
    /// Starts copying the RAM file `data` into a new spill file in `dir`;
    /// `id` tells this copy from any other of the same file.
    ///
    /// # Errors
    /// As for [`FileData::spill`]; [`StorageError::Io`] when `data` is not
    /// in RAM.
    pub fn begin(data: &mut FileData, dir: &SpillDir, id: u64) -> StorageResult<Self> {
        let FileData::Ram(ram) = data else {
            return Err(StorageError::Io);
        };
        let file = SpillFile::create(dir).map_err(|e| made_in(dir, &e))?;
        ram.watch(id);
        Ok(Self {
            id,
            to: FileData::Spill(file),
            staging: Budget::new(u64::MAX, u64::MAX),
        })
    }

    /// Whether `data` is still the RAM file this copy is of.
    #[must_use]
    pub fn is_of(&self, data: &FileData) -> bool {
        matches!(data, FileData::Ram(ram) if ram.watched().is_some_and(|w| w.id == self.id))
    }

    /// Bytes of the file the copy holds so far (the offset it reached).
    #[must_use]
    pub fn copied(&self, data: &FileData) -> u64 {
        match data {
            FileData::Ram(ram) if self.is_of(data) => ram.watched().map_or(0, |w| w.copied),
            _ => 0,
        }
    }

    /// Copies the stored pieces of the next `max` bytes (whole chunks, at
    /// least one) of the file; returns whether pieces remain past them.
    ///
    /// # Errors
    /// As for a write to the spill file; the copy is then of no further
    /// use ([`CopyOut::abandon`] it). Nothing of `data` changes.
    pub fn step(&mut self, data: &mut FileData, max: u64) -> StorageResult<bool> {
        if !self.is_of(data) {
            return Ok(false);
        }
        let FileData::Ram(ram) = data else { return Ok(false) };
        let from = ram.watched().map_or(0, |w| w.copied);
        let limit = from.saturating_add(max.max(CHUNK_SIZE as u64));
        let mut copied = from;
        for (off, bytes) in ram.pieces_from(from) {
            if off >= limit {
                break;
            }
            self.to.write_at(off, bytes, &self.staging)?;
            copied = off + CHUNK_SIZE as u64;
        }
        let end = ram.stored_end();
        // Holes count as copied: they are holes in the copy too.
        copied = copied.max(limit.min(end)).max(from);
        ram.set_copied(copied);
        Ok(copied < end)
    }

    /// Copies the rest, copies again from the lowest offset changed behind
    /// the copy, gives the copy the file's size and puts it in place of the
    /// RAM file, whose charge goes back to `budget`. Returns the RAM file's
    /// memory, to be dropped once the caller has let go of the file.
    ///
    /// # Errors
    /// As for [`CopyOut::step`]; the file then stays in RAM, unchanged, and
    /// the copy is released. [`StorageError::Io`] when the copy is no
    /// longer of `data`.
    pub fn finish(mut self, data: &mut FileData, budget: &Budget) -> StorageResult<RamFile> {
        if !self.is_of(data) {
            self.abandon(None);
            return Err(StorageError::Io);
        }
        if let Err(e) = self.finish_copy(data) {
            self.abandon(Some(data));
            return Err(e);
        }
        let FileData::Ram(ram) = data else {
            return Err(StorageError::Io);
        };
        let memory = ram.release_deferred(budget);
        budget.force_ram(self.staging.ram());
        budget.force_bytes(self.staging.bytes() - self.staging.ram());
        *data = self.to;
        Ok(memory)
    }

    fn finish_copy(&mut self, data: &mut FileData) -> StorageResult<()> {
        let FileData::Ram(ram) = data else {
            return Err(StorageError::Io);
        };
        let w = ram.watched().ok_or(StorageError::Io)?;
        let mut from = w.copied;
        if w.changed_from < from {
            // Cut the copy where the changes begin (a chunk boundary, as
            // the copy holds whole chunks) and take the rest again.
            from = w.changed_from / CHUNK_SIZE as u64 * CHUNK_SIZE as u64;
            self.to.set_len(from, &self.staging)?;
        }
        for (off, bytes) in ram.pieces_from(from) {
            self.to.write_at(off, bytes, &self.staging)?;
        }
        self.to.set_len(ram.len(), &self.staging)
    }

    /// Gives the copy up: releases the spill file and, when `data` is
    /// still the file it is of, stops watching it.
    pub fn abandon(mut self, data: Option<&mut FileData>) {
        if let Some(data) = data {
            if let (true, FileData::Ram(ram)) = (self.is_of(data), &mut *data) {
                ram.unwatch();
            }
        }
        self.to.release(&self.staging);
    }
}

/// The contents of one regular file.
#[derive(Debug)]
pub enum FileData {
    /// Held in memory.
    Ram(RamFile),
    /// Held in a spill file.
    Spill(SpillFile),
    /// Held in a slot of a pack file.
    Packed(PackedFile),
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
            Self::Packed(_) => Tier::Packed,
        }
    }

    /// Whether the file's storage failed (an I/O error of its spill
    /// file): it answers EIO from then on.
    #[must_use]
    pub fn failed(&self) -> bool {
        match self {
            Self::Ram(_) => false,
            Self::Spill(f) => f.failed(),
            Self::Packed(f) => f.failed(),
        }
    }

    /// Logical size.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            Self::Ram(f) => f.len(),
            Self::Spill(f) => f.len(),
            Self::Packed(f) => f.len(),
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
            Self::Packed(f) => f.allocated(),
        }
    }

    /// What a write of `len` bytes at `off` would add to
    /// [`FileData::allocated`]: exact in RAM, `len` (an upper bound) in the
    /// other tiers.
    #[must_use]
    pub fn growth(&self, off: u64, len: usize) -> u64 {
        match self {
            Self::Ram(f) => f.growth(off, len),
            Self::Spill(_) | Self::Packed(_) => len as u64,
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
            Self::Packed(f) => Ok(f.read_at(off, buf)?),
        }
    }

    /// Writes `data` at `off`.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] with nothing changed, or [`StorageError::Io`].
    pub fn write_at(&mut self, off: u64, data: &[u8], budget: &Budget) -> StorageResult<()> {
        self.unpack_unless_fits(off, off.saturating_add(data.len() as u64), budget)?;
        match self {
            Self::Ram(f) => Ok(f.write_at(off, data, budget)?),
            Self::Spill(f) => Ok(f.write_at(off, data, budget)?),
            Self::Packed(f) => Ok(f.write_at(off, data, budget)?),
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
        self.unpack_unless_fits(off, off.saturating_add(data.len() as u64), budget)?;
        let (len, copy) = match self {
            Self::Ram(f) => {
                f.prepare_write(off, data.len(), budget)?;
                (data.len(), !data.is_empty())
            }
            Self::Spill(f) => match f.prepare_write(off, data, budget)? {
                Prepared::Copy => (data.len(), true),
                Prepared::Done(n) => (n, false),
            },
            // Small: copied now, so that an error reaches this write.
            Self::Packed(f) => (f.write_some(off, data, budget)?, false),
        };
        Ok(PreparedWrite { off, len, copy })
    }

    /// Copies the bytes of a write that [`FileData::prepare_write`]
    /// prepared; `data` must be the same bytes. Fails only when the spill
    /// disk does, and the file then answers EIO from now on.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    pub fn finish_write(&mut self, w: PreparedWrite, data: &[u8], budget: &Budget) -> StorageResult<()> {
        if !w.copy {
            return Ok(());
        }
        debug_assert_eq!(w.len, data.len(), "a prepared write finished with other bytes");
        match self {
            Self::Ram(f) => f.finish_write(w.off, data, budget),
            Self::Spill(f) => f.finish_write(w.off, data)?,
            Self::Packed(_) => {}
        }
        Ok(())
    }

    /// Truncates or extends.
    ///
    /// # Errors
    /// [`StorageError::Io`] for a failed spill file.
    pub fn set_len(&mut self, len: u64, budget: &Budget) -> StorageResult<()> {
        self.unpack_unless_fits(0, len, budget)?;
        match self {
            Self::Ram(f) => {
                f.set_len(len, budget);
                Ok(())
            }
            Self::Spill(f) => Ok(f.set_len(len, budget)?),
            Self::Packed(f) => Ok(f.set_len(len, budget)?),
        }
    }

    /// fallocate mode 0 (`keep_size == false`) or KEEP_SIZE.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] with nothing changed, or [`StorageError::Io`].
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool, budget: &Budget) -> StorageResult<()> {
        self.unpack_unless_fits(off, off.saturating_add(len), budget)?;
        match self {
            Self::Ram(f) => Ok(f.allocate(off, len, keep_size, budget)?),
            Self::Spill(f) => Ok(f.allocate(off, len, keep_size, budget)?),
            Self::Packed(f) => Ok(f.allocate(off, len, keep_size, budget)?),
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
            Self::Packed(f) => Ok(f.punch_hole(off, len, budget)?),
        }
    }

    /// SEEK_DATA.
    #[must_use]
    pub fn seek_data(&self, off: u64) -> Option<u64> {
        match self {
            Self::Ram(f) => f.seek_data(off),
            Self::Spill(f) => f.seek_data(off),
            Self::Packed(f) => f.seek_data(off),
        }
    }

    /// SEEK_HOLE.
    #[must_use]
    pub fn seek_hole(&self, off: u64) -> Option<u64> {
        match self {
            Self::Ram(f) => f.seek_hole(off),
            Self::Spill(f) => f.seek_hole(off),
            Self::Packed(f) => f.seek_hole(off),
        }
    }

    /// At a file's last close: gives back disk reserved ahead of writes
    /// (see [`SpillFile::trim_reservation`]); nothing in the other tiers.
    ///
    /// # Errors
    /// [`StorageError::Io`] for a failed spill file.
    pub fn trim_reservation(&mut self, budget: &Budget) -> StorageResult<()> {
        match self {
            Self::Spill(f) => Ok(f.trim_reservation(budget)?),
            Self::Ram(_) | Self::Packed(_) => Ok(()),
        }
    }

    /// Frees everything, returning it to the budget.
    pub fn release(&mut self, budget: &Budget) {
        match self {
            Self::Ram(f) => f.release(budget),
            Self::Spill(f) => f.release(budget),
            Self::Packed(f) => f.release(budget),
        }
    }

    /// Starts a passthrough open of a spilled file (see
    /// [`SpillFile::begin_passthrough`]): `None` in RAM, where the daemon
    /// serves every open. The file stays spilled until the matching
    /// [`FileData::end_passthrough`].
    pub fn begin_passthrough(&mut self, mtime: std::time::SystemTime) -> Option<std::io::Result<std::fs::File>> {
        match self {
            Self::Ram(_) | Self::Packed(_) => None,
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
            Self::Ram(_) | Self::Packed(_) => Ok(()),
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
            Self::Ram(_) | Self::Packed(_) => None,
        }
    }

    /// In passthrough: sets the modification time the kernel's writes
    /// will move on from.
    pub fn set_passthrough_mtime(&self, mtime: std::time::SystemTime) {
        if let Self::Spill(f) = self {
            f.set_passthrough_mtime(mtime);
        }
    }

    /// Hands each stored piece of the file, (offset, bytes) in order, to
    /// `put`; holes are left out (for a spill file, zeroed 64 KiB blocks
    /// too). What a move between tiers copies.
    fn copy_out(&self, mut put: impl FnMut(u64, &[u8]) -> StorageResult<()>) -> StorageResult<()> {
        match self {
            Self::Ram(f) => f.pieces().try_for_each(|(off, bytes)| put(off, bytes)),
            Self::Packed(f) => f.pieces()?.iter().try_for_each(|(off, bytes)| put(*off, bytes)),
            Self::Spill(f) => {
                let mut buf = vec![0u8; CHUNK_SIZE];
                let mut off = 0;
                while off < f.len() {
                    let n = f.read_at(off, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    // Holes stay holes.
                    if buf[..n].iter().any(|b| *b != 0) {
                        put(off, &buf[..n])?;
                    }
                    off += n as u64;
                }
                Ok(())
            }
        }
    }

    /// Replaces the storage with `to`, filled with a copy of the bytes. On
    /// failure `to` is released and the file is unchanged.
    ///
    /// The copy is charged to a budget of its own, without limits, and
    /// handed to `budget` once the old storage is given back: a move does
    /// not change what the mount holds, so it must not need room under
    /// `size=` for the file twice (which near a full mount would keep files
    /// in RAM past `max_ram=`). The spill disk's own room is still checked,
    /// by fallocate.
    fn move_to(&mut self, mut to: FileData, budget: &Budget) -> StorageResult<()> {
        let staging = Budget::new(u64::MAX, u64::MAX);
        let len = self.len();
        let copied = self
            .copy_out(|off, bytes| to.write_at(off, bytes, &staging))
            .and_then(|()| to.set_len(len, &staging));
        if let Err(e) = copied {
            to.release(&staging);
            return Err(e);
        }
        self.release(budget);
        budget.force_ram(staging.ram());
        budget.force_bytes(staging.bytes() - staging.ram());
        *self = to;
        Ok(())
    }

    /// Moves the bytes to a new spill file in `dir`; does nothing if they
    /// are in one already. On failure the file stays where it was,
    /// unchanged.
    ///
    /// # Errors
    /// [`StorageError::NoSpace`] (size limit or spill disk full), or
    /// [`StorageError::Io`] when the spill file cannot be made.
    pub fn spill(&mut self, dir: &SpillDir, budget: &Budget) -> StorageResult<()> {
        if matches!(self, Self::Spill(_)) {
            return Ok(());
        }
        let file = SpillFile::create(dir).map_err(|e| made_in(dir, &e))?;
        self.move_to(Self::Spill(file), budget)
    }

    /// Whether the file is in RAM and fits a pack slot: its size and its
    /// stored bytes (blocks reserved past the end by fallocate KEEP_SIZE
    /// included) end within [`SLOT`].
    #[must_use]
    pub fn packable(&self) -> bool {
        let Self::Ram(ram) = self else { return false };
        let held_end = ram.pieces().last().map_or(0, |(off, b)| off + b.len() as u64);
        ram.len().max(held_end) <= SLOT
    }

    /// Moves a [`FileData::packable`] file into a slot of a pack file in
    /// `dir`; does nothing for any other. On failure the file stays in
    /// RAM, unchanged.
    ///
    /// # Errors
    /// As for [`FileData::spill`].
    pub fn pack(&mut self, dir: &SpillDir, budget: &Budget) -> StorageResult<()> {
        if !self.packable() {
            return Ok(());
        }
        let file = PackedFile::create(dir.packs()).map_err(|e| made_in(dir, &e))?;
        self.move_to(Self::Packed(file), budget)
    }

    /// Moves the bytes back into memory; does nothing if they are there
    /// already. On failure the file stays on disk, unchanged. Like every
    /// move, it is not refused for `size=` (see `move_to`).
    ///
    /// # Errors
    /// [`StorageError::Io`] for a failed spill or pack file.
    pub fn unspill(&mut self, budget: &Budget) -> StorageResult<()> {
        if matches!(self, Self::Ram(_)) {
            return Ok(());
        }
        self.move_to(Self::Ram(RamFile::new()), budget)
    }

    /// A packed file about to be written or sized past its slot moves to
    /// RAM first (from where the tier policy may spill it again).
    fn unpack_unless_fits(&mut self, off: u64, end: u64, budget: &Budget) -> StorageResult<()> {
        match self {
            Self::Packed(_) if !PackedFile::fits(off, end) => self.unspill(budget),
            _ => Ok(()),
        }
    }
}

/// The error for a spill or pack file that could not be made in `dir`.
fn made_in(dir: &SpillDir, e: &std::io::Error) -> StorageError {
    tracing::error!("cannot create a spill file in {}: {e}", dir.path().display());
    if e.raw_os_error() == Some(libc::ENOSPC) {
        StorageError::NoSpace
    } else {
        StorageError::Io
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, usize, u8),
        SetLen(u64),
        Punch(u64, u64),
        Allocate(u64, u64, bool),
        Pack,
        Spill,
        Unspill,
    }

    /// Offsets on both sides of a pack slot's end.
    fn op() -> impl Strategy<Value = Op> {
        let off = 0..SLOT + (SLOT / 4);
        prop_oneof![
            4 => (off.clone(), 0..9000usize, any::<u8>()).prop_map(|(o, n, b)| Op::Write(o, n, b)),
            2 => off.clone().prop_map(Op::SetLen),
            1 => (off.clone(), 0..20_000u64).prop_map(|(o, n)| Op::Punch(o, n)),
            1 => (off, 1..20_000u64, any::<bool>()).prop_map(|(o, n, k)| Op::Allocate(o, n, k)),
            1 => Just(Op::Pack),
            1 => Just(Op::Spill),
            1 => Just(Op::Unspill),
        ]
    }

    /// `f` holds exactly the bytes of `model`, and `budget` is charged
    /// what `f` holds; `after` names the last change, for the message.
    fn holds(f: &FileData, model: &[u8], budget: &Budget, after: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
        prop_assert_eq!(f.len(), model.len() as u64, "{:?} in {:?}", after, f.tier());
        let mut got = vec![0xEE; model.len() + 7];
        let n = f.read_at(0, &mut got).unwrap();
        prop_assert_eq!(n, model.len());
        prop_assert!(got[..n] == model[..], "{:?} in {:?}: contents differ", after, f.tier());
        prop_assert_eq!(budget.bytes(), f.allocated(), "{:?} in {:?}", after, f.tier());
        Ok(())
    }

    fn apply(model: &mut Vec<u8>, f: &mut FileData, op: &Op, dir: &SpillDir, budget: &Budget) {
        match *op {
            Op::Write(off, n, b) => {
                let end = off as usize + n;
                if n > 0 {
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].fill(b);
                }
                f.write_at(off, &vec![b; n], budget).unwrap();
            }
            Op::SetLen(len) => {
                model.resize(len as usize, 0);
                f.set_len(len, budget).unwrap();
            }
            Op::Punch(off, n) => {
                let end = (off + n).min(model.len() as u64) as usize;
                if (off as usize) < end {
                    model[off as usize..end].fill(0);
                }
                f.punch_hole(off, n, budget).unwrap();
            }
            Op::Allocate(off, n, keep) => {
                if !keep && model.len() < (off + n) as usize {
                    model.resize((off + n) as usize, 0);
                }
                f.allocate(off, n, keep, budget).unwrap();
            }
            Op::Pack => f.pack(dir, budget).unwrap(),
            Op::Spill => f.spill(dir, budget).unwrap(),
            Op::Unspill => f.unspill(budget).unwrap(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Every tier holds the same bytes through every change and every
        /// move, and what it holds is what the budget is charged.
        #[test]
        fn every_tier_keeps_the_bytes_through_changes_and_moves(ops in proptest::collection::vec(op(), 1..40)) {
            let parent = tempfile::tempdir().unwrap();
            let dir = SpillDir::create(parent.path(), true).unwrap();
            let budget = Budget::new(1 << 30, 1 << 30);
            let mut f = FileData::default();
            let mut model = Vec::new();
            for op in &ops {
                let packable = f.packable();
                apply(&mut model, &mut f, op, &dir, &budget);
                holds(&f, &model, &budget, op)?;
                if matches!(op, Op::Pack) && packable {
                    prop_assert_eq!(f.tier(), Tier::Packed);
                }
            }
            f.release(&budget);
            prop_assert_eq!(budget.bytes(), 0);
        }
    }

    proptest! {
        // More cases: the failures worth finding need a copy begun,
        // stepped past a change and finished, in that order.
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// A copy made a slice at a time while the file changes under it
        /// (writes behind it, ahead of it and across it, truncation, holes,
        /// a tier move that leaves it behind) ends holding exactly what the
        /// file holds, and hands the budget the charge of what it holds.
        #[test]
        fn a_copy_out_made_while_the_file_changes_ends_with_its_bytes(
            ops in proptest::collection::vec(copy_op(), 1..60),
        ) {
            let parent = tempfile::tempdir().unwrap();
            let dir = SpillDir::create(parent.path(), true).unwrap();
            let budget = Budget::new(1 << 30, 1 << 30);
            let mut f = FileData::default();
            let mut model = Vec::new();
            let mut copy: Option<CopyOut> = None;
            let mut ids = 0;
            for op in &ops {
                match op {
                    CopyOp::Change(op) => apply(&mut model, &mut f, op, &dir, &budget),
                    CopyOp::Begin => {
                        if let Some(c) = copy.take() {
                            c.abandon(Some(&mut f));
                        }
                        ids += 1;
                        copy = CopyOut::begin(&mut f, &dir, ids).ok();
                        prop_assert_eq!(copy.is_some(), f.tier() == Tier::Ram);
                    }
                    CopyOp::Step(max) => {
                        if let Some(c) = &mut copy {
                            let before = c.copied(&f);
                            let more = c.step(&mut f, *max).unwrap();
                            if c.is_of(&f) {
                                prop_assert!(c.copied(&f) > before || !more);
                            }
                        }
                    }
                    CopyOp::Finish => {
                        if let Some(c) = copy.take() {
                            let was_of = c.is_of(&f);
                            let r = c.finish(&mut f, &budget).map(drop);
                            prop_assert_eq!(r.is_ok(), was_of);
                            if was_of {
                                prop_assert_eq!(f.tier(), Tier::Spill);
                            }
                        }
                    }
                }
                holds(&f, &model, &budget, op)?;
            }
            if let Some(c) = copy.take() {
                let was_of = c.is_of(&f);
                prop_assert_eq!(c.finish(&mut f, &budget).is_ok(), was_of);
                holds(&f, &model, &budget, &"the last finish")?;
            }
            f.release(&budget);
            prop_assert_eq!(budget.bytes(), 0);
        }
    }

    #[derive(Debug, Clone)]
    enum CopyOp {
        Change(Op),
        Begin,
        Step(u64),
        Finish,
    }

    /// Changes over several chunks, mixed with the steps of a copy.
    fn copy_op() -> impl Strategy<Value = CopyOp> {
        let chunk = CHUNK_SIZE as u64;
        // Chunk boundaries often: whole chunks come and go there.
        let off = prop_oneof![0..6 * chunk, (0..6u64).prop_map(move |k| k * chunk)];
        prop_oneof![
            5 => (off.clone(), 0..3 * CHUNK_SIZE, any::<u8>()).prop_map(|(o, n, b)| CopyOp::Change(Op::Write(o, n, b))),
            1 => off.clone().prop_map(|l| CopyOp::Change(Op::SetLen(l))),
            1 => (off.clone(), prop_oneof![0..2 * chunk, Just(chunk)]).prop_map(|(o, n)| CopyOp::Change(Op::Punch(o, n))),
            1 => (off, 1..2 * chunk, any::<bool>()).prop_map(|(o, n, k)| CopyOp::Change(Op::Allocate(o, n, k))),
            1 => prop_oneof![Just(Op::Spill), Just(Op::Unspill)].prop_map(CopyOp::Change),
            2 => Just(CopyOp::Begin),
            5 => (1..3 * chunk).prop_map(CopyOp::Step),
            2 => Just(CopyOp::Finish),
        ]
    }
}
