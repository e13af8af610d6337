//! Directory contents: names mapped to node ids, kept in insertion order
//! with stable readdir cookies.
//!
//! Each entry gets a cookie from a counter that only grows. A readdir that
//! resumes at cookie `c` continues with the first entry whose cookie is
//! greater, so entries added or removed during a listing never make it skip
//! or repeat an entry that stayed. Cookies 1 and 2 are `.` and `..`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::Arc;

use super::ids::NodeId;
use super::node::Kind;

/// First cookie given to a real entry (1 and 2 are `.` and `..`).
pub(crate) const FIRST_COOKIE: u64 = 3;

/// One name in a directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) cookie: u64,
    pub(crate) id: NodeId,
    pub(crate) kind: Kind,
}

/// The entries of one directory.
#[derive(Debug)]
pub(crate) struct Dir {
    names: HashMap<Arc<OsStr>, Slot>,
    /// The same entries by cookie, slot included, so that a listing
    /// needs no hash lookup per entry.
    order: BTreeMap<u64, (Arc<OsStr>, Slot)>,
    next_cookie: u64,
    /// Set by rmdir (and rename over it): nothing may be created inside.
    pub(crate) removed: bool,
}

impl Dir {
    pub(crate) fn new() -> Self {
        Self {
            names: HashMap::new(),
            order: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
            removed: false,
        }
    }

    pub(crate) fn get(&self, name: &OsStr) -> Option<Slot> {
        self.names.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds `name`; the caller has checked that it is free.
    pub(crate) fn insert(&mut self, name: &OsStr, id: NodeId, kind: Kind) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let name: Arc<OsStr> = Arc::from(name);
        let slot = Slot { cookie, id, kind };
        self.order.insert(cookie, (Arc::clone(&name), slot));
        let old = self.names.insert(name, slot);
        debug_assert!(old.is_none(), "insert over an existing name");
    }

    /// Points an existing name at another node, keeping its position.
    pub(crate) fn replace(&mut self, name: &OsStr, id: NodeId, kind: Kind) {
        if let Some(slot) = self.names.get_mut(name) {
            slot.id = id;
            slot.kind = kind;
            if let Some((_, ordered)) = self.order.get_mut(&slot.cookie) {
                *ordered = *slot;
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &OsStr) -> Option<Slot> {
        let slot = self.names.remove(name)?;
        self.order.remove(&slot.cookie);
        Some(slot)
    }

    /// Entries with a cookie greater than `after`, in cookie order.
    pub(crate) fn after(&self, after: u64) -> impl Iterator<Item = (&OsStr, Slot)> + '_ {
        self.order
            .range(after.saturating_add(1).max(FIRST_COOKIE)..)
            .map(|(_, (name, slot))| (&**name, *slot))
    }
}
