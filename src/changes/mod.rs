//! The change stream: tailing the relationship-change log and fanning it
//! out to watchers, and how long it stays replayable. The log itself is
//! written by the customers' one write path
//! ([`crate::store::customers::write`]); this module only reads it.

pub mod feed;
pub mod retention;
pub mod watch;
