//! The flow report (unfiltered) and the summary bar as of a past moment
//! read daily tallies of the change log instead of the log itself:
//!
//! - `flow_tallies`: per UTC day, the changes from one relationship to
//!   another (`''` for a creation) by cause, and the latest of them (its
//!   sequence);
//! - `stay_tallies`: per UTC day, the moves out of a relationship by the
//!   bucket of how long the customer had held it (see [`crate::tallies`]).
//!
//! A period's whole days come from the tallies and its partial first and
//! last days from the log. The exact median and 90th percentile come from
//! the one bucket each falls in, read from `relationship_changes_by_stay`
//! (the moves of a relationship by the length of the stay they end). The
//! write path keeps the tallies with every logged change; this migration
//! counts the changes logged before it.

use sea_orm_migration::prelude::*;

use crate::tallies::{day_sql, stay_bucket_sql};

fn up() -> Vec<String> {
    let day = day_sql("change_time");
    let bucket = stay_bucket_sql("change_time - held_since");
    vec![
        "CREATE TABLE flow_tallies (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            change_day BIGINT NOT NULL,
            old_relationship_id TEXT NOT NULL,
            new_relationship_id TEXT NOT NULL,
            cause TEXT NOT NULL,
            changes BIGINT NOT NULL,
            last_sequence BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, change_day, old_relationship_id, new_relationship_id, cause)
        ){WITHOUT_ROWID}"
            .to_owned(),
        "CREATE TABLE stay_tallies (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            change_day BIGINT NOT NULL,
            relationship_id TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            stays BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, change_day, relationship_id, bucket)
        ){WITHOUT_ROWID}"
            .to_owned(),
        format!(
            "INSERT INTO flow_tallies
                (tenant_id, change_day, old_relationship_id, new_relationship_id, cause, changes,
                 last_sequence)
             SELECT tenant_id, {day}, old_relationship_id, new_relationship_id, cause, COUNT(*),
                MAX(sequence)
             FROM relationship_changes
             GROUP BY tenant_id, {day}, old_relationship_id, new_relationship_id, cause"
        ),
        format!(
            "INSERT INTO stay_tallies (tenant_id, change_day, relationship_id, bucket, stays)
             SELECT tenant_id, {day}, old_relationship_id, {bucket}, COUNT(*)
             FROM relationship_changes
             WHERE held_since IS NOT NULL
             GROUP BY tenant_id, {day}, old_relationship_id, {bucket}"
        ),
        "CREATE INDEX relationship_changes_by_stay ON relationship_changes
            (tenant_id, old_relationship_id, (change_time - held_since), change_time)
            WHERE held_since IS NOT NULL"
            .to_owned(),
    ]
}

const DOWN: &[&str] = &[
    "DROP INDEX relationship_changes_by_stay",
    "DROP TABLE stay_tallies",
    "DROP TABLE flow_tallies",
];

sql_migration!(up);
