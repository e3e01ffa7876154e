//! Bulk seeding: provisions the tenant and creates its groups and sources
//! through the service's store, then inserts customers, memberships and
//! their CREATED log entries in large multi-row statements, and sets the
//! summary-bar counts and the change counter to match.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use clap::Args;
use crm_classify::{
    changes,
    clock::SystemClock,
    domain::{
        catalog::{NewEntry, NewGroup},
        customer::Profile,
        ids,
        paging::{DeletedFilter, PageRequest},
        relationship::SeedLocale,
        tenant::TenantId,
        text,
    },
    entity::{change_counter, customer, group_member, relationship_change},
    store::{Store, database, relationship_members},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, OnConflict},
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

/// Customers per multi-row INSERT (kept under SQLite's 32766 variables).
const ROWS_PER_STATEMENT: usize = 1000;
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

    let first_page = PageRequest::parse(1000, "", String::new())?;
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
                },
                None,
            )
            .await?;
        groups.push(top.id.clone());
        for s in 0..3 {
            let sub = NewGroup {
                entry: entry(format!("Nhóm {g}.{s}")),
                parent_id: Some(top.id.clone()),
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
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut group_counts = changes::GroupDeltas::new();
    let mut sequence = current_sequence(&db, tenant.as_str()).await?;
    let mut done = 0;
    while done < args.customers {
        let batch = ROWS_PER_TRANSACTION.min(args.customers - done);
        let tx = db.begin().await?;
        for chunk_start in (0..batch).step_by(ROWS_PER_STATEMENT) {
            let n = ROWS_PER_STATEMENT.min(batch - chunk_start);
            let mut rows = Vec::with_capacity(n);
            let mut members = Vec::new();
            let mut log = Vec::with_capacity(n);
            for i in 0..n {
                let k = done + chunk_start + i;
                // Customers arrive over the past year in id order, as in a
                // live database, so time-ordered indexes grow at their end.
                let created = now - year
                    + (k as i64) * (year / args.customers.max(1) as i64)
                    + rng.i64(0..1000);
                let relationship_id = relationships[rng.usize(..relationships.len())].clone();
                *counts.entry(relationship_id.clone()).or_default() += 1;
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
                let id = ids::new_id();
                let joined = pick_groups(&mut rng, &groups);
                let group_ids = joined.join(",");
                for group in joined {
                    *group_counts
                        .entry((group.clone(), relationship_id.clone()))
                        .or_default() += 1;
                    members.push(group_member::ActiveModel {
                        tenant_id: Set(tenant.as_str().to_owned()),
                        group_id: Set(group),
                        customer_id: Set(id.clone()),
                        relationship_id: Set(relationship_id.clone()),
                        customer_active: Set(true),
                        customer_create_time: Set(created),
                    });
                }
                sequence += 1;
                log.push(relationship_change::ActiveModel {
                    tenant_id: Set(tenant.as_str().to_owned()),
                    sequence: Set(sequence),
                    customer_id: Set(id.clone()),
                    old_relationship_id: Set(String::new()),
                    new_relationship_id: Set(relationship_id.clone()),
                    cause: Set("IMPORT".to_owned()),
                    actor_id: Set(String::new()),
                    reason: Set("seeded by crm-load".to_owned()),
                    change_time: Set(created),
                    owner_id: Set(profile.owner_id.clone()),
                    group_ids: Set(group_ids),
                });
                rows.push(customer::Model {
                    id,
                    tenant_id: tenant.as_str().to_owned(),
                    name: profile.name.clone(),
                    sort_key: text::sort_key(&profile.name),
                    search_text: profile.search_text(),
                    phone: profile.phone.clone(),
                    email: profile.email.clone(),
                    owner_id: profile.owner_id.clone(),
                    source_id: profile.source_id.clone(),
                    relationship_id,
                    province: String::new(),
                    company: String::new(),
                    revenue: profile.revenue,
                    attributes: "{}".to_owned(),
                    last_contact_time: contacted,
                    activity_time: contacted.unwrap_or(created),
                    profile_completion: profile.completion(),
                    revision: 1,
                    create_time: created,
                    update_time: created,
                    delete_time: None,
                });
            }
            customer::Entity::insert_many(rows.iter().cloned().map(customer::ActiveModel::from))
                .exec_without_returning(&tx)
                .await?;
            relationship_members::insert_created(&tx, &rows).await?;
            for chunk in members.chunks(ROWS_PER_STATEMENT) {
                group_member::Entity::insert_many(chunk.to_vec())
                    .exec_without_returning(&tx)
                    .await?;
            }
            relationship_change::Entity::insert_many(log)
                .exec_without_returning(&tx)
                .await?;
        }
        set_sequence(&tx, tenant.as_str(), sequence).await?;
        tx.commit().await?;
        done += batch;
        println!("{done} customers ({:.1?})", started.elapsed());
    }
    let tx = db.begin().await?;
    changes::adjust_counts(&tx, tenant.as_str(), &counts).await?;
    changes::adjust_group_counts(&tx, tenant.as_str(), &group_counts).await?;
    tx.commit().await?;
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

async fn current_sequence(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, sea_orm::DbErr> {
    Ok(change_counter::Entity::find_by_id(tenant.to_owned())
        .one(db)
        .await?
        .map_or(0, |c| c.last_sequence))
}

async fn set_sequence(
    db: &impl ConnectionTrait,
    tenant: &str,
    last: i64,
) -> Result<(), sea_orm::DbErr> {
    change_counter::Entity::insert(change_counter::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        last_sequence: Set(last),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(change_counter::Column::TenantId)
            .value(change_counter::Column::LastSequence, Expr::val(last))
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
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
