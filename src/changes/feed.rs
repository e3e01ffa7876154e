//! The change stream's fan-out: one reader per server tails the change log
//! of every tenant that has watchers here and hands each new change to
//! them, so a thousand watchers cost one query per wake-up, not a thousand.
//!
//! The reader wakes when this server commits a change ([`Feed::wake`]) and
//! otherwise polls every [`POLL`], which is how changes made through other
//! replicas arrive (and a safety net for missed wake-ups). Each tenant's
//! changes go out on a bounded broadcast channel: a watcher that falls
//! behind loses its place in the channel, not memory, and catches up from
//! the database (see `watch`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use tokio::sync::{Notify, broadcast, watch};

use crate::{
    domain::change::split_group_ids,
    entity::{change_counter, relationship_change},
    error::{AppError, AppResult},
    telemetry::Throttle,
    warn_throttled,
};

/// How often the reader looks for changes nobody woke it for.
pub const POLL: Duration = Duration::from_millis(250);
/// Changes read per statement.
pub const PAGE: u64 = 500;
/// Pages of changes a tenant's channel holds for watchers that are behind.
/// A watcher whose client stopped reading keeps every page published after
/// it stopped in memory, up to this many (at most 64 × [`PAGE`] changes,
/// some 15 MB); past that it is told it lagged, lets them go, and later
/// reads what it missed from the database.
const CHANNEL_CAPACITY: usize = 64;

/// Consecutive changes of one tenant, in sequence order, as one message.
pub type Batch = Arc<[Entry]>;

/// One change, with what the stream's filters look at: the customer's
/// owner and groups when the change was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The change.
    pub change: relationship_change::Model,
    /// The customer's owner.
    pub owner_id: String,
    /// The customer's groups.
    pub group_ids: Vec<String>,
}

/// The changes of `tenant` after sequence `after`, at most `limit`, in
/// order.
pub async fn read_after(
    db: &impl ConnectionTrait,
    tenant: &str,
    after: i64,
    limit: u64,
) -> AppResult<Vec<Entry>> {
    let rows = relationship_change::Entity::find()
        .filter(relationship_change::Column::TenantId.eq(tenant))
        .filter(relationship_change::Column::Sequence.gt(after))
        .order_by_asc(relationship_change::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Entry::from).collect())
}

impl From<relationship_change::Model> for Entry {
    fn from(mut change: relationship_change::Model) -> Self {
        let owner_id = std::mem::take(&mut change.owner_id);
        let group_ids = split_group_ids(Some(std::mem::take(&mut change.group_ids)));
        Self {
            change,
            owner_id,
            group_ids,
        }
    }
}

/// The tenant's latest sequence (0 before its first change).
pub async fn latest_sequence(db: &impl ConnectionTrait, tenant: &str) -> AppResult<i64> {
    let latest = latest_sequences(db, std::iter::once(tenant.to_owned())).await?;
    Ok(latest.get(tenant).copied().unwrap_or(0))
}

/// The latest sequence of each of `tenants` that has changes.
async fn latest_sequences(
    db: &impl ConnectionTrait,
    tenants: impl Iterator<Item = String>,
) -> AppResult<HashMap<String, i64>> {
    let tenants: Vec<String> = tenants.collect();
    let mut latest = HashMap::with_capacity(tenants.len());
    for chunk in tenants.chunks(500) {
        let rows: Vec<(String, i64)> = change_counter::Entity::find()
            .filter(change_counter::Column::TenantId.is_in(chunk.iter().cloned()))
            .select_only()
            .column(change_counter::Column::TenantId)
            .column(change_counter::Column::LastSequence)
            .into_tuple()
            .all(db)
            .await?;
        latest.extend(rows);
    }
    Ok(latest)
}

/// A tenant's channel and how far the reader has published its log.
struct Channel {
    sender: broadcast::Sender<Batch>,
    published: i64,
}

/// The fan-out; cheap to clone (shared).
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    tenants: Mutex<HashMap<String, Channel>>,
    wake: Notify,
    closed: watch::Sender<bool>,
}

/// What a new watcher gets: the live changes after `published`, which it
/// replays up to from the database.
pub struct Subscription {
    /// Changes after `published`, as the reader publishes them.
    pub live: broadcast::Receiver<Batch>,
    /// The last sequence published before `live` began.
    pub published: i64,
    /// Turns true when the server shuts down.
    pub closed: watch::Receiver<bool>,
}

impl Feed {
    /// A feed reading from `db`; nothing is read until [`Feed::run`] runs.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                tenants: Mutex::default(),
                wake: Notify::new(),
                closed: watch::Sender::new(false),
            }),
        }
    }

    /// Tells the reader that this server committed a change.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Ends every stream (with UNAVAILABLE) and stops the reader.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
        self.inner.wake.notify_one();
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the feed was closed (the server is shutting down).
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Completes when the feed is closed.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.inner.closed.subscribe();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    /// Starts watching `tenant`'s live changes; UNAVAILABLE once the feed is
    /// closed.
    pub async fn subscribe(&self, tenant: &str) -> AppResult<Subscription> {
        if self.is_closed() {
            return Err(AppError::Busy(
                "the server is shutting down; watch through another replica or later".into(),
            ));
        }
        // Read before taking the lock; a change committed meanwhile is after
        // it, so the reader publishes it.
        let latest = latest_sequence(&self.inner.db, tenant).await?;
        let mut tenants = self.tenants();
        let channel = tenants.entry(tenant.to_owned()).or_insert_with(|| Channel {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            published: latest,
        });
        Ok(Subscription {
            live: channel.sender.subscribe(),
            published: channel.published,
            closed: self.inner.closed.subscribe(),
        })
    }

    /// The reader: publishes new changes until the feed is closed.
    pub async fn run(&self) {
        let mut closed = self.inner.closed.subscribe();
        // During an outage every poll fails: a few lines a minute say so.
        let mut failures = Throttle::default();
        let mut tenant_failures = Throttle::default();
        loop {
            if *closed.borrow() {
                return;
            }
            match self.publish(&mut tenant_failures).await {
                Ok(()) => failures.clear(),
                Err(error) => warn_throttled!(
                    failures,
                    %error,
                    "reading the change log failed; trying again"
                ),
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = closed.changed() => {}
            }
        }
    }

    /// Publishes what each watched tenant committed since last time, and
    /// forgets tenants nobody watches any more.
    async fn publish(&self, tenant_failures: &mut Throttle) -> AppResult<()> {
        let watched: Vec<(String, i64)> = {
            let mut tenants = self.tenants();
            tenants.retain(|_, c| c.sender.receiver_count() > 0);
            tenants
                .iter()
                .map(|(t, c)| (t.clone(), c.published))
                .collect()
        };
        // One cheap statement tells which watched tenants have new changes;
        // only those are read.
        let latest =
            latest_sequences(&self.inner.db, watched.iter().map(|(t, _)| t.clone())).await?;
        let mut failed = false;
        for (tenant, published) in watched {
            if latest.get(&tenant).is_none_or(|&l| l <= published) {
                continue;
            }
            // One tenant's failure does not hold up the others.
            if let Err(error) = self.publish_tenant(&tenant, published).await {
                failed = true;
                warn_throttled!(
                    tenant_failures,
                    %error,
                    %tenant,
                    "reading a tenant's change log failed; trying again"
                );
            }
        }
        if !failed {
            tenant_failures.clear();
        }
        Ok(())
    }

    /// Publishes `tenant`'s changes after `published`.
    async fn publish_tenant(&self, tenant: &str, mut published: i64) -> AppResult<()> {
        loop {
            let entries = read_after(&self.inner.db, tenant, published, PAGE).await?;
            let Some(last) = entries.last().map(|e| e.change.sequence) else {
                return Ok(());
            };
            let full = entries.len() as u64 == PAGE;
            {
                let mut tenants = self.tenants();
                let Some(channel) = tenants.get_mut(tenant) else {
                    return Ok(());
                };
                // One message a page: a burst of thousands of changes fills
                // a few slots, so watchers keep up instead of all falling
                // back to the database at once. No receiver left is not an
                // error: nobody to tell.
                let _ = channel.sender.send(Arc::from(entries));
                channel.published = last;
            }
            published = last;
            if !full {
                return Ok(());
            }
        }
    }
}
