//! Error types. `FsError` is what every core operation returns; each variant
//! maps to exactly one errno, so no error reaches the kernel as a stray EIO.

use std::fmt;

/// A file-system request failed. Each variant names one errno class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// ENOENT: no such file or directory.
    #[error("no such file or directory")]
    NotFound,
    /// EEXIST: the name is taken.
    #[error("file exists")]
    Exists,
    /// ENOTDIR: a directory was expected.
    #[error("not a directory")]
    NotDir,
    /// EISDIR: a non-directory was expected.
    #[error("is a directory")]
    IsDir,
    /// ENOTEMPTY: the directory still has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// ENAMETOOLONG: a name over 255 bytes or a symlink target over 4095.
    #[error("file name too long")]
    NameTooLong,
    /// ENOSPC: the size or inode limit would be exceeded.
    #[error("no space left on device")]
    NoSpace,
    /// EFBIG: offset plus length past the largest file size.
    #[error("file too large")]
    FileTooBig,
    /// EINVAL: an argument makes no sense (e.g. a directory renamed into itself).
    #[error("invalid argument")]
    Invalid,
    /// EPERM: the operation is not permitted for this caller or this kind of node.
    #[error("operation not permitted")]
    NotPermitted,
    /// EACCES: a permission bit forbids the access.
    #[error("permission denied")]
    AccessDenied,
    /// ENODATA: no such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// ERANGE: the caller's buffer is too small, or an xattr name is empty or too long.
    #[error("result out of range")]
    Range,
    /// E2BIG: an xattr value over the limit.
    #[error("argument list too long")]
    TooBig,
    /// EOPNOTSUPP: the operation or mode is not supported.
    #[error("operation not supported")]
    NotSupported,
    /// EBADF: an unknown or wrongly opened handle.
    #[error("bad file descriptor")]
    BadHandle,
    /// ENXIO: SEEK_DATA/SEEK_HOLE past the end of the file.
    #[error("no such device or address")]
    NoSuchOffset,
    /// EMLINK: too many hard links.
    #[error("too many links")]
    TooManyLinks,
    /// EXDEV: cross-device operation.
    #[error("cross-device link")]
    CrossDevice,
    /// EIO: an internal failure (a caught panic, a failed spill file).
    #[error("input/output error")]
    Io,
}

impl FsError {
    /// The errno this error is reported as.
    #[must_use]
    pub fn errno(self) -> i32 {
        match self {
            Self::NotFound => libc::ENOENT,
            Self::Exists => libc::EEXIST,
            Self::NotDir => libc::ENOTDIR,
            Self::IsDir => libc::EISDIR,
            Self::NotEmpty => libc::ENOTEMPTY,
            Self::NameTooLong => libc::ENAMETOOLONG,
            Self::NoSpace => libc::ENOSPC,
            Self::FileTooBig => libc::EFBIG,
            Self::Invalid => libc::EINVAL,
            Self::NotPermitted => libc::EPERM,
            Self::AccessDenied => libc::EACCES,
            Self::NoAttr => no_attr_errno(),
            Self::Range => libc::ERANGE,
            Self::TooBig => libc::E2BIG,
            Self::NotSupported => libc::EOPNOTSUPP,
            Self::BadHandle => libc::EBADF,
            Self::NoSuchOffset => libc::ENXIO,
            Self::TooManyLinks => libc::EMLINK,
            Self::CrossDevice => libc::EXDEV,
            Self::Io => libc::EIO,
        }
    }
}

#[cfg(target_os = "linux")]
fn no_attr_errno() -> i32 {
    libc::ENODATA
}

#[cfg(not(target_os = "linux"))]
fn no_attr_errno() -> i32 {
    // macOS and the BSDs have ENOATTR instead of ENODATA.
    93
}

/// Result of a core operation.
pub type FsResult<T> = Result<T, FsError>;

/// A mount option was unknown or its value made no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option as the user wrote it (`size=12q`).
    pub option: String,
    /// What is wrong with it, lowercase, no trailing period.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            option: option.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "option '{}': {}", self.option, self.reason)
    }
}

impl std::error::Error for ConfigError {}
