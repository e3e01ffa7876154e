//! Test fixtures shared by the test files: client types, request builders
//! and one-call helpers that create, read and count through the API. The
//! server harness (starting servers, handing out clients) is in `helpers`.

use chrono::{DateTime, Utc};
use crm_classify::pb::watch_relationship_changes_response::Event;
use crm_classify::pb::{
    ApplyInactivityRulesRequest, ApplyInactivityRulesResponse, ChangeRelationshipRequest,
    ChangeRelationshipResponse, ContactChannel, CountCustomersByRelationshipRequest,
    CountCustomersByRelationshipResponse, CreateCustomerRequest, CreateGroupRequest,
    CreateRelationshipRequest, CreateSourceRequest, Customer, DeleteCustomerRequest,
    DeleteRelationshipRequest, DeleteRelationshipResponse, GetCustomerRequest, GetGroupRequest,
    GetRelationshipRequest, GetSourceRequest, Group, ListCustomersRequest, ListCustomersResponse,
    ListGroupsRequest, ListRelationshipHistoryRequest, ListRelationshipHistoryResponse,
    ListRelationshipsRequest, ListSourcesRequest, RecordContactRequest, Relationship,
    RelationshipChange, RestoreCustomerRequest, Source, UpdateCustomerRequest,
    UpdateRelationshipRequest, customer_service_client::CustomerServiceClient,
    group_service_client::GroupServiceClient,
    relationship_service_client::RelationshipServiceClient,
    source_service_client::SourceServiceClient,
};
use crm_classify::pb::{
    ImportCustomersRequest, ImportOptions, ImportRow, ImportRowBatch, ImportRowResult,
    ImportSummary, import_customers_request::Payload,
};
use prost_types::FieldMask;
use tonic::{Response, Status};

use crate::helpers::{Svc, TestApp, at_most};

/// A CustomerService client of the test harness.
pub type Customers = CustomerServiceClient<Svc>;
/// A GroupService client of the test harness.
pub type Groups = GroupServiceClient<Svc>;
/// A SourceService client of the test harness.
pub type Sources = SourceServiceClient<Svc>;
/// A RelationshipService client of the test harness.
pub type Relationships = RelationshipServiceClient<Svc>;

/// The codes of the relationships every new tenant is seeded with, in order.
pub const SEEDED: [&str; 7] = [
    "NEW",
    "APPROACHED",
    "HOT",
    "POTENTIAL",
    "LOST",
    "CLOSED",
    "DONT_FORGET",
];

/// An update mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// An id no row has.
pub fn unknown_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// Customers.

/// A customer with only its name set.
pub fn named(name: &str) -> Customer {
    Customer {
        name: name.to_owned(),
        ..Default::default()
    }
}

/// A CreateCustomer request for `customer` with a reason and a request id.
pub fn create_request_with(
    customer: Customer,
    reason: &str,
    request_id: &str,
) -> CreateCustomerRequest {
    CreateCustomerRequest {
        customer: Some(customer),
        request_id: request_id.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A CreateCustomer request for `customer`, without reason or request id.
pub fn create_request(customer: Customer) -> CreateCustomerRequest {
    create_request_with(customer, "", "")
}

/// Creates `customer`; the call must succeed.
pub async fn create_customer(client: &mut Customers, customer: Customer) -> Customer {
    client
        .create_customer(create_request(customer))
        .await
        .expect("create customer")
        .into_inner()
        .customer
        .expect("customer")
}

/// Reads customer `id`; the call must succeed.
pub async fn get_customer(client: &mut Customers, id: &str) -> Customer {
    client
        .get_customer(GetCustomerRequest { id: id.to_owned() })
        .await
        .expect("get customer")
        .into_inner()
        .customer
        .expect("customer")
}

/// An UpdateCustomer request setting `paths` from `customer`, without reason.
pub fn update_request(customer: Customer, paths: &[&str]) -> UpdateCustomerRequest {
    UpdateCustomerRequest {
        customer: Some(customer),
        update_mask: mask(paths),
        reason: String::new(),
    }
}

/// A ChangeRelationship request without reason or etag.
pub fn change_request(customer_id: &str, relationship_id: &str) -> ChangeRelationshipRequest {
    ChangeRelationshipRequest {
        customer_id: customer_id.to_owned(),
        relationship_id: relationship_id.to_owned(),
        reason: String::new(),
        etag: String::new(),
    }
}

/// Moves a customer to `relationship_id`; the call must succeed.
pub async fn change(
    client: &mut Customers,
    customer_id: &str,
    relationship_id: &str,
) -> ChangeRelationshipResponse {
    client
        .change_relationship(change_request(customer_id, relationship_id))
        .await
        .expect("change relationship")
        .into_inner()
}

/// The first 1000 rows of a customer's relationship history, as answered.
pub async fn history_response(
    client: &mut Customers,
    customer_id: &str,
) -> ListRelationshipHistoryResponse {
    client
        .list_relationship_history(ListRelationshipHistoryRequest {
            customer_id: customer_id.to_owned(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("list relationship history")
        .into_inner()
}

/// The first 1000 rows of a customer's relationship history.
pub async fn history(client: &mut Customers, customer_id: &str) -> Vec<RelationshipChange> {
    history_response(client, customer_id).await.changes
}

/// Soft-deletes customer `id`; the call must succeed.
pub async fn delete_customer(client: &mut Customers, id: &str) -> Customer {
    client
        .delete_customer(DeleteCustomerRequest {
            id: id.to_owned(),
            etag: String::new(),
        })
        .await
        .expect("delete customer")
        .into_inner()
        .customer
        .expect("customer")
}

/// Restores customer `id`, as answered.
pub async fn restore_customer(
    client: &mut Customers,
    id: &str,
) -> Result<Response<Customer>, Status> {
    client
        .restore_customer(RestoreCustomerRequest {
            id: id.to_owned(),
            etag: String::new(),
        })
        .await
        .map(|r| Response::new(r.into_inner().customer.expect("customer")))
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Records a call with customer `id` (made at `at`, or now); returns the
/// customer's relationship after it.
pub async fn record_contact(
    customers: &mut Customers,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> String {
    customers
        .record_contact(RecordContactRequest {
            customer_id: id.into(),
            channel: ContactChannel::Call as i32,
            note: String::new(),
            contact_time: at.map(timestamp),
        })
        .await
        .expect("record contact")
        .into_inner()
        .customer
        .expect("customer")
        .relationship_id
}

/// Every page ListCustomers answers for `request`, following the page tokens.
pub async fn list_pages(
    client: &mut Customers,
    mut request: ListCustomersRequest,
) -> Vec<ListCustomersResponse> {
    let mut pages = Vec::new();
    loop {
        let page = client
            .list_customers(request.clone())
            .await
            .expect("list customers")
            .into_inner();
        let next_page_token = page.next_page_token.clone();
        pages.push(page);
        if next_page_token.is_empty() {
            break;
        }
        request.page_token = next_page_token;
    }
    pages
}

/// The `total_size` ListCustomers reports for `request` (asked for one row).
pub async fn total(client: &mut Customers, request: ListCustomersRequest) -> i64 {
    client
        .list_customers(ListCustomersRequest {
            page_size: 1,
            ..request
        })
        .await
        .expect("list customers")
        .into_inner()
        .total_size
}

/// Customers stored in the tenant, deleted or not.
pub async fn stored(client: &mut Customers) -> i64 {
    total(
        client,
        ListCustomersRequest {
            show_deleted: true,
            ..Default::default()
        },
    )
    .await
}

/// The summary bar (CountCustomersByRelationship) for `request`.
pub async fn count(
    client: &mut Customers,
    request: CountCustomersByRelationshipRequest,
) -> CountCustomersByRelationshipResponse {
    client
        .count_customers_by_relationship(request)
        .await
        .expect("count customers")
        .into_inner()
}

// Relationships.

/// The relationships ListRelationships shows by default, in position order.
pub async fn relationships(client: &mut Relationships) -> Vec<Relationship> {
    client
        .list_relationships(ListRelationshipsRequest::default())
        .await
        .expect("list relationships")
        .into_inner()
        .relationships
}

/// Creates `relationship`; the call must succeed. Returns its id.
pub async fn new_relationship(app: &TestApp, relationship: Relationship) -> String {
    app.relationships()
        .create_relationship(CreateRelationshipRequest {
            relationship: Some(relationship),
            request_id: String::new(),
        })
        .await
        .expect("create relationship")
        .into_inner()
        .relationship
        .expect("relationship")
        .id
}

/// Updates the fields `paths` of `relationship`; the call must succeed.
pub async fn update_relationship(app: &TestApp, relationship: Relationship, paths: &[&str]) {
    app.relationships()
        .update_relationship(UpdateRelationshipRequest {
            relationship: Some(relationship),
            update_mask: mask(paths),
        })
        .await
        .expect("update relationship");
}

/// Creates a manual relationship named `name`; returns its id.
pub async fn new_manual_relationship(app: &TestApp, name: &str) -> String {
    let relationship = Relationship {
        name: name.to_owned(),
        ..Default::default()
    };
    new_relationship(app, relationship).await
}

/// Lets a contact bring a customer back from the automatic relationship `id`.
pub async fn restore_on_contact(app: &TestApp, id: &str) {
    let relationship = Relationship {
        id: id.to_owned(),
        restore_on_contact: true,
        ..Default::default()
    };
    update_relationship(app, relationship, &["restore_on_contact"]).await;
}

/// Deletes relationship `id`, moving its holders to `reassign_to_id`; the
/// call must succeed.
pub async fn delete_relationship_into(
    app: &TestApp,
    id: &str,
    reassign_to_id: &str,
) -> DeleteRelationshipResponse {
    app.relationships()
        .delete_relationship(DeleteRelationshipRequest {
            id: id.to_owned(),
            etag: String::new(),
            reassign_to_id: reassign_to_id.to_owned(),
        })
        .await
        .expect("delete relationship")
        .into_inner()
}

/// Runs the inactivity rules now (not a dry run), listing up to 1000 moves.
pub async fn apply_inactivity_rules(app: &TestApp) -> ApplyInactivityRulesResponse {
    app.relationships()
        .apply_inactivity_rules(ApplyInactivityRulesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("apply inactivity rules")
        .into_inner()
}

/// The relationship with `code` in `list`.
pub fn by_code<'a>(list: &'a [Relationship], code: &str) -> &'a Relationship {
    list.iter()
        .find(|r| r.code == code)
        .unwrap_or_else(|| panic!("no relationship {code}"))
}

/// The id of the relationship with `code` in `list`.
pub fn rel(list: &[Relationship], code: &str) -> String {
    by_code(list, code).id.clone()
}

/// The codes of the seeded relationships customers are put in by hand, in
/// position order.
pub const MANUAL_CODES: [&str; 6] = ["NEW", "APPROACHED", "HOT", "POTENTIAL", "LOST", "CLOSED"];

/// The ids of the seeded manual relationships among `list`, in position
/// order.
pub fn manual_relationships(list: &[Relationship]) -> Vec<String> {
    MANUAL_CODES.iter().map(|code| rel(list, code)).collect()
}

/// A relationship's `customer_count` as GetRelationship reports it.
pub async fn relationship_count(app: &TestApp, id: &str) -> i64 {
    app.relationships()
        .get_relationship(GetRelationshipRequest { id: id.to_owned() })
        .await
        .expect("get relationship")
        .into_inner()
        .relationship
        .expect("relationship")
        .customer_count
}

// Groups.

/// Creates `group`; the call must succeed.
pub async fn create_group(client: &mut Groups, group: Group) -> Group {
    client
        .create_group(CreateGroupRequest {
            group: Some(group),
            request_id: String::new(),
        })
        .await
        .expect("create group")
        .into_inner()
        .group
        .expect("group")
}

/// Reads group `id`; the call must succeed.
pub async fn get_group(client: &mut Groups, id: &str) -> Group {
    client
        .get_group(GetGroupRequest { id: id.to_owned() })
        .await
        .expect("get group")
        .into_inner()
        .group
        .expect("group")
}

/// Creates a group named `name` under `parent_id` (empty: a top-level group).
pub async fn new_group_under(app: &TestApp, name: &str, parent_id: &str) -> Group {
    let group = Group {
        name: name.to_owned(),
        parent_id: parent_id.to_owned(),
        ..Default::default()
    };
    create_group(&mut app.groups(), group).await
}

/// Creates a top-level group named `name`.
pub async fn new_group(app: &TestApp, name: &str) -> Group {
    new_group_under(app, name, "").await
}

/// Creates `n` top-level groups named `{prefix} 0`, `{prefix} 1`, …, a few
/// at a time; returns them in that order.
pub async fn new_groups(app: &TestApp, prefix: &str, n: usize) -> Vec<Group> {
    at_most(8, n, |i| {
        let (mut client, name) = (app.groups(), format!("{prefix} {i}"));
        async move {
            let group = Group {
                name,
                ..Default::default()
            };
            create_group(&mut client, group).await
        }
    })
    .await
}

/// The first 1000 active groups of the client's tenant, as ListGroups
/// lists them.
pub async fn listed_groups(client: &mut Groups) -> Vec<Group> {
    client
        .list_groups(ListGroupsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list groups")
        .into_inner()
        .groups
}

/// The first 1000 active sources of the client's tenant, as ListSources
/// lists them.
pub async fn listed_sources(client: &mut Sources) -> Vec<Source> {
    client
        .list_sources(ListSourcesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list sources")
        .into_inner()
        .sources
}

/// A group's `customer_count` as GetGroup reports it.
pub async fn group_count(app: &TestApp, id: &str) -> i64 {
    get_group(&mut app.groups(), id).await.customer_count
}

// Sources.

/// Creates a source named `name`; the call must succeed.
pub async fn new_source(app: &TestApp, name: &str) -> Source {
    create_source(
        app,
        Source {
            name: name.to_owned(),
            ..Default::default()
        },
    )
    .await
}

/// Creates `source`; the call must succeed.
pub async fn create_source(app: &TestApp, source: Source) -> Source {
    app.sources()
        .create_source(CreateSourceRequest {
            source: Some(source),
            request_id: String::new(),
        })
        .await
        .expect("create source")
        .into_inner()
        .source
        .expect("source")
}

/// A source's `customer_count` as GetSource reports it.
pub async fn source_count(app: &TestApp, id: &str) -> i64 {
    app.sources()
        .get_source(GetSourceRequest { id: id.to_owned() })
        .await
        .expect("get source")
        .into_inner()
        .source
        .expect("source")
        .customer_count
}

// The change stream.

/// An open change stream.
pub type Events = tonic::Streaming<crm_classify::pb::WatchRelationshipChangesResponse>;

/// The sequences of `changes`, in order.
pub fn sequences(changes: &[RelationshipChange]) -> Vec<i64> {
    changes.iter().map(|c| c.sequence).collect()
}

/// The next event before `deadline`; fails the test if the stream errs,
/// ends or stays silent.
pub async fn next_event_by(events: &mut Events, deadline: tokio::time::Instant) -> Event {
    match tokio::time::timeout_at(deadline, events.message()).await {
        Err(_) => panic!("no event in time"),
        Ok(Err(status)) => panic!("the stream failed: {status:?}"),
        Ok(Ok(None)) => panic!("the stream ended"),
        Ok(Ok(Some(response))) => response.event.expect("an event is set"),
    }
}

/// Reads the heartbeat a stream opens with, within five seconds; returns
/// its `latest_sequence`, the sequence the stream starts after. Resuming
/// after `after_sequence` > 0, it must be `after_sequence` itself: the
/// changes after it are still to come.
pub async fn opening_heartbeat(events: &mut Events, after_sequence: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let latest = match next_event_by(events, deadline).await {
        Event::Heartbeat(heartbeat) => heartbeat.latest_sequence,
        Event::Change(change) => {
            panic!("a stream opens with a heartbeat, not with change {change:?}")
        }
    };
    if after_sequence > 0 {
        assert_eq!(
            latest, after_sequence,
            "the opening heartbeat of a resume after {after_sequence}"
        );
    }
    assert!(latest >= 0, "opening heartbeat {latest}");
    latest
}

/// Every change the stream sends until a heartbeat reports at least
/// `at_least`, before `deadline`; returns them and that heartbeat's
/// `latest_sequence`. A heartbeat never lags a change already sent.
pub async fn read_through(
    events: &mut Events,
    at_least: i64,
    deadline: tokio::time::Instant,
) -> (Vec<RelationshipChange>, i64) {
    let mut changes: Vec<RelationshipChange> = Vec::new();
    loop {
        let event = match tokio::time::timeout_at(deadline, events.message()).await {
            Err(_) => panic!(
                "no heartbeat reporting sequence {at_least} in time; changes received: {:?}",
                sequences(&changes)
            ),
            Ok(Err(status)) => panic!(
                "the stream failed after changes {:?}: {status:?}",
                sequences(&changes)
            ),
            Ok(Ok(None)) => panic!("the stream ended after changes {:?}", sequences(&changes)),
            Ok(Ok(Some(response))) => response.event.expect("an event is set"),
        };
        match event {
            Event::Change(change) => changes.push(change),
            Event::Heartbeat(heartbeat) => {
                let sent = changes.last().map_or(0, |c| c.sequence);
                assert!(
                    heartbeat.latest_sequence >= sent,
                    "a heartbeat ({}) behind a change already sent ({sent})",
                    heartbeat.latest_sequence
                );
                if heartbeat.latest_sequence >= at_least {
                    return (changes, heartbeat.latest_sequence);
                }
            }
        }
    }
}

// Reports.

/// Microseconds since the epoch of a protobuf timestamp.
pub fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
}

/// The protobuf timestamp `micros` microseconds after the epoch.
pub fn at_micros(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// The server's time now (its manual clock), in microseconds.
pub fn now_micros(app: &TestApp) -> i64 {
    use crm_classify::clock::Clock;
    app.clock.now().timestamp_micros()
}

/// Sets the test clock to the next UTC midnight.
pub fn set_clock_to_next_midnight(app: &TestApp) {
    use migrations::tallies::DAY;
    let now = now_micros(app);
    let midnight = now - now.rem_euclid(DAY) + DAY;
    app.clock
        .set(chrono::DateTime::from_timestamp_micros(midnight).expect("a time"));
}

/// The UTC midnights after `start` and before `end`.
pub fn midnights_between(start: i64, end: i64) -> Vec<i64> {
    use migrations::tallies::DAY;
    let first = start - start.rem_euclid(DAY) + DAY;
    (0..)
        .map(|k| first + k * DAY)
        .take_while(|m| *m < end)
        .collect()
}

/// The `p`-th percentile of `values` by nearest rank: the k-th smallest
/// where k = ⌈p·n/100⌉ (at least 1); `None` when there are none.
pub fn nearest_rank(values: &[i64], p: usize) -> Option<i64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let mut k = p * n / 100;
    if k * 100 < p * n {
        k += 1;
    }
    Some(sorted[k.max(1) - 1])
}

/// Adds `customer_ids` to group `group_id`; the call must succeed.
pub async fn add_to_group(app: &TestApp, group_id: &str, customer_ids: &[String]) -> i64 {
    app.customers()
        .add_customers_to_group(crm_classify::pb::AddCustomersToGroupRequest {
            group_id: group_id.to_owned(),
            customer_ids: customer_ids.to_vec(),
        })
        .await
        .expect("add customers to group")
        .into_inner()
        .added_count
}

/// Removes `customer_ids` from group `group_id`; the call must succeed.
pub async fn remove_from_group(app: &TestApp, group_id: &str, customer_ids: &[String]) {
    app.customers()
        .remove_customers_from_group(crm_classify::pb::RemoveCustomersFromGroupRequest {
            group_id: group_id.to_owned(),
            customer_ids: customer_ids.to_vec(),
        })
        .await
        .expect("remove customers from group");
}

/// Sets the fields `paths` of customer `customer` (its id set); the call
/// must succeed.
pub async fn update_customer(app: &TestApp, customer: Customer, paths: &[&str]) -> Customer {
    app.customers()
        .update_customer(update_request(customer, paths))
        .await
        .expect("update customer")
        .into_inner()
        .customer
        .expect("customer")
}

/// Soft-deletes group `id` (with its subtree when `cascade`); the call
/// must succeed.
pub async fn delete_group(app: &TestApp, id: &str, cascade: bool) {
    app.groups()
        .delete_group(crm_classify::pb::DeleteGroupRequest {
            id: id.to_owned(),
            etag: String::new(),
            cascade,
        })
        .await
        .expect("delete group");
}

/// Soft-deletes source `id`; the call must succeed.
pub async fn delete_source(app: &TestApp, id: &str) {
    app.sources()
        .delete_source(crm_classify::pb::DeleteSourceRequest {
            id: id.to_owned(),
            etag: String::new(),
        })
        .await
        .expect("delete source");
}

// Imports.

/// An import's requests: its options, then each batch of rows.
pub fn import_requests(
    options: ImportOptions,
    batches: Vec<Vec<ImportRow>>,
) -> Vec<ImportCustomersRequest> {
    std::iter::once(Payload::Options(options))
        .chain(
            batches
                .into_iter()
                .map(|rows| Payload::Rows(ImportRowBatch { rows })),
        )
        .map(|payload| ImportCustomersRequest {
            payload: Some(payload),
        })
        .collect()
}

/// Runs an import to its end: every row's result in order, and the summary.
pub async fn import_with(
    client: &mut Customers,
    options: ImportOptions,
    batches: Vec<Vec<ImportRow>>,
) -> Result<(Vec<ImportRowResult>, ImportSummary), Status> {
    let stream = tokio_stream::iter(import_requests(options, batches));
    let mut responses = client.import_customers(stream).await?.into_inner();
    let mut results = Vec::new();
    while let Some(response) = responses.message().await? {
        results.extend(response.results);
        if let Some(summary) = response.summary {
            assert!(
                responses.message().await?.is_none(),
                "the summary is the last message"
            );
            return Ok((results, summary));
        }
    }
    panic!("the import ended without a summary after {results:?}");
}
