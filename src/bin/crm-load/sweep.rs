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
use tonic::transport::{Channel, Endpoint};

use super::drive::{Outcome, Svc, Tenant};

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
    let tenant = Tenant::new(&args.tenant)?;
    let channel = Endpoint::from_shared(args.server.clone())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut relationships =
        RelationshipServiceClient::with_interceptor(channel.clone(), tenant.clone());
    let work = Work::load(channel, tenant, args.pace, "crm-load sweep").await?;

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

/// Writers that change customers' relationships, each at its own pace:
/// every call moves a random one of the tenant's newest 1000 customers
/// (contacted lately, so the inactivity sweep leaves them be) to HOT or
/// POTENTIAL, alternately.
#[derive(Clone)]
pub(crate) struct Work {
    customers: CustomerServiceClient<Svc>,
    customer_ids: Arc<Vec<String>>,
    targets: Arc<Vec<String>>,
    pace: Duration,
    reason: &'static str,
}

impl Work {
    /// Finds the tenant's HOT and POTENTIAL relationships and its newest
    /// customers; `pace` is the pause between one writer's calls.
    pub(crate) async fn load(
        channel: Channel,
        tenant: Tenant,
        pace: Duration,
        reason: &'static str,
    ) -> Result<Self, Error> {
        let listed = RelationshipServiceClient::with_interceptor(channel.clone(), tenant.clone())
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
        let mut customers = CustomerServiceClient::with_interceptor(channel, tenant);
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
        Ok(Self {
            customers,
            customer_ids: Arc::new(customer_ids),
            targets: Arc::new(targets),
            pace,
            reason,
        })
    }

    pub(crate) async fn during(&self, writers: usize, until: impl Future<Output = ()>) -> Outcome {
        self.during_with(writers, until).await.0
    }

    /// Runs `writers` writers until `until` completes.
    pub(crate) async fn during_with<T>(
        &self,
        writers: usize,
        until: impl Future<Output = T>,
    ) -> (Outcome, T) {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..writers)
            .map(|w| tokio::spawn(self.clone().write(w, stop.clone())))
            .collect();
        let value = until.await;
        stop.store(true, Ordering::Relaxed);
        let mut outcome = Outcome {
            calls: 0,
            errors: 0,
            elapsed: started.elapsed(),
            latencies_us: Vec::new(),
        };
        for task in tasks {
            if let Ok((latencies_us, errors)) = task.await {
                outcome.latencies_us.extend(latencies_us);
                outcome.errors += errors;
            }
        }
        outcome.latencies_us.sort_unstable();
        outcome.calls = outcome.latencies_us.len() as u64 + outcome.errors;
        (outcome, value)
    }

    /// One writer's latencies (of the calls that succeeded) and errors.
    async fn write(mut self, writer: usize, stop: Arc<AtomicBool>) -> (Vec<u64>, u64) {
        let (mut latencies_us, mut errors) = (Vec::new(), 0);
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
                    reason: self.reason.into(),
                    etag: String::new(),
                })
                .await;
            match result {
                Ok(_) => latencies_us.push(started.elapsed().as_micros() as u64),
                Err(_) => errors += 1,
            }
            tokio::time::sleep(self.pace).await;
        }
        (latencies_us, errors)
    }
}
