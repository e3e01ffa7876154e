//! The summary bar at a past moment, from the change log's daily tallies.
//! Each logged change moves its customer's latest relationship from the
//! old one to the new one (a creation from none), so the customers in each
//! relationship by their last change at or before the moment are the sum
//! of the changes up to it, read through [`daily`]: the whole days before
//! its day from `flow_tallies`, the part of its day from the log (a day's
//! changes at most, whatever the moment). The customers deleted at or before the
//! moment are then taken out, each from the relationship it held then;
//! they are few, read by deletion time. Deletion is as the customer now
//! has it: a customer deleted and restored since counts as active
//! throughout.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, Statement};

use super::{Tallies, daily, in_report_order, placeholder, read_by, rows_of, tallies};
use crate::{
    domain::{report::Period, tenant::RequestContext},
    entity::relationship,
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
        let mut counts: HashMap<String, i64> = HashMap::new();
        let mut sequence = 0;
        let up_to_at = Period {
            from: None,
            to: Some(at + 1),
        };
        for change in daily::changes(&tx, tenant, up_to_at).await? {
            if !change.from.is_empty() {
                *counts.entry(change.from).or_default() -= change.changes;
            }
            *counts.entry(change.to).or_default() += change.changes;
            sequence = Ord::max(sequence, change.last_sequence);
        }
        for (held, n) in deleted_by(&tx, tenant, at).await? {
            *counts.entry(held).or_default() -= n;
        }
        tx.commit().await?;
        // Active relationships in position order, then those deleted since
        // that held customers then.
        let held: Vec<relationship::Model> = relationships
            .into_iter()
            .filter(|r| r.delete_time.is_none() || counts.get(&r.id).is_some_and(|n| *n != 0))
            .collect();
        Ok(AsOf {
            read: Tallies::new(tallies(&held, &counts)),
            sequence,
        })
    }
}

/// The customers whose present deletion was at or before `at`, by the
/// relationship they held at `at` (that of their last change at or before
/// it): the customers the changes count that were not active then.
async fn deleted_by(
    db: &impl ConnectionTrait,
    tenant: &str,
    at: i64,
) -> AppResult<Vec<(String, i64)>> {
    let backend = db.get_database_backend();
    let (t, a) = (placeholder(backend, 1), placeholder(backend, 2));
    // The deleted customers are few: their partial index.
    let deleted = read_by(backend, "customers_deleted_by_time");
    let sql = format!(
        "SELECT held, CAST(COUNT(*) AS BIGINT) AS n FROM (
            SELECT (SELECT r.new_relationship_id FROM relationship_changes r
                    WHERE r.tenant_id = {t} AND r.customer_id = c.id AND r.change_time <= {a}
                    ORDER BY r.sequence DESC LIMIT 1) AS held
            FROM customers c {deleted}
            WHERE c.tenant_id = {t} AND c.delete_time IS NOT NULL AND c.delete_time <= {a}
         ) deleted
         WHERE held IS NOT NULL
         GROUP BY held"
    );
    let values = [tenant.into(), at.into()];
    rows_of(db, Statement::from_sql_and_values(backend, sql, values)).await
}
