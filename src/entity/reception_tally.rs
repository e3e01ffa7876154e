//! How many customers were created on one UTC day with one owner (deleted
//! ones included). Kept by the write path at each creation, so the owner
//! report reads a row per owner and day for the customers each received.

use sea_orm::entity::prelude::*;

/// A row of `reception_tallies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reception_tallies")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// Days since the Unix epoch (UTC) of the creations.
    #[sea_orm(primary_key, auto_increment = false)]
    pub create_day: i64,
    /// The owner at creation; `''` for none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner_id: String,
    /// Customers.
    pub customers: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
