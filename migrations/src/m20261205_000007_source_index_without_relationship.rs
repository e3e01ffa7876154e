//! `customers_active_by_source` without the relationship.
//!
//! It was (tenant, source, relationship): every change of a customer's
//! relationship rewrote its entry, and the inactivity sweep changes a tenth
//! of a tenant's customers at once. Nothing reads it for the relationship
//! (the source report reads the customers created in its range through
//! `customers_active_by_create`), while a list filtered by source pages in
//! creation order: it becomes (tenant, source, creation time, id), like the
//! index by owner, which a move never touches.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "DROP INDEX customers_active_by_source",
    "CREATE INDEX customers_active_by_source ON customers (tenant_id, source_id, create_time, id)
        WHERE delete_time IS NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX customers_active_by_source",
    "CREATE INDEX customers_active_by_source ON customers (tenant_id, source_id, relationship_id)
        WHERE delete_time IS NULL",
];

sql_migration!();
