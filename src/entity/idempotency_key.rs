//! The `request_id` of a Create call, remembered for 24 hours.

use sea_orm::entity::prelude::*;

/// A row of `idempotency_keys`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The Create method, e.g. `CreateGroup`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub operation: String,
    /// The caller's request id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// Fingerprint of the first request.
    pub fingerprint: String,
    /// Id of the resource the first request created.
    pub resource_id: String,
    /// The first request's result (the created row as JSON), returned to
    /// every repeat.
    pub response: String,
    /// When the first request ran.
    pub create_time: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
