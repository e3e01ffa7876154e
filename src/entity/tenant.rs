//! A tenant, provisioned on its first request.

use sea_orm::entity::prelude::*;

/// A row of `tenants`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    /// The `x-tenant-id` value.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// When the tenant was provisioned.
    pub create_time: i64,
    /// Bumped by every change to what the tenant's group rules mean.
    pub rules_version: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
