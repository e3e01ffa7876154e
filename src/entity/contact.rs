//! A recorded contact with a customer.

use sea_orm::entity::prelude::*;

/// A row of `contacts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    /// UUIDv7.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The customer contacted.
    pub customer_id: String,
    /// `CALL`, `EMAIL`, `MEETING`, `SMS`, `CHAT` or `OTHER`.
    pub channel: String,
    /// Free text.
    pub note: String,
    /// When the contact happened.
    pub contact_time: i64,
    /// Who recorded it.
    pub actor_id: String,
    /// When it was recorded.
    pub create_time: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
