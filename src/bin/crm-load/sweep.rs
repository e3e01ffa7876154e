//! `crm-load sweep`: the inactivity sweep at scale. Writers change
//! customers' relationships at a steady pace; first alone (the baseline),
//! then while ApplyInactivityRules moves every customer due (on a database
//! seeded by `crm-load seed`, about a tenth of them). Reports how long the
//! sweep took, how many it moved, and the writers' latency in both phases.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use crm_classify::pb::{
    ApplyInactivityRulesRequest, ChangeRelationshipRequest, ListCustomersRequest,
    ListRelationshipsRequest, customer_service_client::CustomerServiceClient,
    relationship_service_client::RelationshipServiceClient,
};
use tonic::{metadata::MetadataValue, transport::Endpoint};

use super::drive::{Svc, Tenant, percentile_ms};

/// Options of `crm-load sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Server address (start it with a long `--sweep-interval`, so only
    /// this run sweeps).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Tenant seeded with `crm-load seed`.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Pause between one writer's calls.
    #[arg(long, default_value = "10ms", value_parser = super::parse_duration)]
    pace: Duration,
    /// How long the writers run alone first.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    baseline: Duration,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(args: SweepArgs) -> Result<(), Error> {
    let tenant = Tenant(MetadataValue::try_from(args.tenant.as_str())?);
    let channel = Endpoint::from_shared(args.server.clone())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut relationships =
        RelationshipServiceClient::with_interceptor(channel.clone(), tenant.clone());
    let mut customers = CustomerServiceClient::with_interceptor(channel.clone(), tenant.clone());
    let listed = relationships
        .list_relationships(ListRelationshipsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .relationships;
    let targets: Vec<String> = ["HOT", "POTENTIAL"]
        .iter()
        .filter_map(|code| listed.iter().find(|r| r.code == *code))
        .map(|r| r.id.clone())
        .collect();
    if targets.len() != 2 {
        return Err("the tenant has no HOT and POTENTIAL relationships".into());
    }
    // The newest customers: contacted lately, so the sweep leaves them be.
    let customer_ids: Vec<String> = customers
        .list_customers(ListCustomersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.id)
        .collect();
    if customer_ids.is_empty() {
        return Err("the tenant has no customers; run `crm-load seed` first".into());
    }
    let work = Work {
        customers: CustomerServiceClient::with_interceptor(channel.clone(), tenant.clone()),
        customer_ids: Arc::new(customer_ids),
        targets: Arc::new(targets),
        pace: args.pace,
    };

    let alone = work
        .during(args.writers, tokio::time::sleep(args.baseline))
        .await;
    let due = relationships
        .apply_inactivity_rules(ApplyInactivityRulesRequest {
            dry_run: true,
            as_of: None,
            page_size: 1,
        })
        .await?
        .into_inner()
        .move_count;
    println!("customers due for an automatic relationship (dry run): {due}");

    let mut sweeper = relationships.clone();
    let sweep = async move {
        let started = Instant::now();
        let response = sweeper
            .apply_inactivity_rules(ApplyInactivityRulesRequest {
                dry_run: false,
                as_of: None,
                page_size: 1,
            })
            .await;
        (response, started.elapsed())
    };
    let (during, (response, took)) = work.during_with(args.writers, sweep).await;
    let moved = response?.into_inner().move_count;
    println!(
        "sweep moved {moved} customers in {:.2} s ({:.0}/s)",
        took.as_secs_f64(),
        moved as f64 / took.as_secs_f64()
    );
    println!(
        "{:<28} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "ChangeRelationship writes", "calls", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for (name, outcome) in [("alone (baseline)", alone), ("during the sweep", during)] {
        println!(
            "{:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            outcome.latencies_us.len(),
            outcome.percentile(0.50),
            outcome.percentile(0.99),
            outcome.percentile(1.0),
            outcome.errors
        );
    }
    Ok(())
}

/// The writers' calls.
#[derive(Clone)]
struct Work {
    customers: CustomerServiceClient<Svc>,
    customer_ids: Arc<Vec<String>>,
    targets: Arc<Vec<String>>,
    pace: Duration,
}

#[derive(Default)]
struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
}

impl Outcome {
    fn percentile(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }
}

impl Work {
    async fn during(&self, writers: usize, until: impl Future<Output = ()>) -> Outcome {
        self.during_with(writers, until).await.0
    }

    /// Runs `writers` writers until `until` completes.
    async fn during_with<T>(&self, writers: usize, until: impl Future<Output = T>) -> (Outcome, T) {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..writers)
            .map(|w| tokio::spawn(self.clone().write(w, stop.clone())))
            .collect();
        let value = until.await;
        stop.store(true, Ordering::Relaxed);
        let mut outcome = Outcome::default();
        for task in tasks {
            if let Ok(one) = task.await {
                outcome.latencies_us.extend(one.latencies_us);
                outcome.errors += one.errors;
            }
        }
        outcome.latencies_us.sort_unstable();
        (outcome, value)
    }

    async fn write(mut self, writer: usize, stop: Arc<AtomicBool>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut rng = fastrand::Rng::with_seed(writer as u64);
        let mut step = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = &self.customer_ids[rng.usize(..self.customer_ids.len())];
            step += 1;
            let started = Instant::now();
            let result = self
                .customers
                .change_relationship(ChangeRelationshipRequest {
                    customer_id: id.clone(),
                    relationship_id: self.targets[step % 2].clone(),
                    reason: "crm-load sweep".into(),
                    etag: String::new(),
                })
                .await;
            match result {
                Ok(_) => outcome
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64),
                Err(_) => outcome.errors += 1,
            }
            tokio::time::sleep(self.pace).await;
        }
        outcome
    }
}
