//! The FUSE adapter (Linux, macOS): `impl fuser::Filesystem` over
//! [`crate::core::Fs`]. Each handler decodes its request, calls one core
//! method and encodes the answer; nothing here owns file-system state.
//!
//! Every handler runs inside `guarded`: a panic is caught and logged, the
//! unsent reply answers EIO as it is dropped, and the worker thread lives on
//! (fuser alone would lose the thread and end the session).

mod attr;
#[cfg(target_os = "linux")]
mod mnt;
mod poll;
mod session;

use std::ffi::OsStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::mapref::entry::Entry as SlotEntry;
use dashmap::DashMap;
use fuser::{
    AccessFlags, BackingId, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::core::{self, Caller, Entry, Fallocate, Fs, HandleId, NodeId, Op, OpenMode, SetAttr, TimeSet, Whence};
use crate::error::FsError;
use attr::{errno, file_attr, file_type, negative_entry, TTL};
pub use poll::BusyPoll;
pub use session::{mount, FS_NAME};

/// Largest write the kernel may send in one request.
const MAX_WRITE: u32 = 1 << 20;

/// Keep the kernel's page cache of a file across opens: every change to a
/// file's contents goes through the kernel, which updates or drops its
/// cache itself (write, truncate, punch hole, copy_file_range); a move
/// between tiers never changes the contents.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;

/// A spill file registered with the kernel for passthrough opens of one
/// node: the kernel wants the same registration for every such open of a
/// file, so it lives while the node has any.
struct Backing(BackingId);

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backing")
    }
}

/// The FUSE face of a [`Fs`].
#[derive(Debug)]
pub struct FuseFs {
    fs: Arc<Fs>,
    writeback: bool,
    /// Passthrough is on and the kernel has not refused it (yet).
    passthrough: AtomicBool,
    /// Passthrough registrations by node; the map's entry lock also
    /// orders the opens and releases of one node.
    backing: DashMap<u64, Backing>,
    poll: Option<Arc<BusyPoll>>,
    /// Dropped with the session: unmounts a connection left mounted.
    #[cfg(target_os = "linux")]
    connection: Option<mnt::Connection>,
}

impl FuseFs {
    /// Wraps a file system for mounting; `writeback` asks the kernel to
    /// cache writes (see [`crate::MountConfig::writeback`]).
    #[must_use]
    pub fn new(fs: Arc<Fs>, writeback: bool) -> Self {
        Self {
            passthrough: AtomicBool::new(fs.passthrough()),
            fs,
            writeback,
            backing: DashMap::new(),
            poll: None,
            #[cfg(target_os = "linux")]
            connection: None,
        }
    }

    /// Ties the mount's lifetime to the session's.
    #[cfg(target_os = "linux")]
    fn with_connection(mut self, connection: mnt::Connection) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Polls the session's descriptor between requests (see [`BusyPoll`]).
    #[must_use]
    pub fn with_busy_poll(mut self, poll: Arc<BusyPoll>) -> Self {
        self.poll = Some(poll);
        self
    }

    /// The kernel would not take a spill file for passthrough: for good
    /// when it never will (no privilege, no support), so that later opens
    /// do not ask again.
    fn passthrough_refused(&self, e: &std::io::Error) {
        let for_good = matches!(
            e.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
        );
        if for_good {
            if self.passthrough.swap(false, Ordering::Relaxed) {
                tracing::info!("the kernel refused FUSE passthrough ({e}); the daemon serves spilled files");
            }
        } else {
            tracing::debug!("passthrough refused for one open: {e}");
        }
    }

    /// Runs one request handler, catching a panic so that the session
    /// survives. The panic hook has already logged the message and its
    /// location.
    fn guarded(&self, op: Op, f: impl FnOnce()) {
        self.fs.count(op);
        if let Some(p) = &self.poll {
            p.request();
        }
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            tracing::error!(?op, "request panicked; answered EIO");
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn node(ino: INodeNo) -> NodeId {
    NodeId(ino.0)
}

/// renameat2(2)'s flags for the core; `None` (EINVAL) for whiteouts and
/// anything unknown.
#[cfg(target_os = "linux")]
fn rename_flags(flags: RenameFlags) -> Option<core::RenameFlags> {
    let known = RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE;
    known.contains(flags).then(|| core::RenameFlags {
        noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
        exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
    })
}

/// renamex_np(2)'s flags (macOS) for the core: RENAME_EXCL refuses an
/// existing target, RENAME_SWAP exchanges; `None` (EINVAL) for the rest.
#[cfg(not(target_os = "linux"))]
fn rename_flags(flags: RenameFlags) -> Option<core::RenameFlags> {
    const EXCL: u32 = 0x4;
    const SWAP: u32 = 0x2;
    let bits = flags.bits();
    (bits & !(EXCL | SWAP) == 0).then_some(core::RenameFlags {
        noreplace: bits & EXCL != 0,
        exchange: bits & SWAP != 0,
    })
}

fn handle(fh: FileHandle) -> HandleId {
    HandleId(fh.0)
}

/// The core handle for a request on `ino` through `fh`: the kernel sends
/// handle 0 once opens are stateless (the core never hands out 0).
fn file_handle(ino: INodeNo, fh: FileHandle) -> HandleId {
    if fh.0 == 0 {
        HandleId::stateless(node(ino))
    } else {
        handle(fh)
    }
}

fn reply_entry(reply: ReplyEntry, r: Result<Entry, FsError>) {
    match r {
        Ok(e) => reply.entry(&TTL, &file_attr(&e.attr), Generation(e.generation.0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, FsError>) {
    match r {
        Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(e)),
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
    }
}

impl Filesystem for FuseFs {
    fn destroy(&mut self) {
        // Test-only: a daemon slow to wind down after its session ended,
        // to prove that it leaves a later mount at the same path alone.
        #[cfg(feature = "fault-injection")]
        if let Some(ms) = std::env::var("TMPFSD_FAULT_SLOW_TEARDOWN_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        // Each is used only where the kernel offers it:
        // - PARALLEL_DIROPS: lookups and listings in one directory run in
        //   parallel (the core locks what it needs itself);
        // - WRITEBACK_CACHE (writeback=on): writes land in the page cache
        //   and reach the daemon in large background batches;
        // - READDIRPLUS for every listing, unless writeback=on: each write
        //   through the daemon makes the kernel's copy of a file's times
        //   stale, so `ls -l`, `find` or `du` after writes would cost a
        //   GETATTR round trip (15-50 us here) per name; attributes in the
        //   listing cost about 1 us more per name (daemon and kernel
        //   together). Not the kernel's "auto" mode, which asks for them in
        //   a listing's first reply only, before anyone has stat'ed a name.
        //   With the writeback cache the kernel keeps times itself and
        //   the attributes would only slow listings down.
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        if !self.writeback {
            let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        }
        // HANDLE_KILLPRIV_V2: set-id bits and capabilities are dropped here
        // (write, truncate, chown), so the kernel stops sending a GETXATTR
        // of security.capability before every write.
        let _ = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        if self.writeback {
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
        }
        // PASSTHROUGH (passthrough=on): opens of spilled files hand the
        // spill file to the kernel. A stack depth of 1: the spill file
        // system must not itself be stacked.
        if self.passthrough.load(Ordering::Relaxed) {
            if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok() {
                tracing::debug!("passthrough offered by the kernel");
            } else {
                tracing::info!("this kernel has no FUSE passthrough; the daemon serves spilled files");
                self.passthrough.store(false, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.guarded(Op::Lookup, || match self.fs.lookup(node(parent), name) {
            Err(FsError::NotFound) => reply.entry(&TTL, &negative_entry(), Generation(0)),
            r => reply_entry(reply, r),
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.guarded(Op::Forget, || self.fs.forget(node(ino), nlookup));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.guarded(Op::Getattr, || match self.fs.getattr(node(ino)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.guarded(Op::Setattr, || {
            let set = SetAttr {
                mode,
                uid,
                gid,
                size,
                atime: atime.map(time_set),
                mtime: mtime.map(time_set),
                ctime,
            };
            match self.fs.setattr(caller(req), node(ino), set) {
                Ok(a) => reply.attr(&TTL, &file_attr(&a)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.guarded(Op::Readlink, || match self.fs.readlink(node(ino)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        self.guarded(Op::Mknod, || {
            reply_entry(
                reply,
                self.fs.mknod(caller(req), node(parent), name, mode & !umask, rdev),
            );
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.guarded(Op::Mkdir, || {
            reply_entry(
                reply,
                self.fs.mkdir(caller(req), node(parent), name, mode & !umask & 0o7777),
            );
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guarded(Op::Unlink, || {
            reply_empty(reply, self.fs.unlink(caller(req), node(parent), name))
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guarded(Op::Rmdir, || {
            reply_empty(reply, self.fs.rmdir(caller(req), node(parent), name))
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.guarded(Op::Symlink, || {
            reply_entry(
                reply,
                self.fs
                    .symlink(caller(req), node(parent), link_name, target.as_os_str()),
            );
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.guarded(Op::Rename, || {
            let Some(flags) = rename_flags(flags) else {
                return reply.error(Errno::EINVAL);
            };
            let r = self
                .fs
                .rename(caller(req), node(parent), name, node(newparent), newname, flags);
            reply_empty(reply, r);
        });
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.guarded(Op::Link, || {
            reply_entry(reply, self.fs.link(caller(req), node(ino), node(newparent), newname));
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS tells the kernel to open files without asking from now on
        // (no OPEN, FLUSH or RELEASE round trips; the page cache is kept):
        // the kernel checks permissions itself, and its lookup reference
        // keeps an unlinked file alive while it is open.
        if self.fs.stateless_opens() {
            self.fs.count(Op::Open);
            return reply.error(Errno::ENOSYS);
        }
        self.guarded(Op::Open, || {
            if !self.fs.passthrough() {
                return match self.fs.open(caller(req), node(ino), flags.0) {
                    Ok(fh) => reply.opened(FileHandle(fh.0), OPEN_FLAGS),
                    Err(e) => reply.error(errno(e)),
                };
            }
            let slot = self.backing.entry(ino.0);
            // A node passed through already must stay so (the kernel
            // refuses to mix kinds of open), even if passthrough has since
            // been refused for good.
            let want = self.passthrough.load(Ordering::Relaxed) || matches!(slot, SlotEntry::Occupied(_));
            match self.fs.open_file(caller(req), node(ino), flags.0, want) {
                Err(e) => reply.error(errno(e)),
                Ok((fh, OpenMode::Served)) => reply.opened(FileHandle(fh.0), OPEN_FLAGS),
                Ok((fh, OpenMode::Passthrough(file))) => match slot {
                    SlotEntry::Occupied(b) => {
                        reply.opened_passthrough(FileHandle(fh.0), FopenFlags::empty(), &b.get().0)
                    }
                    SlotEntry::Vacant(v) => match reply.open_backing(&file) {
                        Ok(id) => {
                            let b = v.insert(Backing(id));
                            reply.opened_passthrough(FileHandle(fh.0), FopenFlags::empty(), &b.0);
                        }
                        Err(e) => {
                            self.passthrough_refused(&e);
                            match self.fs.passthrough_refused(fh) {
                                Ok(()) => reply.opened(FileHandle(fh.0), OPEN_FLAGS),
                                Err(e) => reply.error(errno(e)),
                            }
                        }
                    },
                },
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.guarded(Op::Read, || match self.fs.read(file_handle(ino, fh), offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Under HANDLE_KILLPRIV_V2 the kernel asks us to drop set-id bits
        // for unprivileged writers instead of asking for
        // security.capability before every write.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        // Answered before the bytes are copied (the file stays locked until
        // they are), so that the copy overlaps the kernel's next request.
        self.guarded(Op::Write, || {
            self.fs
                .write_answering(file_handle(ino, fh), offset, data, kill, |r| match r {
                    Ok(n) => reply.written(n),
                    Err(e) => reply.error(errno(e)),
                });
        });
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing is buffered here and locks are the kernel's: ENOSYS tells
        // the kernel to stop sending FLUSH at every close.
        self.fs.count(Op::Flush);
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Handle 0 was never handed out: nothing to release.
        if fh.0 == 0 {
            self.fs.count(Op::Release);
            return reply.ok();
        }
        self.guarded(Op::Release, || {
            if !self.fs.passthrough() {
                return reply_empty(reply, self.fs.release(handle(fh)));
            }
            // The registration goes with the node's last passthrough open.
            let slot = self.backing.entry(ino.0);
            let r = self.fs.release(handle(fh));
            if let SlotEntry::Occupied(b) = slot {
                if self.fs.passthrough_opens(node(ino)) == 0 {
                    b.remove();
                }
            }
            reply_empty(reply, r);
        });
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.guarded(Op::Fsync, || match self.fs.fsync(file_handle(ino, fh)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // As for open; stateless directories also let the kernel cache
        // listings, which it drops whenever it changes the directory.
        if self.fs.stateless_dirs() {
            self.fs.count(Op::Opendir);
            return reply.error(Errno::ENOSYS);
        }
        self.guarded(Op::Opendir, || match self.fs.opendir(caller(req), node(ino)) {
            Ok(fh) => reply.opened(FileHandle(fh.0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.guarded(Op::Readdir, || {
            let r = self.fs.readdir(node(ino), offset, |e| {
                reply.add(INodeNo(e.ino.0), e.offset, file_type(e.kind), e.name)
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.guarded(Op::Readdirplus, || {
            let r = self.fs.readdirplus(node(ino), offset, |e, entry| {
                reply.add(
                    INodeNo(e.ino.0),
                    e.offset,
                    e.name,
                    &TTL,
                    &file_attr(&entry.attr),
                    Generation(entry.generation.0),
                )
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.guarded(Op::Releasedir, || reply_empty(reply, self.fs.release(handle(fh))));
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.fs.count(Op::Fsyncdir);
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No ioctls here. The kernel forwards every one (Python's isatty()
        // sends TCGETS at each open) and does not remember the answer.
        self.fs.count(Op::Ioctl);
        reply.error(Errno::ENOTTY);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.guarded(Op::Statfs, || {
            let s = self.fs.statfs();
            reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            );
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        self.guarded(Op::Setxattr, || {
            if position != 0 {
                return reply.error(Errno::EINVAL);
            }
            reply_empty(reply, self.fs.setxattr(caller(req), node(ino), name, value, flags));
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.guarded(Op::Getxattr, || {
            reply_xattr(reply, size, self.fs.getxattr(caller(req), node(ino), name))
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.guarded(Op::Listxattr, || {
            reply_xattr(reply, size, self.fs.listxattr(caller(req), node(ino)))
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guarded(Op::Removexattr, || {
            reply_empty(reply, self.fs.removexattr(caller(req), node(ino), name))
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.guarded(Op::Access, || {
            reply_empty(reply, self.fs.access(caller(req), node(ino), mask.bits()))
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // Without open state, CREATE is MKNOD plus an open that needs no
        // answer, and the kernel would still send a RELEASE for the handle
        // it returns. ENOSYS makes the kernel create with MKNOD from now on
        // and open without asking: one round trip per new file instead of
        // two.
        if self.fs.stateless_opens() {
            self.fs.count(Op::Create);
            return reply.error(Errno::ENOSYS);
        }
        self.guarded(Op::Create, || {
            match self
                .fs
                .create(caller(req), node(parent), name, mode & !umask & 0o7777, flags)
            {
                Ok((e, fh)) => reply.created(
                    &TTL,
                    &file_attr(&e.attr),
                    Generation(e.generation.0),
                    FileHandle(fh.0),
                    OPEN_FLAGS,
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.guarded(Op::Fallocate, || {
            let r = Fallocate::from_mode(mode).and_then(|m| self.fs.fallocate(file_handle(ino, fh), offset, length, m));
            reply_empty(reply, r);
        });
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        self.guarded(Op::Lseek, || {
            let whence = match whence {
                libc::SEEK_SET => Whence::Set,
                libc::SEEK_END => Whence::End,
                libc::SEEK_DATA => Whence::Data,
                libc::SEEK_HOLE => Whence::Hole,
                _ => return reply.error(Errno::EINVAL),
            };
            let Ok(off) = u64::try_from(offset) else {
                return reply.error(if matches!(whence, Whence::Data | Whence::Hole) {
                    Errno::ENXIO
                } else {
                    Errno::EINVAL
                });
            };
            match self.fs.lseek(file_handle(ino, fh), off, whence) {
                Ok(pos) => match i64::try_from(pos) {
                    Ok(pos) => reply.offset(pos),
                    Err(_) => reply.error(Errno::EOVERFLOW),
                },
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.guarded(Op::CopyFileRange, || {
            if !flags.is_empty() {
                return reply.error(Errno::EINVAL);
            }
            // The reply carries a 32-bit count; callers loop on short copies.
            let len = len.min(1 << 30);
            match self.fs.copy_file_range(
                file_handle(ino_in, fh_in),
                offset_in,
                file_handle(ino_out, fh_out),
                offset_out,
                len,
            ) {
                Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }
}
