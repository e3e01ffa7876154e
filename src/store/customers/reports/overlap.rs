//! How groups overlap: each group's active customers and, for every pair,
//! how many are in both, read in one snapshot so the figures agree.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};

use crate::{
    domain::tenant::RequestContext,
    entity::{customer_group, group_member, group_relationship_count},
    error::{AppError, AppResult},
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
        let named: Vec<(String, &str)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("group_ids[{i}]"), id.as_str()))
            .collect();
        let unknown = resource::unknown::<customer_group::Entity>(db, tenant, &named).await?;
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
/// any: each group's active members read (one range of the primary key
/// per group) and sorted, then every pair's lists merged, instead of a
/// lookup of every membership's customer.
async fn intersections(
    db: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
) -> AppResult<HashMap<(String, String), i64>> {
    use group_member::Column as M;
    let mut members: Vec<(&String, Vec<String>)> = Vec::with_capacity(ids.len());
    for id in ids {
        let mut customers: Vec<String> = group_member::Entity::find()
            .filter(M::TenantId.eq(tenant))
            .filter(M::GroupId.eq(id))
            .filter(M::CustomerActive.eq(true))
            .select_only()
            .column(M::CustomerId)
            .into_tuple()
            .all(db)
            .await?;
        // Byte order, whatever the database's collation.
        customers.sort_unstable();
        members.push((id, customers));
    }
    let mut both = HashMap::new();
    for (i, (a, of_a)) in members.iter().enumerate() {
        for (b, of_b) in &members[i + 1..] {
            let shared = sorted_intersection(of_a, of_b);
            if shared > 0 {
                let pair = if a < b { (a, b) } else { (b, a) };
                both.insert(((*pair.0).clone(), (*pair.1).clone()), shared);
            }
        }
    }
    Ok(both)
}

/// How many values two ascending lists share.
fn sorted_intersection(a: &[String], b: &[String]) -> i64 {
    let (mut i, mut j, mut shared) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::sorted_intersection;

    #[test]
    fn sorted_lists_share_what_both_hold() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sorted_intersection(&list(&["a", "c", "e"]), &list(&["b", "c", "d", "e"])),
            2
        );
        assert_eq!(sorted_intersection(&list(&[]), &list(&["a"])), 0);
        assert_eq!(
            sorted_intersection(&list(&["a", "b"]), &list(&["a", "b"])),
            2
        );
    }
}
