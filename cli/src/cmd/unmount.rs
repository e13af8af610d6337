//! `tmpfsd unmount DIR [--lazy]`.

use std::path::Path;

use anyhow::{anyhow, Context};
use tmpfsd::sys;

use crate::CliError;

pub(crate) fn run(dir: &Path, lazy: bool) -> Result<(), CliError> {
    let abs = super::absolute(dir);
    let shown = abs.display();
    match sys::mount_at(&abs).context("cannot read the mount table")? {
        Some(m) if m.is_tmpfsd() => {}
        Some(m) => return Err(anyhow!("{shown} is a {} mount, not a tmpfsd mount", m.fs_type).into()),
        None => return Err(anyhow!("{shown} is not a tmpfsd mount").into()),
    }
    sys::unmount(&abs, lazy).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => {
            anyhow!("{shown} is busy: files are open or a process works in it (close them, or use --lazy)")
        }
        _ => anyhow!("cannot unmount {shown}: {e}"),
    })?;
    Ok(())
}
