//! Tenants, the three classification catalogs (groups, sources,
//! relationships) and the idempotency keys of Create calls.
//!
//! Uniqueness rules live in the schema so they hold under concurrent writers:
//! codes are unique per tenant (deleted rows included, so a restore never
//! clashes); names are unique among active rows by their case-folded key
//! (partial indexes); a tenant has at most one active default relationship.
//!
//! Lists are ordered by `sort_key` (the name transliterated and lower-cased,
//! so "Đà Nẵng" sorts among the D's). PostgreSQL compares it bytewise
//! (`COLLATE "C"`) exactly as SQLite does, so paging order is the same on
//! both databases whatever the server's locale.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        create_time BIGINT NOT NULL
    )",
    "CREATE TABLE customer_groups (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        code TEXT NOT NULL,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        sort_key {SORT_TEXT} NOT NULL,
        description TEXT NOT NULL,
        parent_id TEXT REFERENCES customer_groups (id),
        deleted_with TEXT,
        revision BIGINT NOT NULL,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL,
        delete_time BIGINT
    )",
    "CREATE UNIQUE INDEX customer_groups_code ON customer_groups (tenant_id, code)",
    "CREATE UNIQUE INDEX customer_groups_sibling_name ON customer_groups
        (tenant_id, COALESCE(parent_id, ''), name_key) WHERE delete_time IS NULL",
    "CREATE INDEX customer_groups_by_name ON customer_groups (tenant_id, sort_key, id)",
    "CREATE INDEX customer_groups_by_parent ON customer_groups (tenant_id, parent_id)",
    "CREATE TABLE customer_sources (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        code TEXT NOT NULL,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        sort_key {SORT_TEXT} NOT NULL,
        description TEXT NOT NULL,
        revision BIGINT NOT NULL,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL,
        delete_time BIGINT
    )",
    "CREATE UNIQUE INDEX customer_sources_code ON customer_sources (tenant_id, code)",
    "CREATE UNIQUE INDEX customer_sources_name ON customer_sources (tenant_id, name_key)
        WHERE delete_time IS NULL",
    "CREATE INDEX customer_sources_by_name ON customer_sources (tenant_id, sort_key, id)",
    "CREATE TABLE relationships (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        code TEXT NOT NULL,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        sort_key {SORT_TEXT} NOT NULL,
        description TEXT NOT NULL,
        color TEXT NOT NULL,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('MANUAL', 'AUTOMATIC_INACTIVITY')),
        inactivity_days INTEGER NOT NULL,
        restore_on_contact BOOLEAN NOT NULL,
        exempt_relationship_ids TEXT NOT NULL,
        is_default BOOLEAN NOT NULL,
        revision BIGINT NOT NULL,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL,
        delete_time BIGINT
    )",
    "CREATE UNIQUE INDEX relationships_code ON relationships (tenant_id, code)",
    "CREATE UNIQUE INDEX relationships_name ON relationships (tenant_id, name_key)
        WHERE delete_time IS NULL",
    "CREATE UNIQUE INDEX relationships_one_default ON relationships (tenant_id)
        WHERE is_default",
    "CREATE INDEX relationships_by_position ON relationships (tenant_id, position, id)",
    "CREATE TABLE idempotency_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        operation TEXT NOT NULL,
        request_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        response TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, operation, request_id)
    )",
    "CREATE INDEX idempotency_keys_by_time ON idempotency_keys (create_time)",
];

const DOWN: &[&str] = &[
    "DROP TABLE idempotency_keys",
    "DROP TABLE relationships",
    "DROP TABLE customer_sources",
    "DROP TABLE customer_groups",
    "DROP TABLE tenants",
];

sql_migration!();
