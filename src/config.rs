//! Mount options: the tmpfs-style `-o` list, parsed and validated into a
//! [`MountConfig`], the only form of configuration the core sees.
//!
//! Defaults (documented in the README as well):
//!
//! | option | default |
//! |---|---|
//! | `size=` | `max_ram` plus half the free space of the spill file system; `0` means no limit |
//! | `nr_inodes=` | half the number of physical RAM pages (as tmpfs); `0` means no limit |
//! | `max_ram=` | 25% of physical RAM |
//! | `spool=` | a quarter of `max_ram`, between 1 MiB and 256 MiB, at most `size=` |
//! | `spill_dir=` | `/var/tmp`, else `$HOME/.cache`: the first that is not memory-backed |
//! | `mode=` | `0700` |
//! | `uid=`, `gid=` | the mounting user's |
//! | `writeback=` | `off`: every write reaches the daemon before it returns |
//! | `busy_poll=` | `0`: workers sleep between requests |
//! | `passthrough=` | `off`: the daemon serves the reads and writes of every file |

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;

/// Validated mount configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// Total capacity in bytes (RAM plus spill); `u64::MAX` for no limit.
    pub size: u64,
    /// Largest number of inodes; `u64::MAX` for no limit.
    pub nr_inodes: u64,
    /// Permission bits of the root directory (may include the sticky bit).
    pub mode: u32,
    /// Owner of the root directory; `None` means the mounting user.
    pub uid: Option<u32>,
    /// Group of the root directory; `None` means the mounting user's group.
    pub gid: Option<u32>,
    /// Allow mounting over a non-empty directory.
    pub nonempty: bool,
    /// Let other users (and root) use the mount.
    pub allow_other: bool,
    /// A file larger than this moves to the spill tier.
    pub spool: u64,
    /// RAM budget of the whole mount: above it, files are spilled.
    pub max_ram: u64,
    /// Where the private spill directory is made; `None` disables spilling.
    pub spill_dir: Option<PathBuf>,
    /// Accept a spill directory on tmpfs or ramfs (for tests).
    pub allow_tmpfs_spill: bool,
    /// Remove a file when its last handle closes.
    pub delete_on_close: bool,
    /// Remove files untouched for this long.
    pub expire: Option<Duration>,
    /// Let the kernel cache writes and send them in the background (FUSE
    /// writeback cache). Random writes double in speed, but each small
    /// file costs two more round trips (the kernel sends its times), and
    /// running out of space (`size=` or the spill disk) is reported by
    /// fsync and close rather than by the write itself, as on NFS. Off by
    /// default.
    pub writeback: bool,
    /// After a request, keep one worker polling the FUSE device for this
    /// many microseconds before it sleeps again (0: never poll). Small
    /// requests in a burst then skip the cross-CPU wake-up of the daemon,
    /// at the price of up to one busy CPU while they keep coming.
    pub busy_poll_us: u32,
    /// Open spilled files with FUSE passthrough where the kernel allows it
    /// (Linux 6.9 or later, a daemon with CAP_SYS_ADMIN; elsewhere the
    /// daemon serves them, silently): their reads and writes then go
    /// straight to the spill file. Every open then costs a round trip (the
    /// kernel must ask which kind of open it is), where otherwise opens
    /// cost none; off by default.
    pub passthrough: bool,
}

/// Longest accepted `busy_poll=` window: 100 ms.
const MAX_BUSY_POLL_US: u32 = 100_000;

/// Options as given, before the defaults that depend on each other.
#[derive(Debug, Default)]
struct Given {
    size: Option<u64>,
    spool: Option<u64>,
    max_ram: Option<u64>,
    spill_dir: Option<PathBuf>,
}

/// The `-o` options a user gives, as `tmpfsd mount --help` and the error for
/// an unknown option list them. Also accepted, for fstab lines: `rw`,
/// `nosuid`, `nodev` and `default_permissions`, which are always in force.
pub const OPTIONS: &str = "size=, nr_inodes=, max_ram=, spool=, spill_dir=, delete_on_close, \
expire=, writeback=on|off, busy_poll=US, passthrough=on|off, mode=, uid=, gid=, allow_other, nonempty";

impl MountConfig {
    /// Parses a comma-separated `-o` list and settles the defaults.
    ///
    /// # Errors
    /// Names the first unknown option, bad value or contradiction.
    pub fn parse(opts: &str) -> Result<Self, ConfigError> {
        Self::from_options(&[opts])
    }

    /// Parses several `-o` lists (later options override earlier ones, as
    /// with mount(8)) and settles the defaults.
    ///
    /// # Errors
    /// Names the first unknown option, bad value or contradiction.
    pub fn from_options<S: AsRef<str>>(lists: &[S]) -> Result<Self, ConfigError> {
        let ram = physical_ram();
        let mut config = Self::ram_only(0, (ram / page_size() / 2).max(1024));
        let mut given = Given::default();
        for list in lists {
            for opt in list.as_ref().split(',').map(str::trim).filter(|o| !o.is_empty()) {
                config.apply_one(opt, &mut given)?;
            }
        }
        config.max_ram = given.max_ram.unwrap_or(ram / 4);
        config.spill_dir = Some(match given.spill_dir {
            Some(d) => d,
            None => default_spill_dir(config.allow_tmpfs_spill).ok_or_else(|| {
                ConfigError::new(
                    "spill_dir",
                    "no disk-backed default (/var/tmp, $HOME/.cache) found; name one",
                )
            })?,
        });
        config.size = match given.size {
            Some(size) => size,
            None => {
                let free = config.spill_dir.as_deref().map_or(0, free_space);
                config.max_ram.saturating_add(free / 2)
            }
        };
        // The default adapts to a small size=; only an explicit spool=
        // above size= is a contradiction.
        config.spool = given
            .spool
            .unwrap_or_else(|| (config.max_ram / 4).clamp(1 << 20, 256 << 20).min(config.size));
        if config.spool > config.size {
            return Err(ConfigError::new(
                format!("spool={}", config.spool),
                format!("is above size= ({} bytes): no file could ever spill", config.size),
            ));
        }
        Ok(config)
    }

    /// A RAM-only configuration (no spill directory, no RAM budget) with
    /// these limits: the in-process tests of the core use it.
    #[must_use]
    pub fn ram_only(size: u64, nr_inodes: u64) -> Self {
        Self {
            size,
            nr_inodes,
            mode: 0o700,
            uid: None,
            gid: None,
            nonempty: false,
            allow_other: false,
            spool: u64::MAX,
            max_ram: u64::MAX,
            spill_dir: None,
            allow_tmpfs_spill: false,
            delete_on_close: false,
            expire: None,
            writeback: false,
            busy_poll_us: 0,
            passthrough: false,
        }
    }

    fn apply_one(&mut self, opt: &str, given: &mut Given) -> Result<(), ConfigError> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = || -> Result<&str, ConfigError> {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ConfigError::new(opt, "needs a value"))
        };
        let flag = || match value {
            None => Ok(()),
            Some(_) => Err(ConfigError::new(opt, "takes no value")),
        };
        let size = |percent_ok: bool| parse_size(need()?, percent_ok).map_err(|r| ConfigError::new(opt, r));
        let nonzero = |v: u64| {
            if v == 0 {
                Err(ConfigError::new(opt, "must be greater than zero"))
            } else {
                Ok(v)
            }
        };
        match key {
            "size" => given.size = Some(unlimited_if_zero(size(true)?)),
            "nr_inodes" => self.nr_inodes = unlimited_if_zero(size(false)?),
            "mode" => {
                self.mode = u32::from_str_radix(need()?, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| ConfigError::new(opt, "expected an octal mode such as 0700 or 1777"))?;
            }
            "uid" => self.uid = Some(parse_id(opt, need()?)?),
            "gid" => self.gid = Some(parse_id(opt, need()?)?),
            "spool" => given.spool = Some(nonzero(size(false)?)?),
            "max_ram" => given.max_ram = Some(nonzero(size(true)?)?),
            "spill_dir" => {
                let dir = PathBuf::from(need()?);
                if !dir.is_absolute() {
                    return Err(ConfigError::new(opt, "must be an absolute path"));
                }
                given.spill_dir = Some(dir);
            }
            "expire" => {
                let d = parse_duration(need()?).map_err(|r| ConfigError::new(opt, r))?;
                if d.is_zero() {
                    return Err(ConfigError::new(opt, "must be greater than zero"));
                }
                self.expire = Some(d);
            }
            "nonempty" => {
                flag()?;
                self.nonempty = true;
            }
            "allow_other" => {
                flag()?;
                self.allow_other = true;
            }
            "allow_tmpfs_spill" => {
                flag()?;
                self.allow_tmpfs_spill = true;
            }
            "delete_on_close" => {
                flag()?;
                self.delete_on_close = true;
            }
            "writeback" => {
                self.writeback = match need()? {
                    "on" => true,
                    "off" => false,
                    _ => return Err(ConfigError::new(opt, "expected on or off")),
                };
            }
            "passthrough" => {
                self.passthrough = match need()? {
                    "on" => true,
                    "off" => false,
                    _ => return Err(ConfigError::new(opt, "expected on or off")),
                };
            }
            "busy_poll" => {
                let v = need()?;
                self.busy_poll_us = v.parse().ok().filter(|us| *us <= MAX_BUSY_POLL_US).ok_or_else(|| {
                    ConfigError::new(opt, format!("expected microseconds from 0 to {MAX_BUSY_POLL_US}"))
                })?;
            }
            "encrypt_spill" => return Err(ConfigError::new(opt, "is not implemented yet")),
            // Accepted for fstab compatibility: these are always in force.
            "rw" | "nosuid" | "nodev" | "default_permissions" => flag()?,
            _ => return Err(ConfigError::new(opt, format!("unknown option (known: {OPTIONS})"))),
        }
        Ok(())
    }
}

/// Parses `30s`, `10m`, `2h`, `7d` or a number of seconds.
///
/// # Errors
/// A human-readable reason.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{v}' is not a duration (expected e.g. 90s, 10m, 2h, 7d)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("'{v}' has an unknown unit '{unit}' (use s, m, h, d)")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{v}' is too long"))
}

/// The first of /var/tmp and $HOME/.cache that exists and is not memory-backed.
fn default_spill_dir(allow_memory_fs: bool) -> Option<PathBuf> {
    let home_cache = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache"));
    [Some(PathBuf::from("/var/tmp")), home_cache]
        .into_iter()
        .flatten()
        .find(|d| d.is_dir() && (allow_memory_fs || !crate::storage::spill::is_memory_fs(d)))
}

/// Bytes available to unprivileged users on the file system of `dir`.
fn free_space(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: zeroed is a valid statvfs; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    #[allow(clippy::useless_conversion)] // widths differ by platform
    u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize))
}

fn unlimited_if_zero(v: u64) -> u64 {
    if v == 0 {
        u64::MAX
    } else {
        v
    }
}

fn parse_id(opt: &str, v: &str) -> Result<u32, ConfigError> {
    v.parse::<u32>()
        .ok()
        .filter(|id| *id != u32::MAX)
        .ok_or_else(|| ConfigError::new(opt, "expected a numeric id"))
}

/// Parses a tmpfs-style size: a number with an optional binary suffix
/// (`k`, `m`, `g`, `t`, `p`, `e`, either case), or with `percent_ok`, a
/// percentage of physical RAM (`50%`).
///
/// # Errors
/// A human-readable reason, lowercase.
pub fn parse_size(v: &str, percent_ok: bool) -> Result<u64, String> {
    let v = v.trim();
    if let Some(pct) = v.strip_suffix('%') {
        if !percent_ok {
            return Err("a percentage is not allowed here".into());
        }
        let pct: u64 = pct.parse().map_err(|_| format!("'{v}' is not a whole percentage"))?;
        if pct > 100 {
            return Err(format!("'{v}' is more than 100% of RAM"));
        }
        return Ok(physical_ram() / 100 * pct);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(split);
    if digits.is_empty() {
        return Err(format!("'{v}' is not a size (expected e.g. 512m, 4g, 50%)"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("'{v}' is too large"))?;
    let shift = match suffix {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        "p" | "P" => 50,
        "e" | "E" => 60,
        _ => return Err(format!("'{v}' has an unknown unit '{suffix}' (use k, m, g, t)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{v}' is too large"))
}

/// Physical RAM of this machine in bytes.
#[must_use]
pub fn physical_ram() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    u64::try_from(pages).unwrap_or(0).saturating_mul(page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(ps).ok().filter(|p| *p > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_tmpfs_syntax() {
        assert_eq!(parse_size("4096", true), Ok(4096));
        assert_eq!(parse_size("4k", true), Ok(4096));
        assert_eq!(parse_size("2M", true), Ok(2 << 20));
        assert_eq!(parse_size("1g", true), Ok(1 << 30));
        assert_eq!(parse_size("3t", true), Ok(3 << 40));
        assert_eq!(parse_size("50%", true), Ok(physical_ram() / 100 * 50));
        assert!(parse_size("50%", false).is_err());
        assert!(parse_size("12q", true).unwrap_err().contains("unknown unit"));
        assert!(parse_size("", true).is_err());
        assert!(parse_size("m", true).is_err());
        assert!(parse_size("101%", true).is_err());
        assert!(parse_size("99999999999999999999", true).is_err());
        assert!(parse_size("16e", true).is_err());
    }

    #[test]
    fn options_override_defaults_and_reject_nonsense() {
        let c = MountConfig::parse("size=1g,nr_inodes=100,mode=1777,uid=5,gid=6,allow_other").unwrap();
        assert_eq!(c.size, 1 << 30);
        assert_eq!(c.nr_inodes, 100);
        assert_eq!(c.mode, 0o1777);
        assert_eq!((c.uid, c.gid), (Some(5), Some(6)));
        assert!(c.allow_other);
        assert_eq!(MountConfig::parse("size=0").unwrap().size, u64::MAX);
        let c = MountConfig::parse("spool=64k,max_ram=10%,expire=2h,delete_on_close,spill_dir=/var/tmp").unwrap();
        assert_eq!(c.spool, 64 << 10);
        assert_eq!(c.max_ram, physical_ram() / 100 * 10);
        assert_eq!(c.expire, Some(Duration::from_secs(7200)));
        assert!(c.delete_on_close);
        assert!(!c.writeback, "writeback caching is off by default");
        assert!(!MountConfig::parse("writeback=off").unwrap().writeback);
        assert!(MountConfig::parse("writeback=on").unwrap().writeback);
        assert_eq!(c.busy_poll_us, 0, "busy polling is off by default");
        assert!(!c.passthrough, "passthrough is off by default");
        assert!(MountConfig::parse("passthrough=on").unwrap().passthrough);
        for bad in ["passthrough", "passthrough=yes"] {
            let e = MountConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains("passthrough"), "{bad}: {e}");
        }
        assert_eq!(MountConfig::parse("busy_poll=200").unwrap().busy_poll_us, 200);
        for bad in [
            "busy_poll",
            "busy_poll=",
            "busy_poll=-1",
            "busy_poll=1ms",
            "busy_poll=100001",
        ] {
            let e = MountConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains("busy_poll"), "{bad}: {e}");
        }
        for bad in [
            "bogus",
            "size=",
            "size=abc",
            "mode=999",
            "mode=17777",
            "uid=x",
            "nonempty=1",
            "size",
            "spool=0",
            "max_ram=0",
            "expire=0",
            "expire=5y",
            "spool=10%",
            "spill_dir=relative",
            "encrypt_spill",
        ] {
            let err = MountConfig::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        let err = MountConfig::parse("size=1m,spool=2m").unwrap_err();
        assert!(err.to_string().contains("above size="), "{err}");
        assert_eq!(MountConfig::parse("size=100k").unwrap().spool, 100 << 10);
    }

    #[test]
    fn every_listed_option_is_known_and_an_unknown_one_gets_the_list() {
        let names: Vec<&str> = OPTIONS.split(", ").map(|o| o.split('=').next().unwrap()).collect();
        assert!(names.len() >= 15, "{names:?}");
        for name in names {
            // A value that may be wrong for the option: only "unknown" matters here.
            for opt in [name.to_string(), format!("{name}=1")] {
                if let Err(e) = MountConfig::parse(&opt) {
                    assert!(!e.to_string().contains("unknown option"), "{opt}: {e}");
                }
            }
        }
        let e = MountConfig::parse("spoool=1m").unwrap_err().to_string();
        assert!(e.contains("'spoool=1m': unknown option") && e.contains(OPTIONS), "{e}");
    }

    #[test]
    fn defaults_are_consistent() {
        let c = MountConfig::parse("").unwrap();
        assert!(c.spool <= c.max_ram && c.max_ram <= c.size);
        assert!(c.spill_dir.is_some());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
    }
}
