//! How many active customers each owner holds, kept by the write path with
//! the other counters, so the owner report's `customers` reads a row per
//! owner instead of every customer.

use sea_orm::entity::prelude::*;

/// A row of `owner_counts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "owner_counts")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The owner; `''` for none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner_id: String,
    /// Active customers it holds.
    pub customers: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
