//! The owner in `relationship_members`, and an index by relationship and
//! owner: a list of one relationship's customers of one owner (the common
//! "my Hot customers" question, often with a creation-time range) reads its
//! page and its exact total from this index alone, instead of reading each
//! of the owner's customers to check its relationship. The write path
//! keeps the copy (`store::customers::write`).

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "ALTER TABLE relationship_members ADD COLUMN owner_id TEXT NOT NULL DEFAULT ''",
    "UPDATE relationship_members SET owner_id =
        (SELECT c.owner_id FROM customers c WHERE c.id = relationship_members.customer_id)",
    "CREATE INDEX relationship_members_by_owner ON relationship_members
        (tenant_id, relationship_id, customer_active, owner_id, customer_create_time, customer_id)",
];

const DOWN: &[&str] = &[
    "DROP INDEX relationship_members_by_owner",
    "ALTER TABLE relationship_members DROP COLUMN owner_id",
];

sql_migration!();
