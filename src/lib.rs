//! tmpfsd: a temporary file system that lives in RAM and spills to disk.
//!
//! ```text
//! cli/  the `tmpfsd` binary          api/  companion crate for applications
//! ───────────────────────────────────────────────────────────────────────
//! adapters   fuse (Linux, macOS) · winfsp (Windows): decode, call, encode
//! ───────────────────────────────────────────────────────────────────────
//! core       the namespace: nodes, directories, links, modes, owners,
//!            times, xattrs, handles, lookup counts, limits
//! ───────────────────────────────────────────────────────────────────────
//! storage    a file's bytes (RAM tier) and the budget that bounds them
//! ```
//!
//! Dependencies point down only; [`core`] and [`storage`] name no platform
//! crate and are tested in-process without mounting anything.
//!
//! # Concepts
//! - A **node** is an inode, keyed by [`NodeId`], never by path. Directories
//!   map names to node ids in insertion order, with stable readdir cookies.
//! - A node lives while it has a name (`nlink`), a kernel reference
//!   (lookup count) or an open handle. An unlinked file that is still open
//!   stays fully usable; its bytes are freed when the last of the three
//!   goes.
//! - Every byte and inode is reserved against `size=` and `nr_inodes=`
//!   before it is used, so a full mount answers ENOSPC and changes nothing.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod adapters;
pub mod config;
pub mod core;
pub mod error;
pub mod storage;
#[cfg(unix)]
pub mod sys;

pub use crate::config::MountConfig;
pub use crate::core::{Caller, Fs, NodeId};
pub use crate::error::{ConfigError, FsError, FsResult};
