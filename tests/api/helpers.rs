//! The test harness: starts the real server on 127.0.0.1:0 in-process and
//! hands out generated clients that send the test's tenant.
//!
//! SQLite tests get a database file of their own. PostgreSQL tests (when
//! `CRM_TEST_POSTGRES_URL` is set) share one database created for this test
//! run, each test in a tenant of its own; the tenancy rules the tests check
//! are what keep them apart. An unreachable PostgreSQL fails the tests.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use chrono::{TimeZone, Utc};
use crm_classify::{
    Application, Config,
    clock::ManualClock,
    domain::relationship::SeedLocale,
    pb::{
        customer_service_client::CustomerServiceClient, group_service_client::GroupServiceClient,
        relationship_service_client::RelationshipServiceClient,
        source_service_client::SourceServiceClient,
    },
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tonic_types::StatusExt;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Adds the tenant (and optionally the actor) to every call.
#[derive(Clone)]
pub struct Headers {
    tenant: String,
    actor: Option<String>,
}

impl Headers {
    /// Headers naming `tenant`, without an actor.
    pub fn tenant(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            actor: None,
        }
    }
}

impl Interceptor for Headers {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = MetadataValue::try_from(self.tenant.as_str())
            .map_err(|_| Status::internal("bad tenant"))?;
        request.metadata_mut().insert("x-tenant-id", tenant);
        if let Some(actor) = &self.actor {
            let actor = MetadataValue::try_from(actor.as_str())
                .map_err(|_| Status::internal("bad actor"))?;
            request.metadata_mut().insert("x-actor-id", actor);
        }
        Ok(request)
    }
}

/// A channel that sends the test's headers.
pub type Svc = InterceptedService<Channel, Headers>;

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub channel: Channel,
    /// The address the server listens on.
    pub addr: std::net::SocketAddr,
    /// Where the server serves its metrics (`--metrics-listen`), if it does.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub tenant: String,
    pub clock: Arc<ManualClock>,
    /// The server's database, for tests that check what it stores.
    pub database_url: String,
    /// Changes each time the server finishes evaluating a group's rule.
    pub evaluations_finished: tokio::sync::watch::Receiver<u64>,
    /// Changes each time a call gives back what it held of the limits (a
    /// place among the calls in flight, a watch slot).
    pub limits_released: tokio::sync::watch::Receiver<u64>,
    /// Changes each time a round of background upkeep finishes.
    pub upkeep_rounds: tokio::sync::watch::Receiver<u64>,
    stop: Option<oneshot::Sender<()>>,
    /// The server task; it completes when the server has shut down.
    server: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// Options for starting a test server.
#[derive(Clone, Copy)]
pub struct Options {
    pub seed_locale: SeedLocale,
    /// How often the background upkeep (inactivity sweep, retention) runs.
    /// An hour unless a test says otherwise, so that no background sweep
    /// moves customers while a test moves the clock.
    pub sweep_interval: Duration,
    /// `--change-retention`.
    pub change_retention: Duration,
    /// `--handshake-timeout`.
    pub handshake_timeout: Duration,
    /// `--query-timeout`.
    pub query_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed_locale: SeedLocale::En,
            sweep_interval: Duration::from_secs(3600),
            change_retention: Config::from_defaults().change_retention,
            handshake_timeout: Config::from_defaults().handshake_timeout,
            query_timeout: Config::from_defaults().query_timeout,
        }
    }
}

impl TestApp {
    /// Starts a server on `backend`; `None` when PostgreSQL is not configured.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, Options::default()).await
    }

    /// Starts a server with options.
    pub async fn spawn_with(backend: Backend, options: Options) -> Option<Self> {
        Self::spawn_configured(backend, options, &|_| {}).await
    }

    /// Starts a server whose configuration `configure` changes after the
    /// test defaults are set (auth, TLS, limits, metrics).
    pub async fn spawn_with_config(
        backend: Backend,
        configure: impl Fn(&mut Config) + Sync,
    ) -> Option<Self> {
        Self::spawn_configured(backend, Options::default(), &configure).await
    }

    /// Starts a server whose change streams send a heartbeat after
    /// `heartbeat` without an event (the server's default is 15 s).
    pub async fn spawn_with_heartbeat(backend: Backend, heartbeat: Duration) -> Option<Self> {
        Self::spawn_configured(backend, Options::default(), &|config| {
            config.heartbeat_interval = heartbeat;
        })
        .await
    }

    async fn spawn_configured(
        backend: Backend,
        options: Options,
        configure: &(dyn Fn(&mut Config) + Sync),
    ) -> Option<Self> {
        let (database_url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                (
                    format!("sqlite://{}", dir.path().join("crm.db").display()),
                    Some(dir),
                )
            }
            Backend::Postgres => (postgres_database_url()?, None),
        };
        Some(Self::spawn_on(backend, database_url, dir, options, configure).await)
    }

    /// Starts a server on a database of the caller's.
    pub async fn spawn_on_url(backend: Backend, database_url: String) -> Self {
        Self::spawn_on_url_with(backend, database_url, Options::default()).await
    }

    /// Starts a server with options on a database of the caller's.
    pub async fn spawn_on_url_with(
        backend: Backend,
        database_url: String,
        options: Options,
    ) -> Self {
        Self::spawn_on(backend, database_url, None, options, &|_| {}).await
    }

    async fn spawn_on(
        backend: Backend,
        database_url: String,
        dir: Option<tempfile::TempDir>,
        options: Options,
        configure: &(dyn Fn(&mut Config) + Sync),
    ) -> Self {
        let mut config = Config::from_defaults();
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.database_url = database_url.clone();
        config.seed_locale = options.seed_locale;
        config.shutdown_grace = SHUTDOWN_GRACE;
        config.sweep_interval = options.sweep_interval;
        config.change_retention = options.change_retention;
        config.handshake_timeout = options.handshake_timeout;
        config.query_timeout = options.query_timeout;
        configure(&mut config);
        let tls = config.tls_cert.is_some();
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap(),
        ));
        let app = Application::build_with_clock(config, clock.clone())
            .await
            .unwrap_or_else(|e| panic!("server failed to start on {backend:?}: {e}"));
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let evaluations_finished = app.evaluations_finished();
        let limits_released = app.limits_released();
        let upkeep_rounds = app.upkeep_rounds();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("server run");
        });
        let endpoint = Channel::from_shared(format!("http://{addr}")).expect("uri");
        // A TLS server refuses this plaintext channel: its tests make
        // their own, and the harness's stays unused.
        let channel = if tls {
            endpoint.connect_lazy()
        } else {
            endpoint.connect().await.expect("connect to test server")
        };
        Self {
            channel,
            addr,
            metrics_addr,
            tenant: new_tenant(),
            clock,
            database_url,
            evaluations_finished,
            limits_released,
            upkeep_rounds,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// A connection of the test's own to the server's database, for
    /// checking what the server stores.
    pub async fn database(&self) -> DatabaseConnection {
        Database::connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    /// The test tenant's channel, for calls made without a generated client.
    pub fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.headers(&self.tenant))
    }

    fn headers(&self, tenant: &str) -> Headers {
        Headers::tenant(tenant)
    }

    pub fn groups(&self) -> GroupServiceClient<Svc> {
        self.groups_of(&self.tenant)
    }

    pub fn groups_of(&self, tenant: &str) -> GroupServiceClient<Svc> {
        GroupServiceClient::with_interceptor(self.channel.clone(), self.headers(tenant))
    }

    pub fn sources(&self) -> SourceServiceClient<Svc> {
        self.sources_of(&self.tenant)
    }

    pub fn sources_of(&self, tenant: &str) -> SourceServiceClient<Svc> {
        SourceServiceClient::with_interceptor(self.channel.clone(), self.headers(tenant))
    }

    pub fn customers(&self) -> CustomerServiceClient<Svc> {
        self.customers_of(&self.tenant)
    }

    pub fn customers_of(&self, tenant: &str) -> CustomerServiceClient<Svc> {
        CustomerServiceClient::with_interceptor(self.channel.clone(), self.headers(tenant))
    }

    /// A customer client that also sends `x-actor-id: actor`.
    pub fn customers_as(&self, actor: &str) -> CustomerServiceClient<Svc> {
        let headers = Headers {
            tenant: self.tenant.clone(),
            actor: Some(actor.to_owned()),
        };
        CustomerServiceClient::with_interceptor(self.channel.clone(), headers)
    }

    pub fn relationships(&self) -> RelationshipServiceClient<Svc> {
        self.relationships_of(&self.tenant)
    }

    pub fn relationships_of(&self, tenant: &str) -> RelationshipServiceClient<Svc> {
        RelationshipServiceClient::with_interceptor(self.channel.clone(), self.headers(tenant))
    }

    /// A relationship client of the test tenant over a connection of its
    /// own whose HTTP/2 receive windows are `window` bytes, so that a
    /// stream it does not read holds the server back after that much.
    pub async fn relationships_narrow(&self, window: u32) -> RelationshipServiceClient<Svc> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .initial_stream_window_size(window)
            .initial_connection_window_size(window)
            .connect()
            .await
            .expect("connect to test server");
        RelationshipServiceClient::with_interceptor(channel, self.headers(&self.tenant))
    }
}

impl TestApp {
    /// Tells the server to stop, as dropping the TestApp does, but keeps
    /// the channel: calls in flight (open streams) can be seen ending.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and waits (at most `limit`) until it has shut
    /// down; how long that took. Fails the test if it takes longer or the
    /// server task failed.
    pub async fn stop_and_wait(&mut self, limit: Duration) -> Duration {
        let started = std::time::Instant::now();
        self.stop();
        let server = self
            .server
            .take()
            .expect("the server was not waited for yet");
        tokio::time::timeout(limit, server)
            .await
            .unwrap_or_else(|_| panic!("the server was still shutting down after {limit:?}"))
            .expect("the server task");
        started.elapsed()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The test servers' shutdown grace. Long, so that a shutdown that waited
/// for it (instead of ending the calls in flight) stands apart from one
/// that was merely slow on a busy machine: tests expect shutdowns well
/// within half of it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A fresh tenant id, for tests that need a second tenant.
pub fn new_tenant() -> String {
    format!("t-{}", uuid::Uuid::now_v7().simple())
}

static POSTGRES_DB: OnceLock<Option<String>> = OnceLock::new();

/// URL of this run's PostgreSQL database, created on first use; `None` when
/// `CRM_TEST_POSTGRES_URL` is not set. Panics when it is set but unusable.
pub fn postgres_database_url() -> Option<String> {
    POSTGRES_DB
        .get_or_init(|| {
            let base = std::env::var("CRM_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())?;
            // Its own thread and runtime: test runtimes come and go.
            let url = std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(create_run_database(&base))
            })
            .join()
            .expect("creating the PostgreSQL test database");
            Some(url)
        })
        .clone()
}

/// A PostgreSQL database of the caller's own, for tests that drop or
/// break it (the run's shared database must stay whole): an admin
/// connection, its name and its URL. `None` when PostgreSQL is not
/// configured. The caller drops it (`DROP DATABASE … WITH (FORCE)`).
pub async fn own_postgres_database(purpose: &str) -> Option<(DatabaseConnection, String, String)> {
    let base = std::env::var("CRM_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let admin = Database::connect(&base).await.expect("admin connection");
    let name = format!(
        "crm_test_{}_{}_{purpose}_{}",
        Utc::now().timestamp(),
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let url = with_database(&base, &name);
    Some((admin, name, url))
}

/// Runs `test` with the URL of a database of its own on `backend`: a file
/// in a temporary directory, or a PostgreSQL database dropped afterwards
/// (skipped when `CRM_TEST_POSTGRES_URL` is not set).
pub async fn with_own_database(backend: Backend, purpose: &str, test: impl AsyncFnOnce(String)) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            test(format!("sqlite://{}", dir.path().join("crm.db").display())).await;
        }
        Backend::Postgres => {
            let Some((admin, name, url)) = own_postgres_database(purpose).await else {
                eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                return;
            };
            test(url).await;
            admin
                .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop the test's database");
        }
    }
}

/// Undoes, on the database at `url`, the migration `name` and every later
/// one, then migrates again: what they fill from stored rows is filled from
/// those the test wrote, as when an existing database is upgraded.
pub async fn migrate_again_from(url: &str, name: &str) {
    use migrations::{Migrator, MigratorTrait};
    let db = Database::connect(url).await.expect("connect");
    let migrations = Migrator::migrations();
    let first = migrations
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no migration {name}"));
    let since = (migrations.len() - first) as u32;
    Migrator::down(&db, Some(since))
        .await
        .unwrap_or_else(|e| panic!("undo {name} and later: {e}"));
    Migrator::up(&db, None).await.expect("migrate again");
}

fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(i) => &without_query[..scheme_end + i],
        None => without_query,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

async fn create_run_database(base_url: &str) -> String {
    let admin = Database::connect(base_url).await.unwrap_or_else(|e| {
        panic!("CRM_TEST_POSTGRES_URL is set but PostgreSQL at {base_url} is unreachable: {e}")
    });
    let now = Utc::now().timestamp();
    // Drop what earlier runs left behind (older than an hour).
    let stale = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname LIKE 'crm_test_%'",
        ))
        .await
        .expect("list test databases");
    for row in stale {
        let name: String = row.try_get("", "datname").expect("datname");
        let created = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(0);
        if now - created > 3600 {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
    let name = format!("crm_test_{now}_{}", std::process::id());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    with_database(base_url, &name)
}

/// Runs each `async fn NAME(backend: Backend)` of the calling module as a
/// test on SQLite and, when configured, on PostgreSQL: for tests that
/// start servers of their own configuration.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if $crate::helpers::postgres_database_url().is_some() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                } else {
                    eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                }
            }
        }
    )*};
}

/// Runs a test body on SQLite and, when configured, on PostgreSQL; with
/// `(app: TestApp, heartbeat = DURATION)` the server's change streams send
/// a heartbeat after that idle time; with `(app: TestApp, options =
/// OPTIONS)` the server starts with those [`Options`].
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($app:ident: TestApp, heartbeat = $heartbeat:expr) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let $app = $crate::helpers::TestApp::spawn_with_heartbeat($crate::helpers::Backend::Sqlite, $heartbeat).await.expect("sqlite");
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some($app) = $crate::helpers::TestApp::spawn_with_heartbeat($crate::helpers::Backend::Postgres, $heartbeat).await else {
                    eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                    return;
                };
                $body
            }
        }
    )*};
    ($(async fn $name:ident($app:ident: TestApp, options = $options:expr) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let $app = $crate::helpers::TestApp::spawn_with($crate::helpers::Backend::Sqlite, $options).await.expect("sqlite");
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some($app) = $crate::helpers::TestApp::spawn_with($crate::helpers::Backend::Postgres, $options).await else {
                    eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                    return;
                };
                $body
            }
        }
    )*};
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let $app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await.expect("sqlite");
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some($app) = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await else {
                    eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                    return;
                };
                $body
            }
        }
    )*};
}

/// Waits until the server's health for `service` ("" for the server as a
/// whole) reads `expected`, following its `Watch` stream (which sends the
/// status at once and then every change); panics after `limit`.
pub async fn await_health(
    app: &TestApp,
    service: &str,
    expected: tonic_health::ServingStatus,
    limit: Duration,
) {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let expected = tonic_health::pb::health_check_response::ServingStatus::from(expected);
    let deadline = tokio::time::Instant::now() + limit;
    let mut statuses = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner();
    let mut last = None;
    loop {
        let next = tokio::time::timeout_at(deadline, statuses.message())
            .await
            .unwrap_or_else(|_| {
                panic!("health of {service:?} still {last:?}, not {expected:?}, after {limit:?}")
            })
            .expect("the health stream")
            .expect("the health stream stays open");
        if next.status() == expected {
            return;
        }
        last = Some(next.status());
    }
}

/// Fails the test unless the server reports SERVING and answers a normal
/// call of the test tenant.
pub async fn still_answers(app: &TestApp) {
    use crm_classify::pb::ListGroupsRequest;
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    app.groups()
        .list_groups(ListGroupsRequest::default())
        .await
        .expect("a normal call after the hostile ones");
}

/// The error of a call that must fail with `code`.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
) -> Status {
    match result {
        Ok(response) => panic!("expected {code:?}, got OK: {:?}", response.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The `google.rpc.BadRequest` field violations of an INVALID_ARGUMENT status.
fn field_violations(status: &Status) -> Vec<tonic_types::FieldViolation> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries BadRequest details")
        .field_violations
}

/// The `google.rpc.BadRequest` field names of an INVALID_ARGUMENT status.
pub fn violated_fields(status: &Status) -> Vec<String> {
    field_violations(status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// The `reason` codes of an INVALID_ARGUMENT's field violations.
pub fn violation_reasons(status: &Status) -> Vec<String> {
    field_violations(status)
        .into_iter()
        .map(|v| v.reason)
        .collect()
}

/// Runs `n` copies of a call at once and returns their results in order.
pub async fn concurrently<T, F, Fut>(n: usize, call: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(call(i))).collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

/// Runs `call(0)`, …, `call(n - 1)` with at most `limit` of them under way
/// at once and returns their results in order.
pub async fn at_most<T, F, Fut>(limit: usize, n: usize, call: F) -> Vec<T>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = T>,
{
    use futures::stream::{self, StreamExt};
    stream::iter(0..n).map(call).buffered(limit).collect().await
}
