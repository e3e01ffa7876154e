//! Listing customers: the filtered list in three orders, with exact
//! totals, from the narrowest table that answers (see `reports` for counts).

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter, QuerySelect,
    Select,
    sea_query::{Expr, ExprTrait, Func, LikeExpr, Query},
};

use super::{
    CustomerRecord,
    filter::{Scope, condition, meaning_of},
    holders,
    records::with_groups,
};
use crate::store::{
    AsOf, Snapshot, Store,
    catalogs::{groups::active_descendants, relationships},
    resource::{self, in_tenant},
};
use crate::{
    domain::{
        customer::{CustomerFilter, CustomerOrder},
        filter::{Comparison, Field, Filter, Op, Time, Value},
        paging::{Cursor, CursorKind, CursorValue, DeletedFilter, Page, PageRequest},
        tenant::RequestContext,
    },
    entity::{
        customer, customer_group, customer_source, group_member, group_relationship_count,
        relationship_count, relationship_member,
    },
    error::AppResult,
};

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_contains(text: &str) -> LikeExpr {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// The ids of the group and, when asked, its active descendants.
async fn group_scope(
    db: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    include_subgroups: bool,
) -> AppResult<Vec<String>> {
    resource::find::<customer_group::Entity>(db, tenant, group_id).await?;
    let mut ids = vec![group_id.to_owned()];
    if include_subgroups {
        ids.extend(active_descendants(db, tenant, group_id).await?);
    }
    Ok(ids)
}

/// The customers of the tenant matching `filter` (all but the relationship
/// filter when `with_relationship` is false); its filter expression is
/// evaluated at `now` (microseconds).
pub(super) async fn filtered(
    db: &impl ConnectionTrait,
    tenant: &str,
    filter: &CustomerFilter,
    with_relationship: bool,
    now: i64,
) -> AppResult<Select<customer::Entity>> {
    let mut query =
        resource::with_deleted_filter(in_tenant::<customer::Entity>(tenant), filter.deleted);
    if filter.filter != Filter::All {
        let meaning = meaning_of(db, tenant, &filter.filter, now).await?;
        let scope = Scope {
            tenant,
            backend: db.get_database_backend(),
        };
        query = query.filter(condition(&filter.filter, &meaning, scope));
    }
    if let Some(group_id) = &filter.group_id {
        let groups = group_scope(db, tenant, group_id, filter.include_subgroups).await?;
        query = query.filter(customer::Column::Id.in_subquery(members_of(tenant, groups)));
    }
    if let Some(source_id) = &filter.source_id {
        resource::find::<customer_source::Entity>(db, tenant, source_id).await?;
        query = query.filter(customer::Column::SourceId.eq(source_id));
    }
    if with_relationship && let Some(relationship_id) = &filter.relationship_id {
        relationships::ensure_exists(db, tenant, relationship_id).await?;
        query = query.filter(customer::Column::RelationshipId.eq(relationship_id));
        if few_holders(db, tenant, relationship_id, filter.deleted).await? {
            let holders = holders::holder_ids(tenant, relationship_id, filter.deleted);
            query = query.filter(customer::Column::Id.in_subquery(holders));
        }
    }
    if let Some(owner_id) = &filter.owner_id {
        query = query.filter(customer::Column::OwnerId.eq(owner_id));
    }
    if let Some(text) = &filter.query {
        query = query.filter(Expr::col(customer::Column::SearchText).like(like_contains(text)));
    }
    Ok(query)
}

/// Whether so few customers hold `relationship_id` (of those `deleted`
/// selects) that a list filtered by it should start from them
/// (`id IN (holders)`: a read of each holder and a sort) rather than walk
/// the order's index and skip the customers holding another relationship
/// (a read of about page size × customers / holders rows). The two cost
/// the same at holders² = page × customers; taking pages of 100 rows
/// (the default is 50), that is 10,000 holders among 1,000,000 customers.
/// Starting from the holders always would sort every holder of a large
/// relationship for each page (9 s for 166,000 holders on SQLite, which
/// then always starts from them); never would walk the whole tenant for an
/// empty one (1.4 s). Active holders are counted by the counters, deleted
/// ones in the index.
async fn few_holders(
    db: &impl ConnectionTrait,
    tenant: &str,
    relationship_id: &str,
    deleted: DeletedFilter,
) -> AppResult<bool> {
    const PAGE: i64 = 100;
    let active_counts: Vec<(String, i64)> = relationship_count::Entity::find()
        .filter(relationship_count::Column::TenantId.eq(tenant))
        .select_only()
        .column(relationship_count::Column::RelationshipId)
        .column(relationship_count::Column::Customers)
        .into_tuple()
        .all(db)
        .await?;
    let customers: i64 = active_counts.iter().map(|(_, n)| n).sum();
    let active = active_counts
        .iter()
        .find(|(id, _)| id == relationship_id)
        .map_or(0, |(_, n)| *n);
    let removed = || async {
        let deleted = holders::holders(tenant, relationship_id, DeletedFilter::Only);
        AppResult::Ok(deleted.count(db).await? as i64)
    };
    let holders = match deleted {
        DeletedFilter::Active => active,
        DeletedFilter::Only => removed().await?,
        DeletedFilter::All => active + removed().await?,
    };
    Ok(holders.saturating_mul(holders) < PAGE.saturating_mul(Ord::max(customers, 1)))
}

/// The group when `filter` selects the active members of exactly one group
/// (and at most a relationship besides): such lists and counts read the
/// membership table's indexes alone instead of probing every customer.
pub(super) fn single_group(filter: &CustomerFilter) -> Option<&str> {
    let only_group = !filter.include_subgroups
        && filter.filter == Filter::All
        && filter.source_id.is_none()
        && filter.owner_id.is_none()
        && filter.query.is_none()
        && filter.deleted == DeletedFilter::Active;
    filter.group_id.as_deref().filter(|_| only_group)
}

/// The relationship when `filter` selects its active or its deleted
/// holders and nothing else: such lists read
/// `relationship_members_by_relationship` instead of probing every
/// customer. (Active and deleted holders together are two ranges of the
/// index, in one order only by sorting them all: those lists walk
/// `customers_by_create`.)
fn single_relationship(filter: &CustomerFilter) -> Option<&str> {
    let only_relationship = filter.group_id.is_none()
        && filter.filter == Filter::All
        && filter.source_id.is_none()
        && filter.owner_id.is_none()
        && filter.query.is_none()
        && filter.deleted != DeletedFilter::All;
    filter
        .relationship_id
        .as_deref()
        .filter(|_| only_relationship)
}

/// A list of one relationship's active customers of one owner, newest
/// first, optionally within creation-time bounds, and nothing else: the
/// "my Hot customers of the quarter" question, which
/// `relationship_members_by_owner` answers alone (page and total).
struct OwnedHolders<'f> {
    /// The relationship by id, or by code (resolved when listing).
    relationship: Result<&'f str, &'f str>,
    owner: &'f str,
    /// Comparisons of the creation time.
    created: Vec<(Op, Time)>,
}

/// The [`OwnedHolders`] question `filter` asks, if it asks exactly that.
fn owned_holders(filter: &CustomerFilter) -> Option<OwnedHolders<'_>> {
    let only_these = filter.group_id.is_none()
        && filter.source_id.is_none()
        && filter.query.is_none()
        && filter.deleted == DeletedFilter::Active;
    if !only_these {
        return None;
    }
    let mut relationship = filter.relationship_id.as_deref().map(Ok);
    let mut owner = filter.owner_id.as_deref();
    let mut created = Vec::new();
    let parts = match &filter.filter {
        Filter::All => &[][..],
        Filter::And(parts) => parts.as_slice(),
        single @ Filter::Compare(_) => std::slice::from_ref(single),
        _ => return None,
    };
    for part in parts {
        let Filter::Compare(Comparison { field, op, value }) = part else {
            return None;
        };
        match (field, op, value) {
            (Field::Relationship, Op::Eq, Value::Text(code)) if relationship.is_none() => {
                relationship = Some(Err(code.as_str()));
            }
            (Field::RelationshipId, Op::Eq, Value::Text(id)) if relationship.is_none() => {
                relationship = Some(Ok(id.as_str()));
            }
            (Field::OwnerId, Op::Eq, Value::Text(id)) if owner.is_none() => {
                owner = Some(id.as_str());
            }
            (Field::CreateTime, op, Value::Time(t)) if *op != Op::Ne && *op != Op::Has => {
                created.push((*op, *t));
            }
            _ => return None,
        }
    }
    Some(OwnedHolders {
        relationship: relationship?,
        owner: owner?,
        created,
    })
}

/// The active holders of `relationship_id` owned by `owner`, within the
/// creation-time bounds, evaluated at `now`.
fn owned_holders_query(
    tenant: &str,
    relationship_id: &str,
    question: &OwnedHolders<'_>,
    now: i64,
) -> Select<relationship_member::Entity> {
    use relationship_member::Column as M;
    let mut query = relationship_member::Entity::find()
        .filter(M::TenantId.eq(tenant))
        .filter(M::RelationshipId.eq(relationship_id))
        .filter(M::CustomerActive.eq(true))
        .filter(M::OwnerId.eq(question.owner));
    for (op, time) in &question.created {
        let at = match *time {
            Time::At(at) => at,
            Time::Ago(back) => now.saturating_sub(back),
        };
        query = query.filter(match op {
            Op::Lt => M::CustomerCreateTime.lt(at),
            Op::Le => M::CustomerCreateTime.lte(at),
            Op::Gt => M::CustomerCreateTime.gt(at),
            Op::Ge => M::CustomerCreateTime.gte(at),
            _ => M::CustomerCreateTime.eq(at),
        });
    }
    query
}

/// A table of copies of customers' state, a row per customer (and group),
/// whose index lists customers newest first: `group_members`,
/// `relationship_members`.
trait CustomerCopies: EntityTrait {
    /// The copy of the customer's creation time.
    const CREATE_TIME: Self::Column;
    /// The customer's id.
    const CUSTOMER_ID: Self::Column;
    /// A row's customer: creation time and id.
    fn customer(row: &Self::Model) -> (i64, &str);
    /// The relationship a row's customer holds.
    fn relationship(row: &Self::Model) -> &str;
}

impl CustomerCopies for group_member::Entity {
    const CREATE_TIME: Self::Column = group_member::Column::CustomerCreateTime;
    const CUSTOMER_ID: Self::Column = group_member::Column::CustomerId;
    fn customer(row: &Self::Model) -> (i64, &str) {
        (row.customer_create_time, &row.customer_id)
    }
    fn relationship(row: &Self::Model) -> &str {
        &row.relationship_id
    }
}

impl CustomerCopies for relationship_member::Entity {
    const CREATE_TIME: Self::Column = relationship_member::Column::CustomerCreateTime;
    const CUSTOMER_ID: Self::Column = relationship_member::Column::CustomerId;
    fn customer(row: &Self::Model) -> (i64, &str) {
        (row.customer_create_time, &row.customer_id)
    }
    fn relationship(row: &Self::Model) -> &str {
        &row.relationship_id
    }
}

/// The cursor of a customer in the newest-first order.
fn newest_key(create_time: i64, id: &str) -> Cursor {
    Cursor(vec![
        CursorValue::Int(create_time),
        CursorValue::Text(id.to_owned()),
    ])
}

/// Active members of `group_id`, optionally only those holding
/// `relationship_id`. Whether the two exist is for the caller to check (see
/// [`ensure_member_filters_exist`]).
fn members(
    tenant: &str,
    group_id: &str,
    relationship_id: Option<&str>,
) -> Select<group_member::Entity> {
    let mut query = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::GroupId.eq(group_id))
        .filter(group_member::Column::CustomerActive.eq(true));
    if let Some(relationship_id) = relationship_id {
        query = query.filter(group_member::Column::RelationshipId.eq(relationship_id));
    }
    query
}

/// NOT_FOUND unless the group (and the relationship, when given) exist. A
/// non-empty page of members proves both, so lists check only empty pages.
async fn ensure_member_filters_exist(
    db: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    relationship_id: Option<&str>,
) -> AppResult<()> {
    resource::find::<customer_group::Entity>(db, tenant, group_id).await?;
    if let Some(relationship_id) = relationship_id {
        relationships::ensure_exists(db, tenant, relationship_id).await?;
    }
    Ok(())
}

/// The statement reading how many active members of `group_id` (holding
/// `relationship_id`, when given) there are, from the counters.
fn group_total(
    tenant: &str,
    group_id: &str,
    relationship_id: Option<&str>,
) -> sea_orm::sea_query::SelectStatement {
    let mut statement = Query::select();
    statement
        .expr(
            Func::coalesce([
                Expr::col(group_relationship_count::Column::Customers).sum(),
                Expr::val(0i64),
            ])
            .cast_as("BIGINT"),
        )
        .from(group_relationship_count::Entity)
        .and_where(Expr::col(group_relationship_count::Column::TenantId).eq(tenant))
        .and_where(Expr::col(group_relationship_count::Column::GroupId).eq(group_id));
    if let Some(relationship_id) = relationship_id {
        statement.and_where(
            Expr::col(group_relationship_count::Column::RelationshipId).eq(relationship_id),
        );
    }
    statement.to_owned()
}

/// The statement reading a list's total from the per-relationship counters,
/// when the list is every active customer (or those holding one
/// relationship); `None` when the rows must be counted.
fn counted_total(
    tenant: &str,
    filter: &CustomerFilter,
) -> Option<sea_orm::sea_query::SelectStatement> {
    if !is_unfiltered(filter) {
        return None;
    }
    let mut statement = Query::select();
    statement
        .expr(
            Func::coalesce([
                Expr::col(relationship_count::Column::Customers).sum(),
                Expr::val(0i64),
            ])
            .cast_as("BIGINT"),
        )
        .from(relationship_count::Entity)
        .and_where(Expr::col(relationship_count::Column::TenantId).eq(tenant));
    if let Some(relationship_id) = &filter.relationship_id {
        statement.and_where(
            Expr::col(relationship_count::Column::RelationshipId).eq(relationship_id.as_str()),
        );
    }
    Some(statement.to_owned())
}

pub(super) fn is_unfiltered(filter: &CustomerFilter) -> bool {
    filter.filter == Filter::All
        && filter.group_id.is_none()
        && filter.source_id.is_none()
        && filter.owner_id.is_none()
        && filter.query.is_none()
        && filter.deleted == DeletedFilter::Active
}
impl Store {
    /// Customers matching `filter`, in `order`, read in one snapshot, with
    /// the tenant's latest change in it: a client that applies every change
    /// after it to the page stays exact. Records from the cache are used
    /// only where their relationship is the one the snapshot shows (see
    /// [`Store::customer_records`]).
    pub async fn list_customers(
        &self,
        ctx: &RequestContext,
        filter: &CustomerFilter,
        order: CustomerOrder,
        page: &PageRequest,
    ) -> AppResult<AsOf<Page<CustomerRecord>>> {
        let snapshot = self.snapshot_of(ctx.tenant.as_str()).await?;
        let listed = self.list_in(&snapshot, ctx, filter, order, page).await?;
        snapshot.end(listed).await
    }

    pub(super) async fn list_in(
        &self,
        snapshot: &Snapshot,
        ctx: &RequestContext,
        filter: &CustomerFilter,
        order: CustomerOrder,
        page: &PageRequest,
    ) -> AppResult<Page<CustomerRecord>> {
        let db = snapshot.db();
        let tenant = ctx.tenant.as_str();
        if let (Some(group_id), CustomerOrder::Newest) = (single_group(filter), order) {
            let relationship_id = filter.relationship_id.as_deref();
            let query = members(tenant, group_id, relationship_id);
            let total = Some(group_total(tenant, group_id, relationship_id));
            let result = self
                .newest_from_copies(snapshot, tenant, query, page, total)
                .await?;
            if result.items.is_empty() {
                ensure_member_filters_exist(db, tenant, group_id, relationship_id).await?;
            }
            return Ok(result);
        }
        if let (Some(relationship_id), CustomerOrder::Newest) = (single_relationship(filter), order)
        {
            let query = holders::holders(tenant, relationship_id, filter.deleted);
            let total = counted_total(tenant, filter);
            let result = self
                .newest_from_copies(snapshot, tenant, query, page, total)
                .await?;
            if result.items.is_empty() {
                relationships::ensure_exists(db, tenant, relationship_id).await?;
            }
            return Ok(result);
        }
        if let (Some(question), CustomerOrder::Newest) = (owned_holders(filter), order) {
            let relationship_id = match question.relationship {
                Ok(id) => Some(id.to_owned()),
                Err(code) => meaning_of(db, tenant, &filter.filter, self.now())
                    .await?
                    .relationships
                    .remove(code),
            };
            let Some(relationship_id) = relationship_id else {
                // A code no relationship has: nobody holds it.
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                    total: 0,
                });
            };
            let query = owned_holders_query(tenant, &relationship_id, &question, self.now());
            let result = self
                .newest_from_copies(snapshot, tenant, query, page, None)
                .await?;
            if result.items.is_empty() && filter.relationship_id.is_some() {
                relationships::ensure_exists(db, tenant, &relationship_id).await?;
            }
            return Ok(result);
        }
        let query = filtered(db, tenant, filter, true, self.now()).await?;
        let total = counted_total(tenant, filter);
        use customer::Column as C;
        type Key = fn(&customer::Model) -> Cursor;
        let (columns, direction, key): (_, _, Key) = match order {
            CustomerOrder::Newest => (
                [(C::CreateTime, CursorKind::Int), (C::Id, CursorKind::Id)],
                Order::Desc,
                |c| newest_key(c.create_time, &c.id),
            ),
            CustomerOrder::Name => (
                [(C::SortKey, CursorKind::SortKey), (C::Id, CursorKind::Id)],
                Order::Asc,
                |c| {
                    Cursor(vec![
                        CursorValue::Text(c.sort_key.clone()),
                        CursorValue::Text(c.id.clone()),
                    ])
                },
            ),
            CustomerOrder::LeastRecentContact => (
                [(C::ActivityTime, CursorKind::Int), (C::Id, CursorKind::Id)],
                Order::Asc,
                |c| {
                    Cursor(vec![
                        CursorValue::Int(c.activity_time),
                        CursorValue::Text(c.id.clone()),
                    ])
                },
            ),
        };
        let result =
            resource::list_page_with_total(db, query, columns, direction, page, key, total).await?;
        Ok(Page {
            items: with_groups(db, tenant, result.items).await?,
            next: result.next,
            total: result.total,
        })
    }

    /// A page, newest first, of the customers `query` selects from a table
    /// of their copies, with its total read by `total` (counted when
    /// `None`): the page of copies, then their records, all as `snapshot`
    /// shows them.
    async fn newest_from_copies<E: CustomerCopies>(
        &self,
        snapshot: &Snapshot,
        tenant: &str,
        query: Select<E>,
        page: &PageRequest,
        total: Option<sea_orm::sea_query::SelectStatement>,
    ) -> AppResult<Page<CustomerRecord>>
    where
        E::Model: Sync,
    {
        let order = [
            (E::CREATE_TIME, CursorKind::Int),
            (E::CUSTOMER_ID, CursorKind::Id),
        ];
        let key = |row: &E::Model| {
            let (create_time, id) = E::customer(row);
            newest_key(create_time, id)
        };
        let copies = resource::list_page_with_total(
            snapshot.db(),
            query,
            order,
            Order::Desc,
            page,
            key,
            total,
        )
        .await?;
        let held: Vec<(String, String)> = copies
            .items
            .iter()
            .map(|row| {
                (
                    E::customer(row).1.to_owned(),
                    E::relationship(row).to_owned(),
                )
            })
            .collect();
        Ok(Page {
            items: self.customer_records(snapshot, tenant, &held).await?,
            next: copies.next,
            total: copies.total,
        })
    }
}

/// The customers with a membership of any of `groups` (of deleted
/// customers too), for an `IN` that reads each once.
pub fn members_of(
    tenant: &str,
    groups: impl IntoIterator<Item = String>,
) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(group_member::Column::CustomerId)
        .from(group_member::Entity)
        .and_where(Expr::col(group_member::Column::TenantId).eq(tenant))
        .and_where(Expr::col(group_member::Column::GroupId).is_in(groups))
        .to_owned()
}
