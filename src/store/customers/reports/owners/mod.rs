//! The owner report, the manager's view of the sales team: per owner the
//! customers held now, those received (created with the owner) in the
//! period, how many of those were moved out of the default relationship
//! and how soon, and what the owner closed in the period.
//!
//! Filtered by source or group (as they were at the time) the figures are
//! read from the change log ([`log`]); unfiltered, from the tallies the
//! write path keeps for this report ([`tallied`]).

mod log;
mod tallied;

use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{closed_id, flow::LogSelection, relationships_in_order};
use crate::store::customers::lists::members_of;
use crate::{
    domain::tenant::RequestContext,
    entity::{customer, owner_count},
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
        let tallied = selection.is_unfiltered();
        let period = selection.period;
        let received = if tallied {
            tallied::received(&tx, tenant, period, closed.as_deref()).await?
        } else {
            log::received(&tx, tenant, selection, closed.as_deref()).await?
        };
        for (owner, n, converted) in received {
            let figures = row(&mut rows, owner);
            figures.received = n;
            figures.converted = converted;
        }
        if let Some(default) = default {
            let first_moves = if tallied {
                tallied::first_moves(&tx, tenant, period, &default).await?
            } else {
                log::first_moves(&tx, tenant, selection, &default).await?
            };
            for (owner, time) in first_moves {
                row(&mut rows, owner).times_to_move.push(time);
            }
        }
        if let Some(closed) = closed {
            let closers = if tallied {
                tallied::closers(&tx, tenant, period, &closed).await?
            } else {
                log::closers(&tx, tenant, selection, &closed).await?
            };
            for (owner, n, revenue) in closers {
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
/// and group: from the owners' counters when there is neither.
async fn held(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
) -> AppResult<Vec<(String, i64)>> {
    if selection.is_unfiltered() {
        use owner_count::Column as O;
        return Ok(owner_count::Entity::find()
            .filter(O::TenantId.eq(tenant))
            .filter(O::Customers.ne(0))
            .select_only()
            .column(O::OwnerId)
            .column(O::Customers)
            .into_tuple()
            .all(db)
            .await?);
    }
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
