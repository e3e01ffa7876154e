//! The inactivity rule ("Don't Forget"): ApplyInactivityRules and the
//! background sweep move customers exactly at the threshold, to the largest
//! threshold that applies, leave exempt relationships alone, record and
//! stream each move once even when sweeps run at once, and a contact brings
//! a customer back when the automatic relationship restores on contact.
//! Time is the test server's manual clock, started on 2026-11-01 09:00 UTC.

use std::{collections::HashSet, time::Duration};

use crm_classify::{
    clock::Clock,
    pb::{
        ApplyInactivityRulesRequest, ApplyInactivityRulesResponse,
        CountCustomersByRelationshipRequest, Customer, DeleteRelationshipRequest, Relationship,
        RelationshipChangeCause, RelationshipKind, WatchRelationshipChangesRequest,
    },
};
use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::fixtures::{
    Customers, change, count, create_customer, get_customer, history, named, new_relationship,
    record_contact, rel, relationships, restore_on_contact, timestamp, update_relationship,
};
use crate::helpers::{
    Backend, Options, TestApp, at_most, concurrently, expect_code, own_postgres_database,
    postgres_database_url, violated_fields,
};
use crate::on_both_databases;

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// An on-demand run as of now that lists up to 10,000 moves.
fn run() -> ApplyInactivityRulesRequest {
    ApplyInactivityRulesRequest {
        dry_run: false,
        as_of: None,
        page_size: 10_000,
    }
}

/// A dry run as of now that lists up to 10,000 moves.
fn dry_run() -> ApplyInactivityRulesRequest {
    ApplyInactivityRulesRequest {
        dry_run: true,
        ..run()
    }
}

async fn apply(
    app: &TestApp,
    request: ApplyInactivityRulesRequest,
) -> ApplyInactivityRulesResponse {
    app.relationships()
        .apply_inactivity_rules(request)
        .await
        .expect("apply inactivity rules")
        .into_inner()
}

/// The ids of the customers a run moved, in the order listed.
fn moved(response: &ApplyInactivityRulesResponse) -> Vec<String> {
    response
        .moves
        .iter()
        .map(|m| m.customer_id.clone())
        .collect()
}

async fn relationship_of(customers: &mut Customers, id: &str) -> String {
    get_customer(customers, id).await.relationship_id
}

/// A new automatic relationship with a threshold of `days` days.
async fn new_automatic(app: &TestApp, name: &str, days: i32) -> String {
    new_relationship(
        app,
        Relationship {
            name: name.into(),
            kind: RelationshipKind::AutomaticInactivity as i32,
            inactivity_days: days,
            ..Default::default()
        },
    )
    .await
}

/// Whether the tenant's latest change is exactly `sequence`: resuming
/// there is accepted, one further is beyond the latest.
async fn latest_is(app: &TestApp, sequence: i64) -> bool {
    let watch = |after_sequence| WatchRelationshipChangesRequest {
        after_sequence,
        ..Default::default()
    };
    let mut client = app.relationships();
    let at = client.watch_relationship_changes(watch(sequence)).await;
    let beyond = client.watch_relationship_changes(watch(sequence + 1)).await;
    at.is_ok() && beyond.is_err_and(|s| s.code() == Code::OutOfRange)
}

async fn moves_customers_exactly_at_the_threshold(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (new, dont_forget) = (rel(&rels, "NEW"), rel(&rels, "DONT_FORGET"));
    let mut customers = app.customers();
    let quiet = create_customer(&mut customers, named("Quiet")).await;
    let called = create_customer(&mut customers, named("Called")).await;
    app.clock.advance(days(10));
    record_contact(&mut customers, &called.id, None).await;

    app.clock.advance(days(20) - chrono::Duration::seconds(1));
    let early = apply(app, run()).await;
    assert_eq!(early.move_count, 0, "a second early: {early:?}");
    assert_eq!(relationship_of(&mut customers, &quiet.id).await, new);

    app.clock.advance(chrono::Duration::seconds(1));
    let on_time = apply(app, run()).await;
    assert_eq!(moved(&on_time), vec![quiet.id.clone()]);
    let m = &on_time.moves[0];
    assert_eq!(
        (&m.from_relationship_id, &m.to_relationship_id),
        (&new, &dont_forget)
    );
    assert_eq!(m.inactive_days, 30);
    assert_eq!(m.reason, "no contact since creation on 2026-11-01, 30 days");
    assert_eq!(
        relationship_of(&mut customers, &quiet.id).await,
        dont_forget
    );
    let last = history(&mut customers, &quiet.id)
        .await
        .pop()
        .expect("history");
    assert_eq!(last.cause(), RelationshipChangeCause::AutomaticInactivity);
    assert_eq!((last.sequence, &last.reason), (m.sequence, &m.reason));
    assert_eq!(last.new_relationship_id, dont_forget);

    // Already there: nothing more to do. The contacted one's clock runs
    // from its contact.
    assert_eq!(apply(app, run()).await.move_count, 0);
    app.clock.advance(days(10));
    let later = apply(app, run()).await;
    assert_eq!(moved(&later), vec![called.id.clone()]);
    assert_eq!(
        later.moves[0].reason,
        "no contact since 2026-11-11, 30 days"
    );
}

async fn the_largest_threshold_that_applies_wins(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (new, dont_forget) = (rel(&rels, "NEW"), rel(&rels, "DONT_FORGET"));
    let dormant = new_automatic(app, "Dormant", 90).await;
    let mut customers = app.customers();
    let a = create_customer(&mut customers, named("A")).await;
    let b = create_customer(&mut customers, named("B")).await;

    // Judged at day 95 without having been swept: straight to the 90-day one.
    let preview = apply(
        app,
        ApplyInactivityRulesRequest {
            as_of: Some(timestamp(app.clock.now() + days(95))),
            ..dry_run()
        },
    )
    .await;
    assert_eq!(preview.move_count, 2);
    assert!(preview.moves.iter().all(|m| m.to_relationship_id == dormant
        && m.from_relationship_id == new
        && m.inactive_days == 95));

    app.clock.advance(days(30));
    let first = apply(app, run()).await;
    assert_eq!(first.move_count, 2);
    assert!(
        first
            .moves
            .iter()
            .all(|m| m.to_relationship_id == dont_forget)
    );
    app.clock.advance(days(59));
    assert_eq!(apply(app, run()).await.move_count, 0, "day 89");
    app.clock.advance(days(1));
    let second = apply(app, run()).await;
    assert_eq!(second.move_count, 2);
    assert!(
        second
            .moves
            .iter()
            .all(|m| m.from_relationship_id == dont_forget && m.to_relationship_id == dormant)
    );
    for id in [&a.id, &b.id] {
        let causes: Vec<_> = history(&mut customers, id)
            .await
            .iter()
            .map(|c| c.cause())
            .collect();
        assert_eq!(
            causes,
            [
                RelationshipChangeCause::Created,
                RelationshipChangeCause::AutomaticInactivity,
                RelationshipChangeCause::AutomaticInactivity
            ]
        );
    }
}

async fn exempt_relationships_are_left_alone(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (closed, dont_forget) = (rel(&rels, "CLOSED"), rel(&rels, "DONT_FORGET"));
    update_relationship(
        app,
        Relationship {
            id: dont_forget.clone(),
            exempt_relationship_ids: vec![closed.clone()],
            ..Default::default()
        },
        &["exempt_relationship_ids"],
    )
    .await;
    let dormant = new_automatic(app, "Dormant", 90).await;
    let mut customers = app.customers();
    let won = create_customer(&mut customers, named("Won")).await;
    change(&mut customers, &won.id, &closed).await;
    let open = create_customer(&mut customers, named("Open")).await;

    app.clock.advance(days(60));
    assert_eq!(moved(&apply(app, run()).await), vec![open.id.clone()]);
    assert_eq!(relationship_of(&mut customers, &won.id).await, closed);
    // The 90-day relationship does not exempt CLOSED.
    app.clock.advance(days(30));
    let response = apply(app, run()).await;
    let mut ids = moved(&response);
    ids.sort();
    let mut expected = vec![won.id.clone(), open.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(relationship_of(&mut customers, &won.id).await, dormant);
}

async fn a_dry_run_reports_and_changes_nothing(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (new, dont_forget) = (rel(&rels, "NEW"), rel(&rels, "DONT_FORGET"));
    let mut customers = app.customers();
    let mut ids = Vec::new();
    for name in ["A", "B", "C"] {
        ids.push(create_customer(&mut customers, named(name)).await.id);
    }
    // A contact on the day: the report says so.
    record_contact(&mut customers, &ids[2], None).await;
    app.clock.advance(days(31));
    let report = apply(app, dry_run()).await;
    assert_eq!(report.move_count, 3);
    let mut listed = moved(&report);
    listed.sort();
    assert_eq!(listed, ids);
    for m in &report.moves {
        assert_eq!(m.sequence, 0, "nothing recorded");
        assert_eq!(
            (&m.from_relationship_id, &m.to_relationship_id),
            (&new, &dont_forget)
        );
        let reason = if m.customer_id == ids[2] {
            "no contact since 2026-11-01, 31 days"
        } else {
            "no contact since creation on 2026-11-01, 31 days"
        };
        assert_eq!(m.reason, reason);
    }
    for id in &ids {
        assert_eq!(relationship_of(&mut customers, id).await, new);
        assert_eq!(history(&mut customers, id).await.len(), 1);
    }
    assert!(latest_is(app, 3).await, "no change was streamed");

    let short = apply(
        app,
        ApplyInactivityRulesRequest {
            page_size: 2,
            ..dry_run()
        },
    )
    .await;
    assert_eq!((short.move_count, short.moves.len()), (3, 2));
    assert_eq!(apply(app, run()).await.move_count, 3);
}

async fn bad_requests_are_refused(app: &TestApp) {
    let mut client = app.relationships();
    let future = ApplyInactivityRulesRequest {
        as_of: Some(timestamp(app.clock.now() + days(1))),
        ..run()
    };
    let status = expect_code(
        client.apply_inactivity_rules(future).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["as_of"]);
    // Nor may a real run look back: it would move customers by old inactivity.
    let past = ApplyInactivityRulesRequest {
        as_of: Some(timestamp(app.clock.now() - days(60))),
        ..run()
    };
    let status = expect_code(
        client.apply_inactivity_rules(past).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["as_of"]);
    // A preview of the future is fine.
    client
        .apply_inactivity_rules(ApplyInactivityRulesRequest {
            dry_run: true,
            ..future
        })
        .await
        .expect("dry run in the future");
    let status = expect_code(
        client
            .apply_inactivity_rules(ApplyInactivityRulesRequest {
                as_of: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 2_000_000_000,
                }),
                page_size: -1,
                ..run()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["as_of", "page_size"]);
}

/// More customers than one batch of the sweep.
const MANY: usize = 600;

/// `n` new customers in `relationship_id` (empty: the default one).
async fn create_many(app: &TestApp, n: usize, relationship_id: &str) -> Vec<String> {
    at_most(16, n, |i| {
        let mut customers = app.customers();
        let customer = Customer {
            relationship_id: relationship_id.to_owned(),
            ..named(&format!("Customer {i}"))
        };
        async move { create_customer(&mut customers, customer).await.id }
    })
    .await
}

/// Sequences of `responses`' moves; each customer and each sequence at
/// most once.
fn sequences_once(responses: &[ApplyInactivityRulesResponse]) -> Vec<i64> {
    let mut customers = HashSet::new();
    let mut sequences = Vec::new();
    for m in responses.iter().flat_map(|r| &r.moves) {
        assert!(
            customers.insert(m.customer_id.clone()),
            "moved twice: {m:?}"
        );
        sequences.push(m.sequence);
    }
    sequences.sort_unstable();
    sequences
}

async fn concurrent_runs_move_each_customer_once(app: &TestApp) {
    let ids = create_many(app, MANY, "").await;
    app.clock.advance(days(30));
    let responses = concurrently(4, |_| {
        let mut client = app.relationships();
        async move {
            client
                .apply_inactivity_rules(run())
                .await
                .expect("apply")
                .into_inner()
        }
    })
    .await;
    let total: i64 = responses.iter().map(|r| r.move_count).sum();
    assert_eq!(total, MANY as i64);
    let expected: Vec<i64> = (MANY as i64 + 1..=2 * MANY as i64).collect();
    assert_eq!(sequences_once(&responses), expected);
    assert!(latest_is(app, 2 * MANY as i64).await, "one change per move");
    let mut customers = app.customers();
    for id in ids.iter().step_by(97) {
        let automatic = history(&mut customers, id)
            .await
            .iter()
            .filter(|c| c.cause() == RelationshipChangeCause::AutomaticInactivity)
            .count();
        assert_eq!(automatic, 1);
    }
}

/// A relationship deleted (its holders reassigned) while a sweep moves the
/// same customers: both finish, every customer ends in one of the two
/// targets, its history is one unbroken chain ending where it is, and the
/// summary bar counts what the customers hold.
async fn a_relationship_deleted_during_a_sweep_leaves_history_and_counts_whole(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (hot, closed, dont_forget) = (
        rel(&rels, "HOT"),
        rel(&rels, "CLOSED"),
        rel(&rels, "DONT_FORGET"),
    );
    let ids = create_many(app, MANY, &hot).await;
    app.clock.advance(days(30));
    let mut relationships_client = app.relationships();
    let delete = relationships_client.delete_relationship(DeleteRelationshipRequest {
        id: hot.clone(),
        etag: String::new(),
        reassign_to_id: closed.clone(),
    });
    let (swept, deleted) = tokio::join!(apply(app, run()), delete);
    let reassigned = deleted
        .expect("delete HOT")
        .into_inner()
        .reassigned_customer_count;
    assert!(
        swept.move_count + reassigned >= MANY as i64,
        "each customer moved at least once"
    );

    let held = at_most(16, MANY, |i| {
        let mut customers = app.customers();
        let id = ids[i].clone();
        async move {
            let now = relationship_of(&mut customers, &id).await;
            let chain = history(&mut customers, &id).await;
            for pair in chain.windows(2) {
                assert_eq!(
                    pair[0].new_relationship_id, pair[1].old_relationship_id,
                    "{id}: {chain:?}"
                );
            }
            assert_eq!(
                chain.last().expect("history").new_relationship_id,
                now,
                "{id}"
            );
            now
        }
    })
    .await;
    let in_closed = held.iter().filter(|r| **r == closed).count() as i64;
    let in_dont_forget = held.iter().filter(|r| **r == dont_forget).count() as i64;
    assert_eq!(
        in_closed + in_dont_forget,
        MANY as i64,
        "nobody left on HOT"
    );
    let bar = count(
        &mut app.customers(),
        CountCustomersByRelationshipRequest::default(),
    )
    .await;
    let of = |id: &str| {
        bar.counts
            .iter()
            .find(|c| c.relationship_id == id)
            .map_or(0, |c| c.count)
    };
    assert_eq!((of(&closed), of(&dont_forget)), (in_closed, in_dont_forget));
}

async fn contact_restores_the_last_manual_relationship(app: &TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let (new, hot, dont_forget) = (
        rel(&rels, "NEW"),
        rel(&rels, "HOT"),
        rel(&rels, "DONT_FORGET"),
    );
    let mut customers = app.customers();
    let hot_one = create_customer(&mut customers, named("Hot")).await;
    change(&mut customers, &hot_one.id, &hot).await;
    let fresh = create_customer(&mut customers, named("Fresh")).await;
    let late = create_customer(&mut customers, named("Late")).await;
    let kept = create_customer(&mut customers, named("Kept")).await;
    let start = app.clock.now();
    app.clock.advance(days(40));
    assert_eq!(apply(app, run()).await.move_count, 4);

    // Without restore_on_contact a contact leaves the customer where it is.
    assert_eq!(
        record_contact(&mut customers, &kept.id, None).await,
        dont_forget
    );
    restore_on_contact(app, &dont_forget).await;

    assert_eq!(record_contact(&mut customers, &hot_one.id, None).await, hot);
    let back = history(&mut customers, &hot_one.id)
        .await
        .pop()
        .expect("history");
    assert_eq!(back.cause(), RelationshipChangeCause::ContactResumed);
    assert_eq!(
        (back.old_relationship_id, back.new_relationship_id),
        (dont_forget.clone(), hot)
    );
    assert_eq!(back.reason, "contacted by CALL on 2026-12-11");
    // Never moved by hand: back to the relationship it was created with.
    assert_eq!(record_contact(&mut customers, &fresh.id, None).await, new);
    // A contact recorded long after it happened, still 35 days ago: the
    // customer is still inactive and stays.
    assert_eq!(
        record_contact(&mut customers, &late.id, Some(start + days(5))).await,
        dont_forget
    );
    assert_eq!(apply(app, run()).await.move_count, 0, "nobody flips back");
    // Back in manual relationships, the restored ones are swept again once
    // idle again.
    app.clock.advance(days(30));
    let again = apply(app, run()).await;
    let mut again = moved(&again);
    again.sort();
    let mut restored = vec![hot_one.id.clone(), fresh.id.clone()];
    restored.sort();
    assert_eq!(again, restored);
}

on_both_databases! {
    async fn customers_move_exactly_at_the_threshold(app: TestApp) {
        moves_customers_exactly_at_the_threshold(&app).await;
    }

    async fn the_largest_applicable_threshold_wins(app: TestApp) {
        the_largest_threshold_that_applies_wins(&app).await;
    }

    async fn exempt_manual_relationships_are_untouched(app: TestApp) {
        exempt_relationships_are_left_alone(&app).await;
    }

    async fn dry_runs_change_nothing(app: TestApp) {
        a_dry_run_reports_and_changes_nothing(&app).await;
    }

    async fn bad_inactivity_requests_are_invalid(app: TestApp) {
        bad_requests_are_refused(&app).await;
    }

    async fn concurrent_sweeps_move_each_customer_once(app: TestApp) {
        concurrent_runs_move_each_customer_once(&app).await;
    }

    async fn a_contact_restores_the_previous_relationship(app: TestApp) {
        contact_restores_the_last_manual_relationship(&app).await;
    }

    async fn deleting_a_relationship_during_a_sweep_keeps_history_and_counts(app: TestApp) {
        a_relationship_deleted_during_a_sweep_leaves_history_and_counts_whole(&app).await;
    }
}

/// A server whose background sweep runs every 100 ms.
fn sweeping_often() -> Options {
    Options {
        sweep_interval: Duration::from_millis(100),
        ..Options::default()
    }
}

/// The background sweep runs every sweep interval on its own.
async fn the_background_sweep_moves_customers(app: TestApp) {
    let rels = relationships(&mut app.relationships()).await;
    let dont_forget = rel(&rels, "DONT_FORGET");
    let mut customers = app.customers();
    let customer = create_customer(&mut customers, named("Idle")).await;
    app.clock.advance(days(30));
    // A round takes milliseconds; the bound is for a very busy machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while relationship_of(&mut customers, &customer.id).await != dont_forget {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep did not run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = history(&mut customers, &customer.id)
        .await
        .pop()
        .expect("history");
    assert_eq!(last.cause(), RelationshipChangeCause::AutomaticInactivity);
    assert_eq!(last.actor_id, "", "the system moved it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweep_runs_on_sqlite() {
    let app = TestApp::spawn_with(Backend::Sqlite, sweeping_often())
        .await
        .expect("sqlite");
    the_background_sweep_moves_customers(app).await;
}

/// On a database of its own: the sweep walks every tenant of its
/// database, and with this server's clock a month ahead it would move
/// other tests' customers in the shared one (and take longer on a busy
/// machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweep_runs_on_postgres() {
    let Some((admin, name, url)) = own_postgres_database("sweep").await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let app = TestApp::spawn_on_url_with(Backend::Postgres, url, sweeping_often()).await;
    the_background_sweep_moves_customers(app).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop the test's database");
}

/// Two replicas on one PostgreSQL database sweeping at once: each customer
/// moves once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_at_once_move_each_customer_once() {
    let Some(url) = postgres_database_url() else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let one = TestApp::spawn_on_url(Backend::Postgres, url.clone()).await;
    let mut two = TestApp::spawn_on_url(Backend::Postgres, url).await;
    two.tenant = one.tenant.clone();
    create_many(&one, MANY, "").await;
    one.clock.advance(days(30));
    two.clock.set(one.clock.now());
    let (a, b) = tokio::join!(apply(&one, run()), apply(&two, run()));
    assert_eq!(a.move_count + b.move_count, MANY as i64);
    let expected: Vec<i64> = (MANY as i64 + 1..=2 * MANY as i64).collect();
    assert_eq!(sequences_once(&[a, b]), expected);
    assert!(latest_is(&one, 2 * MANY as i64).await);
}
