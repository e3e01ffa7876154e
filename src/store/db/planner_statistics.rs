//! Planner statistics for SQLite, written once instead of measured.
//!
//! SQLite's planner chooses among indexes by the statistics `ANALYZE`
//! leaves in `sqlite_stat1`. Without them it guesses that an equality on an
//! index's first column narrows a search to some ten rows. Every index here
//! starts with `tenant_id`, which in a database of one tenant selects every
//! row, so the guess sends statements the wrong way: the sweep's
//! `UPDATE customers … WHERE tenant_id = ? AND id IN (…)` walked the whole
//! tenant through `customers_by_create` instead of looking up 250 ids, and
//! a sweep of 100,000 of 1,000,000 customers took 434 s instead of 15 s,
//! other writes waiting seconds behind it.
//!
//! The server does not run `ANALYZE` itself: on a large database it reads
//! every index while holding the write lock, and a sampled one (with
//! `analysis_limit`) still left that sweep at 209 s. Instead,
//! migrating writes the statistics below for every index that has none:
//! those `ANALYZE` measured on a tenant of a million customers (`crm-load
//! seed`), on which every benchmark in BENCHMARKS.md ran; estimates of the
//! same kind for the tables the seed leaves empty (contacts, idempotency
//! keys) and for indexes changed since. They describe how
//! selective each index's leading columns are, which holds for a small
//! database as for a large one. Statistics already present (an operator's
//! own `ANALYZE`) are kept.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};

use crate::error::AppResult;

/// `table index statistics`, a line each, as `sqlite_stat1` holds them:
/// the statistics are the rows of the table, then for each leading run of
/// the index's columns how many rows share one value of it on average. (A
/// `WITHOUT ROWID` table's primary key goes by the table's name.)
const STATISTICS: &str = "
    arrival_tallies arrival_tallies 200000 200000 30000 80 50 1
    change_counters sqlite_autoindex_change_counters_1 1 1
    contacts contacts_by_customer 1000000 1000000 5 1 1
    contacts sqlite_autoindex_contacts_1 1000000 1
    customer_groups customer_groups_by_name 20 20 1 1
    customer_groups customer_groups_by_parent 20 20 4
    customer_groups customer_groups_code 20 20 1
    customer_groups customer_groups_sibling_name 20 20 4 1
    customer_groups sqlite_autoindex_customer_groups_1 20 1
    customer_sources customer_sources_by_name 5 5 1 1
    customer_sources customer_sources_code 5 5 1
    customer_sources customer_sources_name 5 5 1
    customer_sources sqlite_autoindex_customer_sources_1 5 1
    customers customers_active_by_activity 1000000 1000000 1 1
    customers customers_active_by_create 1000000 1000000 1 1
    customers customers_active_by_name 1000000 1000000 1 1
    customers customers_active_by_owner 1000000 1000000 20000 1 1
    customers customers_active_by_source 1000000 1000000 200000 1 1
    customers customers_by_create 1000000 1000000 1 1
    customers customers_deleted_by_time 1000 1000 1
    customers customers_email 1000000 1000000 1
    customers customers_phone 1000000 1000000 1
    customers sqlite_autoindex_customers_1 1000000 1
    group_exclusions group_exclusions 10000 10000 1000 1
    group_members group_members_by_customer 1200000 1200000 2
    group_members group_members_by_relationship 1200000 1200000 60000 60000 10000 1 1
    group_members group_members_by_time 1200000 1200000 60000 60000 1 1
    group_members sqlite_autoindex_group_members_1 1200000 1200000 60000 1
    first_moves first_moves_by_creation 600000 600000 100000 1 1 1
    first_moves sqlite_autoindex_first_moves_1 600000 600000 1
    flow_tallies flow_tallies 11000 11000 30 5 1 1
    group_relationship_counts sqlite_autoindex_group_relationship_counts_1 120 120 6 1
    group_tallies group_tallies 600 600 30 5 1
    idempotency_keys idempotency_keys_by_time 100000 1
    idempotency_keys sqlite_autoindex_idempotency_keys_1 100000 100000 10000 1
    imported_rows imported_rows_by_customer 1000000 1000000 100000 1
    imported_rows imported_rows_by_time 1000000 1
    imported_rows sqlite_autoindex_imported_rows_1 1000000 1000000 100000 1
    membership_changes membership_changes 1000000 1000000 1
    membership_changes membership_changes_by_group_time 1000000 1000000 50000 2
    membership_counters sqlite_autoindex_membership_counters_1 1 1
    owner_counts owner_counts 50 50 1
    reception_tallies reception_tallies 18000 18000 50 1
    relationship_changes relationship_changes_by_customer 1000000 1000000 1 1
    relationship_changes relationship_changes_by_stay 1000000 1000000 166667 1 1
    relationship_changes relationship_changes_by_time 1000000 1000000 2
    relationship_changes sqlite_autoindex_relationship_changes_1 1000000 1000000 1
    relationship_counts sqlite_autoindex_relationship_counts_1 6 6 1
    relationship_members relationship_members_by_relationship 1000000 1000000 166667 166667 1 1
    relationship_members relationship_members_by_owner 1000000 1000000 166667 166667 3333 1 1
    relationship_members relationship_members_unplaced_by_activity 1000000 1000000 166667 1 1
    relationship_members relationship_members 1000000 1
    relationships relationships_by_position 7 7 1 1
    relationships relationships_code 7 7 1
    relationships relationships_name 7 7 1
    relationships relationships_one_default 1 1
    relationships sqlite_autoindex_relationships_1 7 1
    seaql_migrations sqlite_autoindex_seaql_migrations_1 10 1
    service_secrets sqlite_autoindex_service_secrets_1 1 1
    stay_tallies stay_tallies 65000 65000 180 30 1
    tenants sqlite_autoindex_tenants_1 1 1
";

/// The rows of [`STATISTICS`]: `(table, index, statistics)`.
fn statistics() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    STATISTICS.lines().filter_map(|line| {
        let (table, rest) = line.trim().split_once(' ')?;
        let (index, stat) = rest.split_once(' ')?;
        Some((table, index, stat))
    })
}

/// On SQLite, writes [`STATISTICS`] for each index that has none and makes
/// this connection's planner use them (connections opened later read them
/// as they open). Nothing on PostgreSQL, which gathers its own
/// (autovacuum).
///
/// Other connections already open keep planning without them until they
/// reopen (see [`database::open`](super::database::open)).
pub async fn write_missing(db: &DatabaseConnection) -> AppResult<()> {
    let backend = db.get_database_backend();
    if backend != DatabaseBackend::Sqlite {
        return Ok(());
    }
    // One connection throughout: the reload at the end applies to it.
    let tx = db.begin().await?;
    // Creates `sqlite_stat1` when missing, measuring nothing else (the
    // schema table has no index).
    tx.execute_unprepared("ANALYZE sqlite_schema").await?;
    for (table, index, stat) in statistics() {
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) SELECT ?, ?, ? \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_stat1 WHERE tbl = ? AND idx = ?)",
            [table, index, stat, table, index].map(Into::into),
        ))
        .await?;
    }
    // Loads the statistics into this connection's planner.
    tx.execute_unprepared("ANALYZE sqlite_schema").await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

    use super::statistics;
    use crate::store::db::connection as database;

    /// The text `columns` of each row `sql` returns.
    async fn rows(db: &DatabaseConnection, sql: &str, columns: &[&str]) -> Vec<Vec<String>> {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect(sql)
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|column| row.try_get::<String>("", column).expect(column))
                    .collect()
            })
            .collect()
    }

    /// A migrated database (kept while the directory lives) and its URL.
    async fn migrated() -> (tempfile::TempDir, String, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        let db = database::open(&url, true).await.expect("open");
        (dir, url, db)
    }

    /// Every index of the migrated schema (the primary keys of `WITHOUT
    /// ROWID` tables among them) has statistics, and none are written for
    /// an index that no longer exists: a migration that adds or drops an
    /// index must say how selective it is here.
    #[tokio::test]
    async fn every_index_of_the_schema_has_statistics() {
        let (_dir, _, db) = migrated().await;
        let indexes: BTreeSet<Vec<String>> = rows(
            &db,
            "SELECT tbl_name, name FROM sqlite_schema WHERE type = 'index' \
             AND tbl_name NOT LIKE 'sqlite_%' \
             UNION ALL SELECT name, name FROM sqlite_schema WHERE type = 'table' \
             AND sql LIKE '%WITHOUT ROWID'",
            &["tbl_name", "name"],
        )
        .await
        .into_iter()
        .collect();
        let described: BTreeSet<Vec<String>> = statistics()
            .map(|(table, index, _)| vec![table.to_owned(), index.to_owned()])
            .collect();
        assert_eq!(indexes, described);
        let written: BTreeSet<Vec<String>> =
            rows(&db, "SELECT tbl, idx FROM sqlite_stat1", &["tbl", "idx"])
                .await
                .into_iter()
                .collect();
        assert_eq!(written, described);
    }

    /// With them, a lookup of customers by id within a tenant uses the
    /// primary key, not an index that starts with the tenant (which the
    /// planner, without statistics, takes for a narrow one).
    #[tokio::test]
    async fn a_lookup_by_ids_uses_the_primary_key() {
        let (_dir, _, db) = migrated().await;
        let plan = rows(
            &db,
            "EXPLAIN QUERY PLAN UPDATE customers SET revision = revision + 1 \
             WHERE tenant_id = 't' AND id IN ('a', 'b', 'c')",
            &["detail"],
        )
        .await
        .concat();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING INDEX sqlite_autoindex_customers_1")),
            "{plan:?}"
        );
    }

    /// Statistics already there (an operator's `ANALYZE`) stay as they are.
    #[tokio::test]
    async fn measured_statistics_are_kept() {
        let (_dir, url, db) = migrated().await;
        db.execute_unprepared(
            "UPDATE sqlite_stat1 SET stat = '42 42 1' WHERE idx = 'customers_phone'",
        )
        .await
        .expect("update");
        database::migrate_url(&url).await.expect("migrate again");
        let stat = rows(
            &db,
            "SELECT stat FROM sqlite_stat1 WHERE idx = 'customers_phone'",
            &["stat"],
        )
        .await;
        assert_eq!(stat, [["42 42 1"]]);
    }
}
