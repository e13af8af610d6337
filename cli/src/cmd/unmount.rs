//! `tmpfsd unmount DIR [--lazy]`.

use std::path::Path;

use anyhow::{anyhow, Context};
use tmpfsd::sys;

use crate::CliError;

/// How long `unmount` waits for the daemon to free everything and exit.
const UNMOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a busy mount gets to become idle before `unmount` gives up:
/// long enough for descriptors that forked children hold until they exec,
/// short enough that real open files are reported at once.
const BUSY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn run(dir: &Path, lazy: bool) -> Result<(), CliError> {
    let abs = super::absolute(dir);
    let shown = abs.display();
    match sys::mount_at(&abs).context("cannot read the mount table")? {
        Some(m) if m.is_tmpfsd() => {}
        Some(m) => return Err(anyhow!("{shown} is a {} mount, not a tmpfsd mount", m.fs_type).into()),
        None => return Err(anyhow!("{shown} is not a tmpfsd mount").into()),
    }
    let daemon = sys::daemon_of(&abs);
    let done = if lazy {
        sys::unmount(&abs, true)
    } else {
        sys::unmount_with_grace(&abs, BUSY_GRACE)
    };
    done.map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => {
            anyhow!("{shown} is busy: files are open or a process works in it (close them, or use --lazy)")
        }
        _ => anyhow!("cannot unmount {shown}: {e}"),
    })?;
    // The kernel is done; the daemon still frees its memory and spill
    // files. Return once it has, so that `df` right after tells the truth
    // (a lazy unmount may leave files open: the daemon then outlives it).
    if let (false, Some(d)) = (lazy, daemon) {
        if !sys::wait_for_exit(d, UNMOUNT_WAIT) {
            eprintln!(
                "tmpfsd: warning: the daemon of {shown} (pid {}) is still freeing its files",
                d.0
            );
        }
    }
    Ok(())
}
