//! Benchmarking the relationship change stream (WatchRelationshipChanges)
//! of a running server. Three scenarios:
//!
//! - `latency`: many watchers, single-customer changes at a steady rate;
//!   send-to-delivery latency over every (change, watcher) delivery.
//! - `throughput`: fewer watchers, batches of changes at a high rate; every
//!   watcher must get every change once, in contiguous sequence order.
//! - `stalled`: one watcher stops reading while many changes are made; the
//!   server's memory must stay flat, and the watcher, once it reads again,
//!   must still get every change in order.
//!
//! Changes are made with BatchChangeRelationship over a sample of the
//! tenant's customers, which first all move to one manual relationship
//! (POTENTIAL); each pass over the sample then alternates between two (HOT,
//! POTENTIAL), so every customer of every batch really moves and each call
//! makes exactly as many changes as it names customers.
//!
//! The watchers, the paced writes and the delivery count are generic over
//! the stream ([`StreamMessage`]): `crm-load rules --scenario deliver`
//! measures the membership stream with them.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use clap::{Args, ValueEnum};
use crm_classify::pb::{
    self, BatchChangeRelationshipRequest, ListCustomersRequest, ListRelationshipsRequest,
    WatchRelationshipChangesRequest, WatchRelationshipChangesResponse,
    customer_service_client::CustomerServiceClient,
    relationship_service_client::RelationshipServiceClient,
    watch_relationship_changes_response::Event,
};
use futures::StreamExt;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tonic::{
    Status, Streaming,
    transport::{Channel, Endpoint},
};

use super::drive::{Svc, Tenant, rss_kib, sample_rss};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Customers per BatchChangeRelationship in the stalled scenario (the most
/// the RPC takes).
const STALLED_BATCH: usize = 1000;
/// How long all the watchers may take to open, and to receive the first
/// change.
const SETTLE: Duration = Duration::from_secs(60);
/// The `reason` of every change made here.
const REASON: &str = "crm-load watch";

/// Options of `crm-load watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Tenant seeded with `crm-load seed`.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Which scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Open streams: 1000 for latency, 100 for throughput by default (the
    /// stalled scenario always uses one).
    #[arg(long)]
    watchers: Option<usize>,
    /// HTTP/2 connections the streams are spread over; the writes use one
    /// more of their own.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// How long the latency and throughput scenarios write.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Changes per second: 20 for latency, 1000 for throughput by default.
    #[arg(long)]
    rate: Option<f64>,
    /// Customers per BatchChangeRelationship in the throughput scenario.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Changes the stalled scenario makes, in batches of 1000.
    #[arg(long, default_value_t = 100_000)]
    changes: usize,
    /// How long the stalled watcher does not read; the writes happen at the
    /// start of it.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    stall: Duration,
    /// Stalled scenario only: the watcher keeps reading, as a baseline for
    /// the memory the writes themselves cost the server.
    #[arg(long)]
    control: bool,
    /// BatchChangeRelationship calls in flight at once.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Customers the writes move, listed from the tenant.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// How long the watchers may take, after the last write, to receive
    /// every change.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    drain: Duration,
    /// Server process id, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Latency,
    Throughput,
    Stalled,
    All,
}

pub async fn run(args: WatchArgs) -> Result<(), BoxError> {
    let tenant = Tenant::new(&args.tenant)?;
    let writes = connect(&args.server).await?;
    let mut streams = Vec::new();
    for _ in 0..args.connections.max(1) {
        streams.push(connect(&args.server).await?);
    }
    let fixture = load_fixture(&writes, &tenant, args.customers).await?;
    println!(
        "tenant `{}`: {} customers moving between {} and {}; streams over {} connections, writes over 1 more",
        args.tenant,
        fixture.customers.len(),
        fixture.targets[0].1,
        fixture.targets[1].1,
        streams.len(),
    );
    let bench = Bench {
        args: &args,
        tenant,
        writes,
        streams,
        fixture,
    };
    let run = |s| args.scenario == s || args.scenario == Scenario::All;
    if run(Scenario::Latency) {
        bench.latency().await?;
    }
    if run(Scenario::Throughput) {
        bench.throughput().await?;
    }
    if run(Scenario::Stalled) {
        bench.stalled().await?;
    }
    Ok(())
}

/// One HTTP/2 connection to `server`.
pub(crate) async fn connect(server: &str) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(server.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// The customers the writes move, and the two manual relationships
/// (id, code) they alternate between.
struct Fixture {
    customers: Arc<[String]>,
    /// Moved once at the start of each scenario, to see that every watcher
    /// is receiving; not one of `customers`.
    warm_up: String,
    targets: [(String, String); 2],
}

/// The tenant's manual relationships: (id, code).
pub(crate) async fn manual_relationships(
    channel: &Channel,
    tenant: &Tenant,
) -> Result<Vec<(String, String)>, BoxError> {
    Ok(
        RelationshipServiceClient::with_interceptor(channel.clone(), tenant.clone())
            .list_relationships(ListRelationshipsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .relationships
            .into_iter()
            .filter(|r| r.kind() == pb::RelationshipKind::Manual)
            .map(|r| (r.id, r.code))
            .collect(),
    )
}

async fn load_fixture(
    channel: &Channel,
    tenant: &Tenant,
    sample: usize,
) -> Result<Fixture, BoxError> {
    let mut client = CustomerServiceClient::with_interceptor(channel.clone(), tenant.clone());
    let mut customers = Vec::new();
    let mut seen = HashSet::new();
    let mut token = String::new();
    while customers.len() < sample {
        let page = client
            .list_customers(ListCustomersRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        // The same customer twice in one batch would be two moves.
        customers.extend(
            page.customers
                .into_iter()
                .map(|c| c.id)
                .filter(|id| seen.insert(id.clone())),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    customers.truncate(sample);
    let manual = manual_relationships(channel, tenant).await?;
    let by_code = |code: &str| manual.iter().find(|(_, c)| c == code).cloned();
    let targets = match (by_code("HOT"), by_code("POTENTIAL")) {
        (Some(hot), Some(potential)) => [hot, potential],
        _ if manual.len() >= 2 => [manual[0].clone(), manual[1].clone()],
        _ => return Err("the tenant needs two manual relationships".into()),
    };
    if customers.len() <= STALLED_BATCH {
        return Err("the tenant has too few customers; run `crm-load seed` first".into());
    }
    let warm_up = customers.pop().unwrap_or_default();
    Ok(Fixture {
        customers: customers.into(),
        warm_up,
        targets,
    })
}

/// Hands out batches of the sample with the relationship every customer of
/// the batch moves to: passes over the sample alternate between the two
/// targets, starting with the one the customers are not in after
/// [`Bench::prepare`].
struct Mover {
    customers: Arc<[String]>,
    targets: [String; 2],
    batch: usize,
    per_pass: usize,
    handed: usize,
}

impl Mover {
    /// Batches at or past `handed` are in a later pass than a batch
    /// `per_pass` earlier, so no more than `per_pass - 1` may be in flight
    /// at once (else one customer could be moved twice concurrently).
    fn new(fixture: &Fixture, batch: usize, in_flight: usize) -> Result<Self, BoxError> {
        let per_pass = fixture.customers.len() / batch.max(1);
        if per_pass <= in_flight {
            return Err(format!(
                "{} customers make {per_pass} batches of {batch}, too few for {in_flight} in flight; raise --customers",
                fixture.customers.len()
            )
            .into());
        }
        Ok(Self {
            customers: fixture.customers.clone(),
            targets: [fixture.targets[0].0.clone(), fixture.targets[1].0.clone()],
            batch,
            per_pass,
            handed: 0,
        })
    }

    fn next(&mut self) -> (Vec<String>, String) {
        let (pass, i) = (self.handed / self.per_pass, self.handed % self.per_pass);
        self.handed += 1;
        (
            self.customers[i * self.batch..(i + 1) * self.batch].to_vec(),
            self.targets[pass % 2].clone(),
        )
    }
}

/// One write call, and the changes it made by the key their stream
/// messages carry ([`StreamMessage::Key`]).
pub(crate) struct Write<K> {
    pub(crate) sent: Instant,
    pub(crate) acked: Instant,
    /// The changes it made: for a relationship change their sequences.
    pub(crate) keys: Vec<K>,
    /// The customers it named.
    pub(crate) customers: usize,
}

/// The calls a scenario made.
pub(crate) struct Writes<K> {
    done: Vec<Write<K>>,
    errors: u64,
    first_error: Option<String>,
}

impl<K> Default for Writes<K> {
    fn default() -> Self {
        Self {
            done: Vec::new(),
            errors: 0,
            first_error: None,
        }
    }
}

impl Writes<i64> {
    fn last_sequence(&self) -> i64 {
        self.done
            .iter()
            .flat_map(|w| w.keys.last())
            .copied()
            .max()
            .unwrap_or(0)
    }
}

impl<K> Writes<K> {
    fn add(&mut self, result: Result<Write<K>, String>) {
        match result {
            Ok(write) => self.done.push(write),
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn changes(&self) -> usize {
        self.done.iter().map(|w| w.keys.len()).sum()
    }

    /// Customers named that did not move (must be 0: each would be a
    /// change the watchers are not expected to get).
    fn unmoved(&self) -> usize {
        self.done.iter().map(|w| w.customers).sum::<usize>() - self.changes()
    }

    /// From the first call's send to the last one's acknowledgement.
    fn span(&self) -> Duration {
        let first = self.done.iter().map(|w| w.sent).min();
        let last = self.done.iter().map(|w| w.acked).max();
        match (first, last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }

    fn round_trips_us(&self) -> Vec<i64> {
        sorted(
            self.done
                .iter()
                .map(|w| (w.acked - w.sent).as_micros() as i64)
                .collect(),
        )
    }

    pub(crate) fn summary(&self) -> String {
        let rtt = self.round_trips_us();
        let mut text = format!(
            "{} changes in {} calls over {:.1} s ({:.0} changes/s), call p50 {} ms p99 {} ms, {} errors",
            self.changes(),
            self.done.len(),
            self.span().as_secs_f64(),
            self.changes() as f64 / self.span().as_secs_f64().max(1e-9),
            ms(percentile(&rtt, 0.50)),
            ms(percentile(&rtt, 0.99)),
            self.errors,
        );
        if let Some(error) = &self.first_error {
            text.push_str(&format!(" (first: {error})"));
        }
        if self.unmoved() > 0 {
            text.push_str(&format!(
                "; {} customers named did not move!",
                self.unmoved()
            ));
        }
        text
    }
}

async fn write(
    mut client: CustomerServiceClient<Svc>,
    (customer_ids, relationship_id): (Vec<String>, String),
) -> Result<Write<i64>, String> {
    let customers = customer_ids.len();
    let sent = Instant::now();
    let response = client
        .batch_change_relationship(BatchChangeRelationshipRequest {
            customer_ids,
            relationship_id,
            reason: REASON.into(),
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(Write {
        sent,
        acked: Instant::now(),
        keys: response.changes.iter().map(|c| c.sequence).collect(),
        customers,
    })
}

/// A message of a change stream, as the benchmarks read it.
pub(crate) trait StreamMessage: Send + 'static {
    /// What the writer knows a change by: for relationship changes their
    /// sequence (the write's response carries it).
    type Key: Eq + Hash + Send + 'static;
    /// The change the message carries, its sequence and key; `None` for a
    /// heartbeat.
    fn change(self) -> Option<(i64, Self::Key)>;
}

impl StreamMessage for WatchRelationshipChangesResponse {
    type Key = i64;

    fn change(self) -> Option<(i64, i64)> {
        match self.event {
            Some(Event::Change(change)) => Some((change.sequence, change.sequence)),
            Some(Event::Heartbeat(_)) | None => None,
        }
    }
}

/// What one watcher received.
pub(crate) struct Received<K> {
    /// Each change's key and when it arrived, in arrival order.
    deliveries: Vec<(K, Instant)>,
    last: Option<i64>,
    /// Changes at or below one already received.
    duplicates: u64,
    /// Sequences skipped between two changes received.
    gaps: u64,
    heartbeats: u64,
    /// How the stream ended, when it ended before it was told to stop.
    error: Option<String>,
}

impl<K> Default for Received<K> {
    fn default() -> Self {
        Self {
            deliveries: Vec::new(),
            last: None,
            duplicates: 0,
            gaps: 0,
            heartbeats: 0,
            error: None,
        }
    }
}

impl<K> Received<K> {
    fn take(&mut self, message: impl StreamMessage<Key = K>, at: Instant) {
        match message.change() {
            Some((sequence, key)) => {
                if let Some(last) = self.last {
                    if sequence <= last {
                        self.duplicates += 1;
                        return;
                    }
                    self.gaps += (sequence - last - 1) as u64;
                }
                self.last = Some(sequence);
                self.deliveries.push((key, at));
            }
            None => self.heartbeats += 1,
        }
    }
}

/// When a watcher stops: once it has received `upto`, or at `deadline`.
#[derive(Clone, Copy)]
struct Stop {
    upto: i64,
    deadline: Instant,
}

async fn open(
    channel: Channel,
    tenant: Tenant,
) -> Result<Streaming<WatchRelationshipChangesResponse>, Status> {
    Ok(RelationshipServiceClient::with_interceptor(channel, tenant)
        .watch_relationship_changes(WatchRelationshipChangesRequest::default())
        .await?
        .into_inner())
}

/// Reads `stream` until told to stop; counts itself in `warmed` on its
/// first change.
async fn follow<M: StreamMessage>(
    mut stream: Streaming<M>,
    mut stop: watch::Receiver<Option<Stop>>,
    warmed: Arc<AtomicUsize>,
    mut received: Received<M::Key>,
) -> Received<M::Key> {
    let mut until = *stop.borrow_and_update();
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        if let (Some(until), Some(last)) = (until, received.last)
            && last >= until.upto
        {
            break;
        }
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(response)) => {
                    let first = received.last.is_none();
                    received.take(response, Instant::now());
                    if first && received.last.is_some() {
                        warmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Err(status)) => {
                    received.error = Some(format!("{:?}: {}", status.code(), status.message()));
                    break;
                }
                None => {
                    received.error = Some("the stream ended".into());
                    break;
                }
            },
            changed = stop.changed(), if until.is_none() => {
                if changed.is_err() {
                    break;
                }
                until = *stop.borrow_and_update();
            }
            () = tokio::time::sleep_until(until.map_or(far, |u| u.deadline)), if until.is_some() => break,
        }
    }
    received
}

/// Open streams being read, each by its own task.
pub(crate) struct Watchers<K> {
    tasks: Vec<JoinHandle<Received<K>>>,
    stop: watch::Sender<Option<Stop>>,
    warmed: Arc<AtomicUsize>,
}

impl<K> Watchers<K> {
    /// Waits until `n` watchers have received a change.
    pub(crate) async fn warm(&self, n: usize) -> Result<(), BoxError> {
        let deadline = Instant::now() + SETTLE;
        while self.warmed.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} watchers received the first change within {SETTLE:?}",
                    self.warmed.load(Ordering::Relaxed)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Tells every watcher to stop once it has `upto`, or after `drain`,
    /// and collects what they received.
    pub(crate) async fn finish(self, upto: i64, drain: Duration) -> Vec<Received<K>> {
        self.stop.send_replace(Some(Stop {
            upto,
            deadline: Instant::now() + drain,
        }));
        let mut all = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            all.push(task.await.unwrap_or_else(|e| Received {
                error: Some(format!("watcher task failed: {e}")),
                ..Default::default()
            }));
        }
        all
    }
}

/// Opens `n` streams with `open`, spread over the connections `streams`,
/// each read by a task of its own, and waits until the server has accepted
/// every one (its response headers come once the watcher is subscribed).
pub(crate) async fn open_watchers<M, F, Fut>(
    streams: &[Channel],
    tenant: &Tenant,
    n: usize,
    open: F,
) -> Result<Watchers<M::Key>, BoxError>
where
    M: StreamMessage,
    F: Fn(Channel, Tenant) -> Fut,
    Fut: Future<Output = Result<Streaming<M>, Status>> + Send + 'static,
{
    let (stop, stop_rx) = watch::channel(None);
    let warmed = Arc::new(AtomicUsize::new(0));
    let (opened_tx, mut opened) = mpsc::channel(n.max(1));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let opening = open(streams[i % streams.len()].clone(), tenant.clone());
        let (stop_rx, warmed, opened_tx) = (stop_rx.clone(), warmed.clone(), opened_tx.clone());
        tasks.push(tokio::spawn(async move {
            match opening.await {
                Ok(stream) => {
                    let _ = opened_tx.send(Ok(())).await;
                    drop(opened_tx);
                    follow(stream, stop_rx, warmed, Received::default()).await
                }
                Err(status) => {
                    let error = format!("{:?}: {}", status.code(), status.message());
                    let _ = opened_tx.send(Err(error.clone())).await;
                    Received {
                        error: Some(error),
                        ..Default::default()
                    }
                }
            }
        }));
    }
    drop(opened_tx);
    let deadline = Instant::now() + SETTLE;
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    while ok + failed < n {
        match tokio::time::timeout_at(deadline, opened.recv()).await {
            Ok(Some(Ok(()))) => ok += 1,
            Ok(Some(Err(error))) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let watchers = Watchers {
        tasks,
        stop,
        warmed,
    };
    if ok < n {
        for task in &watchers.tasks {
            task.abort();
        }
        return Err(format!(
            "only {ok} of {n} streams opened ({failed} refused; first error: {})",
            first_error.as_deref().unwrap_or("none, timed out")
        )
        .into());
    }
    Ok(watchers)
}

/// Starts a write from `next` every `every` for `duration`, with at most
/// `in_flight` calls in flight (a slow server lowers the achieved rate
/// instead of piling calls up), and collects them.
pub(crate) async fn paced<K, Fut>(
    every: Duration,
    duration: Duration,
    in_flight: usize,
    mut next: impl FnMut() -> Fut,
) -> Result<Writes<K>, BoxError>
where
    K: Send + 'static,
    Fut: Future<Output = Result<Write<K>, String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    loop {
        ticker.tick().await;
        let permit = permits.clone().acquire_owned().await?;
        if Instant::now() >= end {
            break;
        }
        let call = next();
        tasks.push(tokio::spawn(async move {
            let result = call.await;
            drop(permit);
            result
        }));
    }
    let mut writes = Writes::default();
    for task in tasks {
        writes.add(task.await?);
    }
    Ok(writes)
}

/// Everything the scenarios share.
struct Bench<'a> {
    args: &'a WatchArgs,
    tenant: Tenant,
    writes: Channel,
    streams: Vec<Channel>,
    fixture: Fixture,
}

impl Bench<'_> {
    fn client(&self) -> CustomerServiceClient<Svc> {
        CustomerServiceClient::with_interceptor(self.writes.clone(), self.tenant.clone())
    }

    /// Moves every customer of the sample (and the warm-up one) to the
    /// second target, so that the first pass of a [`Mover`] moves each of
    /// them.
    async fn prepare(&self) -> Result<(), BoxError> {
        let mut all = self.fixture.customers.to_vec();
        all.push(self.fixture.warm_up.clone());
        for chunk in all.chunks(STALLED_BATCH) {
            write(
                self.client(),
                (chunk.to_vec(), self.fixture.targets[1].0.clone()),
            )
            .await?;
        }
        Ok(())
    }

    /// Moves the warm-up customer (after [`Bench::prepare`]); returns the
    /// change's sequence.
    async fn warm_up(&self) -> Result<i64, BoxError> {
        let write = write(
            self.client(),
            (
                vec![self.fixture.warm_up.clone()],
                self.fixture.targets[0].0.clone(),
            ),
        )
        .await?;
        Ok(write.keys.last().copied().unwrap_or(0))
    }

    /// Opens `n` relationship streams from now (see [`open_watchers`]).
    async fn open_watchers(&self, n: usize) -> Result<Watchers<i64>, BoxError> {
        open_watchers(&self.streams, &self.tenant, n, open).await
    }

    /// Opens the watchers, makes one change and waits until it reached them
    /// all; returns how long that took.
    async fn open_and_warm(&self, n: usize) -> Result<(Watchers<i64>, Duration), BoxError> {
        let watchers = self.open_watchers(n).await?;
        let started = Instant::now();
        self.warm_up().await?;
        watchers.warm(n).await?;
        Ok((watchers, started.elapsed()))
    }

    /// Makes changes in batches of `batch` at `rate` changes per second for
    /// `--duration`, with at most `--writers` calls in flight (a slow
    /// server lowers the achieved rate instead of piling calls up).
    async fn write_paced(&self, batch: usize, rate: f64) -> Result<Writes<i64>, BoxError> {
        let in_flight = self.args.writers.max(1);
        let mut mover = Mover::new(&self.fixture, batch, in_flight)?;
        let every = Duration::from_secs_f64(batch as f64 / rate);
        paced(every, self.args.duration, in_flight, || {
            write(self.client(), mover.next())
        })
        .await
    }

    /// Makes `batches` batches of `batch` as fast as the server takes them
    /// with `--writers` calls in flight.
    async fn write_all(&self, batch: usize, batches: usize) -> Result<Writes<i64>, BoxError> {
        let in_flight = self.args.writers.max(1);
        let mover = Arc::new(Mutex::new(Mover::new(&self.fixture, batch, in_flight)?));
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (mover, client) = (mover.clone(), self.client());
            tasks.push(tokio::spawn(async move {
                let mut writes = Writes::default();
                loop {
                    let next = {
                        let mut mover = mover.lock().unwrap_or_else(|e| e.into_inner());
                        if mover.handed >= batches {
                            break;
                        }
                        mover.next()
                    };
                    writes.add(write(client.clone(), next).await);
                }
                writes
            }));
        }
        let mut writes = Writes::default();
        for task in tasks {
            let part = task.await?;
            writes.done.extend(part.done);
            writes.errors += part.errors;
            if writes.first_error.is_none() {
                writes.first_error = part.first_error;
            }
        }
        Ok(writes)
    }

    fn start_rss_sampler(&self) -> Option<(JoinHandle<()>, Arc<Mutex<u64>>)> {
        start_rss_sampler(self.args.server_pid)
    }

    /// Many watchers, single-customer changes at a steady rate.
    async fn latency(&self) -> Result<(), BoxError> {
        let n = self.args.watchers.unwrap_or(1000);
        let rate = self.args.rate.unwrap_or(20.0);
        self.prepare().await?;
        let sampler = self.start_rss_sampler();
        let (watchers, warm) = self.open_and_warm(n).await?;
        let writes = self.write_paced(1, rate).await?;
        let received = watchers
            .finish(writes.last_sequence(), self.args.drain)
            .await;
        println!(
            "\n== latency: {n} watchers on {} connections, single-customer changes at {rate}/s for {:?}",
            self.streams.len(),
            self.args.duration
        );
        println!(
            "   all {n} streams open; the first change reached them all {:.1} ms after it was sent",
            warm.as_secs_f64() * 1000.0
        );
        println!("   writes: {}", writes.summary());
        Deliveries::count(&writes, &received).print();
        print_peak(sampler);
        Ok(())
    }

    /// Fewer watchers, batches at a high rate.
    async fn throughput(&self) -> Result<(), BoxError> {
        let n = self.args.watchers.unwrap_or(100);
        let rate = self.args.rate.unwrap_or(1000.0);
        let batch = self.args.batch;
        self.prepare().await?;
        let sampler = self.start_rss_sampler();
        let (watchers, _) = self.open_and_warm(n).await?;
        let writes = self.write_paced(batch, rate).await?;
        let received = watchers
            .finish(writes.last_sequence(), self.args.drain)
            .await;
        println!(
            "\n== throughput: {n} watchers on {} connections, batches of {batch} at {rate} changes/s for {:?}",
            self.streams.len(),
            self.args.duration
        );
        println!("   writes: {}", writes.summary());
        Deliveries::count(&writes, &received).print();
        print_peak(sampler);
        Ok(())
    }

    /// One watcher stops reading while many changes are made.
    async fn stalled(&self) -> Result<(), BoxError> {
        let stall = self.args.stall;
        let batches = self.args.changes.div_ceil(STALLED_BATCH);
        self.prepare().await?;
        let sampler = self.start_rss_sampler();
        let channel = self.streams[0].clone();
        let mut stream = open(channel, self.tenant.clone()).await?;
        let warm_sequence = self.warm_up().await?;
        let mut received = Received::default();
        tokio::time::timeout(SETTLE, async {
            while received.last.is_none_or(|l| l < warm_sequence) {
                match stream.next().await {
                    Some(Ok(response)) => received.take(response, Instant::now()),
                    Some(Err(status)) => return Err(status.to_string()),
                    None => return Err("the stream ended".to_owned()),
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| "the stalled watcher did not receive the first change")??;

        // From here the stream is held but not read (or, in the control
        // run, read by a task of its own).
        let (stop_tx, stop) = watch::channel(None);
        let held = if self.args.control {
            Held::Reading(tokio::spawn(follow(
                stream,
                stop.clone(),
                Arc::default(),
                received,
            )))
        } else {
            Held::Stalled(Box::new(stream), received)
        };
        let stall_end = Instant::now() + stall;
        let rss_before = self.rss().await;
        let writes = self.write_all(STALLED_BATCH, batches).await?;
        let rss_after_writes = self.rss().await;
        let writes_overran = Instant::now() > stall_end;
        tokio::time::sleep_until(stall_end).await;
        let rss_end_of_stall = self.rss().await;

        let resumed = Instant::now();
        stop_tx.send_replace(Some(Stop {
            upto: writes.last_sequence(),
            deadline: Instant::now() + self.args.drain,
        }));
        let received = match held {
            Held::Stalled(stream, received) => {
                follow(*stream, stop, Arc::default(), received).await
            }
            Held::Reading(task) => task.await?,
        };
        let drained = resumed.elapsed();
        let rss_after_drain = self.rss().await;

        println!(
            "\n== stalled: 1 watcher {} for {stall:?}; {} changes in batches of {STALLED_BATCH}, {} calls in flight",
            if self.args.control {
                "keeps reading (control run)"
            } else {
                "stops reading"
            },
            batches * STALLED_BATCH,
            self.args.writers.max(1),
        );
        println!(
            "   writes: {}{}",
            writes.summary(),
            if writes_overran {
                " (longer than the stall)"
            } else {
                ""
            }
        );
        if let (Some(before), Some(after_writes), Some(end)) =
            (rss_before, rss_after_writes, rss_end_of_stall)
        {
            let peak = sampler
                .as_ref()
                .map(|(_, p)| *p.lock().unwrap_or_else(|e| e.into_inner()))
                .unwrap_or(0);
            println!(
                "   server RSS: {} before, {} after the writes, {} at the end of the stall, {} peak, {} after the watcher caught up; growth {} (peak - before; target < 50 MB)",
                mb(before),
                mb(after_writes),
                mb(end),
                mb(peak),
                rss_after_drain.map_or("?".into(), mb),
                mb(peak.saturating_sub(before)),
            );
        }
        let deliveries = Deliveries::count(&writes, std::slice::from_ref(&received));
        println!(
            "   after resuming: {} of {} changes in {:.1} s, {} missing, {} duplicates, {} gaps, contiguous: {}{}",
            deliveries.delivered,
            deliveries.expected,
            drained.as_secs_f64(),
            deliveries.expected - deliveries.delivered,
            deliveries.duplicates,
            deliveries.gaps,
            if deliveries.duplicates == 0 && deliveries.gaps == 0 {
                "yes"
            } else {
                "NO"
            },
            received
                .error
                .as_deref()
                .map_or(String::new(), |e| format!("; stream ended: {e}")),
        );
        if let Some((task, _)) = sampler {
            task.abort();
        }
        Ok(())
    }

    async fn rss(&self) -> Option<u64> {
        rss_kib(self.args.server_pid?).await
    }
}

/// The stalled scenario's stream while the writes happen.
enum Held {
    /// Not read, with what it received before.
    Stalled(
        Box<Streaming<WatchRelationshipChangesResponse>>,
        Received<i64>,
    ),
    /// Read by this task.
    Reading(JoinHandle<Received<i64>>),
}

/// The deliveries of a scenario's changes over every watcher.
pub(crate) struct Deliveries {
    expected: u64,
    delivered: u64,
    duplicates: u64,
    gaps: u64,
    /// Watchers whose stream ended with an error.
    ended: usize,
    first_end: Option<String>,
    /// Delivery minus the send of the call that made the change, in µs.
    from_send_us: Vec<i64>,
    /// Delivery minus the call's acknowledgement (negative: delivered
    /// before the writer heard back), in µs.
    from_ack_us: Vec<i64>,
}

impl Deliveries {
    pub(crate) fn count<K: Eq + Hash>(writes: &Writes<K>, received: &[Received<K>]) -> Self {
        let times: HashMap<&K, (Instant, Instant)> = writes
            .done
            .iter()
            .flat_map(|w| w.keys.iter().map(|k| (k, (w.sent, w.acked))))
            .collect();
        let mut from_send_us = Vec::new();
        let mut from_ack_us = Vec::new();
        for (sequence, at) in received.iter().flat_map(|r| &r.deliveries) {
            if let Some((sent, acked)) = times.get(sequence) {
                from_send_us.push((*at - *sent).as_micros() as i64);
                from_ack_us.push(if at >= acked {
                    (*at - *acked).as_micros() as i64
                } else {
                    -((*acked - *at).as_micros() as i64)
                });
            }
        }
        let ended: Vec<&String> = received.iter().filter_map(|r| r.error.as_ref()).collect();
        Self {
            expected: (times.len() * received.len()) as u64,
            delivered: from_send_us.len() as u64,
            duplicates: received.iter().map(|r| r.duplicates).sum(),
            gaps: received.iter().map(|r| r.gaps).sum(),
            ended: ended.len(),
            first_end: ended.first().map(|e| (*e).clone()),
            from_send_us: sorted(from_send_us),
            from_ack_us: sorted(from_ack_us),
        }
    }

    pub(crate) fn print(&self) {
        println!(
            "   deliveries: {} of {} expected ({} missing), {} duplicates, {} gaps, {} streams ended early{}",
            self.delivered,
            self.expected,
            self.expected - self.delivered,
            self.duplicates,
            self.gaps,
            self.ended,
            self.first_end
                .as_deref()
                .map_or(String::new(), |e| format!(" (first: {e})")),
        );
        let s = &self.from_send_us;
        let a = &self.from_ack_us;
        println!(
            "   send->delivery ms: p50 {} p99 {} max {}   (ack->delivery ms: p50 {} p99 {})",
            ms(percentile(s, 0.50)),
            ms(percentile(s, 0.99)),
            ms(s.last().copied()),
            ms(percentile(a, 0.50)),
            ms(percentile(a, 0.99)),
        );
    }
}

/// Records the peak resident memory of process `pid`, when given, until
/// [`print_peak`].
pub(crate) fn start_rss_sampler(pid: Option<u32>) -> Option<(JoinHandle<()>, Arc<Mutex<u64>>)> {
    pid.map(|pid| {
        let peak = Arc::new(Mutex::new(0u64));
        (tokio::spawn(sample_rss(pid, peak.clone())), peak)
    })
}

pub(crate) fn print_peak(sampler: Option<(JoinHandle<()>, Arc<Mutex<u64>>)>) {
    if let Some((task, peak)) = sampler {
        task.abort();
        println!(
            "   server peak RSS: {}",
            mb(*peak.lock().unwrap_or_else(|e| e.into_inner()))
        );
    }
}

fn sorted(mut values: Vec<i64>) -> Vec<i64> {
    values.sort_unstable();
    values
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    super::drive::percentile(sorted, p)
}

fn ms(us: Option<i64>) -> String {
    us.map_or("-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}
