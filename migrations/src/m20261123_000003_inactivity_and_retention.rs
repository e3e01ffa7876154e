//! The inactivity sweep and the change stream's retention.
//!
//! - `customers_active_by_relationship_activity` lets the sweep read, for
//!   each relationship customers hold, only those idle long enough to move:
//!   customers already where the rule wants them are never scanned, so a
//!   sweep with nothing to do costs a few index probes however many idle
//!   customers a tenant has.
//! - `change_counters.trimmed_through`: the changes up to this sequence are
//!   past `--change-retention` and no longer replayable. The rows stay, as
//!   the customers' relationship history (`ListRelationshipHistory`).

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "CREATE INDEX customers_active_by_relationship_activity
        ON customers (tenant_id, relationship_id, activity_time, id)
        WHERE delete_time IS NULL",
    "ALTER TABLE change_counters ADD COLUMN trimmed_through BIGINT NOT NULL DEFAULT 0",
];

const DOWN: &[&str] = &[
    "ALTER TABLE change_counters DROP COLUMN trimmed_through",
    "DROP INDEX customers_active_by_relationship_activity",
];

sql_migration!();
