//! `relationship_members`: each customer's relationship, with the copies
//! the lists by relationship and the inactivity sweep read, in a narrow
//! table of its own; `customers` no longer indexes its relationship.
//!
//! A change of relationship used to write a new entry in every index of
//! `customers` (twelve), because three of them held the relationship: on
//! PostgreSQL an update that changes an indexed column cannot be a
//! heap-only (HOT) update. With the relationship indexed here instead, a
//! move rewrites the customer's row in place (HOT, given room on its page:
//! hence fill factor 85 on PostgreSQL, for pages written from now on) and
//! adds two entries here (three when the customer goes to a manual
//! relationship, which puts it back in the sweep's index). Measured on 1,000,000 customers, a sweep moving
//! 100,000 took 0.84 of the time with moves HOT (see BENCHMARKS.md).
//!
//! - `relationship_members_by_relationship` serves lists of a
//!   relationship's customers, active (newest first) or deleted, and the
//!   reassignment of a deleted relationship's holders; a full index with
//!   `customer_active` among its columns, like `group_members_by_relationship`,
//!   so a bound value selects it.
//! - `relationship_members_unplaced_by_activity` is the sweep's: active
//!   customers not in an automatic relationship, by activity time (what
//!   `customers_unplaced_by_relationship_activity` was).
//!
//! `customers.automatic_relationship` moves here. `customers.relationship_id`
//! stays (the record reads it), unindexed. Every write of a customer's
//! relationship, activity time or deletion writes its row here in the same
//! transaction (the write path, `store::customers::write`).

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "CREATE TABLE relationship_members (
        customer_id TEXT PRIMARY KEY REFERENCES customers (id),
        tenant_id TEXT NOT NULL,
        relationship_id TEXT NOT NULL,
        automatic_relationship BOOLEAN NOT NULL,
        customer_active BOOLEAN NOT NULL,
        customer_create_time BIGINT NOT NULL,
        activity_time BIGINT NOT NULL
    ){WITHOUT_ROWID}",
    "INSERT INTO relationship_members (customer_id, tenant_id, relationship_id,
            automatic_relationship, customer_active, customer_create_time, activity_time)
        SELECT id, tenant_id, relationship_id, automatic_relationship, delete_time IS NULL,
            create_time, activity_time
        FROM customers",
    "CREATE INDEX relationship_members_by_relationship ON relationship_members
        (tenant_id, relationship_id, customer_active, customer_create_time, customer_id)",
    "CREATE INDEX relationship_members_unplaced_by_activity ON relationship_members
        (tenant_id, relationship_id, activity_time, customer_id)
        WHERE customer_active = TRUE AND automatic_relationship = FALSE",
    "DROP INDEX customers_active_by_relationship",
    "DROP INDEX customers_deleted_by_relationship",
    "DROP INDEX customers_unplaced_by_relationship_activity",
    "ALTER TABLE customers DROP COLUMN automatic_relationship",
];

const DOWN: &[&str] = &[
    "ALTER TABLE customers ADD COLUMN automatic_relationship BOOLEAN NOT NULL DEFAULT FALSE",
    "UPDATE customers SET automatic_relationship = TRUE
        WHERE relationship_id IN (SELECT id FROM relationships WHERE kind = 'AUTOMATIC_INACTIVITY')",
    "CREATE INDEX customers_unplaced_by_relationship_activity
        ON customers (tenant_id, relationship_id, activity_time, id)
        WHERE delete_time IS NULL AND automatic_relationship = FALSE",
    "CREATE INDEX customers_deleted_by_relationship ON customers (tenant_id, relationship_id)
        WHERE delete_time IS NOT NULL",
    "CREATE INDEX customers_active_by_relationship ON customers (tenant_id, relationship_id, create_time, id)
        WHERE delete_time IS NULL",
    "DROP TABLE relationship_members",
];

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await?;
        fill_factor(manager, Some(85)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await?;
        fill_factor(manager, None).await
    }
}

/// The share of each page of `customers` PostgreSQL fills, leaving the rest
/// for updates of its rows (`None`: the default, full pages). SQLite has no
/// such setting.
async fn fill_factor(manager: &SchemaManager<'_>, percent: Option<u32>) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let sql = match percent {
            Some(percent) => format!("ALTER TABLE customers SET (fillfactor = {percent})"),
            None => "ALTER TABLE customers RESET (fillfactor)".to_owned(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}
