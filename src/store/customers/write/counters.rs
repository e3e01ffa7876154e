//! The summary-bar counters: customers per relationship and per (group,
//! relationship), counting active customers only. [`Deltas`] gathers a
//! write's changes to them and writes them in one statement per table.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ConnectionTrait, EntityTrait,
    sea_query::{Alias, Expr, OnConflict},
};

use crate::{
    entity::{group_relationship_count, relationship_count},
    error::AppResult,
};

/// Counter rows written per statement (each binds four values).
const ROWS_PER_STATEMENT: usize = 1000;

/// Changes to a tenant's counters.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    /// By relationship id.
    relationships: BTreeMap<String, i64>,
    /// By (group id, relationship id).
    groups: BTreeMap<(String, String), i64>,
}

impl Deltas {
    /// Counts `sign` (±1) customers holding `relationship` in each of
    /// `groups`.
    pub(super) fn count(&mut self, relationship: &str, groups: &[String], sign: i64) {
        *self
            .relationships
            .entry(relationship.to_owned())
            .or_default() += sign;
        for group in groups {
            self.count_in_group(group, relationship, sign);
        }
    }

    /// Counts `sign` customers holding `relationship` in `group` only.
    pub(super) fn count_in_group(&mut self, group: &str, relationship: &str, sign: i64) {
        *self
            .groups
            .entry((group.to_owned(), relationship.to_owned()))
            .or_default() += sign;
    }

    /// Adds the deltas to the stored counters: per relationship first,
    /// then per group, each in key order, so concurrent writers lock
    /// counter rows in one order.
    pub(super) async fn write(&self, tx: &impl ConnectionTrait, tenant: &str) -> AppResult<()> {
        use group_relationship_count as g;
        use relationship_count as r;
        let rows: Vec<r::ActiveModel> = self
            .relationships
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|(relationship_id, delta)| r::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                relationship_id: Set(relationship_id.clone()),
                customers: Set(*delta),
            })
            .collect();
        add_to_counters(
            tx,
            rows,
            OnConflict::columns([r::Column::TenantId, r::Column::RelationshipId]),
            "relationship_counts",
        )
        .await?;
        let rows: Vec<g::ActiveModel> = self
            .groups
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|((group_id, relationship_id), delta)| g::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                group_id: Set(group_id.clone()),
                relationship_id: Set(relationship_id.clone()),
                customers: Set(*delta),
            })
            .collect();
        add_to_counters(
            tx,
            rows,
            OnConflict::columns([
                g::Column::TenantId,
                g::Column::GroupId,
                g::Column::RelationshipId,
            ]),
            "group_relationship_counts",
        )
        .await
    }
}

/// Inserts counter rows whose `customers` column holds a delta; a row that
/// exists already gets the delta added instead.
async fn add_to_counters<A: ActiveModelTrait + Send>(
    tx: &impl ConnectionTrait,
    rows: Vec<A>,
    mut conflict: OnConflict,
    table: &str,
) -> AppResult<()> {
    conflict.value(
        Alias::new("customers"),
        Expr::cust(format!(r#""{table}"."customers" + "excluded"."customers""#)),
    );
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        A::Entity::insert_many(chunk)
            .on_conflict(conflict.clone())
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}
