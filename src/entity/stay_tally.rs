//! How many moves out of a relationship on one UTC day ended a stay of a
//! length in one bucket (`migrations::tallies::stay_bucket`). Kept with the
//! change log, so the flow report finds the bucket its median and 90th
//! percentile lie in without reading every move.

use sea_orm::entity::prelude::*;

/// A row of `stay_tallies`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stay_tallies")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// Days since the Unix epoch (UTC) of the moves.
    #[sea_orm(primary_key, auto_increment = false)]
    pub change_day: i64,
    /// The relationship left.
    #[sea_orm(primary_key, auto_increment = false)]
    pub relationship_id: String,
    /// The bucket of the stays' lengths.
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket: i32,
    /// Moves.
    pub stays: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
