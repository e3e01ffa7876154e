//! The summary bar at a past moment, read backwards from the present:
//! the counters give every active customer's present relationship, and
//! only the customers changed (or deleted) since that moment are looked
//! at again. A customer's relationship at the moment is the one its first
//! later change left (`old_relationship_id`); one created later has none.
//! A recent moment therefore reads few rows, an old one at most the log
//! since then.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryResult,
    QuerySelect, Statement,
    sea_query::{Expr, ExprTrait},
};

use super::{Tallies, in_report_order, tallies};
use crate::{
    domain::tenant::RequestContext,
    entity::{relationship, relationship_change, relationship_count},
    error::{AppError, AppResult},
    store::{AsOf, Store, snapshot},
};

impl Store {
    /// The summary bar of the whole tenant as it stood at `at`
    /// (microseconds; a change made at `at` counts), with the last change
    /// made at or before it.
    pub async fn count_as_of(&self, ctx: &RequestContext, at: i64) -> AppResult<AsOf<Tallies>> {
        if at > self.now() {
            return Err(AppError::invalid("as_of", "is in the future"));
        }
        let tenant = ctx.tenant.as_str();
        if !self.tenant_exists(&ctx.tenant).await? {
            let relationships = self.unprovisioned_relationships(&ctx.tenant)?;
            let read = Tallies::new(tallies(&relationships, &HashMap::new()));
            return Ok(AsOf { read, sequence: 0 });
        }
        let tx = snapshot(self.db()).await?;
        let relationships = in_report_order(&tx, tenant).await?;
        let mut counts: HashMap<String, i64> = relationship_count::Entity::find()
            .filter(relationship_count::Column::TenantId.eq(tenant))
            .select_only()
            .column(relationship_count::Column::RelationshipId)
            .column(relationship_count::Column::Customers)
            .into_tuple::<(String, i64)>()
            .all(&tx)
            .await?
            .into_iter()
            .collect();
        for (then, now, active_now, active_then, n) in changed_since(&tx, tenant, at).await? {
            if active_now {
                *counts.entry(now).or_default() -= n;
            }
            // Created after `at`: no relationship then.
            if active_then && !then.is_empty() {
                *counts.entry(then).or_default() += n;
            }
        }
        for (held, n) in deleted_since(&tx, tenant, at).await? {
            *counts.entry(held).or_default() += n;
        }
        let sequence: Option<i64> = relationship_change::Entity::find()
            .filter(relationship_change::Column::TenantId.eq(tenant))
            .filter(relationship_change::Column::ChangeTime.lte(at))
            .select_only()
            .column_as(
                Expr::col(relationship_change::Column::Sequence).max(),
                "latest",
            )
            .into_tuple()
            .one(&tx)
            .await?
            .flatten();
        tx.commit().await?;
        // Active relationships in position order, then those deleted since
        // that held customers then.
        let held: Vec<relationship::Model> = relationships
            .into_iter()
            .filter(|r| r.delete_time.is_none() || counts.get(&r.id).is_some_and(|n| *n != 0))
            .collect();
        Ok(AsOf {
            read: Tallies::new(tallies(&held, &counts)),
            sequence: sequence.unwrap_or(0),
        })
    }
}

/// Runs the statement `write` gives for the database, bound to `tenant`
/// and `at` (whose placeholders `write` is handed, in that order).
async fn run(
    db: &impl ConnectionTrait,
    tenant: &str,
    at: i64,
    write: impl FnOnce([&'static str; 2], DatabaseBackend) -> String,
) -> AppResult<Vec<QueryResult>> {
    let backend = db.get_database_backend();
    let placeholders = match backend {
        DatabaseBackend::Postgres => ["$1", "$2"],
        _ => ["?1", "?2"],
    };
    let sql = write(placeholders, backend);
    Ok(db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [tenant.into(), at.into()],
        ))
        .await?)
}

/// SQLite's hint to read `index`: its planner would otherwise walk a whole
/// index that delivers rows in the `GROUP BY` order (every change of the
/// tenant) rather than the range the condition selects. PostgreSQL plans
/// from its own statistics.
fn read_by(backend: DatabaseBackend, index: &str) -> String {
    match backend {
        DatabaseBackend::Sqlite => format!("INDEXED BY {index}"),
        _ => String::new(),
    }
}

/// The customers changed after `at`, counted by (relationship at `at` —
/// empty if created later —, relationship now, active now, active at
/// `at`).
async fn changed_since(
    db: &impl ConnectionTrait,
    tenant: &str,
    at: i64,
) -> AppResult<Vec<(String, String, bool, bool, i64)>> {
    let rows = run(db, tenant, at, |[t, a], backend| {
        let by_time = read_by(backend, "relationship_changes_by_time");
        format!(
            "SELECT f.old_relationship_id, c.relationship_id,
                CASE WHEN c.delete_time IS NULL THEN 1 ELSE 0 END AS active_now,
                CASE WHEN c.delete_time IS NULL OR c.delete_time > {a} THEN 1 ELSE 0 END
                    AS active_then,
                CAST(COUNT(*) AS BIGINT) AS n
         FROM (SELECT customer_id, MIN(sequence) AS first_sequence
               FROM relationship_changes {by_time}
               WHERE tenant_id = {t} AND change_time > {a}
               GROUP BY customer_id) later
         JOIN relationship_changes f
           ON f.tenant_id = {t} AND f.sequence = later.first_sequence
         JOIN customers c ON c.id = later.customer_id
         GROUP BY f.old_relationship_id, c.relationship_id, active_now, active_then"
        )
    })
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get_by_index(0)?,
                row.try_get_by_index(1)?,
                row.try_get_by_index::<i32>(2)? == 1,
                row.try_get_by_index::<i32>(3)? == 1,
                row.try_get_by_index(4)?,
            ))
        })
        .collect()
}

/// Customers deleted after `at` and not changed since, per relationship:
/// active then, in the relationship they hold now, which no counter counts.
async fn deleted_since(
    db: &impl ConnectionTrait,
    tenant: &str,
    at: i64,
) -> AppResult<Vec<(String, i64)>> {
    let rows = run(db, tenant, at, |[t, a], backend| {
        // The deleted customers are few: their partial index.
        let deleted = read_by(backend, "customers_deleted_by_time");
        format!(
            "SELECT c.relationship_id, CAST(COUNT(*) AS BIGINT) AS n
         FROM customers c {deleted}
         WHERE c.tenant_id = {t} AND c.delete_time IS NOT NULL
           AND c.delete_time > {a} AND c.create_time <= {a}
           AND NOT EXISTS (SELECT 1 FROM relationship_changes r
                           WHERE r.tenant_id = {t} AND r.customer_id = c.id
                             AND r.change_time > {a})
         GROUP BY c.relationship_id"
        )
    })
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}
