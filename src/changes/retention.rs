//! How long changes stay replayable (`--change-retention`).
//!
//! The change log is also every customer's relationship history, which
//! `ListRelationshipHistory` promises in full, so trimming does not delete
//! rows. It moves the tenant's replay floor instead:
//! `change_counters.trimmed_through` is the last sequence past the retention
//! period, and a watcher resuming before it is told OUT_OF_RANGE (re-read,
//! then watch from 0) rather than replayed changes the contract no longer
//! keeps for the stream.
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

use crate::{
    entity::{change_counter, relationship_change},
    error::AppResult,
};

/// A tenant's replayable range: changes after `trimmed_through` up to
/// `latest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// The latest sequence (0 before the first change).
    pub latest: i64,
    /// The last sequence no longer replayable (0: none).
    pub trimmed_through: i64,
}

/// The tenant's replayable range.
pub async fn retained(db: &impl ConnectionTrait, tenant: &str) -> AppResult<Retained> {
    let row = change_counter::Entity::find_by_id(tenant.to_owned())
        .one(db)
        .await?;
    Ok(row
        .map(|r| Retained {
            latest: r.last_sequence,
            trimmed_through: r.trimmed_through,
        })
        .unwrap_or_default())
}

/// Raises every tenant's replay floor past the changes made at or before `cutoff`
/// (microseconds); returns how many changes left the replayable range.
pub async fn trim(db: &impl ConnectionTrait, cutoff: i64) -> AppResult<i64> {
    let counters = change_counter::Entity::find().all(db).await?;
    let mut trimmed = 0;
    for counter in counters {
        // Read after the counter: every change up to `last_sequence` is
        // committed and visible to this read.
        let first_kept: Option<i64> = relationship_change::Entity::find()
            .filter(relationship_change::Column::TenantId.eq(&counter.tenant_id))
            .filter(relationship_change::Column::Sequence.gt(counter.trimmed_through))
            .filter(relationship_change::Column::ChangeTime.gt(cutoff))
            .order_by_asc(relationship_change::Column::Sequence)
            .limit(1)
            .select_only()
            .column(relationship_change::Column::Sequence)
            .into_tuple()
            .one(db)
            .await?;
        let floor = first_kept.map_or(counter.last_sequence, |kept| kept - 1);
        if floor <= counter.trimmed_through {
            continue;
        }
        change_counter::Entity::update_many()
            .col_expr(change_counter::Column::TrimmedThrough, Expr::value(floor))
            .filter(change_counter::Column::TenantId.eq(&counter.tenant_id))
            .filter(change_counter::Column::TrimmedThrough.lt(floor))
            .exec(db)
            .await?;
        tracing::debug!(tenant = %counter.tenant_id, through = floor, "changes left the replayable range");
        trimmed += floor - counter.trimmed_through;
    }
    Ok(trimmed)
}
