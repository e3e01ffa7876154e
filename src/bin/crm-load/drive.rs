//! Driving a running server: each scenario runs `clients` concurrent callers
//! for a fixed time and reports calls/s and latency percentiles. The first
//! scenario is grpc.health.v1 Check, the transport baseline of the same run.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Args;
use crm_classify::pb::{
    self, CountCustomersByRelationshipRequest, CreateCustomerRequest, GetCustomerRequest,
    ListCustomersRequest, ListGroupsRequest, ListRelationshipsRequest,
    customer_service_client::CustomerServiceClient, group_service_client::GroupServiceClient,
    relationship_service_client::RelationshipServiceClient,
};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Options of `crm-load run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Tenant seeded with `crm-load seed`.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Concurrent callers per scenario.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long each scenario runs.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: std::time::Duration,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Server process id, to report its peak resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Only the scenarios whose names contain this text.
    #[arg(long)]
    only: Option<String>,
    /// A JWT for a server under `--auth jwt` (e.g. from `crm-classify
    /// token`), sent with every call.
    #[arg(long, env = "CRM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Customers the reads pick from: half the newest, half the first by
    /// name. More than the server's record cache holds makes reads miss it.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
}

/// Sends `x-tenant-id` (and, for a server under `--auth jwt`, a bearer
/// token) with every call.
#[derive(Clone)]
pub(crate) struct Tenant {
    tenant: MetadataValue<tonic::metadata::Ascii>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Tenant {
    pub(crate) fn new(tenant: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self {
            tenant: MetadataValue::try_from(tenant)?,
            authorization: None,
        })
    }

    /// Also sends `authorization: Bearer {token}`.
    pub(crate) fn with_token(
        mut self,
        token: Option<&str>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        self.authorization = token
            .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
            .transpose()?;
        Ok(self)
    }
}

impl Interceptor for Tenant {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("x-tenant-id", self.tenant.clone());
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

pub(crate) type Svc = InterceptedService<Channel, Tenant>;

/// What the scenarios pick their requests from.
struct Fixture {
    customer_ids: Vec<String>,
    group_ids: Vec<String>,
    relationship_ids: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    HealthCheck,
    GetCustomer,
    ListByGroupAndRelationship,
    ListByRelationship,
    CountUnfiltered,
    CountByGroup,
    CreateWithTwoGroups,
    ListFiltered,
    CountFiltered,
    CountByWord,
}

/// An index-backed filter of three comparisons: relationship, owner and a
/// creation-time range (the seed's owners are `u0`…`u49`).
fn three_comparisons(rng: &mut fastrand::Rng) -> String {
    let relationship = ["NEW", "APPROACHED", "HOT", "POTENTIAL", "CLOSED"][rng.usize(..5)];
    format!(
        r#"relationship = "{relationship}" AND owner_id = "u{}" AND create_time >= ago("90d")"#,
        rng.u32(..50)
    )
}

impl Scenario {
    const ALL: [Self; 10] = [
        Self::HealthCheck,
        Self::GetCustomer,
        Self::ListByGroupAndRelationship,
        Self::ListByRelationship,
        Self::CountUnfiltered,
        Self::CountByGroup,
        Self::CreateWithTwoGroups,
        Self::ListFiltered,
        Self::CountFiltered,
        Self::CountByWord,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::HealthCheck => "health Check (baseline)",
            Self::GetCustomer => "GetCustomer",
            Self::ListByGroupAndRelationship => "ListCustomers group+relationship, 50 + total",
            Self::ListByRelationship => "ListCustomers relationship, 50 + total",
            Self::CountUnfiltered => "CountCustomersByRelationship unfiltered",
            Self::CountByGroup => "CountCustomersByRelationship by group",
            Self::CreateWithTwoGroups => "CreateCustomer with 2 groups",
            Self::ListFiltered => "ListCustomers filter relationship+owner+90 days, 50 + total",
            Self::CountFiltered => "CountCustomersByRelationship filter relationship+owner+90 days",
            Self::CountByWord => "CountCustomersByRelationship filter name word, every customer",
        }
    }
}

struct Clients {
    health: HealthClient<Channel>,
    customers: CustomerServiceClient<Svc>,
}

pub async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tenant = Tenant::new(&args.tenant)?.with_token(args.token.as_deref())?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Endpoint::from_shared(args.server.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let fixture = Arc::new(load_fixture(&channels[0], &tenant, args.sample).await?);
    println!(
        "tenant `{}`: sampled {} customers, {} groups, {} relationships; {} clients, {:?} per scenario",
        args.tenant,
        fixture.customer_ids.len(),
        fixture.group_ids.len(),
        fixture.relationship_ids.len(),
        args.clients,
        args.duration
    );
    let peak_rss = Arc::new(Mutex::new(0u64));
    let sampler = args
        .server_pid
        .map(|pid| tokio::spawn(sample_rss(pid, peak_rss.clone())));

    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>8}",
        "scenario", "calls/s", "p50 ms", "p99 ms", "errors"
    );
    let mut baseline = None;
    for scenario in Scenario::ALL {
        if let Some(only) = &args.only
            && !scenario.name().contains(only.as_str())
            && !matches!(scenario, Scenario::HealthCheck)
        {
            continue;
        }
        let result = run_scenario(scenario, &args, &channels, &tenant, &fixture).await;
        let rate = result.rate();
        let versus = match (scenario, baseline) {
            (Scenario::HealthCheck, _) => {
                baseline = Some(rate);
                String::new()
            }
            (_, Some(base)) => format!("  ({:.0}% of baseline)", 100.0 * rate / base),
            _ => String::new(),
        };
        println!(
            "{:<48} {:>10.0} {:>10.2} {:>10.2} {:>8}{versus}",
            scenario.name(),
            rate,
            result.percentile(0.50),
            result.percentile(0.99),
            result.errors,
        );
    }
    if let Some(sampler) = sampler {
        sampler.abort();
        println!(
            "server peak RSS: {:.1} MB",
            *peak_rss.lock().unwrap_or_else(|e| e.into_inner()) as f64 / 1024.0
        );
    }
    Ok(())
}

/// What a closed-loop run measured.
pub(crate) struct Outcome {
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    /// Every call's latency, sorted.
    pub(crate) latencies_us: Vec<u64>,
}

impl Outcome {
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    /// Calls per second.
    pub(crate) fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// The value at quantile `p` (0–1) of `sorted`, by the nearest-rank rule.
pub(crate) fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// [`percentile`] of sorted microsecond latencies, in milliseconds (NaN
/// when there are none).
pub(crate) fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    percentile(sorted_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// One concurrent caller of a closed-loop run.
pub(crate) trait Caller: Send + 'static {
    /// Makes this caller's call number `n`; whether it succeeded.
    fn call(&mut self, n: u64) -> impl Future<Output = bool> + Send;
}

/// Runs every caller in its own task, each making one call after the
/// other, until `duration` has passed.
pub(crate) async fn closed_loop<C: Caller>(callers: Vec<C>, duration: Duration) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for mut caller in callers {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let call_started = Instant::now();
                let ok = caller.call(n).await;
                latencies.push(call_started.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies_us.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Outcome {
        calls: latencies_us.len() as u64,
        errors,
        elapsed,
        latencies_us,
    }
}

/// A caller of one of `crm-load run`'s scenarios.
struct ScenarioCaller {
    scenario: Scenario,
    clients: Clients,
    fixture: Arc<Fixture>,
    rng: fastrand::Rng,
    worker: usize,
}

impl Caller for ScenarioCaller {
    async fn call(&mut self, n: u64) -> bool {
        call(
            self.scenario,
            &mut self.clients,
            &self.fixture,
            &mut self.rng,
            self.worker,
            n,
        )
        .await
    }
}

async fn run_scenario(
    scenario: Scenario,
    args: &RunArgs,
    channels: &[Channel],
    tenant: &Tenant,
    fixture: &Arc<Fixture>,
) -> Outcome {
    let callers = (0..args.clients)
        .map(|worker| {
            let channel = channels[worker % channels.len()].clone();
            ScenarioCaller {
                scenario,
                clients: Clients {
                    health: HealthClient::new(channel.clone()),
                    customers: CustomerServiceClient::with_interceptor(channel, tenant.clone()),
                },
                fixture: fixture.clone(),
                rng: fastrand::Rng::with_seed(worker as u64 + 1),
                worker,
            }
        })
        .collect();
    closed_loop(callers, args.duration).await
}

async fn call(
    scenario: Scenario,
    clients: &mut Clients,
    fixture: &Fixture,
    rng: &mut fastrand::Rng,
    worker: usize,
    n: u64,
) -> bool {
    let pick = |rng: &mut fastrand::Rng, from: &[String]| from[rng.usize(..from.len())].clone();
    match scenario {
        Scenario::HealthCheck => clients
            .health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok(),
        Scenario::GetCustomer => clients
            .customers
            .get_customer(GetCustomerRequest {
                id: pick(rng, &fixture.customer_ids),
            })
            .await
            .is_ok(),
        Scenario::ListByGroupAndRelationship | Scenario::ListByRelationship => {
            let group_id = match scenario {
                Scenario::ListByGroupAndRelationship => pick(rng, &fixture.group_ids),
                _ => String::new(),
            };
            clients
                .customers
                .list_customers(ListCustomersRequest {
                    group_id,
                    relationship_id: pick(rng, &fixture.relationship_ids),
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .is_ok()
        }
        Scenario::CountUnfiltered => clients
            .customers
            .count_customers_by_relationship(CountCustomersByRelationshipRequest::default())
            .await
            .is_ok(),
        Scenario::CountByGroup => clients
            .customers
            .count_customers_by_relationship(CountCustomersByRelationshipRequest {
                group_id: pick(rng, &fixture.group_ids),
                ..Default::default()
            })
            .await
            .is_ok(),
        Scenario::ListFiltered => clients
            .customers
            .list_customers(ListCustomersRequest {
                filter: three_comparisons(rng),
                page_size: 50,
                ..Default::default()
            })
            .await
            .is_ok(),
        Scenario::CountFiltered => clients
            .customers
            .count_customers_by_relationship(CountCustomersByRelationshipRequest {
                filter: three_comparisons(rng),
                ..Default::default()
            })
            .await
            .is_ok(),
        Scenario::CountByWord => clients
            .customers
            .count_customers_by_relationship(CountCustomersByRelationshipRequest {
                // The seed names customers "Khách hàng 0000123".
                filter: format!(r#"name:"hang {:07}""#, rng.u32(..1_000_000)),
                ..Default::default()
            })
            .await
            .is_ok(),
        Scenario::CreateWithTwoGroups => {
            let a = rng.usize(..fixture.group_ids.len());
            let b = (a + 1) % fixture.group_ids.len();
            let unique = format!("{}-{worker}-{n}-{}", std::process::id(), rng.u64(..));
            clients
                .customers
                .create_customer(CreateCustomerRequest {
                    customer: Some(pb::Customer {
                        name: format!("Tải thử {unique}"),
                        email: format!("load-{unique}@example.vn"),
                        group_ids: vec![fixture.group_ids[a].clone(), fixture.group_ids[b].clone()],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .is_ok()
        }
    }
}

/// The ids of the first `n` active customers in `order_by`.
pub(crate) async fn first_customer_ids(
    customers: &mut CustomerServiceClient<Svc>,
    order_by: &str,
    n: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let mut ids = Vec::with_capacity(n);
    let mut token = String::new();
    while ids.len() < n {
        let page = customers
            .list_customers(ListCustomersRequest {
                page_size: 1000,
                page_token: token,
                order_by: order_by.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        ids.extend(page.customers.into_iter().map(|c| c.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    ids.truncate(n);
    Ok(ids)
}

async fn load_fixture(
    channel: &Channel,
    tenant: &Tenant,
    sample: usize,
) -> Result<Fixture, Box<dyn std::error::Error + Send + Sync>> {
    let mut customers = CustomerServiceClient::with_interceptor(channel.clone(), tenant.clone());
    let mut customer_ids = Vec::new();
    // Half the newest, half the first by name (whole pages of 1000).
    let each = sample.div_ceil(2000).max(1) * 1000;
    for order_by in ["create_time desc", "name"] {
        customer_ids.extend(first_customer_ids(&mut customers, order_by, each).await?);
    }
    let groups = GroupServiceClient::with_interceptor(channel.clone(), tenant.clone())
        .list_groups(ListGroupsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .groups;
    let relationships =
        RelationshipServiceClient::with_interceptor(channel.clone(), tenant.clone())
            .list_relationships(ListRelationshipsRequest::default())
            .await?
            .into_inner()
            .relationships;
    if customer_ids.is_empty() || groups.is_empty() {
        return Err("the tenant has no customers or groups; run `crm-load seed` first".into());
    }
    Ok(Fixture {
        customer_ids,
        group_ids: groups.into_iter().map(|g| g.id).collect(),
        relationship_ids: relationships
            .into_iter()
            .filter(|r| r.kind() == pb::RelationshipKind::Manual)
            .map(|r| r.id)
            .collect(),
    })
}

/// Records the highest VmRSS of process `pid`, in KiB.
pub(crate) async fn sample_rss(pid: u32, peak: Arc<Mutex<u64>>) {
    loop {
        if let Some(kib) = rss_kib(pid).await {
            let mut peak = peak.lock().unwrap_or_else(|e| e.into_inner());
            *peak = (*peak).max(kib);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The current VmRSS of process `pid`, in KiB.
pub(crate) async fn rss_kib(pid: u32) -> Option<u64> {
    let status = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
        .await
        .ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
}
