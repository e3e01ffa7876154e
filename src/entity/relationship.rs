//! A relationship status.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `relationships`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "relationships")]
pub struct Model {
    /// UUIDv7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Unique code in the tenant.
    pub code: String,
    /// Name as given (trimmed).
    pub name: String,
    /// Case-folded name, unique among active relationships.
    pub name_key: String,
    /// Transliterated, lower-cased name then `name_key`.
    pub sort_key: String,
    /// Free text.
    pub description: String,
    /// `#RRGGBB` or empty.
    pub color: String,
    /// 1-based place among active relationships.
    pub position: i32,
    /// `MANUAL` or `AUTOMATIC_INACTIVITY`.
    pub kind: String,
    /// Threshold of an automatic relationship.
    pub inactivity_days: i32,
    /// Whether a contact restores the previous manual relationship.
    pub restore_on_contact: bool,
    /// JSON array of exempt manual relationship ids.
    pub exempt_relationship_ids: String,
    /// Whether new customers get this relationship.
    pub is_default: bool,
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

impl Model {
    /// The exempt relationship ids; an error when the stored list is not
    /// the JSON array of strings it must be.
    pub fn exempt_ids(&self) -> Result<Vec<String>, serde_json::Error> {
        serde_json::from_str(&self.exempt_relationship_ids)
    }
}
