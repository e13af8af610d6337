//! The namespace: nodes, directories, names, links, modes, owners, times,
//! xattrs, open handles and lookup counts. Platform-neutral and in-process:
//! adapters decode a request, call one [`Fs`] method and encode the answer.
//!
//! # Contract shared by all methods
//! - Every method that answers with an [`Entry`] (lookup, create, mknod,
//!   mkdir, symlink, link, and each non-dot entry of [`Fs::readdirplus`])
//!   raises the node's lookup count by one; the adapter lowers it with
//!   [`Fs::forget`] when the kernel does.
//! - Errors are [`FsError`]s; each maps to one errno.
//! - Permission bits are checked by the kernel (`default_permissions`).
//!   The core checks what the kernel leaves to the file system: names,
//!   limits, kinds, emptiness, rename loops and xattr namespaces.
//!
//! # Lock order
//! 1. The rename lock (cross-directory renames only).
//! 2. Directory entry locks: parent before child; two unrelated directories
//!    (only in a cross-directory rename, under the rename lock) ancestor
//!    first, else by ascending id.
//! 3. File data locks (never two at once).
//! 4. Node `meta` locks: leaves; nothing is locked while one is held,
//!    except the table shard lock taken *around* one in eviction.
//!
//! No table guard (DashMap `Ref`) is held across another call on the table
//! or while a node lock is taken: an `Arc<Node>` is cloned out first.

mod dir;
pub mod ids;
mod node;
mod requests;
mod tiering;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::config::MountConfig;
use crate::error::{FsError, FsResult};
use crate::storage::budget::{Budget, NoSpace};
use crate::storage::spill::SpillDir;
use crate::storage::{FileData, StorageError, Tier};
use dir::{Dir, FIRST_COOKIE};
pub use ids::{Caller, Generation, HandleId, NodeId};
pub use node::Kind;
use node::{saturating_dec, Body, Meta, Node};
pub use requests::{Op, Requests};
use tiering::{is_stats_xattr, Tiers};
pub use tiering::{Background, STATS_XATTR};

/// Longest name in a directory, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest symlink target, in bytes (PATH_MAX less the terminating NUL).
pub const SYMLINK_MAX: usize = 4095;
/// Largest file size: offsets past this answer EFBIG.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// Largest xattr value (XATTR_SIZE_MAX).
pub const XATTR_VALUE_MAX: usize = 65536;
/// Largest total of names and values of one node's xattrs.
pub const XATTR_NODE_MAX: u64 = 1 << 20;
/// Block size reported by statfs and stat.
pub const BLOCK_SIZE: u32 = 4096;
const MAX_LINKS: u32 = 65000;
const GENERATION: Generation = Generation(1);
const COPY_CHUNK: usize = 1 << 20;

/// Attributes of a node, as stat reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Node number.
    pub ino: NodeId,
    /// Kind.
    pub kind: Kind,
    /// Permission bits, including set-id and sticky bits.
    pub perm: u32,
    /// Number of names.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (device nodes only).
    pub rdev: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks held.
    pub blocks: u64,
    /// Last access.
    pub atime: SystemTime,
    /// Last data change.
    pub mtime: SystemTime,
    /// Last status change.
    pub ctime: SystemTime,
    /// Creation.
    pub crtime: SystemTime,
}

/// A node reference handed to the kernel: attributes plus generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The node's attributes.
    pub attr: Attr,
    /// Its generation.
    pub generation: Generation,
}

/// A time to set in [`SetAttr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// The current time (UTIME_NOW).
    Now,
    /// This time.
    At(SystemTime),
}

/// The attribute changes of one setattr call; `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (file-type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (regular files only).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// New status-change time (otherwise it becomes now).
    pub ctime: Option<SystemTime>,
}

/// Flags of a rename.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// RENAME_NOREPLACE: fail with EEXIST if the new name exists.
    pub noreplace: bool,
    /// RENAME_EXCHANGE: swap the two names atomically.
    pub exchange: bool,
}

/// One directory entry produced by readdir.
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    /// The entry's node.
    pub ino: NodeId,
    /// Cookie to resume after this entry.
    pub offset: u64,
    /// The entry's kind.
    pub kind: Kind,
    /// The entry's name.
    pub name: &'a OsStr,
}

/// File-system totals for statfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks of [`BLOCK_SIZE`] (0 when unlimited).
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes (0 when unlimited).
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
}

/// Whence values for [`Fs::lseek`] that the file system answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    /// SEEK_SET.
    Set,
    /// SEEK_END.
    End,
    /// SEEK_DATA.
    Data,
    /// SEEK_HOLE.
    Hole,
}

/// fallocate modes the file system supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallocate {
    /// Mode 0: allocate and extend the size.
    Allocate,
    /// FALLOC_FL_KEEP_SIZE: allocate, keep the size.
    KeepSize,
    /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE.
    PunchHole,
}

impl Fallocate {
    /// Decodes a Linux fallocate mode.
    ///
    /// # Errors
    /// [`FsError::NotSupported`] for any other mode.
    pub fn from_mode(mode: i32) -> FsResult<Self> {
        const KEEP_SIZE: i32 = 0x01;
        const PUNCH_HOLE: i32 = 0x02;
        match mode {
            0 => Ok(Self::Allocate),
            KEEP_SIZE => Ok(Self::KeepSize),
            m if m == PUNCH_HOLE | KEEP_SIZE => Ok(Self::PunchHole),
            _ => Err(FsError::NotSupported),
        }
    }
}

/// What a new node is: kind, permission bits, device number.
#[derive(Debug, Clone, Copy)]
struct NewNode {
    kind: Kind,
    mode: u32,
    rdev: u32,
}

impl NewNode {
    fn new(kind: Kind, mode: u32) -> Self {
        Self { kind, mode, rdev: 0 }
    }
}

/// An open file or directory.
#[derive(Debug, Clone)]
struct Handle {
    node: Arc<Node>,
    append: bool,
    /// The kernel serves this open by passthrough.
    passthrough: bool,
}

/// How the kernel is to serve a file opened with [`Fs::open_file`].
#[derive(Debug)]
pub enum OpenMode {
    /// Through the daemon.
    Served,
    /// By passthrough to this spill file, which the adapter registers
    /// with the kernel (one registration per node at a time). The kernel
    /// drops its cached pages of the file at such an open (the reply does
    /// not ask to keep them), so none can outlive the kernel's own writes
    /// to the spill file.
    Passthrough(std::fs::File),
}

/// Counters for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Bytes held (file data plus xattrs), RAM and spill.
    pub bytes: u64,
    /// Bytes held in RAM.
    pub ram_bytes: u64,
    /// Bytes held in spill files.
    pub spilled_bytes: u64,
    /// Highest RAM use seen.
    pub ram_high_water: u64,
    /// RAM budget (`u64::MAX` when spilling is off).
    pub max_ram: u64,
    /// Spool threshold (`u64::MAX` when spilling is off).
    pub spool: u64,
    /// Regular files whose bytes are in RAM.
    pub files_ram: u64,
    /// Regular files whose bytes are spilled (packed ones included).
    pub files_spilled: u64,
    /// Regular files packed into slots of shared pack files (spilled
    /// under memory pressure while small).
    #[serde(default)]
    pub files_packed: u64,
    /// Pack files open.
    #[serde(default)]
    pub pack_files: u64,
    /// Moves from RAM to the spill tier (packs included).
    pub spills: u64,
    /// Moves back from disk (a spill file or a pack slot) to RAM.
    pub returns: u64,
    /// Spills that failed (no room on the spill disk or under `size=`, or
    /// a disk error); the file stayed in RAM.
    #[serde(default)]
    pub spill_failures: u64,
    /// Byte limit (`u64::MAX` when unlimited).
    pub byte_limit: u64,
    /// Highest byte use seen.
    pub bytes_high_water: u64,
    /// Inodes in use.
    pub inodes: u64,
    /// Inode limit (`u64::MAX` when unlimited).
    pub inode_limit: u64,
    /// Requests answered ENOSPC.
    pub enospc: u64,
    /// Open handles.
    pub open_handles: u64,
    /// Open handles the kernel serves by passthrough.
    #[serde(default)]
    pub passthrough_opens: u64,
    /// Opens passed through to the kernel so far.
    #[serde(default)]
    pub passthrough_opened: u64,
    /// Requests received from the kernel, by kind.
    #[serde(default)]
    pub requests: Requests,
}

/// The file system. Shared by every adapter thread (`&self` everywhere).
#[derive(Debug)]
pub struct Fs {
    nodes: DashMap<NodeId, Arc<Node>>,
    handles: DashMap<HandleId, Handle>,
    next_id: AtomicU64,
    next_handle: AtomicU64,
    budget: Budget,
    passthrough: bool,
    passthrough_opened: AtomicU64,
    /// Files the kernel holds by passthrough: their disk files grow
    /// without the daemon, so [`Fs::charge_passthrough_writes`] looks.
    passed_through: DashMap<NodeId, Arc<Node>>,
    rename_lock: Mutex<()>,
    requests: requests::Counters,
    tiers: Tiers,
    invalidator: OnceLock<Box<dyn Invalidate>>,
    #[cfg(feature = "fault-injection")]
    panic_name: Option<std::ffi::OsString>,
}

/// Tells an adapter's kernel caches about a change the kernel did not make
/// itself. The core removes names on its own only for `delete_on_close`
/// and `expire=`; everything else reaches it through the kernel, which
/// updates its caches as it goes.
pub trait Invalidate: Send + Sync + std::fmt::Debug {
    /// `name` in directory `parent`, which named `child`, was removed.
    fn removed(&self, parent: NodeId, child: NodeId, name: &OsStr);
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn no_space(_: NoSpace) -> FsError {
    FsError::NoSpace
}

fn storage(e: StorageError) -> FsError {
    match e {
        StorageError::NoSpace => FsError::NoSpace,
        StorageError::TooBig => FsError::FileTooBig,
        StorageError::Io => FsError::Io,
    }
}

/// Checks a name for a new directory entry.
fn check_name(name: &OsStr) -> FsResult<()> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
        return Err(FsError::Invalid);
    }
    if b == b"." || b == b".." {
        return Err(FsError::Exists);
    }
    Ok(())
}

fn check_range(off: u64, len: u64) -> FsResult<u64> {
    off.checked_add(len)
        .filter(|end| *end <= MAX_FILE_SIZE)
        .ok_or(FsError::FileTooBig)
}

impl Fs {
    /// A new, empty, RAM-only file system whose root belongs to `owner`
    /// unless the configuration names `uid=`/`gid=`.
    #[must_use]
    pub fn new(config: &MountConfig, owner: Caller) -> Self {
        Self::with_spill_dir(config, owner, None)
    }

    /// A new, empty file system that spills into `spill` (made by the caller
    /// from `config.spill_dir`, so that its errors reach the user at mount
    /// time). Without one, every byte stays in RAM.
    #[must_use]
    pub fn with_spill_dir(config: &MountConfig, owner: Caller, spill: Option<SpillDir>) -> Self {
        let spilling = spill.is_some();
        let fs = Self {
            nodes: DashMap::new(),
            handles: DashMap::new(),
            next_id: AtomicU64::new(NodeId::ROOT.0 + 1),
            next_handle: AtomicU64::new(1),
            budget: Budget::new(config.size, config.nr_inodes),
            passthrough: config.passthrough && spilling,
            passthrough_opened: AtomicU64::new(0),
            passed_through: DashMap::new(),
            rename_lock: Mutex::new(()),
            requests: requests::Counters::new(),
            tiers: Tiers::new(
                spill,
                if spilling { config.spool } else { u64::MAX },
                if spilling { config.max_ram } else { u64::MAX },
                config.delete_on_close,
                config.expire,
            ),
            invalidator: OnceLock::new(),
            #[cfg(feature = "fault-injection")]
            panic_name: std::env::var_os("TMPFSD_FAULT_PANIC_NAME"),
        };
        let t = now();
        let root = Node {
            id: NodeId::ROOT,
            kind: Kind::Dir,
            meta: Mutex::new(Meta {
                perm: config.mode & 0o7777,
                uid: config.uid.unwrap_or(owner.uid),
                gid: config.gid.unwrap_or(owner.gid),
                nlink: 2,
                rdev: 0,
                atime: t,
                mtime: t,
                ctime: t,
                crtime: t,
                xattrs: BTreeMap::new(),
                xattr_bytes: 0,
            }),
            body: Body::Dir(RwLock::new(Dir::new())),
            lookups: AtomicU64::new(1),
            opens: AtomicU64::new(0),
            parent: AtomicU64::new(NodeId::ROOT.0),
            size: AtomicU64::new(40),
            allocated: AtomicU64::new(0),
            spilled: AtomicBool::new(false),
            name_hint: parking_lot::Mutex::new(None),
            touched: AtomicU64::new(tiering::now_secs()),
            spill_retry_at: AtomicU64::new(0),
            passthrough_opens: AtomicU64::new(0),
        };
        // The root always counts as one inode, even past a tiny limit.
        let _ = fs.budget.reserve_inode();
        fs.nodes.insert(NodeId::ROOT, Arc::new(root));
        fs
    }

    #[cfg(feature = "fault-injection")]
    fn fault_point(&self, name: &OsStr) {
        if self.panic_name.as_deref() == Some(name) {
            panic!("fault injection: request on {name:?}");
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline]
    fn fault_point(&self, _name: &OsStr) {}

    fn node(&self, id: NodeId) -> FsResult<Arc<Node>> {
        self.nodes
            .get(&id)
            .map(|r| Arc::clone(r.value()))
            .ok_or(FsError::NotFound)
    }

    fn handle(&self, fh: HandleId) -> FsResult<Handle> {
        if let Some(id) = fh.stateless_node() {
            return Ok(Handle {
                node: self.node(id).map_err(|_| FsError::BadHandle)?,
                append: false,
                passthrough: false,
            });
        }
        self.handles
            .get(&fh)
            .map(|r| r.value().clone())
            .ok_or(FsError::BadHandle)
    }

    /// Installs the adapter's cache invalidation (once; later calls are
    /// ignored).
    pub fn set_invalidator(&self, invalidator: Box<dyn Invalidate>) {
        let _ = self.invalidator.set(invalidator);
    }

    /// Whether an adapter may serve files and directories without open and
    /// release requests, passing [`HandleId::stateless`] instead of a
    /// handle: true unless `delete_on_close` or `expire=` need to know
    /// which files are open. The node's lookup count, held by the kernel
    /// while a file is open, then keeps an unlinked file alive until its
    /// last close.
    ///
    /// With `passthrough=on`, files need open state too (the kernel learns
    /// at each open whether to pass the file through); directories do not
    /// ([`Fs::stateless_dirs`]).
    #[must_use]
    pub fn stateless_opens(&self) -> bool {
        self.stateless_dirs() && !self.passthrough
    }

    /// Whether directories may be opened without open and release
    /// requests (see [`Fs::stateless_opens`]).
    #[must_use]
    pub fn stateless_dirs(&self) -> bool {
        !self.tiers.delete_on_close && self.tiers.expire.is_none()
    }

    /// Whether `passthrough=on`: [`Fs::open_file`] may answer
    /// [`OpenMode::Passthrough`].
    #[must_use]
    pub fn passthrough(&self) -> bool {
        self.passthrough
    }

    /// Removes the node from the table if nothing refers to it any more,
    /// and gives its storage back.
    fn maybe_evict(&self, node: &Arc<Node>) {
        if node.id == NodeId::ROOT || !node.unreferenced() {
            return;
        }
        let Some((_, node)) = self.nodes.remove_if(&node.id, |_, n| n.unreferenced()) else {
            return;
        };
        self.budget.release_inode();
        if let Some(data) = node.file() {
            data.write().release(&self.budget);
        }
        let mut meta = node.meta.lock();
        self.budget.release_ram(meta.xattr_bytes);
        meta.xattr_bytes = 0;
        meta.xattrs.clear();
    }

    fn attr_of(node: &Node) -> Attr {
        if node.passthrough_opens.load(Ordering::Acquire) > 0 {
            Self::take_passthrough_state(node);
        }
        let m = node.meta.lock();
        Attr {
            ino: node.id,
            kind: node.kind,
            perm: m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            size: node.size.load(Ordering::Acquire),
            blocks: node.allocated.load(Ordering::Acquire).div_ceil(512),
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.crtime,
        }
    }

    /// Takes size, allocation and times from a spill file that the kernel
    /// writes by passthrough: they are the file's while it does.
    fn take_passthrough_state(node: &Node) {
        let Some(data) = node.file() else { return };
        let d = data.read();
        let Some((size, allocated, mtime, ctime)) = d.passthrough_state() else {
            return;
        };
        node.size.store(size, Ordering::Release);
        node.allocated.store(allocated, Ordering::Release);
        let mut m = node.meta.lock();
        if m.mtime != mtime {
            // Written since: the change time moves with it.
            m.mtime = mtime;
            m.ctime = m.ctime.max(ctime);
        }
    }

    /// Raises the lookup count and describes the node for the kernel. The
    /// caller must hold something that keeps the node alive meanwhile (the
    /// entry lock of a directory naming it, or an earlier reference).
    fn entry_of(node: &Node) -> Entry {
        node.lookups.fetch_add(1, Ordering::AcqRel);
        Self::entry_no_ref(node)
    }

    /// Describes a node whose lookup reference is already counted.
    fn entry_no_ref(node: &Node) -> Entry {
        Entry {
            attr: Self::attr_of(node),
            generation: GENERATION,
        }
    }

    // ---------------------------------------------------------------- lookup

    /// Finds `name` in `parent`.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR, ENAMETOOLONG.
    pub fn lookup(&self, parent: NodeId, name: &OsStr) -> FsResult<Entry> {
        self.fault_point(name);
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let p = self.node(parent)?;
        let dir = p.dir().ok_or(FsError::NotDir)?;
        let d = dir.read();
        let slot = d.get(name).ok_or(FsError::NotFound)?;
        let child = self.node(slot.id)?;
        Ok(Self::entry_of(&child))
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: NodeId, n: u64) {
        if let Ok(node) = self.node(ino) {
            if saturating_dec(&node.lookups, n) == 0 {
                self.maybe_evict(&node);
            }
        }
    }

    /// Attributes of `ino`.
    ///
    /// # Errors
    /// ENOENT for an unknown node.
    pub fn getattr(&self, ino: NodeId) -> FsResult<Attr> {
        Ok(Self::attr_of(&*self.node(ino)?))
    }

    /// Changes attributes (chmod, chown, truncate, utimens).
    ///
    /// # Errors
    /// EISDIR/EINVAL for a size on a non-file, EFBIG past the largest size.
    pub fn setattr(&self, caller: Caller, ino: NodeId, set: SetAttr) -> FsResult<Attr> {
        let node = self.node(ino)?;
        node.touch();
        let t = now();
        let mut size_changed = false;
        if let Some(size) = set.size {
            let data = match node.kind {
                Kind::File => node.file().ok_or(FsError::Io)?,
                Kind::Dir => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid),
            };
            if size > MAX_FILE_SIZE {
                return Err(FsError::FileTooBig);
            }
            let mut d = data.write();
            let before = d.len();
            d.set_len(size, &self.budget).map_err(storage)?;
            if size < before {
                self.after_shrink(&node, &mut d);
            }
            self.publish(&node, &d);
            size_changed = true;
        }
        let mut m = node.meta.lock();
        // Privileges a change of contents or owner takes away (the kernel
        // leaves this to us): a truncate by an unprivileged caller, a chown
        // of anything but a directory. An explicit mode wins.
        let chown = set.uid.is_some() || set.gid.is_some();
        if node.kind == Kind::File && (size_changed || chown) {
            let freed = m.kill_privileges(chown || !caller.is_root());
            self.budget.release_ram(freed);
        }
        if let Some(mode) = set.mode {
            m.perm = mode & 0o7777;
        }
        if let Some(uid) = set.uid {
            m.uid = uid;
        }
        if let Some(gid) = set.gid {
            m.gid = gid;
        }
        match set.atime {
            Some(TimeSet::Now) => m.atime = t,
            Some(TimeSet::At(at)) => m.atime = at,
            None => {}
        }
        match set.mtime {
            Some(TimeSet::Now) => m.mtime = t,
            Some(TimeSet::At(at)) => m.mtime = at,
            None if size_changed => m.mtime = t,
            None => {}
        }
        m.ctime = set.ctime.unwrap_or(t);
        let mtime = m.mtime;
        drop(m);
        if node.passthrough_opens.load(Ordering::Acquire) > 0 {
            if let Some(data) = node.file() {
                data.read().set_passthrough_mtime(mtime);
            }
        }
        Ok(Self::attr_of(&node))
    }

    /// The target of a symlink.
    ///
    /// # Errors
    /// EINVAL if `ino` is not a symlink.
    pub fn readlink(&self, ino: NodeId) -> FsResult<Vec<u8>> {
        match &self.node(ino)?.body {
            Body::Symlink(target) => Ok(target.to_vec()),
            _ => Err(FsError::Invalid),
        }
    }

    // -------------------------------------------------------------- creation

    /// Creates a node named `name` in `parent` under the parent's entry lock.
    /// `mode` carries the permission bits (umask already applied).
    ///
    /// The node starts with one lookup reference, the one the caller's
    /// entry reply hands to the kernel: counting it only after the entry
    /// lock is dropped would let a concurrent unlink evict the new node.
    fn create_node(
        &self,
        caller: Caller,
        parent: NodeId,
        name: &OsStr,
        new: NewNode,
        body: impl FnOnce() -> Body,
    ) -> FsResult<Arc<Node>> {
        let NewNode { kind, mode, rdev } = new;
        self.fault_point(name);
        check_name(name)?;
        let p = self.node(parent)?;
        let dir = p.dir().ok_or(FsError::NotDir)?;
        let mut d = dir.write();
        if d.removed {
            return Err(FsError::NotFound);
        }
        if d.get(name).is_some() {
            return Err(FsError::Exists);
        }
        if kind == Kind::Dir && p.meta.lock().nlink >= MAX_LINKS {
            return Err(FsError::TooManyLinks);
        }
        self.budget.reserve_inode().map_err(no_space)?;
        let t = now();
        let (mut perm, gid) = {
            let pm = p.meta.lock();
            if pm.perm & node::mode::S_ISGID != 0 {
                let perm = if kind == Kind::Dir {
                    mode | node::mode::S_ISGID
                } else {
                    mode
                };
                (perm, pm.gid)
            } else {
                (mode, caller.gid)
            }
        };
        perm &= 0o7777;
        let id = NodeId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let body = body();
        let size = match &body {
            Body::Symlink(t) => t.len() as u64,
            Body::Dir(_) => 40,
            _ => 0,
        };
        let node = Arc::new(Node {
            id,
            kind,
            meta: Mutex::new(Meta {
                perm,
                uid: caller.uid,
                gid,
                nlink: if kind == Kind::Dir { 2 } else { 1 },
                rdev,
                atime: t,
                mtime: t,
                ctime: t,
                crtime: t,
                xattrs: BTreeMap::new(),
                xattr_bytes: 0,
            }),
            body,
            lookups: AtomicU64::new(1),
            opens: AtomicU64::new(0),
            parent: AtomicU64::new(parent.0),
            size: AtomicU64::new(size),
            allocated: AtomicU64::new(0),
            spilled: AtomicBool::new(false),
            name_hint: parking_lot::Mutex::new(Some((parent, Arc::from(name)))),
            touched: AtomicU64::new(tiering::now_secs()),
            spill_retry_at: AtomicU64::new(0),
            passthrough_opens: AtomicU64::new(0),
        });
        self.nodes.insert(id, Arc::clone(&node));
        d.insert(name, &node);
        p.publish_dir(&d);
        let mut pm = p.meta.lock();
        pm.touch_modified(t);
        if kind == Kind::Dir {
            pm.nlink += 1;
        }
        Ok(node)
    }

    /// Creates a regular file, FIFO, socket or device node.
    ///
    /// # Errors
    /// EEXIST, ENOENT, ENOTDIR, ENAMETOOLONG, ENOSPC, EINVAL for a bad type.
    pub fn mknod(&self, caller: Caller, parent: NodeId, name: &OsStr, mode: u32, rdev: u32) -> FsResult<Entry> {
        let kind = Kind::from_mode(mode).ok_or(FsError::Invalid)?;
        let body = match kind {
            Kind::File => || Body::File(RwLock::new(FileData::default())),
            Kind::Dir | Kind::Symlink => return Err(FsError::Invalid),
            _ => || Body::Special,
        };
        let rdev = if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
            rdev
        } else {
            0
        };
        let node = self.create_node(caller, parent, name, NewNode { kind, mode, rdev }, body)?;
        Ok(Self::entry_no_ref(&node))
    }

    /// Creates a directory.
    ///
    /// # Errors
    /// EEXIST, ENOENT, ENOTDIR, ENAMETOOLONG, ENOSPC, EMLINK.
    pub fn mkdir(&self, caller: Caller, parent: NodeId, name: &OsStr, mode: u32) -> FsResult<Entry> {
        let node = self.create_node(caller, parent, name, NewNode::new(Kind::Dir, mode), || {
            Body::Dir(RwLock::new(Dir::new()))
        })?;
        Ok(Self::entry_no_ref(&node))
    }

    /// Creates a symlink to `target`.
    ///
    /// # Errors
    /// ENAMETOOLONG for a target over [`SYMLINK_MAX`] bytes, and as mkdir.
    pub fn symlink(&self, caller: Caller, parent: NodeId, name: &OsStr, target: &OsStr) -> FsResult<Entry> {
        let target = target.as_bytes();
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        let node = self.create_node(caller, parent, name, NewNode::new(Kind::Symlink, 0o777), || {
            Body::Symlink(target.into())
        })?;
        Ok(Self::entry_no_ref(&node))
    }

    /// Creates and opens a regular file (open with O_CREAT). With
    /// `exclusive` (O_EXCL) an existing name fails with EEXIST, atomically;
    /// without it an existing regular file is opened instead.
    ///
    /// # Errors
    /// As mknod; EISDIR when the existing name is a directory.
    pub fn create(
        &self,
        caller: Caller,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> FsResult<(Entry, HandleId)> {
        let exclusive = flags & libc::O_EXCL != 0;
        let node = match self.create_node(caller, parent, name, NewNode::new(Kind::File, mode), || {
            Body::File(RwLock::new(FileData::default()))
        }) {
            Ok(node) => node,
            Err(FsError::Exists) if !exclusive => {
                let e = self.lookup(parent, name)?;
                let node = self.node(e.attr.ino)?;
                if node.kind == Kind::Dir {
                    self.forget(node.id, 1);
                    return Err(FsError::IsDir);
                }
                let fh = self.open_node(&node, flags);
                return Ok((e, fh));
            }
            Err(e) => return Err(e),
        };
        let fh = self.open_node(&node, flags);
        Ok((Self::entry_no_ref(&node), fh))
    }

    /// Adds a hard link to `ino` as `name` in `parent`.
    ///
    /// # Errors
    /// EPERM for a directory, ENOENT for an unlinked node, EMLINK, EEXIST.
    pub fn link(&self, _caller: Caller, ino: NodeId, parent: NodeId, name: &OsStr) -> FsResult<Entry> {
        check_name(name)?;
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(FsError::NotPermitted);
        }
        let p = self.node(parent)?;
        let dir = p.dir().ok_or(FsError::NotDir)?;
        let mut d = dir.write();
        if d.removed {
            return Err(FsError::NotFound);
        }
        if d.get(name).is_some() {
            return Err(FsError::Exists);
        }
        let t = now();
        {
            let mut m = node.meta.lock();
            if m.nlink == 0 {
                return Err(FsError::NotFound);
            }
            if m.nlink >= MAX_LINKS {
                return Err(FsError::TooManyLinks);
            }
            m.nlink += 1;
            m.ctime = t;
        }
        node.set_name_hint(parent, name);
        d.insert(name, &node);
        p.publish_dir(&d);
        p.meta.lock().touch_modified(t);
        let entry = Self::entry_of(&node);
        drop(d);
        Ok(entry)
    }

    // -------------------------------------------------------------- removal

    /// Removes a non-directory name.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR, EISDIR.
    pub fn unlink(&self, _caller: Caller, parent: NodeId, name: &OsStr) -> FsResult<()> {
        self.fault_point(name);
        self.unlink_checked(parent, name, None)
    }

    /// unlink, only if `name` still names `expect` (when given).
    fn unlink_checked(&self, parent: NodeId, name: &OsStr, expect: Option<NodeId>) -> FsResult<()> {
        let p = self.node(parent)?;
        let dir = p.dir().ok_or(FsError::NotDir)?;
        let mut d = dir.write();
        let slot = d.get(name).ok_or(FsError::NotFound)?;
        if expect.is_some_and(|id| id != slot.id) {
            return Err(FsError::NotFound);
        }
        if slot.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let child = self.node(slot.id)?;
        d.remove(name);
        p.publish_dir(&d);
        let t = now();
        {
            let mut m = child.meta.lock();
            m.nlink = m.nlink.saturating_sub(1);
            m.ctime = t;
        }
        p.meta.lock().touch_modified(t);
        drop(d);
        self.maybe_evict(&child);
        Ok(())
    }

    /// Removes an empty directory.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR, ENOTEMPTY.
    pub fn rmdir(&self, _caller: Caller, parent: NodeId, name: &OsStr) -> FsResult<()> {
        let p = self.node(parent)?;
        let dir = p.dir().ok_or(FsError::NotDir)?;
        let mut d = dir.write();
        let slot = d.get(name).ok_or(FsError::NotFound)?;
        if slot.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let child = self.node(slot.id)?;
        {
            let mut cd = child.dir().ok_or(FsError::Io)?.write();
            if !cd.is_empty() {
                return Err(FsError::NotEmpty);
            }
            cd.removed = true;
        }
        d.remove(name);
        p.publish_dir(&d);
        let t = now();
        {
            let mut m = child.meta.lock();
            m.nlink = 0;
            m.ctime = t;
        }
        {
            let mut pm = p.meta.lock();
            pm.nlink = pm.nlink.saturating_sub(1);
            pm.touch_modified(t);
        }
        drop(d);
        self.maybe_evict(&child);
        Ok(())
    }

    /// Whether `id` is `ancestor` or lies below it. Stable only under the
    /// rename lock (directory parents change only under it).
    fn is_within(&self, mut id: NodeId, ancestor: NodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            if id == NodeId::ROOT {
                return false;
            }
            match self.node(id) {
                Ok(n) => id = n.parent(),
                Err(_) => return false,
            }
        }
    }

    /// Renames `parent/name` to `newparent/newname`.
    ///
    /// # Errors
    /// ENOENT, EEXIST (noreplace), EINVAL (a directory into itself, or both
    /// flags), ENOTDIR/EISDIR (kind mismatch), ENOTEMPTY, ENAMETOOLONG.
    pub fn rename(
        &self,
        _caller: Caller,
        parent: NodeId,
        name: &OsStr,
        newparent: NodeId,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> FsResult<()> {
        if flags.noreplace && flags.exchange {
            return Err(FsError::Invalid);
        }
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        check_name(newname)?;
        let op = self.node(parent)?;
        let np = self.node(newparent)?;
        let odir = op.dir().ok_or(FsError::NotDir)?;
        let ndir = np.dir().ok_or(FsError::NotDir)?;
        let victim = if parent == newparent {
            let mut d = odir.write();
            let r = self.rename_locked(&op, &np, &mut DirPair::Same(&mut d), name, newname, flags);
            op.publish_dir(&d);
            r?
        } else {
            let _rename = self.rename_lock.lock();
            let old_first = if self.is_within(newparent, parent) {
                true
            } else if self.is_within(parent, newparent) {
                false
            } else {
                parent < newparent
            };
            let (mut od, mut nd) = if old_first {
                let o = odir.write();
                (o, ndir.write())
            } else {
                let n = ndir.write();
                (odir.write(), n)
            };
            let r = self.rename_locked(&op, &np, &mut DirPair::Two(&mut od, &mut nd), name, newname, flags);
            op.publish_dir(&od);
            np.publish_dir(&nd);
            r?
        };
        if let Some(v) = victim {
            self.maybe_evict(&v);
        }
        Ok(())
    }

    /// The body of rename, with the parents' entry locks held. Returns the
    /// node that lost a name, to be evicted once the locks are dropped.
    fn rename_locked(
        &self,
        op: &Arc<Node>,
        np: &Arc<Node>,
        dirs: &mut DirPair<'_, '_>,
        name: &OsStr,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> FsResult<Option<Arc<Node>>> {
        let cross = matches!(dirs, DirPair::Two(..));
        let src_slot = dirs.src().get(name).ok_or(FsError::NotFound)?;
        let dst_slot = dirs.dst().get(newname);
        if dirs.dst().removed {
            return Err(FsError::NotFound);
        }
        let src = self.node(src_slot.id)?;
        // A directory may not move below itself.
        if cross && src.kind == Kind::Dir && self.is_within(np.id, src.id) {
            return Err(FsError::Invalid);
        }
        let t = now();
        if flags.exchange {
            let dst_slot = dst_slot.ok_or(FsError::NotFound)?;
            let dst = self.node(dst_slot.id)?;
            if cross && dst.kind == Kind::Dir && self.is_within(op.id, dst.id) {
                return Err(FsError::Invalid);
            }
            if src.id == dst.id {
                return Ok(None);
            }
            dirs.src().replace(name, &dst);
            dirs.dst().replace(newname, &src);
            src.set_name_hint(np.id, newname);
            dst.set_name_hint(op.id, name);
            if cross {
                let src_dir = i32::from(src.kind == Kind::Dir);
                let dst_dir = i32::from(dst.kind == Kind::Dir);
                if src.kind == Kind::Dir {
                    src.parent.store(np.id.0, Ordering::Release);
                }
                if dst.kind == Kind::Dir {
                    dst.parent.store(op.id.0, Ordering::Release);
                }
                adjust_nlink(op, dst_dir - src_dir);
                adjust_nlink(np, src_dir - dst_dir);
            }
            src.meta.lock().ctime = t;
            dst.meta.lock().ctime = t;
            op.meta.lock().touch_modified(t);
            np.meta.lock().touch_modified(t);
            return Ok(None);
        }
        let mut victim = None;
        if let Some(dst_slot) = dst_slot {
            if flags.noreplace {
                return Err(FsError::Exists);
            }
            if dst_slot.id == src.id {
                // Two names of one node: POSIX says do nothing.
                return Ok(None);
            }
            let dst = self.node(dst_slot.id)?;
            match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                _ => {}
            }
            if dst.kind == Kind::Dir {
                // The old parent is not empty: it holds the source.
                if dst.id == op.id {
                    return Err(FsError::NotEmpty);
                }
                let mut dd = dst.dir().ok_or(FsError::Io)?.write();
                if !dd.is_empty() {
                    return Err(FsError::NotEmpty);
                }
                dd.removed = true;
            }
            dirs.dst().remove(newname);
            {
                let mut m = dst.meta.lock();
                m.nlink = if dst.kind == Kind::Dir {
                    0
                } else {
                    m.nlink.saturating_sub(1)
                };
                m.ctime = t;
            }
            if dst.kind == Kind::Dir {
                adjust_nlink(np, -1);
            }
            victim = Some(dst);
        }
        dirs.src().remove(name);
        dirs.dst().insert(newname, &src);
        src.set_name_hint(np.id, newname);
        if cross && src.kind == Kind::Dir {
            src.parent.store(np.id.0, Ordering::Release);
            adjust_nlink(op, -1);
            adjust_nlink(np, 1);
        }
        src.meta.lock().ctime = t;
        op.meta.lock().touch_modified(t);
        if cross {
            np.meta.lock().touch_modified(t);
        }
        Ok(victim)
    }

    // ------------------------------------------------------------ open files

    fn open_node(&self, node: &Arc<Node>, flags: i32) -> HandleId {
        self.open_node_as(node, flags, false)
    }

    fn open_node_as(&self, node: &Arc<Node>, flags: i32, passthrough: bool) -> HandleId {
        node.opens.fetch_add(1, Ordering::AcqRel);
        node.touch();
        let fh = HandleId(self.next_handle.fetch_add(1, Ordering::Relaxed));
        self.handles.insert(
            fh,
            Handle {
                node: Arc::clone(node),
                append: flags & libc::O_APPEND != 0,
                passthrough,
            },
        );
        fh
    }

    /// Opens a regular file, deciding how the kernel serves it. With
    /// `passthrough=on` and `want_passthrough` (the adapter's kernel takes
    /// it), a spilled file that no daemon-served handle has open is handed
    /// to the kernel ([`OpenMode::Passthrough`]); the kernel refuses to mix
    /// the two kinds of open on one file, so a file open the other way
    /// keeps that way until its last close.
    ///
    /// # Errors
    /// ENOENT; EISDIR for a directory opened for writing.
    pub fn open_file(
        &self,
        caller: Caller,
        ino: NodeId,
        flags: i32,
        want_passthrough: bool,
    ) -> FsResult<(HandleId, OpenMode)> {
        let node = self.node(ino)?;
        let (true, Some(data)) = (self.passthrough && want_passthrough, node.file()) else {
            return Ok((self.open(caller, ino, flags)?, OpenMode::Served));
        };
        let mut d = data.write();
        let opens = node.opens.load(Ordering::Acquire);
        let served = opens.saturating_sub(node.passthrough_opens.load(Ordering::Acquire));
        // The kernel's passthrough writes drop set-id bits and file
        // capabilities of the spill file, not of this file: a file that
        // has them is served, so that writes still take them away.
        let (mtime, privileged) = {
            let m = node.meta.lock();
            let setid = m.perm & (node::mode::S_ISUID | node::mode::S_ISGID) != 0;
            (
                m.mtime,
                setid || m.xattrs.contains_key(b"security.capability".as_slice()),
            )
        };
        if served == 0 && !privileged {
            match d.begin_passthrough(mtime) {
                Some(Ok(file)) => {
                    if node.passthrough_opens.fetch_add(1, Ordering::AcqRel) == 0 {
                        self.passed_through.insert(node.id, Arc::clone(&node));
                    }
                    self.passthrough_opened.fetch_add(1, Ordering::Relaxed);
                    let fh = self.open_node_as(&node, flags, true);
                    return Ok((fh, OpenMode::Passthrough(file)));
                }
                Some(Err(e)) => tracing::debug!(ino = ino.0, "open served by the daemon: {e}"),
                None => {}
            }
        }
        Ok((self.open_node(&node, flags), OpenMode::Served))
    }

    /// Passthrough handles open on `ino` (0 once it is gone).
    #[must_use]
    pub fn passthrough_opens(&self, ino: NodeId) -> u64 {
        self.nodes
            .get(&ino)
            .map_or(0, |n| n.passthrough_opens.load(Ordering::Acquire))
    }

    /// The adapter could not hand a passthrough open to the kernel: the
    /// handle becomes a daemon-served one.
    ///
    /// # Errors
    /// EBADF for an unknown handle.
    pub fn passthrough_refused(&self, fh: HandleId) -> FsResult<()> {
        let node = {
            let mut h = self.handles.get_mut(&fh).ok_or(FsError::BadHandle)?;
            if !h.passthrough {
                return Ok(());
            }
            h.passthrough = false;
            Arc::clone(&h.node)
        };
        self.passthrough_opened.fetch_sub(1, Ordering::Relaxed);
        self.end_passthrough(&node, false);
        Ok(())
    }

    /// Ends one passthrough open of `node`; with `close`, the handle goes
    /// as well, in the same critical section (so that [`Fs::open_file`]
    /// never counts a passthrough handle as a daemon-served one). Returns
    /// the node's remaining opens.
    fn end_passthrough(&self, node: &Node, close: bool) -> u64 {
        let Some(data) = node.file() else {
            return node.opens.load(Ordering::Acquire);
        };
        // Size and times as the kernel's last writes left them.
        Self::take_passthrough_state(node);
        let mut d = data.write();
        d.end_passthrough(&self.budget);
        if saturating_dec(&node.passthrough_opens, 1) == 0 {
            self.passed_through.remove(&node.id);
            // Cut short while the kernel held it: back to RAM now.
            self.after_shrink(node, &mut d);
        }
        self.publish(node, &d);
        if close {
            saturating_dec(&node.opens, 1)
        } else {
            node.opens.load(Ordering::Acquire)
        }
    }

    /// Charges the budget with what the kernel has written to files it
    /// holds by passthrough, so that `size=` counts those writes before
    /// the files close: `df` and `status` show them, and other writes
    /// get ENOSPC once they fill the mount. (The kernel's own writes
    /// cannot be refused: they end at the spill disk's limits.) Called by
    /// [`Fs::statfs`], [`Fs::stats`] and the spiller thread each second.
    pub fn charge_passthrough_writes(&self) {
        let nodes: Vec<Arc<Node>> = self.passed_through.iter().map(|r| Arc::clone(r.value())).collect();
        for node in nodes {
            let Some(data) = node.file() else { continue };
            let mut d = data.write();
            if let Err(e) = d.settle_passthrough(&self.budget) {
                tracing::debug!(ino = node.id.0, "cannot charge passthrough writes: {e:?}");
            }
            self.publish(&node, &d);
        }
    }

    /// Opens a node (file or, with [`Fs::opendir`], directory).
    ///
    /// # Errors
    /// ENOENT, EISDIR when a directory is opened for writing.
    pub fn open(&self, _caller: Caller, ino: NodeId, flags: i32) -> FsResult<HandleId> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir && flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(FsError::IsDir);
        }
        Ok(self.open_node(&node, flags))
    }

    /// Opens a directory for listing.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR.
    pub fn opendir(&self, _caller: Caller, ino: NodeId) -> FsResult<HandleId> {
        let node = self.node(ino)?;
        if node.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(self.open_node(&node, 0))
    }

    /// Closes a handle from open, create or opendir.
    ///
    /// # Errors
    /// EBADF for an unknown handle.
    pub fn release(&self, fh: HandleId) -> FsResult<()> {
        if fh.stateless_node().is_some() {
            return Ok(());
        }
        let (_, h) = self.handles.remove(&fh).ok_or(FsError::BadHandle)?;
        let remaining = if h.passthrough {
            self.end_passthrough(&h.node, true)
        } else {
            saturating_dec(&h.node.opens, 1)
        };
        if remaining == 0 {
            self.closed(&h.node);
            self.maybe_evict(&h.node);
        }
        Ok(())
    }

    fn file_of(&self, fh: HandleId) -> FsResult<Handle> {
        let h = self.handle(fh)?;
        match h.node.kind {
            Kind::File => Ok(h),
            Kind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// Reads up to `size` bytes at `off` through handle `fh`.
    ///
    /// # Errors
    /// EBADF, EISDIR.
    pub fn read(&self, fh: HandleId, off: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.file_of(fh)?;
        let data = h.node.file().ok_or(FsError::Io)?;
        let d = data.read();
        let len = d.len();
        let n = len.saturating_sub(off).min(u64::from(size));
        let mut buf = vec![0u8; usize::try_from(n).map_err(|_| FsError::Invalid)?];
        let got = d.read_at(off, &mut buf).map_err(storage)?;
        buf.truncate(got);
        drop(d);
        h.node.touch();
        self.touch_atime(&h.node);
        Ok(buf)
    }

    /// relatime: the access time moves only when it is older than the
    /// last change, or a day old.
    fn touch_atime(&self, node: &Node) {
        let t = now();
        let mut m = node.meta.lock();
        if m.atime <= m.mtime
            || m.atime <= m.ctime
            || t.duration_since(m.atime).unwrap_or_default() > Duration::from_secs(86400)
        {
            m.atime = t;
        }
    }

    /// Writes `data` at `off` through handle `fh` (at the end for O_APPEND);
    /// returns the count written.
    ///
    /// # Errors
    /// EBADF, EFBIG, ENOSPC (nothing written then).
    pub fn write(&self, fh: HandleId, off: u64, data: &[u8]) -> FsResult<u32> {
        self.write_killing(fh, off, data, false)
    }

    /// [`Fs::write`] that also drops set-user-ID and set-group-ID when
    /// `kill_setid` (an unprivileged writer, as the adapter's kernel says);
    /// file capabilities go with any write.
    ///
    /// # Errors
    /// As for [`Fs::write`].
    pub fn write_killing(&self, fh: HandleId, off: u64, data: &[u8], kill_setid: bool) -> FsResult<u32> {
        let mut result = Err(FsError::Io);
        self.write_answering(fh, off, data, kill_setid, |r| result = r);
        result
    }

    /// [`Fs::write_killing`] that hands its result to `answer` as soon as
    /// the write can no longer fail (space reserved, size and times set),
    /// before its bytes are copied, so that an adapter can answer the
    /// kernel while the copy runs; `answer` is called exactly once. The
    /// file's data lock is held until the copy is done, so no read,
    /// truncate or tier move sees the file without the bytes. Only a spill
    /// disk's I/O error can strike after a success was answered, and the
    /// file then answers EIO from now on. `answer` runs under that lock: it
    /// must not read, write or resize the same file.
    pub fn write_answering(
        &self,
        fh: HandleId,
        off: u64,
        data: &[u8],
        kill_setid: bool,
        answer: impl FnOnce(FsResult<u32>),
    ) {
        if u32::try_from(data.len()).is_err() {
            return answer(Err(FsError::Invalid));
        }
        let h = match self.file_of(fh) {
            Ok(h) => h,
            Err(e) => return answer(Err(e)),
        };
        let Some(file) = h.node.file() else {
            return answer(Err(FsError::Io));
        };
        let mut d = file.write();
        let off = if h.append { d.len() } else { off };
        if let Err(e) = check_range(off, data.len() as u64) {
            return answer(Err(e));
        }
        let grow = d.growth(off, data.len());
        self.spool_before_growth(&h.node, &mut d, grow);
        let w = match d.prepare_write(off, data, &self.budget) {
            Ok(w) => w,
            Err(e) => return answer(Err(storage(e))),
        };
        self.publish(&h.node, &d);
        h.node.touch();
        let mut m = h.node.meta.lock();
        m.touch_modified(now());
        if kill_setid || !m.xattrs.is_empty() {
            let freed = m.kill_privileges(kill_setid);
            self.budget.release_ram(freed);
        }
        drop(m);
        // The copy follows even if the adapter's answer unwinds, so that
        // the size just published never covers bytes that were not copied.
        // Short only when a spill disk ran out partway through a write
        // done at once.
        let n = w.len() as u32;
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(Ok(n))));
        if let Err(e) = d.finish_write(w, data, &self.budget) {
            // The spill file is poisoned and logged; reads answer EIO.
            tracing::debug!(ino = h.node.id.0, "write failed after it was answered: {e:?}");
        }
        if d.tier() == Tier::Ram {
            self.after_ram_growth(&h.node, &mut d);
        }
        self.publish(&h.node, &d);
        drop(d);
        if let Err(panic) = answered {
            std::panic::resume_unwind(panic);
        }
    }

    /// fsync. Nothing is made durable (the contents are meant to vanish),
    /// but a write still being copied is waited for, and a spill disk's
    /// I/O error that struck after a write was answered is reported here
    /// (EIO), as a disk file system reports a writeback error.
    ///
    /// # Errors
    /// EBADF, EIO.
    pub fn fsync(&self, fh: HandleId) -> FsResult<()> {
        let h = self.handle(fh)?;
        match h.node.file() {
            Some(file) if file.read().failed() => Err(FsError::Io),
            _ => Ok(()),
        }
    }

    /// Lists directory entries after cookie `offset`, calling `add` for
    /// each until it returns `true` (buffer full). `.` and `..` come first.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR.
    pub fn readdir(&self, ino: NodeId, offset: u64, mut add: impl FnMut(DirEntry<'_>) -> bool) -> FsResult<()> {
        let node = self.node(ino)?;
        let dir = node.dir().ok_or(FsError::NotDir)?;
        for (cookie, name, id) in [(1, ".", node.id), (2, "..", node.parent())] {
            if offset < cookie
                && add(DirEntry {
                    ino: id,
                    offset: cookie,
                    kind: Kind::Dir,
                    name: OsStr::new(name),
                })
            {
                return Ok(());
            }
        }
        let d = dir.read();
        for (name, slot) in d.after(offset.max(FIRST_COOKIE - 1)) {
            if add(DirEntry {
                ino: slot.id,
                offset: slot.cookie,
                kind: slot.kind,
                name,
            }) {
                break;
            }
        }
        drop(d);
        self.touch_atime(&node);
        Ok(())
    }

    /// readdir with attributes. Each entry that `add` accepts (returns
    /// `false`) other than `.` and `..` raises that node's lookup count.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR.
    pub fn readdirplus(
        &self,
        ino: NodeId,
        offset: u64,
        mut add: impl FnMut(DirEntry<'_>, &Entry) -> bool,
    ) -> FsResult<()> {
        let node = self.node(ino)?;
        let dir = node.dir().ok_or(FsError::NotDir)?;
        let parent = self.node(node.parent()).unwrap_or_else(|_| Arc::clone(&node));
        for (cookie, name, n) in [(1, ".", &node), (2, "..", &parent)] {
            if offset < cookie {
                // The kernel takes no reference for dot entries.
                let e = Entry {
                    attr: Self::attr_of(n),
                    generation: GENERATION,
                };
                let de = DirEntry {
                    ino: n.id,
                    offset: cookie,
                    kind: Kind::Dir,
                    name: OsStr::new(name),
                };
                if add(de, &e) {
                    return Ok(());
                }
            }
        }
        let d = dir.read();
        let start = offset.max(FIRST_COOKIE - 1);
        // Each entry's node is a cache miss away (a listing walks nodes made
        // at any time, anywhere in memory): the loads of the entries a few
        // places ahead are started early so that their misses overlap.
        let mut ahead = d.listed_after(start);
        for (name, _, n) in ahead.by_ref().take(PREFETCH_AHEAD) {
            prefetch_entry(name, n);
        }
        for (name, slot, listed) in d.listed_after(start) {
            if let Some((name, _, n)) = ahead.next() {
                prefetch_entry(name, n);
            }
            // Alive while linked here: the node table holds every node
            // that has a name.
            let Some(child) = listed.upgrade() else { continue };
            let e = Entry {
                attr: Self::attr_of(&child),
                generation: GENERATION,
            };
            let de = DirEntry {
                ino: slot.id,
                offset: slot.cookie,
                kind: slot.kind,
                name,
            };
            if add(de, &e) {
                break;
            }
            child.lookups.fetch_add(1, Ordering::AcqRel);
        }
        drop(ahead);
        drop(d);
        self.touch_atime(&node);
        Ok(())
    }

    /// File-system totals.
    #[must_use]
    pub fn statfs(&self) -> StatFs {
        self.charge_passthrough_writes();
        let bs = u64::from(BLOCK_SIZE);
        let (blocks, bfree) = if self.budget.byte_limit() == u64::MAX {
            (0, 0)
        } else {
            let total = self.budget.byte_limit() / bs;
            (total, total.saturating_sub(self.budget.bytes().div_ceil(bs)))
        };
        let (files, ffree) = if self.budget.inode_limit() == u64::MAX {
            (0, 0)
        } else {
            let total = self.budget.inode_limit();
            (total, total.saturating_sub(self.budget.inodes()))
        };
        StatFs {
            blocks,
            bfree,
            bavail: bfree,
            files,
            ffree,
            bsize: BLOCK_SIZE,
            namelen: NAME_MAX as u32,
        }
    }

    /// Counts one request from the kernel (adapters call this for every
    /// request they receive, answered by the core or not).
    pub fn count(&self, op: Op) {
        self.requests.count(op);
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.charge_passthrough_writes();
        let (mut files_ram, mut files_spilled, mut files_packed) = (0, 0, 0);
        for r in &self.nodes {
            let n = r.value();
            if n.kind == Kind::File {
                if !n.spilled.load(Ordering::Relaxed) {
                    files_ram += 1;
                    continue;
                }
                files_spilled += 1;
                // Only a small file can be packed; the lock is taken only
                // for those, and not waited for.
                if n.size.load(Ordering::Relaxed) <= crate::storage::pack::SLOT {
                    let packed = n.file().and_then(|f| f.try_read()).map(|d| d.tier() == Tier::Packed);
                    files_packed += u64::from(packed == Some(true));
                }
            }
        }
        let bytes = self.budget.bytes();
        let ram_bytes = self.budget.ram().min(bytes);
        Stats {
            bytes,
            ram_bytes,
            spilled_bytes: bytes - ram_bytes,
            ram_high_water: self.budget.ram_high_water(),
            max_ram: self.tiers.max_ram,
            spool: self.tiers.spool,
            files_ram,
            files_spilled,
            files_packed,
            pack_files: self.tiers.dir.as_ref().map_or(0, |d| d.packs().files() as u64),
            spills: self.tiers.spills.load(Ordering::Relaxed),
            returns: self.tiers.returns.load(Ordering::Relaxed),
            spill_failures: self.tiers.spill_failures.load(Ordering::Relaxed),
            byte_limit: self.budget.byte_limit(),
            bytes_high_water: self.budget.bytes_high_water(),
            inodes: self.budget.inodes(),
            inode_limit: self.budget.inode_limit(),
            enospc: self.budget.enospc_count(),
            open_handles: self.handles.len() as u64,
            passthrough_opens: self.handles.iter().filter(|h| h.passthrough).count() as u64,
            passthrough_opened: self.passthrough_opened.load(Ordering::Relaxed),
            requests: self.requests.snapshot(),
        }
    }

    /// Requests received from the kernel so far, by kind (the field of
    /// [`Stats`], without the rest of its walk).
    #[must_use]
    pub fn requests(&self) -> Requests {
        self.requests.snapshot()
    }

    /// The tier holding a file's bytes.
    ///
    /// # Errors
    /// ENOENT; EINVAL for a non-file.
    pub fn tier(&self, ino: NodeId) -> FsResult<Tier> {
        let node = self.node(ino)?;
        let data = node.file().ok_or(FsError::Invalid)?;
        let tier = data.read().tier();
        Ok(tier)
    }

    // ---------------------------------------------------------------- xattrs

    fn check_xattr_name(caller: Caller, node: &Node, name: &[u8], write: bool) -> FsResult<()> {
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(FsError::Range);
        }
        if name.starts_with(b"user.") {
            if !matches!(node.kind, Kind::File | Kind::Dir) {
                return Err(if write { FsError::NotPermitted } else { FsError::NoAttr });
            }
            Ok(())
        } else if name.starts_with(b"trusted.") {
            if caller.is_root() {
                Ok(())
            } else if write {
                Err(FsError::NotPermitted)
            } else {
                Err(FsError::NoAttr)
            }
        } else if name.starts_with(b"security.") {
            Ok(())
        } else {
            // system.* (POSIX ACLs) and unknown namespaces.
            Err(FsError::NotSupported)
        }
    }

    /// Sets an extended attribute. `flags`: XATTR_CREATE (1), XATTR_REPLACE (2).
    ///
    /// # Errors
    /// EEXIST, ENODATA, E2BIG, ERANGE, EPERM, EOPNOTSUPP, ENOSPC.
    pub fn setxattr(&self, caller: Caller, ino: NodeId, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        if is_stats_xattr(ino, name) {
            return Err(FsError::NotPermitted);
        }
        let node = self.node(ino)?;
        let name = name.as_bytes();
        Self::check_xattr_name(caller, &node, name, true)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(FsError::TooBig);
        }
        let mut m = node.meta.lock();
        let old = m.xattrs.get(name).map(|v| (name.len() + v.len()) as u64);
        match (flags & 3, old.is_some()) {
            (1, true) => return Err(FsError::Exists),
            (2, false) => return Err(FsError::NoAttr),
            (3, _) => return Err(FsError::Invalid),
            _ => {}
        }
        let new = (name.len() + value.len()) as u64;
        let old = old.unwrap_or(0);
        let total = m.xattr_bytes - old + new;
        if total > XATTR_NODE_MAX {
            return Err(FsError::NoSpace);
        }
        if new > old {
            self.budget.reserve_ram(new - old).map_err(no_space)?;
        } else {
            self.budget.release_ram(old - new);
        }
        m.xattr_bytes = total;
        m.xattrs.insert(name.into(), value.into());
        m.ctime = now();
        Ok(())
    }

    /// Reads an extended attribute.
    ///
    /// # Errors
    /// ENODATA, ERANGE, EOPNOTSUPP.
    pub fn getxattr(&self, caller: Caller, ino: NodeId, name: &OsStr) -> FsResult<Vec<u8>> {
        if is_stats_xattr(ino, name) {
            return serde_json::to_vec(&self.stats()).map_err(|_| FsError::Io);
        }
        let node = self.node(ino)?;
        let name = name.as_bytes();
        Self::check_xattr_name(caller, &node, name, false)?;
        let m = node.meta.lock();
        m.xattrs.get(name).map(|v| v.to_vec()).ok_or(FsError::NoAttr)
    }

    /// Lists extended attribute names, each NUL-terminated. `trusted.*`
    /// names are listed for root only.
    ///
    /// # Errors
    /// ENOENT.
    pub fn listxattr(&self, caller: Caller, ino: NodeId) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        let m = node.meta.lock();
        let mut out = Vec::new();
        for name in m.xattrs.keys() {
            if name.starts_with(b"trusted.") && !caller.is_root() {
                continue;
            }
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    /// Removes an extended attribute.
    ///
    /// # Errors
    /// ENODATA, EPERM, EOPNOTSUPP.
    pub fn removexattr(&self, caller: Caller, ino: NodeId, name: &OsStr) -> FsResult<()> {
        if is_stats_xattr(ino, name) {
            return Err(FsError::NotPermitted);
        }
        let node = self.node(ino)?;
        let name = name.as_bytes();
        Self::check_xattr_name(caller, &node, name, true)?;
        let mut m = node.meta.lock();
        let v = m.xattrs.remove(name).ok_or(FsError::NoAttr)?;
        let freed = (name.len() + v.len()) as u64;
        m.xattr_bytes -= freed;
        self.budget.release_ram(freed);
        m.ctime = now();
        Ok(())
    }

    /// Checks access bits for `mask` (R_OK 4, W_OK 2, X_OK 1; 0 = exists).
    /// The kernel does this itself under `default_permissions`; adapters
    /// without such a kernel check call this.
    ///
    /// # Errors
    /// EACCES.
    pub fn access(&self, caller: Caller, ino: NodeId, mask: i32) -> FsResult<()> {
        let node = self.node(ino)?;
        let m = node.meta.lock();
        let mask = (mask & 7) as u32;
        if mask == 0 {
            return Ok(());
        }
        if caller.is_root() {
            if mask & 1 != 0 && node.kind != Kind::Dir && m.perm & 0o111 == 0 {
                return Err(FsError::AccessDenied);
            }
            return Ok(());
        }
        let bits = if caller.uid == m.uid {
            m.perm >> 6
        } else if caller.gid == m.gid {
            m.perm >> 3
        } else {
            m.perm
        } & 7;
        if mask & !bits != 0 {
            return Err(FsError::AccessDenied);
        }
        Ok(())
    }

    // ---------------------------------------------------- fallocate and seek

    /// fallocate on an open file.
    ///
    /// # Errors
    /// EINVAL for a zero length, EFBIG, ENOSPC, EBADF.
    pub fn fallocate(&self, fh: HandleId, off: u64, len: u64, mode: Fallocate) -> FsResult<()> {
        if len == 0 {
            return Err(FsError::Invalid);
        }
        check_range(off, len)?;
        let h = self.file_of(fh)?;
        let file = h.node.file().ok_or(FsError::Io)?;
        let mut d = file.write();
        let before = d.len();
        if mode != Fallocate::PunchHole {
            // `len` bounds the growth: walking the range could take as
            // long as the range is large.
            self.spool_before_growth(&h.node, &mut d, len);
        }
        match mode {
            Fallocate::Allocate => d.allocate(off, len, false, &self.budget).map_err(storage)?,
            Fallocate::KeepSize => d.allocate(off, len, true, &self.budget).map_err(storage)?,
            Fallocate::PunchHole => d.punch_hole(off, len, &self.budget).map_err(storage)?,
        }
        if d.tier() == Tier::Ram {
            self.after_ram_growth(&h.node, &mut d);
        }
        self.publish(&h.node, &d);
        let changed = mode == Fallocate::PunchHole || d.len() != before;
        drop(d);
        if changed {
            h.node.meta.lock().touch_modified(now());
        }
        Ok(())
    }

    /// lseek for the whence values the file system answers.
    ///
    /// # Errors
    /// ENXIO when SEEK_DATA/SEEK_HOLE start at or past the end.
    pub fn lseek(&self, fh: HandleId, off: u64, whence: Whence) -> FsResult<u64> {
        let h = self.handle(fh)?;
        let Some(file) = h.node.file() else {
            return match whence {
                Whence::Set => Ok(off),
                _ => Err(FsError::Invalid),
            };
        };
        let d = file.read();
        match whence {
            Whence::Set => Ok(off),
            Whence::End => d.len().checked_add(off).ok_or(FsError::Invalid),
            Whence::Data => d.seek_data(off).ok_or(FsError::NoSuchOffset),
            Whence::Hole => d.seek_hole(off).ok_or(FsError::NoSuchOffset),
        }
    }

    /// Copies `len` bytes between open files; returns the count (short at
    /// the source's end).
    ///
    /// # Errors
    /// EINVAL for overlapping ranges of one file, EFBIG, ENOSPC, EBADF.
    pub fn copy_file_range(
        &self,
        fh_in: HandleId,
        off_in: u64,
        fh_out: HandleId,
        off_out: u64,
        len: u64,
    ) -> FsResult<u64> {
        let hin = self.file_of(fh_in)?;
        let hout = self.file_of(fh_out)?;
        check_range(off_out, len)?;
        if hin.node.id == hout.node.id && off_in < off_out.saturating_add(len) && off_out < off_in.saturating_add(len) {
            return Err(FsError::Invalid);
        }
        let src = hin.node.file().ok_or(FsError::Io)?;
        let dst = hout.node.file().ok_or(FsError::Io)?;
        let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(len).unwrap_or(COPY_CHUNK))];
        let mut done = 0u64;
        while done < len {
            let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
            // One data lock at a time: never two, so no order is needed.
            let got = src.read().read_at(off_in + done, &mut buf[..want]).map_err(storage)?;
            if got == 0 {
                break;
            }
            let mut d = dst.write();
            let grow = d.growth(off_out + done, got);
            self.spool_before_growth(&hout.node, &mut d, grow);
            let wrote = d.write_at(off_out + done, &buf[..got], &self.budget);
            if d.tier() == Tier::Ram {
                self.after_ram_growth(&hout.node, &mut d);
            }
            self.publish(&hout.node, &d);
            drop(d);
            if let Err(e) = wrote {
                // A short copy is reported as such; only a copy that moved
                // nothing fails.
                if done == 0 {
                    return Err(storage(e));
                }
                break;
            }
            done += got as u64;
        }
        if done > 0 {
            hout.node.meta.lock().touch_modified(now());
            self.touch_atime(&hin.node);
        }
        Ok(done)
    }
}

/// How many entries ahead of the one it answers a listing starts loading.
const PREFETCH_AHEAD: usize = 4;

/// Starts loading a directory entry's name and node into the cache without
/// waiting for them: a hint to the CPU, which reads nothing and may ignore
/// it.
#[inline]
fn prefetch_entry(name: &OsStr, node: &Weak<Node>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        // The node with its reference counts, which lie before it.
        let start = node
            .as_ptr()
            .cast::<i8>()
            .wrapping_sub(2 * std::mem::size_of::<usize>());
        let len = std::mem::size_of::<Node>() + 2 * std::mem::size_of::<usize>();
        // SAFETY: a prefetch reads no memory and cannot fault, whatever the
        // address; SSE, which it needs, is part of every x86_64 CPU.
        unsafe {
            for off in (0..len).step_by(LINE) {
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off));
            }
            _mm_prefetch::<_MM_HINT_T0>(name.as_encoded_bytes().as_ptr().cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (name, node);
}

fn adjust_nlink(node: &Node, delta: i32) {
    if delta != 0 {
        let mut m = node.meta.lock();
        m.nlink = m.nlink.saturating_add_signed(delta);
    }
}

/// The parent directories of a rename, locked: one, or two distinct ones.
enum DirPair<'a, 'b> {
    Same(&'a mut parking_lot::RwLockWriteGuard<'b, Dir>),
    Two(
        &'a mut parking_lot::RwLockWriteGuard<'b, Dir>,
        &'a mut parking_lot::RwLockWriteGuard<'b, Dir>,
    ),
}

impl DirPair<'_, '_> {
    fn src(&mut self) -> &mut Dir {
        match self {
            DirPair::Same(d) | DirPair::Two(d, _) => d,
        }
    }

    fn dst(&mut self) -> &mut Dir {
        match self {
            DirPair::Same(d) | DirPair::Two(_, d) => d,
        }
    }
}

#[cfg(test)]
mod tests;
