//! `relationship_changes.owner_id` and `.group_ids`: the customer's owner
//! and groups (comma-separated ids) when the change was made, which the
//! change stream's `owner_ids` and `group_ids` filters match. Changes
//! recorded before this migration have none: a watch filtering on owners or
//! groups does not match them.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "ALTER TABLE relationship_changes ADD COLUMN owner_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE relationship_changes ADD COLUMN group_ids TEXT NOT NULL DEFAULT ''",
];

const DOWN: &[&str] = &[
    "ALTER TABLE relationship_changes DROP COLUMN group_ids",
    "ALTER TABLE relationship_changes DROP COLUMN owner_id",
];

sql_migration!();
