//! A node: fixed identity and kind, counted references, locked attributes
//! and a kind-specific body.
//!
//! # Three lifetimes
//! A node is kept while any of these is non-zero: `nlink` (names in
//! directories), `lookups` (references the kernel holds, raised by every
//! entry reply and lowered by forget) and `opens` (open handles). The table
//! removes it, and frees its bytes, only when all three are zero; the check
//! is made again under the table's shard lock so that it is final.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use super::dir::Dir;
use super::ids::NodeId;
use crate::storage::FileData;

/// What kind of node this is (fixed at creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO (named pipe).
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

/// File-type and set-id bits. Their values are fixed by POSIX practice and
/// equal on every platform, while libc's types for them differ (`u16` on
/// macOS), so they are spelled out once here.
pub(crate) mod mode {
    pub(crate) const S_IFMT: u32 = 0o170_000;
    pub(crate) const S_IFSOCK: u32 = 0o140_000;
    pub(crate) const S_IFLNK: u32 = 0o120_000;
    pub(crate) const S_IFREG: u32 = 0o100_000;
    pub(crate) const S_IFBLK: u32 = 0o060_000;
    pub(crate) const S_IFDIR: u32 = 0o040_000;
    pub(crate) const S_IFCHR: u32 = 0o020_000;
    pub(crate) const S_IFIFO: u32 = 0o010_000;
    pub(crate) const S_ISUID: u32 = 0o4000;
    pub(crate) const S_ISGID: u32 = 0o2000;
    pub(crate) const S_IXGRP: u32 = 0o0010;
}

impl Kind {
    /// The kind named by the `S_IFMT` bits of `mode`, if any (none means a
    /// regular file, as mknod(2) says).
    #[must_use]
    pub fn from_mode(m: u32) -> Option<Kind> {
        use mode::*;
        Some(match m & S_IFMT {
            0 | S_IFREG => Kind::File,
            S_IFDIR => Kind::Dir,
            S_IFLNK => Kind::Symlink,
            S_IFIFO => Kind::Fifo,
            S_IFSOCK => Kind::Socket,
            S_IFCHR => Kind::CharDevice,
            S_IFBLK => Kind::BlockDevice,
            _ => return None,
        })
    }
}

/// Mutable attributes, under the node's `meta` lock. That lock is a leaf:
/// nothing else is ever locked while it is held.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) perm: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
    pub(crate) rdev: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
    pub(crate) crtime: SystemTime,
    pub(crate) xattrs: BTreeMap<Box<[u8]>, Box<[u8]>>,
    /// Bytes of `xattrs`, charged to the budget.
    pub(crate) xattr_bytes: u64,
}

impl Meta {
    pub(crate) fn touch_modified(&mut self, now: SystemTime) {
        self.mtime = now;
        self.ctime = now;
    }

    /// What the kernel's file_remove_privs does, left to the file system
    /// under FUSE_HANDLE_KILLPRIV_V2: `kill_setid` clears set-user-ID, and
    /// set-group-ID where the group may execute (otherwise it marks
    /// mandatory locking); file capabilities always go. Returns the bytes
    /// of xattr freed.
    pub(crate) fn kill_privileges(&mut self, kill_setid: bool) -> u64 {
        if kill_setid {
            self.perm &= !mode::S_ISUID;
            if self.perm & mode::S_IXGRP != 0 {
                self.perm &= !mode::S_ISGID;
            }
        }
        if self.xattrs.is_empty() {
            return 0;
        }
        let name: &[u8] = b"security.capability";
        match self.xattrs.remove(name) {
            Some(v) => {
                let freed = (name.len() + v.len()) as u64;
                self.xattr_bytes -= freed;
                freed
            }
            None => 0,
        }
    }
}

/// The kind-specific part of a node.
#[derive(Debug)]
pub(crate) enum Body {
    Dir(RwLock<Dir>),
    File(RwLock<FileData>),
    Symlink(Box<[u8]>),
    Special,
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) kind: Kind,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) body: Body,
    pub(crate) lookups: AtomicU64,
    pub(crate) opens: AtomicU64,
    /// Directories only: the containing directory. Changed only by a
    /// cross-directory rename, under the file system's rename lock.
    pub(crate) parent: AtomicU64,
    /// Logical size and bytes held, published by whoever changes the body
    /// (under its lock) so that getattr needs no body lock.
    pub(crate) size: AtomicU64,
    pub(crate) allocated: AtomicU64,
    /// Files only: whether the bytes are in the spill tier (published
    /// with the size, so the spiller can pick victims without locking).
    pub(crate) spilled: AtomicBool,
    /// The last name given to the node (directory and name), for removing
    /// it on last close (`delete_on_close`) or expiry. A hint: checked
    /// against the directory before use.
    pub(crate) name_hint: parking_lot::Mutex<Option<(NodeId, Arc<OsStr>)>>,
    /// Seconds since the epoch of the last open, read, write or change:
    /// how cold the node is, and when `expire=` may remove it.
    pub(crate) touched: AtomicU64,
    /// Files only: seconds since the epoch before which a failed spill is
    /// not tried again (0: no failure pending).
    pub(crate) spill_retry_at: AtomicU64,
    /// Files only: open handles the kernel serves by passthrough (changed
    /// under the data lock). While non-zero the kernel writes the spill
    /// file itself, so size and times are read from it.
    pub(crate) passthrough_opens: AtomicU64,
}

impl Node {
    pub(crate) fn dir(&self) -> Option<&RwLock<Dir>> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn file(&self) -> Option<&RwLock<FileData>> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn parent(&self) -> NodeId {
        NodeId(self.parent.load(Ordering::Acquire))
    }

    /// Publishes a file's size and allocation after a change to its data;
    /// true when the bytes just came back from disk to RAM.
    pub(crate) fn publish(&self, data: &FileData) -> bool {
        self.size.store(data.len(), Ordering::Release);
        self.allocated.store(data.allocated(), Ordering::Release);
        // Callers hold the data lock: no other publisher races this one,
        // and a write (two publishes per request) costs no atomic swap.
        let spilled = data.tier() != crate::storage::Tier::Ram;
        let was = self.spilled.load(Ordering::Acquire);
        if was != spilled {
            self.spilled.store(spilled, Ordering::Release);
        }
        was && !spilled
    }

    pub(crate) fn touch(&self) {
        self.touched.store(super::tiering::now_secs(), Ordering::Relaxed);
    }

    pub(crate) fn set_name_hint(&self, parent: NodeId, name: &OsStr) {
        *self.name_hint.lock() = Some((parent, Arc::from(name)));
    }

    /// Publishes a directory's size after a change to its entries (tmpfs
    /// reports 20 bytes per entry, counting `.` and `..`).
    pub(crate) fn publish_dir(&self, dir: &Dir) {
        self.size.store((dir.len() as u64 + 2) * 20, Ordering::Release);
    }

    /// True when nothing refers to the node any more.
    pub(crate) fn unreferenced(&self) -> bool {
        self.lookups.load(Ordering::Acquire) == 0
            && self.opens.load(Ordering::Acquire) == 0
            && self.meta.lock().nlink == 0
    }
}

/// Lowers `counter` by `n` without wrapping: a confused client must not
/// turn a count into a huge number that keeps a node forever.
pub(crate) fn saturating_dec(counter: &AtomicU64, n: u64) -> u64 {
    let mut cur = counter.load(Ordering::Acquire);
    loop {
        let new = cur.saturating_sub(n);
        match counter.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return new,
            Err(actual) => cur = actual,
        }
    }
}
