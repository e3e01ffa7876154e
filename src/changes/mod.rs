//! The change streams: tailing a per-tenant log and fanning it out to
//! watchers, and how long it stays replayable. One machinery serves two
//! logs, each described by a [`log::Log`]:
//!
//! - [`log`]: what the machinery needs to know about a log, and its reads.
//! - [`relationship`]: the relationship-change log (WatchRelationshipChanges).
//! - [`membership`]: the group-membership log (WatchGroupMembershipChanges).
//! - [`feed`]: one reader per log and server fanning new entries out.
//! - [`watch`]: one watcher: replay, then live, filtered, with heartbeats.
//! - [`retention`]: the replay floor (`--change-retention`).
//!
//! The logs themselves are written by the customers' one write path
//! ([`crate::store::customers::write`]); this module only reads them.

pub mod feed;
pub mod log;
pub mod membership;
pub mod relationship;
pub mod retention;
pub mod watch;
