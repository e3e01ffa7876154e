//! Opening the database (SQLite or PostgreSQL, chosen by the URL) with the
//! settings the service relies on, and applying migrations.

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement,
    TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::{
    error::{AppError, AppResult},
    telemetry::Throttle,
    warn_throttled,
};

/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection before UNAVAILABLE.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url`: `sqlite://PATH` (the file is created when missing) or
/// `postgres://…`.
pub async fn connect(url: &str) -> AppResult<DatabaseConnection> {
    connect_with(url, Role::Pool).await
}

/// The service's pool on `url`, pending migrations applied first when
/// `migrate` is set.
///
/// Migrating runs on a connection of its own, closed before the pool
/// opens: a SQLite connection plans with the statistics it read when it
/// opened, even once it has created indexes itself, so only connections
/// opened afterwards use those migrating wrote (see
/// [`super::planner_statistics`]).
pub async fn open(url: &str, migrate: bool) -> AppResult<DatabaseConnection> {
    if migrate {
        if is_in_memory(url) {
            // Exists only while a connection to it is open.
            let db = connect(url).await?;
            self::migrate(&db).await?;
            return Ok(db);
        }
        migrate_url(url).await?;
    }
    connect(url).await
}

/// Applies pending migrations to the database at `url` on a connection of
/// its own, closed afterwards.
pub async fn migrate_url(url: &str) -> AppResult<()> {
    let db = connect_with(url, Role::Migrator).await?;
    migrate(&db).await?;
    db.close().await?;
    Ok(())
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// On SQLite, a connection of its own for write transactions, with a large
/// page cache. SQLite has one writer at a time anyway; keeping it on one
/// connection keeps that cache warm, where writes taking turns on pooled
/// connections would each find their connection's cache discarded (any
/// other connection's write invalidates it). `None` on PostgreSQL, whose
/// writers share the pool, and for an in-memory SQLite database.
pub async fn connect_writer(url: &str) -> AppResult<Option<DatabaseConnection>> {
    // An in-memory database exists once per connection: the pool's is the
    // migrated one, so writes stay on the pool.
    if !url.starts_with("sqlite:") || is_in_memory(url) {
        return Ok(None);
    }
    connect_with(url, Role::Writer).await.map(Some)
}

/// Connects for a one-off bulk load (the benchmark seeder): on SQLite one
/// connection with a large page cache and no fsync, which is unsafe for a
/// server but fine for loading a fresh benchmark database.
pub async fn connect_for_bulk_load(url: &str) -> AppResult<DatabaseConnection> {
    connect_with(url, Role::BulkLoad).await
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The pool every read (and on PostgreSQL every write) uses.
    Pool,
    /// SQLite's write connection.
    Writer,
    /// The benchmark seeder.
    BulkLoad,
    /// Applying migrations.
    Migrator,
}

/// Pages of SQLite's write connection cache, in KiB (negative: a size).
const WRITER_CACHE_KIB: &str = "-16384";

async fn connect_with(url: &str, role: Role) -> AppResult<DatabaseConnection> {
    let is_sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    let connections = match role {
        Role::Pool if is_sqlite => 8,
        Role::Pool => 20,
        Role::Writer | Role::BulkLoad | Role::Migrator => 1,
    };
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .sqlx_logging(false);
    if is_sqlite {
        options.map_sqlx_sqlite_opts(move |opts| {
            let opts = opts
                .create_if_missing(true)
                // Readers never block the writer and the writer never blocks readers.
                .journal_mode(SqliteJournalMode::Wal)
                // Durable at every checkpoint; the usual pairing with WAL.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            match role {
                Role::BulkLoad => opts
                    .pragma("cache_size", "-524288")
                    .synchronous(SqliteSynchronous::Off),
                // Checkpoints happen in the background instead (see
                // `checkpoint_regularly`): a commit that also copied the
                // log into the database would hold every other writer up.
                // Statement journals stay in memory: a statement that
                // changes many rows (a sweep batch's UPDATE) saves each page
                // it changes first, so that it can be undone alone, and
                // past 64 KiB that copy went to a temporary file (8 % of
                // a sweep's samples in `perf`; 5 % in memory).
                Role::Writer => opts
                    .pragma("cache_size", WRITER_CACHE_KIB)
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("temp_store", "memory"),
                Role::Pool | Role::Migrator => opts,
            }
        });
    }
    Database::connect(options)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot open the database: {e}")))
}

/// How often SQLite's write-ahead log is copied into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// On SQLite with a write connection of its own, copies the write-ahead log
/// into the database every [`CHECKPOINT_EVERY`], for as long as the
/// returned future runs. A PASSIVE checkpoint waits for nobody: readers and
/// the writer go on meanwhile, and the log starts over once it has been
/// copied whole. Ends at once on PostgreSQL.
pub async fn checkpoint_regularly(db: DatabaseConnection) {
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return;
    }
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = Throttle::default();
    loop {
        ticks.tick().await;
        match db
            .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
            .await
        {
            Ok(_) => failures.clear(),
            Err(err) => warn_throttled!(
                failures,
                error = %err,
                "checkpointing the write-ahead log failed"
            ),
        }
    }
}

/// Applies pending migrations. On SQLite `db` must be a single connection
/// (as [`open`] and [`migrate_url`] use): a pooled connection that did not
/// see another's schema change may refuse the next one (`index … already
/// exists`). On PostgreSQL an advisory lock makes replicas
/// that start together migrate one after the other; on SQLite the planner
/// statistics follow (see [`super::planner_statistics`]).
pub async fn migrate(db: &DatabaseConnection) -> AppResult<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let tx = db.begin().await?;
        tx.execute_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended('crm-classify:migrations', 0))",
        ))
        .await?;
        Migrator::up(&tx, None).await?;
        tx.commit().await?;
    } else {
        Migrator::up(db, None).await?;
        super::planner_statistics::write_missing(db).await?;
    }
    Ok(())
}

/// Whether the database holds every migration this binary knows (a newer
/// replica's later ones are fine). A database dropped and re-created empty
/// still answers pings; this tells it apart. Reads only: a missing
/// migrations table is an error, not created.
pub async fn schema_is_current(db: &impl ConnectionTrait) -> AppResult<bool> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations",
        ))
        .await?;
    let applied = rows
        .iter()
        .map(|row| row.try_get::<String>("", "version"))
        .collect::<Result<std::collections::HashSet<_>, _>>()?;
    Ok(Migrator::migrations()
        .iter()
        .all(|m| applied.contains(m.name())))
}

#[cfg(test)]
mod tests {
    use migrations::{Migrator, MigratorTrait};

    /// A migration's name is what a database records as applied: each must
    /// stay its file's name, however the migration is written.
    #[test]
    fn migrations_are_named_after_their_files() {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "m20261123_000001_catalogs",
                "m20261123_000002_customers",
                "m20261123_000003_inactivity_and_retention",
                "m20261123_000004_change_filters",
                "m20261202_000005_fewer_relationship_indexes",
                "m20261202_000006_placed_customers",
                "m20261205_000007_source_index_without_relationship",
                "m20261206_000008_relationship_members",
                "m20261206_000009_service_secrets",
            ]
        );
    }
}
