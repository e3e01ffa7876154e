//! What the three catalogs (groups, sources, relationships) share, written
//! once: lookup inside the tenant, etag and soft-delete checks, codes, name
//! clashes and keyset paging.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Value,
};

use crate::{
    domain::{
        catalog::{EntryPatch, Target},
        paging::{Cursor, CursorKind, CursorValue, DeletedFilter, Page, PageRequest},
        text,
    },
    entity::{customer_group, customer_source, relationship},
    error::{AppError, AppResult},
};

/// The columns every catalog row has.
pub trait CatalogRow {
    /// Id.
    fn id(&self) -> &str;
    /// Etag source.
    fn revision(&self) -> i64;
    /// Soft-delete time.
    fn delete_time(&self) -> Option<i64>;
    /// List order key.
    fn sort_key(&self) -> &str;
}

/// The writable side of a catalog row.
pub trait CatalogActive {
    /// Applies the common fields of `patch` (and the keys derived from the name).
    fn apply_entry(&mut self, patch: EntryPatch);
    /// Records a change: the next revision, made at `now`.
    fn bump(&mut self, revision: i64, now: i64);
}

/// A catalog table.
pub trait CatalogEntity: EntityTrait<Model: CatalogRow> {
    /// Resource name in errors, e.g. `group`.
    const RESOURCE: &'static str;
    /// Code used when a name transliterates to nothing.
    const CODE_FALLBACK: &'static str;
    /// `id`.
    fn id_col() -> Self::Column;
    /// `tenant_id`.
    fn tenant_col() -> Self::Column;
    /// `code`.
    fn code_col() -> Self::Column;
    /// `name_key`.
    fn name_key_col() -> Self::Column;
    /// `delete_time`.
    fn delete_time_col() -> Self::Column;
    /// `sort_key`.
    fn sort_key_col() -> Self::Column;
}

macro_rules! catalog_entity {
    ($module:ident, $resource:literal, $fallback:literal) => {
        impl CatalogRow for $module::Model {
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

        impl CatalogActive for $module::ActiveModel {
            fn apply_entry(&mut self, patch: EntryPatch) {
                if let Some(code) = patch.code {
                    self.code = Set(code);
                }
                if let Some(name) = patch.name {
                    self.name_key = Set(text::name_key(&name));
                    self.sort_key = Set(text::sort_key(&name));
                    self.name = Set(name);
                }
                if let Some(description) = patch.description {
                    self.description = Set(description);
                }
            }
            fn bump(&mut self, revision: i64, now: i64) {
                self.revision = Set(revision);
                self.update_time = Set(now);
            }
        }

        impl CatalogEntity for $module::Entity {
            const RESOURCE: &'static str = $resource;
            const CODE_FALLBACK: &'static str = $fallback;
            fn id_col() -> Self::Column {
                $module::Column::Id
            }
            fn tenant_col() -> Self::Column {
                $module::Column::TenantId
            }
            fn code_col() -> Self::Column {
                $module::Column::Code
            }
            fn name_key_col() -> Self::Column {
                $module::Column::NameKey
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

catalog_entity!(customer_group, "group", "GROUP");
catalog_entity!(customer_source, "source", "SOURCE");
catalog_entity!(relationship, "relationship", "RELATIONSHIP");

/// Every row of the tenant.
pub fn in_tenant<E: CatalogEntity>(tenant: &str) -> Select<E> {
    E::find().filter(E::tenant_col().eq(tenant))
}

/// The row `id` of the tenant, deleted or not; NOT_FOUND otherwise.
pub async fn find<E: CatalogEntity>(
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

/// Like [`find`], and locks the row until the transaction ends (PostgreSQL;
/// SQLite's write transaction already excludes other writers).
pub async fn find_for_update<E: CatalogEntity>(
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
pub async fn lock_target<E: CatalogEntity>(
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
pub fn check_etag<E: CatalogEntity>(row: &E::Model, expected: &str) -> AppResult<()> {
    let current = etag(row.revision());
    if expected.is_empty() || expected == current {
        Ok(())
    } else {
        Err(AppError::Aborted(format!(
            "{} `{}` changed since it was read (etag `{expected}`, now `{current}`); read it again",
            E::RESOURCE,
            row.id()
        )))
    }
}

/// FAILED_PRECONDITION when the row is deleted.
pub fn ensure_active<E: CatalogEntity>(row: &E::Model, action: &str) -> AppResult<()> {
    match row.delete_time() {
        None => Ok(()),
        Some(_) => Err(AppError::precondition(
            "DELETED",
            row.id(),
            format!(
                "{} `{}` is deleted; restore it before {action}",
                E::RESOURCE,
                row.id()
            ),
        )),
    }
}

/// FAILED_PRECONDITION when the row to delete is deleted already.
pub fn ensure_not_yet_deleted<E: CatalogEntity>(row: &E::Model) -> AppResult<()> {
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
pub fn ensure_deleted<E: CatalogEntity>(row: &E::Model) -> AppResult<()> {
    match row.delete_time() {
        Some(_) => Ok(()),
        None => Err(AppError::precondition(
            "NOT_DELETED",
            row.id(),
            format!("{} `{}` is not deleted", E::RESOURCE, row.id()),
        )),
    }
}

/// ALREADY_EXISTS when another row of the tenant (deleted ones included)
/// has `code`.
pub async fn ensure_code_free<E: CatalogEntity>(
    db: &impl ConnectionTrait,
    tenant: &str,
    code: &str,
    except_id: Option<&str>,
) -> AppResult<()> {
    let mut query = in_tenant::<E>(tenant).filter(E::code_col().eq(code));
    if let Some(id) = except_id {
        query = query.filter(E::id_col().ne(id));
    }
    match query.one(db).await? {
        None => Ok(()),
        Some(existing) => Err(already_exists::<E>(
            &existing,
            &format!("{} code `{code}` is taken", E::RESOURCE),
        )),
    }
}

/// The code of a new row: the given one if free, else one derived from the
/// name with `_2`, `_3`, … appended on a clash.
pub async fn pick_code<E: CatalogEntity>(
    db: &impl ConnectionTrait,
    tenant: &str,
    given: Option<&str>,
    name: &str,
) -> AppResult<String> {
    if let Some(code) = given {
        ensure_code_free::<E>(db, tenant, code, None).await?;
        return Ok(code.to_owned());
    }
    let base = text::code_from_name(name, E::CODE_FALLBACK);
    // A suffixed code may shorten a long base, so match on a shorter prefix.
    let prefix: String = base.chars().take(text::CODE_MAX_LEN - 11).collect();
    let taken: std::collections::HashSet<String> = in_tenant::<E>(tenant)
        .filter(E::code_col().starts_with(&prefix))
        .select_only()
        .column(E::code_col())
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    if !taken.contains(&base) {
        return Ok(base);
    }
    let free = (2..)
        .map(|n| text::code_with_suffix(&base, n))
        .find(|code| !taken.contains(code))
        .unwrap_or(base);
    Ok(free)
}

/// ALREADY_EXISTS when an active row of the tenant within `scope` has the
/// same case-folded name. `scope_words` completes the message ("under this
/// parent").
pub async fn ensure_name_free<E: CatalogEntity>(
    db: &impl ConnectionTrait,
    tenant: &str,
    name: &str,
    scope: Condition,
    scope_words: &str,
    except_id: Option<&str>,
) -> AppResult<()> {
    let mut query = in_tenant::<E>(tenant)
        .filter(E::name_key_col().eq(text::name_key(name)))
        .filter(E::delete_time_col().is_null())
        .filter(scope);
    if let Some(id) = except_id {
        query = query.filter(E::id_col().ne(id));
    }
    match query.one(db).await? {
        None => Ok(()),
        Some(existing) => Err(already_exists::<E>(
            &existing,
            &format!(
                "an active {} named \"{name}\" already exists{scope_words}",
                E::RESOURCE
            ),
        )),
    }
}

/// Checks a patch of a tenant-wide catalog (sources, relationships): its new
/// name and code must be free.
pub async fn ensure_patch_free<E: CatalogEntity>(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    patch: &EntryPatch,
) -> AppResult<()> {
    if let Some(name) = &patch.name {
        ensure_name_free::<E>(tx, tenant, name, Condition::all(), "", Some(id)).await?;
    }
    if let Some(code) = &patch.code {
        ensure_code_free::<E>(tx, tenant, code, Some(id)).await?;
    }
    Ok(())
}

/// ALREADY_EXISTS naming the existing row.
fn already_exists<E: CatalogEntity>(existing: &E::Model, what: &str) -> AppError {
    AppError::AlreadyExists {
        resource: E::RESOURCE,
        existing_id: existing.id().to_owned(),
        message: format!("{what}: `{}`", existing.id()),
    }
}

/// Restricts a query to active rows, deleted rows or both.
pub fn with_deleted_filter<E: CatalogEntity>(query: Select<E>, filter: DeletedFilter) -> Select<E> {
    match filter {
        DeletedFilter::Active => query.filter(E::delete_time_col().is_null()),
        DeletedFilter::Only => query.filter(E::delete_time_col().is_not_null()),
        DeletedFilter::All => query,
    }
}

/// One page of `query`, ordered by the two columns of `order` (the second
/// unique), starting after the request's cursor; `key` gives a row's sort key.
pub async fn list_page<E: CatalogEntity>(
    db: &DatabaseConnection,
    query: Select<E>,
    order: [(E::Column, CursorKind); 2],
    page: &PageRequest,
    key: impl Fn(&E::Model) -> Cursor,
) -> AppResult<Page<E::Model>>
where
    E::Model: Sync,
{
    let tx = super::snapshot(db).await?;
    let total = query.clone().count(&tx).await?;
    let [(first, first_kind), (second, second_kind)] = order;
    let mut rows_query = query
        .order_by(first, Order::Asc)
        .order_by(second, Order::Asc);
    if let Some(cursor) = &page.after {
        let [a, b] = cursor_pair(cursor, [first_kind, second_kind])?;
        rows_query = rows_query.filter(
            Condition::any()
                .add(first.gt(a.clone()))
                .add(Condition::all().add(first.eq(a)).add(second.gt(b))),
        );
    }
    let mut items = rows_query.limit(page.size + 1).all(&tx).await?;
    tx.commit().await?;
    let next = if items.len() as u64 > page.size {
        items.truncate(page.size as usize);
        items.last().map(&key)
    } else {
        None
    };
    Ok(Page { items, next, total })
}

fn cursor_pair(cursor: &Cursor, kinds: [CursorKind; 2]) -> AppResult<[Value; 2]> {
    let to_value = |v: &CursorValue| match v {
        CursorValue::Int(i) => Value::from(*i),
        CursorValue::Text(s) => Value::from(s.clone()),
    };
    match cursor.0.as_slice() {
        [a, b] if a.is(kinds[0]) && b.is(kinds[1]) => Ok([to_value(a), to_value(b)]),
        _ => Err(AppError::invalid(
            "page_token",
            "is not a token for this list",
        )),
    }
}

/// One page of `query` in name order (see [`text::sort_key`]).
pub async fn list_by_name<E: CatalogEntity>(
    db: &DatabaseConnection,
    query: Select<E>,
    page: &PageRequest,
) -> AppResult<Page<E::Model>>
where
    E::Model: Sync,
{
    let order = [
        (E::sort_key_col(), CursorKind::Text),
        (E::id_col(), CursorKind::Text),
    ];
    list_page(db, query, order, page, |m| {
        Cursor(vec![
            CursorValue::Text(m.sort_key().to_owned()),
            CursorValue::Text(m.id().to_owned()),
        ])
    })
    .await
}
