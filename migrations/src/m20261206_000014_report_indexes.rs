//! What the reports read from the logs: each relationship change keeps the
//! customer's source at the time (as it keeps the owner and groups), and
//! both logs are indexed by time, so a report over a period reads only
//! that period's changes.
//!
//! Changes logged before this migration get the source their customer has
//! when it runs (the nearest value there is).

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "ALTER TABLE relationship_changes ADD COLUMN source_id TEXT NOT NULL DEFAULT ''",
    "UPDATE relationship_changes SET source_id = COALESCE((
        SELECT customers.source_id FROM customers
        WHERE customers.id = relationship_changes.customer_id), '')",
    "CREATE INDEX relationship_changes_by_time ON relationship_changes (tenant_id, change_time)",
    "CREATE INDEX membership_changes_by_group_time ON membership_changes
        (tenant_id, group_id, change_time)",
];

const DOWN: &[&str] = &[
    "DROP INDEX membership_changes_by_group_time",
    "DROP INDEX relationship_changes_by_time",
    "ALTER TABLE relationship_changes DROP COLUMN source_id",
];

sql_migration!();
