//! Customers and their classification: group memberships, contacts, the
//! relationship change log with its per-tenant sequence counter, and the
//! per-relationship (and per-group-and-relationship) customer counts behind
//! the summary bar.
//!
//! A few columns are derived copies kept by the service so the hot queries
//! read one index: `customers.activity_time` (last contact, or creation),
//! `customers.search_text` (for `query`), and, on memberships, the
//! customer's relationship, activeness and creation time.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        name TEXT NOT NULL,
        sort_key {SORT_TEXT} NOT NULL,
        search_text TEXT NOT NULL,
        phone TEXT NOT NULL,
        email TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        source_id TEXT REFERENCES customer_sources (id),
        relationship_id TEXT NOT NULL REFERENCES relationships (id),
        province TEXT NOT NULL,
        company TEXT NOT NULL,
        revenue BIGINT NOT NULL,
        attributes TEXT NOT NULL,
        last_contact_time BIGINT,
        activity_time BIGINT NOT NULL,
        profile_completion INTEGER NOT NULL,
        revision BIGINT NOT NULL,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL,
        delete_time BIGINT
    )",
    "CREATE UNIQUE INDEX customers_phone ON customers (tenant_id, phone)
        WHERE delete_time IS NULL AND phone <> ''",
    "CREATE UNIQUE INDEX customers_email ON customers (tenant_id, email)
        WHERE delete_time IS NULL AND email <> ''",
    "CREATE INDEX customers_by_create ON customers (tenant_id, create_time, id)",
    "CREATE INDEX customers_active_by_create ON customers (tenant_id, create_time, id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_active_by_relationship ON customers (tenant_id, relationship_id, create_time, id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_active_by_source ON customers (tenant_id, source_id, relationship_id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_active_by_owner ON customers (tenant_id, owner_id, create_time, id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_active_by_activity ON customers (tenant_id, activity_time, id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_active_by_name ON customers (tenant_id, sort_key, id)
        WHERE delete_time IS NULL",
    "CREATE INDEX customers_by_relationship ON customers (tenant_id, relationship_id)",
    "CREATE TABLE group_members (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        group_id TEXT NOT NULL REFERENCES customer_groups (id),
        customer_id TEXT NOT NULL REFERENCES customers (id),
        relationship_id TEXT NOT NULL,
        customer_active BOOLEAN NOT NULL,
        customer_create_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, group_id, customer_id)
    )",
    "CREATE INDEX group_members_by_customer ON group_members (tenant_id, customer_id)",
        // Full (not partial) indexes: `customer_active = ?` with a bound value
    // cannot select a partial index. The first serves counts per
    // relationship (index-only) and lists by relationship; the second lists
    // a group's members newest first.
    "CREATE INDEX group_members_by_relationship ON group_members
        (tenant_id, group_id, customer_active, relationship_id, customer_create_time, customer_id)",
    "CREATE INDEX group_members_by_time ON group_members
        (tenant_id, group_id, customer_active, customer_create_time, customer_id)",
    "CREATE TABLE contacts (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        customer_id TEXT NOT NULL REFERENCES customers (id),
        channel TEXT NOT NULL,
        note TEXT NOT NULL,
        contact_time BIGINT NOT NULL,
        actor_id TEXT NOT NULL,
        create_time BIGINT NOT NULL
    )",
    "CREATE INDEX contacts_by_customer ON contacts (tenant_id, customer_id, contact_time, id)",
    "CREATE TABLE change_counters (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
        last_sequence BIGINT NOT NULL
    )",
    "CREATE TABLE relationship_changes (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        sequence BIGINT NOT NULL,
        customer_id TEXT NOT NULL,
        old_relationship_id TEXT NOT NULL,
        new_relationship_id TEXT NOT NULL,
        cause TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        change_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, sequence)
    )",
    "CREATE INDEX relationship_changes_by_customer ON relationship_changes (tenant_id, customer_id, sequence)",
        "CREATE TABLE group_relationship_counts (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        group_id TEXT NOT NULL REFERENCES customer_groups (id),
        relationship_id TEXT NOT NULL REFERENCES relationships (id),
        customers BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, group_id, relationship_id)
    )",
    "CREATE TABLE relationship_counts (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        relationship_id TEXT NOT NULL REFERENCES relationships (id),
        customers BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, relationship_id)
    )",
];

const DOWN: &[&str] = &[
    "DROP TABLE relationship_counts",
    "DROP TABLE group_relationship_counts",
    "DROP TABLE relationship_changes",
    "DROP TABLE change_counters",
    "DROP TABLE contacts",
    "DROP TABLE group_members",
    "DROP TABLE customers",
];

sql_migration!();
