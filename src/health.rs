//! grpc.health.v1 statuses: SERVING per service while the database answers,
//! NOT_SERVING while it does not, and NOT_SERVING from the moment shutdown
//! starts so load balancers stop sending new calls.

use std::time::Duration;

use tonic_health::{ServingStatus, server::HealthReporter};

use crate::store::Store;

/// How often the database is pinged.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long one ping may take before the database counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Fully-qualified names of the services whose health is reported; the empty
/// name is the server as a whole.
pub const SERVICE_NAMES: &[&str] = &[
    "",
    "crm.v1.GroupService",
    "crm.v1.SourceService",
    "crm.v1.RelationshipService",
];

/// Sets every reported service to `status`.
pub async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for name in SERVICE_NAMES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Pings the database once and reports the result; returns it.
pub async fn probe(store: &Store, reporter: &HealthReporter, last: Option<bool>) -> bool {
    let reachable = tokio::time::timeout(PROBE_TIMEOUT, store.ping())
        .await
        .unwrap_or(false);
    if last != Some(reachable) {
        if reachable {
            tracing::info!("database reachable; reporting SERVING");
        } else {
            tracing::warn!("database unreachable; reporting NOT_SERVING");
        }
        let status = if reachable {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set_all(reporter, status).await;
    }
    reachable
}

/// Pings the database every few seconds, reporting each change; `last` is
/// what was reported before.
pub async fn watch_database(store: Store, reporter: HealthReporter, mut last: bool) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        last = probe(&store, &reporter, Some(last)).await;
    }
}
