//! The change stream's fan-out: one reader per server and log tails that
//! log for every tenant that has watchers here and hands each new entry to
//! them, so a thousand watchers cost one query per wake-up, not a thousand.
//! A [`Feed`] works on any [`Log`]; the server runs one per log
//! ([`Feeds`]).
//!
//! The reader wakes when this server commits a write ([`Feed::wake`]) and
//! otherwise polls every [`POLL`], which is how entries written through
//! other replicas arrive (and a safety net for missed wake-ups). Each
//! tenant's entries go out on a bounded broadcast channel: a watcher that
//! falls behind loses its place in the channel, not memory, and catches up
//! from the database (see `watch`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, broadcast, watch};

use super::{
    log::{Log, latest_sequence, latest_sequences, read_after},
    membership::MembershipLog,
    relationship::RelationshipLog,
};
use crate::{
    error::{AppError, AppResult},
    telemetry::Throttle,
    warn_throttled,
};

/// How often the reader looks for entries nobody woke it for.
pub const POLL: Duration = Duration::from_millis(250);
/// Entries read per statement.
pub const PAGE: u64 = 500;
/// Pages of entries a tenant's channel holds for watchers that are behind.
/// A watcher whose client stopped reading keeps every page published after
/// it stopped in memory, up to this many (at most 64 × [`PAGE`] entries,
/// some 15 MB); past that it is told it lagged, lets them go, and later
/// reads what it missed from the database.
const CHANNEL_CAPACITY: usize = 64;

/// Consecutive entries of one tenant's log `L`, in sequence order, as one
/// message.
pub type Batch<L> = Arc<[<L as Log>::Entry]>;

/// The relationship-change log's fan-out.
pub type RelationshipFeed = Feed<RelationshipLog>;
/// The membership log's fan-out.
pub type MembershipFeed = Feed<MembershipLog>;

/// The server's fan-outs, one per log: woken, run and closed together.
#[derive(Clone)]
pub struct Feeds {
    /// WatchRelationshipChanges's.
    pub relationships: RelationshipFeed,
    /// WatchGroupMembershipChanges's.
    pub memberships: MembershipFeed,
}

impl Feeds {
    /// Feeds reading from `db`; nothing is read until [`Feeds::run`] runs.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            relationships: Feed::new(db.clone()),
            memberships: Feed::new(db),
        }
    }

    /// Tells every reader that this server committed a write (or another
    /// replica announced one): whichever log grew, its reader looks now.
    pub fn wake(&self) {
        self.relationships.wake();
        self.memberships.wake();
    }

    /// Ends every stream of every log (with UNAVAILABLE) and stops the
    /// readers.
    pub fn close(&self) {
        self.relationships.close();
        self.memberships.close();
    }

    /// Runs every reader until the feeds are closed.
    pub async fn run(&self) {
        tokio::join!(self.relationships.run(), self.memberships.run());
    }
}

/// A tenant's channel and how far the reader has published its log.
struct Channel<L: Log> {
    sender: broadcast::Sender<Batch<L>>,
    published: i64,
}

/// The fan-out of log `L`; cheap to clone (shared).
pub struct Feed<L: Log> {
    inner: Arc<Inner<L>>,
}

impl<L: Log> Clone for Feed<L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<L: Log> {
    db: DatabaseConnection,
    tenants: Mutex<HashMap<String, Channel<L>>>,
    wake: Notify,
    closed: watch::Sender<bool>,
    /// Times a watcher fell behind its channel (for the metrics).
    lagged: AtomicU64,
    /// Streams of this feed open to clients: counted by a guard their
    /// answer holds, so a stream is closed the moment its answer is
    /// dropped (the watcher task behind it ends a moment later).
    open: Arc<AtomicUsize>,
}

/// One stream of a feed open to a client; dropping it closes it.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the metrics tell of a feed's watchers, read when scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watchers {
    /// Watchers open.
    pub open: usize,
    /// The most batches that watchers of one tenant have yet to read: how
    /// close the slowest comes to the channel's capacity (64), past which
    /// it lags.
    pub most_behind: usize,
    /// Times a watcher fell behind its channel and read what it missed
    /// from the database.
    pub lagged: u64,
}

/// What a new watcher gets: the live entries after `published`, which it
/// replays up to from the database.
pub struct Subscription<L: Log> {
    /// Entries after `published`, as the reader publishes them.
    pub live: broadcast::Receiver<Batch<L>>,
    /// The last sequence published before `live` began.
    pub published: i64,
    /// Turns true when the server shuts down.
    pub closed: watch::Receiver<bool>,
}

impl<L: Log> Feed<L> {
    /// A feed reading from `db`; nothing is read until [`Feed::run`] runs.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                tenants: Mutex::default(),
                wake: Notify::new(),
                closed: watch::Sender::new(false),
                lagged: AtomicU64::new(0),
                open: Arc::new(AtomicUsize::new(0)),
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

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel<L>>> {
        self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many watchers are open and how far behind they are.
    pub fn watchers(&self) -> Watchers {
        let tenants = self.tenants();
        Watchers {
            open: self.inner.open.load(Ordering::Relaxed),
            most_behind: tenants.values().map(|c| c.sender.len()).max().unwrap_or(0),
            lagged: self.inner.lagged.load(Ordering::Relaxed),
        }
    }

    /// Counts a stream open to a client until the guard is dropped.
    pub fn opened(&self) -> OpenStream {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.inner.open.clone())
    }

    /// Notes that a watcher fell behind its channel.
    pub(super) fn note_lagged(&self) {
        self.inner.lagged.fetch_add(1, Ordering::Relaxed);
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
    pub async fn subscribe(&self, tenant: &str) -> AppResult<Subscription<L>> {
        if self.is_closed() {
            return Err(AppError::Busy(
                "the server is shutting down; watch through another replica or later".into(),
            ));
        }
        // Read before taking the lock; a change committed meanwhile is after
        // it, so the reader publishes it.
        let latest = latest_sequence::<L>(&self.inner.db, tenant).await?;
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
                    log = L::NAME,
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
        let tenants: Vec<String> = watched.iter().map(|(t, _)| t.clone()).collect();
        let latest = latest_sequences::<L>(&self.inner.db, &tenants).await?;
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
                    log = L::NAME,
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
            let entries = read_after::<L>(&self.inner.db, tenant, published, PAGE).await?;
            let Some(last) = entries.last().map(L::sequence) else {
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
