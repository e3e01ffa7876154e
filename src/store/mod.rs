//! Persistence: SeaORM queries and transactions per resource, no tonic.
//!
//! - [`db`]: connecting, migrating, write transactions ([`Store::write`])
//!   and their rules, read snapshots ([`Store::snapshot_of`]), what
//!   replicas tell each other.
//! - [`customers`]: everything about customer records, with the one write
//!   path every customer change goes through ([`customers::write`]).
//! - [`catalogs`]: the three catalogs customers are classified by (groups,
//!   sources, relationships) and what their writes share.
//! - [`resource`], [`idempotency`], [`tenants`], [`secrets`]: what every
//!   resource shares, request ids, tenant provisioning, and the page-token
//!   key.

pub mod catalogs;
pub mod customers;
pub mod db;
pub mod idempotency;
pub mod resource;
pub mod secrets;
pub mod tenants;

pub use db::{
    snapshot::{AsOf, Snapshot, snapshot},
    transaction::{WriteTx, lock_scope, lock_scope_shared},
};

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::sync::{Mutex, OnceCell};

use crate::{
    changes::feed::{Feeds, MembershipFeed, RelationshipFeed},
    clock::SharedClock,
    config::DEFAULT_RECORD_CACHE,
    domain::{paging::PageKey, relationship::SeedLocale},
    metrics::figures::ServiceMetrics,
};
use customers::cache::RecordCache;
use db::replicas;

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
    creates: customers::create_queue::CreateQueue,
    /// The change streams' fan-outs, one per log.
    feeds: Feeds,
    /// The page-token key, read from the database on first use.
    page_key: Arc<OnceCell<PageKey>>,
    /// Told when a write here starts a rule group's evaluation.
    evaluations: Arc<tokio::sync::Notify>,
    /// Counts the rule evaluations this server has finished.
    evaluated: Arc<tokio::sync::watch::Sender<u64>>,
    /// The tenants' rule sets as writes here last loaded them.
    rule_sets: customers::group_rules::RuleSets,
    /// The service's own figures (sweeps, rule evaluations, imports),
    /// counted whether or not they are served.
    metrics: Arc<ServiceMetrics>,
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
            feeds: Feeds::new(db.clone()),
            page_key: Arc::default(),
            evaluations: Arc::default(),
            evaluated: Arc::new(tokio::sync::watch::Sender::new(0)),
            rule_sets: Default::default(),
            metrics: Arc::default(),
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
    /// [`db::connection::ServiceConnections`]).
    pub fn with_writer(mut self, writer: DatabaseConnection) -> Self {
        self.writer = writer;
        self
    }

    /// This store (its caches, queues and change feed) reading on `pool`,
    /// and on PostgreSQL writing there too: background upkeep's, whose
    /// statements have a time limit of their own (see
    /// [`db::connection`]). On SQLite writes stay on the one writer.
    pub fn on_background_pool(&self, pool: DatabaseConnection) -> Self {
        let mut store = self.clone();
        if pool.get_database_backend() == DatabaseBackend::Postgres {
            store.writer = pool.clone();
        }
        store.db = pool;
        store
    }

    /// The relationship change stream's fan-out.
    pub fn feed(&self) -> &RelationshipFeed {
        &self.feeds.relationships
    }

    /// The membership change stream's fan-out.
    pub fn membership_feed(&self) -> &MembershipFeed {
        &self.feeds.memberships
    }

    /// Every log's fan-out: woken after every write, run and closed
    /// together.
    pub fn feeds(&self) -> &Feeds {
        &self.feeds
    }

    /// Told when a write here starts a rule group's evaluation (see
    /// [`customers::evaluation`]).
    pub fn evaluations(&self) -> &tokio::sync::Notify {
        &self.evaluations
    }

    /// Changes each time this server finishes evaluating a group's rule
    /// (the group has just turned CURRENT, committed): something to wait on
    /// rather than to poll.
    pub fn evaluations_finished(&self) -> tokio::sync::watch::Receiver<u64> {
        self.evaluated.subscribe()
    }

    /// Notes that an evaluation finished.
    fn evaluation_finished(&self) {
        self.metrics.rule_evaluations.inc();
        self.evaluated.send_modify(|n| *n += 1);
    }

    /// The service's own figures, which the store and upkeep count.
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    /// The customer-record cache.
    pub fn records(&self) -> &RecordCache {
        &self.records
    }

    /// Hears the other replicas' writes, for as long as the returned future
    /// runs: drops their customers from the record cache and wakes the
    /// change feeds for their changes (PostgreSQL; on SQLite, with one
    /// server per database, it ends at once).
    pub async fn hear_replicas(&self) {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            replicas::listen(self.db.clone(), self.records.clone(), self.feeds.clone()).await;
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
}
