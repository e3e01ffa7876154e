//! Bulk seeding: provisions the tenant and creates its groups and sources
//! through the service's store, then creates customers through the
//! service's own write path, 50,000 per transaction, each logged as
//! imported at its creation time.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

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
            write::{self, Change},
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
}

/// Customers per transaction.
const ROWS_PER_TRANSACTION: usize = 50_000;

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
    let relationships: Vec<String> = store
        .list_relationships(&tenant, DeletedFilter::Active, &first_page)
        .await?
        .items
        .into_iter()
        .filter(|r| r.kind == "MANUAL")
        .map(|r| r.id)
        .collect();
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
        relationships.len(),
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
    let mut done = 0;
    while done < args.customers {
        let batch = ROWS_PER_TRANSACTION.min(args.customers - done);
        let mut seeded: Vec<(customer::Model, Vec<String>)> = Vec::with_capacity(batch);
        for i in 0..batch {
            let k = done + i;
            // Customers arrive over the past year in id order, as in a
            // live database, so time-ordered indexes grow at their end.
            let created =
                now - year + (k as i64) * (year / args.customers.max(1) as i64) + rng.i64(0..1000);
            let relationship_id = relationships[rng.usize(..relationships.len())].clone();
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
            seeded.push((active.try_into_model()?, joined));
        }
        // The service's own write path, which writes the copies, the
        // counters and the log as for any create (each logged at its
        // creation time).
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
                    write::apply(tx, tenant, now, "", &changes, None).await
                })
            })
            .await?;
        done += batch;
        println!("{done} customers ({:.1?})", started.elapsed());
    }
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
    let day = 86_400 * 1_000_000_i64;
    let idle_before = now - 31 * day;
    if created < idle_before && rng.f64() < idle_chance {
        return rng
            .bool()
            .then(|| created + rng.i64(0..Ord::max(idle_before - created, 1)));
    }
    let recent_from = Ord::max(created, now - 29 * day);
    Some(recent_from + rng.i64(0..Ord::max(now - recent_from, 1)))
}
