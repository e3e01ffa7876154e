//! How many active customers of a group hold a relationship, kept up to date
//! by every write so a group's summary bar and list totals read a few rows.

use sea_orm::entity::prelude::*;

/// A row of `group_relationship_counts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "group_relationship_counts")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The group.
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_id: String,
    /// The relationship.
    #[sea_orm(primary_key, auto_increment = false)]
    pub relationship_id: String,
    /// Active members holding it.
    pub customers: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
