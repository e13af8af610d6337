//! Programs using the mount without code changes: the Python module, the
//! Rust crate's lookup against real (and dead) mounts, `run` and `env`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{bin, MountGuard};

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/python")
}

/// Runs a Python snippet with the module importable, `tmpfsd.install()`
/// already called; extra environment in `env`.
fn python(code: &str, env: &[(&str, &Path)]) -> Output {
    let script = format!("import tmpfsd, tempfile, os, sys\nwhere = tmpfsd.install()\n{code}");
    let mut cmd = Command::new("python3");
    cmd.arg("-W")
        .arg("always")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", python_dir());
    cmd.env_remove("TMPFSD_DIR").env_remove("TMPDIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("python3")
}

const EVERY_KIND: &str = r#"
def dir_of_fd(fd):
    return os.path.dirname(os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)"))
found = {"gettempdir": tempfile.gettempdir()}
with tempfile.TemporaryFile() as f:
    found["TemporaryFile"] = dir_of_fd(f.fileno())
with tempfile.NamedTemporaryFile() as f:
    found["NamedTemporaryFile"] = os.path.dirname(f.name)
with tempfile.SpooledTemporaryFile(max_size=10) as f:
    f.write(b"x" * 100)
    found["SpooledTemporaryFile"] = dir_of_fd(f.fileno())
with tempfile.TemporaryDirectory() as d:
    found["TemporaryDirectory"] = os.path.dirname(d)
fd, p = tempfile.mkstemp(); os.close(fd); os.unlink(p)
found["mkstemp"] = os.path.dirname(p)
d = tempfile.mkdtemp(); os.rmdir(d)
found["mkdtemp"] = os.path.dirname(d)
found["TMPDIR"] = os.environ["TMPDIR"]
for k, v in found.items():
    print(k, v)
"#;

fn assert_all_in(out: &Output, dir: &Path) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 8, "{text}");
    for line in text.lines() {
        let (kind, path) = line.split_once(' ').unwrap();
        assert_eq!(Path::new(path), dir, "{kind} went to {path}");
    }
}

#[test]
fn python_puts_every_kind_of_temp_file_on_the_mount_named_by_tmpfsd_dir() {
    let m = MountGuard::new("");
    let out = python(EVERY_KIND, &[("TMPFSD_DIR", m.path())]);
    assert_all_in(&out, m.path());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn python_finds_the_users_own_mount_in_the_mount_table() {
    let user = crate::unprivileged::ordinary_user();
    let m = MountGuard::with("", &[], user);
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(format!("import tmpfsd, tempfile, os\ntmpfsd.install()\n{EVERY_KIND}"))
        .env("PYTHONPATH", python_dir())
        .env_remove("TMPFSD_DIR")
        .env_remove("TMPDIR");
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid).current_dir("/");
    }
    assert_all_in(&cmd.output().unwrap(), m.path());
}

#[test]
fn a_dead_mount_or_a_missing_tmpfsd_dir_falls_back_with_one_warning() {
    let mut m = MountGuard::new("");
    let dead = m.path().to_path_buf();
    m.kill9();
    let err = std::fs::metadata(&dead).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN));
    // The Rust crate skips it and says why.
    let loc = tmpfsd_api::locate_in(Some(&dead));
    assert_ne!(loc.path, dead);
    assert!(
        loc.skipped
            .contains(&(dead.clone(), "a dead mount (its daemon is gone)".into())),
        "{loc:?}"
    );
    // So does the Python module, with one warning line.
    let out = python("print(where)", &[("TMPFSD_DIR", &dead)]);
    assert!(out.status.success());
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), dead.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dead mount"), "{err}");
    let missing = PathBuf::from("/nonexistent/tmpfsd-dir");
    let out = python("print(where)", &[("TMPFSD_DIR", &missing)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    drop(m);
}

#[test]
fn run_gives_the_command_a_private_mount_and_removes_it() {
    let out = Command::new(bin())
        .args([
            "run",
            "--",
            "python3",
            "-c",
            "import tempfile, os; print(tempfile.gettempdir()); print(os.environ['TMP'], os.environ['TEMP'])",
        ])
        .env_remove("TMPDIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let dir = lines.next().unwrap();
    assert!(dir.contains("tmpfsd-run."), "{text}");
    assert_eq!(lines.next().unwrap(), format!("{dir} {dir}"));
    assert!(!Path::new(dir).exists(), "the mount point must be gone");
    assert!(tmpfsd::sys::mount_at(Path::new(dir)).unwrap().is_none());
    // The command's own view: it was a tmpfsd mount.
    let out = Command::new(bin())
        .args(["run", "--", "sh", "-c", "stat -f -c %t \"$TMPDIR\""])
        .output()
        .unwrap();
    // FUSE's super-block magic.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "65735546");
}

#[test]
fn run_passes_the_exit_status_through() {
    let code = |args: &[&str]| Command::new(bin()).args(args).status().unwrap().code();
    assert_eq!(code(&["run", "--", "sh", "-c", "exit 7"]), Some(7));
    assert_eq!(code(&["run", "--", "true"]), Some(0));
    assert_eq!(code(&["run", "--", "sh", "-c", "kill -KILL $$; true"]), Some(128 + 9));
    assert_eq!(code(&["run", "--", "/nonexistent/command"]), Some(127));
    let out = Command::new(bin()).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn run_cleans_up_after_processes_left_holding_files_open() {
    // The command starts a process that keeps a file on the mount open and
    // outlives it.
    let script = "echo $TMPDIR; dd if=/dev/zero of=$TMPDIR/big bs=1M count=64 2>/dev/null; \
                  (exec 3<$TMPDIR/big; sleep 60) >/dev/null 2>&1 & echo $!";
    let out = Command::new(bin())
        .args(["run", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let dir = PathBuf::from(lines.next().unwrap());
    let leftover: i32 = lines.next().unwrap().parse().unwrap();
    // tmpfsd has exited: its mount and mount point are gone while the
    // leftover process still holds the file open.
    assert!(process_alive(leftover), "the leftover process should still run");
    assert!(
        tmpfsd::sys::mount_at(&dir).unwrap().is_none(),
        "the mount outlived tmpfsd run"
    );
    assert!(!dir.exists());
    // SAFETY: the leftover process is ours (started by our command).
    unsafe { libc::kill(leftover, libc::SIGKILL) };
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn run_passes_sigterm_on_and_still_cleans_up() {
    let mut child = Command::new(bin())
        .args(["run", "--", "sh", "-c", "echo $TMPDIR; exec sleep 60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let dir = PathBuf::from(line.trim());
    assert!(tmpfsd::sys::mount_at(&dir).unwrap().is_some());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert!(tmpfsd::sys::mount_at(&dir).unwrap().is_none());
    assert!(!dir.exists());
}

#[test]
fn env_prints_lines_for_each_shell_and_warns_about_non_mounts() {
    let m = MountGuard::new("");
    let d = m.path().to_str().unwrap();
    let out = Command::new(bin()).args(["env", d]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        format!("export TMPDIR='{d}'\nexport TMP='{d}'\nexport TEMP='{d}'\n")
    );
    // eval'd by a shell, the variables point at the mount.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("eval \"$({} env {d})\"; echo $TMPDIR:$TMP:$TEMP", bin()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{d}:{d}:{d}"));
    let out = Command::new(bin())
        .args(["env", d, "--shell", "fish"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("set -gx TMPDIR '{d}'")));
    let out = Command::new(bin())
        .args(["env", d, "--shell", "powershell"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("$env:TMPDIR = '{d}'")));
    let out = Command::new(bin()).args(["env", "/tmp"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "tmpfsd: warning: /tmp is not a tmpfsd mount"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("export TMPDIR='/tmp'"));
    let out = Command::new(bin())
        .args(["env", d, "--shell", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
