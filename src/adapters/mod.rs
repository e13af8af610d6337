//! Platform adapters: thin translations between a kernel protocol and
//! [`crate::core::Fs`].

#[cfg(unix)]
pub mod fuse;
