//! `crm-load flood`: the noisy-neighbour target of issue 18. One tenant
//! (seeded with `crm-load seed`) reads customers with GetCustomer at a
//! steady pace under its rate limit, first alone, then while another
//! tenant floods the server with GetCustomer at ten times the rate limit
//! (most of those calls refused RESOURCE_EXHAUSTED by the per-tenant
//! limit). Prints the measured tenant's p99 in both phases and their
//! ratio; the target is at most 1.5. The server must run with
//! `--tenant-rate` equal to `--rate`.
//!
//! Both loads are open loops: calls start on a schedule whatever the
//! answers take (a flood does not wait for its answers), each tenant on
//! HTTP/2 connections of its own.
//!
//! A third phase floods the same number of calls at the gRPC health check
//! (exempt from every limit, no database): the floor the machine itself
//! sets when the load generator shares its cores with the server, so the
//! limiter's own share of the damage can be told apart.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Args;
use crm_classify::pb::{GetCustomerRequest, customer_service_client::CustomerServiceClient};
use tokio::sync::{Semaphore, oneshot};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{
    drive::{Outcome, Svc, Tenant, first_customer_ids, percentile_ms},
    watch::connect,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Calls one open loop keeps in flight at most; a call due beyond it is
/// skipped and counted (the server is not keeping up).
const MAX_IN_FLIGHT: usize = 1000;
/// How often an open loop starts the calls that have come due: tokio's
/// timer resolution; rates above 1000/s start several calls a tick.
const TICK: Duration = Duration::from_millis(1);
/// How long the flood runs before the measurement starts, so that its
/// burst is spent and it runs at its steady state.
const FLOOD_WARM_UP: Duration = Duration::from_secs(1);

/// Options of `crm-load flood`.
#[derive(Debug, Args)]
pub struct FloodArgs {
    /// Server address; the server runs with `--tenant-rate` equal to
    /// `--rate`.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The measured tenant, seeded with `crm-load seed`.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// The flooding tenant. Its GetCustomer reads its own customers when
    /// it has some (seed it for a flood of real reads), else the measured
    /// tenant's ids, which it answers NOT_FOUND.
    #[arg(long, default_value = "flood")]
    flood_tenant: String,
    /// The server's per-tenant rate limit (`--tenant-rate`), calls/s.
    #[arg(long)]
    rate: f64,
    /// The flood's rate as a multiple of `--rate`.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// The measured tenant's rate as a share of `--rate` (under 1, so
    /// that it stays within its own limit).
    #[arg(long, default_value_t = 0.5)]
    share: f64,
    /// How long each phase measures.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// HTTP/2 connections of each tenant.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Customers the reads pick from (the newest).
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
}

pub async fn run(args: FloodArgs) -> Result<(), Error> {
    if !(args.rate > 0.0 && args.factor > 0.0 && args.share > 0.0) {
        return Err("--rate, --factor and --share must be more than 0".into());
    }
    let measured = Readers::connect(&args, &args.tenant, None).await?;
    let flooder = Readers::connect(&args, &args.flood_tenant, Some(&measured.ids)).await?;
    let (measured_rate, flood_rate) = (args.rate * args.share, args.rate * args.factor);
    println!(
        "measured: tenant `{}`, GetCustomer at {measured_rate:.0}/s ({} × --rate {}) for {:?}, over {} customers",
        args.tenant,
        args.share,
        args.rate,
        args.duration,
        measured.ids.len()
    );
    println!(
        "flood: tenant `{}`, GetCustomer at {flood_rate:.0}/s ({} × --rate), over {} customers{}",
        args.flood_tenant,
        args.factor,
        flooder.ids.len(),
        if flooder.own_ids {
            ""
        } else {
            " of the measured tenant (NOT_FOUND)"
        }
    );

    let alone = open_loop(
        measured_rate,
        tokio::time::sleep(args.duration),
        measured.reads(),
    )
    .await?;

    let (flooded, flood) = while_flooding(
        flood_rate,
        flooder.reads(),
        measured_rate,
        args.duration,
        measured.reads(),
    )
    .await?;
    let (floor, health_flood) = while_flooding(
        flood_rate,
        flooder.health_checks(),
        measured_rate,
        args.duration,
        measured.reads(),
    )
    .await?;

    println!(
        "{:<36} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "measured tenant's GetCustomer", "calls", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for (name, run) in [
        ("alone".to_owned(), &alone),
        (format!("while `{}` floods", args.flood_tenant), &flooded),
        ("while health checks flood".to_owned(), &floor),
    ] {
        let outcome = &run.outcome;
        println!(
            "{:<36} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            outcome.calls,
            outcome.percentile(0.50),
            outcome.percentile(0.99),
            outcome.percentile(1.0),
            outcome.errors
        );
    }
    let ratio = flooded.outcome.percentile(0.99) / alone.outcome.percentile(0.99);
    println!(
        "p99 while flooded / alone: {ratio:.2} (target at most 1.5: {})",
        if ratio <= 1.5 { "met" } else { "missed" }
    );
    println!(
        "the machine's floor (the same calls/s at the health check): p99 {:.2} / alone: {:.2}; flooded / floor: {:.2}",
        floor.outcome.percentile(0.99),
        floor.outcome.percentile(0.99) / alone.outcome.percentile(0.99),
        flooded.outcome.percentile(0.99) / floor.outcome.percentile(0.99)
    );
    println!(
        "the health-check flood: {} calls ({:.0}/s), answers {}; {} skipped",
        health_flood.outcome.calls,
        health_flood.outcome.rate(),
        health_flood.describe_codes(),
        health_flood.skipped
    );
    println!(
        "the flood: {} calls in {:.1} s ({:.0}/s), answers {}; {} skipped (over {MAX_IN_FLIGHT} in flight); its admitted calls' p99 {:.2} ms",
        flood.outcome.calls,
        flood.outcome.elapsed.as_secs_f64(),
        flood.outcome.rate(),
        flood.describe_codes(),
        flood.skipped,
        percentile_ms(&flood.admitted_us, 0.99)
    );
    for (name, run) in [("alone", &alone), ("flooded", &flooded), ("floor", &floor)] {
        if run.outcome.errors > 0 {
            println!(
                "warning: the measured tenant had errors ({name}): {}",
                run.describe_codes()
            );
        }
    }
    if !flood.codes.contains_key("ResourceExhausted") {
        println!(
            "warning: the server refused none of the flood; is it running with --tenant-rate {}?",
            args.rate
        );
    }
    Ok(())
}

/// One tenant's GetCustomer callers.
struct Readers {
    clients: Vec<CustomerServiceClient<Svc>>,
    /// The same connections, for health checks.
    health: Vec<HealthClient<Channel>>,
    ids: Arc<Vec<String>>,
    /// Whether `ids` are the tenant's own customers.
    own_ids: bool,
}

impl Readers {
    /// Connects for `tenant` and samples its newest customers; with none,
    /// reads `fallback` (another tenant's ids) or fails.
    async fn connect(
        args: &FloodArgs,
        tenant: &str,
        fallback: Option<&Arc<Vec<String>>>,
    ) -> Result<Self, Error> {
        let header = Tenant::new(tenant)?;
        let (mut clients, mut health) = (Vec::new(), Vec::new());
        for _ in 0..args.connections.max(1) {
            let channel = connect(&args.server).await?;
            health.push(HealthClient::new(channel.clone()));
            clients.push(CustomerServiceClient::with_interceptor(
                channel,
                header.clone(),
            ));
        }
        let ids = first_customer_ids(&mut clients[0], "create_time desc", args.sample).await?;
        let (ids, own_ids) = match (ids.is_empty(), fallback) {
            (false, _) => (Arc::new(ids), true),
            (true, Some(fallback)) => (fallback.clone(), false),
            (true, None) => {
                return Err(format!(
                    "tenant `{tenant}` has no customers; run `crm-load seed --tenant {tenant}` first"
                )
                .into());
            }
        };
        Ok(Self {
            clients,
            health,
            ids,
            own_ids,
        })
    }

    /// Call `n`: a gRPC health check, on the connections in turn.
    fn health_checks(&self) -> impl FnMut(u64) -> ReadCall + use<> {
        let clients = self.health.clone();
        move |n| {
            let mut client = clients[n as usize % clients.len()].clone();
            Box::pin(async move {
                match client.check(HealthCheckRequest::default()).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                }
            })
        }
    }

    /// Call `n`: GetCustomer of a random sampled customer, on the
    /// connections in turn; its status code.
    fn reads(&self) -> impl FnMut(u64) -> ReadCall + use<> {
        let (clients, ids) = (self.clients.clone(), self.ids.clone());
        let mut rng = fastrand::Rng::with_seed(1);
        move |n| {
            let mut client = clients[n as usize % clients.len()].clone();
            let id = ids[rng.usize(..ids.len())].clone();
            Box::pin(async move {
                match client.get_customer(GetCustomerRequest { id }).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                }
            })
        }
    }
}

type ReadCall = std::pin::Pin<Box<dyn Future<Output = Code> + Send>>;

/// What an open loop measured.
struct Paced {
    /// Every call started; latencies of all of them.
    outcome: Outcome,
    /// Latencies of the calls not refused RESOURCE_EXHAUSTED, sorted.
    admitted_us: Vec<u64>,
    /// Answers by status code.
    codes: BTreeMap<String, u64>,
    /// Calls due while [`MAX_IN_FLIGHT`] were in flight, not started.
    skipped: u64,
}

impl Paced {
    fn describe_codes(&self) -> String {
        self.codes
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Measures `reads` at `rate` for `duration` while `flood` runs at
/// `flood_rate` (from a warm-up before until the measurement ends); what
/// each loop measured: the reads, then the flood.
async fn while_flooding(
    flood_rate: f64,
    flood: impl FnMut(u64) -> ReadCall + Send + 'static,
    rate: f64,
    duration: Duration,
    reads: impl FnMut(u64) -> ReadCall,
) -> Result<(Paced, Paced), Error> {
    let (stop, stopped) = oneshot::channel::<()>();
    let flooding = tokio::spawn(open_loop(
        flood_rate,
        async {
            let _ = stopped.await;
        },
        flood,
    ));
    tokio::time::sleep(FLOOD_WARM_UP).await;
    let measured = open_loop(rate, tokio::time::sleep(duration), reads).await?;
    let _ = stop.send(());
    Ok((measured, flooding.await??))
}

/// Starts `call(0)`, `call(1)`, … at `rate` per second, each in a task of
/// its own, until `stop` completes; waits for the calls in flight.
async fn open_loop<F>(
    rate: f64,
    stop: impl Future<Output = ()>,
    mut call: F,
) -> Result<Paced, Error>
where
    F: FnMut(u64) -> ReadCall,
{
    let answers = Arc::new(Mutex::new(Vec::new()));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let (mut due_so_far, mut skipped) = (0u64, 0u64);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while due_so_far < due {
            let n = due_so_far;
            due_so_far += 1;
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                skipped += 1;
                continue;
            };
            let (answers, call) = (answers.clone(), call(n));
            tokio::spawn(async move {
                let call_started = Instant::now();
                let code = call.await;
                let latency = call_started.elapsed().as_micros() as u64;
                answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((latency, code));
                drop(permit);
            });
        }
    }
    let elapsed = started.elapsed();
    // Every call has answered once every permit is back.
    let _all = permits.acquire_many(MAX_IN_FLIGHT as u32).await?;
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let mut codes = BTreeMap::new();
    let (mut latencies_us, mut admitted_us, mut errors) = (Vec::new(), Vec::new(), 0);
    for (latency, code) in answers {
        *codes.entry(format!("{code:?}")).or_default() += 1;
        latencies_us.push(latency);
        if code != Code::ResourceExhausted {
            admitted_us.push(latency);
        }
        if code != Code::Ok {
            errors += 1;
        }
    }
    latencies_us.sort_unstable();
    admitted_us.sort_unstable();
    Ok(Paced {
        outcome: Outcome {
            calls: latencies_us.len() as u64,
            errors,
            elapsed,
            latencies_us,
        },
        admitted_us,
        codes,
        skipped,
    })
}
