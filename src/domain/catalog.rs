//! Validated inputs of the three catalogs (groups, sources, relationships'
//! common part): what a Create carries, what an Update may change, and the
//! idempotency key of a Create.

/// The fields every catalog entry has, validated for a Create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// A code the caller chose; `None` generates one from the name.
    pub code: Option<String>,
    /// Trimmed name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// Changes to the common fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryPatch {
    /// New code.
    pub code: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// A group to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// Code, name, description.
    pub entry: NewEntry,
    /// Parent group; `None` for a top-level group.
    pub parent_id: Option<String>,
    /// The rule that fills the group (a filter, checked to parse); empty
    /// for a manual group.
    pub rule: String,
}

/// Changes to a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPatch {
    /// Code, name, description.
    pub entry: EntryPatch,
    /// `Some(None)` moves the group to the top level.
    pub parent_id: Option<Option<String>>,
    /// A new rule; `Some("")` clears it (the group becomes manual).
    pub rule: Option<String>,
}

/// A Create's idempotency key: the caller's `request_id` and a fingerprint of
/// the rest of the request, so reusing a key for another request is caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The caller's request id.
    pub request_id: String,
    /// Fingerprint of the request without its request id.
    pub fingerprint: String,
}

/// The precondition of an Update, Delete or Restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resource's id.
    pub id: String,
    /// Etag the caller read; empty skips the check.
    pub etag: String,
}
