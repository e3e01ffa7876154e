//! Opening the database (SQLite or PostgreSQL, chosen by the URL) with the
//! settings the service relies on, and applying migrations.
//!
//! # Statement time limits
//!
//! Every connection the service opens for its work carries a time limit
//! for each statement, enforced by the database itself: PostgreSQL's
//! `statement_timeout` (the server cancels the statement, SQLSTATE 57014),
//! on SQLite [`super::sqlite_deadline`] (the statement is interrupted,
//! SQLITE_INTERRUPT). Either way the statement stops, its transaction rolls
//! back, and the request gets DEADLINE_EXCEEDED ([`AppError::DeadlineExceeded`]).
//!
//! - Requests' reads, and on PostgreSQL their writes: `--query-timeout`.
//! - Background upkeep (the inactivity sweep, the change stream's
//!   retention, checkpoints) runs on connections of its own under
//!   [`background_limit`]: a filter-sized limit would cut a sweep that is
//!   merely working through a large tenant, and lowering `--query-timeout`
//!   to protect the API must not stop the sweep. Its statements are short
//!   by design (batches of a few hundred customers); the limit only stops
//!   one that is stuck (a lock never released), which the next round retries.
//! - On SQLite every write runs on the one write connection, requests' and
//!   the sweep's alike (one writer, one warm page cache), so its limit is
//!   the background one: there a request's write is bounded by it rather
//!   than by `--query-timeout`.
//! - Migrations run on a connection of their own without a limit (an
//!   in-memory SQLite database, which lives only on the requests' pool, is
//!   the exception: everything on it runs under `--query-timeout`).
//! - [`connect`], [`open`] and [`connect_for_bulk_load`], for tools and
//!   tests, set no limit.

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

/// The least time limit of a background statement (see the module doc):
/// a hundred times what a sweep batch takes on a loaded server.
pub const BACKGROUND_LIMIT_FLOOR: Duration = Duration::from_secs(300);
/// The longest statement time limit: PostgreSQL takes `statement_timeout`
/// in milliseconds as a 32-bit integer (about 24.8 days).
pub const MAX_STATEMENT_LIMIT: Duration = Duration::from_secs(24 * 86_400);

/// The time limit of background upkeep's statements: the larger of
/// [`BACKGROUND_LIMIT_FLOOR`] and `--query-timeout`, so background work is
/// never held to less than a request.
pub fn background_limit(query_timeout: Duration) -> Duration {
    query_timeout.max(BACKGROUND_LIMIT_FLOOR)
}

/// The service's connections, each with the statement time limit of the
/// work it serves (see the module doc).
pub struct ServiceConnections {
    /// Requests' reads, and on PostgreSQL their writes: `--query-timeout`.
    pub requests: DatabaseConnection,
    /// On SQLite, the connection every write runs on: [`background_limit`].
    /// `None` on PostgreSQL and for an in-memory database.
    pub writer: Option<DatabaseConnection>,
    /// Background upkeep's reads, and on PostgreSQL its writes:
    /// [`background_limit`]. `None` for an in-memory database, which exists
    /// only on the requests' pool.
    pub background: Option<DatabaseConnection>,
}

/// Opens the service's connections to `url` (pending migrations applied
/// first when `migrate` is set), requests' statements limited to
/// `query_timeout` (at least 1 ms, at most [`MAX_STATEMENT_LIMIT`]).
pub async fn open_service(
    url: &str,
    migrate: bool,
    query_timeout: Duration,
) -> AppResult<ServiceConnections> {
    let requests = open_pool(url, migrate, Some(query_timeout)).await?;
    if is_in_memory(url) {
        return Ok(ServiceConnections {
            requests,
            writer: None,
            background: None,
        });
    }
    let background = background_limit(query_timeout);
    let writer = if url.starts_with("sqlite:") {
        Some(connect_with(url, Role::Writer, Some(background)).await?)
    } else {
        None
    };
    Ok(ServiceConnections {
        requests,
        writer,
        background: Some(connect_with(url, Role::Background, Some(background)).await?),
    })
}

/// Connects to `url`: `sqlite://PATH` (the file is created when missing) or
/// `postgres://…`.
pub async fn connect(url: &str) -> AppResult<DatabaseConnection> {
    connect_with(url, Role::Pool, None).await
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
    open_pool(url, migrate, None).await
}

/// [`open`], statements on the pool limited to `limit`.
async fn open_pool(
    url: &str,
    migrate: bool,
    limit: Option<Duration>,
) -> AppResult<DatabaseConnection> {
    if migrate {
        if is_in_memory(url) {
            // Exists only while a connection to it is open.
            let db = connect_with(url, Role::Pool, limit).await?;
            self::migrate(&db).await?;
            return Ok(db);
        }
        migrate_url(url).await?;
    }
    connect_with(url, Role::Pool, limit).await
}

/// Applies pending migrations to the database at `url` on a connection of
/// its own, closed afterwards.
pub async fn migrate_url(url: &str) -> AppResult<()> {
    let db = connect_with(url, Role::Migrator, None).await?;
    migrate(&db).await?;
    db.close().await?;
    Ok(())
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Connects for a one-off bulk load (the benchmark seeder): on SQLite one
/// connection with a large page cache and no fsync, which is unsafe for a
/// server but fine for loading a fresh benchmark database.
pub async fn connect_for_bulk_load(url: &str) -> AppResult<DatabaseConnection> {
    connect_with(url, Role::BulkLoad, None).await
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The pool every read (and on PostgreSQL every write) uses.
    Pool,
    /// On SQLite, a connection of its own for write transactions, with a
    /// large page cache. SQLite has one writer at a time anyway; keeping it
    /// on one connection keeps that cache warm, where writes taking turns
    /// on pooled connections would each find their connection's cache
    /// discarded (any other connection's write invalidates it). Not on
    /// PostgreSQL, whose writers share the pool, nor for an in-memory
    /// SQLite database (which exists once per connection: the pool's is the
    /// migrated one, so writes stay on the pool).
    Writer,
    /// Background upkeep's few connections.
    Background,
    /// The benchmark seeder.
    BulkLoad,
    /// Applying migrations.
    Migrator,
}

/// Pages of SQLite's write connection cache, in KiB (negative: a size).
const WRITER_CACHE_KIB: &str = "-16384";

/// Connects for `role`, each statement limited to `limit` when set.
async fn connect_with(
    url: &str,
    role: Role,
    limit: Option<Duration>,
) -> AppResult<DatabaseConnection> {
    let is_sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    let connections = match role {
        Role::Pool if is_sqlite => 8,
        Role::Pool => 20,
        // The sweep moves two batches at once on PostgreSQL.
        Role::Background if is_sqlite => 2,
        Role::Background => 3,
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
                Role::Pool | Role::Background | Role::Migrator => opts,
            }
        });
        if let Some(limit) = limit {
            options.map_sqlx_sqlite_pool_opts(move |pool| {
                pool.after_connect(move |conn, _| {
                    Box::pin(super::sqlite_deadline::install(conn, limit))
                })
            });
        }
    } else if let Some(limit) = limit {
        // Sent with the connection's startup message: no extra round trip.
        options.statement_timeout(limit);
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
                "m20261206_000010_folded_text",
                "m20261206_000011_relationship_members_owner",
                "m20261206_000012_rule_groups",
                "m20261206_000013_imported_rows",
                "m20261206_000014_report_indexes",
                "m20261206_000015_stay_start",
                "m20261207_000016_group_tallies",
                "m20261207_000017_flow_tallies",
                "m20261207_000018_owner_tallies",
            ]
        );
    }
}
