//! What the stream machinery needs to know about one log, and the reads it
//! makes of any log.
//!
//! A log is a per-tenant table of entries numbered 1, 2, 3, … in commit
//! order (contiguous, allocated by the writer through a per-tenant counter
//! row), next to that counter table, whose row holds the tenant's latest
//! sequence and its replay floor (see [`super::retention`]). Both logs the
//! service streams have that shape: the relationship-change log
//! ([`super::relationship::RelationshipLog`], `relationship_changes` and
//! `change_counters`) and the membership log
//! ([`super::membership::MembershipLog`], `membership_changes` and
//! `membership_counters`). A [`Log`] names the two tables and their
//! columns, the entry the stream hands out and how a watcher's filter
//! judges it; the reads below, the fan-out ([`super::feed`]), the watchers
//! ([`super::watch`]) and retention work on any of them alike.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::error::AppResult;

/// The tables of a log and the columns the machinery reads.
pub struct Tables<R: EntityTrait, C: EntityTrait> {
    /// The log's tenant column.
    pub tenant: R::Column,
    /// The log's sequence column.
    pub sequence: R::Column,
    /// The log's change-time column (microseconds), for retention.
    pub change_time: R::Column,
    /// The counter table's tenant column (its primary key).
    pub counter_tenant: C::Column,
    /// The counter table's latest sequence.
    pub last_sequence: C::Column,
    /// The counter table's replay floor: the last sequence no longer
    /// replayable.
    pub trimmed_through: C::Column,
}

/// One per-tenant, contiguously numbered log that the change-stream
/// machinery tails, replays, filters and trims.
pub trait Log: Send + Sync + 'static {
    /// The log's table.
    type Rows: EntityTrait;
    /// Its counter table (one row per tenant that has entries).
    type Counters: EntityTrait;
    /// One entry as the feed hands it to watchers: the row, with whatever
    /// the filters look at made ready.
    type Entry: From<<Self::Rows as EntityTrait>::Model> + std::fmt::Debug + Send + Sync + 'static;
    /// What a watcher sends for an entry that matched.
    type Change: std::fmt::Debug + Clone + Send + Sync + 'static;
    /// Which entries a watcher wants.
    type Filter: std::fmt::Debug + Clone + Send + Sync + 'static;

    /// The log's name in the server's own log lines.
    const NAME: &'static str;
    /// Its tables and columns.
    const TABLES: Tables<Self::Rows, Self::Counters>;

    /// The entry's position in its tenant's log.
    fn sequence(entry: &Self::Entry) -> i64;
    /// What a watcher sends for `entry`.
    fn change(entry: &Self::Entry) -> Self::Change;
    /// Whether `entry` passes `filter`.
    fn matches(filter: &Self::Filter, entry: &Self::Entry) -> bool;
}

/// The entries of `tenant`'s log `L` after sequence `after`, at most
/// `limit`, in order.
pub async fn read_after<L: Log>(
    db: &impl ConnectionTrait,
    tenant: &str,
    after: i64,
    limit: u64,
) -> AppResult<Vec<L::Entry>> {
    let tables = L::TABLES;
    let rows = L::Rows::find()
        .filter(tables.tenant.eq(tenant))
        .filter(tables.sequence.gt(after))
        .order_by_asc(tables.sequence)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(L::Entry::from).collect())
}

/// The latest sequence of `tenant`'s log `L` (0 before its first entry).
pub async fn latest_sequence<L: Log>(db: &impl ConnectionTrait, tenant: &str) -> AppResult<i64> {
    let latest = latest_sequences::<L>(db, std::slice::from_ref(&tenant.to_owned())).await?;
    Ok(latest.get(tenant).copied().unwrap_or(0))
}

/// The latest sequence of log `L` of each of `tenants` that has entries.
pub async fn latest_sequences<L: Log>(
    db: &impl ConnectionTrait,
    tenants: &[String],
) -> AppResult<HashMap<String, i64>> {
    let tables = L::TABLES;
    let mut latest = HashMap::with_capacity(tenants.len());
    for chunk in tenants.chunks(500) {
        let rows: Vec<(String, i64)> = L::Counters::find()
            .filter(tables.counter_tenant.is_in(chunk.iter().cloned()))
            .select_only()
            .column(tables.counter_tenant)
            .column(tables.last_sequence)
            .into_tuple()
            .all(db)
            .await?;
        latest.extend(rows);
    }
    Ok(latest)
}
