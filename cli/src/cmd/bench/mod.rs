//! `tmpfsd bench [DIR...]`: temp-file workloads on a fresh private tmpfsd
//! mount, a disk temp directory and kernel tmpfs (or on the directories
//! given), interleaved in one run and repeated; medians, ratios, `--json`
//! and `--plot FILE.svg`.
//!
//! The private mount is served by this process, like `tmpfsd run`, so that
//! an interrupted run still unmounts: SIGINT, SIGTERM and SIGHUP stop the
//! running workload at its next step, and everything is cleaned up.

mod host;
mod report;
mod workloads;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use tmpfsd::core::Requests;
use tmpfsd::{sys, Fs, MountConfig};

use super::mount::{start, Running};
use crate::{logging, usage, CliError};
use report::{Measurement, Report, RequestSample};
use workloads::{Sizes, Workload, INTERRUPTED};

/// What a measured directory is, for the ratio columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    /// A tmpfsd mount.
    Tmpfsd,
    /// Kernel tmpfs or ramfs.
    Tmpfs,
    /// Another FUSE file system.
    Fuse,
    /// Anything else: a disk file system.
    Disk,
}

impl Kind {
    /// A word for the kind, for the plot's legend.
    pub(super) fn short(self) -> &'static str {
        match self {
            Kind::Tmpfsd => "tmpfsd",
            Kind::Tmpfs => "tmpfs",
            Kind::Fuse => "FUSE",
            Kind::Disk => "disk",
        }
    }

    /// What the table says a directory is.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Kind::Tmpfsd => "a tmpfsd mount",
            Kind::Tmpfs => "kernel tmpfs",
            Kind::Fuse => "another FUSE file system",
            Kind::Disk => "disk",
        }
    }
}

/// A directory under test.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Target {
    /// Column name.
    pub label: String,
    /// Where the scratch directories go.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// The `-o` options of the private mount, when any were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<String>,
    /// For a given directory on a tmpfsd mount: the mount's root, whose
    /// counters say what the kernel sent it.
    #[serde(skip)]
    pub counted_at: Option<PathBuf>,
}

impl Target {
    /// What the table and the plot say the directory is.
    pub(super) fn describe(&self) -> String {
        match &self.mount_options {
            Some(o) => format!("{}, -o {o}", self.kind.describe()),
            None => self.kind.describe().to_string(),
        }
    }
}

/// Everything `tmpfsd bench` was asked for.
#[derive(Debug)]
pub(crate) struct BenchArgs {
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) reps: u32,
    pub(crate) quick: bool,
    pub(crate) only: Vec<String>,
    pub(crate) options: Vec<String>,
    pub(crate) json: bool,
    pub(crate) plot: Option<PathBuf>,
}

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

pub(crate) fn run(args: &BenchArgs, log_level: &str) -> Result<(), CliError> {
    let workloads = select(&args.only)?;
    let config = MountConfig::from_options(&args.options).map_err(usage)?;
    if let Some(plot) = &args.plot {
        if plot.extension().and_then(|e| e.to_str()) != Some("svg") {
            return Err(usage(format!("--plot {} must name an .svg file", plot.display())));
        }
    }
    let mut targets = Vec::new();
    for dir in &args.dirs {
        targets.push(given_target(dir)?);
    }
    short_labels(&mut targets);
    logging::init(log_level, None)?;
    let sizes = if args.quick { Sizes::QUICK } else { Sizes::FULL };
    let tarball = workloads::source_tarball(sizes.tree_files).context("cannot build the source tarball")?;

    // The private mount, when no directories were given.
    let mut private = None;
    if targets.is_empty() {
        let mount = PrivateMount::start(&config)?;
        targets.push(Target {
            label: "tmpfsd".into(),
            path: mount.dir.clone(),
            kind: Kind::Tmpfsd,
            mount_options: (!args.options.is_empty()).then(|| args.options.join(",")),
            counted_at: None,
        });
        private = Some(mount);
        for (label, dir, kind) in [("disk", "/var/tmp", Kind::Disk), ("tmpfs", "/dev/shm", Kind::Tmpfs)] {
            match kind_and_root(Path::new(dir)) {
                Ok((k, _)) if k == kind => targets.push(Target {
                    label: label.into(),
                    path: dir.into(),
                    kind,
                    mount_options: None,
                    counted_at: None,
                }),
                Ok(_) => eprintln!("tmpfsd: {dir} is not a {label} directory here; left out"),
                Err(e) => eprintln!("tmpfsd: {dir} left out: {e}"),
            }
        }
    }
    let signals = super::mount::block_signals();
    std::thread::Builder::new()
        .name("tmpfsd-signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: signals is an initialised set, sig a valid out pointer.
            while unsafe { libc::sigwait(&signals, &mut sig) } != 0 {}
            INTERRUPTED.store(true, Ordering::Relaxed);
        })
        .context("cannot start the signal thread")?;

    // Requests are counted on tmpfsd mounts: the round trips behind their
    // figures. The private mount (the first target) is served here.
    let served = private.as_ref().and_then(|p| p.running.as_ref()).map(|r| &*r.fs);
    let counters: Vec<Option<Counter>> = targets
        .iter()
        .enumerate()
        .map(|(t, target)| match (t, served, &target.counted_at) {
            (0, Some(fs), _) => Some(Counter::Served(fs)),
            (_, _, Some(root)) => Some(Counter::Mounted(root)),
            _ => None,
        })
        .collect();
    let result = measure(&targets, &workloads, &sizes, &tarball, args.reps, &counters);
    drop(private.take());
    let (measurements, requests) = result?;
    let report = Report::new(targets, args.reps, measurements)
        .with_requests(requests)
        .with_host(host::Host::read());
    if let Some(plot) = &args.plot {
        std::fs::write(plot, report.svg()).with_context(|| format!("cannot write {}", plot.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.json()).context("cannot write JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    Ok(())
}

fn select(only: &[String]) -> Result<Vec<Workload>, CliError> {
    if only.is_empty() {
        return Ok(Workload::ALL.to_vec());
    }
    let mut chosen = Vec::new();
    for name in only {
        let w = Workload::from_name(name.trim()).ok_or_else(|| {
            let known: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
            usage(format!("unknown workload '{name}' (known: {})", known.join(", ")))
        })?;
        if !chosen.contains(&w) {
            chosen.push(w);
        }
    }
    Ok(chosen)
}

fn given_target(dir: &Path) -> Result<Target, CliError> {
    let meta = std::fs::metadata(dir).map_err(|e| anyhow!("cannot measure {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(anyhow!("cannot measure {}: not a directory", dir.display()).into());
    }
    let (kind, root) = kind_and_root(dir).map_err(|e| anyhow!("cannot measure {}: {e}", dir.display()))?;
    let path = super::absolute(dir);
    Ok(Target {
        label: path.display().to_string(),
        path,
        kind,
        mount_options: None,
        counted_at: root,
    })
}

/// Labels given directories by their last component, so that the table's
/// columns and the plot's legend stay narrow (the full paths are listed
/// above the table); a path whose last component another target shares,
/// or that has none, keeps its full path.
fn short_labels(targets: &mut [Target]) {
    let names: Vec<Option<String>> = targets
        .iter()
        .map(|t| t.path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for (i, t) in targets.iter_mut().enumerate() {
        if let Some(name) = &names[i] {
            if names.iter().filter(|n| n.as_ref() == Some(name)).count() == 1 {
                t.label.clone_from(name);
            }
        }
    }
}

/// What `dir` is, and for a tmpfsd mount the mount's root.
fn kind_and_root(dir: &Path) -> anyhow::Result<(Kind, Option<PathBuf>)> {
    let magic = sys::fs_type_magic(dir)?;
    Ok(match magic {
        TMPFS_MAGIC | RAMFS_MAGIC => (Kind::Tmpfs, None),
        sys::FUSE_SUPER_MAGIC => {
            let path = super::absolute(dir);
            let holder = sys::mounts()?
                .into_iter()
                .filter(|m| path.starts_with(&m.mount_point))
                .max_by_key(|m| m.mount_point.as_os_str().len());
            match holder {
                Some(m) if m.is_tmpfsd() => (Kind::Tmpfsd, Some(m.mount_point)),
                _ => (Kind::Fuse, None),
            }
        }
        _ => (Kind::Disk, None),
    })
}

/// Where a target's requests are counted.
enum Counter<'a> {
    /// The private mount, served by this process.
    Served(&'a Fs),
    /// A tmpfsd mount given as a directory, by its root's counters.
    Mounted(&'a Path),
}

impl Counter<'_> {
    fn read(&self) -> Option<Requests> {
        match self {
            Counter::Served(fs) => Some(fs.requests()),
            Counter::Mounted(root) => super::status::read_counters(root).map(|s| s.requests),
        }
    }

    /// The requests between two readings, less those of the second
    /// reading itself.
    fn since(&self, before: &Requests) -> Option<Requests> {
        let mut d = self.read()?.since(before);
        if let Counter::Mounted(_) = self {
            d.getxattr = d.getxattr.saturating_sub(1);
        }
        Some(d)
    }
}

/// Runs every workload on every target, `reps` times, interleaved: each
/// workload runs on all targets before the next starts, so that a noisy
/// moment hits every column alike. On targets with a counter (one per
/// target), the requests of each run are counted too.
fn measure(
    targets: &[Target],
    workloads: &[Workload],
    sizes: &Sizes,
    tarball: &[u8],
    reps: u32,
    counters: &[Option<Counter>],
) -> anyhow::Result<(Vec<Measurement>, Vec<RequestSample>)> {
    let mut out = Vec::new();
    let mut requests = Vec::new();
    let mut failed = 0;
    let started = Instant::now();
    for rep in 1..=reps {
        for &w in workloads {
            for (t, target) in targets.iter().enumerate() {
                let scratch = match tempfile::Builder::new()
                    .prefix("tmpfsd-bench.")
                    .tempdir_in(&target.path)
                {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!(
                            "tmpfsd: {} on {} skipped: cannot make a scratch directory: {e}",
                            w.name(),
                            target.label
                        );
                        failed += 1;
                        continue;
                    }
                };
                let counter = counters.get(t).and_then(Option::as_ref);
                let before = counter.and_then(Counter::read);
                let result = w.run(scratch.path(), sizes, tarball);
                let sent = counter.zip(before).and_then(|(c, before)| c.since(&before));
                let cleaned = scratch.close();
                if INTERRUPTED.load(Ordering::Relaxed) {
                    bail!("interrupted");
                }
                // A target that cannot run a workload (a FUSE peer without
                // some operation, a full disk) leaves a gap in its column;
                // the other targets and workloads go on.
                let figures = match result {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("tmpfsd: {} on {} failed: {e:#}", w.name(), target.label);
                        failed += 1;
                        continue;
                    }
                };
                cleaned.with_context(|| format!("cannot remove the scratch directory in {}", target.path.display()))?;
                let shown: Vec<String> = figures
                    .iter()
                    .map(|f| format!("{} {} {}", f.metric, report::format_value(f.value), f.unit))
                    .collect();
                eprintln!(
                    "[{rep}/{reps} {:>4.0}s] {:<8} {:<12} {}",
                    started.elapsed().as_secs_f64(),
                    w.name(),
                    target.label,
                    shown.join(", ")
                );
                for f in figures {
                    out.push(Measurement { target: t, figure: f });
                }
                if let Some(sent) = sent {
                    requests.push(RequestSample {
                        target: t,
                        workload: w.name(),
                        units: w.units(sizes),
                        requests: sent,
                    });
                }
            }
        }
    }
    if out.is_empty() && failed > 0 {
        bail!("every workload failed");
    }
    Ok((out, requests))
}

/// A private tmpfsd mount served by this process; dropping it unmounts,
/// frees everything and removes the mount point and the spill directory.
struct PrivateMount {
    dir: PathBuf,
    running: Option<Running>,
}

impl PrivateMount {
    fn start(config: &MountConfig) -> Result<Self, CliError> {
        let dir = super::private_mount_point("tmpfsd-bench.")?;
        match start(&dir, config) {
            Ok(running) => Ok(Self {
                dir,
                running: Some(running),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        let Some(Running {
            fs,
            background,
            session,
            spill_dir,
            ..
        }) = self.running.take()
        else {
            return;
        };
        background.stop();
        if sys::unmount(&self.dir, false).is_err() {
            let _ = sys::unmount(&self.dir, true);
        }
        let _ = session.join();
        drop(fs);
        if let Some(p) = spill_dir {
            let _ = std::fs::remove_dir(p);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        Target {
            label: path.into(),
            path: path.into(),
            kind: Kind::Disk,
            mount_options: None,
            counted_at: None,
        }
    }

    #[test]
    fn given_directories_are_labelled_by_their_last_component_unless_shared() {
        let mut targets = vec![target("/tmp/m-memfs"), target("/a/x"), target("/b/x"), target("/")];
        short_labels(&mut targets);
        let labels: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["m-memfs", "/a/x", "/b/x", "/"]);
    }
}
