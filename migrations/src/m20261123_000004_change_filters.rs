//! `relationship_changes.owner_id` and `.group_ids`: the customer's owner
//! and groups (comma-separated ids) when the change was made, which the
//! change stream's `owner_ids` and `group_ids` filters match. Changes
//! recorded before this migration have none: a watch filtering on owners or
//! groups does not match them.

use sea_orm_migration::prelude::*;

use crate::execute_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE relationship_changes ADD COLUMN owner_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE relationship_changes ADD COLUMN group_ids TEXT NOT NULL DEFAULT ''",
];

const DOWN: &[&str] = &[
    "ALTER TABLE relationship_changes DROP COLUMN group_ids",
    "ALTER TABLE relationship_changes DROP COLUMN owner_id",
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
