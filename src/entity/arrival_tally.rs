//! How many moves into one relationship were made on one UTC day while
//! the customers were one owner's, by the day of each customer's previous
//! move into it with that owner, and the sum of those customers' present
//! revenue. Kept by the write path: a period's moves whose previous one
//! lies before the period count each customer once per owner, which is
//! the owner report's closed figure.

use sea_orm::entity::prelude::*;

/// A row of `arrival_tallies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "arrival_tallies")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The relationship moved into.
    #[sea_orm(primary_key, auto_increment = false)]
    pub relationship_id: String,
    /// Days since the Unix epoch (UTC) of the moves.
    #[sea_orm(primary_key, auto_increment = false)]
    pub arrival_day: i64,
    /// The day of each customer's previous move into the relationship with
    /// the same owner; `migrations::tallies::NO_PREVIOUS_DAY` for none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub previous_day: i64,
    /// The owner at the time of the moves; `''` for none.
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner_id: String,
    /// Moves.
    pub arrivals: i64,
    /// The sum of the high 32 bits (signed) of the customers' revenue.
    pub revenue_high: i64,
    /// The sum of the low 32 bits of the customers' revenue.
    pub revenue_low: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
