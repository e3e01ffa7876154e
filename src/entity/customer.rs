//! A customer.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `customers`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    /// UUIDv7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name as given (trimmed).
    pub name: String,
    /// Transliterated, lower-cased name: the `name` order.
    pub sort_key: String,
    /// Transliterated, lower-cased name, phone and email: what `query` searches.
    pub search_text: String,
    /// Normalised phone, or empty.
    pub phone: String,
    /// Lower-cased email, or empty.
    pub email: String,
    /// Owning user, or empty.
    pub owner_id: String,
    /// Source, if any.
    pub source_id: Option<String>,
    /// Current relationship.
    pub relationship_id: String,
    /// Province or city.
    pub province: String,
    /// Company name.
    pub company: String,
    /// Folded `name` (`domain::filter::text::fold`): what filters compare.
    pub name_folded: String,
    /// Folded `company`.
    pub company_folded: String,
    /// Folded `province`.
    pub province_folded: String,
    /// JSON object of each attribute's key and folded value.
    pub attributes_folded: String,
    /// Revenue in minor currency units.
    pub revenue: i64,
    /// JSON object of the tenant's own fields.
    pub attributes: String,
    /// Latest contact, if any.
    pub last_contact_time: Option<i64>,
    /// Latest contact, or creation when never contacted: what the inactivity
    /// rule and the `last_contact_time` order read.
    pub activity_time: i64,
    /// 0–100.
    pub profile_completion: i32,
    /// Bumped on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: i64,
    /// Last change.
    pub update_time: i64,
    /// Soft-delete time.
    pub delete_time: Option<i64>,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
