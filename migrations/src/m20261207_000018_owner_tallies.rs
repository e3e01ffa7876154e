//! The owner report (unfiltered) reads tallies kept by the write path
//! instead of the change log and every customer it names:
//!
//! - `reception_tallies`: the customers created per UTC day, by owner at
//!   creation (deleted customers included): the received figure (the
//!   converted ones are read from `relationship_members`, which holds each
//!   customer's present relationship and creation time);
//! - `first_moves`: per customer that has changed relationship since its
//!   creation, its creation (time, owner, relationship) and the time to
//!   that first change: the moves out of the default relationship and
//!   their median;
//! - `arrival_tallies`: the moves into each relationship per UTC day, by
//!   the owner at the time and the day of the customer's previous move
//!   into it with that owner ([`crate::tallies::NO_PREVIOUS_DAY`] for
//!   none), with the sum of the customers' present revenue (in 32-bit
//!   halves, as the group tallies). Counting a period's moves whose
//!   previous one (same customer, relationship and owner) is before the
//!   period counts each customer once per owner: the closed figure.
//!
//! - `owner_counts`: the active customers each owner holds now.
//!
//! The write path keeps the tallies with every logged change and revenue
//! edit, and the counts with the other counters; this migration fills them
//! from the stored log and customers.

use sea_orm_migration::prelude::*;

use crate::tallies::{NO_PREVIOUS_DAY, day_sql};

fn up() -> Vec<String> {
    let created_day = day_sql("c.change_time");
    let arrival_day = day_sql("a.change_time");
    let previous_day = day_sql("a.previous_time");
    vec![
        "CREATE TABLE reception_tallies (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            create_day BIGINT NOT NULL,
            owner_id TEXT NOT NULL,
            customers BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, create_day, owner_id)
        ){WITHOUT_ROWID}"
            .to_owned(),
        "CREATE TABLE first_moves (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            customer_id TEXT NOT NULL,
            owner_id TEXT NOT NULL,
            created_in TEXT NOT NULL,
            create_time BIGINT NOT NULL,
            time_to_move BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, customer_id)
        )"
        .to_owned(),
        "CREATE INDEX first_moves_by_creation ON first_moves
            (tenant_id, created_in, create_time, owner_id, time_to_move)"
            .to_owned(),
        "CREATE TABLE arrival_tallies (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            relationship_id TEXT NOT NULL,
            arrival_day BIGINT NOT NULL,
            previous_day BIGINT NOT NULL,
            owner_id TEXT NOT NULL,
            arrivals BIGINT NOT NULL,
            revenue_high BIGINT NOT NULL,
            revenue_low BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, relationship_id, arrival_day, previous_day, owner_id)
        ){WITHOUT_ROWID}"
            .to_owned(),
        "CREATE TABLE owner_counts (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            owner_id TEXT NOT NULL,
            customers BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, owner_id)
        ){WITHOUT_ROWID}"
            .to_owned(),
        "INSERT INTO owner_counts (tenant_id, owner_id, customers)
         SELECT tenant_id, owner_id, COUNT(*) FROM customers WHERE delete_time IS NULL
         GROUP BY tenant_id, owner_id"
            .to_owned(),
        format!(
            "INSERT INTO reception_tallies (tenant_id, create_day, owner_id, customers)
             SELECT c.tenant_id, {created_day}, c.owner_id, COUNT(*)
             FROM relationship_changes c
             WHERE c.old_relationship_id = ''
             GROUP BY c.tenant_id, {created_day}, c.owner_id"
        ),
        "INSERT INTO first_moves
            (tenant_id, customer_id, owner_id, created_in, create_time, time_to_move)
         SELECT tenant_id, customer_id, owner_id, new_relationship_id, change_time,
            next_time - change_time
         FROM (SELECT tenant_id, customer_id, owner_id, old_relationship_id,
                new_relationship_id, change_time,
                LEAD(change_time) OVER (PARTITION BY tenant_id, customer_id ORDER BY sequence)
                    AS next_time
               FROM relationship_changes) f
         WHERE old_relationship_id = '' AND next_time IS NOT NULL"
            .to_owned(),
        format!(
            "INSERT INTO arrival_tallies
                (tenant_id, relationship_id, arrival_day, previous_day, owner_id, arrivals,
                 revenue_high, revenue_low)
             SELECT a.tenant_id, a.new_relationship_id, {arrival_day},
                COALESCE({previous_day}, {NO_PREVIOUS_DAY}), a.owner_id, COUNT(*),
                SUM(k.revenue >> 32), SUM(k.revenue & 4294967295)
             FROM (SELECT tenant_id, customer_id, new_relationship_id, owner_id, change_time,
                    LAG(change_time) OVER (
                        PARTITION BY tenant_id, customer_id, new_relationship_id, owner_id
                        ORDER BY change_time, sequence) AS previous_time
                   FROM relationship_changes WHERE old_relationship_id <> '') a
             JOIN customers k ON k.id = a.customer_id
             GROUP BY a.tenant_id, a.new_relationship_id, {arrival_day},
                COALESCE({previous_day}, {NO_PREVIOUS_DAY}), a.owner_id"
        ),
    ]
}

const DOWN: &[&str] = &[
    "DROP TABLE owner_counts",
    "DROP TABLE arrival_tallies",
    "DROP INDEX first_moves_by_creation",
    "DROP TABLE first_moves",
    "DROP TABLE reception_tallies",
];

sql_migration!(up);
