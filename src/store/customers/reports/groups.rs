//! The report by customer group: for each group (or its subtree) and for
//! the customers in no group, how many active customers it holds per
//! relationship and per source, the closed ones, their revenue, and who
//! joined and left it in the period (from the membership log).

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
    sea_query::{Expr, ExprTrait},
};

use super::{RelationshipTally, cells, closed_id, saturate, tallies};
use crate::store::customers::lists::members_of;
use crate::{
    domain::{report::Period, tenant::RequestContext},
    entity::{customer, customer_group, customer_source, group_member, membership_change},
    error::{AppError, AppResult},
    store::{
        Store,
        catalogs::groups::descendants_in,
        resource::{in_tenant, unknown_violation},
        snapshot,
    },
};

/// What the report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupReportQuery {
    /// The groups, distinct; empty for every active group.
    pub group_ids: Vec<String>,
    /// Whether a group's row counts its active subtree.
    pub include_subgroups: bool,
    /// Customers created in it; joins and leaves made in it.
    pub period: Period,
}

/// One row of the group report.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFigures {
    /// The group; `None` for the customers in no active group.
    pub group: Option<customer_group::Model>,
    /// Active customers created in the period.
    pub customers: i64,
    /// Per active relationship, in position order.
    pub tallies: Vec<RelationshipTally>,
    /// Per source (`None`: no source), sources in name order, then none;
    /// only those with customers.
    pub sources: Vec<(Option<String>, i64)>,
    /// In the CLOSED relationship.
    pub closed: i64,
    /// Sum of revenue, saturated at the bounds of `i64`.
    pub revenue: i64,
    /// Customers who joined in the period (only with a bounded period).
    pub joined: i64,
    /// Customers who left in the period (only with a bounded period).
    pub left: i64,
}

impl Store {
    /// The report by group, read in one snapshot. A group id that names no
    /// group of the tenant is INVALID_ARGUMENT on `group_ids[i]`.
    pub async fn group_report(
        &self,
        ctx: &RequestContext,
        query: &GroupReportQuery,
    ) -> AppResult<Vec<GroupFigures>> {
        let tenant = ctx.tenant.as_str();
        let provisioned = self.tenant_exists(&ctx.tenant).await?;
        let tx = snapshot(self.db()).await?;
        let groups: Vec<customer_group::Model> = in_tenant::<customer_group::Entity>(tenant)
            .order_by_asc(customer_group::Column::SortKey)
            .order_by_asc(customer_group::Column::Id)
            .all(&tx)
            .await?;
        let rows = chosen_groups(&groups, &query.group_ids)?;
        let relationships = self.active_relationships(&tx, ctx, provisioned).await?;
        let sources: Vec<String> = in_tenant::<customer_source::Entity>(tenant)
            .order_by_asc(customer_source::Column::SortKey)
            .order_by_asc(customer_source::Column::Id)
            .select_only()
            .column(customer_source::Column::Id)
            .into_tuple()
            .all(&tx)
            .await?;
        let figures = Figures {
            closed: closed_id(&relationships),
            relationships,
            sources,
        };
        let edges: Vec<(String, Option<String>)> = groups
            .iter()
            .filter(|g| g.delete_time.is_none())
            .map(|g| (g.id.clone(), g.parent_id.clone()))
            .collect();
        let mut report = Vec::with_capacity(rows.len() + 1);
        for group in rows {
            let mut members = vec![group.id.clone()];
            if query.include_subgroups {
                members.extend(descendants_in(&edges, &group.id));
            }
            let selected = active_in_period(tenant, &query.period).filter(
                customer::Column::Id.in_subquery(members_of(tenant, members.iter().cloned())),
            );
            let mut row = figures.row(&tx, Some(group), selected).await?;
            if !query.period.is_unbounded() {
                (row.joined, row.left) = moves(&tx, tenant, &members, &query.period).await?;
            }
            report.push(row);
        }
        // Customers with a membership of an active group.
        let active_groups: Vec<String> = edges.iter().map(|(id, _)| id.clone()).collect();
        let mut grouped = members_of(tenant, active_groups);
        let ungrouped = active_in_period(tenant, &query.period);
        let ungrouped = if tx.get_database_backend() == DatabaseBackend::Postgres {
            // PostgreSQL re-reads a NOT IN subquery too large for its
            // memory once per customer: NOT EXISTS of the customer's own.
            grouped.and_where(
                Expr::col((group_member::Entity, group_member::Column::CustomerId))
                    .equals((customer::Entity, customer::Column::Id)),
            );
            ungrouped.filter(Expr::exists(grouped).not())
        } else {
            // SQLite builds the set once; a probe per customer is slower.
            ungrouped.filter(customer::Column::Id.not_in_subquery(grouped))
        };
        report.push(figures.row(&tx, None, ungrouped).await?);
        tx.commit().await?;
        Ok(report)
    }
}

/// The groups the report has a row for: those asked, in their order, or
/// every active group in name order (`groups` is in name order).
fn chosen_groups(
    groups: &[customer_group::Model],
    asked: &[String],
) -> AppResult<Vec<customer_group::Model>> {
    if asked.is_empty() {
        return Ok(groups
            .iter()
            .filter(|g| g.delete_time.is_none())
            .cloned()
            .collect());
    }
    let by_id: HashMap<&str, &customer_group::Model> =
        groups.iter().map(|g| (g.id.as_str(), g)).collect();
    let mut unknown = Vec::new();
    let mut chosen = Vec::with_capacity(asked.len());
    for (i, id) in asked.iter().enumerate() {
        match by_id.get(id.as_str()) {
            Some(group) => chosen.push((*group).clone()),
            None => unknown.push(unknown_violation::<customer_group::Entity>(
                format!("group_ids[{i}]"),
                id,
            )),
        }
    }
    if unknown.is_empty() {
        Ok(chosen)
    } else {
        Err(AppError::InvalidArgument(unknown))
    }
}

/// The tenant's active customers created in `period`.
pub(super) fn active_in_period(tenant: &str, period: &Period) -> Select<customer::Entity> {
    let mut query =
        in_tenant::<customer::Entity>(tenant).filter(customer::Column::DeleteTime.is_null());
    if let Some(from) = period.from {
        query = query.filter(customer::Column::CreateTime.gte(from));
    }
    if let Some(to) = period.to {
        query = query.filter(customer::Column::CreateTime.lt(to));
    }
    query
}

/// How many customers joined and how many left any of `groups` in
/// `period` (each customer once per direction).
async fn moves(
    db: &impl ConnectionTrait,
    tenant: &str,
    groups: &[String],
    period: &Period,
) -> AppResult<(i64, i64)> {
    use membership_change::Column as M;
    let mut query = membership_change::Entity::find()
        .filter(M::TenantId.eq(tenant))
        .filter(M::GroupId.is_in(groups.iter().cloned()));
    if let Some(from) = period.from {
        query = query.filter(M::ChangeTime.gte(from));
    }
    if let Some(to) = period.to {
        query = query.filter(M::ChangeTime.lt(to));
    }
    let counts: Vec<(bool, i64)> = query
        .select_only()
        .column(M::Joined)
        .column_as(
            Expr::cust("COUNT(DISTINCT customer_id)").cast_as("BIGINT"),
            "n",
        )
        .group_by(M::Joined)
        .into_tuple()
        .all(db)
        .await?;
    let count = |joined: bool| {
        counts
            .iter()
            .find(|(j, _)| *j == joined)
            .map_or(0, |(_, n)| *n)
    };
    Ok((count(true), count(false)))
}

/// What every row is counted against.
struct Figures {
    relationships: Vec<crate::entity::relationship::Model>,
    closed: Option<String>,
    /// Every source id of the tenant, in name order.
    sources: Vec<String>,
}

impl Figures {
    /// The row of `group` over the customers `selected` picks.
    async fn row(
        &self,
        db: &impl ConnectionTrait,
        group: Option<customer_group::Model>,
        selected: Select<customer::Entity>,
    ) -> AppResult<GroupFigures> {
        let mut per_relationship: HashMap<String, i64> = HashMap::new();
        let mut per_source: BTreeMap<Option<String>, i64> = BTreeMap::new();
        let mut revenue = 0i128;
        for cell in cells(db, selected).await? {
            *per_relationship.entry(cell.relationship_id).or_default() += cell.customers;
            *per_source.entry(cell.source_id).or_default() += cell.customers;
            revenue += cell.revenue;
        }
        let mut sources: Vec<(Option<String>, i64)> = self
            .sources
            .iter()
            .filter_map(|id| {
                per_source
                    .remove(&Some(id.clone()))
                    .map(|n| (Some(id.clone()), n))
            })
            .collect();
        // The customers without a source last (and any source the
        // listing did not hold, which a snapshot rules out).
        let none = per_source.remove(&None);
        sources.extend(per_source);
        sources.extend(none.map(|n| (None, n)));
        Ok(GroupFigures {
            group,
            customers: per_relationship.values().sum(),
            closed: self
                .closed
                .as_ref()
                .and_then(|id| per_relationship.get(id))
                .copied()
                .unwrap_or(0),
            tallies: tallies(&self.relationships, &per_relationship),
            sources,
            revenue: saturate(revenue),
            joined: 0,
            left: 0,
        })
    }
}
