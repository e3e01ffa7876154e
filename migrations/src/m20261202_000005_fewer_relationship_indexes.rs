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
//! - `customers_active_by_relationship_activity` goes: it held every
//!   active customer, so a move into an automatic relationship rewrote two
//!   of its pages (the old entry and the new). Migration 6 replaces it with
//!   an index of the customers not yet in an automatic relationship.

use sea_orm_migration::prelude::*;

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

sql_migration!();
