//! The last sequence number handed out in a tenant's membership log.

use sea_orm::entity::prelude::*;

/// A row of `membership_counters`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "membership_counters")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// Highest sequence used.
    pub last_sequence: i64,
    /// The changes up to this sequence are past the retention period.
    pub trimmed_through: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
