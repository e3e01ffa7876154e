//! Each relationship change that moves a customer keeps when the customer
//! entered the relationship it leaves (the time of its previous change), so
//! the flow report reads how long stays lasted from the period's own rows
//! instead of looking up every move's predecessor. The few deleted
//! customers are indexed by deletion time, for the summary bar as of a past
//! moment (which counts those deleted since).

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "ALTER TABLE relationship_changes ADD COLUMN held_since BIGINT",
    "UPDATE relationship_changes SET held_since = (
        SELECT previous.change_time FROM relationship_changes previous
        WHERE previous.tenant_id = relationship_changes.tenant_id
          AND previous.customer_id = relationship_changes.customer_id
          AND previous.sequence < relationship_changes.sequence
        ORDER BY previous.sequence DESC LIMIT 1)
     WHERE old_relationship_id <> ''",
    "CREATE INDEX customers_deleted_by_time ON customers (tenant_id, delete_time)
        WHERE delete_time IS NOT NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX customers_deleted_by_time",
    "ALTER TABLE relationship_changes DROP COLUMN held_since",
];

sql_migration!();
