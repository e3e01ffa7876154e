//! Counting customers: the summary bar (counts per relationship), the
//! source report, and the customer counts shown on groups, sources and
//! relationships. The other reports live in the submodules:
//!
//! - [`as_of`]: the summary bar at a past moment, from the change log;
//! - [`groups`]: the report by group; [`overlap`]: how groups overlap;
//! - [`flow`]: how customers move between relationships (unfiltered, from
//!   the log's [`daily`] tallies);
//! - [`owners`]: each owner's (salesperson's) handling of customers.

pub mod as_of;
mod daily;
pub mod flow;
pub mod groups;
pub mod overlap;
pub mod owners;

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement, TryGetableMany,
    sea_query::{Expr, ExprTrait, Func, Query},
};

use super::lists::{filtered, is_unfiltered, single_group};
use crate::store::{
    AsOf, Store,
    resource::{self, in_tenant},
    snapshot,
};
use crate::{
    domain::{
        customer::CustomerFilter,
        report::{Period, revenue_from_halves},
        tenant::RequestContext,
    },
    entity::{
        change_counter, customer, customer_group, customer_source, group_relationship_count,
        relationship, relationship_count,
    },
    error::{AppError, AppResult},
};

/// Code of the relationship the source report counts as closed.
pub const CLOSED_CODE: &str = "CLOSED";

/// One relationship and how many customers hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipTally {
    /// The relationship.
    pub relationship: relationship::Model,
    /// Customers holding it.
    pub count: i64,
}

/// The summary bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tallies {
    /// Customers matching the filters.
    pub total: i64,
    /// One entry per active relationship, in position order.
    pub by_relationship: Vec<RelationshipTally>,
}

impl Tallies {
    /// The summary bar of these counts, totalled.
    pub fn new(by_relationship: Vec<RelationshipTally>) -> Self {
        Self {
            total: by_relationship.iter().map(|t| t.count).sum(),
            by_relationship,
        }
    }
}

/// One row of the source report.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFigures {
    /// The source; `None` for customers without one.
    pub source: Option<customer_source::Model>,
    /// Customers created in the range.
    pub customers: i64,
    /// Per relationship.
    pub tallies: Vec<RelationshipTally>,
    /// In the CLOSED relationship.
    pub closed: i64,
    /// Sum of revenue, saturated at the bounds of `i64`.
    pub revenue: i64,
}

/// The source report.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReport {
    /// Sources in name order, then the no-source row.
    pub rows: Vec<SourceFigures>,
    /// Over all rows.
    pub total: SourceFigures,
}

/// Active relationships in position order.
async fn relationships_in_order(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> AppResult<Vec<relationship::Model>> {
    Ok(in_tenant::<relationship::Entity>(tenant)
        .filter(relationship::Column::DeleteTime.is_null())
        .order_by_asc(relationship::Column::Position)
        .order_by_asc(relationship::Column::Id)
        .all(db)
        .await?)
}

/// Every relationship of the tenant in the order reports list them:
/// active ones by position, then deleted ones by position.
async fn in_report_order(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> AppResult<Vec<relationship::Model>> {
    let (mut active, deleted): (Vec<_>, Vec<_>) = in_tenant::<relationship::Entity>(tenant)
        .order_by_asc(relationship::Column::Position)
        .order_by_asc(relationship::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .partition(|r| r.delete_time.is_none());
    active.extend(deleted);
    Ok(active)
}

impl Store {
    /// A report's active relationships in position order, read in its
    /// snapshot `db`; a tenant not `provisioned` when the report began has
    /// its seeds (a tenant provisioned meanwhile stored these very seeds,
    /// their ids derived from the tenant, so its customers still match).
    async fn active_relationships(
        &self,
        db: &impl ConnectionTrait,
        ctx: &RequestContext,
        provisioned: bool,
    ) -> AppResult<Vec<relationship::Model>> {
        if provisioned {
            relationships_in_order(db, ctx.tenant.as_str()).await
        } else {
            self.unprovisioned_relationships(&ctx.tenant)
        }
    }
}

/// The summary bar read in one statement from a counter table, with the
/// tenant's latest change: one statement sees one snapshot on both
/// databases, so counts and sequence agree without a transaction.
/// `counter` selects the count of the relationship `relationships.id`.
/// With `group_id`, NOT_FOUND when that group does not exist.
async fn tallies_from_counters(
    db: &impl ConnectionTrait,
    tenant: &str,
    counter: sea_orm::sea_query::SelectStatement,
    group_id: Option<&str>,
) -> AppResult<AsOf<Tallies>> {
    const COUNT: &str = "tally_customers";
    const GROUP_FOUND: &str = "tally_group_found";
    const SEQUENCE: &str = "tally_sequence";
    let latest = Query::select()
        .column(change_counter::Column::LastSequence)
        .from(change_counter::Entity)
        .and_where(Expr::col(change_counter::Column::TenantId).eq(tenant))
        .to_owned();
    let mut query = in_tenant::<relationship::Entity>(tenant)
        .expr_as(
            Func::coalesce([
                Expr::SubQuery(None, Box::new(latest.into())),
                Expr::val(0i64),
            ])
            .cast_as("BIGINT"),
            SEQUENCE,
        )
        .filter(relationship::Column::DeleteTime.is_null())
        .order_by_asc(relationship::Column::Position)
        .order_by_asc(relationship::Column::Id)
        .expr_as(
            Func::coalesce([
                Expr::SubQuery(None, Box::new(counter.into())),
                Expr::val(0i64),
            ])
            .cast_as("BIGINT"),
            COUNT,
        );
    if let Some(group_id) = group_id {
        query = query.expr_as(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(customer_group::Entity)
                    .and_where(Expr::col(customer_group::Column::TenantId).eq(tenant))
                    .and_where(Expr::col(customer_group::Column::Id).eq(group_id))
                    .to_owned(),
            ),
            GROUP_FOUND,
        );
    }
    let rows = db
        .query_all_raw(query.build(db.get_database_backend()))
        .await?;
    let mut by_relationship = Vec::with_capacity(rows.len());
    let mut sequence = 0;
    for row in &rows {
        if let Some(group_id) = group_id
            && !row.try_get::<bool>("", GROUP_FOUND)?
        {
            return Err(AppError::not_found("group", group_id));
        }
        by_relationship.push(RelationshipTally {
            relationship: relationship::Model::from_query_result(row, "")?,
            count: row.try_get("", COUNT)?,
        });
        sequence = row.try_get("", SEQUENCE)?;
    }
    if let (true, Some(group_id)) = (rows.is_empty(), group_id) {
        // No relationship row carried the flag (the default one is never
        // deleted, so this does not happen); ask directly.
        resource::find::<customer_group::Entity>(db, tenant, group_id).await?;
    }
    Ok(AsOf {
        read: Tallies::new(by_relationship),
        sequence,
    })
}

/// SQLite's hint to read `index`: its planner would otherwise walk a whole
/// index that delivers rows in the `GROUP BY` order (every change of the
/// tenant) rather than the range the condition selects, or rows by time
/// rather than by the stay's length. PostgreSQL plans from its own
/// statistics.
pub(super) fn read_by(backend: DatabaseBackend, index: &str) -> String {
    match backend {
        DatabaseBackend::Sqlite => format!("INDEXED BY {index}"),
        _ => String::new(),
    }
}

/// A raw statement's ` AND {condition} {placeholder}` for each bound that
/// is set, its value bound after `values`.
pub(super) fn bounded(
    backend: DatabaseBackend,
    values: &mut Vec<sea_orm::Value>,
    bounds: &[(Option<i64>, &str)],
) -> String {
    let mut conditions = String::new();
    for &(bound, condition) in bounds {
        if let Some(bound) = bound {
            values.push(bound.into());
            let at = placeholder(backend, values.len());
            conditions.push_str(&format!(" AND {condition} {at}"));
        }
    }
    conditions
}

/// The placeholder of a raw statement's `n`-th (from 1) bound value.
pub(super) fn placeholder(backend: DatabaseBackend, n: usize) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// The high and low 32 bits of each revenue, summed apart: neither sum can
/// overflow a 64-bit integer below 2^31 customers, whatever the stored
/// values, and together they give the exact total (SQLite's SUM fails on
/// overflow, PostgreSQL's numeric sum does not fit a BIGINT).
const REVENUE_HIGH: &str = "revenue >> 32";
const REVENUE_LOW: &str = "revenue & 4294967295";

fn revenue_sum(part: &str) -> Expr {
    Expr::cust(revenue_sum_sql(part))
}

/// [`revenue_sum`] for a raw statement.
fn revenue_sum_sql(part: &str) -> String {
    format!("CAST(COALESCE(SUM({part}), 0) AS BIGINT)")
}

/// The rows of a raw statement, each read as `T` (a value or a tuple) by
/// the order of its columns.
async fn rows_of<T: TryGetableMany>(
    db: &impl ConnectionTrait,
    statement: Statement,
) -> AppResult<Vec<T>> {
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| Ok(row.try_get_many_by_index()?))
        .collect()
}

/// A total as the API's `int64` shows it: clamped at its bounds.
fn saturate(total: i128) -> i64 {
    i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
}

/// Customers of one source in one relationship, and their revenue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cell {
    source_id: Option<String>,
    relationship_id: String,
    customers: i64,
    revenue: i128,
}

/// The customers `query` selects, counted per (source, relationship) with
/// their exact revenue.
async fn cells(db: &impl ConnectionTrait, query: Select<customer::Entity>) -> AppResult<Vec<Cell>> {
    let rows: Vec<(Option<String>, String, i64, i64, i64)> = query
        .select_only()
        .column(customer::Column::SourceId)
        .column(customer::Column::RelationshipId)
        .column_as(Expr::cust("COUNT(*)"), "n")
        .column_as(revenue_sum(REVENUE_HIGH), "revenue_high")
        .column_as(revenue_sum(REVENUE_LOW), "revenue_low")
        .group_by(customer::Column::SourceId)
        .group_by(customer::Column::RelationshipId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(source_id, relationship_id, customers, high, low)| Cell {
            source_id,
            relationship_id,
            customers,
            revenue: revenue_from_halves(high, low),
        })
        .collect())
}

/// The id of the relationship coded CLOSED among `relationships`.
fn closed_id(relationships: &[relationship::Model]) -> Option<String> {
    relationships
        .iter()
        .find(|r| r.code == CLOSED_CODE)
        .map(|r| r.id.clone())
}

fn tallies(
    relationships: &[relationship::Model],
    counts: &HashMap<String, i64>,
) -> Vec<RelationshipTally> {
    relationships
        .iter()
        .map(|r| RelationshipTally {
            relationship: r.clone(),
            count: counts.get(&r.id).copied().unwrap_or(0),
        })
        .collect()
}

impl Store {
    /// The summary bar for `filter` (its relationship filter is ignored),
    /// with the tenant's latest change in the snapshot it was read in.
    /// Counts (from the counters, or counted) and sequence come from one
    /// snapshot, so a client that applies exactly the changes after it
    /// stays exact; a sequence read apart from the counts would make it
    /// count some change twice, or never.
    pub async fn count_by_relationship(
        &self,
        ctx: &RequestContext,
        filter: &CustomerFilter,
    ) -> AppResult<AsOf<Tallies>> {
        let tenant = ctx.tenant.as_str();
        if !self.tenant_exists(&ctx.tenant).await? {
            // No customers yet: the filters' groups and sources are checked
            // (they do not exist), and every seed counts zero, as of no
            // change at all.
            filtered(self.db(), tenant, filter, false, self.now()).await?;
            let read = Tallies::new(tallies(
                &self.unprovisioned_relationships(&ctx.tenant)?,
                &HashMap::new(),
            ));
            return Ok(AsOf { read, sequence: 0 });
        }
        if let Some(counted) = self.count_from_counters(tenant, filter).await? {
            return Ok(counted);
        }
        let snapshot = self.snapshot_of(tenant).await?;
        let counted = self.count_in(snapshot.db(), tenant, filter).await?;
        snapshot.end(counted).await
    }

    /// The summary bar from the counters every write keeps, when `filter`
    /// is one they answer (none, or one group): one statement, no scan of
    /// the customers. `None` for the other filters.
    async fn count_from_counters(
        &self,
        tenant: &str,
        filter: &CustomerFilter,
    ) -> AppResult<Option<AsOf<Tallies>>> {
        let db = self.db();
        if is_unfiltered(filter) {
            // Kept up to date by every write: no scan of the customers.
            let mut counter = Query::select();
            counter
                .column(relationship_count::Column::Customers)
                .from(relationship_count::Entity)
                .and_where(Expr::col(relationship_count::Column::TenantId).eq(tenant))
                .and_where(
                    Expr::col((
                        relationship_count::Entity,
                        relationship_count::Column::RelationshipId,
                    ))
                    .equals((relationship::Entity, relationship::Column::Id)),
                );
            return tallies_from_counters(db, tenant, counter, None)
                .await
                .map(Some);
        }
        if let Some(group_id) = single_group(filter) {
            // Kept up to date by every write, like the unfiltered counts.
            let mut counter = Query::select();
            counter
                .column(group_relationship_count::Column::Customers)
                .from(group_relationship_count::Entity)
                .and_where(Expr::col(group_relationship_count::Column::TenantId).eq(tenant))
                .and_where(Expr::col(group_relationship_count::Column::GroupId).eq(group_id))
                .and_where(
                    Expr::col((
                        group_relationship_count::Entity,
                        group_relationship_count::Column::RelationshipId,
                    ))
                    .equals((relationship::Entity, relationship::Column::Id)),
                );
            return tallies_from_counters(db, tenant, counter, Some(group_id))
                .await
                .map(Some);
        }
        Ok(None)
    }

    /// The summary bar of a provisioned tenant for a filter the counters do
    /// not answer, counted through `db` (one snapshot).
    async fn count_in(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        filter: &CustomerFilter,
    ) -> AppResult<Tallies> {
        let relationships = relationships_in_order(db, tenant).await?;
        let counts: HashMap<String, i64> = filtered(db, tenant, filter, false, self.now())
            .await?
            .select_only()
            .column(customer::Column::RelationshipId)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .group_by(customer::Column::RelationshipId)
            .into_tuple::<(String, i64)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        Ok(Tallies::new(tallies(&relationships, &counts)))
    }

    /// The source report over customers created in `period`.
    pub async fn source_report(
        &self,
        ctx: &RequestContext,
        period: Period,
    ) -> AppResult<SourceReport> {
        let tenant = ctx.tenant.as_str();
        let provisioned = self.tenant_exists(&ctx.tenant).await?;
        let tx = snapshot(self.db()).await?;
        let relationships = self.active_relationships(&tx, ctx, provisioned).await?;
        let cells = cells(&tx, groups::active_in_period(tenant, &period)).await?;
        let used: HashSet<String> = cells.iter().filter_map(|c| c.source_id.clone()).collect();
        let sources = in_tenant::<customer_source::Entity>(tenant)
            .filter(
                Condition::any()
                    .add(customer_source::Column::DeleteTime.is_null())
                    .add(customer_source::Column::Id.is_in(used)),
            )
            .order_by_asc(customer_source::Column::SortKey)
            .order_by_asc(customer_source::Column::Id)
            .all(&tx)
            .await?;
        tx.commit().await?;

        let closed_id = closed_id(&relationships);
        let mut per_source: BTreeMap<Option<String>, (HashMap<String, i64>, i128)> =
            BTreeMap::new();
        for cell in cells {
            let entry = per_source.entry(cell.source_id).or_default();
            *entry.0.entry(cell.relationship_id).or_default() += cell.customers;
            entry.1 += cell.revenue;
        }
        let figures = |source: Option<customer_source::Model>,
                       counts: &HashMap<String, i64>,
                       revenue: i128| SourceFigures {
            customers: counts.values().sum(),
            closed: closed_id
                .as_ref()
                .and_then(|id| counts.get(id))
                .copied()
                .unwrap_or(0),
            tallies: tallies(&relationships, counts),
            revenue: saturate(revenue),
            source,
        };
        let empty = (HashMap::new(), 0);
        let mut rows: Vec<SourceFigures> = sources
            .into_iter()
            .map(|s| {
                let (counts, revenue) = per_source.get(&Some(s.id.clone())).unwrap_or(&empty);
                figures(Some(s), counts, *revenue)
            })
            .collect();
        let (counts, revenue) = per_source.get(&None).unwrap_or(&empty);
        rows.push(figures(None, counts, *revenue));

        let mut all_counts: HashMap<String, i64> = HashMap::new();
        let mut all_revenue: i128 = 0;
        for (counts, revenue) in per_source.values() {
            for (id, n) in counts {
                *all_counts.entry(id.clone()).or_default() += n;
            }
            all_revenue += revenue;
        }
        Ok(SourceReport {
            rows,
            total: figures(None, &all_counts, all_revenue),
        })
    }

    /// Active customers per group, for the groups `ids`.
    pub async fn group_customer_counts(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> AppResult<HashMap<String, i64>> {
        Ok(group_relationship_count::Entity::find()
            .filter(group_relationship_count::Column::TenantId.eq(tenant))
            .filter(group_relationship_count::Column::GroupId.is_in(ids.iter().cloned()))
            .select_only()
            .column(group_relationship_count::Column::GroupId)
            .column_as(
                Expr::col(group_relationship_count::Column::Customers)
                    .sum()
                    .cast_as("BIGINT"),
                "n",
            )
            .group_by(group_relationship_count::Column::GroupId)
            .into_tuple::<(String, i64)>()
            .all(self.db())
            .await?
            .into_iter()
            .collect())
    }

    /// Active customers per source, for the sources `ids`.
    pub async fn source_customer_counts(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> AppResult<HashMap<String, i64>> {
        Ok(in_tenant::<customer::Entity>(tenant)
            .filter(customer::Column::SourceId.is_in(ids.iter().cloned()))
            .filter(customer::Column::DeleteTime.is_null())
            .select_only()
            .column(customer::Column::SourceId)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .group_by(customer::Column::SourceId)
            .into_tuple::<(String, i64)>()
            .all(self.db())
            .await?
            .into_iter()
            .collect())
    }

    /// Active customers per relationship, for the relationships `ids`.
    pub async fn relationship_customer_counts(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> AppResult<HashMap<String, i64>> {
        Ok(relationship_count::Entity::find()
            .filter(relationship_count::Column::TenantId.eq(tenant))
            .filter(relationship_count::Column::RelationshipId.is_in(ids.iter().cloned()))
            .select_only()
            .column(relationship_count::Column::RelationshipId)
            .column(relationship_count::Column::Customers)
            .into_tuple::<(String, i64)>()
            .all(self.db())
            .await?
            .into_iter()
            .collect())
    }
}
