//! How long changes stay replayable (`--change-retention`), the same for
//! every [`Log`].
//!
//! The relationship-change log is also every customer's relationship
//! history, which `ListRelationshipHistory` promises in full, so trimming
//! does not delete rows; the membership log keeps its rows too. Trimming
//! moves the tenant's replay floor instead: the counter row's
//! `trimmed_through` (`change_counters`, `membership_counters`) is the last
//! sequence past the retention period, and a watcher resuming before it is
//! told OUT_OF_RANGE (re-read, then watch from 0) rather than replayed
//! changes the contract no longer keeps for the stream.
//!
//! The floor only rises, and stops at the first change still inside the
//! retention period: change times follow commit order closely but not
//! exactly (replicas' clocks differ by a little), so a change just past the
//! period that follows a newer one stays replayable a little longer, never
//! shorter.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};

use super::log::Log;
use crate::error::AppResult;

/// A tenant's replayable range: changes after `trimmed_through` up to
/// `latest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// The latest sequence (0 before the first change).
    pub latest: i64,
    /// The last sequence no longer replayable (0: none).
    pub trimmed_through: i64,
}

/// The replayable range of `tenant`'s log `L`.
pub async fn retained<L: Log>(db: &impl ConnectionTrait, tenant: &str) -> AppResult<Retained> {
    let tables = L::TABLES;
    let row: Option<(i64, i64)> = L::Counters::find()
        .filter(tables.counter_tenant.eq(tenant))
        .select_only()
        .column(tables.last_sequence)
        .column(tables.trimmed_through)
        .into_tuple()
        .one(db)
        .await?;
    Ok(row
        .map(|(latest, trimmed_through)| Retained {
            latest,
            trimmed_through,
        })
        .unwrap_or_default())
}

/// Raises the replay floor of every tenant's log `L` past the changes made
/// at or before `cutoff` (microseconds); returns how many changes left the
/// replayable range.
pub async fn trim<L: Log>(db: &impl ConnectionTrait, cutoff: i64) -> AppResult<i64> {
    let tables = L::TABLES;
    let counters: Vec<(String, i64, i64)> = L::Counters::find()
        .select_only()
        .column(tables.counter_tenant)
        .column(tables.last_sequence)
        .column(tables.trimmed_through)
        .into_tuple()
        .all(db)
        .await?;
    let mut trimmed = 0;
    for (tenant, last_sequence, trimmed_through) in counters {
        // Read after the counter: every change up to `last_sequence` is
        // committed and visible to this read.
        let first_kept: Option<i64> = L::Rows::find()
            .filter(tables.tenant.eq(&tenant))
            .filter(tables.sequence.gt(trimmed_through))
            .filter(tables.change_time.gt(cutoff))
            .order_by_asc(tables.sequence)
            .limit(1)
            .select_only()
            .column(tables.sequence)
            .into_tuple()
            .one(db)
            .await?;
        let floor = first_kept.map_or(last_sequence, |kept| kept - 1);
        if floor <= trimmed_through {
            continue;
        }
        L::Counters::update_many()
            .col_expr(tables.trimmed_through, Expr::value(floor))
            .filter(tables.counter_tenant.eq(&tenant))
            .filter(tables.trimmed_through.lt(floor))
            .exec(db)
            .await?;
        tracing::debug!(%tenant, log = L::NAME, through = floor, "changes left the replayable range");
        trimmed += floor - trimmed_through;
    }
    Ok(trimmed)
}
