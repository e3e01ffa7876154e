//! grpc.health.v1 statuses: SERVING per service while the database answers
//! and holds this version's schema, NOT_SERVING while it does not (a
//! database dropped and re-created empty answers pings, yet every call
//! would fail), and NOT_SERVING from the moment shutdown starts so load
//! balancers stop sending new calls.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tonic::server::NamedService;
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    server::HealthReporter,
};

use crate::{
    grpc::{
        customers::CustomerApi, groups::GroupApi, relationships::RelationshipApi,
        sources::SourceApi,
    },
    pb::{
        customer_service_server::CustomerServiceServer, group_service_server::GroupServiceServer,
        relationship_service_server::RelationshipServiceServer,
        source_service_server::SourceServiceServer,
    },
    store::{Store, db::connection as database},
};

/// How often the database is pinged.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long one ping may take before the database counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a health check did not find the server SERVING.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(String);

/// Reports the server as a whole and each of its services as SERVING or
/// NOT_SERVING.
pub async fn report(reporter: &HealthReporter, serving: bool) {
    // The server as a whole has the empty name and no service type.
    let whole = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", whole).await;
    report_one::<GroupServiceServer<GroupApi>>(reporter, serving).await;
    report_one::<SourceServiceServer<SourceApi>>(reporter, serving).await;
    report_one::<RelationshipServiceServer<RelationshipApi>>(reporter, serving).await;
    report_one::<CustomerServiceServer<CustomerApi>>(reporter, serving).await;
}

async fn report_one<S: NamedService>(reporter: &HealthReporter, serving: bool) {
    if serving {
        reporter.set_serving::<S>().await;
    } else {
        reporter.set_not_serving::<S>().await;
    }
}

/// What the last probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// Reachable, with every migration this binary knows applied.
    Ready,
    /// Not answering.
    Unreachable,
    /// Answering, but without this binary's schema (dropped and re-created
    /// empty, or not migrated yet): every call would fail.
    SchemaBehind,
}

impl Database {
    /// Looks at the database once.
    async fn probe(store: &Store) -> Self {
        let look = async {
            if !store.ping().await {
                return Self::Unreachable;
            }
            // A missing migrations table is an error: as behind as can be.
            match database::schema_is_current(store.db()).await {
                Ok(true) => Self::Ready,
                Ok(false) | Err(_) => Self::SchemaBehind,
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, look)
            .await
            .unwrap_or(Self::Unreachable)
    }
}

/// Probes the database once and reports the result when it differs from
/// `last`; returns it.
pub async fn probe(store: &Store, reporter: &HealthReporter, last: Option<Database>) -> Database {
    let found = Database::probe(store).await;
    if last != Some(found) {
        match found {
            Database::Ready => tracing::info!("database ready; reporting SERVING"),
            Database::Unreachable => {
                tracing::warn!("database unreachable; reporting NOT_SERVING");
            }
            Database::SchemaBehind => tracing::warn!(
                "database lacks this version's schema (dropped, or not migrated); reporting NOT_SERVING"
            ),
        }
        report(reporter, found == Database::Ready).await;
    }
    found
}

/// Probes the database every few seconds, reporting each change; `last` is
/// what was reported before.
pub async fn watch_database(store: Store, reporter: HealthReporter, mut last: Database) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        last = probe(&store, &reporter, Some(last)).await;
    }
}

/// Asks the server listening on `listen` for its overall status; `Ok` when
/// SERVING. A wildcard listen address is reached over loopback.
pub async fn check(listen: SocketAddr) -> Result<(), CheckError> {
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
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(reply.into_inner().status())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(health_check_response::ServingStatus::Serving)) => Ok(()),
        Ok(Ok(status)) => Err(CheckError(format!(
            "{target} reports {}",
            status.as_str_name()
        ))),
        Ok(Err(err)) => Err(CheckError(format!("{target}: {err}"))),
        Err(_) => Err(CheckError(format!(
            "{target} did not answer within {PROBE_TIMEOUT:?}"
        ))),
    }
}
