//! How many active customers hold a relationship, kept up to date by every
//! write so the unfiltered summary bar never counts a million rows.

use sea_orm::entity::prelude::*;

/// A row of `relationship_counts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "relationship_counts")]
pub struct Model {
    /// The tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The relationship.
    #[sea_orm(primary_key, auto_increment = false)]
    pub relationship_id: String,
    /// Active customers holding it.
    pub customers: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
