//! grpc.health.v1 statuses: SERVING per service while the database answers,
//! NOT_SERVING while it does not, and NOT_SERVING from the moment shutdown
//! starts so load balancers stop sending new calls.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    server::HealthReporter,
};

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
    "crm.v1.CustomerService",
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

/// Asks the server listening on `listen` for its overall status; `Ok` when
/// SERVING. A wildcard listen address is reached over loopback.
pub async fn check(listen: SocketAddr) -> Result<(), crate::app::StartError> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        });
    }
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))?
            .connect()
            .await?;
        let mut client = HealthClient::new(channel);
        let reply = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok::<_, crate::app::StartError>(reply.into_inner().status())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(health_check_response::ServingStatus::Serving)) => Ok(()),
        Ok(Ok(status)) => Err(format!("{target} reports {}", status.as_str_name()).into()),
        Ok(Err(err)) => Err(format!("{target}: {err}").into()),
        Err(_) => Err(format!("{target} did not answer within {PROBE_TIMEOUT:?}").into()),
    }
}
