//! Database schema of crm-classify, as sea-orm migrations. The same SQL runs
//! on SQLite and PostgreSQL: times are BIGINT microseconds since the Unix
//! epoch (UTC) and ids are UUIDv7 text, so both databases sort and compare
//! them alike.

pub use sea_orm_migration::prelude::*;

/// The `Migration` of a module whose `UP` and `DOWN` statements (`&[&str]`)
/// are the whole of it, or (`sql_migration!(up)`) whose statements up are
/// made by its function `up() -> Vec<String>`. Its name is the module's
/// file name, as for any migration.
macro_rules! sql_migration {
    () => {
        sql_migration!(@with manager => crate::execute_all(manager, UP).await);
    };
    (up) => {
        sql_migration!(@with manager => {
            let statements = up();
            let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
            crate::execute_all(manager, &statements).await
        });
    };
    (@with $manager:ident => $up:expr) => {
        #[derive(DeriveMigrationName)]
        pub struct Migration;

        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, $manager: &SchemaManager) -> Result<(), DbErr> {
                $up
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::execute_all(manager, DOWN).await
            }
        }
    };
}

mod m20261123_000001_catalogs;
mod m20261123_000002_customers;
mod m20261123_000003_inactivity_and_retention;
mod m20261123_000004_change_filters;
mod m20261202_000005_fewer_relationship_indexes;
mod m20261202_000006_placed_customers;
mod m20261205_000007_source_index_without_relationship;
mod m20261206_000008_relationship_members;
mod m20261206_000009_service_secrets;
mod m20261206_000010_folded_text;
mod m20261206_000011_relationship_members_owner;
mod m20261206_000012_rule_groups;
mod m20261206_000013_imported_rows;
mod m20261206_000014_report_indexes;
mod m20261206_000015_stay_start;
mod m20261207_000016_group_tallies;
mod m20261207_000017_flow_tallies;
mod m20261207_000018_owner_tallies;

pub mod folding;
pub mod tallies;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_catalogs::Migration),
            Box::new(m20261123_000002_customers::Migration),
            Box::new(m20261123_000003_inactivity_and_retention::Migration),
            Box::new(m20261123_000004_change_filters::Migration),
            Box::new(m20261202_000005_fewer_relationship_indexes::Migration),
            Box::new(m20261202_000006_placed_customers::Migration),
            Box::new(m20261205_000007_source_index_without_relationship::Migration),
            Box::new(m20261206_000008_relationship_members::Migration),
            Box::new(m20261206_000009_service_secrets::Migration),
            Box::new(m20261206_000010_folded_text::Migration),
            Box::new(m20261206_000011_relationship_members_owner::Migration),
            Box::new(m20261206_000012_rule_groups::Migration),
            Box::new(m20261206_000013_imported_rows::Migration),
            Box::new(m20261206_000014_report_indexes::Migration),
            Box::new(m20261206_000015_stay_start::Migration),
            Box::new(m20261207_000016_group_tallies::Migration),
            Box::new(m20261207_000017_flow_tallies::Migration),
            Box::new(m20261207_000018_owner_tallies::Migration),
        ]
    }
}

/// Runs each statement in order, with for the backend
/// - `{SORT_TEXT}`: sort keys are compared bytewise on PostgreSQL
///   (`COLLATE "C"`) exactly as on SQLite, so lists page in the same order
///   whatever the server's locale;
/// - `{WITHOUT_ROWID}` after a table's definition: on SQLite the table is
///   stored in its primary key's order, one b-tree instead of a table and
///   an index to find rows by key in (PostgreSQL has no such option).
pub(crate) async fn execute_all(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    let (sort_text, without_rowid) = match manager.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => ("TEXT COLLATE \"C\"", ""),
        _ => ("TEXT", " WITHOUT ROWID"),
    };
    let db = manager.get_connection();
    for sql in statements {
        let sql = sql
            .replace("{SORT_TEXT}", sort_text)
            .replace("{WITHOUT_ROWID}", without_rowid);
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}
