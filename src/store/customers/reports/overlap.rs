//! How groups overlap: each group's active customers and, for every pair,
//! how many are in both, read in one snapshot so the figures agree.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait,
    sea_query::{Alias, Expr, ExprTrait, JoinType, Query},
};

use crate::{
    domain::tenant::RequestContext,
    entity::{customer_group, group_member, group_relationship_count},
    error::{AppError, AppResult, FieldViolation},
    store::{Store, resource},
};

/// The sizes of groups and of their pairwise intersections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlap {
    /// Active customers per group.
    pub sizes: HashMap<String, i64>,
    /// Active customers in both groups, by pair (the smaller id first);
    /// pairs with none are absent.
    pub both: HashMap<(String, String), i64>,
}

impl Overlap {
    /// Active customers in both `a` and `b`.
    pub fn both(&self, a: &str, b: &str) -> i64 {
        let pair = if a < b { (a, b) } else { (b, a) };
        self.both
            .get(&(pair.0.to_owned(), pair.1.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Active customers of `group`.
    pub fn size(&self, group: &str) -> i64 {
        self.sizes.get(group).copied().unwrap_or(0)
    }
}

impl Store {
    /// How the groups `ids` overlap; an id that names no group of the
    /// tenant is INVALID_ARGUMENT on `group_ids[i]`.
    pub async fn group_overlap(&self, ctx: &RequestContext, ids: &[String]) -> AppResult<Overlap> {
        let tenant = ctx.tenant.as_str();
        let snapshot = self.snapshot_of(tenant).await?;
        let db = snapshot.db();
        let mut unknown = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if !resource::exists::<customer_group::Entity>(db, tenant, id).await? {
                unknown.push(FieldViolation::new(
                    format!("group_ids[{i}]"),
                    format!("names no group of the tenant: `{id}`"),
                ));
            }
        }
        if !unknown.is_empty() {
            return Err(AppError::InvalidArgument(unknown));
        }
        let sizes = sizes(db, tenant, ids).await?;
        let both = intersections(db, tenant, ids).await?;
        snapshot.end(Overlap { sizes, both }).await.map(|o| o.read)
    }
}

/// Active customers per group, from the summary-bar counters.
async fn sizes(
    db: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
) -> AppResult<HashMap<String, i64>> {
    use group_relationship_count::Column as C;
    let query = Query::select()
        .column(C::GroupId)
        .expr(Expr::col(C::Customers).sum().cast_as("BIGINT"))
        .from(group_relationship_count::Entity)
        .and_where(Expr::col(C::TenantId).eq(tenant))
        .and_where(Expr::col(C::GroupId).is_in(ids.iter().cloned()))
        .group_by_col(C::GroupId)
        .to_owned();
    let mut sizes = HashMap::new();
    for row in db
        .query_all_raw(db.get_database_backend().build(&query))
        .await?
    {
        sizes.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    }
    Ok(sizes)
}

/// Active customers in both groups of every pair of `ids` that shares
/// any: the memberships of the groups joined with themselves on the
/// customer (each customer's few memberships found by
/// `group_members_by_customer`).
async fn intersections(
    db: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
) -> AppResult<HashMap<(String, String), i64>> {
    use group_member::Column as M;
    let (a, b) = (Alias::new("a"), Alias::new("b"));
    let query = Query::select()
        .expr(Expr::col((a.clone(), M::GroupId)))
        .expr(Expr::col((b.clone(), M::GroupId)))
        .expr(
            Expr::col((a.clone(), M::CustomerId))
                .count()
                .cast_as("BIGINT"),
        )
        .from_as(group_member::Entity, a.clone())
        .join_as(
            JoinType::InnerJoin,
            group_member::Entity,
            b.clone(),
            Expr::col((b.clone(), M::TenantId))
                .equals((a.clone(), M::TenantId))
                .and(Expr::col((b.clone(), M::CustomerId)).equals((a.clone(), M::CustomerId))),
        )
        .and_where(Expr::col((a.clone(), M::TenantId)).eq(tenant))
        .and_where(Expr::col((a.clone(), M::GroupId)).is_in(ids.iter().cloned()))
        .and_where(Expr::col((a.clone(), M::CustomerActive)).eq(true))
        .and_where(Expr::col((b.clone(), M::GroupId)).is_in(ids.iter().cloned()))
        .and_where(Expr::col((a.clone(), M::GroupId)).lt(Expr::col((b.clone(), M::GroupId))))
        .group_by_col((a.clone(), M::GroupId))
        .group_by_col((b, M::GroupId))
        .to_owned();
    let mut both = HashMap::new();
    for row in db
        .query_all_raw(db.get_database_backend().build(&query))
        .await?
    {
        let pair: (String, String) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        both.insert(pair, row.try_get_by_index(2)?);
    }
    Ok(both)
}
