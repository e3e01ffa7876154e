//! Customers: their records and every way they are read and written.
//!
//! - [`write`]: the one write path; every change to a customer goes
//!   through it, and it alone writes the copies, counters and log that
//!   follow customers.
//! - [`records`]: reading records (row and active groups), locking rows,
//!   profile conversions; [`cache`]: the record cache in front of it.
//! - [`rules`]: what a write checks against the stored state.
//! - [`create`], [`create_queue`]: creating customers, batched.
//! - [`update`]: profile, delete and restore, relationship changes.
//! - [`import`]: importing rows in batches (each row checked and written
//!   as the single call it stands for); [`export`]: reading a whole
//!   selection in one snapshot.
//! - [`memberships`], [`contacts`]: group membership; contacts.
//! - [`inactivity`]: the inactivity rule, swept and on demand.
//! - [`group_rules`]: a tenant's rule groups as writes follow them;
//!   [`evaluation`]: rules evaluated over every customer in the background.
//! - [`lists`], [`holders`], [`history`]: lists; who holds a relationship;
//!   each customer's relationship history.
//! - [`reports`]: the summary bar (now and in the past) and every report.

pub mod cache;
pub mod contacts;
pub mod create;
pub mod create_queue;
pub mod evaluation;
pub mod export;
pub mod filter;
pub mod group_rules;
pub mod history;
pub mod holders;
pub mod import;
pub mod inactivity;
pub mod lists;
pub mod members;
pub mod memberships;
pub mod records;
pub mod reports;
pub mod rules;
pub mod update;
pub mod write;

pub use records::CustomerRecord;
