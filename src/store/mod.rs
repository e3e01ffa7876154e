//! Persistence: SeaORM queries and transactions per resource, no tonic.
//!
//! Every write runs in [`Store::write`], which owns the transaction rules:
//! on SQLite the transaction takes the write lock up front (`BEGIN
//! IMMEDIATE`) behind an in-process queue, so concurrent writers wait their
//! turn instead of failing; on PostgreSQL a write that loses a race (unique
//! violation, serialization failure, deadlock) is retried from the start, so
//! its checks run again against the committed state and produce the precise
//! error (or succeed).

pub mod catalog;
pub mod contacts;
pub mod customer_creates;
pub mod customer_queries;
pub mod customers;
pub mod database;
pub mod groups;
pub mod idempotency;
pub mod inactivity;
pub mod memberships;
pub mod planner_statistics;
pub mod record_cache;
pub mod relationship_members;
pub mod relationships;
pub mod replicas;
pub mod resource;
pub mod sources;
pub mod tenants;

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use futures::future::BoxFuture;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    IsolationLevel, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::Mutex;

use crate::changes::feed::Feed;
use crate::{
    clock::SharedClock,
    config::DEFAULT_RECORD_CACHE,
    domain::relationship::SeedLocale,
    error::{AppError, AppResult},
};
use record_cache::{RecordCache, Touches};

/// How often a write that lost a race is tried in all.
const MAX_WRITE_ATTEMPTS: u32 = 8;

/// The database handle with the service's transaction rules.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where write transactions run: the pool itself, or on SQLite a
    /// connection of their own.
    writer: DatabaseConnection,
    clock: SharedClock,
    seed_locale: SeedLocale,
    /// SQLite has one writer at a time; queueing in-process is fairer and
    /// cheaper than spinning on the busy timeout.
    write_queue: Option<Arc<Mutex<()>>>,
    provisioned: Arc<RwLock<HashSet<String>>>,
    records: RecordCache,
    creates: customer_creates::CreateQueue,
    feed: Feed,
}

impl Store {
    /// Wraps a connected database, with a record cache of the default size.
    /// On PostgreSQL the cache stays off until [`Store::hear_replicas`]
    /// listens for the other replicas' writes.
    pub fn new(db: DatabaseConnection, clock: SharedClock, seed_locale: SeedLocale) -> Self {
        let sqlite = db.get_database_backend() == DatabaseBackend::Sqlite;
        Self {
            writer: db.clone(),
            clock,
            seed_locale,
            write_queue: sqlite.then(|| Arc::new(Mutex::new(()))),
            provisioned: Arc::default(),
            records: RecordCache::new(DEFAULT_RECORD_CACHE, sqlite),
            creates: Default::default(),
            feed: Feed::new(db.clone()),
            db,
        }
    }

    /// Caches at most about `records` customer records (0: none).
    pub fn with_record_cache(mut self, records: usize) -> Self {
        let sqlite = self.write_queue.is_some();
        self.records = RecordCache::new(records, sqlite);
        self
    }

    /// Runs write transactions on `writer` instead of the read pool (see
    /// [`database::connect_writer`]).
    pub fn with_writer(mut self, writer: DatabaseConnection) -> Self {
        self.writer = writer;
        self
    }

    /// The change stream's fan-out.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The customer-record cache.
    pub fn records(&self) -> &RecordCache {
        &self.records
    }

    /// Hears the other replicas' writes, for as long as the returned future
    /// runs: drops their customers from the record cache and wakes the
    /// change feed for their changes (PostgreSQL; on SQLite, with one
    /// server per database, it ends at once).
    pub async fn hear_replicas(&self) {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            replicas::listen(self.db.clone(), self.records.clone(), self.feed.clone()).await;
        }
    }

    /// The connection pool, for reads.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The current time in stored form (microseconds since the epoch).
    pub fn now(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }

    /// Closes the database connections.
    pub async fn close(&self) {
        self.db.clone().close().await.ok();
        self.writer.clone().close().await.ok();
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Runs `op` in a write transaction, committing on `Ok` and rolling back on
    /// `Err`; retries the whole of it when it lost a race to another writer.
    /// `touches` names the customer records `op` may change: they leave the
    /// record cache (this replica's at once, the others' on commit).
    ///
    /// The write runs in a task of its own, so it finishes (and its cache
    /// entries are dropped) even when the caller goes away mid-way.
    pub async fn write<T, F>(&self, touches: Touches, op: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c DatabaseTransaction) -> BoxFuture<'c, AppResult<T>>
            + Send
            + Sync
            + 'static,
    {
        let store = self.clone();
        tokio::spawn(async move {
            let _invalidate = Invalidate(&store.records, &touches);
            let result = store.write_attempts(&touches, &op).await;
            // Whatever it wrote, watchers of the change stream look now
            // rather than at the next poll.
            store.feed.wake();
            result
        })
        .await
        .map_err(|e| AppError::Internal(format!("a write failed: {e}")))?
    }

    async fn write_attempts<T, F>(&self, touches: &Touches, op: &F) -> AppResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c DatabaseTransaction) -> BoxFuture<'c, AppResult<T>> + Send + Sync,
    {
        let mut attempt = 1;
        loop {
            let result = self.write_once(touches, op).await;
            match result {
                Err(err) if err.is_retryable() && attempt < MAX_WRITE_ATTEMPTS => {
                    tracing::debug!(attempt, error = %err, "retrying a write that lost a race");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn write_once<T, F>(&self, touches: &Touches, op: &F) -> AppResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c DatabaseTransaction) -> BoxFuture<'c, AppResult<T>> + Send + Sync,
    {
        let _turn = match &self.write_queue {
            Some(queue) => Some(queue.lock().await),
            None => None,
        };
        let tx = self
            .writer
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        // The notice first: it is delivered at commit (or dropped with a
        // rollback) whenever it is sent, and sent later it would cost a
        // round trip while the write holds the row locks other writers
        // wait for.
        let result = match replicas::announce(&tx, touches).await {
            Ok(()) => op(&tx).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(err) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(err)
            }
        }
    }
}

/// Drops a write's records from the cache when the write ends, however it
/// ends (a panic included).
struct Invalidate<'a>(&'a RecordCache, &'a Touches);

impl Drop for Invalidate<'_> {
    fn drop(&mut self) {
        self.0.invalidate(self.1);
    }
}

/// A read-only transaction that sees one snapshot of the database, so that
/// several reads (a page and its total) agree. PostgreSQL needs REPEATABLE
/// READ for that; a SQLite read transaction always reads one snapshot.
pub async fn snapshot(db: &DatabaseConnection) -> AppResult<DatabaseTransaction> {
    let options = match db.get_database_backend() {
        DatabaseBackend::Postgres => TransactionOptions {
            isolation_level: Some(IsolationLevel::RepeatableRead),
            access_mode: Some(AccessMode::ReadOnly),
            ..Default::default()
        },
        _ => TransactionOptions::default(),
    };
    Ok(db.begin_with_options(options).await?)
}

/// A short, slightly jittered pause before retrying.
fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_micros()
            % 1000,
    );
    Duration::from_micros(500 * u64::from(attempt) * u64::from(attempt) + jitter)
}

/// Serialises writers of one tenant's `scope` (e.g. the group tree) until the
/// transaction ends. PostgreSQL uses a transaction-scoped advisory lock; on
/// SQLite the write transaction already excludes every other writer.
pub async fn lock_scope(tx: &impl ConnectionTrait, tenant: &str, scope: &str) -> AppResult<()> {
    advisory_lock(tx, tenant, scope, "pg_advisory_xact_lock").await
}

/// Like [`lock_scope`], shared: transactions that only rely on the scope
/// staying as it is run side by side, and wait for (or hold off) those that
/// change it.
pub async fn lock_scope_shared(
    tx: &impl ConnectionTrait,
    tenant: &str,
    scope: &str,
) -> AppResult<()> {
    advisory_lock(tx, tenant, scope, "pg_advisory_xact_lock_shared").await
}

async fn advisory_lock(
    tx: &impl ConnectionTrait,
    tenant: &str,
    scope: &str,
    function: &str,
) -> AppResult<()> {
    if tx.get_database_backend() == DatabaseBackend::Postgres {
        tx.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            format!("SELECT {function}(hashtextextended($1, 0))"),
            [format!("{scope}:{tenant}").into()],
        ))
        .await?;
    }
    Ok(())
}
