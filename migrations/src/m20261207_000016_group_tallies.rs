//! The group report without a period reads counters instead of counting
//! customers: per (group, relationship, source), how many active customers
//! the group has and their revenue. Group `''` holds the customers with no
//! membership row at all. Memberships of deleted groups count like any
//! other (a deleted group keeps them for its restore); the report adds the
//! customers whose only groups are deleted to its no-group row itself.
//!
//! Revenue is kept as the sums of its high and low 32 bits (`revenue >> 32`
//! and `revenue & 0xFFFFFFFF`), as the reports sum it: neither sum can
//! overflow, and the exact total is `high * 2^32 + low`. Source `''` is
//! no source. The write path keeps the rows; this migration counts the
//! customers stored before it.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "CREATE TABLE group_tallies (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        group_id TEXT NOT NULL,
        relationship_id TEXT NOT NULL,
        source_id TEXT NOT NULL,
        customers BIGINT NOT NULL,
        revenue_high BIGINT NOT NULL,
        revenue_low BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, group_id, relationship_id, source_id)
    ){WITHOUT_ROWID}",
    "INSERT INTO group_tallies
        (tenant_id, group_id, relationship_id, source_id, customers, revenue_high, revenue_low)
     SELECT c.tenant_id, m.group_id, c.relationship_id, COALESCE(c.source_id, ''),
        COUNT(*), SUM(c.revenue >> 32), SUM(c.revenue & 4294967295)
     FROM group_members m JOIN customers c ON c.id = m.customer_id
     WHERE c.delete_time IS NULL
     GROUP BY c.tenant_id, m.group_id, c.relationship_id, COALESCE(c.source_id, '')",
    "INSERT INTO group_tallies
        (tenant_id, group_id, relationship_id, source_id, customers, revenue_high, revenue_low)
     SELECT c.tenant_id, '', c.relationship_id, COALESCE(c.source_id, ''),
        COUNT(*), SUM(c.revenue >> 32), SUM(c.revenue & 4294967295)
     FROM customers c
     WHERE c.delete_time IS NULL AND NOT EXISTS (
        SELECT 1 FROM group_members m
        WHERE m.tenant_id = c.tenant_id AND m.customer_id = c.id)
     GROUP BY c.tenant_id, c.relationship_id, COALESCE(c.source_id, '')",
];

const DOWN: &[&str] = &["DROP TABLE group_tallies"];

sql_migration!();
