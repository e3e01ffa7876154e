//! The limits of issue 18 over gRPC: a tenant over its call rate waits
//! exactly what RetryInfo says while other tenants go on; a request
//! message at the size limit passes and one byte more is refused; calls
//! over the server's limit in flight are shed at once; one watch over a
//! tenant's cap is refused until one closes. Health answers SERVING
//! throughout each.

use std::time::{Duration, Instant};

use crm_classify::pb::{
    ImportCustomersRequest, ImportMode, ImportOptions, ListGroupsRequest, ListGroupsResponse,
    WatchGroupMembershipChangesRequest, WatchRelationshipChangesRequest,
    import_customers_request::Payload,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, codegen::http::uri::PathAndQuery};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_prost::ProstCodec;
use tonic_types::StatusExt;

use crate::helpers::{Backend, TestApp, concurrently, expect_code, new_tenant};

/// Generous bound for what happens at once on an idle machine (a freed
/// slot seen, a refused call answered).
const PROMPTLY: Duration = Duration::from_secs(10);

crate::on_both_backends!(
    a_tenant_over_its_rate_waits_the_retry_delay_while_other_tenants_and_health_go_on,
    a_request_message_at_the_size_limit_passes_and_one_byte_more_is_resource_exhausted,
    calls_over_the_limit_in_flight_are_shed_at_once_until_one_ends,
    one_watch_over_the_tenant_cap_is_refused_until_one_closes,
);

/// Starts a server with `configure`d limits; `None` (the test is skipped)
/// when PostgreSQL is not configured.
async fn spawn(
    backend: Backend,
    configure: impl Fn(&mut crm_classify::Config) + Sync,
) -> Option<TestApp> {
    let app = TestApp::spawn_with_config(backend, configure).await;
    if app.is_none() {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
    }
    app
}

/// The server's health, asked now.
async fn health(app: &TestApp) -> ServingStatus {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

/// A normal call of `tenant`.
async fn list_groups(app: &TestApp, tenant: &str) -> Result<ListGroupsResponse, Status> {
    app.groups_of(tenant)
        .list_groups(ListGroupsRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Runs `release` (which ends a call the server holds a place or a slot
/// for) and waits until the server has given that back: the client sees
/// no event of it, the server's limits tell one.
async fn released_after(app: &TestApp, what: &str, release: impl FnOnce()) {
    let mut released = app.limits_released.clone();
    released.mark_unchanged();
    release();
    tokio::time::timeout(PROMPTLY, released.changed())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing given back within {PROMPTLY:?}"))
        .expect("the server is running");
}

/// The ErrorInfo reason of `status`.
fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo: {status:?}"))
        .reason
}

/// One call per two seconds, no burst, on the test server's manual clock:
/// time moves only when the test moves it.
async fn a_tenant_over_its_rate_waits_the_retry_delay_while_other_tenants_and_health_go_on(
    backend: Backend,
) {
    let Some(app) = spawn(backend, |config| {
        config.tenant_rate = 0.5;
        config.tenant_burst = Some(1);
    })
    .await
    else {
        return;
    };
    list_groups(&app, &app.tenant)
        .await
        .expect("the first call");
    // A flood of the tenant's calls, and health asked while it lasts.
    let flooding = {
        let groups = app.groups();
        concurrently(20, move |_| {
            let mut groups = groups.clone();
            async move { groups.list_groups(ListGroupsRequest::default()).await }
        })
    };
    let (flood, status) = tokio::join!(flooding, health(&app));
    assert_eq!(status, ServingStatus::Serving);
    let mut refused = Vec::new();
    for result in flood {
        refused.push(expect_code(result, Code::ResourceExhausted));
    }
    let status = refused.pop().expect("refused calls");
    let details = status.get_error_details();
    let delay = details
        .retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo: {status:?}"));
    assert_eq!(delay, Duration::from_secs(2), "the clock has not moved");
    let violations = &details.quota_failure().expect("QuotaFailure").violations;
    assert_eq!(violations[0].subject, format!("tenant:{}", app.tenant));
    assert_eq!(reason(&status), "TENANT_RATE_LIMITED");
    assert!(
        status.message().contains(&app.tenant) && status.message().contains("retry after"),
        "{status:?}"
    );

    // Another tenant has its own rate.
    list_groups(&app, &new_tenant())
        .await
        .expect("another tenant");
    // Just before the delay told the tenant is still over its rate; at it,
    // it passes again; then it is over its rate again.
    let step = Duration::from_millis(1);
    app.clock
        .advance(chrono::Duration::from_std(delay - step).expect("delay"));
    expect_code(
        app.groups().list_groups(ListGroupsRequest::default()).await,
        Code::ResourceExhausted,
    );
    app.clock
        .advance(chrono::Duration::from_std(step).expect("step"));
    list_groups(&app, &app.tenant)
        .await
        .expect("after the retry delay");
    expect_code(
        app.groups().list_groups(ListGroupsRequest::default()).await,
        Code::ResourceExhausted,
    );
    assert_eq!(health(&app).await, ServingStatus::Serving);
}

/// A message only of a field ListGroupsRequest does not have (number
/// 1000), which the server's decoder skips: its size is the test's to
/// choose, byte for byte.
#[derive(Clone, PartialEq, prost::Message)]
struct Padding {
    #[prost(bytes = "vec", tag = "1000")]
    padding: Vec<u8>,
}

/// A [`Padding`] whose encoding is exactly `size` bytes.
fn padded_to(size: usize) -> Padding {
    use prost::Message;
    let mut message = Padding {
        padding: vec![b'x'; size],
    };
    while message.encoded_len() > size {
        message.padding.pop();
    }
    assert_eq!(message.encoded_len(), size, "no padding fits exactly");
    message
}

/// ListGroups sent a message of exactly `size` bytes.
async fn list_groups_of_size(app: &TestApp, size: usize) -> Result<ListGroupsResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(app.svc());
    grpc.ready().await.expect("the channel is ready");
    grpc.unary(
        tonic::Request::new(padded_to(size)),
        PathAndQuery::from_static("/crm.v1.GroupService/ListGroups"),
        ProstCodec::<Padding, ListGroupsResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn a_request_message_at_the_size_limit_passes_and_one_byte_more_is_resource_exhausted(
    backend: Backend,
) {
    const LIMIT: usize = 64 * 1024;
    let Some(app) = spawn(backend, |config| config.max_request_bytes = LIMIT).await else {
        return;
    };
    list_groups_of_size(&app, LIMIT)
        .await
        .expect("a message of exactly the limit");
    let status = list_groups_of_size(&app, LIMIT + 1)
        .await
        .expect_err("a byte over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("the request message is larger than the server accepts"),
        "{status:?}"
    );
    assert!(status.message().contains(&LIMIT.to_string()), "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "REQUEST_TOO_LARGE");
    assert_eq!(info.metadata["max_request_bytes"], LIMIT.to_string());
    assert_eq!(health(&app).await, ServingStatus::Serving);
    list_groups(&app, &app.tenant).await.expect("a normal call");
}

/// With one call allowed in flight, an import whose answer has begun (its
/// response headers are in: the server holds the call) takes the only
/// place; every other call is UNAVAILABLE at once, with RetryInfo, while
/// health answers and change streams still open. Once the import is gone
/// calls pass again.
async fn calls_over_the_limit_in_flight_are_shed_at_once_until_one_ends(backend: Backend) {
    let Some(app) = spawn(backend, |config| config.max_concurrent_calls = 1).await else {
        return;
    };
    list_groups(&app, &app.tenant)
        .await
        .expect("nothing in flight yet");

    let (sender, requests) = mpsc::channel(1);
    sender
        .send(ImportCustomersRequest {
            payload: Some(Payload::Options(ImportOptions {
                mode: ImportMode::Create as i32,
                dry_run: true,
                ..Default::default()
            })),
        })
        .await
        .expect("queue the options");
    let import = app
        .customers()
        .import_customers(ReceiverStream::new(requests))
        .await
        .expect("the import starts")
        .into_inner();

    let started = Instant::now();
    let flooding = {
        let groups = app.groups_of(&new_tenant());
        concurrently(10, move |_| {
            let mut groups = groups.clone();
            async move { groups.list_groups(ListGroupsRequest::default()).await }
        })
    };
    let (flood, status) = tokio::join!(flooding, health(&app));
    assert_eq!(status, ServingStatus::Serving);
    for result in flood {
        let status = expect_code(result, Code::Unavailable);
        assert_eq!(
            status.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(crm_classify::limits::SHED_RETRY_DELAY),
            "{status:?}"
        );
        assert_eq!(reason(&status), "SERVER_OVERLOADED");
    }
    assert!(started.elapsed() < PROMPTLY, "shed calls waited");
    let status = expect_code(
        app.groups().list_groups(ListGroupsRequest::default()).await,
        Code::Unavailable,
    );
    assert!(status.message().contains("retry after"), "{status:?}");
    let _watch = app
        .relationships()
        .watch_relationship_changes(WatchRelationshipChangesRequest::default())
        .await
        .expect("a change stream takes no place among the calls");

    released_after(&app, "the import's place", || {
        drop(import);
        drop(sender);
    })
    .await;
    list_groups(&app, &app.tenant)
        .await
        .expect("a call passes once the import is gone");
    assert_eq!(health(&app).await, ServingStatus::Serving);
}

async fn one_watch_over_the_tenant_cap_is_refused_until_one_closes(backend: Backend) {
    let Some(app) = spawn(backend, |config| config.max_watches_per_tenant = 2).await else {
        return;
    };
    let watch_relationships = || async {
        app.relationships()
            .watch_relationship_changes(WatchRelationshipChangesRequest::default())
            .await
            .map(tonic::Response::into_inner)
    };
    // The two change streams count together.
    let first = watch_relationships().await.expect("the first watch");
    let _second = app
        .groups()
        .watch_group_membership_changes(WatchGroupMembershipChangesRequest::default())
        .await
        .expect("the second watch");

    let (refused, status) = tokio::join!(watch_relationships(), health(&app));
    assert_eq!(status, ServingStatus::Serving);
    let refused = refused.map(|_| ()).expect_err("a third watch");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let violations = &refused
        .get_details_quota_failure()
        .expect("QuotaFailure")
        .violations;
    assert_eq!(violations[0].subject, format!("tenant:{}", app.tenant));
    assert_eq!(reason(&refused), "TOO_MANY_WATCHES");
    assert!(refused.message().contains("close one"), "{refused:?}");

    // Another tenant has a cap of its own.
    let _other = app
        .relationships_of(&new_tenant())
        .watch_relationship_changes(WatchRelationshipChangesRequest::default())
        .await
        .expect("another tenant's watch");

    // Closing one frees its slot.
    released_after(&app, "the first watch's slot", || drop(first)).await;
    let third = watch_relationships()
        .await
        .expect("a watch opens once one is closed");

    // A watch its handler refuses holds no slot: it gives it back before
    // its answer is sent. Once the slot of a closed watch is free, three
    // refused watches in a row leave it free.
    released_after(&app, "the third watch's slot", || drop(third)).await;
    let bad = WatchRelationshipChangesRequest {
        relationship_ids: vec!["not an id".into()],
        ..Default::default()
    };
    let watch_bad = || async {
        app.relationships()
            .watch_relationship_changes(bad.clone())
            .await
    };
    for _ in 0..3 {
        expect_code(watch_bad().await, Code::InvalidArgument);
    }
    let _fourth = watch_relationships()
        .await
        .expect("refused watches left the slot free");
    expect_code(watch_bad().await, Code::ResourceExhausted);
    assert_eq!(health(&app).await, ServingStatus::Serving);
}
