//! The inactivity sweep, the change stream's retention and filters.
//!
//! - `customers_active_by_relationship_activity` lets the sweep read, for
//!   each relationship customers hold, only those idle long enough to move:
//!   customers already where the rule wants them are never scanned, so a
//!   sweep with nothing to do costs a few index probes however many idle
//!   customers a tenant has.
//! - `change_counters.trimmed_through`: the changes up to this sequence are
//!   past `--change-retention` and no longer replayable. The rows stay, as
//!   the customers' relationship history (`ListRelationshipHistory`).
//! - `relationship_changes.owner_id` and `.group_ids`: the customer's owner
//!   and groups (comma-separated ids) when the change was made, which the
//!   stream's `owner_ids` and `group_ids` filters match. Changes recorded
//!   before this migration have none and pass only unfiltered watches on
//!   those fields.

use sea_orm_migration::prelude::*;

use crate::execute_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE INDEX customers_active_by_relationship_activity
        ON customers (tenant_id, relationship_id, activity_time, id)
        WHERE delete_time IS NULL",
    "ALTER TABLE change_counters ADD COLUMN trimmed_through BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE relationship_changes ADD COLUMN owner_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE relationship_changes ADD COLUMN group_ids TEXT NOT NULL DEFAULT ''",
];

const DOWN: &[&str] = &[
    "ALTER TABLE relationship_changes DROP COLUMN group_ids",
    "ALTER TABLE relationship_changes DROP COLUMN owner_id",
    "ALTER TABLE change_counters DROP COLUMN trimmed_through",
    "DROP INDEX customers_active_by_relationship_activity",
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
