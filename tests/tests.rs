//! Integration tests: every module mounts a real tmpfsd file system in a
//! fresh temporary directory and unmounts it again, also when a test fails.
//! One binary for all of them keeps link time down.

mod common;

mod bench;
mod cache;
mod cli;
mod companion;
mod passthrough;
mod posix;
mod robustness;
mod spill;
mod unprivileged;
