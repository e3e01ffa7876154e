//! The customer-record cache: recently read customers (row and active group
//! ids), so the most frequent call, reading one customer, costs no database
//! statement when the customer was read or written lately.
//!
//! # Why it never serves a stale record
//!
//! * The one write path of customers ([`super::write`]) notes every
//!   customer it writes ([`Touches`]) on the write's transaction; when the
//!   write ends, [`Store::write`](crate::store::Store::write) drops those
//!   entries (or the whole cache, for writes such as deleting a group that
//!   change many records at once). No caller declares what it touches, so
//!   none can forget. Writes run to completion in a task of their own, so
//!   a caller that goes away cannot skip the invalidation.
//! * A reader that misses takes a [`Ticket`] *before* it reads the database
//!   and may only fill the entry if no invalidation reached the entry's shard
//!   since. A record read before a commit can therefore not be stored after
//!   that commit's invalidation: either the fill comes first and the
//!   invalidation removes it, or the invalidation comes first and the fill is
//!   refused.
//!   A read in a snapshot (a list) takes its tickets before the snapshot
//!   begins, since its reads may be older than the moment it reads them.
//! * With several replicas on PostgreSQL, every write also sends its
//!   invalidation with `pg_notify` inside its transaction (delivered at
//!   commit) and each replica applies the others' (see `replicas`). While
//!   a replica is not listening, its cache is switched off.
//!
//! * An entry serves reads for at most 30 s, a backstop against changes
//!   made around the service.
//!
//! On SQLite the service is the database file's only writer.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::CustomerRecord;

/// Shards, so readers and writers of different customers rarely contend.
const SHARDS: usize = 32;
/// How long an entry serves reads at most. A backstop only: writes through
/// this service invalidate at once; this bounds how long a change made
/// around it (by hand in the database, or by a replica of a version that
/// does not announce its writes) can go unseen.
const MAX_AGE: Duration = Duration::from_secs(30);

/// Which customer records a write changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Touches {
    /// None that anyone could have read (catalog writes, new customers).
    #[default]
    Nothing,
    /// These customers.
    Customers(Vec<String>),
    /// Possibly any (e.g. a group's deletion changes its members' groups).
    Everything,
}

/// Past this many customers a write counts as touching every record:
/// clearing the cache is cheaper than dropping each.
const MOST_NAMED: usize = 10_000;

impl Touches {
    /// One customer.
    pub fn customer(id: &str) -> Self {
        Self::Customers(vec![id.to_owned()])
    }

    /// Adds what `other` touches.
    pub fn add(&mut self, other: Touches) {
        *self = match (std::mem::take(self), other) {
            (Self::Everything, _) | (_, Self::Everything) => Self::Everything,
            (Self::Nothing, other) | (other, Self::Nothing) => other,
            (Self::Customers(mut ids), Self::Customers(more)) => {
                ids.extend(more);
                if ids.len() > MOST_NAMED {
                    Self::Everything
                } else {
                    Self::Customers(ids)
                }
            }
        };
    }
}

#[derive(Default)]
struct Shard {
    records: HashMap<String, (Arc<CustomerRecord>, Instant)>,
    /// Bumped by every invalidation that reaches the shard.
    epoch: u64,
}

/// Permission to fill one entry, taken before reading the database.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    shard: usize,
    epoch: u64,
}

/// Permission to fill any entry, taken at once for every shard: for a read
/// transaction, before it begins (its reads may predate a ticket taken
/// when the record is read).
#[derive(Debug, Clone)]
pub struct Tickets {
    epochs: [u64; SHARDS],
}

/// The cache; cheap to clone (shared).
#[derive(Clone)]
pub struct RecordCache {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
    /// False while the cache may have missed an invalidation (a replica not
    /// listening) or when it is configured off.
    enabled: AtomicBool,
}

impl RecordCache {
    /// A cache of at most about `capacity` records (0 switches it off),
    /// enabled when `enabled`.
    pub fn new(capacity: usize, enabled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                per_shard: capacity.div_ceil(SHARDS),
                hasher: RandomState::new(),
                enabled: AtomicBool::new(enabled && capacity > 0),
            }),
        }
    }

    fn shard_of(&self, id: &str) -> usize {
        (self.inner.hasher.hash_one(id) as usize) % SHARDS
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.inner.shards[shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn enabled(&self) -> bool {
        self.inner.per_shard > 0 && self.inner.enabled.load(Ordering::Acquire)
    }

    /// The cached record of customer `id` of `tenant`.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<CustomerRecord>> {
        if !self.enabled() {
            return None;
        }
        let shard = self.lock(self.shard_of(id));
        shard
            .records
            .get(id)
            .filter(|(r, filled)| r.row.tenant_id == tenant && filled.elapsed() < MAX_AGE)
            .map(|(r, _)| r.clone())
    }

    /// Takes the ticket for filling `id` later.
    pub fn ticket(&self, id: &str) -> Ticket {
        let shard = self.shard_of(id);
        Ticket {
            shard,
            epoch: self.lock(shard).epoch,
        }
    }

    /// Takes the ticket for filling any entry later.
    pub fn tickets(&self) -> Tickets {
        Tickets {
            epochs: std::array::from_fn(|shard| self.lock(shard).epoch),
        }
    }

    /// The ticket `tickets` holds for filling `id`.
    pub fn ticket_in(&self, tickets: &Tickets, id: &str) -> Ticket {
        let shard = self.shard_of(id);
        Ticket {
            shard,
            epoch: tickets.epochs[shard],
        }
    }

    /// Stores `record`, read from the database after `ticket` was taken,
    /// unless an invalidation reached its shard in between.
    pub fn fill(&self, ticket: Ticket, record: &CustomerRecord) {
        if !self.enabled() {
            return;
        }
        let mut shard = self.lock(ticket.shard);
        if shard.epoch != ticket.epoch {
            return;
        }
        if shard.records.len() >= self.inner.per_shard
            && !shard.records.contains_key(&record.row.id)
        {
            // Make room by dropping an arbitrary entry: cheap, and good enough
            // for a cache whose hits come from a working set.
            if let Some(victim) = shard.records.keys().next().cloned() {
                shard.records.remove(&victim);
            }
        }
        shard.records.insert(
            record.row.id.clone(),
            (Arc::new(record.clone()), Instant::now()),
        );
    }

    /// Drops what `touches` names.
    pub fn invalidate(&self, touches: &Touches) {
        match touches {
            Touches::Nothing => {}
            Touches::Customers(ids) => {
                for id in ids {
                    let mut shard = self.lock(self.shard_of(id));
                    shard.records.remove(id);
                    shard.epoch += 1;
                }
            }
            Touches::Everything => self.clear(),
        }
    }

    /// Drops every entry and refuses fills of reads begun before.
    pub fn clear(&self) {
        for shard in 0..SHARDS {
            let mut shard = self.lock(shard);
            shard.records.clear();
            shard.epoch += 1;
        }
    }

    /// Switches the cache on or off; either way it starts empty.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.enabled.store(false, Ordering::Release);
        self.clear();
        self.inner.enabled.store(enabled, Ordering::Release);
    }

    /// Records held.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).records.len()).sum()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::customer;

    fn record(tenant: &str, id: &str, revision: i64) -> CustomerRecord {
        CustomerRecord {
            row: customer::Model {
                id: id.to_owned(),
                tenant_id: tenant.to_owned(),
                name: "An".into(),
                sort_key: "an".into(),
                search_text: "an".into(),
                phone: String::new(),
                email: String::new(),
                owner_id: String::new(),
                source_id: None,
                relationship_id: "r".into(),
                province: String::new(),
                company: String::new(),
                name_folded: "an".into(),
                company_folded: String::new(),
                province_folded: String::new(),
                attributes_folded: "{}".into(),
                revenue: 0,
                attributes: "{}".into(),
                last_contact_time: None,
                activity_time: 0,
                profile_completion: 0,
                revision,
                create_time: 0,
                update_time: 0,
                delete_time: None,
            },
            group_ids: vec![],
        }
    }

    #[test]
    fn fills_hit_only_their_tenant() {
        let cache = RecordCache::new(100, true);
        cache.fill(cache.ticket("c1"), &record("t1", "c1", 1));
        assert_eq!(cache.get("t1", "c1").unwrap().row.revision, 1);
        assert!(cache.get("t2", "c1").is_none());
    }

    #[test]
    fn a_fill_read_before_an_invalidation_is_refused() {
        let cache = RecordCache::new(100, true);
        let ticket = cache.ticket("c1");
        cache.invalidate(&Touches::customer("c1"));
        cache.fill(ticket, &record("t1", "c1", 1));
        assert!(cache.get("t1", "c1").is_none());
        let ticket = cache.ticket("c1");
        cache.invalidate(&Touches::Everything);
        cache.fill(ticket, &record("t1", "c1", 1));
        assert!(cache.get("t1", "c1").is_none());
    }

    #[test]
    fn a_fill_read_after_tickets_taken_before_an_invalidation_is_refused() {
        let cache = RecordCache::new(100, true);
        let tickets = cache.tickets();
        cache.invalidate(&Touches::customer("c1"));
        cache.fill(cache.ticket_in(&tickets, "c1"), &record("t1", "c1", 1));
        assert!(cache.get("t1", "c1").is_none());
        let tickets = cache.tickets();
        cache.fill(cache.ticket_in(&tickets, "c1"), &record("t1", "c1", 2));
        assert_eq!(cache.get("t1", "c1").unwrap().row.revision, 2);
    }

    #[test]
    fn invalidation_drops_the_entry() {
        let cache = RecordCache::new(100, true);
        cache.fill(cache.ticket("c1"), &record("t1", "c1", 1));
        cache.fill(cache.ticket("c2"), &record("t1", "c2", 1));
        cache.invalidate(&Touches::customer("c1"));
        assert!(cache.get("t1", "c1").is_none());
        assert!(cache.get("t1", "c2").is_some());
        cache.invalidate(&Touches::Everything);
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_within_capacity_and_off_when_disabled() {
        let cache = RecordCache::new(SHARDS, true);
        for i in 0..1000 {
            let id = format!("c{i}");
            cache.fill(cache.ticket(&id), &record("t", &id, 1));
        }
        assert!(cache.len() <= SHARDS);
        cache.set_enabled(false);
        cache.fill(cache.ticket("c1"), &record("t", "c1", 1));
        assert!(cache.get("t", "c1").is_none());
        let off = RecordCache::new(0, true);
        off.fill(off.ticket("c1"), &record("t", "c1", 1));
        assert!(off.get("t", "c1").is_none());
    }
}
