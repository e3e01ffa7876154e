//! A customer's relationship, with copies of the customer's activeness,
//! creation and activity times and owner, in a narrow table of its own: lists by
//! relationship and the inactivity sweep read its indexes, so `customers`
//! need not index the relationship, and a move updates the customer's row
//! in place (see the migration `m20261206_000008_relationship_members`).

use sea_orm::entity::prelude::*;

/// A row of `relationship_members`: one per customer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "relationship_members")]
pub struct Model {
    /// The customer.
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The customer's relationship (as `customers.relationship_id`).
    pub relationship_id: String,
    /// Whether the relationship is an automatic one (a copy of its kind,
    /// which never changes): the sweep's index leaves such customers out.
    pub automatic_relationship: bool,
    /// Copy of "the customer is not deleted".
    pub customer_active: bool,
    /// Copy of the customer's creation time.
    pub customer_create_time: i64,
    /// Copy of the customer's activity time (last contact, or creation).
    pub activity_time: i64,
    /// Copy of the customer's owner.
    pub owner_id: String,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
