//! tempfile-style constructors that create in [`crate::dir`].

use std::io;

use tempfile::{NamedTempFile, SpooledTempFile, TempDir};

/// An unnamed temporary file in the tmpfsd mount, gone when closed.
///
/// # Security
/// The file has no name (`O_TMPFILE`, or unlinked right after creation),
/// so no other process can open it by path.
///
/// # Resource Leaking
/// None: the file is deleted when the handle is dropped, even if the
/// process is killed.
///
/// ```
/// use std::io::{Read, Seek, Write};
/// let mut f = tmpfsd_api::tempfile()?;
/// f.write_all(b"hello")?;
/// f.rewind()?;
/// let mut s = String::new();
/// f.read_to_string(&mut s)?;
/// assert_eq!(s, "hello");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// The file could not be created.
pub fn tempfile() -> io::Result<std::fs::File> {
    tempfile::tempfile_in(crate::dir())
}

/// A named temporary file in the tmpfsd mount, deleted when dropped.
///
/// # Security
/// Created with O_EXCL and mode 0600 under a random name; other users of a
/// shared mount cannot replace it. Its path can be passed to other programs.
///
/// # Resource Leaking
/// The file is deleted when the value is dropped. If the process is killed
/// first, it stays until the mount is unmounted (or `expire=` removes it).
///
/// ```
/// let f = tmpfsd_api::named_tempfile()?;
/// std::fs::write(f.path(), b"shared with a child process")?;
/// assert!(f.path().starts_with(tmpfsd_api::dir()));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// The file could not be created.
pub fn named_tempfile() -> io::Result<NamedTempFile> {
    NamedTempFile::new_in(crate::dir())
}

/// A spooled temporary file: in memory up to `max_size` bytes, then rolled
/// over into an unnamed file in the tmpfsd mount (which itself spills to
/// disk past its own `spool=` threshold).
///
/// # Resource Leaking
/// As [`tempfile()`]: nothing outlives the value.
///
/// ```
/// use std::io::Write;
/// let mut f = tmpfsd_api::spooled_tempfile(16);
/// f.write_all(b"small")?;
/// assert!(!f.is_rolled());
/// f.write_all(&[0u8; 64])?;
/// assert!(f.is_rolled());
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use]
pub fn spooled_tempfile(max_size: usize) -> SpooledTempFile {
    tempfile::spooled_tempfile_in(max_size, crate::dir())
}

/// A temporary directory in the tmpfsd mount, removed with its contents
/// when dropped.
///
/// # Security
/// Created with a random name and mode 0700.
///
/// # Resource Leaking
/// Removed when the value is dropped; if the process is killed first, it
/// stays until the mount is unmounted (or `expire=` removes its files).
///
/// ```
/// let d = tmpfsd_api::tempdir()?;
/// std::fs::write(d.path().join("x"), b"1")?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// The directory could not be created.
pub fn tempdir() -> io::Result<TempDir> {
    TempDir::new_in(crate::dir())
}
