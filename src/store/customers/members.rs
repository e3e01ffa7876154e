//! Reading a group's membership: its members with why each one is in, and
//! what a rule would select (and change in a group) before it is saved.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, sea_query::Query,
};

use super::{CustomerRecord, group_rules::check_rule, lists::filtered, reports::Tallies};
use crate::{
    domain::{
        customer::{CustomerFilter, CustomerOrder},
        paging::{Cursor, CursorKind, CursorValue, DeletedFilter, Page, PageRequest},
        tenant::RequestContext,
    },
    entity::{customer, customer_group, group_exclusion, group_member},
    error::AppResult,
    store::{Store, db::snapshot::AsOf, resource},
};

/// Why a customer is listed with a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reasons {
    /// The rule matches it.
    pub rule: bool,
    /// Added by hand.
    pub pinned: bool,
    /// Pinned out (not a member).
    pub pinned_out: bool,
}

/// One listed member (or pinned-out customer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The customer.
    pub customer_id: String,
    /// Why.
    pub reasons: Reasons,
}

/// What a rule would do.
#[derive(Debug)]
pub struct Preview {
    /// The active customers it matches, by relationship.
    pub tallies: Tallies,
    /// The first of them, newest first.
    pub first: Vec<CustomerRecord>,
    /// With a group: customers that would join it, and members that would
    /// leave it.
    pub joining: i64,
    /// See `joining`.
    pub leaving: i64,
}

impl Store {
    /// A page of group `group_id`'s members in customer id order (with the
    /// customers pinned out of it when `pinned_out`), and the membership
    /// sequence the page reflects.
    pub async fn list_group_members(
        &self,
        ctx: &RequestContext,
        group_id: &str,
        pinned_out: bool,
        page: &PageRequest,
    ) -> AppResult<AsOf<Page<Member>>> {
        let tenant = ctx.tenant.as_str();
        resource::find::<customer_group::Entity>(self.db(), tenant, group_id).await?;
        let after = match &page.after {
            Some(cursor) => {
                cursor.check(&[CursorKind::Id])?;
                match &cursor.0[0] {
                    CursorValue::Text(id) => id.clone(),
                    CursorValue::Int(_) => String::new(),
                }
            }
            None => String::new(),
        };
        let snapshot = self.snapshot_of(tenant).await?;
        let db = snapshot.db();
        let sequence = snapshot.membership_sequence().await?;
        let members = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::CustomerActive.eq(true));
        let mut total = members.clone().count(db).await?;
        let mut listed: Vec<Member> = members
            .filter(group_member::Column::CustomerId.gt(after.as_str()))
            .order_by_asc(group_member::Column::CustomerId)
            .limit(page.size + 1)
            .all(db)
            .await?
            .into_iter()
            .map(|m| Member {
                customer_id: m.customer_id,
                reasons: Reasons {
                    rule: m.matched,
                    pinned: m.pinned,
                    pinned_out: false,
                },
            })
            .collect();
        if pinned_out {
            let active = Query::select()
                .column(customer::Column::Id)
                .from(customer::Entity)
                .and_where(customer::Column::TenantId.eq(tenant))
                .and_where(customer::Column::DeleteTime.is_null())
                .to_owned();
            let out = group_exclusion::Entity::find()
                .filter(group_exclusion::Column::TenantId.eq(tenant))
                .filter(group_exclusion::Column::GroupId.eq(group_id))
                .filter(group_exclusion::Column::CustomerId.in_subquery(active));
            total += out.clone().count(db).await?;
            listed.extend(
                out.filter(group_exclusion::Column::CustomerId.gt(after.as_str()))
                    .order_by_asc(group_exclusion::Column::CustomerId)
                    .limit(page.size + 1)
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|e| Member {
                        customer_id: e.customer_id,
                        reasons: Reasons {
                            rule: false,
                            pinned: false,
                            pinned_out: true,
                        },
                    }),
            );
            listed.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        }
        let next = if listed.len() as u64 > page.size {
            listed.truncate(page.size as usize);
            listed
                .last()
                .map(|m| Cursor(vec![CursorValue::Text(m.customer_id.clone())]))
        } else {
            None
        };
        let page = Page {
            items: listed,
            next,
            total,
        };
        // The membership log's position, not the relationship log's.
        let mut read = snapshot.end(page).await?;
        read.sequence = sequence;
        Ok(read)
    }

    /// What rule `rule` would select (its `first_page` of customers with
    /// the counts), and with `group_id` how it would change that group;
    /// writes nothing. The rule must be one the group could be given.
    pub async fn preview_group_rule(
        &self,
        ctx: &RequestContext,
        rule: &str,
        group_id: Option<&str>,
        first_page: &PageRequest,
    ) -> AppResult<Preview> {
        let tenant = ctx.tenant.as_str();
        let now = self.now();
        if let Some(group_id) = group_id {
            resource::find::<customer_group::Entity>(self.db(), tenant, group_id).await?;
        }
        let rule = check_rule(self.db(), tenant, group_id, rule, "rule", now).await?;
        let selection = CustomerFilter::only(rule, DeletedFilter::Active);
        let tallies = self.count_by_relationship(ctx, &selection).await?.read;
        // Nothing to list when nothing matches (a list would read as much
        // as the count did to find nothing).
        let first = if tallies.total == 0 {
            Vec::new()
        } else {
            self.list_customers(ctx, &selection, CustomerOrder::Newest, first_page)
                .await?
                .read
                .items
        };
        let (joining, leaving) = match group_id {
            Some(group_id) => {
                changes_to(self.db(), tenant, group_id, &selection, tallies.total, now).await?
            }
            None => (0, 0),
        };
        Ok(Preview {
            tallies,
            first,
            joining,
            leaving,
        })
    }
}

/// How many customers would join group `group_id` and how many would
/// leave it, were `selection`'s filter its rule (its pins kept), given
/// that `matching` active customers match: read over the group's own rows
/// and pins, not the tenant's customers.
async fn changes_to(
    db: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    selection: &CustomerFilter,
    matching: i64,
    now: i64,
) -> AppResult<(i64, i64)> {
    let rows = |unpinned_only: bool| {
        let mut rows = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::CustomerActive.eq(true));
        if unpinned_only {
            rows = rows.filter(group_member::Column::Pinned.eq(false));
        }
        rows
    };
    let pinned_out = group_exclusion::Entity::find()
        .filter(group_exclusion::Column::TenantId.eq(tenant))
        .filter(group_exclusion::Column::GroupId.eq(group_id))
        .select_only()
        .column(group_exclusion::Column::CustomerId)
        .into_query();
    let matching_among = |ids: sea_orm::sea_query::SelectStatement| async move {
        AppResult::Ok(
            filtered(db, tenant, selection, false, now)
                .await?
                .filter(customer::Column::Id.in_subquery(ids))
                .count(db)
                .await? as i64,
        )
    };
    let ids_of = |rows: sea_orm::Select<group_member::Entity>| {
        rows.select_only()
            .column(group_member::Column::CustomerId)
            .into_query()
    };
    // Joining: matched, not pinned out, with no row yet.
    let members_matching = matching_among(ids_of(rows(false))).await?;
    let pinned_out_matching = matching_among(pinned_out).await?;
    let joining = matching - members_matching - pinned_out_matching;
    // Leaving: rows only a rule holds, that this rule does not match.
    let unpinned = rows(true).count(db).await? as i64;
    let unpinned_matching = matching_among(ids_of(rows(true))).await?;
    Ok((joining, unpinned - unpinned_matching))
}
