//! Creates each kind of temporary file where tmpfsd_api puts them, and
//! prints where each one lives: run it with TMPFSD_DIR set, or with a
//! tmpfsd mount of yours running.

use std::io::{Seek, Write};

fn main() -> std::io::Result<()> {
    let loc = tmpfsd_api::install();
    for (path, why) in &loc.skipped {
        eprintln!("skipped {}: {why}", path.display());
    }
    println!("dir {} {:?}", loc.path.display(), loc.source);

    let mut unnamed = tmpfsd_api::tempfile()?;
    unnamed.write_all(b"unnamed")?;
    // An unnamed file has no path; its directory is the one installed.
    println!("tempfile {}", loc.path.display());

    let named = tmpfsd_api::named_tempfile()?;
    println!("named {}", named.path().display());

    let mut spooled = tmpfsd_api::spooled_tempfile(1024);
    spooled.write_all(&[7u8; 4096])?;
    spooled.rewind()?;
    assert!(spooled.is_rolled());
    println!("spooled {}", loc.path.display());

    let dir = tmpfsd_api::tempdir()?;
    std::fs::write(dir.path().join("inside"), b"x")?;
    println!("tempdir {}", dir.path().display());

    // The tempfile crate itself now creates in the same place.
    let plain = tempfile::NamedTempFile::new()?;
    println!("tempfile-crate {}", plain.path().display());
    Ok(())
}
