//! Bulk seeding: provisions the tenant and creates its groups and sources
//! through the service's store, then creates customers through the
//! service's own write path, 50,000 per transaction, each logged as
//! imported at its creation time. Between those batches it replays a year
//! of history: each customer moves between relationships a few times after
//! its creation (by hand, to Don't Forget when idle, back on a contact),
//! each move logged at its own time through the same write path, so the
//! reports over the change log have real data.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashSet},
    sync::Arc,
    time::Instant,
};

use clap::Args;
use crm_classify::{
    clock::SystemClock,
    domain::{
        catalog::{NewEntry, NewGroup},
        change::{Cause, Origin},
        customer::Profile,
        ids,
        paging::{DeletedFilter, PageRequest},
        relationship::SeedLocale,
        tenant::TenantId,
    },
    entity::customer,
    store::{
        Store,
        customers::{
            records::set_profile,
            write::{self, Change, Move},
        },
        db::connection as database,
    },
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    TryIntoModel,
};

/// Options of `crm-load seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Database to load (the server's `--database-url`).
    #[arg(
        long,
        env = "CRM_DATABASE_URL",
        default_value = "sqlite://crm-classify.db"
    )]
    database_url: String,
    /// Tenant to load.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Number of customers.
    #[arg(long, default_value_t = 1_000_000)]
    customers: usize,
    /// Number of top-level groups (each gets three subgroups).
    #[arg(long, default_value_t = 5)]
    groups: usize,
    /// Random seed, for repeatable data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of customers left without contact for more than 30 days (due
    /// for Don't Forget at the next sweep); the others were contacted in
    /// the last 29 days. 0.1 makes the sweep benchmark's 100,000 of
    /// 1,000,000.
    #[arg(long, default_value_t = 0.1)]
    idle_share: f64,
    /// Relationship moves per customer on average, spread over the time
    /// between its creation and now: 2.0 makes 3,000,000 logged changes for
    /// 1,000,000 customers (the reports benchmark's history).
    #[arg(long, default_value_t = 2.0)]
    moves_per_customer: f64,
}

/// Moves applied per transaction (each transaction logged at the time of
/// its last move).
const MOVES_PER_TRANSACTION: usize = 5_000;

/// Share of moves out of a manual relationship that are the inactivity
/// rule's (to the automatic relationship).
const AUTOMATIC_SHARE: f64 = 0.1;

/// A seeded customer as the history replay follows it.
struct Seeded {
    id: String,
    owner: String,
    /// Index into the relationships (manual ones, then the automatic one).
    relationship: usize,
}

/// Customers per transaction, at most.
const ROWS_PER_TRANSACTION: usize = 50_000;

/// A day in microseconds.
const DAY: i64 = 86_400 * 1_000_000;

pub async fn run(args: SeedArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let db = database::connect_for_bulk_load(&args.database_url).await?;
    database::migrate(&db).await?;
    let store = Store::new(db.clone(), Arc::new(SystemClock), SeedLocale::En);
    let tenant = TenantId::parse(Some(&args.tenant))?;
    store.provision(&tenant).await?;
    let existing = customer::Entity::find()
        .filter(customer::Column::TenantId.eq(tenant.as_str()))
        .count(&db)
        .await?;
    if existing > 0 {
        return Err(format!(
            "tenant `{}` already has {existing} customers; seed a fresh tenant",
            args.tenant
        )
        .into());
    }

    let first_page = PageRequest::parse(1000, "", String::new(), &store.page_key().await?)?;
    let listed = store
        .list_relationships(&tenant, DeletedFilter::Active, &first_page)
        .await?
        .items;
    // The manual relationships, then the automatic one (Don't Forget).
    let mut relationships: Vec<String> = listed
        .iter()
        .filter(|r| r.kind == "MANUAL")
        .map(|r| r.id.clone())
        .collect();
    let manual = relationships.len();
    relationships.extend(
        listed
            .iter()
            .filter(|r| r.kind != "MANUAL")
            .map(|r| r.id.clone())
            .take(1),
    );
    let mut groups = Vec::new();
    for g in 0..args.groups {
        let entry = |name: String| NewEntry {
            code: None,
            name,
            description: String::new(),
        };
        let run = format!("{}", started.elapsed().as_nanos());
        let top = store
            .create_group(
                &tenant,
                &NewGroup {
                    entry: entry(format!("Nhóm {g} · {run}")),
                    parent_id: None,
                    rule: String::new(),
                },
                None,
            )
            .await?;
        groups.push(top.id.clone());
        for s in 0..3 {
            let sub = NewGroup {
                entry: entry(format!("Nhóm {g}.{s}")),
                parent_id: Some(top.id.clone()),
                rule: String::new(),
            };
            groups.push(store.create_group(&tenant, &sub, None).await?.id);
        }
    }
    let mut sources = Vec::new();
    for name in ["Website", "Facebook", "Zalo", "Giới thiệu", "Hội chợ"] {
        let entry = NewEntry {
            code: None,
            name: format!("{name} {}", started.elapsed().as_nanos()),
            description: String::new(),
        };
        sources.push(store.create_source(&tenant, &entry, None).await?.id);
    }
    println!(
        "catalog ready: {} groups, {} sources, {} manual relationships ({:.1?})",
        groups.len(),
        sources.len(),
        manual,
        started.elapsed()
    );

    let mut rng = fastrand::Rng::with_seed(args.seed);
    let now = chrono::Utc::now().timestamp_micros();
    let year = 365 * 86_400 * 1_000_000_i64;
    // Only customers created more than 31 days ago can be idle that long:
    // they are 334 of the year's 365 days.
    let idle_chance = (args.idle_share * 365.0 / 334.0).min(1.0);
    let origin = Origin {
        cause: Cause::Import,
        actor: String::new(),
        reason: "seeded by crm-load".to_owned(),
    };
    let mut history = History {
        customers: Vec::with_capacity(args.customers),
        due: BinaryHeap::new(),
        relationships: &relationships,
        manual,
        moved: 0,
    };
    let mut done = 0;
    while done < args.customers {
        // One day's customers at most: the membership log times a batch's
        // joins at its last creation.
        let day_of = |k: usize| (k as i64 * (year / args.customers.max(1) as i64)) / DAY;
        let batch = (done..args.customers)
            .take(ROWS_PER_TRANSACTION)
            .take_while(|&k| day_of(k) == day_of(done))
            .count();
        let mut seeded: Vec<(customer::Model, Vec<String>)> = Vec::with_capacity(batch);
        for i in 0..batch {
            let k = done + i;
            // Customers arrive over the past year in id order, as in a
            // live database, so time-ordered indexes grow at their end.
            let created =
                now - year + (k as i64) * (year / args.customers.max(1) as i64) + rng.i64(0..1000);
            let relationship = rng.usize(..manual);
            let relationship_id = relationships[relationship].clone();
            let profile = Profile {
                name: format!("Khách hàng {k:07}"),
                phone: format!("+849{k:08}"),
                email: format!("kh{k:07}@example.vn"),
                owner_id: format!("u{}", rng.u32(0..50)),
                source_id: rng
                    .bool()
                    .then(|| sources[rng.usize(..sources.len())].clone()),
                province: String::new(),
                company: String::new(),
                revenue: rng.i64(0..50_000_000),
                attributes: BTreeMap::new(),
            };
            let contacted = last_contact(&mut rng, created, now, idle_chance);
            let joined = pick_groups(&mut rng, &groups);
            let mut active = customer::ActiveModel {
                id: Set(ids::new_id()),
                tenant_id: Set(tenant.as_str().to_owned()),
                relationship_id: Set(relationship_id),
                last_contact_time: Set(contacted),
                activity_time: Set(contacted.unwrap_or(created)),
                revision: Set(1),
                create_time: Set(created),
                update_time: Set(created),
                delete_time: Set(None),
                ..Default::default()
            };
            set_profile(&mut active, &profile);
            let row = active.try_into_model()?;
            history.schedule(&mut rng, created, now, args.moves_per_customer);
            history.customers.push(Seeded {
                id: row.id.clone(),
                owner: row.owner_id.clone(),
                relationship,
            });
            seeded.push((row, joined));
        }
        let batch_end = seeded.last().map_or(now, |(row, _)| row.create_time);
        // The service's own write path, which writes the copies, the
        // counters and the logs as for any create: each relationship
        // change at its customer's creation time, the batch's joins at
        // its last creation time (the membership log's time is the
        // write's).
        let input = (tenant.as_str().to_owned(), seeded, origin.clone());
        store
            .write(input, move |tx, (tenant, seeded, origin)| {
                Box::pin(async move {
                    let changes: Vec<Change> = seeded
                        .iter()
                        .map(|(row, groups)| Change::Create {
                            row,
                            groups,
                            origin,
                        })
                        .collect();
                    write::apply(tx, tenant, batch_end, "", &changes, None).await
                })
            })
            .await?;
        done += batch;
        history
            .replay(&store, tenant.as_str(), &mut rng, batch_end)
            .await?;
        // Progress every 50,000 customers.
        if done / 50_000 == (done - batch) / 50_000 && done != args.customers {
            continue;
        }
        println!(
            "{done} customers, {} moves ({:.1?})",
            history.moved,
            started.elapsed()
        );
    }
    history
        .replay(&store, tenant.as_str(), &mut rng, now)
        .await?;
    println!("{} moves in all ({:.1?})", history.moved, started.elapsed());
    // Fresh statistics, so the planners pick the indexes a live database
    // would; on PostgreSQL also the visibility map that index-only scans need.
    let maintenance = if args.database_url.starts_with("postgres") {
        "VACUUM ANALYZE"
    } else {
        "ANALYZE"
    };
    db.execute_unprepared(maintenance).await?;
    println!(
        "seeded {} customers into tenant `{}` in {:.1?}",
        args.customers,
        args.tenant,
        started.elapsed()
    );
    Ok(())
}

/// One or two groups for most customers, none for a few.
fn pick_groups(rng: &mut fastrand::Rng, groups: &[String]) -> Vec<String> {
    match rng.u8(0..10) {
        0 => vec![],
        1..=6 => vec![groups[rng.usize(..groups.len())].clone()],
        _ => {
            let a = rng.usize(..groups.len());
            let b = (a + 1 + rng.usize(..groups.len() - 1)) % groups.len();
            vec![groups[a].clone(), groups[b].clone()]
        }
    }
}

/// A seeded customer's last contact: for one created more than 31 days ago,
/// with probability `idle_chance` none since then (never contacted, or
/// contacted once long ago); otherwise one in the last 29 days.
fn last_contact(rng: &mut fastrand::Rng, created: i64, now: i64, idle_chance: f64) -> Option<i64> {
    let idle_before = now - 31 * DAY;
    if created < idle_before && rng.f64() < idle_chance {
        return rng
            .bool()
            .then(|| created + rng.i64(0..Ord::max(idle_before - created, 1)));
    }
    let recent_from = Ord::max(created, now - 29 * DAY);
    Some(recent_from + rng.i64(0..Ord::max(now - recent_from, 1)))
}

/// The relationship moves still to replay, earliest first.
struct History<'a> {
    customers: Vec<Seeded>,
    /// (time, customer index) of each scheduled move.
    due: BinaryHeap<Reverse<(i64, usize)>>,
    /// Manual relationships, then the automatic one.
    relationships: &'a [String],
    manual: usize,
    moved: u64,
}

impl History<'_> {
    /// Schedules the moves of the customer about to be pushed, created at
    /// `created`: `per_customer` on average, at random times until `now`.
    fn schedule(&mut self, rng: &mut fastrand::Rng, created: i64, now: i64, per_customer: f64) {
        let index = self.customers.len();
        let whole = per_customer.floor();
        let count = whole as usize + usize::from(rng.f64() < per_customer - whole);
        for _ in 0..count {
            let at = created + 1 + rng.i64(0..Ord::max(now - created - 1, 1));
            self.due.push(Reverse((at, index)));
        }
    }

    /// Applies, in time order, every scheduled move due at or before
    /// `until`: transactions of up to [`MOVES_PER_TRANSACTION`] moves of
    /// distinct customers, each logged at the time of its last move.
    async fn replay(
        &mut self,
        store: &Store,
        tenant: &str,
        rng: &mut fastrand::Rng,
        until: i64,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        loop {
            let mut chunk: Vec<(Move, Origin)> = Vec::new();
            let mut in_chunk = HashSet::new();
            let mut at = 0;
            while chunk.len() < MOVES_PER_TRANSACTION {
                let Some(&Reverse((time, index))) = self.due.peek() else {
                    break;
                };
                if time > until || !in_chunk.insert(index) {
                    break;
                }
                self.due.pop();
                at = time;
                chunk.push(self.next_move(rng, index));
            }
            if chunk.is_empty() {
                return Ok(());
            }
            self.moved += chunk.len() as u64;
            let input = (tenant.to_owned(), chunk, at);
            store
                .write(input, move |tx, (tenant, chunk, at)| {
                    Box::pin(async move {
                        let changes: Vec<Change> = chunk
                            .iter()
                            .map(|(change, origin)| Change::Move { change, origin })
                            .collect();
                        write::apply(tx, tenant, *at, "", &changes, None).await
                    })
                })
                .await?;
        }
    }

    /// Customer `index`'s next move: back to a manual relationship on a
    /// contact from the automatic one; otherwise to Don't Forget now and
    /// then, else by hand to another manual relationship.
    fn next_move(&mut self, rng: &mut fastrand::Rng, index: usize) -> (Move, Origin) {
        let customer = &mut self.customers[index];
        let from = customer.relationship;
        let automatic = self.relationships.len() > self.manual;
        let (to, cause) = if from >= self.manual {
            (rng.usize(..self.manual), Cause::ContactResumed)
        } else if automatic && rng.f64() < AUTOMATIC_SHARE {
            (self.manual, Cause::AutomaticInactivity)
        } else {
            let other = rng.usize(..self.manual - 1);
            (if other >= from { other + 1 } else { other }, Cause::Manual)
        };
        customer.relationship = to;
        let change = Move {
            customer_id: customer.id.clone(),
            from: self.relationships[from].clone(),
            to: self.relationships[to].clone(),
            active: true,
            owner: customer.owner.clone(),
        };
        let origin = Origin {
            cause,
            actor: if cause == Cause::Manual {
                customer.owner.clone()
            } else {
                String::new()
            },
            reason: "seeded history".to_owned(),
        };
        (change, origin)
    }
}
