//! What the machine says about itself that changes what the benchmark
//! measures, printed with the figures so that runs on different machines,
//! or on one machine tuned differently, are not compared blindly.
//!
//! Most of what FUSE costs on a small virtual machine is the round trip,
//! and most of the round trip is waking a halted virtual CPU: how long an
//! idle vCPU polls before it halts (the haltpoll cpuidle driver's
//! `guest_halt_poll_ns`) and, on kernels that have it, the fuse module's
//! `wake_here` (wake the daemon on the CPU of the process that asked)
//! each change a round trip by two to three times (README, "Host
//! tuning"). They are the host's settings, for every program, so the
//! benchmark reports them and leaves them as they are.

use std::path::Path;

/// Where a built-in or loaded fuse module shows its parameters.
const FUSE_PARAMETERS: &str = "/sys/module/fuse/parameters";
/// Where the haltpoll cpuidle governor shows its parameters.
const HALTPOLL_PARAMETERS: &str = "/sys/module/haltpoll/parameters";
/// The cpuidle driver in use.
const CPUIDLE_DRIVER: &str = "/sys/devices/system/cpu/cpuidle/current_driver";

/// The host, as far as it matters to the figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(super) struct Host {
    /// The kernel's release (`uname -r`).
    pub kernel: Option<String>,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// The fuse module's `wake_here` parameter, where the kernel has it.
    pub fuse_wake_here: Option<bool>,
    /// How long an idle virtual CPU polls before it halts, where the
    /// haltpoll cpuidle driver is in use.
    pub guest_halt_poll_ns: Option<u64>,
}

impl Host {
    /// Reads this machine.
    pub(super) fn read() -> Self {
        let haltpoll = std::fs::read_to_string(CPUIDLE_DRIVER).is_ok_and(|d| d.trim() == "haltpoll");
        Self::read_from(
            Path::new(FUSE_PARAMETERS),
            haltpoll.then_some(Path::new(HALTPOLL_PARAMETERS)),
        )
    }

    /// Reads the parameters under `fuse` and, where the haltpoll driver is
    /// in use, `haltpoll`.
    fn read_from(fuse: &Path, haltpoll: Option<&Path>) -> Self {
        Self {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            fuse_wake_here: std::fs::read_to_string(fuse.join("wake_here"))
                .ok()
                .and_then(|s| parse_bool_param(&s)),
            guest_halt_poll_ns: haltpoll
                .and_then(|p| std::fs::read_to_string(p.join("guest_halt_poll_ns")).ok())
                .and_then(|s| s.trim().parse().ok()),
        }
    }

    /// CPUs, kernel and the FUSE parameter, for the plot's subtitle.
    pub(super) fn short(&self) -> String {
        let mut s = format!("{} CPU{}", self.cpus, if self.cpus == 1 { "" } else { "s" });
        if let Some(k) = &self.kernel {
            s.push_str(&format!(", kernel {k}"));
        }
        if let Some(ns) = self.guest_halt_poll_ns {
            s.push_str(&format!(", haltpoll.guest_halt_poll_ns={ns}"));
        }
        if let Some(w) = self.fuse_wake_here {
            s.push_str(if w { ", fuse.wake_here=Y" } else { ", fuse.wake_here=N" });
        }
        s
    }

    /// One line for the table's head: [`Host::short`], and where to read
    /// what the wake-up settings do.
    pub(super) fn describe(&self) -> String {
        let tuning = self.fuse_wake_here.is_some() || self.guest_halt_poll_ns.is_some();
        let note = if tuning {
            " (FUSE round-trip cost: README, \"Host tuning\")"
        } else {
            ""
        };
        format!("host: {}{note}", self.short())
    }
}

/// A kernel boolean parameter as sysfs shows it: `Y`/`N`, or `1`/`0` for
/// those declared as integers.
fn parse_bool_param(text: &str) -> Option<bool> {
    match text.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_parameters_read_as_sysfs_writes_them() {
        assert_eq!(parse_bool_param("Y\n"), Some(true));
        assert_eq!(parse_bool_param("N\n"), Some(false));
        assert_eq!(parse_bool_param("1"), Some(true));
        assert_eq!(parse_bool_param("0\n"), Some(false));
        assert_eq!(parse_bool_param(""), None);
        assert_eq!(parse_bool_param("maybe"), None);
    }

    #[test]
    fn parameters_are_read_where_the_kernel_has_them_and_left_out_where_not() {
        let fuse = tempfile::tempdir().unwrap();
        let haltpoll = tempfile::tempdir().unwrap();
        let bare = Host::read_from(fuse.path(), Some(haltpoll.path()));
        assert_eq!((bare.fuse_wake_here, bare.guest_halt_poll_ns), (None, None));
        assert!(!bare.describe().contains("Host tuning"), "{}", bare.describe());
        assert!(bare.cpus >= 1);

        std::fs::write(fuse.path().join("wake_here"), "N\n").unwrap();
        std::fs::write(haltpoll.path().join("guest_halt_poll_ns"), "0\n").unwrap();
        let host = Host::read_from(fuse.path(), Some(haltpoll.path()));
        assert_eq!((host.fuse_wake_here, host.guest_halt_poll_ns), (Some(false), Some(0)));
        let line = host.describe();
        assert!(
            line.contains("haltpoll.guest_halt_poll_ns=0, fuse.wake_here=N"),
            "{line}"
        );
        assert!(line.contains("Host tuning"), "{line}");

        std::fs::write(fuse.path().join("wake_here"), "Y\n").unwrap();
        assert_eq!(Host::read_from(fuse.path(), None).fuse_wake_here, Some(true));
        // Without the haltpoll driver its parameter means nothing.
        assert_eq!(Host::read_from(fuse.path(), None).guest_halt_poll_ns, None);
    }
}
