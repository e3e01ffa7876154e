//! Hostile clients below the generated client: request bytes that are not
//! the protobuf they claim to be, messages over the size limit, sockets
//! that never speak HTTP/2, and a database that lost its schema. Raw
//! requests go out over `h2` with hand-made gRPC frames.

use std::time::Duration;

use crm_classify::{
    entity::{customer_group, tenant},
    pb::{CreateGroupRequest, Group},
};
use prost::{Message, bytes::Bytes};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout},
};
use tonic::{Code, Status, codegen::http};
use tonic_health::ServingStatus;

use crate::helpers::{Backend, Options, TestApp, await_health, new_tenant, own_postgres_database};
use crate::on_both_databases;

const CREATE_GROUP: &str = "/crm.v1.GroupService/CreateGroup";
/// tonic's default largest request message, which the server keeps.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// A name whose bytes the tests overwrite in the encoded request.
const MARKER: &str = "MARKER-NAME";
/// Generous bound for one raw call on a busy machine.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// A CreateGroup request for a group named [`MARKER`], encoded.
fn create_group_bytes() -> Vec<u8> {
    CreateGroupRequest {
        group: Some(Group {
            name: MARKER.to_owned(),
            ..Group::default()
        }),
        ..CreateGroupRequest::default()
    }
    .encode_to_vec()
}

/// `message` as one uncompressed gRPC frame: flag, length, bytes.
fn frame(message: &[u8]) -> Vec<u8> {
    frame_claiming(message.len(), message)
}

/// A frame whose length prefix says `claimed`, whatever follows.
fn frame_claiming(claimed: usize, message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend(u32::try_from(claimed).expect("length").to_be_bytes());
    framed.extend(message);
    framed
}

/// Sends `body` as the whole request body of a gRPC call to `path` for
/// `tenant` over a fresh HTTP/2 connection; returns the call's status (from
/// the headers of a trailers-only answer, else from the trailers).
async fn raw_call(app: &TestApp, path: &str, tenant: &str, body: Vec<u8>) -> Status {
    let call = async {
        let socket = TcpStream::connect(app.addr).await.expect("connect");
        let (client, connection) = h2::client::handshake(socket).await.expect("handshake");
        tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");
        let request = http::Request::post(format!("http://{}{path}", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-tenant-id", tenant)
            .body(())
            .expect("request");
        let (response, mut stream) = client.send_request(request, false).expect("send");
        stream.send_data(Bytes::from(body), true).expect("body");
        let response = response.await.expect("response");
        if let Some(status) = Status::from_header_map(response.headers()) {
            return status;
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("response data");
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body
            .trailers()
            .await
            .expect("trailers")
            .expect("trailers sent");
        Status::from_header_map(&trailers).expect("grpc-status in the trailers")
    };
    timeout(CALL_LIMIT, call)
        .await
        .expect("the server answers in time")
}

/// Checks that `tenant` left no trace: not provisioned, no group.
async fn assert_nothing_written(app: &TestApp, tenant_id: &str) {
    let db = app.database().await;
    let tenants = tenant::Entity::find_by_id(tenant_id.to_owned())
        .count(&db)
        .await
        .expect("count tenants");
    let groups = customer_group::Entity::find()
        .filter(customer_group::Column::TenantId.eq(tenant_id))
        .count(&db)
        .await
        .expect("count groups");
    assert_eq!(
        (tenants, groups),
        (0, 0),
        "a refused request wrote something"
    );
}

/// Sends `body` to CreateGroup for a fresh tenant and checks the answer is
/// `code`, short, without the request's bytes, that nothing was written and
/// that the server still answers health checks.
async fn assert_refused(app: &TestApp, body: Vec<u8>, code: Code) -> Status {
    let tenant = new_tenant();
    let status = raw_call(app, CREATE_GROUP, &tenant, body).await;
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().len() < 1024, "{status:?}");
    assert!(
        !status.message().contains("MARKER"),
        "echoes the request: {status:?}"
    );
    assert_nothing_written(app, &tenant).await;
    crm_classify::health::check(app.addr)
        .await
        .expect("still SERVING");
    status
}

on_both_databases! {
    async fn the_raw_client_gets_ok_for_a_well_formed_request(app: TestApp) {
        // The control: the same hand-made frame, untouched, creates a group,
        // so the refusals below are about the bytes, not the harness.
        let tenant = new_tenant();
        let status = raw_call(&app, CREATE_GROUP, &tenant, frame(&create_group_bytes())).await;
        assert_eq!(status.code(), Code::Ok, "{status:?}");
        let groups = customer_group::Entity::find()
            .filter(customer_group::Column::TenantId.eq(tenant.as_str()))
            .count(&app.database().await)
            .await
            .expect("count groups");
        assert_eq!(groups, 1);
    }

    async fn a_string_field_of_invalid_utf8_is_invalid_argument(app: TestApp) {
        let mut message = create_group_bytes();
        let at = message
            .windows(MARKER.len())
            .position(|w| w == MARKER.as_bytes())
            .expect("the name's bytes");
        message[at..at + MARKER.len()].fill(0xFF);
        let status = assert_refused(&app, frame(&message), Code::InvalidArgument).await;
        assert!(status.message().contains("UTF-8"), "{status:?}");
    }

    async fn a_truncated_message_is_invalid_argument(app: TestApp) {
        let message = create_group_bytes();
        // Cut inside the name: its length says more bytes than follow.
        assert_refused(&app, frame(&message[..message.len() - 3]), Code::InvalidArgument).await;
    }

    async fn a_field_of_the_wrong_wire_type_is_invalid_argument(app: TestApp) {
        let mut message = create_group_bytes();
        // Field 1 (`group`, length-delimited) retagged as a varint.
        assert_eq!(message[0], 0x0A, "field 1, length-delimited");
        message[0] = 0x08;
        assert_refused(&app, frame(&message), Code::InvalidArgument).await;
    }

    async fn a_body_that_ends_inside_its_frame_is_invalid_argument(app: TestApp) {
        let message = create_group_bytes();
        let body = frame_claiming(message.len() + 100, &message);
        assert_refused(&app, body, Code::InvalidArgument).await;
    }

    async fn a_message_over_the_size_limit_is_resource_exhausted(app: TestApp) {
        // The length prefix is refused before the body is read, so the
        // first bytes of the message are enough to send.
        let body = frame_claiming(MAX_MESSAGE + 1, &create_group_bytes());
        assert_refused(&app, body, Code::ResourceExhausted).await;
    }
}

/// A short handshake timeout, so the test waits little.
fn short_handshake() -> Options {
    Options {
        handshake_timeout: Duration::from_millis(500),
        ..Options::default()
    }
}

/// Waits until the server closes `socket` (EOF or reset), reading what it
/// sends meanwhile (its own HTTP/2 settings); panics after ten handshake
/// timeouts. Returns how long that took.
async fn await_close(socket: &mut TcpStream, handshake_timeout: Duration) -> Duration {
    let started = Instant::now();
    let closed = async {
        let mut buf = [0u8; 256];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
                    return;
                }
            }
        }
    };
    timeout(handshake_timeout * 10, closed)
        .await
        .expect("the server closes a connection that sent no preface");
    started.elapsed()
}

on_both_databases! {
    async fn connections_without_the_http2_preface_are_closed_after_the_handshake_timeout(app: TestApp, options = short_handshake()) {
        let handshake_timeout = short_handshake().handshake_timeout;
        // A connection that finished its handshake before the deadline.
        let socket = TcpStream::connect(app.addr).await.expect("connect");
        let (client, connection) = h2::client::handshake(socket).await.expect("handshake");
        let connection = tokio::spawn(connection);

        let mut silent = TcpStream::connect(app.addr).await.expect("connect");
        let mut partial = TcpStream::connect(app.addr).await.expect("connect");
        partial.write_all(b"PRI * HTTP").await.expect("part of the preface");

        let waited = await_close(&mut silent, handshake_timeout).await;
        assert!(waited >= handshake_timeout / 2, "closed after {waited:?}, before the timeout");
        await_close(&mut partial, handshake_timeout).await;

        // The established connection outlived the deadline and still works.
        assert!(!connection.is_finished(), "an established connection was closed");
        let mut client = client.ready().await.expect("the established connection is usable");
        let request = http::Request::post(format!("http://{}/grpc.health.v1.Health/Check", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, mut stream) = client.send_request(request, false).expect("send");
        stream.send_data(Bytes::from(frame(&[])), true).expect("body");
        let response = timeout(CALL_LIMIT, response).await.expect("in time").expect("response");
        assert_eq!(response.status(), http::StatusCode::OK);
        crm_classify::health::check(app.addr).await.expect("still SERVING");
    }
}

/// SQLite: the schema's record dropped behind the server's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_when_the_schema_is_gone_on_sqlite() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let limit = Duration::from_secs(30);
    await_health(&app, "", ServingStatus::Serving, limit).await;
    app.database()
        .await
        .execute_unprepared("DROP TABLE seaql_migrations")
        .await
        .expect("drop the migrations table");
    await_health(&app, "", ServingStatus::NotServing, limit).await;
    await_health(
        &app,
        "crm.v1.CustomerService",
        ServingStatus::NotServing,
        limit,
    )
    .await;
}

/// PostgreSQL: the database dropped and re-created empty under the same
/// name (in a database of the test's own); SERVING again once migrated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_when_the_schema_is_gone_on_postgres() {
    let Some((admin, name, url)) = own_postgres_database("schema").await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let mut app = TestApp::spawn_on_url(Backend::Postgres, url.clone()).await;
    let limit = Duration::from_secs(30);
    await_health(&app, "", ServingStatus::Serving, limit).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop database");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("re-create it empty");
    await_health(&app, "", ServingStatus::NotServing, limit).await;
    await_health(
        &app,
        "crm.v1.GroupService",
        ServingStatus::NotServing,
        limit,
    )
    .await;

    crm_classify::store::db::connection::migrate_url(&url)
        .await
        .expect("migrate the new database");
    await_health(&app, "", ServingStatus::Serving, limit).await;

    app.stop_and_wait(Duration::from_secs(20)).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop the test's database");
}
