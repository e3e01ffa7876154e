//! How many active customers of a group hold a relationship and come from
//! a source, and their revenue; group `''` is the customers with no
//! membership at all. Kept by every write, so the group report without a
//! period reads a few rows per group.

use sea_orm::entity::prelude::*;

/// A row of `group_tallies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "group_tallies")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The group (deleted ones too); `''` for no membership.
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_id: String,
    /// The relationship.
    #[sea_orm(primary_key, auto_increment = false)]
    pub relationship_id: String,
    /// The source; `''` for none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_id: String,
    /// Active customers.
    pub customers: i64,
    /// Sum of their revenues' high 32 bits (`revenue >> 32`).
    pub revenue_high: i64,
    /// Sum of their revenues' low 32 bits (`revenue & 0xFFFFFFFF`).
    pub revenue_low: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
