//! `install()` in a process of its own: it changes the environment, which
//! no other test in this process can be reading at the same time.

use std::io::{Seek, Write};
use std::path::Path;

/// Where an open descriptor's file is (or was, before unlinking).
#[cfg(target_os = "linux")]
fn fd_dir(fd: &impl std::os::fd::AsRawFd) -> std::path::PathBuf {
    use std::path::PathBuf;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let s = link.to_string_lossy();
    PathBuf::from(s.trim_end_matches(" (deleted)"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn install_points_tempfile_and_children_at_tmpfsd_dir() {
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().canonicalize().unwrap();
    std::env::set_var(tmpfsd_api::TMPFSD_DIR, &dir);
    let loc = tmpfsd_api::install();
    assert_eq!(loc.path, dir);
    assert_eq!(loc.source, tmpfsd_api::Source::Env);
    assert!(loc.is_tmpfsd());
    for var in tmpfsd_api::TEMP_VARS {
        assert_eq!(std::env::var_os(var).unwrap(), dir.as_os_str(), "{var}");
    }
    assert_eq!(tempfile::env::temp_dir(), dir);
    assert_eq!(tmpfsd_api::dir(), dir);

    let named = tmpfsd_api::named_tempfile().unwrap();
    assert_eq!(named.path().parent().unwrap(), dir);
    let plain = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(plain.path().parent().unwrap(), dir, "the tempfile crate's own default");
    let d = tmpfsd_api::tempdir().unwrap();
    assert_eq!(d.path().parent().unwrap(), dir);
    let mut spooled = tmpfsd_api::spooled_tempfile(8);
    spooled.write_all(&[1u8; 100]).unwrap();
    spooled.rewind().unwrap();
    assert!(spooled.is_rolled());
    #[cfg(target_os = "linux")]
    {
        let unnamed = tmpfsd_api::tempfile().unwrap();
        assert_eq!(fd_dir(&unnamed), dir);
    }
    // A child process sees it too.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo $TMPDIR $TMP $TEMP")
        .output()
        .unwrap();
    let d = dir.display();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{d} {d} {d}"));
    let _ = Path::new("");
}
