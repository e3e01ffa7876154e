//! Rule-based groups: a group's `rule` (a filter; empty for a manual group)
//! and where its evaluation stands; why each member is in (`matched`: the
//! rule matches it; `pinned`: added by hand — every existing member of a
//! manual group is, so setting a rule keeps them as pinned in); the
//! customers pinned out of a rule group; and the membership log with its
//! own contiguous per-tenant sequence, the source of the membership stream.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &[
    "ALTER TABLE customer_groups ADD COLUMN rule TEXT NOT NULL DEFAULT ''",
    // CURRENT or EVALUATING.
    "ALTER TABLE customer_groups ADD COLUMN evaluation_state TEXT NOT NULL DEFAULT 'CURRENT'",
    // When the rule was last evaluated over every customer.
    "ALTER TABLE customer_groups ADD COLUMN evaluate_time BIGINT",
    // While EVALUATING: the last customer id evaluated ('' before the first).
    "ALTER TABLE customer_groups ADD COLUMN evaluated_through TEXT NOT NULL DEFAULT ''",
    // While EVALUATING: the membership cause its moves are logged with
    // (RULE_CHANGED, or SWEEP for a time-based rule's periodic pass).
    "ALTER TABLE customer_groups ADD COLUMN evaluation_cause TEXT NOT NULL DEFAULT 'RULE_CHANGED'",
    // Bumped by every change to what the tenant's rules mean, so a
    // replica's cached rule set is known to be current by one read.
    "ALTER TABLE tenants ADD COLUMN rules_version BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE group_members ADD COLUMN matched BOOLEAN NOT NULL DEFAULT FALSE",
    "ALTER TABLE group_members ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT TRUE",
    "CREATE TABLE group_exclusions (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        group_id TEXT NOT NULL REFERENCES customer_groups (id),
        customer_id TEXT NOT NULL REFERENCES customers (id),
        create_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, group_id, customer_id)
    ){WITHOUT_ROWID}",
    "CREATE TABLE membership_counters (
        tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
        last_sequence BIGINT NOT NULL,
        trimmed_through BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE membership_changes (
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        sequence BIGINT NOT NULL,
        group_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        joined BOOLEAN NOT NULL,
        cause TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        change_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, sequence)
    ){WITHOUT_ROWID}",
];

const DOWN: &[&str] = &[
    "DROP TABLE membership_changes",
    "DROP TABLE membership_counters",
    "DROP TABLE group_exclusions",
    "ALTER TABLE group_members DROP COLUMN pinned",
    "ALTER TABLE tenants DROP COLUMN rules_version",
    "ALTER TABLE group_members DROP COLUMN matched",
    "ALTER TABLE customer_groups DROP COLUMN evaluation_cause",
    "ALTER TABLE customer_groups DROP COLUMN evaluated_through",
    "ALTER TABLE customer_groups DROP COLUMN evaluate_time",
    "ALTER TABLE customer_groups DROP COLUMN evaluation_state",
    "ALTER TABLE customer_groups DROP COLUMN rule",
];

sql_migration!();
