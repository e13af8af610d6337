//! Command-line arguments (clap derive; doc comments are the help text).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The help line of `mount -o`: every option the parser takes.
fn mount_options_help() -> String {
    format!(
        "Comma-separated options: {} (see the README's \"Options\")",
        tmpfsd::config::OPTIONS
    )
}

/// A temporary file system that lives in RAM and spills to disk.
#[derive(Debug, Parser)]
#[command(name = "tmpfsd", version, about, propagate_version = true)]
pub(crate) struct Args {
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub(crate) log_level: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Mount a tmpfsd file system at DIR; returns once it answers.
    Mount {
        /// The (empty) directory to mount on.
        dir: PathBuf,
        #[arg(short = 'o', value_name = "OPTS", help = mount_options_help())]
        options: Vec<String>,
        /// Stay in the foreground instead of detaching.
        #[arg(short, long)]
        foreground: bool,
        /// With --foreground or as a daemon: append logs to this file.
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
    },
    /// Unmount the tmpfsd file system at DIR; all its data is freed.
    #[command(alias = "umount")]
    Unmount {
        /// The mount point.
        dir: PathBuf,
        /// Detach now even if files are open; it goes away when they close.
        #[arg(short = 'z', long)]
        lazy: bool,
    },
    /// Run one command with a private tmpfsd mount as its TMPDIR, TMP and
    /// TEMP; the mount and every byte in it are gone when it ends.
    Run {
        /// Mount options, as for `mount`.
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Print shell lines that point TMPDIR, TMP and TEMP at DIR, for
    /// `eval "$(tmpfsd env DIR)"`.
    Env {
        /// The directory (normally a tmpfsd mount).
        dir: PathBuf,
        /// The shell to write for.
        #[arg(long, value_enum, default_value_t = Shell::Sh)]
        shell: Shell,
    },
    /// Measure temp-file workloads on a fresh private tmpfsd mount, a disk
    /// temp directory (/var/tmp) and kernel tmpfs (/dev/shm), side by side,
    /// or on the directories given; on tmpfsd mounts, also count the
    /// requests the kernel sent for each workload.
    Bench {
        /// Directories to measure instead of the three defaults (each gets a
        /// scratch directory that is removed afterwards).
        dirs: Vec<PathBuf>,
        /// Repetitions of the whole set; medians are reported.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
        reps: u32,
        /// Smaller files and counts, for a first look in about a minute.
        #[arg(long)]
        quick: bool,
        /// Only these workloads: seq, rand, small, dir, meta, probe, named, spooled, tree.
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        only: Vec<String>,
        /// Mount options for the private tmpfsd mount, as for `mount`.
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        /// Print JSON (host, samples, medians, ratios, requests) instead of a table.
        #[arg(long)]
        json: bool,
        /// Also draw the ratios as a bar chart into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Show the current user's tmpfsd mounts: size, used, free, files.
    Status {
        /// Only this mount.
        dir: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Shells `tmpfsd env` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// POSIX sh, bash, zsh.
    Sh,
    /// fish.
    Fish,
    /// PowerShell.
    Powershell,
}
