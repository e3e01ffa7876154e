//! Applying the inactivity rule to stored customers: the background sweep
//! and `ApplyInactivityRules`.
//!
//! For each relationship customers hold, the rule gives activity-time bands
//! and the automatic relationship each band belongs in (see
//! [`crate::domain::inactivity`]). The sweep reads each band's customers in
//! activity order from `relationship_members`; for a manual relationship
//! from an index that leaves out customers already in an automatic
//! relationship (`relationship_members_unplaced_by_activity`), so customers
//! the rule has placed are never read again while they stay there. It gathers the
//! ids of those due and moves them in id order, [`BATCH`] at a time, each
//! batch in a short transaction of its own, so other writes take turns
//! with it instead of waiting for the whole sweep.
//!
//! The transaction checks that the rules are still those read, locks the
//! batch's customers and judges them again from their rows as they are
//! then: a customer contacted, moved or deleted meanwhile is judged from
//! what it is now, and when two replicas sweep at once the second finds the
//! customers the first moved already where they belong: each customer
//! moves once, with one change on the stream. (On PostgreSQL the locking
//! read waits for the other sweep's transaction and then reads the
//! committed row.)

use std::{collections::HashMap, sync::Arc};

use futures::{StreamExt, TryStreamExt, stream};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use super::write::{self, Change, Move};
use crate::{
    domain::{
        change::{Cause, Channel, Origin},
        inactivity::{self, AutomaticRule, Band, InactivityRules},
        relationship::Kind,
        tenant::RequestContext,
    },
    entity::{customer, relationship, relationship_change, relationship_member, tenant},
    error::AppResult,
    store::{
        Store, WriteTx,
        catalogs::relationships::{self, exempt_ids_of, kind_of},
        lock_scope_shared,
        resource::in_tenant,
    },
};

/// Customers moved per transaction. Another write waits for at most about
/// one batch, and between two batches the writes that waited take their
/// turn, so the size trades the sweep's speed against the other writes'
/// latency. Measured with `crm-load sweep` (4 writers, 2026-12-06): 500
/// against 250, SQLite 8.3 s against 10.7 s (median of 4; other writes'
/// p99 44–55 ms against 32–42 ms), PostgreSQL 10.7 s against 13.2 s (p99
/// 49–64 ms against 48–62 ms); 1,000 on PostgreSQL was barely faster than
/// 500 (9.9 s against 10.3 s) with p99 up to 81 ms. (On 2026-11-23, with
/// slower batches, 500 was no faster than 250 and pushed SQLite's p99 to
/// 67–135 ms.)
#[cfg(not(test))]
pub const BATCH: usize = 500;
/// Candidates read per statement.
#[cfg(not(test))]
const READ: u64 = 2_000;
/// Candidates (their ids) gathered before moving them, so that they are
/// moved in id order: at most this many ids are held in memory (~13 MB).
/// Ids follow creation, and so do the table rows and most index entries a
/// move rewrites, so the fewer the rounds, the fewer pages each batch
/// touches: moving 100,000 of 1,000,000 customers in rounds of 20,000 took
/// about twice as long as in one round (see BENCHMARKS.md).
#[cfg(not(test))]
const ROUND: usize = 200_000;

// Small sizes for the unit tests, so a few dozen customers take several
// reads, rounds and batches, with partial ones at each level.
#[cfg(test)]
pub const BATCH: usize = 6;
#[cfg(test)]
const READ: u64 = 7;
#[cfg(test)]
const ROUND: usize = 20;

/// A customer the rule moves, or would move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InactivityMove {
    /// The customer.
    pub customer_id: String,
    /// The relationship it leaves.
    pub from: String,
    /// The automatic relationship it goes to.
    pub to: String,
    /// Its last contact, or its creation when never contacted.
    pub activity_time: i64,
    /// Whole days without activity at the time judged.
    pub idle_days: i64,
    /// What the change log says.
    pub reason: String,
    /// The change's sequence; `None` on a dry run.
    pub sequence: Option<i64>,
}

/// What one application of the rule did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InactivityReport {
    /// Customers moved (would move).
    pub count: u64,
    /// The first of them, as many as asked for.
    pub moves: Vec<InactivityMove>,
}

impl InactivityReport {
    /// Counts `moves`, listing them while fewer than `list` are listed.
    fn add(&mut self, moves: impl IntoIterator<Item = InactivityMove>, list: usize) {
        for m in moves {
            self.count += 1;
            if self.moves.len() < list {
                self.moves.push(m);
            }
        }
    }
}

/// How an application of the rule runs.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The tenant.
    pub tenant: String,
    /// Who asked; empty for the background sweep.
    pub actor: String,
    /// The moment inactivity is judged at (microseconds).
    pub as_of: i64,
    /// Only report.
    pub dry_run: bool,
    /// How many moves the report lists.
    pub list: usize,
}

/// The tenant's automatic rules and every relationship its customers may
/// hold.
pub async fn rules_of(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> AppResult<(InactivityRules, Vec<relationship::Model>)> {
    let rows = in_tenant::<relationship::Entity>(tenant)
        .order_by_asc(relationship::Column::Id)
        .all(db)
        .await?;
    let mut rules = Vec::new();
    for row in &rows {
        if row.delete_time.is_none() && kind_of(row)? == Kind::AutomaticInactivity {
            rules.push((
                row.position,
                AutomaticRule {
                    relationship_id: row.id.clone(),
                    inactivity_days: row.inactivity_days,
                    restore_on_contact: row.restore_on_contact,
                    exempt_ids: exempt_ids_of(row)?.into_iter().collect(),
                },
            ));
        }
    }
    Ok((InactivityRules::new(rules), rows))
}

/// After a contact made `row` (locked, its activity time updated) active
/// again: when it sits in an automatic relationship that restores on
/// contact, moves it back to the last manual relationship it held before
/// the automatic moves (the default one if it never held another), unless
/// the rule would move it straight back (a contact recorded long after it
/// happened). Returns whether it moved.
pub async fn restore_on_contact(
    tx: &WriteTx,
    ctx: &RequestContext,
    row: &customer::Model,
    channel: Channel,
    now: i64,
) -> AppResult<bool> {
    let tenant = ctx.tenant.as_str();
    let (rules, relationships) = rules_of(tx, tenant).await?;
    if !rules
        .rule_of(&row.relationship_id)
        .is_some_and(|r| r.restore_on_contact)
    {
        return Ok(false);
    }
    let mut manual = Vec::new();
    for r in relationships.iter().filter(|r| r.delete_time.is_none()) {
        if kind_of(r)? == Kind::Manual {
            manual.push(r);
        }
    }
    let last_manual: Option<String> = relationship_change::Entity::find()
        .filter(relationship_change::Column::TenantId.eq(tenant))
        .filter(relationship_change::Column::CustomerId.eq(&row.id))
        .filter(
            relationship_change::Column::NewRelationshipId
                .is_in(manual.iter().map(|r| r.id.clone())),
        )
        .order_by_desc(relationship_change::Column::Sequence)
        .limit(1)
        .select_only()
        .column(relationship_change::Column::NewRelationshipId)
        .into_tuple()
        .one(tx)
        .await?;
    let Some(back) =
        last_manual.or_else(|| manual.iter().find(|r| r.is_default).map(|r| r.id.clone()))
    else {
        return Ok(false);
    };
    if rules.target(&back, row.activity_time, now).is_some() {
        return Ok(false);
    }
    let contacted = inactivity::date_of(row.activity_time);
    let origin = Origin {
        cause: Cause::ContactResumed,
        actor: ctx.actor.0.clone(),
        reason: format!("contacted by {} on {contacted}", channel.as_str()),
    };
    let change = Move {
        customer_id: row.id.clone(),
        from: row.relationship_id.clone(),
        to: back,
        active: true,
        owner: row.owner_id.clone(),
    };
    let moved = Change::Move {
        change: &change,
        origin: &origin,
    };
    write::apply(tx, tenant, now, &ctx.actor.0, &[moved], None).await?;
    Ok(true)
}

/// A customer of a band: id, activity time, and its last contact, which
/// only a dry run reads (it says why each would move; otherwise `None`).
type Candidate = (String, i64, Option<i64>);

/// A batch's customer as locked: id, relationship, activity time, last
/// contact, owner.
type Locked = (String, String, i64, Option<i64>, String);

/// The active customers holding `current` whose activity time lies in
/// `band`. For a manual relationship the query names the condition of
/// `relationship_members_unplaced_by_activity` (as literals: bound values
/// would not let the databases use the partial index).
fn in_band(
    tenant: &str,
    current: &str,
    automatic: bool,
    band: &Band<'_>,
) -> sea_orm::Select<relationship_member::Entity> {
    use relationship_member::Column as M;
    let mut query = relationship_member::Entity::find()
        .filter(M::TenantId.eq(tenant))
        .filter(M::RelationshipId.eq(current))
        .filter(M::ActivityTime.lte(band.upto));
    query = if automatic {
        query.filter(M::CustomerActive.eq(true))
    } else {
        query.filter(Expr::cust(
            "customer_active = TRUE AND automatic_relationship = FALSE",
        ))
    };
    if let Some(after) = band.after {
        query = query.filter(M::ActivityTime.gt(after));
    }
    query
}

/// The columns of a [`Locked`] customer.
fn as_locked(
    query: sea_orm::Select<customer::Entity>,
) -> sea_orm::Selector<sea_orm::SelectGetableTuple<Locked>> {
    query
        .select_only()
        .column(customer::Column::Id)
        .column(customer::Column::RelationshipId)
        .column(customer::Column::ActivityTime)
        .column(customer::Column::LastContactTime)
        .column(customer::Column::OwnerId)
        .into_tuple()
}

/// The next [`READ`] customers of `band` among those holding `current`,
/// after `from` (activity time, id), oldest activity first, from
/// `relationship_members`. Only a dry run reads their last contacts, from
/// `customers` (it says why each would move; a sweep keeps only the ids:
/// each batch reads its customers again).
async fn candidates(
    db: &impl ConnectionTrait,
    sweep: &Sweep,
    (current, automatic): (&str, bool),
    band: &Band<'_>,
    from: Option<&(i64, String)>,
) -> AppResult<Vec<Candidate>> {
    use relationship_member::Column as M;
    let mut query = in_band(&sweep.tenant, current, automatic, band);
    if let Some((activity, id)) = from {
        // The first condition starts the index range; the second skips
        // the customers of that activity time already read.
        query = query.filter(M::ActivityTime.gte(*activity)).filter(
            Condition::any().add(M::ActivityTime.gt(*activity)).add(
                Condition::all()
                    .add(M::ActivityTime.eq(*activity))
                    .add(M::CustomerId.gt(id.clone())),
            ),
        );
    }
    let read: Vec<(String, i64)> = query
        .order_by_asc(M::ActivityTime)
        .order_by_asc(M::CustomerId)
        .limit(READ)
        .select_only()
        .column(M::CustomerId)
        .column(M::ActivityTime)
        .into_tuple()
        .all(db)
        .await?;
    let mut last_contacts: HashMap<String, Option<i64>> = if sweep.dry_run && !read.is_empty() {
        in_tenant::<customer::Entity>(&sweep.tenant)
            .filter(customer::Column::Id.is_in(read.iter().map(|(id, _)| id.clone())))
            .select_only()
            .column(customer::Column::Id)
            .column(customer::Column::LastContactTime)
            .into_tuple()
            .all(db)
            .await?
            .into_iter()
            .collect()
    } else {
        HashMap::new()
    };
    Ok(read
        .into_iter()
        .map(|(id, activity)| {
            let last_contact = last_contacts.remove(&id).flatten();
            (id, activity, last_contact)
        })
        .collect())
}

impl Store {
    /// Applies the inactivity rule to one tenant's customers.
    ///
    /// Holders of automatic relationships are read and moved first, then
    /// those of manual ones: a customer this run moves into an automatic
    /// relationship is then not read again until the next run, so each
    /// customer moves at most once per run, as a dry run reports.
    pub async fn apply_inactivity_rules(&self, sweep: &Sweep) -> AppResult<InactivityReport> {
        let (rules, relationships) = rules_of(self.db(), &sweep.tenant).await?;
        let rules = Arc::new(rules);
        let mut report = InactivityReport::default();
        for automatic_holders in [true, false] {
            // Ids of customers due, gathered over every band and relationship
            // of the phase and moved in id order (see [`ROUND`]).
            let mut round: Vec<String> = Vec::new();
            for current in &relationships {
                let automatic = rules.rule_of(&current.id).is_some();
                if automatic != automatic_holders {
                    continue;
                }
                for band in rules.bands(&current.id, sweep.as_of) {
                    let mut from = None;
                    loop {
                        let read = candidates(
                            self.db(),
                            sweep,
                            (&current.id, automatic),
                            &band,
                            from.as_ref(),
                        )
                        .await?;
                        if let Some((id, activity, _)) = read.last() {
                            from = Some((*activity, id.clone()));
                        }
                        let exhausted = (read.len() as u64) < READ;
                        for (id, activity, last_contact) in read {
                            if sweep.dry_run {
                                let customer = (id, current.id.clone(), activity, last_contact);
                                report.add([planned(sweep, band.target, customer)], sweep.list);
                            } else {
                                round.push(id);
                            }
                        }
                        if round.len() >= ROUND {
                            self.move_round(sweep, &rules, std::mem::take(&mut round), &mut report)
                                .await?;
                        }
                        if exhausted {
                            break;
                        }
                    }
                }
            }
            self.move_round(sweep, &rules, round, &mut report).await?;
        }
        Ok(report)
    }

    /// Moves the due customers among `round`, in id order, [`BATCH`] per
    /// transaction, adding what moved to `report`.
    async fn move_round(
        &self,
        sweep: &Sweep,
        rules: &Arc<InactivityRules>,
        mut round: Vec<String>,
        report: &mut InactivityReport,
    ) -> AppResult<()> {
        round.sort_unstable();
        let mut ids = round.into_iter().peekable();
        let mut batches: Vec<Vec<String>> = Vec::new();
        while ids.peek().is_some() {
            batches.push(ids.by_ref().take(BATCH).collect());
        }
        let moved: Vec<Vec<InactivityMove>> = stream::iter(batches)
            .map(|batch| self.move_batch(sweep, rules, batch))
            .buffered(self.sweep_parallelism())
            .try_collect()
            .await?;
        for moves in moved {
            report.add(moves, sweep.list);
        }
        Ok(())
    }

    /// How many batches are moved at once.
    ///
    /// SQLite has one writer anyway. On PostgreSQL batches (of different
    /// customers) update their rows side by side and take turns only on the
    /// shared counters at the end. Measured with `crm-load sweep` (2
    /// cores): one batch of 500 at a time 24 s; two at once 18–21 s; two of
    /// 250 at once as fast, with other writes' p99 at 66–89 ms instead of
    /// 78–101 ms; three or four no faster (again on 2026-12-02: 15.8 and
    /// 15.0 s against 15.6–17.0 s, and other writes' p99 at 98–113 ms;
    /// on 2026-12-06 three batches of 500: 10.3–11.8 s against 11.6–12.3 s,
    /// other writes' p99 100–137 ms against 57–79 ms).
    fn sweep_parallelism(&self) -> usize {
        match self.db().get_database_backend() {
            DatabaseBackend::Postgres => 2,
            _ => 1,
        }
    }

    /// Moves those of the customers `ids` that are due, in one transaction.
    async fn move_batch(
        &self,
        sweep: &Sweep,
        rules: &Arc<InactivityRules>,
        ids: Vec<String>,
    ) -> AppResult<Vec<InactivityMove>> {
        let now = self.now();
        let input = (sweep.clone(), rules.clone(), ids);
        self.write(input, move |tx, (sweep, rules, ids)| {
            Box::pin(async move {
                // The rules must still be those the sweep read: a rule
                // added, deleted or changed since takes nobody (the next
                // sweep applies it). Relationship writers hold this scope
                // exclusively, so the rules stay as read until the commit;
                // and as they take it before any row, nothing here waits
                // for a row lock they hold while they wait for this batch.
                lock_scope_shared(tx, &sweep.tenant, relationships::SCOPE).await?;
                if rules_of(tx, &sweep.tenant).await?.0 != **rules {
                    return Ok(Vec::new());
                }
                // Locked, then judged again as they are now.
                let locked = in_tenant::<customer::Entity>(&sweep.tenant)
                    .filter(customer::Column::DeleteTime.is_null())
                    .filter(customer::Column::Id.is_in(ids.iter().cloned()))
                    .order_by_asc(customer::Column::Id)
                    .lock_exclusive();
                let mut moves = Vec::new();
                let mut planned_moves = Vec::new();
                let mut origins = Vec::new();
                for (id, current, activity, last_contact, owner) in
                    as_locked(locked).all(tx).await?
                {
                    let Some(target) = rules.target(&current, activity, sweep.as_of) else {
                        continue;
                    };
                    moves.push(Move {
                        customer_id: id.clone(),
                        from: current.clone(),
                        to: target.relationship_id.clone(),
                        active: true,
                        owner,
                    });
                    let planned = planned(sweep, target, (id, current, activity, last_contact));
                    origins.push(Origin {
                        cause: Cause::AutomaticInactivity,
                        actor: sweep.actor.clone(),
                        reason: planned.reason.clone(),
                    });
                    planned_moves.push(planned);
                }
                let changes: Vec<Change> = moves
                    .iter()
                    .zip(&origins)
                    .map(|(change, origin)| Change::Move { change, origin })
                    .collect();
                let applied =
                    write::apply(tx, &sweep.tenant, now, &sweep.actor, &changes, None).await?;
                for (p, entry) in planned_moves.iter_mut().zip(applied.logged) {
                    p.sequence = Some(entry.sequence);
                }
                Ok(planned_moves)
            })
        })
        .await
    }

    /// Applies the rule to every tenant as of now; returns how many
    /// customers moved. A tenant that fails is logged and skipped.
    pub async fn sweep_all_tenants(&self) -> AppResult<u64> {
        let tenants: Vec<String> = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .into_tuple()
            .all(self.db())
            .await?;
        let mut moved = 0;
        for tenant in tenants {
            let sweep = Sweep {
                tenant: tenant.clone(),
                actor: String::new(),
                as_of: self.now(),
                dry_run: false,
                list: 0,
            };
            match self.apply_inactivity_rules(&sweep).await {
                Ok(report) => {
                    if report.count > 0 {
                        tracing::info!(%tenant, moved = report.count, "inactivity sweep moved customers");
                    }
                    moved += report.count;
                }
                Err(err) => {
                    tracing::error!(%tenant, error = %err, "inactivity sweep of a tenant failed; skipped")
                }
            }
        }
        Ok(moved)
    }
}

/// The move to `target` of a customer (id, relationship, activity time,
/// last contact), as the report lists it.
fn planned(
    sweep: &Sweep,
    target: &AutomaticRule,
    (customer_id, from, activity_time, last_contact): (String, String, i64, Option<i64>),
) -> InactivityMove {
    InactivityMove {
        customer_id,
        from,
        to: target.relationship_id.clone(),
        activity_time,
        idle_days: inactivity::idle_days(activity_time, sweep.as_of),
        reason: inactivity::reason(last_contact, activity_time, sweep.as_of),
        sequence: None,
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::{
        clock::ManualClock,
        domain::{
            customer::{NewCustomer, Profile},
            relationship::SeedLocale,
            tenant::{Actor, TenantId},
        },
        store::db::connection as database,
    };

    /// A store on a fresh SQLite file (kept while the returned directory
    /// lives) with tenant `sweep-test` and `n` customers created a second
    /// apart in an order unlike their ids, the clock then 31 days on.
    async fn store_with_idle_customers(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        let db = database::open(&url, true).await.expect("open");
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let store = Store::new(db, clock.clone(), SeedLocale::En);
        let tenant = TenantId::parse(Some("sweep-test")).expect("tenant");
        store.provision(&tenant).await.expect("provision");
        let ctx = RequestContext {
            tenant,
            actor: Actor(String::new()),
        };
        for i in 0..n {
            let input = NewCustomer {
                profile: Profile {
                    name: format!("Customer {i}"),
                    ..Default::default()
                },
                relationship_id: None,
                group_ids: Vec::new(),
                reason: String::new(),
            };
            store
                .create_customer(&ctx, &input, None)
                .await
                .expect("create");
            // Activity order differs from creation (id) order.
            clock.set(start + Duration::seconds(((i * 17) % n) as i64));
        }
        clock.set(start + Duration::days(31));
        (dir, store)
    }

    /// Every due customer moves exactly once however the candidates split
    /// into reads, rounds and batches; a dry run counts the same ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rounds_and_batches_move_every_due_customer_once() {
        const CUSTOMERS: usize = 47;
        let (_dir, store) = store_with_idle_customers(CUSTOMERS).await;
        let sweep = |dry_run| Sweep {
            tenant: "sweep-test".into(),
            actor: String::new(),
            as_of: store.now(),
            dry_run,
            list: 1000,
        };

        let preview = store
            .apply_inactivity_rules(&sweep(true))
            .await
            .expect("dry run");
        assert_eq!(preview.count, CUSTOMERS as u64);
        assert!(preview.moves.iter().all(|m| m.sequence.is_none()));

        let report = store
            .apply_inactivity_rules(&sweep(false))
            .await
            .expect("sweep");
        assert_eq!(report.count, CUSTOMERS as u64);
        let customers: HashSet<&str> = report
            .moves
            .iter()
            .map(|m| m.customer_id.as_str())
            .collect();
        assert_eq!(customers.len(), CUSTOMERS, "each customer once");
        let previewed: HashSet<&str> = preview
            .moves
            .iter()
            .map(|m| m.customer_id.as_str())
            .collect();
        assert_eq!(customers, previewed);
        let mut sequences: Vec<i64> = report.moves.iter().filter_map(|m| m.sequence).collect();
        sequences.sort_unstable();
        let created = CUSTOMERS as i64;
        assert_eq!(sequences, (created + 1..=2 * created).collect::<Vec<_>>());

        let again = store
            .apply_inactivity_rules(&sweep(false))
            .await
            .expect("again");
        assert_eq!(again.count, 0);
    }

    /// A batch whose rules changed since the sweep read them moves nobody;
    /// with the rules as they are, it moves the due customers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_under_changed_rules_moves_nobody() {
        let (_dir, store) = store_with_idle_customers(5).await;
        let tenant = "sweep-test";
        let sweep = Sweep {
            tenant: tenant.into(),
            actor: String::new(),
            as_of: store.now(),
            dry_run: false,
            list: 100,
        };
        let (read, _) = rules_of(store.db(), tenant).await.expect("rules");
        let ids: Vec<String> = in_tenant::<customer::Entity>(tenant)
            .select_only()
            .column(customer::Column::Id)
            .into_tuple()
            .all(store.db())
            .await
            .expect("ids");
        relationship::Entity::update_many()
            .col_expr(relationship::Column::InactivityDays, 45.into())
            .filter(relationship::Column::Kind.eq(Kind::AutomaticInactivity.as_str()))
            .exec(store.db())
            .await
            .expect("change the threshold");

        let stale = store
            .move_batch(&sweep, &Arc::new(read), ids.clone())
            .await
            .expect("stale batch");
        assert!(stale.is_empty(), "moved under stale rules: {stale:?}");
        let (current, _) = rules_of(store.db(), tenant).await.expect("rules");
        let none_due = store
            .move_batch(&sweep, &Arc::new(current), ids.clone())
            .await
            .expect("batch");
        assert!(none_due.is_empty(), "31 days is not 45");
        let due = Sweep {
            as_of: sweep.as_of + 15 * inactivity::DAY_MICROS,
            ..sweep
        };
        let (current, _) = rules_of(store.db(), tenant).await.expect("rules");
        let moved = store
            .move_batch(&due, &Arc::new(current), ids)
            .await
            .expect("batch");
        assert_eq!(moved.len(), 5);
    }
}
