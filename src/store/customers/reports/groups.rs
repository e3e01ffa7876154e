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

use super::{Cell, RelationshipTally, cells, closed_id, saturate, tallies};
use crate::store::customers::lists::members_of;
use crate::{
    domain::{
        report::{Period, revenue_from_halves},
        tenant::RequestContext,
    },
    entity::{
        customer, customer_group, customer_source, group_member, group_tally, membership_change,
    },
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
        let subtrees: Vec<Vec<String>> = rows
            .iter()
            .map(|group| {
                let mut members = vec![group.id.clone()];
                if query.include_subgroups {
                    members.extend(descendants_in(&edges, &group.id));
                }
                members
            })
            .collect();
        let active_groups: Vec<String> = edges.iter().map(|(id, _)| id.clone()).collect();
        let unbounded = query.period.is_unbounded();
        // Without a period, a group alone (no subtree to count each
        // customer of once) and the customers in no group are counted.
        let mut counted = if unbounded {
            let alone = subtrees.iter().filter(|m| m.len() == 1).map(|m| &m[0]);
            tally_cells(&tx, tenant, alone).await?
        } else {
            HashMap::new()
        };
        let mut report = Vec::with_capacity(rows.len() + 1);
        for (group, members) in rows.into_iter().zip(subtrees) {
            let mut row = if unbounded && members.len() == 1 {
                let cells = counted.remove(&group.id).unwrap_or_default();
                figures.row_of(Some(group), cells)
            } else {
                let selected = active_in_period(tenant, &query.period).filter(
                    customer::Column::Id.in_subquery(members_created_in(
                        tenant,
                        members.clone(),
                        &query.period,
                    )),
                );
                figures.row(&tx, Some(group), selected).await?
            };
            if !unbounded {
                (row.joined, row.left) = moves(&tx, tenant, &members, &query.period).await?;
            }
            report.push(row);
        }
        let ungrouped = if unbounded {
            let mut cells = counted.remove("").unwrap_or_default();
            let deleted: Vec<String> = groups
                .iter()
                .filter(|g| g.delete_time.is_some())
                .map(|g| g.id.clone())
                .collect();
            if !deleted.is_empty() {
                // The counters' no-group row has only customers without
                // any membership: those whose groups are all deleted are
                // in no active group too.
                let orphaned = in_tenant::<customer::Entity>(tenant)
                    .filter(customer::Column::DeleteTime.is_null())
                    .filter(customer::Column::Id.in_subquery(members_of(tenant, deleted)))
                    .filter(Expr::exists(own_memberships(tenant, active_groups)).not());
                cells.extend(super::cells(&tx, orphaned).await?);
            }
            figures.row_of(None, cells)
        } else {
            let ungrouped = active_in_period(tenant, &query.period);
            let ungrouped = if tx.get_database_backend() == DatabaseBackend::Postgres {
                // PostgreSQL re-reads a NOT IN subquery too large for its
                // memory once per customer: NOT EXISTS of the customer's own.
                ungrouped.filter(Expr::exists(own_memberships(tenant, active_groups)).not())
            } else {
                // SQLite builds the set once; a probe per customer is slower.
                ungrouped.filter(customer::Column::Id.not_in_subquery(members_created_in(
                    tenant,
                    active_groups,
                    &query.period,
                )))
            };
            figures.row(&tx, None, ungrouped).await?
        };
        report.push(ungrouped);
        tx.commit().await?;
        Ok(report)
    }
}

/// The active members of `groups` created in `period` (the group's copy
/// of each member's state: one range of an index per group).
fn members_created_in(
    tenant: &str,
    groups: Vec<String>,
    period: &Period,
) -> sea_orm::sea_query::SelectStatement {
    use group_member::Column as M;
    let mut members = members_of(tenant, groups);
    members.and_where(Expr::col(M::CustomerActive).eq(true));
    if let Some(from) = period.from {
        members.and_where(Expr::col(M::CustomerCreateTime).gte(from));
    }
    if let Some(to) = period.to {
        members.and_where(Expr::col(M::CustomerCreateTime).lt(to));
    }
    members
}

/// The memberships of `groups` held by the customer of the outer query.
fn own_memberships(tenant: &str, groups: Vec<String>) -> sea_orm::sea_query::SelectStatement {
    members_of(tenant, groups)
        .and_where(
            Expr::col((group_member::Entity, group_member::Column::CustomerId))
                .equals((customer::Entity, customer::Column::Id)),
        )
        .to_owned()
}

/// The stored tallies of `groups` and of the customers without any
/// membership (key `""`), as cells by group.
async fn tally_cells(
    db: &impl ConnectionTrait,
    tenant: &str,
    groups: impl Iterator<Item = &String>,
) -> AppResult<HashMap<String, Vec<Cell>>> {
    use group_tally::Column as T;
    let ids: Vec<String> = groups.cloned().chain([String::new()]).collect();
    let rows = group_tally::Entity::find()
        .filter(T::TenantId.eq(tenant))
        .filter(T::GroupId.is_in(ids))
        .filter(T::Customers.ne(0))
        .all(db)
        .await?;
    let mut cells: HashMap<String, Vec<Cell>> = HashMap::new();
    for row in rows {
        cells.entry(row.group_id).or_default().push(Cell {
            source_id: (!row.source_id.is_empty()).then_some(row.source_id),
            relationship_id: row.relationship_id,
            customers: row.customers,
            revenue: revenue_from_halves(row.revenue_high, row.revenue_low),
        });
    }
    Ok(cells)
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
        Ok(self.row_of(group, cells(db, selected).await?))
    }

    /// The row of `group` holding the customers of `cells`.
    fn row_of(&self, group: Option<customer_group::Model>, cells: Vec<Cell>) -> GroupFigures {
        let mut per_relationship: HashMap<String, i64> = HashMap::new();
        let mut per_source: BTreeMap<Option<String>, i64> = BTreeMap::new();
        let mut revenue = 0i128;
        for cell in cells {
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
        GroupFigures {
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
        }
    }
}
