//! A customer's first change of relationship after its creation: when and
//! where it was created, by whose hand, and how long until it moved. Kept
//! by the write path for the owner report's moves out of the default
//! relationship and their median time.

use sea_orm::entity::prelude::*;

/// A row of `first_moves`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "first_moves")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The customer.
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: String,
    /// The owner at creation; `''` for none.
    pub owner_id: String,
    /// The relationship it was created in.
    pub created_in: String,
    /// Its creation's time (microseconds since the epoch).
    pub create_time: i64,
    /// Microseconds from its creation to its next logged change.
    pub time_to_move: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
