//! `--query-timeout`: a statement that runs past it is stopped by the
//! database itself (PostgreSQL cancels it, SQLite interrupts it) and the
//! call gets DEADLINE_EXCEEDED; background upkeep's connections have a
//! limit of their own.
//!
//! Nothing here relies on a statement being a little slow: the statements
//! that must be cut count to 10⁹ (minutes of work on any machine) under
//! limits of a fraction of a second, and those that must not be cut either
//! take microseconds under a limit of a second or run on connections whose
//! limit is minutes.

use std::time::{Duration, Instant};

use crm_classify::{
    Application, Config,
    error::AppError,
    pb::ListCustomersRequest,
    store::db::connection::{self as database, ServiceConnections},
};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, TransactionTrait};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::fixtures::{create_customer, named};
use crate::helpers::{Backend, Options, TestApp, expect_code, postgres_database_url};

/// Well above how long a cut statement takes to come back, even on a busy
/// machine; far below how long the statement would run if not cut.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A statement that counts to `n`, marked with `marker` so that
/// `pg_stat_activity` can find it.
fn count_to(backend: DatabaseBackend, n: u64, marker: &str) -> Statement {
    Statement::from_string(
        backend,
        format!(
            "/* {marker} */ WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {n}) \
             SELECT count(*) AS total FROM c"
        ),
    )
}

/// Minutes of work on any machine.
const FOREVER: u64 = 1_000_000_000;

fn marker() -> String {
    format!("query-timeout-{}", uuid::Uuid::now_v7().simple())
}

/// A database for `backend` (a SQLite file of the test's own, or this
/// run's PostgreSQL database) with the service's connections to it, its
/// requests' statements limited to `query_timeout`; `None` when PostgreSQL
/// is not configured.
async fn service_connections(
    backend: Backend,
    query_timeout: Duration,
) -> Option<(ServiceConnections, String, Option<tempfile::TempDir>)> {
    let (url, dir) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("crm.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => (postgres_database_url()?, None),
    };
    let connections = database::open_service(&url, true, query_timeout)
        .await
        .expect("open the service's connections");
    Some((connections, url, dir))
}

/// Runs the endless count on `db` and expects it cut within
/// [`ANSWER_WITHIN`], as DEADLINE_EXCEEDED.
async fn expect_cut(db: &impl ConnectionTrait, marker: &str) {
    let started = Instant::now();
    let result = tokio::time::timeout(
        ANSWER_WITHIN * 2,
        db.query_one_raw(count_to(db.get_database_backend(), FOREVER, marker)),
    )
    .await
    .unwrap_or_else(|_| panic!("the statement was not cut within {:?}", ANSWER_WITHIN * 2));
    let took = started.elapsed();
    let err = result.expect_err("counting to 10⁹ must not finish under the limit");
    let error = AppError::from(err);
    assert!(
        matches!(error, AppError::DeadlineExceeded(_)),
        "expected the statement time limit, got {error:?}"
    );
    let status = Status::from(error);
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("query timeout") && status.message().len() < 1000,
        "{status:?}"
    );
    assert!(
        took < ANSWER_WITHIN,
        "the statement was cut only after {took:?}"
    );
}

/// Counts to `n` on `db`; the statement must succeed.
async fn count(db: &impl ConnectionTrait, n: u64) -> i64 {
    db.query_one_raw(count_to(db.get_database_backend(), n, "short"))
        .await
        .unwrap_or_else(|e| panic!("counting to {n}: {e}"))
        .expect("one row")
        .try_get::<i64>("", "total")
        .expect("total")
}

/// On PostgreSQL, checks that no backend still runs the statement marked
/// `marker`. First every connection of `db`'s pool is taken at once (a
/// transaction begun on each): before sqlx sends anything on a connection
/// it reads what the server still owes it, down to the ReadyForQuery that
/// PostgreSQL sends once a cancelled statement has ended. So once each
/// connection has begun, each backend is done with what it ran, and one
/// look at `pg_stat_activity` tells.
async fn expect_nothing_running(db: &sea_orm::DatabaseConnection, url: &str, marker: &str) {
    let open = db.get_postgres_connection_pool().size() as usize;
    let held: Vec<_> = futures::future::join_all((0..open).map(|_| db.begin()))
        .await
        .into_iter()
        .map(|tx| tx.expect("begin on a pooled connection"))
        .collect();
    let admin = Database::connect(url).await.expect("admin connection");
    let running = admin
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT count(*) AS running FROM pg_stat_activity \
             WHERE state <> 'idle' AND pid <> pg_backend_pid() AND query LIKE $1",
            [format!("%{marker}%").into()],
        ))
        .await
        .expect("read pg_stat_activity")
        .expect("one row")
        .try_get::<i64>("", "running")
        .expect("running");
    assert_eq!(
        running, 0,
        "backends still run the cancelled statement {marker}"
    );
    admin.close().await.ok();
    for tx in held {
        tx.rollback().await.expect("rollback");
    }
}

async fn close(connections: ServiceConnections) {
    connections.requests.close().await.ok();
    if let Some(writer) = connections.writer {
        writer.close().await.ok();
    }
    if let Some(background) = connections.background {
        background.close().await.ok();
    }
}

/// A statement past the query timeout stops on the database (nothing left
/// running there), comes back as DEADLINE_EXCEEDED well within a second or
/// so, and the pool serves on: again and again, and alongside normal reads.
async fn a_statement_past_the_query_timeout_is_cancelled_and_the_pool_serves_on(backend: Backend) {
    let Some((connections, url, _dir)) =
        service_connections(backend, Duration::from_millis(200)).await
    else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let db = &connections.requests;
    let marker = marker();
    expect_cut(db, &marker).await;
    if backend == Backend::Postgres {
        expect_nothing_running(db, &url, &marker).await;
    }
    assert_eq!(count(db, 1_000).await, 1_000);

    // More endless statements than the pool has connections, at once:
    // each connection is cut and handed back, none is lost.
    let cuts = (0..24).map(|_| expect_cut(db, &marker));
    futures::future::join_all(cuts).await;
    if backend == Backend::Postgres {
        expect_nothing_running(db, &url, &marker).await;
    }
    assert_eq!(count(db, 1_000).await, 1_000);

    // In a read transaction (one connection throughout), SQLite goes on
    // after the cut statement; PostgreSQL has aborted the transaction.
    let tx = db.begin().await.expect("begin");
    expect_cut(&tx, &marker).await;
    if backend == Backend::Sqlite {
        assert_eq!(count(&tx, 1_000).await, 1_000);
    }
    tx.rollback().await.expect("rollback");
    assert_eq!(count(db, 1_000).await, 1_000);
    close(connections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_query_timeout_is_cancelled_on_sqlite() {
    a_statement_past_the_query_timeout_is_cancelled_and_the_pool_serves_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_query_timeout_is_cancelled_on_postgres() {
    a_statement_past_the_query_timeout_is_cancelled_and_the_pool_serves_on(Backend::Postgres).await;
}

/// The limit is each statement's, not the connection's or the
/// transaction's: short statements one after another on one connection,
/// for longer than the limit in all, are never cut.
async fn short_statements_outlast_the_query_timeout_together(backend: Backend) {
    let limit = Duration::from_secs(1);
    let Some((connections, _url, _dir)) = service_connections(backend, limit).await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let tx = connections.requests.begin().await.expect("begin");
    let started = Instant::now();
    let mut statements = 0;
    while started.elapsed() < limit * 5 / 2 {
        assert_eq!(count(&tx, 1_000).await, 1_000);
        statements += 1;
    }
    tx.commit().await.expect("commit");
    assert!(statements > 1, "{statements} statements");
    close(connections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_statements_outlast_the_query_timeout_together_on_sqlite() {
    short_statements_outlast_the_query_timeout_together(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_statements_outlast_the_query_timeout_together_on_postgres() {
    short_statements_outlast_the_query_timeout_together(Backend::Postgres).await;
}

/// Background upkeep's connections (and SQLite's write connection, which
/// the sweep shares) are held to the background limit, not to the query
/// timeout: a statement of a good fraction of a second runs to its end
/// there while the requests' pool cuts statements after a millisecond.
async fn background_connections_are_not_held_to_the_query_timeout(backend: Backend) {
    let Some((connections, _url, _dir)) =
        service_connections(backend, Duration::from_millis(1)).await
    else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    assert_eq!(
        database::background_limit(Duration::from_millis(1)),
        database::BACKGROUND_LIMIT_FLOOR
    );
    expect_cut(&connections.requests, &marker()).await;
    let background = connections.background.as_ref().expect("a background pool");
    assert_eq!(count(background, 300_000).await, 300_000);
    match (&connections.writer, backend) {
        (Some(writer), Backend::Sqlite) => {
            assert_eq!(count(writer, 300_000).await, 300_000)
        }
        (None, Backend::Postgres) => {}
        (writer, _) => panic!(
            "{backend:?} has a write connection of its own: {}",
            writer.is_some()
        ),
    }
    close(connections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_connections_are_not_held_to_the_query_timeout_on_sqlite() {
    background_connections_are_not_held_to_the_query_timeout(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_connections_are_not_held_to_the_query_timeout_on_postgres() {
    background_connections_are_not_held_to_the_query_timeout(Backend::Postgres).await;
}

/// A server started with `--query-timeout` answers normal calls.
async fn calls_answer_normally_under_a_configured_query_timeout(backend: Backend) {
    let options = Options {
        query_timeout: Duration::from_secs(3),
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let mut customers = app.customers();
    let created = create_customer(&mut customers, named("Trần Thị Thời Hạn")).await;
    let listed = customers
        .list_customers(ListCustomersRequest {
            query: "thoi han".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        listed
            .customers
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        [created.id.as_str()]
    );
    crate::helpers::still_answers(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_answer_normally_under_a_configured_query_timeout_on_sqlite() {
    calls_answer_normally_under_a_configured_query_timeout(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_answer_normally_under_a_configured_query_timeout_on_postgres() {
    calls_answer_normally_under_a_configured_query_timeout(Backend::Postgres).await;
}

/// Customers copied from `template`, `n` of them, in one statement.
fn copies(backend: DatabaseBackend, template: &str, n: u64) -> String {
    let columns = "tenant_id, name, sort_key, search_text, phone, email, owner_id, source_id, \
                   relationship_id, province, company, revenue, attributes, last_contact_time, \
                   activity_time, profile_completion, revision, create_time, update_time, delete_time";
    let numbers = match backend {
        DatabaseBackend::Postgres => format!("generate_series(1, {n}) AS numbers(i)"),
        _ => format!(
            "(WITH RECURSIVE numbers(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM numbers WHERE i < {n}) \
             SELECT i FROM numbers) AS numbers"
        ),
    };
    format!(
        "INSERT INTO customers (id, {columns}) \
         SELECT c.id || '-' || CAST(numbers.i AS TEXT), {columns_c} FROM customers c, {numbers} \
         WHERE c.id = '{template}'",
        columns_c = columns
            .split(", ")
            .map(|col| format!("c.{}", col.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Through the API: a search that must read a hundred thousand customers
/// under a millisecond's limit is DEADLINE_EXCEEDED, naming the limit; the
/// same search on a server with the default limit answers.
async fn a_search_past_the_query_timeout_is_deadline_exceeded(backend: Backend) {
    // A database of the test's own: the copies stay out of the others' way.
    let (url, _dir, own) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("crm.db").display());
            (url, Some(dir), None)
        }
        Backend::Postgres => {
            let Some((admin, name, url)) =
                crate::helpers::own_postgres_database("query_timeout").await
            else {
                eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
                return;
            };
            (url, None, Some((admin, name)))
        }
    };
    let patient = TestApp::spawn_on_url(backend, url.clone()).await;
    let template = create_customer(&mut patient.customers(), named("Khuôn Mẫu")).await;
    let db = patient.database().await;
    db.execute_unprepared(&copies(db.get_database_backend(), &template.id, 100_000))
        .await
        .expect("copy the customer");
    db.close().await.ok();

    let hasty = TestApp::spawn_on_url_with(
        backend,
        url,
        Options {
            query_timeout: Duration::from_millis(1),
            ..Options::default()
        },
    )
    .await;
    let search = ListCustomersRequest {
        query: "no such customer".into(),
        page_size: 10,
        ..Default::default()
    };
    let started = Instant::now();
    let status = expect_code(
        hasty
            .customers_of(&patient.tenant)
            .list_customers(search.clone())
            .await,
        Code::DeadlineExceeded,
    );
    assert!(started.elapsed() < ANSWER_WITHIN, "{:?}", started.elapsed());
    assert!(
        status
            .message()
            .starts_with("the query took longer than the query timeout (1ms) and was cancelled"),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "QUERY_TIMEOUT");
    assert_eq!(info.metadata["query_timeout_ms"], "1");
    // The server stays responsive: health is SERVING right after.
    let health = tonic_health::pb::health_client::HealthClient::new(hasty.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    drop(hasty);

    let listed = patient
        .customers()
        .list_customers(search)
        .await
        .expect("the same search under the default limit")
        .into_inner();
    assert!(listed.customers.is_empty(), "{listed:?}");
    drop(patient);
    if let Some((admin, name)) = own {
        admin
            .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .expect("drop the test's database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_the_query_timeout_is_deadline_exceeded_on_sqlite() {
    a_search_past_the_query_timeout_is_deadline_exceeded(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_the_query_timeout_is_deadline_exceeded_on_postgres() {
    a_search_past_the_query_timeout_is_deadline_exceeded(Backend::Postgres).await;
}

/// A query timeout PostgreSQL could not take (under a millisecond, which
/// it would read as "none") stops the server from starting.
#[tokio::test]
async fn a_query_timeout_under_a_millisecond_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::from_defaults();
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.database_url = format!("sqlite://{}", dir.path().join("crm.db").display());
    for refused in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_secs(25 * 86_400),
    ] {
        config.query_timeout = refused;
        let err = Application::build(config.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused:?} was accepted"));
        assert!(err.to_string().contains("--query-timeout"), "{err}");
    }
}
