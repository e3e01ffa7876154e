//! One entry of a tenant's membership log: a customer joined or left a
//! group.

use sea_orm::entity::prelude::*;

/// A row of `membership_changes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "membership_changes")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// Position in the tenant's membership log: contiguous, in commit order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    /// The group.
    pub group_id: String,
    /// The customer.
    pub customer_id: String,
    /// Joined (true) or left.
    pub joined: bool,
    /// Why (see `domain::membership::MembershipCause`).
    pub cause: String,
    /// Who acted; empty for the system.
    pub actor_id: String,
    /// When.
    pub change_time: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
