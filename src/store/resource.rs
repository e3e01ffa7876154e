//! What every tenant-scoped, soft-deletable resource (groups, sources,
//! relationships, customers) shares, written once: lookup inside the tenant,
//! etags, soft-delete checks, and keyset paging.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult,
    Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Value,
    sea_query::{Expr, SelectStatement},
};

use crate::{
    domain::{
        catalog::Target,
        paging::{Cursor, CursorKind, CursorValue, DeletedFilter, Page, PageRequest},
    },
    entity::{customer, customer_group, customer_source, relationship},
    error::{AppError, AppResult, FieldViolation, quoted},
};

/// The columns every resource row has.
pub trait Row {
    /// Id.
    fn id(&self) -> &str;
    /// Etag source.
    fn revision(&self) -> i64;
    /// Soft-delete time.
    fn delete_time(&self) -> Option<i64>;
    /// Name order key.
    fn sort_key(&self) -> &str;
}

/// The writable side of a resource row.
pub trait Revisable {
    /// Records a change: the next revision, made at `now`.
    fn bump(&mut self, revision: i64, now: i64);
}

/// A resource table.
pub trait Resource: EntityTrait<Model: Row> {
    /// Resource name in errors, e.g. `group`.
    const RESOURCE: &'static str;
    /// `id`.
    fn id_col() -> Self::Column;
    /// `tenant_id`.
    fn tenant_col() -> Self::Column;
    /// `delete_time`.
    fn delete_time_col() -> Self::Column;
    /// `sort_key`.
    fn sort_key_col() -> Self::Column;
}

macro_rules! resource {
    ($module:ident, $resource:literal) => {
        impl Row for $module::Model {
            fn id(&self) -> &str {
                &self.id
            }
            fn revision(&self) -> i64 {
                self.revision
            }
            fn delete_time(&self) -> Option<i64> {
                self.delete_time
            }
            fn sort_key(&self) -> &str {
                &self.sort_key
            }
        }

        impl Revisable for $module::ActiveModel {
            fn bump(&mut self, revision: i64, now: i64) {
                self.revision = Set(revision);
                self.update_time = Set(now);
            }
        }

        impl Resource for $module::Entity {
            const RESOURCE: &'static str = $resource;
            fn id_col() -> Self::Column {
                $module::Column::Id
            }
            fn tenant_col() -> Self::Column {
                $module::Column::TenantId
            }
            fn delete_time_col() -> Self::Column {
                $module::Column::DeleteTime
            }
            fn sort_key_col() -> Self::Column {
                $module::Column::SortKey
            }
        }
    };
}

resource!(customer_group, "group");
resource!(customer_source, "source");
resource!(relationship, "relationship");
resource!(customer, "customer");

/// Every row of the tenant.
pub fn in_tenant<E: Resource>(tenant: &str) -> Select<E> {
    E::find().filter(E::tenant_col().eq(tenant))
}

/// The row `id` of the tenant, deleted or not; NOT_FOUND otherwise.
pub async fn find<E: Resource>(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> AppResult<E::Model> {
    in_tenant::<E>(tenant)
        .filter(E::id_col().eq(id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(E::RESOURCE, id))
}

/// For each `(field, id)` of `named` whose id is no row of the tenant
/// (deleted rows are known), a violation naming the field: what a request
/// that refers to rows gets back as INVALID_ARGUMENT. One statement.
pub async fn unknown<E: Resource>(
    db: &impl ConnectionTrait,
    tenant: &str,
    named: &[(String, &str)],
) -> AppResult<Vec<FieldViolation>> {
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let known: std::collections::HashSet<String> = in_tenant::<E>(tenant)
        .filter(E::id_col().is_in(named.iter().map(|(_, id)| id.to_string())))
        .select_only()
        .column(E::id_col())
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(named
        .iter()
        .filter(|(_, id)| !known.contains(*id))
        .map(|(field, id)| unknown_violation::<E>(field.clone(), id))
        .collect())
}

/// The violation of `field`, which names `id`, no `E` of the tenant.
pub fn unknown_violation<E: Resource>(field: String, id: &str) -> FieldViolation {
    FieldViolation::new(
        field,
        format!("names no {} of the tenant: `{id}`", E::RESOURCE),
    )
    .because("UNKNOWN_ID")
}

/// Like [`find`], and locks the row until the transaction ends (PostgreSQL;
/// SQLite's write transaction already excludes other writers).
pub async fn find_for_update<E: Resource>(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> AppResult<E::Model> {
    in_tenant::<E>(tenant)
        .filter(E::id_col().eq(id))
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or_else(|| AppError::not_found(E::RESOURCE, id))
}

/// The row an Update, Delete or Restore targets, locked for the rest of the
/// transaction, after checking the caller's etag.
pub async fn lock_target<E: Resource>(
    tx: &impl ConnectionTrait,
    tenant: &str,
    target: &Target,
) -> AppResult<E::Model> {
    let row = find_for_update::<E>(tx, tenant, &target.id).await?;
    check_etag::<E>(&row, &target.etag)?;
    Ok(row)
}

/// The etag the API shows for a revision.
pub fn etag(revision: i64) -> String {
    format!("r{revision}")
}

/// ABORTED when `expected` is non-empty and no longer the row's etag.
pub fn check_etag<E: Resource>(row: &E::Model, expected: &str) -> AppResult<()> {
    let current = etag(row.revision());
    if expected.is_empty() || expected == current {
        Ok(())
    } else {
        Err(AppError::Aborted(format!(
            "{} `{}` changed since it was read (etag {}, now `{current}`); read it again",
            E::RESOURCE,
            row.id(),
            quoted(expected)
        )))
    }
}

/// FAILED_PRECONDITION when the row is deleted.
pub fn ensure_active<E: Resource>(row: &E::Model, action: &str) -> AppResult<()> {
    ensure_undeleted(E::RESOURCE, row.id(), row.delete_time(), action)
}

/// FAILED_PRECONDITION when the `resource` `id`, deleted at `delete_time`,
/// is deleted: [`ensure_active`] for callers that read only those columns.
pub fn ensure_undeleted(
    resource: &str,
    id: &str,
    delete_time: Option<i64>,
    action: &str,
) -> AppResult<()> {
    match delete_time {
        None => Ok(()),
        Some(_) => Err(AppError::precondition(
            "DELETED",
            id,
            format!("{resource} `{id}` is deleted; restore it before {action}"),
        )),
    }
}

/// FAILED_PRECONDITION when the row to delete is deleted already.
pub fn ensure_not_yet_deleted<E: Resource>(row: &E::Model) -> AppResult<()> {
    match row.delete_time() {
        None => Ok(()),
        Some(_) => Err(AppError::precondition(
            "ALREADY_DELETED",
            row.id(),
            format!("{} `{}` is already deleted", E::RESOURCE, row.id()),
        )),
    }
}

/// FAILED_PRECONDITION unless the row is deleted.
pub fn ensure_deleted<E: Resource>(row: &E::Model) -> AppResult<()> {
    match row.delete_time() {
        Some(_) => Ok(()),
        None => Err(AppError::precondition(
            "NOT_DELETED",
            row.id(),
            format!("{} `{}` is not deleted", E::RESOURCE, row.id()),
        )),
    }
}

/// Restricts a query to active rows, deleted rows or both.
pub fn with_deleted_filter<E: Resource>(query: Select<E>, filter: DeletedFilter) -> Select<E> {
    match filter {
        DeletedFilter::Active => query.filter(E::delete_time_col().is_null()),
        DeletedFilter::Only => query.filter(E::delete_time_col().is_not_null()),
        DeletedFilter::All => query,
    }
}

/// One page of `query`, ordered by the two columns of `order` (the second
/// unique) in `direction`, starting after the request's cursor; `key` gives
/// a row's sort key. The page and its total are read in one snapshot.
pub async fn list_page<E: EntityTrait>(
    db: &DatabaseConnection,
    query: Select<E>,
    order: [(E::Column, CursorKind); 2],
    direction: Order,
    page: &PageRequest,
    key: impl Fn(&E::Model) -> Cursor,
) -> AppResult<Page<E::Model>>
where
    E::Model: Sync,
{
    let tx = super::snapshot(db).await?;
    let found = list_page_with_total(&tx, query, order, direction, page, key, None).await?;
    tx.commit().await?;
    Ok(found)
}

/// Like [`list_page`], with the total read by `total` (a statement returning
/// one integer, e.g. from a counter table) instead of by counting the rows
/// when given, and in the caller's snapshot: `db` must read one (a
/// [`super::snapshot`] transaction) for the page and its total to agree.
pub async fn list_page_with_total<E: EntityTrait>(
    db: &impl ConnectionTrait,
    query: Select<E>,
    order: [(E::Column, CursorKind); 2],
    direction: Order,
    page: &PageRequest,
    key: impl Fn(&E::Model) -> Cursor,
    total: Option<SelectStatement>,
) -> AppResult<Page<E::Model>>
where
    E::Model: Sync,
{
    let rows_query = page_query(query.clone(), order, direction, page)?;
    if !page.counted {
        let items = rows_query.all(db).await?;
        return Ok(finish_page(items, 0, page, key));
    }
    if let Some(statement) = &total {
        // The page and its total in one statement. An empty page says
        // nothing about the total, so it takes the two-statement path below.
        let statement = rows_query
            .clone()
            .expr_as(
                Expr::SubQuery(None, Box::new(statement.clone().into())),
                PAGE_TOTAL,
            )
            .build(db.get_database_backend());
        let rows = db.query_all_raw(statement).await?;
        if let Some(first) = rows.first() {
            let total: Option<i64> = first.try_get("", PAGE_TOTAL)?;
            let items = rows
                .iter()
                .map(|row| E::Model::from_query_result(row, ""))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(finish_page(items, total.unwrap_or(0), page, key));
        }
    }
    let total = match total {
        None => query.count(db).await?,
        Some(statement) => {
            let row = db
                .query_one_raw(db.get_database_backend().build(&statement))
                .await?;
            let n: Option<i64> = row.map(|r| r.try_get_by_index(0)).transpose()?;
            n.unwrap_or(0).max(0) as u64
        }
    };
    let items = rows_query.all(db).await?;
    Ok(finish_page(items, total as i64, page, key))
}

/// One page of `rows`, given in ascending order of `key` over columns of
/// `kinds`: the page [`list_page`] would read were the rows stored, so a
/// token from either continues in the other.
pub fn page_in_memory<M>(
    rows: Vec<M>,
    kinds: [CursorKind; 2],
    page: &PageRequest,
    key: impl Fn(&M) -> Cursor,
) -> AppResult<Page<M>> {
    if let Some(after) = &page.after {
        after.check(&kinds)?;
    }
    let total = rows.len() as i64;
    let items = rows
        .into_iter()
        .filter(|row| page.after.as_ref().is_none_or(|after| key(row) > *after))
        .take(page.size as usize + 1)
        .collect();
    Ok(finish_page(items, total, page, key))
}

/// The column carrying a page's total.
const PAGE_TOTAL: &str = "page_total";

/// `query` ordered by the two columns of `order` in `direction`, after the
/// request's cursor, one row longer than the page (to tell if more follow).
fn page_query<E: EntityTrait>(
    query: Select<E>,
    order: [(E::Column, CursorKind); 2],
    direction: Order,
    page: &PageRequest,
) -> AppResult<Select<E>> {
    let [(first, first_kind), (second, second_kind)] = order;
    let mut rows_query = query
        .order_by(first, direction.clone())
        .order_by(second, direction.clone());
    if let Some(cursor) = &page.after {
        let [a, b] = cursor_pair(cursor, [first_kind, second_kind])?;
        // The bound on the first column alone is implied by the rest; it
        // is what lets the planners start the index scan at the cursor
        // (PostgreSQL does not use the OR for it, and walked — and
        // dropped — every row before the cursor, so page n cost n pages).
        let after = match direction {
            Order::Desc => Condition::all().add(first.lte(a.clone())).add(
                Condition::any()
                    .add(first.lt(a.clone()))
                    .add(Condition::all().add(first.eq(a)).add(second.lt(b))),
            ),
            _ => Condition::all().add(first.gte(a.clone())).add(
                Condition::any()
                    .add(first.gt(a.clone()))
                    .add(Condition::all().add(first.eq(a)).add(second.gt(b))),
            ),
        };
        rows_query = rows_query.filter(after);
    }
    Ok(rows_query.limit(page.size + 1))
}

/// Cuts the extra row off and makes the next cursor from the last row.
fn finish_page<M>(
    mut items: Vec<M>,
    total: i64,
    page: &PageRequest,
    key: impl Fn(&M) -> Cursor,
) -> Page<M> {
    let next = if items.len() as u64 > page.size {
        items.truncate(page.size as usize);
        items.last().map(&key)
    } else {
        None
    };
    Page {
        items,
        next,
        total: total.max(0) as u64,
    }
}

/// The cursor's two values, once checked to fit the columns of `kinds`.
fn cursor_pair(cursor: &Cursor, kinds: [CursorKind; 2]) -> AppResult<[Value; 2]> {
    cursor.check(&kinds)?;
    let to_value = |v: &CursorValue| match v {
        CursorValue::Int(i) => Value::from(*i),
        CursorValue::Text(s) => Value::from(s.clone()),
    };
    Ok([to_value(&cursor.0[0]), to_value(&cursor.0[1])])
}

/// One page of `query` in name order (see `domain::text::sort_key`).
pub async fn list_by_name<E: Resource>(
    db: &DatabaseConnection,
    query: Select<E>,
    page: &PageRequest,
) -> AppResult<Page<E::Model>>
where
    E::Model: Sync,
{
    let order = [
        (E::sort_key_col(), CursorKind::SortKey),
        (E::id_col(), CursorKind::Id),
    ];
    list_page(db, query, order, Order::Asc, page, |m| {
        Cursor(vec![
            CursorValue::Text(m.sort_key().to_owned()),
            CursorValue::Text(m.id().to_owned()),
        ])
    })
    .await
}
