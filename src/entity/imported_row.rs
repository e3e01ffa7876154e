//! A row an import applied (kept 24 hours for resuming the import).

use sea_orm::entity::prelude::*;

/// A row of `imported_rows`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "imported_rows")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The import's request id, or one the server made up for it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub import_id: String,
    /// The client's row number.
    #[sea_orm(primary_key, auto_increment = false)]
    pub row_number: i64,
    /// `CREATED`, `UPDATED` or `UNCHANGED`.
    pub outcome: String,
    /// The customer the row created or matched.
    pub customer_id: String,
    /// When the row was applied.
    pub create_time: i64,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
