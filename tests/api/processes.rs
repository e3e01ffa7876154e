//! The real `crm-classify` binary as child processes: a SIGKILL in the
//! middle of concurrent writes loses no acknowledged change and the change
//! stream resumes across the restart with no gap, no duplicate and the
//! numbering carried on (SQLite and PostgreSQL); two processes on one
//! PostgreSQL database stream each other's changes in order, exactly once;
//! a SIGKILL mid-evaluation of a rule group or mid-import loses nothing
//! acknowledged, and both resume.
//!
//! Each server is a [`Server`]: a child process that is killed (and
//! reaped) when the value is dropped, also when a test panics. Its address
//! comes from the `listening` line it logs (JSON, on stdout).

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    os::unix::process::ExitStatusExt,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crm_classify::pb::{
    CreateCustomerRequest, Customer, GetCustomerRequest, ListRelationshipHistoryRequest,
    Relationship, RelationshipChange, WatchRelationshipChangesRequest,
    customer_service_client::CustomerServiceClient,
    relationship_service_client::RelationshipServiceClient,
    watch_relationship_changes_response::Event,
};
use tokio::{
    sync::oneshot,
    time::{Instant, timeout, timeout_at},
};
use tonic::{Status, transport::Channel};

use crate::fixtures::{
    Customers, Events, Relationships, change_request, next_event_by, opening_heartbeat,
    read_through, rel, relationships, sequences,
};
use crate::helpers::{Headers, new_tenant, postgres_database_url};

/// The heartbeat interval of this file's servers: an idle stream reports
/// how far it has got this often.
const HEARTBEAT: &str = "200ms";
/// How long a server may take to start (migrations included).
const START: Duration = Duration::from_secs(15);
/// The longest any other single wait may take.
const WAIT: Duration = Duration::from_secs(5);

// The server process.

/// A running `crm-classify` process. Dropping it kills the process and
/// waits for it, so no server outlives its test, failed or not.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Every line the process has written (stdout and stderr), for failure
    /// messages and for waiting on one.
    logs: Arc<Mutex<Vec<String>>>,
    /// Told each time a line comes.
    lines: Arc<tokio::sync::Notify>,
}

/// The exit status of `child`, which closed its output and so is ending,
/// for a failure message: its status if it has ended, `None` if it is
/// still ending (the test fails either way; this only says how).
fn exit_status(child: &mut Child) -> Option<ExitStatus> {
    child.try_wait().ok().flatten()
}

impl Server {
    /// Starts the binary on `database_url` with port 0 and waits for the
    /// `listening` line that names the port it got.
    async fn start(database_url: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crm-classify"));
        // Only the flags below configure it, whatever the environment says.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CRM_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--database-url", database_url])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(["--heartbeat-interval", HEARTBEAT])
            // No inactivity sweep moves a customer during a test.
            .args(["--sweep-interval", "1h"])
            .args(["--shutdown-grace", "1s"])
            // The `listening` line is at INFO.
            // Each committed batch of a rule evaluation is logged at DEBUG.
            .env(
                "RUST_LOG",
                "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,crm_classify::store::customers::evaluation=debug",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start crm-classify");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(tokio::sync::Notify::new());
        let (listening, address) = oneshot::channel();
        drain(
            child.stdout.take().expect("stdout"),
            &logs,
            &lines,
            Some(listening),
        );
        drain(child.stderr.take().expect("stderr"), &logs, &lines, None);
        // The guard exists before the wait, so a server that never says
        // where it listens is killed too.
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            lines,
        };
        server.addr = match timeout(START, address).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => panic!(
                "crm-classify ended its output without a `listening` line (status {:?}):\n{}",
                exit_status(&mut server.child),
                server.logs()
            ),
            Err(_) => panic!(
                "crm-classify logged no `listening` line within {START:?}:\n{}",
                server.logs()
            ),
        };
        server
    }

    /// SIGKILL: the process ends at once, without any shutdown of its own.
    fn sigkill(&mut self) -> ExitStatus {
        // On Unix `Child::kill` sends SIGKILL.
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server")
    }

    /// Waits (at most until `deadline`) for a JSON log line with message
    /// `message` whose `field` is `value`; lines written before the call
    /// count too.
    async fn await_log(&self, message: &str, field: &str, value: &str, deadline: Instant) {
        loop {
            let next = self.lines.notified();
            tokio::pin!(next);
            // Registered before looking, so a line written meanwhile wakes it.
            next.as_mut().enable();
            let seen = self.logs.lock().unwrap().iter().any(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|e| e["message"] == message && e[field] == value)
            });
            if seen {
                return;
            }
            if timeout_at(deadline, next).await.is_err() {
                panic!("no `{message}` line with {field} {value}:\n{}", self.logs());
            }
        }
    }

    fn logs(&self) -> String {
        let logs = self.logs.lock().unwrap();
        let from = logs.len().saturating_sub(40);
        logs[from..].join("\n")
    }

    /// Clients of `tenant` on a connection of their own.
    async fn clients(&self, tenant: &str) -> (Customers, Relationships) {
        let channel = timeout(
            WAIT,
            Channel::from_shared(format!("http://{}", self.addr))
                .expect("uri")
                .connect(),
        )
        .await
        .expect("connecting timed out")
        .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        let tenant = Headers::tenant(tenant);
        (
            CustomerServiceClient::with_interceptor(channel.clone(), tenant.clone()),
            RelationshipServiceClient::with_interceptor(channel, tenant),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- last lines of crm-classify at {} ---", self.addr);
            eprintln!("{}", self.logs());
        }
    }
}

/// Reads `output` to its end on a thread of its own (so the server never
/// blocks on a full pipe), keeping every line; with `listening`, sends the
/// address of the first `listening` log line.
fn drain(
    output: impl Read + Send + 'static,
    logs: &Arc<Mutex<Vec<String>>>,
    lines: &Arc<tokio::sync::Notify>,
    mut listening: Option<oneshot::Sender<SocketAddr>>,
) {
    let (logs, lines) = (logs.clone(), lines.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = listening_address(&line)
                && let Some(listening) = listening.take()
            {
                let _ = listening.send(addr);
            }
            logs.lock().unwrap().push(line);
            lines.notify_waiters();
        }
    });
}

/// The address of a JSON `listening` log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    if entry["message"] != "listening" {
        return None;
    }
    let address = entry["address"].as_str()?;
    Some(
        address
            .parse()
            .unwrap_or_else(|e| panic!("`listening` names a bad address {address:?}: {e}")),
    )
}

// Clients.

/// Awaits a call that must answer within [`WAIT`].
async fn within<T>(what: &str, call: impl Future<Output = T>) -> T {
    timeout(WAIT, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

/// Creates a customer named `name`; returns it and its CREATED change.
async fn create(client: &mut Customers, name: &str) -> (Customer, RelationshipChange) {
    let request = CreateCustomerRequest {
        customer: Some(Customer {
            name: name.to_owned(),
            ..Default::default()
        }),
        request_id: String::new(),
        reason: String::new(),
    };
    let customer = within("create customer", client.create_customer(request))
        .await
        .expect("create customer")
        .into_inner()
        .customer
        .expect("customer");
    let history = within(
        "list history",
        client.list_relationship_history(ListRelationshipHistoryRequest {
            customer_id: customer.id.clone(),
            page_size: 10,
            page_token: String::new(),
        }),
    )
    .await
    .expect("list relationship history")
    .into_inner()
    .changes;
    assert_eq!(history.len(), 1, "a new customer's history: {history:?}");
    (customer, history[0].clone())
}

/// Moves a customer to another relationship; returns the recorded change.
async fn move_to(
    client: &mut Customers,
    customer_id: &str,
    relationship_id: &str,
) -> RelationshipChange {
    within(
        "change relationship",
        client.change_relationship(change_request(customer_id, relationship_id)),
    )
    .await
    .expect("change relationship")
    .into_inner()
    .change
    .expect("a move to another relationship records a change")
}

async fn current_relationship(client: &mut Customers, customer_id: &str) -> String {
    within(
        "get customer",
        client.get_customer(GetCustomerRequest {
            id: customer_id.to_owned(),
        }),
    )
    .await
    .expect("get customer")
    .into_inner()
    .customer
    .expect("customer")
    .relationship_id
}

// The change stream.

async fn watch(client: &mut Relationships, after_sequence: i64) -> Events {
    let request = WatchRelationshipChangesRequest {
        after_sequence,
        ..Default::default()
    };
    let mut events = within("watch", client.watch_relationship_changes(request))
        .await
        .unwrap_or_else(|s| panic!("watch after {after_sequence}: {s:?}"))
        .into_inner();
    opening_heartbeat(&mut events, after_sequence).await;
    events
}

/// The next event, which must be a heartbeat: its `latest_sequence`.
async fn heartbeat(events: &mut Events) -> i64 {
    match next_event_by(events, Instant::now() + WAIT).await {
        Event::Heartbeat(heartbeat) => heartbeat.latest_sequence,
        Event::Change(change) => panic!("expected a heartbeat, got change {change:?}"),
    }
}

// 1. SIGKILL during writes.

const CUSTOMERS: usize = 8;
const WRITERS: usize = 4;
/// Acknowledged moves before the kill.
const MOVES_BEFORE_KILL: usize = 40;

/// What one writer did: the changes acknowledged to it, and the error
/// its last call ended with.
type Written = (Vec<RelationshipChange>, Status);

/// Moves `own` customers in turn between `hot` and `potential` (every call
/// a real move) until a call fails, which must come after `killed` is set.
async fn write_until_killed(
    mut client: Customers,
    own: Vec<String>,
    [hot, potential]: [String; 2],
    killed: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
) -> Written {
    let mut changes = Vec::new();
    for round in 0.. {
        let target = if round % 2 == 0 { &hot } else { &potential };
        for customer_id in &own {
            let call = client.change_relationship(change_request(customer_id, target));
            match within("a write", call).await {
                Ok(response) => {
                    let change = response
                        .into_inner()
                        .change
                        .expect("a move to another relationship records a change");
                    assert_eq!(
                        (&change.customer_id, &change.new_relationship_id),
                        (customer_id, target),
                        "the recorded change is the move asked for: {change:?}"
                    );
                    changes.push(change);
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                Err(status) => {
                    assert!(
                        killed.load(Ordering::SeqCst),
                        "a write failed before the kill: {status:?}"
                    );
                    return (changes, status);
                }
            }
        }
    }
    unreachable!()
}

/// Kills the server with SIGKILL while writers are moving customers, then
/// restarts it on the same database: every acknowledged change is in the
/// change log, as acknowledged; a watcher resuming where the first one
/// stopped gets every later change once, in order; customers hold the
/// relationship of their latest change; and numbering carries on.
///
/// On SQLite the server runs WAL with `synchronous=NORMAL`: a commit is
/// in the log file (the OS's page cache) before it is acknowledged, though
/// not yet fsynced. A killed process leaves that with the OS, so every
/// committed transaction survives a process kill; only an OS crash or power
/// loss could lose the last ones, which this test does not simulate.
async fn sigkill_loses_no_acknowledged_change(database_url: &str) {
    let started = std::time::Instant::now();
    let tenant = new_tenant();
    let mut first = Server::start(database_url).await;
    let (mut customers, mut rels_client) = first.clients(&tenant).await;
    let rels = relationships(&mut rels_client).await;
    let (hot, potential) = (rel(&rels, "HOT"), rel(&rels, "POTENTIAL"));

    let mut ids = Vec::new();
    let mut initial = HashMap::new();
    for i in 0..CUSTOMERS {
        let (customer, created) = create(&mut customers, &format!("Khách {i}")).await;
        assert_eq!(
            created.sequence,
            i as i64 + 1,
            "a new tenant's changes count from 1"
        );
        initial.insert(customer.id.clone(), customer.relationship_id.clone());
        ids.push(customer.id);
    }
    let created = CUSTOMERS as i64;

    // The first watcher, from now: its first heartbeat says it starts
    // after the creates.
    let mut events = watch(&mut rels_client, 0).await;
    assert_eq!(
        heartbeat(&mut events).await,
        created,
        "idle after the creates"
    );
    let seen = Arc::new(Mutex::new(Vec::<RelationshipChange>::new()));
    let watcher = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                match events.message().await {
                    Ok(Some(response)) => {
                        if let Some(Event::Change(change)) = response.event {
                            seen.lock().unwrap().push(change);
                        }
                    }
                    Ok(None) => return None,
                    Err(status) => return Some(status),
                }
            }
        }
    });

    let killed = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            // Each writer its own customers, so every call is a real move.
            let own = ids.iter().skip(w).step_by(WRITERS).cloned().collect();
            tokio::spawn(write_until_killed(
                customers.clone(),
                own,
                [hot.clone(), potential.clone()],
                killed.clone(),
                acknowledged.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acknowledged.load(Ordering::SeqCst) < MOVES_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} moves acknowledged in 10 s",
            acknowledged.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    let status = first.sigkill();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed, not exited: {status:?}"
    );

    // Every writer had a call in flight, which failed.
    let mut acked: Vec<RelationshipChange> = Vec::new();
    let mut failures = Vec::new();
    for writer in writers {
        let (changes, status) = timeout(WAIT, writer)
            .await
            .expect("a writer still running after the kill")
            .expect("writer");
        acked.extend(changes);
        failures.push(status.code());
    }
    eprintln!(
        "{} moves acknowledged before the SIGKILL; the writers' calls in flight failed with {failures:?}",
        acked.len()
    );
    let ended = timeout(WAIT, watcher)
        .await
        .expect("the first watcher's stream still open after the kill")
        .expect("watcher");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "the first watcher saw {} changes, then {ended:?}",
        seen.len()
    );
    let expected: Vec<i64> = (created + 1..=created + seen.len() as i64).collect();
    assert_eq!(
        sequences(&seen),
        expected,
        "the first watcher: no gap, no duplicate"
    );
    let resume = seen.last().map_or(created, |c| c.sequence);

    // Restart on the same database; resume where the first watcher stopped.
    let second = Server::start(database_url).await;
    let (mut customers, mut rels_client) = second.clients(&tenant).await;
    let mut events = watch(&mut rels_client, resume).await;
    let max_acked = acked
        .iter()
        .map(|c| c.sequence)
        .max()
        .expect("moves acknowledged");
    let (resumed, latest) = read_through(&mut events, max_acked, Instant::now() + WAIT).await;
    let expected: Vec<i64> = (resume + 1..=latest).collect();
    assert_eq!(
        sequences(&resumed),
        expected,
        "resumed after {resume}: every change up to the heartbeat's {latest} once, in order"
    );

    // The change log from the first move on, as the two watchers saw it.
    let log: Vec<RelationshipChange> = seen.into_iter().chain(resumed).collect();
    let at = |sequence: i64| &log[(sequence - created - 1) as usize];
    for change in &acked {
        assert_eq!(
            at(change.sequence),
            change,
            "acknowledged change {} survived the SIGKILL as acknowledged",
            change.sequence
        );
    }
    // Each writer had at most one call in flight: at most one committed
    // but unacknowledged move each, its customer's latest.
    let acked_sequences: HashSet<i64> = acked.iter().map(|c| c.sequence).collect();
    let unacknowledged: Vec<&RelationshipChange> = log
        .iter()
        .filter(|c| !acked_sequences.contains(&c.sequence))
        .collect();
    assert!(
        unacknowledged.len() <= WRITERS,
        "more committed moves than acknowledged ones and calls in flight: {unacknowledged:?}"
    );
    // Every customer's changes chain (each starts where the one before
    // ended) and the customer holds the relationship of its latest one.
    let mut holds = initial;
    for change in &log {
        let held = holds
            .get_mut(&change.customer_id)
            .expect("one of the test's customers");
        assert_eq!(
            &change.old_relationship_id, held,
            "change {} starts where the customer's previous change ended",
            change.sequence
        );
        *held = change.new_relationship_id.clone();
    }
    for change in &unacknowledged {
        assert_eq!(
            log.iter()
                .rfind(|c| c.customer_id == change.customer_id)
                .map(|c| c.sequence),
            Some(change.sequence),
            "an unacknowledged move is its customer's latest: {change:?}"
        );
    }
    for (id, held) in &holds {
        assert_eq!(
            &current_relationship(&mut customers, id).await,
            held,
            "customer {id} holds the relationship of its latest change"
        );
    }

    // Numbering carries on after the restart, and the watcher gets it.
    let target = if holds[&ids[0]] == hot {
        &potential
    } else {
        &hot
    };
    let next = move_to(&mut customers, &ids[0], target).await;
    assert_eq!(
        next.sequence,
        latest + 1,
        "the first change after the restart"
    );
    let (live, _) = read_through(&mut events, next.sequence, Instant::now() + WAIT).await;
    assert_eq!(live, vec![next], "streamed live after the restart");
    eprintln!(
        "SIGKILL test: {} changes in the log, {} unacknowledged, {:?}",
        log.len(),
        unacknowledged.len(),
        started.elapsed()
    );
}

mod a_sigkill_during_writes_loses_no_acknowledged_change {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        sigkill_loses_no_acknowledged_change(&url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        let Some(url) = postgres_database_url() else {
            eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
            return;
        };
        sigkill_loses_no_acknowledged_change(&url).await;
    }
}

// 2. Two processes on one PostgreSQL database.

/// Reads both watchers through `made` (in sequence order): each gets
/// exactly those changes, in order, within [`WAIT`] of the last write.
async fn both_get(watchers: [(&str, &mut Events); 2], made: &[RelationshipChange]) {
    let last = made.last().expect("changes made").sequence;
    let deadline = Instant::now() + WAIT;
    for (name, events) in watchers {
        let started = Instant::now();
        let (got, latest) = read_through(events, last, deadline).await;
        assert_eq!(latest, last, "{name}: a heartbeat beyond the latest change");
        assert_eq!(
            sequences(&got),
            sequences(made),
            "{name}: every change once, in order"
        );
        assert_eq!(got, made, "{name}: streamed as recorded");
        eprintln!("{name}: changes through {last} in {:?}", started.elapsed());
    }
}

/// Checks that each of `made` (in sequence order) starts where its
/// customer's previous change ended (`holds`: what each customer held
/// before), and that both processes answer GetCustomer with the
/// relationship of the customer's latest change: neither serves a stale
/// record the other process changed.
async fn customers_agree(
    holds: &mut HashMap<String, String>,
    made: &[RelationshipChange],
    clients: [(&str, &mut Customers); 2],
) {
    for change in made {
        let held = holds.entry(change.customer_id.clone()).or_default();
        assert_eq!(
            &change.old_relationship_id, held,
            "change {} starts where the customer's previous change ended",
            change.sequence
        );
        *held = change.new_relationship_id.clone();
    }
    for (name, client) in clients {
        for (id, held) in holds.iter() {
            assert_eq!(
                &current_relationship(client, id).await,
                held,
                "{name}: customer {id} holds the relationship of its latest change"
            );
        }
    }
}

/// Two processes on one PostgreSQL database: changes made through either
/// (creates and moves, one after the other and at the same time) reach the
/// watchers on both, in order, exactly once, within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_stream_each_others_changes() {
    let Some(url) = postgres_database_url() else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let started = std::time::Instant::now();
    // Started together: their migrations take turns.
    let (a, b) = tokio::join!(Server::start(&url), Server::start(&url));
    let tenant = new_tenant();
    let (mut on_a, mut rels_a) = a.clients(&tenant).await;
    let (mut on_b, mut rels_b) = b.clients(&tenant).await;
    let rels = relationships(&mut rels_a).await;
    // Read before the tenant's first write, the seeds carry the time of
    // the read; everything else is the same on both.
    let timeless = |rels: Vec<Relationship>| -> Vec<Relationship> {
        rels.into_iter()
            .map(|r| Relationship {
                create_time: None,
                update_time: None,
                ..r
            })
            .collect()
    };
    assert_eq!(
        timeless(relationships(&mut rels_b).await),
        timeless(rels.clone()),
        "both processes see the one set of seeded relationships"
    );
    let cycle = [
        rel(&rels, "HOT"),
        rel(&rels, "POTENTIAL"),
        rel(&rels, "LOST"),
    ];

    let mut watch_a = watch(&mut rels_a, 0).await;
    let mut watch_b = watch(&mut rels_b, 0).await;
    assert_eq!(
        heartbeat(&mut watch_a).await,
        0,
        "a new tenant has no changes"
    );
    assert_eq!(
        heartbeat(&mut watch_b).await,
        0,
        "a new tenant has no changes"
    );

    // Through A.
    let mut made = Vec::new();
    let mut ids = Vec::new();
    for name in ["An", "Bình", "Chi"] {
        let (customer, created) = create(&mut on_a, name).await;
        ids.push(customer.id);
        made.push(created);
    }
    for step in 0..6 {
        made.push(move_to(&mut on_a, &ids[step % 3], &cycle[step / 3]).await);
    }
    assert_eq!(sequences(&made), (1..=9).collect::<Vec<_>>());
    both_get(
        [
            ("watcher on B", &mut watch_b),
            ("watcher on A", &mut watch_a),
        ],
        &made,
    )
    .await;
    let mut holds = HashMap::new();
    customers_agree(&mut holds, &made, [("A", &mut on_a), ("B", &mut on_b)]).await;

    // Through B, also moving A's customers.
    let mut made = Vec::new();
    for name in ["Dũng", "Giang"] {
        let (customer, created) = create(&mut on_b, name).await;
        ids.push(customer.id);
        made.push(created);
    }
    for id in &ids {
        made.push(move_to(&mut on_b, id, &cycle[2]).await);
    }
    assert_eq!(sequences(&made), (10..=16).collect::<Vec<_>>());
    both_get(
        [
            ("watcher on A", &mut watch_a),
            ("watcher on B", &mut watch_b),
        ],
        &made,
    )
    .await;
    customers_agree(&mut holds, &made, [("A", &mut on_a), ("B", &mut on_b)]).await;

    // Through both at once, on customers of their own; every customer
    // holds LOST (cycle[2]) now, and each call moves it on in the cycle.
    let rounds = 10;
    let writer = |mut client: Customers, own: Vec<String>| {
        let cycle = cycle.clone();
        tokio::spawn(async move {
            let mut made = Vec::new();
            for round in 0..rounds {
                for id in &own {
                    made.push(move_to(&mut client, id, &cycle[round % 3]).await);
                }
            }
            made
        })
    };
    let through_a = writer(on_a.clone(), ids[..2].to_vec());
    let through_b = writer(on_b.clone(), ids[2..].to_vec());
    let mut made: Vec<RelationshipChange> = timeout(WAIT * 4, through_a)
        .await
        .expect("writes through A timed out")
        .expect("writer on A");
    made.extend(
        timeout(WAIT * 4, through_b)
            .await
            .expect("writes through B timed out")
            .expect("writer on B"),
    );
    made.sort_by_key(|c| c.sequence);
    assert_eq!(
        sequences(&made),
        (17..17 + rounds as i64 * 5).collect::<Vec<_>>(),
        "writes through two processes share one numbering, none skipped or reused"
    );
    both_get(
        [
            ("watcher on A", &mut watch_a),
            ("watcher on B", &mut watch_b),
        ],
        &made,
    )
    .await;
    customers_agree(&mut holds, &made, [("A", &mut on_a), ("B", &mut on_b)]).await;
    eprintln!("two-process test: {:?}", started.elapsed());
}

// 3. SIGKILL during a rule group's evaluation.

/// Customers of the evaluation test: several batches of the background
/// evaluation, so the kill comes between two of them.
const EVALUATED_CUSTOMERS: usize = 12_000;

/// Where group `id`'s stored evaluation stands: (state, evaluated_through).
async fn stored_evaluation(db: &sea_orm::DatabaseConnection, id: &str) -> (String, String) {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let placeholder = match backend {
        sea_orm::DatabaseBackend::Postgres => "$1",
        _ => "?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT evaluation_state, evaluated_through FROM customer_groups WHERE id = {placeholder}"
            ),
            [id.into()],
        ))
        .await
        .expect("read the group row")
        .expect("the group row");
    (
        row.try_get("", "evaluation_state").expect("state"),
        row.try_get("", "evaluated_through").expect("place"),
    )
}

/// Kills the server with SIGKILL once a rule group's evaluation has
/// committed its first batch and before its last, restarts it on the same
/// database, and checks that the evaluation resumes, reaches CURRENT and
/// leaves exactly the customers the rule matches as members.
async fn sigkill_during_a_rule_evaluation_resumes_to_an_exact_membership(database_url: &str) {
    use crm_classify::pb::{
        CreateGroupRequest, EvaluationState, GetGroupRequest, Group, ListCustomersRequest,
        ListGroupMembersRequest, group_service_client::GroupServiceClient,
    };
    const RULE: &str = "revenue >= 500";
    let tenant = new_tenant();
    let mut first = Server::start(database_url).await;
    let (customers, _) = first.clients(&tenant).await;
    let made = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (mut customers, made) = (customers.clone(), made.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = made.fetch_add(1, Ordering::SeqCst);
                if i >= EVALUATED_CUSTOMERS {
                    return;
                }
                let request = CreateCustomerRequest {
                    customer: Some(Customer {
                        name: format!("Khách {w}-{i}"),
                        revenue: (i % 1000) as i64,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                within("create", customers.create_customer(request))
                    .await
                    .expect("create customer");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let channel = Channel::from_shared(format!("http://{}", first.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut groups = GroupServiceClient::with_interceptor(channel, Headers::tenant(&tenant));
    let group = within(
        "create group",
        groups.create_group(CreateGroupRequest {
            group: Some(Group {
                name: "Doanh thu lớn".into(),
                rule: RULE.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }),
    )
    .await
    .expect("create group")
    .into_inner()
    .group
    .expect("group");

    // The kill comes once the server says the first batch is committed.
    first
        .await_log(
            "rule evaluation batch committed",
            "group",
            &group.id,
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    let status = first.sigkill();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed: {status:?}");
    let db = sea_orm::Database::connect(database_url)
        .await
        .expect("open the database");
    let (state, place) = stored_evaluation(&db, &group.id).await;
    assert_eq!(state, "EVALUATING", "killed mid-evaluation (at {place:?})");
    assert!(!place.is_empty(), "with some batches done");

    let second = Server::start(database_url).await;
    let (mut customers, _) = second.clients(&tenant).await;
    let channel = Channel::from_shared(format!("http://{}", second.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut groups = GroupServiceClient::with_interceptor(channel, Headers::tenant(&tenant));
    // The restarted server finishes what the first one began, and says so.
    second
        .await_log(
            "rule group evaluated",
            "group",
            &group.id,
            Instant::now() + Duration::from_secs(120),
        )
        .await;
    let now = within(
        "get group",
        groups.get_group(GetGroupRequest {
            id: group.id.clone(),
        }),
    )
    .await
    .expect("get group")
    .into_inner()
    .group
    .expect("group");
    assert_eq!(now.evaluation_state, EvaluationState::Current as i32);
    let mut members = HashSet::new();
    let mut token = String::new();
    loop {
        let page = within(
            "list members",
            groups.list_group_members(ListGroupMembersRequest {
                group_id: group.id.clone(),
                page_size: 1000,
                page_token: token,
                show_pinned_out: false,
            }),
        )
        .await
        .expect("list members")
        .into_inner();
        members.extend(page.members.into_iter().map(|m| m.customer_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut matching = HashSet::new();
    let mut token = String::new();
    loop {
        let page = within(
            "list customers",
            customers.list_customers(ListCustomersRequest {
                filter: RULE.into(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            }),
        )
        .await
        .expect("list customers")
        .into_inner();
        matching.extend(page.customers.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        matching.len(),
        EVALUATED_CUSTOMERS / 2,
        "half the revenues are ≥ 500"
    );
    assert_eq!(members, matching, "the membership is the rule's, exactly");
}

mod sigkill_during_a_rule_evaluation {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        sigkill_during_a_rule_evaluation_resumes_to_an_exact_membership(&url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        let Some(url) = postgres_database_url() else {
            eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
            return;
        };
        sigkill_during_a_rule_evaluation_resumes_to_an_exact_membership(&url).await;
    }
}

// 4. SIGKILL during an import.

/// Rows per batch of the import killed mid-way.
const IMPORT_BATCH: i64 = 200;

fn import_batch(batch: i64) -> crm_classify::pb::ImportCustomersRequest {
    use crm_classify::pb::{
        ImportCustomersRequest, ImportRow, ImportRowBatch, import_customers_request::Payload,
    };
    let rows = (batch * IMPORT_BATCH + 1..=(batch + 1) * IMPORT_BATCH)
        .map(|n| ImportRow {
            row_number: n,
            name: Some(format!("Khách nhập {n}")),
            phone: Some(format!("0977{n:06}")),
            relationship: Some("HOT".into()),
            ..Default::default()
        })
        .collect();
    ImportCustomersRequest {
        payload: Some(Payload::Rows(ImportRowBatch { rows })),
    }
}

fn import_options(request_id: &str) -> crm_classify::pb::ImportCustomersRequest {
    use crm_classify::pb::{
        ImportCustomersRequest, ImportMode, ImportOptions, import_customers_request::Payload,
    };
    ImportCustomersRequest {
        payload: Some(Payload::Options(ImportOptions {
            mode: ImportMode::Create as i32,
            request_id: request_id.to_owned(),
            ..Default::default()
        })),
    }
}

/// Imports batch after batch, each sent once the one before was
/// acknowledged, and kills the server with SIGKILL right after sending the
/// fourth; every row acknowledged before survives the restart, and the
/// import repeated with its request id finishes without a duplicate.
async fn sigkill_during_an_import_loses_no_acknowledged_row(database_url: &str) {
    use crm_classify::pb::ImportOutcome;
    const BATCHES: i64 = 6;
    let tenant = new_tenant();
    let mut first = Server::start(database_url).await;
    let (mut customers, _) = first.clients(&tenant).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(import_options("sigkill-import"))
        .await
        .expect("queue the options");
    let mut results = within(
        "start the import",
        customers.import_customers(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
    .await
    .expect("import")
    .into_inner();
    let mut acknowledged: HashMap<i64, String> = HashMap::new();
    for batch in 0..3 {
        sender
            .send(import_batch(batch))
            .await
            .expect("queue a batch");
        let response = within("a batch's results", results.message())
            .await
            .expect("results")
            .expect("a message");
        for result in response.results {
            assert_eq!(result.outcome, ImportOutcome::Created as i32, "{result:?}");
            acknowledged.insert(result.row_number, result.customer_id);
        }
    }
    sender.send(import_batch(3)).await.expect("queue a batch");
    let status = first.sigkill();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed: {status:?}");
    assert_eq!(acknowledged.len() as i64, 3 * IMPORT_BATCH);

    let second = Server::start(database_url).await;
    let (mut customers, _) = second.clients(&tenant).await;
    for id in acknowledged.values() {
        within(
            "get an acknowledged customer",
            customers.get_customer(GetCustomerRequest { id: id.clone() }),
        )
        .await
        .unwrap_or_else(|e| panic!("acknowledged row's customer {id} lost: {e:?}"));
    }
    let requests: Vec<_> = std::iter::once(import_options("sigkill-import"))
        .chain((0..BATCHES).map(import_batch))
        .collect();
    let mut results = within(
        "repeat the import",
        customers.import_customers(tokio_stream::iter(requests)),
    )
    .await
    .expect("repeat")
    .into_inner();
    let mut ids = HashSet::new();
    let mut replayed = 0;
    while let Some(response) = within("results", results.message()).await.expect("results") {
        for result in response.results {
            assert_eq!(result.outcome, ImportOutcome::Created as i32, "{result:?}");
            if let Some(first_id) = acknowledged.get(&result.row_number) {
                assert!(
                    result.replayed,
                    "row {} was applied before",
                    result.row_number
                );
                assert_eq!(&result.customer_id, first_id);
            }
            replayed += i64::from(result.replayed);
            assert!(ids.insert(result.customer_id), "one customer per row");
        }
    }
    assert!(
        (3 * IMPORT_BATCH..=4 * IMPORT_BATCH).contains(&replayed),
        "replayed {replayed}: the acknowledged rows and perhaps the batch in flight"
    );
    assert_eq!(ids.len() as i64, BATCHES * IMPORT_BATCH);
    let listed = within(
        "count",
        customers.count_customers_by_relationship(
            crm_classify::pb::CountCustomersByRelationshipRequest::default(),
        ),
    )
    .await
    .expect("count")
    .into_inner()
    .total;
    assert_eq!(listed, BATCHES * IMPORT_BATCH, "no duplicates, none lost");
}

mod sigkill_during_an_import {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        sigkill_during_an_import_loses_no_acknowledged_row(&url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        let Some(url) = postgres_database_url() else {
            eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
            return;
        };
        sigkill_during_an_import_loses_no_acknowledged_row(&url).await;
    }
}
