//! Put an application's temporary files on a tmpfsd mount.
//!
//! tmpfsd mounts a temporary file system that lives in RAM and spills to
//! disk. This crate finds such a mount and points the process at it, so that
//! temporary files get RAM speed without code changes beyond one call at
//! start-up. It has no FUSE dependency and builds on Linux, macOS and
//! Windows; where no mount is found it falls back to the platform's
//! temporary directory, so a program using it works everywhere.
//!
//! # Where temporary files go
//! [`locate`] tries, in order, and takes the first directory that exists,
//! is writable and answers (a FUSE mount whose daemon died answers
//! ENOTCONN and is skipped):
//! 1. an explicit path ([`locate_in`]);
//! 2. the `TMPFSD_DIR` environment variable;
//! 3. a live tmpfsd mount owned by the current user, from the mount table
//!    (`/proc/self/mountinfo` on Linux, `getmntinfo` on macOS);
//! 4. the platform temporary directory ([`std::env::temp_dir`]).
//!
//! # Example
//! ```
//! // At the start of main, before other threads start:
//! let location = tmpfsd_api::install();
//! println!("temporary files go to {} ({:?})", location.path.display(), location.source);
//!
//! // From now on the tempfile crate, and child processes through TMPDIR,
//! // TMP and TEMP, use that directory.
//! let mut f = tempfile::tempfile()?;
//! std::io::Write::write_all(&mut f, b"scratch")?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod files;
mod mounts;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use files::{named_tempfile, spooled_tempfile, tempdir, tempfile};

/// The environment variable that names a tmpfsd mount explicitly.
pub const TMPFSD_DIR: &str = "TMPFSD_DIR";

/// The variables that runtimes read for their temporary directory. Each
/// reads them in its own order (Python: TMPDIR, TEMP, TMP; the JVM and Go:
/// TMPDIR; Windows: TMP, TEMP), so all three are set.
pub const TEMP_VARS: [&str; 3] = ["TMPDIR", "TMP", "TEMP"];

/// How a temporary directory was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The path given to [`locate_in`].
    Explicit,
    /// The `TMPFSD_DIR` environment variable.
    Env,
    /// A tmpfsd mount of the current user, from the mount table.
    MountTable,
    /// No usable tmpfsd mount: the platform temporary directory.
    Fallback,
}

/// Where temporary files go, how that was decided, and which candidates
/// were passed over and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The directory.
    pub path: PathBuf,
    /// How it was found.
    pub source: Source,
    /// Candidates that were skipped, each with a one-line reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Location {
    /// Whether the directory is a tmpfsd mount (not the fallback).
    #[must_use]
    pub fn is_tmpfsd(&self) -> bool {
        self.source != Source::Fallback
    }
}

/// Finds where temporary files should go; see the crate documentation for
/// the order. Never fails: the last resort is the platform temp directory.
///
/// ```
/// let loc = tmpfsd_api::locate();
/// assert!(loc.path.is_dir());
/// ```
#[must_use]
pub fn locate() -> Location {
    locate_in(None)
}

/// [`locate`], trying `explicit` first.
///
/// ```
/// let here = std::env::temp_dir();
/// let loc = tmpfsd_api::locate_in(Some(&here));
/// assert_eq!(loc.path, here);
/// assert_eq!(loc.source, tmpfsd_api::Source::Explicit);
/// ```
#[must_use]
pub fn locate_in(explicit: Option<&Path>) -> Location {
    let env = std::env::var_os(TMPFSD_DIR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    locate_with(explicit, env, mounts::own_tmpfsd_mounts)
}

/// The lookup itself, given the candidates (the mount table is read only
/// when the earlier candidates fail).
fn locate_with(explicit: Option<&Path>, env: Option<PathBuf>, mounts: impl FnOnce() -> Vec<PathBuf>) -> Location {
    let mut skipped = Vec::new();
    let mut consider = |path: PathBuf, source: Source| match usable(&path) {
        Ok(()) => Some((path, source)),
        Err(why) => {
            skipped.push((path, why));
            None
        }
    };
    let found = explicit
        .and_then(|p| consider(p.to_path_buf(), Source::Explicit))
        .or_else(|| env.and_then(|p| consider(p, Source::Env)))
        .or_else(|| mounts().into_iter().find_map(|p| consider(p, Source::MountTable)));
    let (path, source) = found.unwrap_or_else(|| (std::env::temp_dir(), Source::Fallback));
    Location { path, source, skipped }
}

/// Checks that `dir` is a writable directory that answers.
fn usable(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err("not a directory".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("does not exist".into()),
        Err(e) if mounts::is_dead_mount(&e) => return Err("a dead mount (its daemon is gone)".into()),
        Err(e) => return Err(format!("cannot be used: {e}")),
    }
    if !mounts::writable(dir) {
        return Err("not writable".into());
    }
    Ok(())
}

static INSTALLED: OnceLock<Location> = OnceLock::new();

/// Locates the directory and points the process at it: the `tempfile`
/// crate's default directory (which can be set once per process) and
/// `TMPDIR`, `TMP` and `TEMP` for child processes. Later calls return the
/// first result.
///
/// Call it at the start of `main`, before other threads run: changing the
/// environment is not thread-safe on every platform.
///
/// # Resource Leaking
/// Nothing is created; only the process's settings change.
///
/// ```
/// let a = tmpfsd_api::install();
/// let b = tmpfsd_api::install();
/// assert_eq!(a, b);
/// assert_eq!(tempfile::env::temp_dir(), a.path);
/// assert_eq!(std::env::var_os("TMPDIR").unwrap(), a.path.as_os_str());
/// ```
pub fn install() -> Location {
    INSTALLED
        .get_or_init(|| {
            let loc = locate();
            // Fails only if something set it before; then that stays.
            let _ = tempfile::env::override_temp_dir(&loc.path);
            for var in TEMP_VARS {
                std::env::set_var(var, &loc.path);
            }
            loc
        })
        .clone()
}

/// The directory temporary files go to: the installed one, or else the
/// one [`locate`] finds (looked up once).
#[must_use]
pub fn dir() -> PathBuf {
    static LOCATED: OnceLock<PathBuf> = OnceLock::new();
    match INSTALLED.get() {
        Some(loc) => loc.path.clone(),
        None => LOCATED.get_or_init(|| locate().path).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_and_fallbacks() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        let (pa, pb, pc) = (a.path().to_path_buf(), b.path().to_path_buf(), c.path().to_path_buf());
        let mounts = || vec![pc.clone()];
        let l = locate_with(Some(&pa), Some(pb.clone()), mounts);
        assert_eq!((l.path.clone(), l.source), (pa.clone(), Source::Explicit));
        let l = locate_with(None, Some(pb.clone()), mounts);
        assert_eq!((l.path, l.source), (pb.clone(), Source::Env));
        let l = locate_with(None, None, mounts);
        assert_eq!((l.path, l.source), (pc.clone(), Source::MountTable));
        let l = locate_with(None, None, Vec::new);
        assert_eq!((l.path, l.source), (std::env::temp_dir(), Source::Fallback));
        // A TMPFSD_DIR that does not exist falls through, with its reason.
        let missing = pa.join("missing");
        let l = locate_with(None, Some(missing.clone()), mounts);
        assert_eq!(l.source, Source::MountTable);
        assert_eq!(l.skipped, vec![(missing.clone(), "does not exist".to_string())]);
        let l = locate_with(Some(&missing), Some(missing.clone()), Vec::new);
        assert_eq!(l.source, Source::Fallback);
        assert_eq!(l.skipped.len(), 2);
        // A file is not a directory.
        let file = pa.join("file");
        std::fs::write(&file, b"").unwrap();
        let l = locate_with(Some(&file), None, Vec::new);
        assert_eq!(l.skipped[0].1, "not a directory");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unwritable_directory_is_skipped() {
        // Nobody, root included, can create files in /proc.
        let l = locate_with(Some(Path::new("/proc")), None, Vec::new);
        assert_eq!(l.source, Source::Fallback);
        assert_eq!(l.skipped, vec![(PathBuf::from("/proc"), "not writable".to_string())]);
    }
}
