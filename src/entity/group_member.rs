//! A customer's membership of a group, with copies of the customer's
//! relationship, activeness and creation time so group-filtered counts and
//! lists read this table's indexes alone.

use sea_orm::entity::prelude::*;

/// A row of `group_members`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "group_members")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The group.
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_id: String,
    /// The customer.
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: String,
    /// Copy of the customer's relationship.
    pub relationship_id: String,
    /// Copy of "the customer is not deleted".
    pub customer_active: bool,
    /// Copy of the customer's creation time.
    pub customer_create_time: i64,
    /// The group's rule matches the customer.
    pub matched: bool,
    /// Added by hand: a member of a manual group, or pinned into a rule
    /// group.
    pub pinned: bool,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
