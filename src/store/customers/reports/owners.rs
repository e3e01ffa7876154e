//! The owner report, the manager's view of the sales team: per owner the
//! customers held now, those received (created with the owner) in the
//! period, how many of those were moved out of the default relationship
//! and how soon, and what the owner closed in the period.

use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use super::{
    REVENUE_HIGH, REVENUE_LOW, closed_id, flow::LogSelection, relationships_in_order, revenue_sum,
    saturate,
};
use crate::store::customers::lists::members_of;
use crate::{
    domain::tenant::RequestContext,
    entity::{customer, relationship_change},
    error::AppResult,
    store::{Store, resource::in_tenant, snapshot},
};

/// One row of the owner report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerFigures {
    /// The owner; empty for unowned customers.
    pub owner_id: String,
    /// Active customers held now.
    pub customers: i64,
    /// Customers created in the period with this owner.
    pub received: i64,
    /// Of those, the ones now in CLOSED.
    pub converted: i64,
    /// For each received customer created in the default relationship and
    /// moved out of it since: the time until that first move, shortest
    /// first.
    pub times_to_move: Vec<i64>,
    /// Customers moved into CLOSED in the period while this owner's.
    pub closed: i64,
    /// The closed customers' present revenue, saturated.
    pub revenue: i64,
}

impl Store {
    /// The owner report over the changes `selection` picks (its owner is
    /// not used), read in one snapshot: owners with any figure in id
    /// order, then the unowned row.
    pub async fn owner_report(
        &self,
        ctx: &RequestContext,
        selection: &LogSelection,
    ) -> AppResult<Vec<OwnerFigures>> {
        let tenant = ctx.tenant.as_str();
        let tx = snapshot(self.db()).await?;
        selection.check(&tx, tenant).await?;
        let mut rows: BTreeMap<String, OwnerFigures> = BTreeMap::new();
        for (owner, n) in held(&tx, tenant, selection).await? {
            row(&mut rows, owner).customers = n;
        }
        let relationships = relationships_in_order(&tx, tenant).await?;
        let default = relationships
            .iter()
            .find(|r| r.is_default)
            .map(|r| r.id.clone());
        let closed = closed_id(&relationships);
        for (owner, n, converted) in received(&tx, tenant, selection, closed.as_deref()).await? {
            let figures = row(&mut rows, owner);
            figures.received = n;
            figures.converted = converted;
        }
        if let Some(default) = default {
            for (owner, time) in first_moves(&tx, tenant, selection, &default).await? {
                row(&mut rows, owner).times_to_move.push(time);
            }
        }
        if let Some(closed) = closed {
            for (owner, n, revenue) in closers(&tx, tenant, selection, &closed).await? {
                let figures = row(&mut rows, owner);
                figures.closed = n;
                figures.revenue = revenue;
            }
        }
        tx.commit().await?;
        let unowned = rows.remove("").unwrap_or_default();
        let mut report: Vec<OwnerFigures> = rows.into_values().collect();
        report.push(unowned);
        for figures in &mut report {
            figures.times_to_move.sort_unstable();
        }
        Ok(report)
    }
}

/// The row of `owner`, made when missing.
fn row(rows: &mut BTreeMap<String, OwnerFigures>, owner: String) -> &mut OwnerFigures {
    rows.entry(owner.clone()).or_insert_with(|| OwnerFigures {
        owner_id: owner,
        ..Default::default()
    })
}

/// Active customers per present owner, with the selection's present source
/// and group.
async fn held(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
) -> AppResult<Vec<(String, i64)>> {
    let mut query =
        in_tenant::<customer::Entity>(tenant).filter(customer::Column::DeleteTime.is_null());
    if let Some(source) = &selection.source_id {
        query = query.filter(customer::Column::SourceId.eq(source));
    }
    if let Some(group) = &selection.group_id {
        query = query.filter(customer::Column::Id.in_subquery(members_of(tenant, [group.clone()])));
    }
    Ok(query
        .select_only()
        .column(customer::Column::OwnerId)
        .column_as(Expr::cust("COUNT(*)").cast_as("BIGINT"), "n")
        .group_by(customer::Column::OwnerId)
        .into_tuple()
        .all(db)
        .await?)
}

/// Customers created in the period, per owner at creation, and how many
/// of them are now in `closed`.
async fn received(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
    closed: Option<&str>,
) -> AppResult<Vec<(String, i64, i64)>> {
    use relationship_change::Column as C;
    let now_closed = Expr::col((customer::Entity, customer::Column::RelationshipId))
        .eq(closed.unwrap_or_default());
    let query = selection
        .changes(tenant)
        .filter(C::OldRelationshipId.eq(""))
        .select_only()
        .column(C::OwnerId)
        .column_as(Expr::cust("COUNT(*)").cast_as("BIGINT"), "n")
        .column_as(
            Expr::case(now_closed, 1).finally(0).sum().cast_as("BIGINT"),
            "converted",
        )
        .group_by(C::OwnerId)
        .into_query()
        .inner_join(
            customer::Entity,
            Expr::col((customer::Entity, customer::Column::Id))
                .equals((relationship_change::Entity, C::CustomerId)),
        )
        .to_owned();
    let mut found = Vec::new();
    let backend = db.get_database_backend();
    for row in db.query_all_raw(backend.build(&query)).await? {
        found.push((
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        ));
    }
    Ok(found)
}

/// For each customer created in the period in `default` and moved since,
/// its owner at creation and the time until its first move.
async fn first_moves(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
    default: &str,
) -> AppResult<Vec<(String, i64)>> {
    use relationship_change::Column as C;
    let next = Alias::new("next_change");
    let moved = Query::select()
        .expr(Expr::col((next.clone(), C::ChangeTime)))
        .from_as(relationship_change::Entity, next.clone())
        .and_where(Expr::col((next.clone(), C::TenantId)).eq(tenant))
        .and_where(
            Expr::col((next.clone(), C::CustomerId))
                .equals((relationship_change::Entity, C::CustomerId)),
        )
        .and_where(
            Expr::col((next.clone(), C::Sequence))
                .gt(Expr::col((relationship_change::Entity, C::Sequence))),
        )
        .order_by((next, C::Sequence), sea_orm::Order::Asc)
        .limit(1)
        .to_owned();
    let rows: Vec<(String, i64, Option<i64>)> = selection
        .changes(tenant)
        .filter(C::OldRelationshipId.eq(""))
        .filter(C::NewRelationshipId.eq(default))
        .select_only()
        .column(C::OwnerId)
        .column(C::ChangeTime)
        .column_as(Expr::SubQuery(None, Box::new(moved.into())), "moved")
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(owner, created, moved)| Some((owner, moved? - created)))
        .collect())
}

/// Per owner at the time: the customers moved into `closed` in the period
/// (each once; not those created in it) and the sum of their present
/// revenue.
async fn closers(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
    closed: &str,
) -> AppResult<Vec<(String, i64, i64)>> {
    use relationship_change::Column as C;
    let closings = Alias::new("closings");
    // Moves only: a customer created in CLOSED was not moved into it
    // (creations are not moves, as in the flow report).
    let distinct = selection
        .changes(tenant)
        .filter(C::OldRelationshipId.ne(""))
        .filter(C::NewRelationshipId.eq(closed))
        .select_only()
        .column(C::OwnerId)
        .column(C::CustomerId)
        .distinct()
        .into_query();
    let query = Query::select()
        .expr(Expr::col((closings.clone(), C::OwnerId)))
        .expr(Expr::cust("COUNT(*)").cast_as("BIGINT"))
        .expr(revenue_sum(REVENUE_HIGH))
        .expr(revenue_sum(REVENUE_LOW))
        .from_subquery(distinct, closings.clone())
        .inner_join(
            customer::Entity,
            Expr::col((customer::Entity, customer::Column::Id))
                .equals((closings.clone(), C::CustomerId)),
        )
        .group_by_col((closings, C::OwnerId))
        .to_owned();
    let mut found = Vec::new();
    let backend = db.get_database_backend();
    for row in db.query_all_raw(backend.build(&query)).await? {
        let high: i64 = row.try_get_by_index(2)?;
        let low: i64 = row.try_get_by_index(3)?;
        found.push((
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            saturate((i128::from(high) << 32) + i128::from(low)),
        ));
    }
    Ok(found)
}
