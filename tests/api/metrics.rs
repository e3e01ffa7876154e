//! The Prometheus endpoint (`--metrics-listen`), scraped over real HTTP/1.1
//! and parsed strictly: the call counters move with calls by code, the
//! handling histograms have consistent buckets, the change streams' gauge
//! rises and falls and a cancelled stream counts as Canceled, an import's
//! rows and a rule evaluation and sweep are counted, unknown paths and
//! tenants make no series, only `/metrics` answers, and the endpoint stops
//! with the server. A server without the flag serves no metrics.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crm_classify::pb::{
    GetCustomerRequest, GetCustomerResponse, Group, ImportMatchKey, ImportMode, ImportOptions,
    ImportRow, WatchGroupMembershipChangesRequest, WatchRelationshipChangesRequest,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tonic::{Code, codegen::http::uri::PathAndQuery};
use tonic_prost::ProstCodec;

use crate::fixtures::{create_customer, create_group, get_customer, named, unknown_id};
use crate::helpers::{Backend, TestApp, expect_code};
use crate::on_both_databases;
use crate::rule_groups::await_current;

/// The longest any single wait may take on a busy machine.
const WAIT: Duration = Duration::from_secs(10);

/// go-grpc-prometheus's buckets (Prometheus' DefBuckets), and +Inf.
const DEF_BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// Every family the server exports. A family without a series yet has no
/// lines at all; a name not listed here is a typo in a test.
const FAMILIES: [&str; 17] = [
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "crm_open_streams",
    "crm_stream_lag_batches",
    "crm_stream_lagged_total",
    "crm_create_queue_depth",
    "crm_sweep_runs_total",
    "crm_sweep_moves_total",
    "crm_sweep_duration_seconds",
    "crm_rule_evaluations_total",
    "crm_rule_evaluation_batches_total",
    "crm_import_rows_total",
    "crm_db_pool_connections",
    "crm_db_pool_max_connections",
];

/// A server with its metrics on a free port, and `configure`'s changes.
async fn spawn(
    backend: Backend,
    configure: impl Fn(&mut crm_classify::Config) + Sync,
) -> Option<TestApp> {
    TestApp::spawn_with_config(backend, |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
        configure(config);
    })
    .await
}

/// Runs a test body on SQLite and, when configured, on PostgreSQL, against
/// a server with metrics; with `(app: TestApp, config = |c| …)` the
/// configuration is changed further.
macro_rules! with_metrics {
    ($(async fn $name:ident($app:ident: TestApp $(, config = $configure:expr)?) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(unused_variables)]
            fn configure(config: &mut crm_classify::Config) {
                $(($configure)(config);)?
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let $app = spawn(Backend::Sqlite, configure).await.expect("sqlite");
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some($app) = spawn(Backend::Postgres, configure).await else {
                    eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                    return;
                };
                $body
            }
        }
    )*};
}

// HTTP.

/// An HTTP answer: status, headers (names lowercase) and body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Sends `method path` over a connection of its own and reads the whole
/// answer, which must carry its length.
async fn http(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let exchange = async {
        let mut socket = TcpStream::connect(addr).await.expect("connect to /metrics");
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        socket.read_to_end(&mut raw).await.expect("read the answer");
        raw
    };
    let raw = timeout(WAIT, exchange).await.expect("an answer in time");
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers, then a body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a bad status line {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    if method != "HEAD" {
        let length: usize = headers["content-length"].parse().expect("a length");
        assert_eq!(body.len(), length, "the body is as long as it says");
    }
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

// The text format.

/// A sample's labels, as pairs.
type Labels = Vec<(String, String)>;

/// One sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    /// Each family's type, by the name its TYPE line gives.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
    text: String,
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{name="value",…}` at the start of `text`, and what follows it.
fn labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return (labels, text);
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("a label name, then =\"");
        assert!(
            is_name(name) && !name.contains(':'),
            "a bad label name {name:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closed label value") {
                (_, '\\') => match chars.next().expect("an escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("a bad escape \\{other}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the Prometheus text format (0.0.4), strictly: every sample
/// follows its family's TYPE line and is named as that type allows.
fn parse(text: &str) -> Scrape {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    let mut family: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().expect("a HELP name");
            assert!(is_name(name), "a bad HELP line {line:?}");
        } else if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("a TYPE name and type");
            assert!(is_name(name), "a bad TYPE line {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "a bad type in {line:?}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} declared twice"
            );
            family = Some((name.to_owned(), kind.to_owned()));
        } else {
            assert!(!line.starts_with('#'), "an unknown comment {line:?}");
            let name_end = line.find(['{', ' ']).expect("a sample name");
            let name = &line[..name_end];
            let (labels, rest) = labels(&line[name_end..]);
            let value = rest.strip_prefix(' ').expect("a space before the value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => other
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("a bad value in {line:?}: {e}")),
            };
            let (family, kind) = family.as_ref().expect("a sample after its TYPE line");
            let allowed = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name == format!("{family}{suffix}")),
                _ => name == family,
            };
            assert!(allowed, "sample {name} in family {family} ({kind})");
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    Scrape {
        types,
        samples,
        text: text.to_owned(),
    }
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels`;
    /// 0 when there are none yet. The name must be an exported family's.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| FAMILIES.contains(family))
            .unwrap_or(name);
        assert!(FAMILIES.contains(&family), "no family {family}");
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// How much `name` with `labels` grew since `before`.
    fn since(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels) - before.value(name, labels)
    }

    /// Every histogram is whole: each series has the buckets `expected`
    /// names (for `family`), cumulative, ending at +Inf, which equals its
    /// `_count`; its `_sum` is not negative.
    fn check_histograms(&self, family: &str, expected: &[&str]) {
        let mut checked = 0;
        for (name, _) in self.types.iter().filter(|(_, t)| *t == "histogram") {
            let bucket = format!("{name}_bucket");
            // Each series' buckets (le, count), by its other labels.
            let mut series: BTreeMap<Labels, Vec<(String, f64)>> = BTreeMap::new();
            for sample in self.samples.iter().filter(|s| s.name == bucket) {
                let mut labels = sample.labels.clone();
                let le = labels.remove("le").expect("a bucket has le");
                series
                    .entry(labels.into_iter().collect())
                    .or_default()
                    .push((le, sample.value));
            }
            for (labels, buckets) in series {
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let (les, counts): (Vec<&str>, Vec<f64>) =
                    buckets.iter().map(|(le, n)| (le.as_str(), *n)).unzip();
                assert_eq!(les.last(), Some(&"+Inf"), "{name} {labels:?}");
                if name == family {
                    assert_eq!(les, expected, "{name}'s buckets");
                }
                let bounds: Vec<f64> = les
                    .iter()
                    .map(|le| {
                        if *le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().expect("le")
                        }
                    })
                    .collect();
                assert!(
                    bounds.windows(2).all(|w| w[0] < w[1]),
                    "{name} {labels:?}: {les:?}"
                );
                assert!(
                    counts.windows(2).all(|w| w[0] <= w[1]),
                    "{name} {labels:?}: {counts:?}"
                );
                let count = self.value(&format!("{name}_count"), &pairs);
                assert_eq!(counts.last().copied(), Some(count), "{name} {labels:?}");
                assert!(self.value(&format!("{name}_sum"), &pairs) >= 0.0);
                checked += 1;
            }
        }
        assert!(checked > 0, "no histogram series:\n{}", self.text);
    }

    /// No label names a tenant, and no label value is `tenant`.
    fn assert_no_tenant(&self, tenant: &str) {
        for sample in &self.samples {
            for (name, value) in &sample.labels {
                assert!(!name.contains("tenant"), "{sample:?}");
                assert!(!value.contains(tenant), "{sample:?}");
            }
        }
    }
}

/// Scrapes `app`'s metrics once.
async fn scrape(app: &TestApp) -> Scrape {
    let addr = app.metrics_addr.expect("the server serves metrics");
    let answer = http(addr, "GET", "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let scrape = parse(&answer.body);
    for family in scrape.types.keys() {
        assert!(
            FAMILIES.contains(&family.as_str()),
            "an unexpected family {family}"
        );
    }
    scrape
}

/// Waits (at most [`WAIT`]) until `receiver`, one of the server's event
/// counters, has counted `n`.
async fn counted(what: &str, receiver: &tokio::sync::watch::Receiver<u64>, n: u64) {
    let mut receiver = receiver.clone();
    timeout(WAIT, receiver.wait_for(|count| *count >= n))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
        .expect("the server is running");
}

/// The labels of a method.
fn method(
    kind: &'static str,
    service: &'static str,
    name: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("grpc_type", kind),
        ("grpc_service", service),
        ("grpc_method", name),
    ]
}

fn with<'a>(labels: &[(&'a str, &'a str)], more: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    labels.iter().copied().chain([more]).collect()
}

fn code(
    labels: &[(&'static str, &'static str)],
    code: &'static str,
) -> Vec<(&'static str, &'static str)> {
    with(labels, ("grpc_code", code))
}

fn stream(name: &'static str) -> [(&'static str, &'static str); 1] {
    [("stream", name)]
}

with_metrics! {
    async fn calls_move_the_started_and_handled_counters_by_code(app: TestApp) {
        let before = scrape(&app).await;
        let mut customers = app.customers();
        let created = create_customer(&mut customers, named("Khách Đo Đếm")).await;
        get_customer(&mut customers, &created.id).await;
        let missing = customers.get_customer(GetCustomerRequest { id: unknown_id() }).await;
        expect_code(missing, Code::NotFound);
        let malformed = customers.get_customer(GetCustomerRequest { id: "not-an-id".into() }).await;
        expect_code(malformed, Code::InvalidArgument);
        let after = scrape(&app).await;

        let get = method("unary", "crm.v1.CustomerService", "GetCustomer");
        let delta = |name, labels: &[(&str, &str)]| after.since(&before, name, labels);
        assert_eq!(delta("grpc_server_started_total", &get), 3.0);
        assert_eq!(delta("grpc_server_handled_total", &code(&get, "OK")), 1.0);
        assert_eq!(delta("grpc_server_handled_total", &code(&get, "NotFound")), 1.0);
        assert_eq!(delta("grpc_server_handled_total", &code(&get, "InvalidArgument")), 1.0);
        assert_eq!(delta("grpc_server_handled_total", &get), 3.0, "no other code");
        assert_eq!(delta("grpc_server_handling_seconds_count", &get), 3.0);
        assert_eq!(delta("grpc_server_msg_received_total", &get), 3.0);
        let sent = delta("grpc_server_msg_sent_total", &get);
        assert_eq!(sent, 1.0, "only the OK call answers a message");
        let create = method("unary", "crm.v1.CustomerService", "CreateCustomer");
        assert_eq!(delta("grpc_server_handled_total", &code(&create, "OK")), 1.0);
        after.check_histograms("grpc_server_handling_seconds", &DEF_BUCKETS);
        after.assert_no_tenant(&app.tenant);

        // The service's pools, read when scraped.
        let requests = [("pool", "requests")];
        assert!(after.value("crm_db_pool_connections", &requests) >= 1.0, "{}", after.text);
        assert!(after.value("crm_db_pool_max_connections", &requests) >= 1.0);
        assert_eq!(after.value("crm_create_queue_depth", &[]), 0.0);
    }

    async fn a_path_no_service_serves_is_counted_under_one_unknown_label_set(app: TestApp) {
        let before = scrape(&app).await;
        for name in ["NoSuchMethod", "AnotherMadeUpMethod"] {
            let mut grpc = tonic::client::Grpc::new(app.svc());
            timeout(WAIT, grpc.ready()).await.expect("ready in time").expect("ready");
            let path = format!("/crm.v1.CustomerService/{name}");
            let path = PathAndQuery::try_from(path).expect("path");
            let answer = grpc
                .unary(
                    tonic::Request::new(GetCustomerRequest { id: unknown_id() }),
                    path,
                    ProstCodec::<GetCustomerRequest, GetCustomerResponse>::default(),
                )
                .await;
            expect_code(answer, Code::Unimplemented);
        }
        let after = scrape(&app).await;
        let unknown = method("unknown", "unknown", "unknown");
        let delta = |name, labels: &[(&str, &str)]| after.since(&before, name, labels);
        assert_eq!(delta("grpc_server_started_total", &unknown), 2.0);
        assert_eq!(delta("grpc_server_handled_total", &code(&unknown, "Unimplemented")), 2.0);
        for name in ["NoSuchMethod", "AnotherMadeUpMethod"] {
            assert!(!after.text.contains(name), "{}", after.text);
        }
    }

    async fn the_stream_gauges_rise_and_fall_and_a_cancelled_stream_counts_as_canceled(app: TestApp) {
        let before = scrape(&app).await;
        assert_eq!(before.value("crm_open_streams", &stream("relationship_changes")), 0.0);
        assert_eq!(before.value("crm_open_streams", &stream("group_memberships")), 0.0);
        let watch = method(
            "server_stream",
            "crm.v1.RelationshipService",
            "WatchRelationshipChanges",
        );
        let memberships = method(
            "server_stream",
            "crm.v1.GroupService",
            "WatchGroupMembershipChanges",
        );

        let mut changes = app
            .relationships()
            .watch_relationship_changes(WatchRelationshipChangesRequest::default())
            .await
            .expect("watch relationship changes")
            .into_inner();
        let mut joins = app
            .groups()
            .watch_group_membership_changes(WatchGroupMembershipChangesRequest::default())
            .await
            .expect("watch memberships")
            .into_inner();
        // Each opens with a heartbeat.
        for opened in [
            timeout(WAIT, changes.message()).await.map(|m| m.map(|m| m.is_some())),
            timeout(WAIT, joins.message()).await.map(|m| m.map(|m| m.is_some())),
        ] {
            assert!(opened.expect("a heartbeat in time").expect("an open stream"));
        }
        // A stream's watcher is registered before its opening heartbeat.
        let open = scrape(&app).await;
        assert_eq!(open.value("crm_open_streams", &stream("relationship_changes")), 1.0);
        assert_eq!(open.value("crm_open_streams", &stream("group_memberships")), 1.0);
        assert_eq!(open.value("grpc_server_started_total", &watch), 1.0);
        assert_eq!(open.value("grpc_server_handled_total", &watch), 0.0, "not ended yet");
        assert!(open.value("grpc_server_msg_sent_total", &watch) >= 1.0, "the heartbeat");
        assert_eq!(open.value("grpc_server_msg_received_total", &watch), 1.0);

        // The server notices a stream the client dropped when it drops the
        // answer: the metrics are counted then, and its watch slot given
        // back right after.
        let released = *app.limits_released.borrow();
        drop(changes);
        counted("the relationship stream's slot", &app.limits_released, released + 1).await;
        let closed = scrape(&app).await;
        assert_eq!(closed.value("crm_open_streams", &stream("relationship_changes")), 0.0);
        assert_eq!(closed.value("grpc_server_handled_total", &code(&watch, "Canceled")), 1.0);
        assert_eq!(closed.value("crm_open_streams", &stream("group_memberships")), 1.0);
        assert_eq!(closed.value("grpc_server_handled_total", &memberships), 0.0);
        assert_eq!(closed.value("grpc_server_handling_seconds_count", &watch), 1.0);

        drop(joins);
        counted("the membership stream's slot", &app.limits_released, released + 2).await;
        let closed = scrape(&app).await;
        assert_eq!(closed.value("crm_open_streams", &stream("group_memberships")), 0.0);
        assert_eq!(closed.value("grpc_server_handled_total", &code(&memberships, "Canceled")), 1.0);
        closed.check_histograms("grpc_server_handling_seconds", &DEF_BUCKETS);
        assert_eq!(closed.value("crm_stream_lagged_total", &stream("relationship_changes")), 0.0);
        assert_eq!(closed.value("crm_stream_lag_batches", &stream("relationship_changes")), 0.0);
    }

    async fn an_imports_messages_and_rows_are_counted_by_outcome(app: TestApp) {
        let before = scrape(&app).await;
        let rows = vec![
            ImportRow {
                row_number: 1,
                name: Some("Nhập Tốt".into()),
                phone: Some("0911000001".into()),
                ..Default::default()
            },
            // Fails: not an email address.
            ImportRow {
                row_number: 2,
                name: Some("Nhập Sai".into()),
                email: Some("khong-phai-email".into()),
                ..Default::default()
            },
        ];
        let options = ImportOptions {
            mode: ImportMode::Create as i32,
            match_on: ImportMatchKey::Unspecified as i32,
            ..Default::default()
        };
        let requests = crate::fixtures::import_requests(options, vec![rows]);
        let mut responses = app
            .customers()
            .import_customers(tokio_stream::iter(requests))
            .await
            .expect("import")
            .into_inner();
        let mut answered = 0.0;
        while let Some(_response) = timeout(WAIT, responses.message())
            .await
            .expect("in time")
            .expect("import")
        {
            answered += 1.0;
        }
        let import = method("bidi_stream", "crm.v1.CustomerService", "ImportCustomers");
        // Its status was counted as the server sent it, before the client
        // read the end of the stream.
        let after = scrape(&app).await;
        assert_eq!(after.value("grpc_server_handled_total", &code(&import, "OK")), 1.0);
        let delta = |name, labels: &[(&str, &str)]| after.since(&before, name, labels);
        assert_eq!(delta("crm_import_rows_total", &[("outcome", "created")]), 1.0);
        assert_eq!(delta("crm_import_rows_total", &[("outcome", "failed")]), 1.0);
        assert_eq!(delta("crm_import_rows_total", &[("outcome", "updated")]), 0.0);
        let received = delta("grpc_server_msg_received_total", &import);
        assert_eq!(received, 2.0, "the options and one batch");
        assert_eq!(delta("grpc_server_msg_sent_total", &import), answered);
        assert!(answered >= 2.0, "results, then the summary");
    }

    async fn rule_evaluations_and_sweeps_are_counted(
        app: TestApp,
        config = |config: &mut crm_classify::Config| config.sweep_interval = Duration::from_millis(200)
    ) {
        create_customer(&mut app.customers(), named("Khách Quy Tắc")).await;
        let group = create_group(&mut app.groups(), Group {
            name: "Nhóm theo quy tắc".into(),
            rule: r#"name = "Khách Quy Tắc""#.into(),
            ..Default::default()
        })
        .await;
        await_current(&app, &group.id).await;
        counted("an evaluation", &app.evaluations_finished, 1).await;
        counted("a round of upkeep", &app.upkeep_rounds, 1).await;
        let after = scrape(&app).await;
        assert!(after.value("crm_rule_evaluations_total", &[]) >= 1.0);
        assert!(after.value("crm_sweep_runs_total", &[("result", "ok")]) >= 1.0);
        assert!(after.value("crm_rule_evaluation_batches_total", &[]) >= 1.0);
        assert_eq!(after.value("crm_sweep_runs_total", &[("result", "failed")]), 0.0);
        // On PostgreSQL the sweep walks every test's tenants: how many it
        // moves is theirs to say, only that the counter is there is ours.
        assert!(after.samples.iter().any(|s| s.name == "crm_sweep_moves_total"));
        assert!(after.value("crm_sweep_duration_seconds_count", &[]) >= 1.0);
        after.check_histograms(
            "crm_sweep_duration_seconds",
            &["0.01", "0.05", "0.1", "0.5", "1", "5", "10", "30", "60", "300", "+Inf"],
        );
    }

    async fn only_metrics_answers_and_the_endpoint_stops_with_the_server(app: TestApp) {
        let mut app = app;
        let addr = app.metrics_addr.expect("metrics");
        assert_ne!(addr.port(), 0, "the real port");
        assert_eq!(http(addr, "GET", "/").await.status, 404);
        assert_eq!(http(addr, "GET", "/metrics/x").await.status, 404);
        let post = http(addr, "POST", "/metrics").await;
        assert_eq!(post.status, 405);
        assert_eq!(post.headers["allow"], "GET, HEAD");
        assert_eq!(http(addr, "HEAD", "/metrics").await.status, 200);

        // The server's run returns once the endpoint's socket is closed.
        app.stop_and_wait(WAIT).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "/metrics still answers after the server stopped"
        );
    }
}

on_both_databases! {
    async fn a_server_without_metrics_listen_serves_no_metrics(app: TestApp) {
        assert_eq!(app.metrics_addr, None);
        let created = create_customer(&mut app.customers(), named("Không Đo")).await;
        get_customer(&mut app.customers(), &created.id).await;
    }
}
