//! The membership stream (GroupService/WatchGroupMembershipChanges): every
//! customer joining or leaving a group, with the relationship stream's
//! guarantees — its own contiguous per-tenant sequence, the retained
//! changes after a resume point then the live ones with no gap and no
//! duplicate, filters by group and customer, heartbeats, OUT_OF_RANGE,
//! tenants kept apart, UNAVAILABLE on shutdown, replicas sharing one
//! PostgreSQL database.
//!
//! As in `change_stream.rs`, the servers here send a heartbeat after
//! [`HEARTBEAT`] idle, and a test reads a stream until a heartbeat reports
//! the tenant's latest membership change ([`changes_through`]) instead of
//! sleeping. Every stream opens with a heartbeat, which [`opened_of`] reads
//! and checks.

use std::{collections::HashSet, time::Duration};

use crm_classify::changes::{membership::MembershipLog, retention};
use crm_classify::entity::{membership_change, membership_counter};
use crm_classify::pb::{
    AddCustomersToGroupRequest, Customer, MembershipCause, MembershipChange,
    RemoveCustomersFromGroupRequest, WatchGroupMembershipChangesRequest,
    WatchGroupMembershipChangesResponse, membership_change::Change,
    watch_group_membership_changes_response::Event,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, TransactionTrait,
};
use tokio::time::{Instant, timeout, timeout_at};
use tonic::{Code, Status};

use crate::fixtures::{
    Customers, create_customer, create_group, delete_customer, named, new_group, restore_customer,
    unknown_id,
};
use crate::helpers::{
    Backend, SHUTDOWN_GRACE, TestApp, concurrently, new_tenant, postgres_database_url,
    violated_fields,
};
use crate::on_both_databases;

/// The heartbeat interval of this file's servers.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// The longest any single wait may take; running out of it fails the test.
const WAIT: Duration = Duration::from_secs(30);

/// An open membership stream.
type Events = tonic::Streaming<WatchGroupMembershipChangesResponse>;

/// A request resuming after `sequence`, without filters.
fn after(sequence: i64) -> WatchGroupMembershipChangesRequest {
    WatchGroupMembershipChangesRequest {
        after_sequence: sequence,
        ..Default::default()
    }
}

/// The sequences of `changes`, in order.
fn sequences(changes: &[MembershipChange]) -> Vec<i64> {
    changes.iter().map(|c| c.sequence).collect()
}

/// Opens a stream of `tenant`'s membership changes; the call's own result.
async fn try_watch_of(
    app: &TestApp,
    tenant: &str,
    request: WatchGroupMembershipChangesRequest,
) -> Result<Events, Status> {
    timeout(
        WAIT,
        app.groups_of(tenant)
            .watch_group_membership_changes(request),
    )
    .await
    .expect("opening the stream timed out")
    .map(tonic::Response::into_inner)
}

/// Opens a stream of `tenant`'s membership changes; the call must succeed.
/// Reads its opening heartbeat and returns the stream and the sequence it
/// starts after (the resume point itself when there is one).
async fn opened_of(
    app: &TestApp,
    tenant: &str,
    request: WatchGroupMembershipChangesRequest,
) -> (Events, i64) {
    let shown = format!("{request:?}");
    let after_sequence = request.after_sequence;
    let mut events = try_watch_of(app, tenant, request)
        .await
        .unwrap_or_else(|status| panic!("watch {shown}: {status:?}"));
    let starts_after = match next_event(&mut events).await {
        Event::Heartbeat(heartbeat) => heartbeat.latest_sequence,
        Event::Change(change) => {
            panic!("a stream opens with a heartbeat, not with change {change:?}")
        }
    };
    if after_sequence > 0 {
        assert_eq!(
            starts_after, after_sequence,
            "the opening heartbeat of a resume after {after_sequence}"
        );
    }
    assert!(starts_after >= 0, "opening heartbeat {starts_after}");
    (events, starts_after)
}

/// Opens a stream of `tenant`'s membership changes past its opening
/// heartbeat.
async fn watch_of(
    app: &TestApp,
    tenant: &str,
    request: WatchGroupMembershipChangesRequest,
) -> Events {
    opened_of(app, tenant, request).await.0
}

/// Opens a stream of the test tenant's membership changes past its opening
/// heartbeat.
async fn watch(app: &TestApp, request: WatchGroupMembershipChangesRequest) -> Events {
    watch_of(app, &app.tenant, request).await
}

/// The error a watch must end with: the call's status, or (should the
/// server accept the call first) the stream's first status.
async fn watch_error(
    app: &TestApp,
    tenant: &str,
    request: WatchGroupMembershipChangesRequest,
) -> Status {
    let shown = format!("{request:?}");
    match try_watch_of(app, tenant, request).await {
        Err(status) => status,
        Ok(mut events) => match timeout(WAIT, events.message()).await {
            Err(_) => panic!("watch {shown}: expected an error, the stream stayed open"),
            Ok(Err(status)) => status,
            Ok(Ok(event)) => panic!("watch {shown}: expected an error, got {event:?}"),
        },
    }
}

/// The next event before `deadline`; fails the test if the stream errs,
/// ends or stays silent.
async fn next_event_by(events: &mut Events, deadline: Instant) -> Event {
    match timeout_at(deadline, events.message()).await {
        Err(_) => panic!("no event in time"),
        Ok(Err(status)) => panic!("the stream failed: {status:?}"),
        Ok(Ok(None)) => panic!("the stream ended"),
        Ok(Ok(Some(response))) => response.event.expect("an event is set"),
    }
}

/// The next event, within [`WAIT`].
async fn next_event(events: &mut Events) -> Event {
    next_event_by(events, Instant::now() + WAIT).await
}

/// The next change, past any heartbeats, within [`WAIT`].
async fn next_change(events: &mut Events) -> MembershipChange {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Event::Change(change) = next_event_by(events, deadline).await {
            return change;
        }
    }
}

/// Every change the stream sends until a heartbeat reports that everything
/// up to `latest` (the tenant's latest membership change) has been
/// considered; the heartbeat must report exactly `latest`, and no change
/// may lie beyond it.
async fn changes_through(events: &mut Events, latest: i64) -> Vec<MembershipChange> {
    let deadline = Instant::now() + WAIT;
    let mut changes: Vec<MembershipChange> = Vec::new();
    loop {
        let event = match timeout_at(deadline, events.message()).await {
            Err(_) => panic!(
                "no heartbeat reporting sequence {latest} in time; changes received: {:?}",
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
            Event::Change(change) => {
                assert!(
                    change.sequence <= latest,
                    "change {} is beyond the latest change ({latest}): {change:?}",
                    change.sequence
                );
                changes.push(change);
            }
            Event::Heartbeat(heartbeat) => {
                let sent = changes.last().map_or(0, |c| c.sequence);
                assert!(
                    heartbeat.latest_sequence >= sent,
                    "a heartbeat ({}) behind a change already sent ({sent})",
                    heartbeat.latest_sequence
                );
                if heartbeat.latest_sequence >= latest {
                    assert_eq!(
                        heartbeat.latest_sequence, latest,
                        "a heartbeat beyond the latest change"
                    );
                    return changes;
                }
            }
        }
    }
}

/// Adds `customer_ids` to `group_id`; the call must succeed.
async fn add(client: &mut Customers, group_id: &str, customer_ids: &[&str]) {
    client
        .add_customers_to_group(AddCustomersToGroupRequest {
            group_id: group_id.to_owned(),
            customer_ids: customer_ids.iter().map(|id| id.to_string()).collect(),
        })
        .await
        .expect("add customers to group");
}

/// Removes `customer_ids` from `group_id`; the call must succeed.
async fn remove(client: &mut Customers, group_id: &str, customer_ids: &[&str]) {
    client
        .remove_customers_from_group(RemoveCustomersFromGroupRequest {
            group_id: group_id.to_owned(),
            customer_ids: customer_ids.iter().map(|id| id.to_string()).collect(),
        })
        .await
        .expect("remove customers from group");
}

/// Creates a customer named `name` in `group_ids`; returns its id.
async fn create_in(client: &mut Customers, name: &str, group_ids: &[&str]) -> String {
    let customer = Customer {
        group_ids: group_ids.iter().map(|id| id.to_string()).collect(),
        ..named(name)
    };
    create_customer(client, customer).await.id
}

/// Checks one streamed membership change.
fn assert_change(
    change: &MembershipChange,
    sequence: i64,
    group_id: &str,
    customer_id: &str,
    kind: Change,
    cause: MembershipCause,
    actor_id: &str,
) {
    assert_eq!(change.sequence, sequence, "{change:?}");
    assert_eq!(change.group_id, group_id, "{change:?}");
    assert_eq!(change.customer_id, customer_id, "{change:?}");
    assert_eq!(change.change(), kind, "{change:?}");
    assert_eq!(change.cause(), cause, "{change:?}");
    assert_eq!(change.actor_id, actor_id, "{change:?}");
    assert!(change.change_time.is_some(), "{change:?}");
}

/// The groups of `changes`, which must all be of `customer_id`, `kind` and
/// `cause`, at sequences `first`, `first + 1`, …
fn groups_of_one_write(
    changes: &[MembershipChange],
    first: i64,
    customer_id: &str,
    kind: Change,
    cause: MembershipCause,
) -> HashSet<String> {
    for (i, change) in changes.iter().enumerate() {
        assert_eq!(change.sequence, first + i as i64, "{change:?}");
        assert_eq!(change.customer_id, customer_id, "{change:?}");
        assert_eq!(change.change(), kind, "{change:?}");
        assert_eq!(change.cause(), cause, "{change:?}");
        assert!(change.change_time.is_some(), "{change:?}");
    }
    changes.iter().map(|c| c.group_id.clone()).collect()
}

fn set(values: &[&str]) -> HashSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

// 1. Every kind of membership write, as the stream shows it.

/// Creating a customer in groups, adding and removing it by hand, and
/// deleting and restoring it are streamed with their causes and actor;
/// a write that changes no membership (adding a member again) takes no
/// sequence.
async fn every_membership_write_is_streamed(app: &TestApp) {
    use Change::{Joined, Left};
    use MembershipCause::{CustomerCreated, CustomerDeleted, CustomerRestored, Manual};
    let g1 = new_group(app, "Wholesale").await.id;
    let g2 = new_group(app, "Retail").await.id;
    let mut events = watch(app, after(0)).await;
    let mut customers = app.customers_as("dana");

    let c1 = create_in(&mut customers, "An", &[&g1, &g2]).await; // 1, 2
    let c2 = create_in(&mut customers, "Bảo", &[]).await;
    add(&mut customers, &g1, &[&c2]).await; // 3
    add(&mut customers, &g1, &[&c2]).await; // already a member: nothing
    remove(&mut customers, &g1, &[&c2]).await; // 4
    remove(&mut customers, &g1, &[&c2]).await; // not a member: nothing
    delete_customer(&mut customers, &c1).await; // 5, 6
    restore_customer(&mut customers, &c1)
        .await
        .expect("restore customer"); // 7, 8

    let got = changes_through(&mut events, 8).await;
    assert_eq!(sequences(&got), (1..=8).collect::<Vec<_>>());
    let both = set(&[&g1, &g2]);
    assert_eq!(
        groups_of_one_write(&got[0..2], 1, &c1, Joined, CustomerCreated),
        both
    );
    assert!(got[0..2].iter().all(|c| c.actor_id == "dana"));
    assert_change(&got[2], 3, &g1, &c2, Joined, Manual, "dana");
    assert_change(&got[3], 4, &g1, &c2, Left, Manual, "dana");
    assert_eq!(
        groups_of_one_write(&got[4..6], 5, &c1, Left, CustomerDeleted),
        both
    );
    assert_eq!(
        groups_of_one_write(&got[6..8], 7, &c1, Joined, CustomerRestored),
        both
    );

    // The same changes replayed from the start of the log.
    let mut replayed = watch(app, after(1)).await;
    assert_eq!(changes_through(&mut replayed, 8).await, got[1..].to_vec());
}

// 2. Replay, then live.

/// A watch resuming after N first replays every change after N from the
/// database, then continues with the live ones, with no gap and no
/// duplicate; a watch from 0 starts after every acknowledged change.
async fn replay_then_live(app: &TestApp) {
    let groups: Vec<String> = futures::future::join_all(
        (0..3).map(|i| async move { new_group(app, &format!("G{i}")).await.id }),
    )
    .await;
    let mut customers = app.customers();
    let c = create_in(&mut customers, "Chi", &[]).await;
    for group in &groups {
        add(&mut customers, group, &[&c]).await; // 1, 2, 3
    }
    remove(&mut customers, &groups[0], &[&c]).await; // 4
    add(&mut customers, &groups[0], &[&c]).await; // 5

    let (mut from_now, starts_after) = opened_of(app, &app.tenant, after(0)).await;
    assert_eq!(
        starts_after, 5,
        "a watch from 0 starts after the latest change"
    );
    let mut resumed = watch(app, after(2)).await;
    // Live, while the resumed watcher may still be replaying.
    remove(&mut customers, &groups[1], &[&c]).await; // 6
    remove(&mut customers, &groups[2], &[&c]).await; // 7

    let got = changes_through(&mut resumed, 7).await;
    assert_eq!(sequences(&got), [3, 4, 5, 6, 7], "no gap, no duplicate");
    assert_eq!(got[0].group_id, groups[2]);
    assert_eq!(
        (got[1].group_id.as_str(), got[1].change()),
        (groups[0].as_str(), Change::Left)
    );
    let live = changes_through(&mut from_now, 7).await;
    assert_eq!(
        live,
        got[3..].to_vec(),
        "the watch from 0 gets only 6 and 7"
    );
}

// 3. Concurrent writers.

/// Writers adding and removing customers at the same time get contiguous
/// sequences, 1 to the total, none skipped or reused; every watcher gets
/// each change once, in order, and each customer's changes alternate
/// joined, left, as they were made.
async fn concurrent_writers_get_contiguous_sequences(app: &TestApp) {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 5;
    let group = new_group(app, "Busy").await.id;
    let other = new_group(app, "Also busy").await.id;
    let mut customers = app.customers();
    let mut ids = Vec::new();
    for i in 0..WRITERS {
        ids.push(create_in(&mut customers, &format!("W{i}"), &[]).await);
    }
    let mut first = watch(app, after(0)).await;
    let mut second = watch(app, after(0)).await;

    concurrently(WRITERS, |i| {
        let mut client = app.customers();
        let customer = ids[i].clone();
        let groups = [group.clone(), other.clone()];
        async move {
            for round in 0..ROUNDS {
                let group = &groups[(i + round) % 2];
                add(&mut client, group, &[&customer]).await;
                remove(&mut client, group, &[&customer]).await;
            }
        }
    })
    .await;

    let total = (WRITERS * ROUNDS * 2) as i64;
    let all: Vec<i64> = (1..=total).collect();
    let got = changes_through(&mut first, total).await;
    assert_eq!(sequences(&got), all, "contiguous, each once, in order");
    assert_eq!(changes_through(&mut second, total).await, got);
    for (i, customer) in ids.iter().enumerate() {
        let mine: Vec<(String, Change)> = got
            .iter()
            .filter(|c| &c.customer_id == customer)
            .map(|c| (c.group_id.clone(), c.change()))
            .collect();
        let expected: Vec<(String, Change)> = (0..ROUNDS)
            .flat_map(|round| {
                let g = if (i + round) % 2 == 0 { &group } else { &other };
                [(g.clone(), Change::Joined), (g.clone(), Change::Left)]
            })
            .collect();
        assert_eq!(mine, expected, "customer {i}'s changes in the order made");
    }
    // A resume in the middle replays exactly the rest.
    let middle = total / 2;
    let mut resumed = watch(app, after(middle)).await;
    assert_eq!(
        changes_through(&mut resumed, total).await,
        got[middle as usize..].to_vec()
    );
}

// 4. Filters.

/// Ids that are not ids are INVALID_ARGUMENT; filters by group and by
/// customer send exactly the matching changes (both given: both must
/// match), and heartbeats still report the latest change considered.
async fn filters_pick_exactly_the_matching_changes(app: &TestApp) {
    let g1 = new_group(app, "North").await.id;
    let g2 = new_group(app, "South").await.id;
    let mut customers = app.customers();
    let a = create_in(&mut customers, "Dung", &[]).await;
    let b = create_in(&mut customers, "Em", &[]).await;
    let filtered = |groups: &[&str], customers: &[&str]| WatchGroupMembershipChangesRequest {
        group_ids: groups.iter().map(|g| g.to_string()).collect(),
        customer_ids: customers.iter().map(|c| c.to_string()).collect(),
        ..after(0)
    };
    let bad = [
        (filtered(&["nope"], &[]), vec!["group_ids[0]"]),
        (filtered(&[], &[&a, ""]), vec!["customer_ids[1]"]),
        (
            filtered(&["bad"], &["bad"]),
            vec!["group_ids[0]", "customer_ids[0]"],
        ),
    ];
    for (request, fields) in bad {
        let shown = format!("{request:?}");
        let status = watch_error(app, &app.tenant, request).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{shown}: {status:?}");
        assert_eq!(violated_fields(&status), fields, "{shown}");
    }

    let cases = [
        (filtered(&[&g1], &[]), vec![1, 2, 5]),
        (filtered(&[], &[&a]), vec![1, 3, 5]),
        (filtered(&[&g2], &[&b]), vec![4]),
        (filtered(&[&g1, &g2], &[&a]), vec![1, 3, 5]),
        (filtered(&[&g1], &[&a]), vec![1, 5]),
        (filtered(&[&unknown_id()], &[]), vec![]),
        (filtered(&[], &[]), vec![1, 2, 3, 4, 5]),
    ];
    let mut streams = Vec::new();
    for (request, expected) in cases {
        let shown = format!("{request:?}");
        streams.push((watch(app, request).await, expected, shown));
    }

    add(&mut customers, &g1, &[&a]).await; // 1
    add(&mut customers, &g1, &[&b]).await; // 2
    add(&mut customers, &g2, &[&a]).await; // 3
    add(&mut customers, &g2, &[&b]).await; // 4
    remove(&mut customers, &g1, &[&a]).await; // 5

    for (mut events, expected, shown) in streams {
        let got = changes_through(&mut events, 5).await;
        assert_eq!(sequences(&got), expected, "{shown}");
    }
}

// 5. Heartbeats and resume points.

/// A stream opens with a heartbeat of the sequence it starts after and
/// sends one of the latest sequence whenever idle; resuming beyond the
/// latest change is OUT_OF_RANGE, and a negative resume point invalid.
async fn heartbeats_and_resume_points_out_of_range(app: &TestApp) {
    let tenant = app.tenant.clone();
    // Nothing logged yet: from now is 0, and nothing to resume after.
    let (mut idle, starts_after) = opened_of(app, &tenant, after(0)).await;
    assert_eq!(starts_after, 0);
    match next_event(&mut idle).await {
        Event::Heartbeat(heartbeat) => assert_eq!(heartbeat.latest_sequence, 0),
        Event::Change(change) => panic!("expected a heartbeat, got {change:?}"),
    }
    for beyond in [1, 1000, i64::MAX] {
        let status = watch_error(app, &tenant, after(beyond)).await;
        assert_eq!(status.code(), Code::OutOfRange, "{beyond}: {status:?}");
    }
    let status = watch_error(app, &tenant, after(-1)).await;
    assert_eq!(violated_fields(&status), ["after_sequence"]);

    let group = new_group(app, "Hb").await.id;
    let mut customers = app.customers();
    create_in(&mut customers, "Giang", &[&group]).await; // 1
    let h = create_in(&mut customers, "Hà", &[]).await;
    add(&mut customers, &group, &[&h]).await; // 2

    // The idle stream reports the latest change in its heartbeats.
    assert_eq!(sequences(&changes_through(&mut idle, 2).await), [1, 2]);
    let (_, starts_after) = opened_of(app, &tenant, after(0)).await;
    assert_eq!(starts_after, 2, "the opening heartbeat reports the latest");
    for beyond in [3, 1000] {
        let status = watch_error(app, &tenant, after(beyond)).await;
        assert_eq!(status.code(), Code::OutOfRange, "{beyond}: {status:?}");
        assert!(status.message().contains("beyond"), "{status:?}");
    }
    let mut at_latest = watch(app, after(2)).await;
    assert_eq!(changes_through(&mut at_latest, 2).await, vec![]);
}

// 6. Tenants.

/// A tenant never sees another tenant's membership changes, and each
/// tenant's log is numbered from 1.
async fn tenants_are_isolated(app: &TestApp) {
    let other = new_tenant();
    let mine = new_group(app, "Mine").await.id;
    let theirs = create_group(
        &mut app.groups_of(&other),
        crm_classify::pb::Group {
            name: "Theirs".into(),
            ..Default::default()
        },
    )
    .await
    .id;
    let mut my_events = watch(app, after(0)).await;
    let mut their_events = watch_of(app, &other, after(0)).await;

    let mut my_customers = app.customers();
    let mut their_customers = app.customers_of(&other);
    let me = create_in(&mut my_customers, "Khoa", &[&mine]).await; // mine 1
    let they = create_in(&mut their_customers, "Lan", &[]).await;
    add(&mut their_customers, &theirs, &[&they]).await; // theirs 1
    remove(&mut their_customers, &theirs, &[&they]).await; // theirs 2
    remove(&mut my_customers, &mine, &[&me]).await; // mine 2

    let got = changes_through(&mut my_events, 2).await;
    assert_eq!(sequences(&got), [1, 2]);
    assert!(
        got.iter()
            .all(|c| c.customer_id == me && c.group_id == mine)
    );
    let got = changes_through(&mut their_events, 2).await;
    assert_eq!(sequences(&got), [1, 2]);
    assert!(
        got.iter()
            .all(|c| c.customer_id == they && c.group_id == theirs)
    );

    // Resume points are per tenant too: the other tenant's 2 is not mine.
    let status = watch_error(app, &new_tenant(), after(1)).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

// 7. Shutdown.

/// Open membership streams, idle or not, end with UNAVAILABLE when the
/// server shuts down, long before its grace period runs out.
async fn streams_end_unavailable_on_shutdown(mut app: TestApp) {
    let mut idle = watch(&app, after(0)).await;
    let mut filtered = watch(
        &app,
        WatchGroupMembershipChangesRequest {
            group_ids: vec![unknown_id()],
            ..after(0)
        },
    )
    .await;
    let stopped = Instant::now();
    app.stop();
    let deadline = stopped + WAIT;
    for (name, events) in [("idle", &mut idle), ("filtered", &mut filtered)] {
        let status = loop {
            match timeout_at(deadline, events.message()).await {
                Err(_) => panic!("{name}: the stream stayed open after the server stopped"),
                Ok(Ok(Some(WatchGroupMembershipChangesResponse {
                    event: Some(Event::Heartbeat(_)),
                }))) => continue,
                Ok(Ok(other)) => panic!("{name}: expected UNAVAILABLE, got {other:?}"),
                Ok(Err(status)) => break status,
            }
        };
        assert_eq!(status.code(), Code::Unavailable, "{name}: {status:?}");
    }
    let took = stopped.elapsed();
    assert!(
        took < SHUTDOWN_GRACE / 2,
        "the streams ended {took:?} after the stop (grace {SHUTDOWN_GRACE:?})"
    );
}

/// A listing of a rule group's members, made while writers change
/// customers (the rule's matches) and pins, plus the membership changes
/// streamed from the listing's `watch_from_sequence`, equals the group's
/// membership once the writers are done.
async fn list_then_watch_holds_an_exact_copy(app: &TestApp) {
    use crm_classify::pb::{Group, ListGroupMembersRequest, UpdateCustomerRequest};
    const CUSTOMERS: usize = 12;
    const ROUNDS: usize = 6;
    let mut customers = app.customers();
    let mut ids = Vec::new();
    for i in 0..CUSTOMERS {
        let c = create_customer(
            &mut customers,
            Customer {
                revenue: (i * 10) as i64,
                ..named(&format!("K{i}"))
            },
        )
        .await;
        ids.push(c.id);
    }
    let group = create_group(
        &mut app.groups(),
        Group {
            name: "Doanh thu từ 50".into(),
            rule: "revenue >= 50".into(),
            ..Default::default()
        },
    )
    .await
    .id;
    crate::rule_groups::await_current(app, &group).await;

    let (started, mut started_rx) = tokio::sync::mpsc::channel::<()>(CUSTOMERS);
    let writers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (mut client, id, group, started) =
                (app.customers(), id.clone(), group.clone(), started.clone());
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let revenue = ((i * 7 + round * 13) % 10 * 10) as i64;
                    let c = Customer {
                        id: id.clone(),
                        revenue,
                        ..Default::default()
                    };
                    client
                        .update_customer(UpdateCustomerRequest {
                            customer: Some(c),
                            update_mask: crate::fixtures::mask(&["revenue"]),
                            reason: String::new(),
                        })
                        .await
                        .expect("update");
                    if round == 1 {
                        let _ = started.send(()).await;
                    }
                    match (i + round) % 4 {
                        0 => add(&mut client, &group, &[&id]).await,
                        1 => remove(&mut client, &group, &[&id]).await,
                        _ => {}
                    }
                }
            })
        })
        .collect();
    drop(started);
    // The listing comes once every writer is under way.
    for _ in 0..CUSTOMERS {
        started_rx.recv().await.expect("a writer started");
    }
    let listing = app
        .groups()
        .list_group_members(ListGroupMembersRequest {
            group_id: group.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let mut copy: HashSet<String> = listing.members.into_iter().map(|m| m.customer_id).collect();
    let (mut events, from) = opened_of(
        app,
        &app.tenant,
        WatchGroupMembershipChangesRequest {
            after_sequence: listing.watch_from_sequence,
            group_ids: vec![group.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(from, listing.watch_from_sequence);
    for writer in writers {
        writer.await.expect("writer");
    }
    let (_, latest) = opened_of(app, &app.tenant, after(0)).await;
    for change in changes_through(&mut events, latest).await {
        match change.change() {
            Change::Joined => assert!(
                copy.insert(change.customer_id.clone()),
                "joined twice: {change:?}"
            ),
            Change::Left => assert!(
                copy.remove(&change.customer_id),
                "left without being in: {change:?}"
            ),
            Change::Unspecified => panic!("unspecified change {change:?}"),
        }
    }
    let now: HashSet<String> = crate::rule_groups::members(app, &group)
        .await
        .into_iter()
        .collect();
    assert_eq!(copy, now, "the listing plus the stream is the membership");
}

on_both_databases! {
    async fn listing_a_groups_members_then_watching_holds_an_exact_copy_under_concurrent_writers(app: TestApp, heartbeat = HEARTBEAT) {
        list_then_watch_holds_an_exact_copy(&app).await;
    }

    async fn every_kind_of_membership_write_is_streamed_with_its_cause(app: TestApp, heartbeat = HEARTBEAT) {
        every_membership_write_is_streamed(&app).await;
    }

    async fn a_resumed_watch_replays_then_continues_live_without_gap_or_duplicate(app: TestApp, heartbeat = HEARTBEAT) {
        replay_then_live(&app).await;
    }

    async fn concurrent_writers_get_contiguous_sequences_streamed_once_in_order(app: TestApp, heartbeat = HEARTBEAT) {
        concurrent_writers_get_contiguous_sequences(&app).await;
    }

    async fn filters_by_group_and_customer_stream_exactly_the_matching_changes(app: TestApp, heartbeat = HEARTBEAT) {
        filters_pick_exactly_the_matching_changes(&app).await;
    }

    async fn heartbeats_report_the_latest_and_resume_points_beyond_it_are_out_of_range(app: TestApp, heartbeat = HEARTBEAT) {
        heartbeats_and_resume_points_out_of_range(&app).await;
    }

    async fn a_tenant_never_sees_another_tenants_membership_changes(app: TestApp, heartbeat = HEARTBEAT) {
        tenants_are_isolated(&app).await;
    }

    async fn open_membership_streams_end_with_unavailable_on_shutdown(app: TestApp, heartbeat = HEARTBEAT) {
        streams_end_unavailable_on_shutdown(app).await;
    }
}

// 8. Replicas sharing one PostgreSQL database.

/// A membership change made through one replica reaches the watchers of
/// another, in order and once, and a watch from 0 opened on that other
/// replica right after a change was acknowledged starts after it, though
/// that replica's reader may not have read it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stream_each_others_membership_changes() {
    const ROUNDS: usize = 10;
    let Some(url) = postgres_database_url() else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let one = TestApp::spawn_on_url(Backend::Postgres, url.clone()).await;
    let two = TestApp::spawn_on_url(Backend::Postgres, url).await;
    let tenant = one.tenant.clone();
    let group = new_group(&one, "Shared").await.id;
    let mut customers = one.customers();
    let customer = create_in(&mut customers, "Minh", &[]).await;
    let mut on_two = watch_of(&two, &tenant, after(0)).await;

    // Alternately joins and leaves: every call is a change.
    let mut member = false;
    let mut flip = async |customers: &mut Customers| {
        if member {
            remove(customers, &group, &[&customer]).await;
        } else {
            add(customers, &group, &[&customer]).await;
        }
        member = !member;
    };
    let mut made = 0;
    for _ in 0..3 {
        flip(&mut customers).await;
        made += 1;
    }
    for expected in 1..=made {
        assert_eq!(
            next_change(&mut on_two).await.sequence,
            expected,
            "in order, once"
        );
    }
    for round in 0..ROUNDS {
        flip(&mut customers).await;
        made += 1;
        let acknowledged = made;
        let mut fresh = watch_of(&two, &tenant, after(0)).await;
        flip(&mut customers).await;
        made += 1;
        let first = next_change(&mut fresh).await;
        assert_eq!(
            first.sequence, made,
            "round {round}: a watch from 0 opened on replica two after change {acknowledged} was acknowledged by replica one sent change {} first",
            first.sequence
        );
    }
    let got = changes_through(&mut on_two, made).await;
    assert_eq!(sequences(&got), (4..=made).collect::<Vec<_>>());
}

// 9. The machinery on a log written directly.
//
// These write the membership log the way the customers' write path does
// (the rows and the tenant's counter, in one transaction), straight into
// the server's database, so they check the stream and retention on their
// own. The server's reader finds such rows by polling (nothing wakes it).

/// Appends `changes` (group, customer, joined), caused by hand by "dana",
/// to `tenant`'s membership log at `time` (microseconds); returns the last
/// sequence.
async fn append_directly(
    db: &DatabaseConnection,
    tenant: &str,
    changes: &[(&str, &str, bool)],
    time: i64,
) -> i64 {
    let tx = db.begin().await.expect("begin");
    let counter = membership_counter::Entity::find_by_id(tenant.to_owned())
        .one(&tx)
        .await
        .expect("read the counter");
    let first = counter.as_ref().map_or(0, |c| c.last_sequence) + 1;
    let last = first + changes.len() as i64 - 1;
    let rows = changes
        .iter()
        .zip(first..)
        .map(|(&(group, customer, joined), sequence)| {
            membership_change::Model {
                tenant_id: tenant.to_owned(),
                sequence,
                group_id: group.to_owned(),
                customer_id: customer.to_owned(),
                joined,
                cause: "MANUAL".into(),
                actor_id: "dana".into(),
                change_time: time,
            }
            .into_active_model()
        });
    membership_change::Entity::insert_many(rows)
        .exec(&tx)
        .await
        .expect("append");
    match counter {
        None => membership_counter::Model {
            tenant_id: tenant.to_owned(),
            last_sequence: last,
            trimmed_through: 0,
        }
        .into_active_model()
        .insert(&tx)
        .await
        .map(drop),
        Some(counter) => {
            let mut counter = counter.into_active_model();
            counter.last_sequence = Set(last);
            counter.update(&tx).await.map(drop)
        }
    }
    .expect("count");
    tx.commit().await.expect("commit");
    last
}

/// What the log holds is streamed as written: replayed after a resume
/// point, then live with no gap and no duplicate, converted (group,
/// customer, joined or left, cause, actor, time), filtered; the latest is
/// where a watch from 0 starts and beyond it is OUT_OF_RANGE.
async fn the_stream_serves_the_log_as_written(app: &TestApp) {
    let group = new_group(app, "Direct").await.id; // provisions the tenant
    let (c1, c2) = (unknown_id(), unknown_id());
    let db = app.database().await;
    let tenant = app.tenant.clone();
    let mut everything = watch(app, after(0)).await;
    let mut of_c1 = watch(
        app,
        WatchGroupMembershipChangesRequest {
            customer_ids: vec![c1.clone()],
            ..after(0)
        },
    )
    .await;

    let time = 1_700_000_000_000_000;
    let last = append_directly(
        &db,
        &tenant,
        &[
            (&group, &c1, true),
            (&group, &c2, true),
            (&group, &c1, false),
        ],
        time,
    )
    .await;
    assert_eq!(last, 3);
    let got = changes_through(&mut everything, 3).await;
    assert_eq!(sequences(&got), [1, 2, 3]);
    use Change::{Joined, Left};
    assert_change(
        &got[0],
        1,
        &group,
        &c1,
        Joined,
        MembershipCause::Manual,
        "dana",
    );
    assert_change(
        &got[1],
        2,
        &group,
        &c2,
        Joined,
        MembershipCause::Manual,
        "dana",
    );
    assert_change(
        &got[2],
        3,
        &group,
        &c1,
        Left,
        MembershipCause::Manual,
        "dana",
    );
    let stamp = got[0].change_time.expect("a change time");
    assert_eq!(
        (stamp.seconds, stamp.nanos),
        (time / 1_000_000, 0),
        "change_time as stored"
    );
    assert_eq!(sequences(&changes_through(&mut of_c1, 3).await), [1, 3]);

    let mut resumed = watch(app, after(1)).await;
    append_directly(
        &db,
        &tenant,
        &[(&group, &c2, false), (&group, &c1, true)],
        time,
    )
    .await;
    let replayed_and_live = changes_through(&mut resumed, 5).await;
    assert_eq!(sequences(&replayed_and_live), [2, 3, 4, 5]);
    assert_eq!(replayed_and_live[..2], got[1..]);
    assert_eq!(
        sequences(&changes_through(&mut everything, 5).await),
        [4, 5]
    );
    let (_, starts_after) = opened_of(app, &tenant, after(0)).await;
    assert_eq!(starts_after, 5);
    let status = watch_error(app, &tenant, after(6)).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

/// Retention moves the membership log's replay floor past the changes
/// made before the cutoff (resuming before it is OUT_OF_RANGE), stops at
/// the first change still retained, and keeps the rows.
async fn retention_moves_the_membership_replay_floor(app: &TestApp) {
    const DAY: i64 = 86_400_000_000;
    let group = new_group(app, "Old").await.id;
    let customer = unknown_id();
    let db = app.database().await;
    let tenant = app.tenant.clone();
    // Long before any other test's changes (the test servers' clocks are
    // in 2026), so trimming this database touches no other tenant's.
    let old = DAY;
    append_directly(&db, &tenant, &[(&group, &customer, true)], old).await; // 1
    append_directly(&db, &tenant, &[(&group, &customer, false)], old).await; // 2
    append_directly(&db, &tenant, &[(&group, &customer, true)], old + 2 * DAY).await; // 3

    let trimmed = retention::trim::<MembershipLog>(&db, old + DAY)
        .await
        .expect("trim");
    assert!(trimmed >= 2, "at least this tenant's 1 and 2: {trimmed}");
    let status = watch_error(app, &tenant, after(1)).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("no longer retained"),
        "{status:?}"
    );
    let mut from_floor = watch(app, after(2)).await;
    assert_eq!(sequences(&changes_through(&mut from_floor, 3).await), [3]);
    // The floor only rises, and the rows stay.
    assert_eq!(
        retention::trim::<MembershipLog>(&db, old + DAY)
            .await
            .expect("trim"),
        0
    );
    let rows = membership_change::Entity::find()
        .filter(membership_change::Column::TenantId.eq(tenant.as_str()))
        .all(&db)
        .await
        .expect("read the log");
    assert_eq!(rows.len(), 3);
}

on_both_databases! {
    async fn the_stream_serves_the_membership_log_as_written(app: TestApp, heartbeat = HEARTBEAT) {
        the_stream_serves_the_log_as_written(&app).await;
    }

    async fn retention_moves_the_membership_logs_replay_floor_and_keeps_its_rows(app: TestApp, heartbeat = HEARTBEAT) {
        retention_moves_the_membership_replay_floor(&app).await;
    }
}
