//! Directory contents: names mapped to node ids, kept in insertion order
//! with stable readdir cookies.
//!
//! Each entry gets a cookie from a counter that only grows. A readdir that
//! resumes at cookie `c` continues with the first entry whose cookie is
//! greater, so entries added or removed during a listing never make it skip
//! or repeat an entry that stayed. Cookies 1 and 2 are `.` and `..`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::{Arc, Weak};

use super::ids::NodeId;
use super::node::{Kind, Node};

/// First cookie given to a real entry (1 and 2 are `.` and `..`).
pub(crate) const FIRST_COOKIE: u64 = 3;

/// One name in a directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) cookie: u64,
    pub(crate) id: NodeId,
    pub(crate) kind: Kind,
}

/// An entry as a listing sees it.
#[derive(Debug)]
struct Listed {
    name: Arc<OsStr>,
    slot: Slot,
    node: Weak<Node>,
}

/// The entries of one directory.
#[derive(Debug)]
pub(crate) struct Dir {
    names: HashMap<Arc<OsStr>, Slot>,
    /// The same entries by cookie, slot and node included, so that a
    /// listing with attributes needs no hash lookup per entry. The node is
    /// held weakly: a name keeps its node linked, not alive (the node
    /// table does that), and a tree of strong pointers would be dropped
    /// recursively, one stack frame per level of nesting.
    order: BTreeMap<u64, Listed>,
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

    /// Adds `name` for `node`; the caller has checked that it is free.
    pub(crate) fn insert(&mut self, name: &OsStr, node: &Arc<Node>) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let name: Arc<OsStr> = Arc::from(name);
        let slot = Slot {
            cookie,
            id: node.id,
            kind: node.kind,
        };
        let listed = Listed {
            name: Arc::clone(&name),
            slot,
            node: Arc::downgrade(node),
        };
        self.order.insert(cookie, listed);
        let old = self.names.insert(name, slot);
        debug_assert!(old.is_none(), "insert over an existing name");
    }

    /// Points an existing name at another node, keeping its position.
    pub(crate) fn replace(&mut self, name: &OsStr, node: &Arc<Node>) {
        if let Some(slot) = self.names.get_mut(name) {
            slot.id = node.id;
            slot.kind = node.kind;
            if let Some(listed) = self.order.get_mut(&slot.cookie) {
                listed.slot = *slot;
                listed.node = Arc::downgrade(node);
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
        self.listed_after(after).map(|(name, slot, _)| (name, slot))
    }

    /// As [`Dir::after`], with each entry's node (dead only if the node
    /// table no longer holds it either).
    pub(crate) fn listed_after(&self, after: u64) -> impl Iterator<Item = (&OsStr, Slot, &Weak<Node>)> + '_ {
        self.order
            .range(after.saturating_add(1).max(FIRST_COOKIE)..)
            .map(|(_, l)| (&*l.name, l.slot, &l.node))
    }
}
