//! The relationship-change log: the history of every customer and the
//! source of the change stream, appended to by the write path only.
//!
//! # Sequence numbers
//!
//! Each tenant's log is numbered 1, 2, 3, … in commit order with no gaps.
//! A database sequence (BIGSERIAL) cannot give that: on PostgreSQL two
//! transactions may take 7 and 8 and commit 8 first (a reader that saw 8
//! would later find 7 appear), and a rollback leaves a hole. Instead the
//! tenant's row in `change_counters` is incremented inside the writing
//! transaction. The row lock it takes is held until commit, so a second
//! writer of the same tenant waits on it and can only take the next numbers
//! after the first has committed (or rolled back, releasing its numbers
//! unused). Numbers therefore become visible in order and none is skipped.
//! On SQLite the write transaction already excludes every other writer.

use sea_orm::{
    ActiveValue::Set,
    ConnectionTrait, EntityTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::{
    domain::change::Origin,
    entity::{change_counter, relationship_change},
    error::{AppError, AppResult},
};

/// Log entries written per statement (each binds eleven values).
const ROWS_PER_STATEMENT: usize = 1000;

/// One change to log.
pub(super) struct Entry<'a> {
    pub customer_id: &'a str,
    /// Empty when the customer was created.
    pub from: &'a str,
    pub to: &'a str,
    pub owner: &'a str,
    pub origin: &'a Origin,
    pub time: i64,
    /// The customer's groups, sorted.
    pub group_ids: Vec<String>,
}

/// Appends `entries` to the tenant's log, numbered in order; returns them
/// as stored.
pub(super) async fn append(
    tx: &impl ConnectionTrait,
    tenant: &str,
    entries: Vec<Entry<'_>>,
) -> AppResult<Vec<relationship_change::Model>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let last = allocate(tx, tenant, entries.len() as i64).await?;
    let first = last - entries.len() as i64 + 1;
    let rows: Vec<relationship_change::Model> = entries
        .into_iter()
        .zip(first..)
        .map(|(e, sequence)| relationship_change::Model {
            tenant_id: tenant.to_owned(),
            sequence,
            customer_id: e.customer_id.to_owned(),
            old_relationship_id: e.from.to_owned(),
            new_relationship_id: e.to.to_owned(),
            cause: e.origin.cause.as_str().to_owned(),
            actor_id: e.origin.actor.clone(),
            reason: e.origin.reason.clone(),
            change_time: e.time,
            owner_id: e.owner.to_owned(),
            group_ids: e.group_ids.join(","),
        })
        .collect();
    // In chunks well below the databases' limits on bound values (a
    // relationship's deletion may move every customer of the tenant).
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        relationship_change::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(relationship_change::ActiveModel::from),
        )
        .exec_without_returning(tx)
        .await?;
    }
    Ok(rows)
}

/// Takes the next `n` sequence numbers of the tenant's log; returns the last.
/// See the module documentation for why this orders commits.
async fn allocate(tx: &impl ConnectionTrait, tenant: &str, n: i64) -> AppResult<i64> {
    let counter = change_counter::Entity::insert(change_counter::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        last_sequence: Set(n),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(change_counter::Column::TenantId)
            .value(
                change_counter::Column::LastSequence,
                Expr::col((change_counter::Entity, change_counter::Column::LastSequence)).add(n),
            )
            .to_owned(),
    )
    .exec_with_returning(tx)
    .await?;
    if counter.last_sequence < n {
        return Err(AppError::Internal(format!(
            "change counter of {tenant} went backwards"
        )));
    }
    Ok(counter.last_sequence)
}
