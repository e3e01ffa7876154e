//! One entry of a tenant's relationship change log.

use sea_orm::entity::prelude::*;

/// A row of `relationship_changes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "relationship_changes")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// Position in the tenant's log: contiguous, in commit order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    /// The customer.
    pub customer_id: String,
    /// Relationship before; empty on creation.
    pub old_relationship_id: String,
    /// Relationship after.
    pub new_relationship_id: String,
    /// `CREATED`, `MANUAL`, `AUTOMATIC_INACTIVITY`, `CONTACT_RESUMED`,
    /// `RELATIONSHIP_DELETED` or `IMPORT`.
    pub cause: String,
    /// Who made it; empty for the system.
    pub actor_id: String,
    /// Why.
    pub reason: String,
    /// When.
    pub change_time: i64,
    /// The customer's owner when the change was made.
    pub owner_id: String,
    /// The customer's groups when the change was made, comma-separated.
    pub group_ids: String,
    /// The customer's source at the time of the change; empty for none.
    pub source_id: String,
    /// For a move: when the customer entered the relationship it leaves
    /// (the time of its previous change). `None` for a creation.
    pub held_since: Option<i64>,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
