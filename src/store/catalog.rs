//! What the three catalogs (groups, sources, relationships) share beyond
//! [`super::resource`]: codes generated from names, and name uniqueness.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, QueryFilter, QuerySelect,
};

use super::resource::{Resource, Row, in_tenant};
use crate::{
    domain::{catalog::EntryPatch, text},
    entity::{customer_group, customer_source, relationship},
    error::{AppError, AppResult},
};

/// The writable side of a catalog row.
pub trait CatalogActive {
    /// Applies the common fields of `patch` (and the keys derived from the name).
    fn apply_entry(&mut self, patch: EntryPatch);
}

/// A catalog table.
pub trait CatalogEntity: Resource {
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
