//! Mount options: the tmpfs-style `-o` list, parsed and validated into a
//! [`MountConfig`], the only form of configuration the core sees.
//!
//! Defaults (documented in the README as well):
//!
//! | option | default |
//! |---|---|
//! | `size=` | 50% of physical RAM (as tmpfs); `0` means no limit |
//! | `nr_inodes=` | half the number of physical RAM pages (as tmpfs); `0` means no limit |
//! | `mode=` | `0700` |
//! | `uid=`, `gid=` | the mounting user's |

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
}

impl Default for MountConfig {
    fn default() -> Self {
        let ram = physical_ram();
        Self {
            size: ram / 2,
            nr_inodes: (ram / page_size() / 2).max(1024),
            mode: 0o700,
            uid: None,
            gid: None,
            nonempty: false,
            allow_other: false,
        }
    }
}

impl MountConfig {
    /// Parses a comma-separated `-o` list on top of the defaults.
    ///
    /// # Errors
    /// Names the first unknown option or bad value.
    pub fn parse(opts: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        config.apply(opts)?;
        Ok(config)
    }

    /// Applies a comma-separated `-o` list on top of this configuration.
    /// Later options override earlier ones, as with mount(8).
    ///
    /// # Errors
    /// Names the first unknown option or bad value.
    pub fn apply(&mut self, opts: &str) -> Result<(), ConfigError> {
        for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            self.apply_one(opt)?;
        }
        Ok(())
    }

    fn apply_one<'a>(&mut self, opt: &'a str) -> Result<(), ConfigError> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&'a str>| -> Result<&'a str, ConfigError> {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| ConfigError::new(opt, "needs a value"))
        };
        let flag = |v: Option<&str>| match v {
            None => Ok(()),
            Some(_) => Err(ConfigError::new(opt, "takes no value")),
        };
        match key {
            "size" => {
                self.size = unlimited_if_zero(parse_size(need(value)?, true).map_err(|r| ConfigError::new(opt, r))?);
            }
            "nr_inodes" => {
                self.nr_inodes =
                    unlimited_if_zero(parse_size(need(value)?, false).map_err(|r| ConfigError::new(opt, r))?);
            }
            "mode" => {
                let v = need(value)?;
                let mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| ConfigError::new(opt, "expected an octal mode such as 0700 or 1777"))?;
                self.mode = mode;
            }
            "uid" => self.uid = Some(parse_id(opt, need(value)?)?),
            "gid" => self.gid = Some(parse_id(opt, need(value)?)?),
            "nonempty" => {
                flag(value)?;
                self.nonempty = true;
            }
            "allow_other" => {
                flag(value)?;
                self.allow_other = true;
            }
            // Accepted for fstab compatibility: these are always in force.
            "rw" | "nosuid" | "nodev" | "default_permissions" => flag(value)?,
            _ => return Err(ConfigError::new(opt, "unknown option")),
        }
        Ok(())
    }
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
        for bad in [
            "bogus",
            "size=",
            "size=abc",
            "mode=999",
            "mode=17777",
            "uid=x",
            "nonempty=1",
            "size",
        ] {
            let err = MountConfig::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
