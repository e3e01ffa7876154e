//! `--change-retention`: changes older than the retention period stop being
//! replayable (resuming before them is OUT_OF_RANGE) once the background
//! upkeep has run, while the customers' relationship history keeps them.

use std::time::Duration;

use crm_classify::pb::{
    WatchRelationshipChangesRequest, watch_relationship_changes_response::Event,
};
use tonic::Code;

use crate::fixtures::{
    change, create_customer, history, named, opening_heartbeat, rel, relationships,
};
use crate::helpers::{Backend, Options, TestApp};

fn after(after_sequence: i64) -> WatchRelationshipChangesRequest {
    WatchRelationshipChangesRequest {
        after_sequence,
        ..Default::default()
    }
}

async fn changes_past_retention_are_no_longer_replayable(backend: Backend) {
    let options = Options {
        sweep_interval: Duration::from_millis(100),
        change_retention: Duration::from_secs(86_400),
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        eprintln!("skipped: CRM_TEST_POSTGRES_URL is not set");
        return;
    };
    let rels = relationships(&mut app.relationships()).await;
    let mut customers = app.customers();
    let customer = create_customer(&mut customers, named("Old")).await; // 1
    change(&mut customers, &customer.id, &rel(&rels, "HOT")).await; // 2
    app.clock
        .advance(chrono::Duration::days(1) - chrono::Duration::seconds(1));
    change(&mut customers, &customer.id, &rel(&rels, "LOST")).await; // 3
    app.clock.advance(chrono::Duration::seconds(1));

    // Changes 1 and 2 are now a day old; 3 is not.
    let mut client = app.relationships();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        match client.watch_relationship_changes(after(1)).await {
            Err(status) => break status,
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "never trimmed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused.message().contains("no longer retained"),
        "{refused:?}"
    );
    assert_eq!(
        client
            .watch_relationship_changes(after(0))
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Ok(()),
        "from now is always fine"
    );

    // From 2 on, everything is still there.
    let mut stream = client
        .watch_relationship_changes(after(2))
        .await
        .expect("resume inside the retention period")
        .into_inner();
    opening_heartbeat(&mut stream, 2).await;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a change in time")
        .expect("stream")
        .expect("an event");
    match first.event {
        Some(Event::Change(change)) => assert_eq!(change.sequence, 3),
        other => panic!("expected change 3, got {other:?}"),
    }
    // The history is kept in full.
    assert_eq!(history(&mut customers, &customer.id).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_past_retention_are_out_of_range_on_sqlite() {
    changes_past_retention_are_no_longer_replayable(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_past_retention_are_out_of_range_on_postgres() {
    changes_past_retention_are_no_longer_replayable(Backend::Postgres).await;
}
