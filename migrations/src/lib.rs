//! Database schema of crm-classify, as sea-orm migrations. The same SQL runs
//! on SQLite and PostgreSQL: times are BIGINT microseconds since the Unix
//! epoch (UTC) and ids are UUIDv7 text, so both databases sort and compare
//! them alike.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_catalogs;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261123_000001_catalogs::Migration)]
    }
}

/// Runs each statement in order.
pub(crate) async fn execute_all(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}
