//! Write transactions and their rules.
//!
//! Every write runs in [`Store::write`]: on SQLite the transaction takes
//! the write lock up front (`BEGIN IMMEDIATE`) behind an in-process queue,
//! so concurrent writers wait their turn instead of failing; on PostgreSQL
//! a write that loses a race (unique violation, serialization failure,
//! deadlock) is retried from the start, so its checks run again against the
//! committed state and produce the precise error (or succeed).
//!
//! A write's transaction is a [`WriteTx`]: besides running statements it
//! collects the customer records the write changed, which the customers'
//! write path notes as it writes them. When the write ends, however it
//! ends, those records leave this replica's cache (the other replicas'
//! leave at commit, by the notice the write path sends). Callers name
//! nothing: what was written decides.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, ExecResult, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use crate::{
    error::{AppError, AppResult},
    store::{
        Store,
        customers::{
            cache::{RecordCache, Touches},
            group_rules::RuleSets,
        },
    },
};

/// How often a write that lost a race is tried in all.
const MAX_WRITE_ATTEMPTS: u32 = 8;

/// A write transaction, with the customer records it changed.
pub struct WriteTx {
    tx: DatabaseTransaction,
    /// Filled by the customers' write path only (shared by every attempt
    /// of one write).
    pub(in crate::store) changed: Arc<Mutex<Touches>>,
    /// This store's parsed rule sets, by tenant.
    pub(in crate::store) rule_sets: RuleSets,
    /// Whether this transaction changed what a tenant's rules mean (it
    /// must not cache a rule set it reads: its version may roll back).
    pub(in crate::store) rules_changed: std::sync::atomic::AtomicBool,
}

impl WriteTx {
    /// Adds `touches` to the records this write changed.
    pub(in crate::store) fn note(&self, touches: Touches) {
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(touches);
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTx {
    fn get_database_backend(&self) -> DatabaseBackend {
        self.tx.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.tx.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.tx.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.tx.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.tx.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.tx.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.tx.is_mock_connection()
    }
}

impl Store {
    /// Runs `op` on `input` in a write transaction, committing on `Ok` and
    /// rolling back on `Err`; retries the whole of it when it lost a race to
    /// another writer. The customer records it changed (as the write path
    /// noted them) leave the record cache when it ends.
    ///
    /// The write runs in a task of its own, so it finishes (and its cache
    /// entries are dropped) even when the caller goes away mid-way; it
    /// owns `input` for that, which callers hand over once.
    pub async fn write<I, T, F>(&self, input: I, op: F) -> AppResult<T>
    where
        I: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c WriteTx, &'c I) -> BoxFuture<'c, AppResult<T>> + Send + Sync + 'static,
    {
        self.write_or_rehearse(input, op, true).await
    }

    /// Runs `op` on `input` as [`Store::write`] does, then rolls back
    /// whatever it did: what a write would do, with nothing written (an
    /// import's dry run).
    pub async fn rehearse<I, T, F>(&self, input: I, op: F) -> AppResult<T>
    where
        I: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c WriteTx, &'c I) -> BoxFuture<'c, AppResult<T>> + Send + Sync + 'static,
    {
        self.write_or_rehearse(input, op, false).await
    }

    async fn write_or_rehearse<I, T, F>(&self, input: I, op: F, commit: bool) -> AppResult<T>
    where
        I: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c WriteTx, &'c I) -> BoxFuture<'c, AppResult<T>> + Send + Sync + 'static,
    {
        let store = self.clone();
        tokio::spawn(async move {
            let changed = Arc::new(Mutex::new(Touches::Nothing));
            let _invalidate = Invalidate(&store.records, &changed);
            let result = store.write_attempts(&changed, &input, &op, commit).await;
            // Whatever it wrote, watchers of the change streams (both
            // logs) look now rather than at the next poll.
            store.feeds.wake();
            result
        })
        .await
        .map_err(|e| AppError::Internal(format!("a write failed: {e}")))?
    }

    async fn write_attempts<I, T, F>(
        &self,
        changed: &Arc<Mutex<Touches>>,
        input: &I,
        op: &F,
        commit: bool,
    ) -> AppResult<T>
    where
        I: Sync,
        T: Send,
        F: for<'c> Fn(&'c WriteTx, &'c I) -> BoxFuture<'c, AppResult<T>> + Send + Sync,
    {
        let mut attempt = 1;
        loop {
            let result = self.write_once(changed, input, op, commit).await;
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

    async fn write_once<I, T, F>(
        &self,
        changed: &Arc<Mutex<Touches>>,
        input: &I,
        op: &F,
        commit: bool,
    ) -> AppResult<T>
    where
        I: Sync,
        T: Send,
        F: for<'c> Fn(&'c WriteTx, &'c I) -> BoxFuture<'c, AppResult<T>> + Send + Sync,
    {
        let _turn = match &self.write_queue {
            Some(queue) => Some(queue.lock().await),
            None => None,
        };
        let tx = WriteTx {
            tx: self
                .writer
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?,
            changed: changed.clone(),
            rule_sets: self.rule_sets.clone(),
            rules_changed: Default::default(),
        };
        match op(&tx, input).await {
            Ok(value) if commit => {
                tx.tx.commit().await?;
                Ok(value)
            }
            Ok(value) => {
                tx.tx.rollback().await?;
                Ok(value)
            }
            Err(err) => {
                if let Err(rollback) = tx.tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(err)
            }
        }
    }
}

/// Drops a write's changed records from the cache when the write ends,
/// however it ends (a panic included).
struct Invalidate<'a>(&'a RecordCache, &'a Arc<Mutex<Touches>>);

impl Drop for Invalidate<'_> {
    fn drop(&mut self) {
        let touches = self.1.lock().unwrap_or_else(|e| e.into_inner());
        self.0.invalidate(&touches);
    }
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
