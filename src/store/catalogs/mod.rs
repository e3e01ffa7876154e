//! The three catalogs customers are classified by: [`groups`] (a tree),
//! [`sources`] and [`relationships`]. This module holds what they share
//! beyond [`crate::store::resource`]: the one Create path, codes generated
//! from names, and name uniqueness.

pub mod groups;
pub mod relationships;
pub mod sources;

use std::future::Future;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, QueryFilter, QuerySelect, Select,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::store::{
    Store, WriteTx,
    customers::group_rules::lock_rules,
    idempotency::{self, Claim},
    lock_scope,
    resource::{Resource, Row, in_tenant},
};
use crate::{
    domain::{
        catalog::{EntryPatch, IdempotencyKey, NewEntry},
        ids,
        tenant::TenantId,
        text,
    },
    entity::{customer_group, customer_source, relationship},
    error::{AppError, AppResult},
};

/// The writable side of a catalog row.
pub trait CatalogActive {
    /// A new row (revision 1, made at `now`) with code `code` and the name
    /// and description of `entry` (whose code was only a wish); the
    /// catalog's own fields are left unset.
    fn created(id: String, tenant: &str, code: String, entry: NewEntry, now: i64) -> Self;
    /// Applies the common fields of `patch` (and the keys derived from the name).
    fn apply_entry(&mut self, patch: &EntryPatch);
}

/// A catalog table.
pub trait CatalogEntity: Resource<ActiveModel: CatalogActive> {
    /// Code used when a name transliterates to nothing.
    const CODE_FALLBACK: &'static str;
    /// `code`.
    fn code_col() -> Self::Column;
    /// `name_key`.
    fn name_key_col() -> Self::Column;
}

macro_rules! catalog_entity {
    ($module:ident, $fallback:literal) => {
        impl CatalogActive for $module::ActiveModel {
            #[allow(
                clippy::needless_update,
                reason = "sources have no fields of their own"
            )]
            fn created(id: String, tenant: &str, code: String, entry: NewEntry, now: i64) -> Self {
                Self {
                    id: Set(id),
                    tenant_id: Set(tenant.to_owned()),
                    code: Set(code),
                    name_key: Set(text::name_key(&entry.name)),
                    sort_key: Set(text::sort_key(&entry.name)),
                    name: Set(entry.name),
                    description: Set(entry.description),
                    revision: Set(1),
                    create_time: Set(now),
                    update_time: Set(now),
                    delete_time: Set(None),
                    ..Default::default()
                }
            }

            fn apply_entry(&mut self, patch: &EntryPatch) {
                if let Some(code) = &patch.code {
                    self.code = Set(code.clone());
                }
                if let Some(name) = &patch.name {
                    self.name_key = Set(text::name_key(name));
                    self.sort_key = Set(text::sort_key(name));
                    self.name = Set(name.clone());
                }
                if let Some(description) = &patch.description {
                    self.description = Set(description.clone());
                }
            }
        }

        impl CatalogEntity for $module::Entity {
            const CODE_FALLBACK: &'static str = $fallback;
            fn code_col() -> Self::Column {
                $module::Column::Code
            }
            fn name_key_col() -> Self::Column {
                $module::Column::NameKey
            }
        }
    };
}

catalog_entity!(customer_group, "GROUP");
catalog_entity!(customer_source, "SOURCE");
catalog_entity!(relationship, "RELATIONSHIP");

/// What a catalog's Create adds to the steps every catalog's Create takes
/// (see [`Store::create_entry`]).
pub trait CreateEntry: CatalogEntity<Model: Serialize + DeserializeOwned + Sync> {
    /// The advisory-lock scope the catalog's writes of a tenant take turns on.
    const SCOPE: &'static str;
    /// The Create operation, under which its request ids are remembered.
    const OPERATION: &'static str;
    /// The validated Create input.
    type Input: Clone + Send + Sync + 'static;

    /// The common fields of `input`.
    fn entry(input: &Self::Input) -> &NewEntry;

    /// The rows the new name must differ from, and the words completing the
    /// message when it does not: the whole tenant unless said otherwise.
    fn name_scope(_input: &Self::Input) -> (Condition, &'static str) {
        (Condition::all(), "")
    }

    /// Checks of `input` made before its name is (e.g. the parent group).
    fn check(
        _tx: &WriteTx,
        _tenant: &str,
        _input: &Self::Input,
    ) -> impl Future<Output = AppResult<()>> + Send {
        async { Ok(()) }
    }

    /// Stores `row` (the common fields set, id `id`) with the catalog's own
    /// fields from `input`, and what goes with it; returns the stored row.
    fn insert_row(
        tx: &WriteTx,
        tenant: &str,
        id: &str,
        input: Self::Input,
        row: Self::ActiveModel,
        now: i64,
    ) -> impl Future<Output = AppResult<Self::Model>> + Send;
}

impl Store {
    /// Creates a row of catalog `E`: under the catalog's lock, answers a
    /// repeated request id with its first result, else checks the input and
    /// that the name is free, picks the code, stores the row and remembers
    /// it for the request id.
    pub async fn create_entry<E: CreateEntry>(
        &self,
        tenant: &TenantId,
        input: &E::Input,
        key: Option<&IdempotencyKey>,
    ) -> AppResult<E::Model> {
        let now = self.now();
        let input = (input.clone(), key.cloned(), tenant.as_str().to_owned());
        self.write(input, move |tx, (input, key, tenant)| {
            Box::pin(async move {
                let tenant = tenant.as_str();
                lock_scope(tx, tenant, E::SCOPE).await?;
                // A new group joins a subtree rules may take in; a new
                // source or relationship gives a code rules may name.
                lock_rules(tx, tenant).await?;
                if let Claim::Replay(first) =
                    idempotency::claim(tx, tenant, E::OPERATION, key.as_ref(), now).await?
                {
                    return idempotency::first_result(&first);
                }
                E::check(tx, tenant, input).await?;
                let entry = E::entry(input);
                let (scope, scope_words) = E::name_scope(input);
                ensure_name_free::<E>(tx, tenant, &entry.name, scope, scope_words, None).await?;
                let code = pick_code::<E>(tx, tenant, entry.code.as_deref(), &entry.name).await?;
                let id = ids::new_id();
                let row = E::ActiveModel::created(id.clone(), tenant, code, entry.clone(), now);
                let model = E::insert_row(tx, tenant, &id, input.clone(), row, now).await?;
                idempotency::remember(tx, tenant, E::OPERATION, key.as_ref(), &id, &model, now)
                    .await?;
                Ok(model)
            })
        })
        .await
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
    let query = in_tenant::<E>(tenant).filter(E::code_col().eq(code));
    ensure_none_other(db, query, except_id, || {
        format!("{} code `{code}` is taken", E::RESOURCE)
    })
    .await
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
    let query = in_tenant::<E>(tenant)
        .filter(E::name_key_col().eq(text::name_key(name)))
        .filter(E::delete_time_col().is_null())
        .filter(scope);
    ensure_none_other(db, query, except_id, || {
        format!(
            "an active {} named \"{name}\" already exists{scope_words}",
            E::RESOURCE
        )
    })
    .await
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

/// ALREADY_EXISTS, saying `what` and naming the existing row, when `query`
/// finds a row other than `except_id`.
async fn ensure_none_other<E: CatalogEntity>(
    db: &impl ConnectionTrait,
    mut query: Select<E>,
    except_id: Option<&str>,
    what: impl FnOnce() -> String,
) -> AppResult<()> {
    if let Some(id) = except_id {
        query = query.filter(E::id_col().ne(id));
    }
    match query.one(db).await? {
        None => Ok(()),
        Some(existing) => Err(AppError::AlreadyExists {
            resource: E::RESOURCE,
            existing_id: existing.id().to_owned(),
            message: format!("{}: `{}`", what(), existing.id()),
        }),
    }
}
