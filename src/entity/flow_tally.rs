//! How many changes from one relationship to another a cause made on one
//! UTC day, and the latest of them; old relationship `''` counts
//! creations. Kept with the change log, so the flow report and the summary
//! bar as of a past moment read a row per (move, cause) and day instead of
//! every change.

use sea_orm::entity::prelude::*;

/// A row of `flow_tallies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "flow_tallies")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// Days since the Unix epoch (UTC) of the changes.
    #[sea_orm(primary_key, auto_increment = false)]
    pub change_day: i64,
    /// The relationship left; `''` for a creation.
    #[sea_orm(primary_key, auto_increment = false)]
    pub old_relationship_id: String,
    /// The relationship entered.
    #[sea_orm(primary_key, auto_increment = false)]
    pub new_relationship_id: String,
    /// The changes' cause, as the log keeps it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub cause: String,
    /// Changes.
    pub changes: i64,
    /// The greatest sequence among them.
    pub last_sequence: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
