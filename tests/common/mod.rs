//! Shared test helpers: the mount guard and small libc wrappers.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tmpfsd::sys;

/// The `tmpfsd` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tmpfsd")
}

/// A copy of the binary that any user can run, whatever the permissions
/// of the directories above the build tree (a checkout under /root, say).
/// It is removed when the test process exits; copies left by test
/// processes that were killed are removed by the next one.
pub fn bin_for_anyone() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        remove_stale_binary_copies();
        let dir = binary_copy_dir(std::process::id());
        std::fs::create_dir_all(&dir).unwrap();
        extern "C" fn remove_copy() {
            let _ = std::fs::remove_dir_all(binary_copy_dir(std::process::id()));
        }
        // SAFETY: atexit with a function that only removes a directory.
        unsafe { libc::atexit(remove_copy) };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("tmpfsd");
        std::fs::copy(bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
    .clone()
}

fn binary_copy_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("tmpfsd-test-bin.{pid}"))
}

/// Removes the binary copies of test processes that no longer run.
fn remove_stale_binary_copies() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("tmpfsd-test-bin.")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        // SAFETY: signal 0 only checks whether the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A tmpfsd mount in a fresh temporary directory, served by a foreground
/// `tmpfsd` child. Dropping it unmounts (lazily, so that a failed test's
/// open files cannot keep it), waits for the daemon, and removes the
/// directory: no mount outlives a test.
pub struct MountGuard {
    path: PathBuf,
    child: Option<Child>,
    /// Whether dropping unmounts whatever tmpfsd mount is at `path`.
    owns_mount: bool,
    _dir: Option<tempfile::TempDir>,
}

impl MountGuard {
    /// Mounts with `-o opts`.
    pub fn new(opts: &str) -> Self {
        Self::with(opts, &[], None)
    }

    /// Mounts with `-o opts`, extra environment for the daemon, and
    /// optionally running it as another user (`uid`, `gid`).
    pub fn with(opts: &str, env: &[(&str, &str)], user: Option<(u32, u32)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tmpfsd-test.")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().canonicalize().unwrap();
        Self::spawn(path, Some(dir), opts, env, user)
    }

    /// Mounts with `-o opts` and extra environment for the daemon at
    /// `path`, a directory the caller keeps.
    pub fn at(path: &Path, opts: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(path.to_path_buf(), None, opts, env, None)
    }

    fn spawn(
        path: PathBuf,
        dir: Option<tempfile::TempDir>,
        opts: &str,
        env: &[(&str, &str)],
        user: Option<(u32, u32)>,
    ) -> Self {
        let mut cmd = Command::new(user.map_or_else(|| PathBuf::from(bin()), |_| bin_for_anyone()));
        cmd.arg("mount").arg(&path).arg("--foreground");
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        cmd.envs(env.iter().copied()).stdin(Stdio::null());
        if let Some((uid, gid)) = user {
            use std::os::unix::fs::chown;
            use std::os::unix::process::CommandExt;
            chown(&path, Some(uid), Some(gid)).unwrap();
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("spawn tmpfsd");
        let mut guard = Self {
            path,
            child: Some(child),
            owns_mount: true,
            _dir: dir,
        };
        guard.wait_ready();
        guard
    }

    /// Polls until the mount answers (the mount table lists it and statfs
    /// reaches the FUSE server), failing early if the daemon exits.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tmpfsd exited before the mount was ready: {status} (its error is above; \
                     on a fresh machine run tests/scripts/install-tools.sh, as scripts/test.sh does)"
                );
            }
            let listed = sys::mount_at(&self.path).unwrap().is_some_and(|m| m.is_tmpfsd());
            if listed && sys::fs_type_magic(&self.path).ok() == Some(sys::FUSE_SUPER_MAGIC) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mount at {} not ready in 30 s",
                self.path.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the mount.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kills the daemon with SIGKILL and reaps it; the guard still unmounts
    /// the dead mount and removes the directory when dropped.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// The daemon's counters, from `tmpfsd status --json`.
    pub fn counters(&self) -> serde_json::Value {
        let out = Command::new(bin())
            .args(["status", "--json"])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["counters"].clone()
    }

    /// A line of the daemon's /proc status, in kB (VmRSS, VmHWM).
    pub fn proc_kb(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    }

    /// The daemon's pid (0 once it has been reaped).
    pub fn daemon_pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Whether the daemon is still running.
    pub fn daemon_alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Unmounts (not lazily) and returns the daemon's exit status.
    pub fn unmount(mut self) -> ExitStatus {
        // Parallel tests fork children that briefly hold copies of this
        // test's descriptors: a moment of EBUSY is not this mount's doing.
        sys::unmount_with_grace(&self.path, Duration::from_secs(10)).expect("unmount");
        self.wait_child(Duration::from_secs(30))
            .expect("daemon did not exit after unmount")
    }

    /// Waits for the daemon to exit on its own (after a signal, say).
    pub fn wait_exit(mut self, timeout: Duration) -> Option<ExitStatus> {
        self.wait_child(timeout)
    }

    /// Waits for the daemon to exit after its mount was unmounted by
    /// someone else; whatever is mounted at the path now is left alone.
    pub fn wait_exit_unmounted_elsewhere(mut self, timeout: Duration) -> Option<ExitStatus> {
        self.owns_mount = false;
        self.wait_child(timeout)
    }

    fn wait_child(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.owns_mount && sys::mount_at(&self.path).ok().flatten().is_some_and(|m| m.is_tmpfsd()) {
            let _ = sys::unmount(&self.path, true);
        }
        if self.wait_child(Duration::from_secs(30)).is_none() {
            if let Some(mut child) = self.child.take() {
                eprintln!(
                    "tmpfsd at {} did not exit within 30 s of unmount: killing it",
                    self.path.display()
                );
                // Our own child, by its pid: never by name.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `path` as a C string.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Bytes in use on the file system at `path`, as `df` computes them.
pub fn used_bytes(path: &Path) -> u64 {
    // SAFETY: zeroed is a valid statvfs; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cpath(path).as_ptr(), &mut st) }, 0, "statvfs");
    (st.f_blocks - st.f_bfree) * st.f_frsize
}

/// Turns a libc return value into an io::Result.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The errno of an io::Error.
pub fn errno_of<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.expect_err("expected an error").raw_os_error().expect("an OS error")
}

/// A named test scenario that runs in its own directory.
pub type Scenario = (&'static str, fn(&Path));

/// Runs `f` on each named scenario, collecting failures so that one broken
/// scenario does not hide the others, then fails listing all of them.
pub fn run_scenarios(label: &str, dir: &Path, scenarios: &[Scenario]) {
    let mut failed = Vec::new();
    for (name, f) in scenarios {
        let sub = dir.join(name);
        std::fs::create_dir(&sub).unwrap();
        if std::panic::catch_unwind(|| f(&sub)).is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "[{label}] failed scenarios: {failed:?}");
}

/// A small ext4 file system on a loop device, made for a test and
/// unmounted when dropped. Its image is unlinked as soon as it is mounted,
/// so that not even a killed test run leaves it on disk.
pub struct LoopFs {
    image: File,
    dir: tempfile::TempDir,
}

impl LoopFs {
    /// A fresh ext4 file system of `mib` MiB; its image lives on disk.
    pub fn new(mib: u64) -> Self {
        Self::made_by(mib, &["mkfs.ext4", "-q", "-F"])
    }

    /// A fresh btrfs (data and metadata mixed, so that a small one fills
    /// up like a big one) of `mib` MiB: a copy-on-write spill disk.
    pub fn btrfs(mib: u64) -> Self {
        Self::made_by(mib, &["mkfs.btrfs", "-q", "-f", "--mixed"])
    }

    fn made_by(mib: u64, mkfs: &[&str]) -> Self {
        // Removed when this function returns, by which time the loop
        // device holds the file (or the test has failed).
        let named = tempfile::Builder::new()
            .prefix("tmpfsd-test-img.")
            .tempfile_in("/var/tmp")
            .unwrap();
        let image = named.path().to_path_buf();
        named.as_file().set_len(mib << 20).unwrap();
        let st = Command::new(mkfs[0])
            .args(&mkfs[1..])
            .arg(&image)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{}: {e} (tests/scripts/install-tools.sh installs it)", mkfs[0]));
        assert!(st.success(), "{} failed", mkfs[0]);
        let dir = tempfile::Builder::new().prefix("tmpfsd-test-loop.").tempdir().unwrap();
        let st = Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "loop mount failed (needs root and loop devices)");
        Self {
            image: named.reopen().unwrap(),
            dir,
        }
    }

    /// The mounted file system.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes in use on it (statvfs).
    pub fn used(&self) -> u64 {
        used_bytes(self.path())
    }

    /// Unmounts and returns the raw image's bytes.
    pub fn unmount_and_read_image(&mut self) -> Vec<u8> {
        let st = Command::new("umount").arg(self.dir.path()).status().unwrap();
        assert!(st.success());
        let mut bytes = Vec::new();
        self.image.seek(io::SeekFrom::Start(0)).unwrap();
        self.image.read_to_end(&mut bytes).unwrap();
        bytes
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if sys::mount_at(self.dir.path()).ok().flatten().is_some() {
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// Polls `cond` until it holds or `secs` pass.
pub fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
