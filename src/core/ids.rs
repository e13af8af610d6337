//! Identifier newtypes. Node ids are never reused within a mount, so a
//! node's generation is constant; it is still carried so that a future id
//! reuse scheme cannot forget to bump it.

/// A node (inode) number. `NodeId::ROOT` is the mount's root directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The root directory, as FUSE numbers it.
    pub const ROOT: NodeId = NodeId(1);
}

/// An open file or directory handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(pub u64);

impl HandleId {
    /// Marks a handle that names a node rather than an open file.
    const STATELESS: u64 = 1 << 63;

    /// The handle to use for `node` when the adapter serves a file without
    /// open and release requests (see [`crate::core::Fs::stateless_opens`]).
    /// Handles from [`crate::core::Fs::open`] never have this form.
    #[must_use]
    pub fn stateless(node: NodeId) -> Self {
        HandleId(node.0 | Self::STATELESS)
    }

    /// The node a stateless handle names, `None` for an open file's handle.
    #[must_use]
    pub fn stateless_node(self) -> Option<NodeId> {
        (self.0 & Self::STATELESS != 0).then_some(NodeId(self.0 & !Self::STATELESS))
    }
}

/// The generation paired with a [`NodeId`] (constant: ids are not reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation(pub u64);

/// Who is asking: used for ownership of new nodes, the few permission rules
/// the kernel leaves to the file system, and attribution in statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id (0 when unknown).
    pub pid: u32,
}

impl Caller {
    /// The superuser, for tests and internal work.
    pub const ROOT: Caller = Caller { uid: 0, gid: 0, pid: 0 };

    /// Whether the caller is the superuser.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}
