//! Fewer customer indexes that hold the relationship: each is rewritten
//! whenever a customer changes relationship, and the inactivity sweep moves
//! a tenth of a tenant's customers at a time.
//!
//! - `customers_by_relationship` (every customer, deleted or not) becomes
//!   `customers_deleted_by_relationship` (deleted ones only): active
//!   customers are found by relationship through
//!   `customers_active_by_relationship`, and deleted ones by relationship
//!   when it is deleted. A list of active and deleted customers together
//!   filtered by relationship (`show_deleted`) can use neither partial
//!   index: its total now counts by reading the tenant's customers (0.3 s
//!   for 1,000,000 on SQLite, about what counting 150,000 entries of the
//!   full index took); its pages read `customers_by_create` as before.
//! - `customers_active_by_relationship_activity` goes: the sweep reads the
//!   customers idle long enough through `customers_active_by_activity`,
//!   which does not hold the relationship: on SQLite a move leaves it
//!   alone (on PostgreSQL a move adds an entry to every index anyway). A
//!   sweep now reads every idle customer, also those already where the
//!   rule wants them (0.5–0.8 s per 100,000), where it used to skip them;
//!   in exchange moving 100,000 of 1,000,000 customers takes a third less
//!   time (see BENCHMARKS.md).

use sea_orm_migration::prelude::*;

use crate::execute_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE INDEX customers_deleted_by_relationship ON customers (tenant_id, relationship_id)
        WHERE delete_time IS NOT NULL",
    "DROP INDEX customers_by_relationship",
    "DROP INDEX customers_active_by_relationship_activity",
];

const DOWN: &[&str] = &[
    "CREATE INDEX customers_active_by_relationship_activity
        ON customers (tenant_id, relationship_id, activity_time, id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_by_relationship ON customers (tenant_id, relationship_id)",
    "DROP INDEX customers_deleted_by_relationship",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, DOWN).await
    }
}
