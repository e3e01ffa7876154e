//! Operations: reflection, health, migrations and graceful shutdown of the
//! real binary.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crm_classify::pb::{CreateGroupRequest, GetGroupRequest, Group};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest as AlphaRequest,
    server_reflection_client::ServerReflectionClient as AlphaClient,
    server_reflection_request::MessageRequest as AlphaMessageRequest,
    server_reflection_response::MessageResponse as AlphaMessageResponse,
};

use crate::helpers::{Backend, TestApp};
use crate::on_both_databases;

const SERVICES: [&str; 4] = [
    "crm.v1.GroupService",
    "crm.v1.SourceService",
    "crm.v1.RelationshipService",
    "crm.v1.CustomerService",
];

async fn reflect(app: &TestApp, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let outbound = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut inbound = client
        .server_reflection_info(outbound)
        .await
        .expect("reflection")
        .into_inner();
    let reply = tokio::time::timeout(Duration::from_secs(5), inbound.next())
        .await
        .expect("reflection answers in time")
        .expect("one reply")
        .expect("reply ok");
    reply.message_response.expect("message response")
}

async fn health(app: &TestApp, service: &str) -> Result<ServingStatus, tonic::Status> {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|r| r.into_inner().status())
}

on_both_databases! {
    async fn reflection_lists_every_service_and_describes_every_method(app: TestApp) {
        let MessageResponse::ListServicesResponse(list) = reflect(&app, MessageRequest::ListServices(String::new())).await else {
            panic!("expected a service list");
        };
        let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in SERVICES.iter().copied().chain(["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) {
            assert!(names.contains(expected), "{expected} missing from {names:?}");
        }
        // Older clients (and older grpcurl) speak v1alpha.
        let mut alpha = AlphaClient::new(app.channel.clone());
        let request = tokio_stream::iter([AlphaRequest {
            host: String::new(),
            message_request: Some(AlphaMessageRequest::ListServices(String::new())),
        }]);
        let reply = alpha.server_reflection_info(request).await.expect("v1alpha").into_inner().next().await.expect("reply").expect("ok");
        let Some(AlphaMessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("expected a v1alpha service list");
        };
        let alpha_names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(SERVICES.iter().all(|s| alpha_names.contains(*s)), "{alpha_names:?}");
        // The error details our statuses carry are described too, so that
        // grpcurl -format-error prints them rather than base64.
        for detail in ["google.rpc.BadRequest", "google.rpc.ErrorInfo", "google.rpc.RetryInfo", "google.rpc.Status"] {
            let MessageResponse::FileDescriptorResponse(files) = reflect(&app, MessageRequest::FileContainingSymbol(detail.to_owned())).await else {
                panic!("{detail} cannot be described");
            };
            assert!(!files.file_descriptor_proto.is_empty(), "{detail}");
        }
        for service in SERVICES {
            let MessageResponse::FileDescriptorResponse(files) = reflect(&app, MessageRequest::FileContainingSymbol(service.to_owned())).await else {
                panic!("expected a file for {service}");
            };
            let short = service.trim_start_matches("crm.v1.");
            let descriptor = files.file_descriptor_proto.iter()
                .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("descriptor"))
                .flat_map(|file| file.service)
                .find(|s| s.name() == short)
                .unwrap_or_else(|| panic!("{service} not described"));
            let expected = match short {
                "SourceService" => 7,
                "RelationshipService" => 10,
                "CustomerService" => 18,
                "GroupService" => 10,
                _ => 6,
            };
            assert_eq!(descriptor.method.len(), expected, "{service}");
            for method in &descriptor.method {
                let symbol = format!("{service}.{}", method.name());
                let MessageResponse::FileDescriptorResponse(_) = reflect(&app, MessageRequest::FileContainingSymbol(symbol.clone())).await else {
                    panic!("{symbol} cannot be described");
                };
                for message in [method.input_type(), method.output_type()] {
                    let MessageResponse::FileDescriptorResponse(_) = reflect(&app, MessageRequest::FileContainingSymbol(message.trim_start_matches('.').to_owned())).await else {
                        panic!("{message} cannot be described");
                    };
                }
            }
        }
    }

    async fn health_reports_serving_for_each_service(app: TestApp) {
        for service in SERVICES.iter().copied().chain([""]) {
            assert_eq!(health(&app, service).await.expect("health"), ServingStatus::Serving, "{service}");
        }
        let status = health(&app, "crm.v1.NoSuchService").await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
}

/// Stops PostgreSQL answering for one test database and expects NOT_SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_when_the_database_goes_away() {
    use sea_orm::ConnectionTrait;
    // A database of this test's own, so dropping it disturbs no other test.
    let Some((admin, name, url)) = crate::helpers::own_postgres_database("health").await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let app = TestApp::spawn_on_url(Backend::Postgres, url).await;
    assert_eq!(
        health(&app, "crm.v1.GroupService").await.unwrap(),
        ServingStatus::Serving
    );

    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop database");
    crate::helpers::await_health(
        &app,
        "crm.v1.GroupService",
        tonic_health::ServingStatus::NotServing,
        Duration::from_secs(20),
    )
    .await;
    let status = app
        .groups()
        .get_group(GetGroupRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

/// Starts the real binary and returns it with the address it logged.
fn start_binary(database_url: &str, grace: &str) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-classify"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--shutdown-grace",
            grace,
        ])
        .args(["--database-url", database_url])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start crm-classify");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server logs before exiting")
            .expect("log line");
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("JSON log line: {line}"));
        if entry["message"] == "listening" {
            break entry["address"].as_str().expect("address field").to_owned();
        }
    };
    // Keep draining the logs so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

/// Writers with calls in flight when the server gets SIGTERM.
const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_calls_in_flight_exits_cleanly_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    let (mut child, address) = start_binary(&url, "5s");
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");

    // Each writer says when its first call was acknowledged: from then on
    // it always has a call in flight.
    let (under_way, mut writing) = tokio::sync::mpsc::channel::<()>(WRITERS);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (channel, under_way) = (channel.clone(), under_way.clone());
            tokio::spawn(async move {
                let mut client =
                    crm_classify::pb::group_service_client::GroupServiceClient::new(channel);
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let request = CreateGroupRequest {
                        group: Some(Group {
                            name: format!("w{w}-{i}"),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    };
                    match client.create_group(request).await {
                        Ok(response) => {
                            acknowledged.push(response.into_inner().group.unwrap().id);
                            if acknowledged.len() == 1 {
                                under_way.send(()).await.expect("the test waits");
                            }
                        }
                        Err(status) => {
                            // A call that crossed the server's GOAWAY on the
                            // wire is refused by the HTTP/2 layer, which the
                            // client reports as INTERNAL: never processed,
                            // like the UNAVAILABLE ones.
                            let crossed_goaway = status.code() == Code::Internal
                                && format!("{status:?}").contains("GoAway");
                            assert!(
                                crossed_goaway
                                    || matches!(
                                        status.code(),
                                        Code::Unavailable | Code::Cancelled | Code::Unknown
                                    ),
                                "a call failed with {status:?}"
                            );
                            break;
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    drop(under_way);
    for started in 0..WRITERS {
        tokio::time::timeout(Duration::from_secs(30), writing.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("only {started} of {WRITERS} writers got a call through in 30 s")
            })
            .expect("a writer ended before its first call");
    }
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("wait");
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}, longer than the grace period"
    );

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    assert!(!acknowledged.is_empty(), "calls were in flight");

    // Every acknowledged write is there after a restart.
    let (mut child, address) = start_binary(&url, "1s");
    assert!(
        health_check_command(&address),
        "health-check passes against a running server"
    );
    let mut client = crm_classify::pb::group_service_client::GroupServiceClient::connect(format!(
        "http://{address}"
    ))
    .await
    .expect("connect");
    for id in &acknowledged {
        client
            .get_group(GetGroupRequest { id: id.clone() })
            .await
            .unwrap_or_else(|s| panic!("acknowledged group {id} lost: {s:?}"));
    }
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
    assert!(
        !health_check_command(&address),
        "health-check fails when nothing answers"
    );
}

fn health_check_command(address: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_crm-classify"))
        .args(["health-check", "--listen", address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run health-check")
        .success()
}

#[test]
fn the_migrate_command_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fresh.db");
    let status = Command::new(env!("CARGO_BIN_EXE_crm-classify"))
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", path.display()),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("run migrate");
    assert!(status.success());
    assert!(path.exists(), "the SQLite file was created");
    let status = Command::new(env!("CARGO_BIN_EXE_crm-classify"))
        .args([
            "migrate",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run migrate");
    assert!(!status.success(), "an unreachable database is a failure");
}

/// Intervals of zero would spin: the server refuses to start with them and
/// names the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_intervals_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = || {
        let mut config = crm_classify::config::Config::from_defaults();
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.database_url = format!("sqlite://{}", dir.path().join("crm.db").display());
        config
    };
    let mut no_heartbeat = base();
    no_heartbeat.heartbeat_interval = Duration::ZERO;
    let mut no_sweep = base();
    no_sweep.sweep_interval = Duration::ZERO;
    for (config, flag) in [
        (no_heartbeat, "--heartbeat-interval"),
        (no_sweep, "--sweep-interval"),
    ] {
        match crm_classify::app::Application::build(config).await {
            Ok(_) => panic!("started with {flag} 0"),
            Err(err) => assert!(err.to_string().contains(flag), "{err}"),
        }
    }
    assert!(
        crm_classify::app::Application::build(base()).await.is_ok(),
        "the defaults start"
    );
}
