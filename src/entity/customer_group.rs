//! A customer group, a node of the tenant's group tree.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `customer_groups`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "customer_groups")]
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
    /// Case-folded name, unique among active siblings.
    pub name_key: String,
    /// Transliterated, lower-cased name then `name_key`: the list order.
    pub sort_key: String,
    /// Free text.
    pub description: String,
    /// Parent group, `None` at the top level.
    pub parent_id: Option<String>,
    /// The group whose cascading delete deleted this one; a restore of that
    /// group brings this one back too.
    pub deleted_with: Option<String>,
    /// Bumped on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: i64,
    /// Last change.
    pub update_time: i64,
    /// Soft-delete time.
    pub delete_time: Option<i64>,
    /// The filter that fills the group; empty for a manual group.
    pub rule: String,
    /// `CURRENT` or `EVALUATING`.
    pub evaluation_state: String,
    /// When the rule was last evaluated over every customer.
    pub evaluate_time: Option<i64>,
    /// While evaluating: the last customer id evaluated (empty before the
    /// first).
    pub evaluated_through: String,
    /// While evaluating: the membership cause its moves are logged with.
    pub evaluation_cause: String,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
