//! The rows an import applied, by import and row number: what a repeat of
//! the import with the same request id reports instead of applying them
//! again, and which row of an import made a customer (so a later row with
//! the same phone or email can name it). Kept 24 hours, like request ids.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "CREATE TABLE imported_rows (
        tenant_id TEXT NOT NULL,
        import_id TEXT NOT NULL,
        row_number BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, import_id, row_number)
    )",
    "CREATE INDEX imported_rows_by_customer ON imported_rows (tenant_id, import_id, customer_id)",
    "CREATE INDEX imported_rows_by_time ON imported_rows (create_time)",
];

const DOWN: &[&str] = &["DROP TABLE imported_rows"];

sql_migration!();
