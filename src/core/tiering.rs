//! Tier policy and the background work of a mount.
//!
//! - A regular file that would hold more than `spool=` bytes moves to the
//!   spill tier before the write that makes it that large (so those bytes
//!   never touch RAM). What counts is the bytes held, not the logical size:
//!   a sparse file with a few bytes at 1 TiB costs nothing and stays. A
//!   spilled file truncated to a quarter of `spool=` or less comes back (the
//!   gap is the hysteresis that keeps a file near the threshold from
//!   bouncing). A file that already holds [`BACKGROUND_COPY_MIN`] or more
//!   when it crosses the threshold is copied out by a background thread
//!   instead, a slice at a time, while it stays in RAM and in use; it
//!   trades places with its copy once the copy has caught up. Its writer
//!   never waits for the whole copy (at the default `spool=256m`, a pause
//!   of about 100 ms here), only for a slice; a writer that outruns the
//!   copy by half the threshold again moves the file at once.
//! - When the mount's RAM use passes `max_ram=`, a background worker spills
//!   files, largest and coldest first, until use is under a low-water mark
//!   (90% of the budget). Files of at most 64 KiB go into slots of shared
//!   pack files rather than spill files of their own (see
//!   [`crate::storage::pack`]), so that however many small files fill the
//!   budget, they take a handful of descriptors. Requests never wait for
//!   another file's spill: the worker only takes data locks it can get at
//!   once. A writer over the budget by more than a sixteenth moves its own
//!   file out (packs or spills it), which it already holds, so RAM use
//!   passes the budget by about one write per writer however far the
//!   writers outrun the worker. A truncated file comes back from disk only
//!   while the budget has room for it.
//! - Memory freed by spilling is handed back to the system at once
//!   (`malloc_trim`), since the mount is over its budget. Memory freed by
//!   deletions and truncations stays with the allocator while files keep
//!   coming and going (reuse beats returning and faulting it in again, most
//!   on VMs that hand freed pages back to the host), and goes back once the
//!   mount has freed nothing for a few seconds ([`IdleTrim`]): an idle
//!   daemon holds about what its files hold.
//! - `delete_on_close` removes a file at its last close; `expire=` removes
//!   files nobody has touched for that long, never an open one.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use super::node::Node;
use super::{Fs, Kind, NodeId};
use crate::storage::pack::SLOT;
use crate::storage::spill::SpillDir;
use crate::storage::{CopyOut, FileData, StorageError, Tier};

/// Files holding less than this are not worth a spill file (and a
/// descriptor); they are packed when their size fits a slot.
const MIN_VICTIM: u64 = 64 << 10;
/// A writer's inline spill hands memory back at once (`malloc_trim`)
/// only when it moved at least this much; smaller frees are reused.
const INLINE_TRIM_MIN: u64 = 1 << 20;
/// A file holding at least this when it crosses `spool=` is copied out in
/// the background ([`Moves`]); a smaller one moves at once, which takes
/// its writer less than a few milliseconds.
pub(crate) const BACKGROUND_COPY_MIN: u64 = 32 << 20;
/// What one step of a background copy takes while it holds the file.
const COPY_SLICE: u64 = 4 << 20;
/// How long the mount must free nothing before freed memory goes back.
const TRIM_QUIET: Duration = Duration::from_secs(5);
/// Less freed memory than this is not worth a trim.
const TRIM_MIN: u64 = 16 << 20;

/// Tier settings and counters of one mount.
#[derive(Debug)]
pub(crate) struct Tiers {
    pub(crate) dir: Option<SpillDir>,
    pub(crate) spool: u64,
    pub(crate) max_ram: u64,
    pub(crate) delete_on_close: bool,
    pub(crate) expire: Option<Duration>,
    pub(crate) spills: AtomicU64,
    pub(crate) returns: AtomicU64,
    pub(crate) spill_failures: AtomicU64,
    pub(crate) moves: Moves,
    wake: Mutex<bool>,
    cond: Condvar,
    shutdown: AtomicBool,
}

impl Tiers {
    pub(crate) fn new(
        dir: Option<SpillDir>,
        spool: u64,
        max_ram: u64,
        delete_on_close: bool,
        expire: Option<Duration>,
    ) -> Self {
        Self {
            dir,
            spool,
            max_ram,
            delete_on_close,
            expire,
            spills: AtomicU64::new(0),
            returns: AtomicU64::new(0),
            spill_failures: AtomicU64::new(0),
            moves: Moves::default(),
            wake: Mutex::new(false),
            cond: Condvar::new(),
            shutdown: AtomicBool::new(false),
        }
    }

    fn notify(&self) {
        *self.wake.lock() = true;
        self.cond.notify_one();
    }

    /// Waits for a notification or the timeout; false once shut down.
    fn wait(&self, timeout: Duration) -> bool {
        let mut woken = self.wake.lock();
        if !*woken {
            self.cond.wait_for(&mut woken, timeout);
        }
        *woken = false;
        !self.shutdown.load(Ordering::Acquire)
    }
}

/// Background copies of files that crossed `spool=` (see [`CopyOut`]),
/// oldest first, and whether a thread serves them.
#[derive(Debug, Default)]
pub(crate) struct Moves {
    queue: Mutex<VecDeque<CopyJob>>,
    cond: Condvar,
    pub(crate) served: AtomicBool,
    pub(crate) next_id: AtomicU64,
}

#[derive(Debug)]
struct CopyJob {
    node: Weak<Node>,
    copy: CopyOut,
}

/// Where a file pushed out of RAM goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// A spill file of its own.
    Spill,
    /// A slot of a pack file (a file of at most [`SLOT`] bytes).
    Pack,
}

/// How a file of `size` bytes holding `held` in RAM leaves it under
/// memory pressure: packed when its size fits a slot, spilled when it
/// holds enough to be worth a spill file, otherwise (or holding nothing)
/// not at all.
fn victim_move(size: u64, held: u64) -> Option<Move> {
    if held == 0 {
        None
    } else if size <= SLOT {
        Some(Move::Pack)
    } else if held >= MIN_VICTIM {
        Some(Move::Spill)
    } else {
        None
    }
}

/// Seconds before a file whose spill failed is tried again (rounded up to
/// the next whole second of the clock).
pub(crate) const SPILL_RETRY_SECS: u64 = 2;

/// Seconds since the epoch, for "last touched" stamps.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The background threads of a mount; [`Background::stop`] ends them.
#[derive(Debug)]
pub struct Background {
    fs: Weak<Fs>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    /// Stops the threads and waits for them.
    pub fn stop(self) {
        if let Some(fs) = self.fs.upgrade() {
            fs.tiers.shutdown.store(true, Ordering::Release);
            fs.tiers.notify();
            let _queue = fs.tiers.moves.queue.lock();
            fs.tiers.moves.cond.notify_all();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl Fs {
    /// Starts the memory keeper (spills over the budget when spilling is
    /// on, gives idle freed memory back) and the expiry sweeper (with
    /// `expire=`). They hold only a weak reference to the file system.
    ///
    /// # Errors
    /// A thread could not be started.
    pub fn start_background(self: &Arc<Self>) -> std::io::Result<Background> {
        let mut threads = Vec::new();
        let weak = Arc::downgrade(self);
        let mut trim = IdleTrim::new(self.budget.ram_released(), Instant::now());
        threads.push(
            std::thread::Builder::new()
                .name("tmpfsd-memory".into())
                .spawn(move || loop {
                    let Some(fs) = weak.upgrade() else { return };
                    if !fs.tiers.wait(Duration::from_secs(1)) {
                        return;
                    }
                    if fs.tiers.dir.is_some() {
                        fs.charge_passthrough_writes();
                        fs.relieve_pressure();
                    }
                    if trim.due(fs.budget.ram_released(), Instant::now()) {
                        give_back_memory();
                    }
                })?,
        );
        if self.tiers.dir.is_some() {
            let weak = Arc::downgrade(self);
            threads.push(std::thread::Builder::new().name("tmpfsd-spool".into()).spawn(move || {
                lower_priority();
                loop {
                    let Some(fs) = weak.upgrade() else { return };
                    if fs.tiers.shutdown.load(Ordering::Acquire) {
                        return;
                    }
                    let advanced =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fs.advance_copies(usize::MAX)));
                    let Ok(waiting) = advanced else {
                        // A bug, not the disk: files move at once from now
                        // on, as without this thread.
                        tracing::error!("the spool thread failed; files crossing spool= now move at once");
                        fs.tiers.moves.served.store(false, Ordering::Release);
                        return;
                    };
                    if !waiting {
                        let moves = &fs.tiers.moves;
                        let mut queue = moves.queue.lock();
                        if queue.is_empty() && !fs.tiers.shutdown.load(Ordering::Acquire) {
                            moves.cond.wait_for(&mut queue, Duration::from_secs(1));
                        }
                    }
                }
            })?);
            self.tiers.moves.served.store(true, Ordering::Release);
        }
        if let Some(expire) = self.tiers.expire {
            let weak = Arc::downgrade(self);
            let period = (expire / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
            threads.push(
                std::thread::Builder::new()
                    .name("tmpfsd-expire".into())
                    .spawn(move || loop {
                        let Some(fs) = weak.upgrade() else { return };
                        if !fs.tiers.wait(period) {
                            return;
                        }
                        fs.expire_sweep(expire);
                    })?,
            );
        }
        Ok(Background {
            fs: Arc::downgrade(self),
            threads,
        })
    }

    /// Before `data` grows by up to `grow` bytes: spill it first when it
    /// would then hold more than the spool threshold, or, when it holds
    /// [`BACKGROUND_COPY_MIN`] already and the spool thread runs, have it
    /// copied out in the background. Writes pass their exact growth
    /// ([`FileData::growth`]), so a file rewritten in place never crosses.
    /// A failed spill (spill disk full) leaves the file in RAM, where the
    /// write may still fit.
    pub(crate) fn spool_before_growth(&self, node: &Arc<Node>, data: &mut FileData, grow: u64) {
        if data.tier() != Tier::Spill
            && data.allocated().saturating_add(grow) > self.tiers.spool
            && !self.copy_out_in_background(node, data, grow)
        {
            self.spill_locked(node, data, Move::Spill);
        }
    }

    /// For a RAM file crossing `spool=`: true when a background copy takes
    /// it out (started now, or running and not too far behind the writer),
    /// so that it stays in RAM for now; false when it must move at once.
    fn copy_out_in_background(&self, node: &Arc<Node>, data: &mut FileData, grow: u64) -> bool {
        let Some(dir) = &self.tiers.dir else { return false };
        let FileData::Ram(ram) = &*data else { return false };
        if !self.tiers.moves.served.load(Ordering::Acquire) {
            return false;
        }
        let held = data.allocated();
        if ram.watched().is_some() {
            let spool = self.tiers.spool;
            return held.saturating_add(grow) <= spool.saturating_add(spool / 2);
        }
        if held < BACKGROUND_COPY_MIN || node.spill_retry_at.load(Ordering::Relaxed) > now_secs() {
            return false;
        }
        let moves = &self.tiers.moves;
        let id = moves.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        match CopyOut::begin(data, dir, id) {
            Ok(copy) => {
                let job = CopyJob {
                    node: Arc::downgrade(node),
                    copy,
                };
                moves.queue.lock().push_back(job);
                moves.cond.notify_one();
                true
            }
            Err(_) => false,
        }
    }

    /// Runs up to `steps` steps of the oldest background copy, each with
    /// the file locked, and puts the copy in the file's place once it has
    /// caught up with the file; a copy left unfinished goes back to the
    /// front of the queue. Returns whether copies are waiting.
    pub(crate) fn advance_copies(&self, mut steps: usize) -> bool {
        let moves = &self.tiers.moves;
        let Some(mut job) = moves.queue.lock().pop_front() else {
            return false;
        };
        let node = job.node.upgrade();
        // Deleted and freed: its memory went back already.
        let Some((node, file)) = node.as_deref().and_then(|n| Some((n, n.file()?))) else {
            job.copy.abandon(None);
            return !moves.queue.lock().is_empty();
        };
        loop {
            let mut d = file.write();
            if !job.copy.is_of(&d)
                || d.allocated() <= self.tiers.spool / 4
                || self.tiers.shutdown.load(Ordering::Acquire)
            {
                // Released, moved by other means (memory pressure, its
                // writer), truncated to where a spilled file would come
                // back (it stays in RAM: a new copy starts if it grows
                // past the threshold again), or the mount is going away.
                // Not at the threshold itself: a file that shrinks and
                // grows around it would begin and drop a copy (a new
                // spill file) at every crossing.
                job.copy.abandon(Some(&mut d));
                break;
            }
            if steps == 0 {
                drop(d);
                moves.queue.lock().push_front(job);
                return true;
            }
            steps -= 1;
            match job.copy.step(&mut d, COPY_SLICE) {
                // Hand the file to a waiting request before the next step.
                Ok(true) => parking_lot::RwLockWriteGuard::unlock_fair(d),
                Ok(false) => {
                    match job.copy.finish(&mut d, &self.budget) {
                        Ok(memory) => {
                            self.copied_out(node, &mut d, Ok(()));
                            drop(d);
                            // The RAM file's memory, freed once the file is
                            // let go.
                            drop(memory);
                        }
                        Err(e) => self.copied_out(node, &mut d, Err(e)),
                    }
                    break;
                }
                Err(e) => {
                    job.copy.abandon(Some(&mut d));
                    self.copied_out(node, &mut d, Err(e));
                    break;
                }
            }
        }
        !moves.queue.lock().is_empty()
    }

    /// Counts a background copy's end, as [`Fs::spill_locked`] counts a
    /// move: a failed one leaves the file in RAM and is not tried again
    /// for a while.
    fn copied_out(&self, node: &Node, data: &mut FileData, r: Result<(), StorageError>) {
        match r {
            Ok(()) => {
                self.tiers.spills.fetch_add(1, Ordering::Relaxed);
                node.spill_retry_at.store(0, Ordering::Relaxed);
                self.publish(node, data);
            }
            Err(e) => {
                self.tiers.spill_failures.fetch_add(1, Ordering::Relaxed);
                node.spill_retry_at
                    .store(now_secs() + SPILL_RETRY_SECS, Ordering::Relaxed);
                tracing::debug!(
                    ino = node.id.0,
                    "background copy to the spill disk failed: {e:?}; the file stays in RAM"
                );
            }
        }
    }

    /// After `data` grew in RAM: wake the spiller over budget; when far
    /// over it (the spiller is behind), move this file out now.
    pub(crate) fn after_ram_growth(&self, node: &Node, data: &mut FileData) {
        let ram = self.budget.ram();
        if ram <= self.tiers.max_ram || self.tiers.dir.is_none() {
            return;
        }
        self.tiers.notify();
        let hard = self.tiers.max_ram.saturating_add(self.tiers.max_ram / 16);
        if ram <= hard || data.tier() != Tier::Ram {
            return;
        }
        let held = data.allocated();
        if let Some(how) = victim_move(data.len(), held) {
            if self.spill_locked(node, data, how) && held >= INLINE_TRIM_MIN {
                give_back_memory();
            }
        }
    }

    /// After `data` shrank: back to RAM when far below the threshold and
    /// the budget has room for it.
    pub(crate) fn after_shrink(&self, node: &Node, data: &mut FileData) {
        if data.tier() == Tier::Spill
            && !data.in_passthrough()
            && data.len() <= self.tiers.spool / 4
            && self.budget.ram().saturating_add(data.len()) <= self.tiers.max_ram
        {
            match data.unspill(&self.budget) {
                Ok(()) => self.publish(node, data),
                Err(e) => tracing::debug!(ino = node.id.0, "file stays spilled: {e:?}"),
            }
        }
    }

    /// Spills (or packs) a file whose data lock the caller holds. After a
    /// failed spill the file is not tried again for [`SPILL_RETRY_SECS`]:
    /// each try copies up to the whole file before it fails, and a file
    /// over the threshold would otherwise try at every write.
    fn spill_locked(&self, node: &Node, data: &mut FileData, how: Move) -> bool {
        let Some(dir) = &self.tiers.dir else { return false };
        let now = now_secs();
        if node.spill_retry_at.load(Ordering::Relaxed) > now {
            return false;
        }
        let moved = match how {
            Move::Pack if data.packable() => data.pack(dir, &self.budget),
            // Small, but with blocks reserved past the slot (fallocate
            // KEEP_SIZE): a spill file when it holds enough to be worth one.
            Move::Pack if data.allocated() < MIN_VICTIM => return false,
            Move::Pack | Move::Spill => data.spill(dir, &self.budget),
        };
        match moved {
            Ok(()) => {
                self.tiers.spills.fetch_add(1, Ordering::Relaxed);
                node.spill_retry_at.store(0, Ordering::Relaxed);
                self.publish(node, data);
                true
            }
            Err(e) => {
                self.tiers.spill_failures.fetch_add(1, Ordering::Relaxed);
                node.spill_retry_at.store(now + SPILL_RETRY_SECS, Ordering::Relaxed);
                if e == StorageError::NoSpace {
                    tracing::debug!(ino = node.id.0, "no room to spill; the file stays in RAM");
                }
                false
            }
        }
    }

    /// Spills files, largest and coldest first, until RAM use is under the
    /// low-water mark; files whose size fits a pack slot are packed. Skips
    /// files whose data lock is busy.
    pub(crate) fn relieve_pressure(&self) {
        let max = self.tiers.max_ram;
        if self.budget.ram() <= max {
            return;
        }
        let low = max - max / 10;
        let now = now_secs();
        let mut victims: Vec<(u128, Move, Arc<Node>)> = self
            .nodes
            .iter()
            .filter_map(|r| {
                let n = r.value();
                if n.kind != Kind::File || n.spilled.load(Ordering::Acquire) {
                    return None;
                }
                let held = n.allocated.load(Ordering::Acquire);
                let how = victim_move(n.size.load(Ordering::Acquire), held)?;
                let age = now.saturating_sub(n.touched.load(Ordering::Relaxed));
                Some((u128::from(held) * u128::from(age + 1), how, Arc::clone(n)))
            })
            .collect();
        victims.sort_unstable_by_key(|v| std::cmp::Reverse(v.0));
        let mut spilled = false;
        for (_, how, node) in victims {
            if self.budget.ram() <= low {
                break;
            }
            let Some(data) = node.file() else { continue };
            let Some(mut d) = data.try_write() else { continue };
            spilled |= self.spill_locked(&node, &mut d, how);
        }
        if spilled {
            give_back_memory();
        }
        if self.budget.ram() > max {
            tracing::debug!(
                ram = self.budget.ram(),
                max,
                "RAM still over budget after a spill round"
            );
        }
    }

    /// Removes files untouched for `expire`, never an open one.
    pub(crate) fn expire_sweep(&self, expire: Duration) {
        let cutoff = now_secs().saturating_sub(expire.as_secs());
        let old: Vec<Arc<Node>> = self
            .nodes
            .iter()
            .filter(|r| {
                let n = r.value();
                n.kind != Kind::Dir
                    && n.opens.load(Ordering::Acquire) == 0
                    && n.touched.load(Ordering::Relaxed) < cutoff
            })
            .map(|r| Arc::clone(r.value()))
            .collect();
        for node in old {
            if node.opens.load(Ordering::Acquire) == 0 && self.remove_by_hint(&node) {
                tracing::debug!(ino = node.id.0, "expired");
            }
        }
    }

    /// Removes the node's last known name, if it still names the node.
    pub(crate) fn remove_by_hint(&self, node: &Node) -> bool {
        let hint = node.name_hint.lock().clone();
        let Some((parent, name)) = hint else { return false };
        if self.unlink_checked(parent, &name, Some(node.id)).is_err() {
            return false;
        }
        if let Some(inv) = self.invalidator.get() {
            inv.removed(parent, node.id, &name);
        }
        true
    }

    /// Called when a file's last handle closed: a spilled file gives back
    /// the disk it reserved ahead of its writes; with `delete_on_close`
    /// the file goes.
    pub(crate) fn closed(&self, node: &Node) {
        if self.tiers.delete_on_close && node.kind == Kind::File && node.meta.lock().nlink > 0 {
            self.remove_by_hint(node);
        }
        if node.spilled.load(Ordering::Acquire) && node.meta.lock().nlink > 0 {
            if let Some(data) = node.file() {
                let mut d = data.write();
                if let Err(e) = d.trim_reservation(&self.budget) {
                    tracing::debug!(ino = node.id.0, "cannot trim a spill reservation: {e:?}");
                }
                self.publish(node, &d);
            }
        }
    }

    /// Publishes a file's size, allocation and tier after a change to its
    /// data ([`Node::publish`]), counting a move from disk back to RAM
    /// (a truncated spilled file, a packed file grown past its slot).
    pub(crate) fn publish(&self, node: &Node, data: &FileData) {
        if node.publish(data) {
            self.tiers.returns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lowers the calling thread's CPU priority to nice 10 (on Linux, where a
/// thread has its own), so that the threads answering requests go first:
/// with a background copy at the default priority, the writer of the file
/// being copied waited up to 11-13 ms for a write on 2 cores, at nice 10
/// up to 6-7 ms. Elsewhere a no-op.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        if let Ok(tid) = libc::id_t::try_from(tid) {
            // SAFETY: changes only the calling thread's nice value.
            let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 10) };
        }
    }
}

/// When memory freed by deletions and truncations goes back to the
/// system: once at least [`TRIM_MIN`] was freed since the last trim and
/// nothing at all for [`TRIM_QUIET`]. Steady churn never trims (the freed
/// chunks are being reused); a mount that went quiet does, once.
#[derive(Debug)]
pub(crate) struct IdleTrim {
    /// The budget's released total when last looked at.
    seen: u64,
    /// The released total at the last trim.
    at_trim: u64,
    /// When the released total last moved.
    last_free: Instant,
}

impl IdleTrim {
    pub(crate) fn new(released: u64, now: Instant) -> Self {
        Self {
            seen: released,
            at_trim: released,
            last_free: now,
        }
    }

    /// Called with the budget's released total on each background tick;
    /// true when a trim is due now.
    pub(crate) fn due(&mut self, released: u64, now: Instant) -> bool {
        if released != self.seen {
            self.seen = released;
            self.last_free = now;
        }
        let due = released.saturating_sub(self.at_trim) >= TRIM_MIN
            && now.saturating_duration_since(self.last_free) >= TRIM_QUIET;
        if due {
            self.at_trim = released;
        }
        due
    }
}

/// Returns freed heap memory to the system. glibc keeps freed blocks in its
/// arenas, where they would still count as the daemon's resident memory.
/// It walks every arena, so it runs at most once per 50 ms.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_memory() {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 50
        || LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators have no such call; they decide alone what goes back.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_memory() {}

/// The xattr on the root directory that reads as the mount's counters in
/// JSON (for `tmpfsd status`); it is not listed and cannot be set.
pub const STATS_XATTR: &str = "user.tmpfsd.stats";

pub(crate) fn is_stats_xattr(ino: NodeId, name: &OsStr) -> bool {
    ino == NodeId::ROOT && name == STATS_XATTR
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn idle_trim_waits_for_quiet_and_enough_freed_memory() {
        let t0 = Instant::now();
        let mut trim = IdleTrim::new(0, t0);
        // Nothing freed: never due, however long it is quiet.
        assert!(!trim.due(0, t0 + 60 * SEC));
        // A big free, then frees keep coming: not while they do.
        assert!(!trim.due(TRIM_MIN, t0 + 61 * SEC));
        assert!(!trim.due(TRIM_MIN + 1, t0 + 64 * SEC));
        assert!(!trim.due(TRIM_MIN + 1, t0 + 64 * SEC + TRIM_QUIET - SEC));
        // Quiet long enough: due once, then not again for the same memory.
        assert!(trim.due(TRIM_MIN + 1, t0 + 64 * SEC + TRIM_QUIET));
        assert!(!trim.due(TRIM_MIN + 1, t0 + 600 * SEC));
    }

    #[test]
    fn idle_trim_ignores_small_frees() {
        let t0 = Instant::now();
        let mut trim = IdleTrim::new(1000, t0);
        assert!(!trim.due(1000 + TRIM_MIN - 1, t0 + SEC));
        assert!(!trim.due(1000 + TRIM_MIN - 1, t0 + 600 * SEC));
        // Small frees add up.
        assert!(!trim.due(1000 + TRIM_MIN, t0 + 601 * SEC));
        assert!(trim.due(1000 + TRIM_MIN, t0 + 601 * SEC + TRIM_QUIET));
    }
}
