//! Mounting as an ordinary user through fusermount3.

use std::fs;
use std::process::Command;

use crate::common::{bin, bin_for_anyone, MountGuard};

const TEST_USER: &str = "tmpfsd-test";

/// An ordinary user: the current one when not root, otherwise one created
/// for the test.
pub(crate) fn ordinary_user() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(TEST_USER).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])
            .status()
            .expect("useradd");
        assert!(st.success(), "cannot create the test user");
    }
    Some((id("-u").unwrap(), id("-g").unwrap()))
}

/// Runs `script` with `sh -c` in `dir` as `user` (or as the current
/// user); asserts that it succeeds and returns what it printed.
pub(crate) fn sh_as(user: Option<(u32, u32)>, dir: &std::path::Path, script: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(dir);
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_ordinary_user_can_mount_use_and_unmount() {
    let user = ordinary_user();
    let m = MountGuard::with("", &[], user);
    let entry = tmpfsd::sys::mount_at(m.path()).unwrap().unwrap();
    // SAFETY: getuid has no preconditions.
    let expected_uid = user.map_or_else(|| unsafe { libc::getuid() }, |(u, _)| u);
    assert_eq!(entry.fuse_owner(), Some(expected_uid), "{entry:?}");
    assert_eq!(
        entry.fs_type, "fuse.tmpfsd",
        "unprivileged mounts go through fusermount3"
    );
    // Use it as that user: the root is theirs and private; a shell writes,
    // lists and reads back.
    let script = "stat -c '%u %a' . && echo hello > f && mkdir d && mv f d/g && cat d/g && ls d";
    assert_eq!(sh_as(user, m.path(), script), format!("{expected_uid} 700\nhello\ng\n"));
    // Without allow_other, nobody else gets in, root included.
    if user.is_some() {
        let err = fs::read_dir(m.path()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    }
    // A busy mount (the shell works in it) is refused with the reason,
    // and stays mounted.
    let tmpfsd = if user.is_some() { bin_for_anyone() } else { bin().into() };
    let busy = format!(
        "cd {} && {} unmount {} 2>&1; echo \"exit $?\"",
        m.path().display(),
        tmpfsd.display(),
        m.path().display()
    );
    let said = sh_as(user, std::path::Path::new("/"), &busy);
    assert!(said.contains("is busy") && said.ends_with("exit 1\n"), "{said:?}");
    assert!(tmpfsd::sys::mount_at(m.path()).unwrap().is_some(), "still mounted");
    // The user unmounts with the command, through fusermount3.
    let mut cmd = Command::new(tmpfsd);
    cmd.arg("unmount").arg(m.path());
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = m
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("daemon did not exit");
    assert!(status.success());
}
