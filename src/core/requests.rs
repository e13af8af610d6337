//! Requests received from the kernel, counted by kind.
//!
//! Round trips are what FUSE costs: a change that makes the kernel send
//! one more request per file (an open that is no longer stateless, an
//! attribute timeout lost, a capability check before every write) costs
//! more than any daemon-side code. The counts make such a change visible
//! without a clock, in `tmpfsd status --json` and in the mount tests that
//! hold each fast-path choice to its request budget.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! requests {
    ($($variant:ident $field:ident,)*) => {
        /// A kind of request from the kernel, named after the operation
        /// it asks for. Adapters count every request they receive,
        /// including those they answer without the core.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Op {
            $($variant,)*
        }

        /// Requests received since the mount, by kind; each field is
        /// named after its [`Op`]. `forget` counts nodes forgotten (the
        /// kernel sends them in batches).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        #[allow(missing_docs)]
        pub struct Requests {
            $(pub $field: u64,)*
        }

        impl Requests {
            fn from_counts(c: &[AtomicU64; COUNT]) -> Self {
                Requests {
                    $($field: c[Op::$variant as usize].load(Ordering::Relaxed),)*
                }
            }

            /// Every request, of all kinds.
            #[must_use]
            pub fn total(&self) -> u64 {
                0 $(+ self.$field)*
            }

            /// The requests counted here and not in `earlier`, by kind
            /// (each saturating at 0).
            #[must_use]
            pub fn since(&self, earlier: &Requests) -> Requests {
                Requests {
                    $($field: self.$field.saturating_sub(earlier.$field),)*
                }
            }
        }

        const COUNT: usize = [$(Op::$variant,)*].len();
    };
}

requests! {
    Lookup lookup,
    Forget forget,
    Getattr getattr,
    Setattr setattr,
    Readlink readlink,
    Mknod mknod,
    Mkdir mkdir,
    Unlink unlink,
    Rmdir rmdir,
    Symlink symlink,
    Rename rename,
    Link link,
    Open open,
    Read read,
    Write write,
    Flush flush,
    Release release,
    Fsync fsync,
    Opendir opendir,
    Readdir readdir,
    Readdirplus readdirplus,
    Releasedir releasedir,
    Fsyncdir fsyncdir,
    Statfs statfs,
    Setxattr setxattr,
    Getxattr getxattr,
    Listxattr listxattr,
    Removexattr removexattr,
    Access access,
    Create create,
    Fallocate fallocate,
    Lseek lseek,
    CopyFileRange copy_file_range,
    Ioctl ioctl,
}

/// One counter per kind of request.
#[derive(Debug)]
pub(crate) struct Counters([AtomicU64; COUNT]);

impl Counters {
    pub(crate) fn new() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    pub(crate) fn count(&self, op: Op) {
        self.0[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Requests {
        Requests::from_counts(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_counted_in_its_own_field() {
        let c = Counters::new();
        c.count(Op::Lookup);
        c.count(Op::Lookup);
        c.count(Op::Ioctl);
        c.count(Op::CopyFileRange);
        let before = c.snapshot();
        assert_eq!((before.lookup, before.ioctl, before.copy_file_range), (2, 1, 1));
        assert_eq!(before.total(), 4);
        c.count(Op::Getxattr);
        c.count(Op::Lookup);
        let d = c.snapshot().since(&before);
        assert_eq!(
            d,
            Requests {
                getxattr: 1,
                lookup: 1,
                ..Requests::default()
            }
        );
    }
}
