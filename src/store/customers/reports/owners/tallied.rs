//! The owner report's figures without a group or source filter, from the
//! tallies the write path keeps (migration 18): a period's whole UTC days
//! from `reception_tallies` and `arrival_tallies`, the parts of days at its
//! ends from the log, the first moves from `first_moves`, and the received
//! customers now in CLOSED from `relationship_members`.
//!
//! The closed figure counts each customer once per owner: a move into
//! CLOSED counts when the same customer's previous move into it with the
//! same owner lies before the period (or there is none). The tallies key
//! each move by the day of that previous move, which decides it for whole
//! days; where the period starts inside a day, the moves whose previous
//! one falls in that day before the start are found from the log.

use std::collections::BTreeMap;

use migrations::tallies::{DAY, NO_PREVIOUS_DAY, day_of};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Statement,
    Value,
    sea_query::{Expr, ExprTrait},
};

use super::log;
use crate::{
    domain::report::{Period, revenue_from_halves},
    entity::{arrival_tally, first_move, reception_tally},
    error::AppResult,
    store::customers::reports::{
        REVENUE_HIGH, REVENUE_LOW, bounded,
        daily::{DayCut, in_days, only},
        placeholder, revenue_sum_sql, rows_of, saturate,
    },
};

/// Per owner at creation: customers created in `period` and how many of
/// them are now in `closed`.
pub(super) async fn received(
    db: &impl ConnectionTrait,
    tenant: &str,
    period: Period,
    closed: Option<&str>,
) -> AppResult<Vec<(String, i64, i64)>> {
    let cut = DayCut::of(period);
    let mut found: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    if let Some(days) = cut.days {
        use reception_tally::Column as R;
        let query = reception_tally::Entity::find().filter(R::TenantId.eq(tenant));
        let rows: Vec<(String, i64)> = in_days(query, R::CreateDay, days)
            .select_only()
            .column(R::OwnerId)
            .column_as(Expr::col(R::Customers).sum().cast_as("BIGINT"), "n")
            .group_by(R::OwnerId)
            .into_tuple()
            .all(db)
            .await?;
        for (owner, n) in rows {
            found.entry(owner).or_default().0 += n;
        }
    }
    for part in cut.partial {
        for (owner, n, _) in log::received(db, tenant, &only(part), None).await? {
            found.entry(owner).or_default().0 += n;
        }
    }
    if let Some(closed) = closed {
        for (owner, n) in converted(db, tenant, period, closed).await? {
            found.entry(owner).or_default().1 += n;
        }
    }
    Ok(found
        .into_iter()
        .filter(|(_, (n, _))| *n != 0)
        .map(|(owner, (n, converted))| (owner, n, converted))
        .collect())
}

/// Per owner at creation: the customers created in `period` that are in
/// `closed` now (deleted ones included), from `relationship_members` (their
/// present relationship by creation time) and each one's creation in the
/// log (its owner then).
async fn converted(
    db: &impl ConnectionTrait,
    tenant: &str,
    period: Period,
    closed: &str,
) -> AppResult<Vec<(String, i64)>> {
    let backend = db.get_database_backend();
    let mut found = Vec::new();
    for active in [true, false] {
        let mut values: Vec<Value> = vec![tenant.into(), closed.into(), active.into()];
        let bounds = bounded(
            backend,
            &mut values,
            &[
                (period.from, "m.customer_create_time >="),
                (period.to, "m.customer_create_time <"),
            ],
        );
        let (tenant_at, closed_at, active_at) = (
            placeholder(backend, 1),
            placeholder(backend, 2),
            placeholder(backend, 3),
        );
        let sql = format!(
            "SELECT o.owner_id, COUNT(*)
             FROM relationship_members m
             JOIN relationship_changes o ON o.tenant_id = m.tenant_id
                AND o.customer_id = m.customer_id AND o.old_relationship_id = ''
             WHERE m.tenant_id = {tenant_at} AND m.relationship_id = {closed_at}
               AND m.customer_active = {active_at}{bounds}
             GROUP BY o.owner_id"
        );
        let statement = Statement::from_sql_and_values(backend, sql, values);
        found.extend(rows_of::<(String, i64)>(db, statement).await?);
    }
    Ok(found)
}

/// For each customer created in `period` in `default` and moved since,
/// its owner at creation and the time until its first move.
pub(super) async fn first_moves(
    db: &impl ConnectionTrait,
    tenant: &str,
    period: Period,
    default: &str,
) -> AppResult<Vec<(String, i64)>> {
    use first_move::Column as F;
    Ok(first_move::Entity::find()
        .filter(F::TenantId.eq(tenant))
        .filter(F::CreatedIn.eq(default))
        .apply_if(period.from, |q, from| q.filter(F::CreateTime.gte(from)))
        .apply_if(period.to, |q, to| q.filter(F::CreateTime.lt(to)))
        .select_only()
        .column(F::OwnerId)
        .column(F::TimeToMove)
        .into_tuple()
        .all(db)
        .await?)
}

/// Per owner at the time: the customers moved into `closed` in `period`,
/// each once, and the sum of their present revenue.
pub(super) async fn closers(
    db: &impl ConnectionTrait,
    tenant: &str,
    period: Period,
    closed: &str,
) -> AppResult<Vec<(String, i64, i64)>> {
    let cut = DayCut::of(period);
    let mut found: BTreeMap<String, (i64, i128)> = BTreeMap::new();
    let mut add = |rows: Vec<(String, i64, i64, i64)>| {
        for (owner, n, high, low) in rows {
            let sums = found.entry(owner).or_default();
            sums.0 += n;
            sums.1 += revenue_from_halves(high, low);
        }
    };
    if let Some(days) = cut.days {
        // Counted: the moves whose previous one is on a day before the
        // period's first (or that have none).
        let before = period.from.map_or(NO_PREVIOUS_DAY + 1, day_of);
        use arrival_tally::Column as A;
        let query = arrival_tally::Entity::find()
            .filter(A::TenantId.eq(tenant))
            .filter(A::RelationshipId.eq(closed))
            .filter(A::PreviousDay.lt(before));
        add(in_days(query, A::ArrivalDay, days)
            .select_only()
            .column(A::OwnerId)
            .column_as(Expr::col(A::Arrivals).sum().cast_as("BIGINT"), "n")
            .column_as(Expr::col(A::RevenueHigh).sum().cast_as("BIGINT"), "high")
            .column_as(Expr::col(A::RevenueLow).sum().cast_as("BIGINT"), "low")
            .group_by(A::OwnerId)
            .into_tuple()
            .all(db)
            .await?);
        // And those whose previous one is on the period's first day, before
        // its start.
        if let (Some(from), Some(first)) = (period.from, days.0)
            && from.rem_euclid(DAY) != 0
        {
            let after_start = Period {
                from: Some(day_of(from) * DAY),
                to: Some(from),
            };
            let whole_days = Period {
                from: Some(first * DAY),
                to: days.1.map(|end| end * DAY),
            };
            add(followed_into(db, tenant, closed, after_start, whole_days).await?);
        }
    }
    for part in cut.partial {
        add(first_arrivals(db, tenant, closed, part, period.from).await?);
    }
    Ok(found
        .into_iter()
        .filter(|(_, (n, _))| *n != 0)
        .map(|(owner, (n, revenue))| (owner, n, saturate(revenue)))
        .collect())
}

/// A move into a relationship (not a creation) of the customer `c`, and
/// one made before `m` in the log's order of moves: time, then sequence.
const SAME_MOVE: &str = "m.tenant_id = c.tenant_id AND m.customer_id = c.customer_id
    AND m.new_relationship_id = c.new_relationship_id AND m.owner_id = c.owner_id
    AND m.old_relationship_id <> ''";

/// Per owner: the moves `c` into `relationship` in `part` that have no
/// earlier move into it (same customer and owner) at or after `since`
/// (none at all when `since` is open), with their customers' revenue.
async fn first_arrivals(
    db: &impl ConnectionTrait,
    tenant: &str,
    relationship: &str,
    part: Period,
    since: Option<i64>,
) -> AppResult<Vec<(String, i64, i64, i64)>> {
    let backend = db.get_database_backend();
    let mut values: Vec<Value> = vec![tenant.into(), relationship.into()];
    let conditions = bounded(
        backend,
        &mut values,
        &[
            (part.from, "c.change_time >="),
            (part.to, "c.change_time <"),
        ],
    );
    let earlier = bounded(backend, &mut values, &[(since, "m.change_time >=")]);
    let (tenant_at, relationship_at) = (placeholder(backend, 1), placeholder(backend, 2));
    let sql = format!(
        "SELECT c.owner_id, COUNT(*), {high}, {low}
         FROM relationship_changes c JOIN customers k ON k.id = c.customer_id
         WHERE c.tenant_id = {tenant_at} AND c.new_relationship_id = {relationship_at}
           AND c.old_relationship_id <> ''{conditions}
           AND NOT EXISTS (SELECT 1 FROM relationship_changes m WHERE {SAME_MOVE}
               AND (m.change_time < c.change_time
                    OR (m.change_time = c.change_time AND m.sequence < c.sequence)){earlier})
         GROUP BY c.owner_id",
        high = revenue_sum_sql(REVENUE_HIGH),
        low = revenue_sum_sql(REVENUE_LOW),
    );
    rows_of(db, Statement::from_sql_and_values(backend, sql, values)).await
}

/// Per owner: the customers' next moves into `relationship` (same owner)
/// after each of their moves into it in `earlier`, where that next move
/// falls in `later`, with their customers' revenue.
async fn followed_into(
    db: &impl ConnectionTrait,
    tenant: &str,
    relationship: &str,
    earlier: Period,
    later: Period,
) -> AppResult<Vec<(String, i64, i64, i64)>> {
    let backend = db.get_database_backend();
    let mut values: Vec<Value> = vec![tenant.into(), relationship.into()];
    let bounds = bounded(
        backend,
        &mut values,
        &[
            (earlier.from, "c.change_time >="),
            (earlier.to, "c.change_time <"),
        ],
    );
    let later_bounds = bounded(
        backend,
        &mut values,
        &[(later.from, "next_time >="), (later.to, "next_time <")],
    );
    let (tenant_at, relationship_at) = (placeholder(backend, 1), placeholder(backend, 2));
    let sql = format!(
        "SELECT f.owner_id, COUNT(*), {high}, {low}
         FROM (SELECT c.owner_id, c.customer_id,
                 (SELECT m.change_time FROM relationship_changes m WHERE {SAME_MOVE}
                     AND (m.change_time > c.change_time
                          OR (m.change_time = c.change_time AND m.sequence > c.sequence))
                  ORDER BY m.change_time, m.sequence LIMIT 1) AS next_time
               FROM relationship_changes c
               WHERE c.tenant_id = {tenant_at} AND c.new_relationship_id = {relationship_at}
                 AND c.old_relationship_id <> ''{bounds}) f
         JOIN customers k ON k.id = f.customer_id
         WHERE next_time IS NOT NULL{later_bounds}
         GROUP BY f.owner_id",
        high = revenue_sum_sql(REVENUE_HIGH),
        low = revenue_sum_sql(REVENUE_LOW),
    );
    rows_of(db, Statement::from_sql_and_values(backend, sql, values)).await
}
