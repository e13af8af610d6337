//! Integration tests: every module mounts a real tmpfsd file system in a
//! fresh temporary directory and unmounts it again, also when a test fails.
//! One binary for all of them keeps link time down. They use Linux's
//! FUSE (fusermount3, /proc, fallocate, renameat2): elsewhere there is
//! nothing to run.
#![cfg(target_os = "linux")]

mod common;

mod bench;
mod cache;
mod cli;
mod companion;
mod passthrough;
mod posix;
mod requests;
mod robustness;
mod spill;
mod unprivileged;
