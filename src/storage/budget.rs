//! Capacity accounting: bytes (`size=`) and inodes (`nr_inodes=`).
//!
//! Every allocation is reserved here *before* it happens, so a request that
//! would pass a limit fails with ENOSPC and changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// The reservation would pass a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSpace;

/// Lock-free counters of what the mount holds against its limits.
#[derive(Debug)]
pub struct Budget {
    byte_limit: u64,
    inode_limit: u64,
    bytes: AtomicU64,
    inodes: AtomicU64,
    bytes_high_water: AtomicU64,
    enospc: AtomicU64,
    /// The part of `bytes` held in memory (the rest is spilled).
    ram: AtomicU64,
    ram_high_water: AtomicU64,
    /// Memory given back so far, in total: it tells the background thread
    /// when the allocator holds freed memory it could return.
    ram_released: AtomicU64,
}

impl Budget {
    /// A budget with these limits (`u64::MAX` for none).
    #[must_use]
    pub fn new(byte_limit: u64, inode_limit: u64) -> Self {
        Self {
            byte_limit,
            inode_limit,
            bytes: AtomicU64::new(0),
            inodes: AtomicU64::new(0),
            bytes_high_water: AtomicU64::new(0),
            enospc: AtomicU64::new(0),
            ram: AtomicU64::new(0),
            ram_high_water: AtomicU64::new(0),
            ram_released: AtomicU64::new(0),
        }
    }

    /// Reserves `n` bytes of memory: counted in the total and in RAM.
    ///
    /// # Errors
    /// [`NoSpace`] when the byte limit would be passed.
    pub fn reserve_ram(&self, n: u64) -> Result<(), NoSpace> {
        self.reserve_bytes(n)?;
        self.add_ram(n);
        Ok(())
    }

    /// Records `n` bytes of memory allocated without a reservation.
    pub fn force_ram(&self, n: u64) {
        self.force_bytes(n);
        self.add_ram(n);
    }

    /// Gives back `n` bytes of memory.
    pub fn release_ram(&self, n: u64) {
        self.release_bytes(n);
        saturating_sub(&self.ram, n);
        if n != 0 {
            self.ram_released.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Memory given back since the mount started, in total.
    #[must_use]
    pub fn ram_released(&self) -> u64 {
        self.ram_released.load(Ordering::Relaxed)
    }

    fn add_ram(&self, n: u64) {
        let new = self.ram.fetch_add(n, Ordering::Relaxed) + n;
        self.ram_high_water.fetch_max(new, Ordering::Relaxed);
    }

    /// Bytes held in memory.
    #[must_use]
    pub fn ram(&self) -> u64 {
        self.ram.load(Ordering::Relaxed)
    }

    /// Highest memory use seen.
    #[must_use]
    pub fn ram_high_water(&self) -> u64 {
        self.ram_high_water.load(Ordering::Relaxed)
    }

    /// Reserves `n` bytes, or fails with nothing reserved.
    ///
    /// # Errors
    /// [`NoSpace`] when the byte limit would be passed.
    pub fn reserve_bytes(&self, n: u64) -> Result<(), NoSpace> {
        if n == 0 {
            return Ok(());
        }
        let new = self.reserve(&self.bytes, self.byte_limit, n)?;
        self.bytes_high_water.fetch_max(new, Ordering::Relaxed);
        Ok(())
    }

    /// Records `n` bytes that were allocated without a reservation (allocator
    /// rounding); may pass the limit by that little.
    pub fn force_bytes(&self, n: u64) {
        let new = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.bytes_high_water.fetch_max(new, Ordering::Relaxed);
    }

    /// Gives back `n` bytes reserved earlier.
    pub fn release_bytes(&self, n: u64) {
        if n != 0 {
            saturating_sub(&self.bytes, n);
        }
    }

    /// Reserves one inode.
    ///
    /// # Errors
    /// [`NoSpace`] when the inode limit would be passed.
    pub fn reserve_inode(&self) -> Result<(), NoSpace> {
        self.reserve(&self.inodes, self.inode_limit, 1).map(|_| ())
    }

    /// Gives back one inode.
    pub fn release_inode(&self) {
        saturating_sub(&self.inodes, 1);
    }

    fn reserve(&self, counter: &AtomicU64, limit: u64, n: u64) -> Result<u64, NoSpace> {
        let mut cur = counter.load(Ordering::Relaxed);
        loop {
            let new = match cur.checked_add(n) {
                Some(new) if new <= limit => new,
                _ => {
                    self.enospc.fetch_add(1, Ordering::Relaxed);
                    return Err(NoSpace);
                }
            };
            match counter.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(new),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Bytes in use.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Inodes in use.
    #[must_use]
    pub fn inodes(&self) -> u64 {
        self.inodes.load(Ordering::Relaxed)
    }

    /// The byte limit (`u64::MAX` for none).
    #[must_use]
    pub fn byte_limit(&self) -> u64 {
        self.byte_limit
    }

    /// The inode limit (`u64::MAX` for none).
    #[must_use]
    pub fn inode_limit(&self) -> u64 {
        self.inode_limit
    }

    /// Highest byte use seen.
    #[must_use]
    pub fn bytes_high_water(&self) -> u64 {
        self.bytes_high_water.load(Ordering::Relaxed)
    }

    /// How many reservations failed with ENOSPC.
    #[must_use]
    pub fn enospc_count(&self) -> u64 {
        self.enospc.load(Ordering::Relaxed)
    }
}

fn saturating_sub(counter: &AtomicU64, n: u64) {
    // A saturating CAS loop: an accounting slip must never wrap the counter
    // into "everything is full".
    let mut cur = counter.load(Ordering::Relaxed);
    loop {
        let new = cur.saturating_sub(n);
        match counter.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_and_failures_change_nothing() {
        let b = Budget::new(100, 2);
        b.reserve_bytes(60).unwrap();
        assert_eq!(b.reserve_bytes(41), Err(NoSpace));
        assert_eq!(b.bytes(), 60);
        b.reserve_bytes(40).unwrap();
        b.release_bytes(100);
        b.release_bytes(5);
        assert_eq!(b.bytes(), 0);
        assert_eq!(b.bytes_high_water(), 100);
        b.reserve_inode().unwrap();
        b.reserve_inode().unwrap();
        assert_eq!(b.reserve_inode(), Err(NoSpace));
        assert_eq!(b.enospc_count(), 2);
    }

    #[test]
    fn released_memory_adds_up() {
        let b = Budget::new(u64::MAX, u64::MAX);
        b.reserve_ram(100).unwrap();
        b.release_ram(60);
        b.release_ram(0);
        b.release_ram(40);
        assert_eq!((b.ram(), b.ram_released()), (0, 100));
    }
}
