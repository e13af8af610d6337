//! Conversions between core types and fuser's wire types.

use std::time::Duration;

use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::core::{Attr, Kind, BLOCK_SIZE};
use crate::error::FsError;

/// How long the kernel may cache entries and attributes. The daemon is the
/// only writer: every change goes through the kernel, which drops its cache
/// for what it changed, except the removals of `delete_on_close` and
/// `expire=`, which the daemon reports itself (`session::KernelCache`).
pub(crate) const TTL: Duration = Duration::from_secs(3600);

pub(crate) fn errno(e: FsError) -> Errno {
    Errno::from_i32(e.errno())
}

pub(crate) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

/// The I/O size a regular file reports as `st_blksize`: one request's
/// worth (`max_write`). Programs that size their buffers by it (Python's
/// `open`, coreutils) then write in whole requests instead of 4 KiB or
/// 64 KiB pieces, each a round trip; NFS reports its `wsize` the same way.
pub(crate) const FILE_IO_SIZE: u32 = 1 << 20;

pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: if a.kind == Kind::File { FILE_IO_SIZE } else { BLOCK_SIZE },
        flags: 0,
    }
}

/// The answer to a lookup of a name that does not exist: node 0, which the
/// kernel keeps as a negative entry for [`TTL`], so that looking the name
/// up again (a build probing include paths, `stat` before `create`) costs
/// no round trip. Safe for the same reason as `TTL`: names appear only
/// through the kernel, which replaces its negative entry when it makes
/// one. The attributes are not read.
pub(crate) fn negative_entry() -> FileAttr {
    let epoch = std::time::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
        crtime: epoch,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}
