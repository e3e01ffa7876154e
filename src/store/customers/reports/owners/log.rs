//! The owner report's figures from the change log itself: any filter the
//! log keeps (source, group at the time), and the parts of days the tallies
//! leave to it.

use sea_orm::{
    ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use crate::{
    domain::report::revenue_from_halves,
    entity::{customer, relationship_change},
    error::AppResult,
    store::customers::reports::{
        REVENUE_HIGH, REVENUE_LOW, flow::LogSelection, revenue_sum, rows_of, saturate,
    },
};

/// Customers created in the period, per owner at creation, and how many
/// of them are now in `closed`.
pub(super) async fn received(
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
    rows_of(db, db.get_database_backend().build(&query)).await
}

/// For each customer created in the period in `default` and moved since,
/// its owner at creation and the time until its first move.
pub(super) async fn first_moves(
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
pub(super) async fn closers(
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
    let rows: Vec<(String, i64, i64, i64)> =
        rows_of(db, db.get_database_backend().build(&query)).await?;
    Ok(rows
        .into_iter()
        .map(|(owner, n, high, low)| (owner, n, saturate(revenue_from_halves(high, low))))
        .collect())
}
