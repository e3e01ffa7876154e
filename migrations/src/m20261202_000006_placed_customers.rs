//! `customers.automatic_relationship` and the sweep's index of the customers
//! not yet in an automatic relationship.
//!
//! The sweep reads, for each manual relationship, its holders idle long
//! enough to move, from `customers_unplaced_by_relationship_activity`
//! (tenant, relationship, activity time, id), which leaves out the customers
//! already in an automatic relationship. So a sweep with nothing to do
//! reads none of them, however many there are; and a move into an
//! automatic relationship only deletes the customer's entry (one page
//! rewritten), where an index of every customer would also insert one in
//! the target's range (two pages).
//!
//! `automatic_relationship` copies the kind of the customer's relationship
//! (a kind never changes); every move sets it (then `changes::record`; now the write path, `store::customers::write`).

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "ALTER TABLE customers ADD COLUMN automatic_relationship BOOLEAN NOT NULL DEFAULT FALSE",
    "UPDATE customers SET automatic_relationship = TRUE
        WHERE relationship_id IN (SELECT id FROM relationships WHERE kind = 'AUTOMATIC_INACTIVITY')",
    "CREATE INDEX customers_unplaced_by_relationship_activity
        ON customers (tenant_id, relationship_id, activity_time, id)
        WHERE delete_time IS NULL AND automatic_relationship = FALSE",
];

const DOWN: &[&str] = &[
    "DROP INDEX customers_unplaced_by_relationship_activity",
    "ALTER TABLE customers DROP COLUMN automatic_relationship",
];

sql_migration!();
