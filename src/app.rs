//! The application: built from a [`Config`] (binds the socket, opens and
//! migrates the database, assembles the gRPC server), then run until the
//! caller's shutdown future completes. The caller owns the stop signal, which
//! keeps tests simple.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::TryStreamExt;
use tokio::{net::TcpListener, sync::Notify};
use tonic::transport::{Server, ServerTlsConfig, server::TcpIncoming};
use tower::util::{MapFutureLayer, MapResponseLayer};

use crate::{
    auth::{self, jwks::KeySet, jwt::Verifier, layer::AuthLayer},
    clock::{SharedClock, SystemClock},
    config::Config,
    error,
    grpc::{
        customers::CustomerApi, groups::GroupApi, relationships::RelationshipApi,
        sources::SourceApi,
    },
    health,
    limits::Limits,
    maintenance, metrics,
    pb::{
        self, customer_service_server::CustomerServiceServer,
        group_service_server::GroupServiceServer,
        relationship_service_server::RelationshipServiceServer,
        source_service_server::SourceServiceServer,
    },
    store::{Store, db::connection as database},
    telemetry,
    transport::{self, HandshakeDeadline},
};

/// How often an idle connection is pinged, and how long the answer may take.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Calls open at once on one connection. Each call holds a task and
/// buffers; past this a client's further calls wait (its HTTP/2 library
/// queues them) rather than the server taking on unbounded work from one
/// connection. Generous for a client multiplexing many change streams.
const MAX_CONCURRENT_STREAMS: u32 = 200;

/// Why the service could not start or stopped with an error.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// A built, not yet running, service.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Store,
    /// The store on background upkeep's connections (see
    /// [`database::ServiceConnections`]).
    upkeep: Store,
    query_timeout: Duration,
    shutdown_grace: Duration,
    heartbeat_interval: Duration,
    sweep_interval: Duration,
    change_retention: Duration,
    handshake_timeout: Duration,
    /// Verifies callers' tokens; `None` without authentication.
    verifier: Option<Arc<Verifier>>,
    /// The JWK set the verifier reads, refreshed while the server runs.
    key_set: Option<Arc<KeySet>>,
    jwks_refresh: Duration,
    tls: Option<ServerTlsConfig>,
    reflection: bool,
    /// Per-tenant rate, load shedding, per-tenant watch cap (a layer).
    limits: Limits,
    /// `--max-request-bytes`, set on every service.
    max_request_bytes: usize,
    /// Counts the rounds of background upkeep finished.
    rounds: Arc<tokio::sync::watch::Sender<u64>>,
    /// `--metrics-listen`'s endpoint, bound; `None` when metrics are off.
    metrics: Option<metrics::Exporter>,
}

impl Application {
    /// Builds the service on the system clock.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the service on `clock` (tests pass a manual clock).
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Self, StartError> {
        if config.heartbeat_interval.is_zero() {
            return Err("--heartbeat-interval must be more than 0".into());
        }
        if config.sweep_interval.is_zero() {
            return Err("--sweep-interval must be more than 0".into());
        }
        if config.handshake_timeout.is_zero() {
            return Err("--handshake-timeout must be more than 0".into());
        }
        if config.query_timeout < Duration::from_millis(1)
            || config.query_timeout > database::MAX_STATEMENT_LIMIT
        {
            return Err(format!(
                "--query-timeout must be between 1ms and {}",
                humantime::format_duration(database::MAX_STATEMENT_LIMIT)
            )
            .into());
        }
        // Checked before the database opens: a refused setup writes nothing.
        let (verifier, key_set) = auth::verifier(&config).await?;
        let tls = auth::tls::server_config(&config)?;
        let limits = Limits::from_config(&config, clock.clone())?;
        let connections =
            database::open_service(&config.database_url, config.migrate, config.query_timeout)
                .await?;
        let pools = metrics::figures::Pools::of(&connections);
        let mut store = Store::new(connections.requests, clock, config.seed_locale)
            .with_record_cache(config.record_cache);
        if let Some(writer) = connections.writer {
            store = store.with_writer(writer);
        }
        let upkeep = match connections.background {
            Some(pool) => store.on_background_pool(pool),
            None => store.clone(),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(metrics::Exporter::bind(addr, &store, pools).await?),
            None => None,
        };
        Ok(Self {
            listener,
            local_addr,
            store,
            upkeep,
            query_timeout: config.query_timeout,
            shutdown_grace: config.shutdown_grace,
            heartbeat_interval: config.heartbeat_interval,
            sweep_interval: config.sweep_interval,
            change_retention: config.change_retention,
            handshake_timeout: config.handshake_timeout,
            verifier,
            key_set,
            jwks_refresh: config.jwt_jwks_refresh,
            tls,
            reflection: config.reflection,
            limits,
            max_request_bytes: config.max_request_bytes,
            rounds: Arc::new(tokio::sync::watch::channel(0).0),
            metrics,
        })
    }

    /// Changes each time this server finishes evaluating a group's rule
    /// (see [`Store::evaluations_finished`]).
    pub fn evaluations_finished(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.evaluations_finished()
    }

    /// Changes each time a round of background upkeep (the inactivity
    /// sweep, retention) finishes.
    pub fn upkeep_rounds(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// Changes each time a call gives back what it held of the limits
    /// (see [`Limits::released`]).
    pub fn limits_released(&self) -> tokio::sync::watch::Receiver<u64> {
        self.limits.released()
    }

    /// The address the server listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics endpoint (the real port when 0 was
    /// asked); `None` when metrics are off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(metrics::Exporter::local_addr)
    }

    /// Serves until `shutdown` completes, then stops taking calls and waits
    /// for the calls in flight, at most the shutdown grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Self {
            listener,
            local_addr,
            store,
            upkeep,
            query_timeout,
            shutdown_grace,
            heartbeat_interval,
            sweep_interval,
            change_retention,
            handshake_timeout,
            verifier,
            key_set,
            jwks_refresh,
            tls,
            reflection,
            limits,
            max_request_bytes,
            rounds,
            metrics,
        } = self;

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let reachable = health::probe(&store, &reporter, None).await;
        let watcher = tokio::spawn(health::watch_database(
            store.clone(),
            reporter.clone(),
            reachable,
        ));
        let replicas = tokio::spawn({
            let store = store.clone();
            async move { store.hear_replicas().await }
        });
        let checkpoints = tokio::spawn(database::checkpoint_regularly(upkeep.db().clone()));
        let upkeep_rounds = tokio::spawn(maintenance::run(
            upkeep.clone(),
            sweep_interval,
            change_retention,
            rounds,
        ));
        // Rule groups evaluated in the background, on the upkeep's pool.
        let evaluations = tokio::spawn({
            let upkeep = upkeep.clone();
            async move { upkeep.run_evaluations().await }
        });
        // One reader per log: relationship changes and memberships.
        let feed_readers = tokio::spawn({
            let feeds = store.feeds().clone();
            async move { feeds.run().await }
        });
        let key_refresh = key_set.map(|set| tokio::spawn(set.refresh_every(jwks_refresh)));
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.BadRequest and the other error details, so that
            // grpcurl -format-error prints them instead of base64.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        // The calls' metrics; the endpoint serves until the server stops.
        let call_metrics =
            metrics::grpc::CallMetricsLayer::new(metrics.as_ref().map(metrics::Exporter::grpc));
        let exporter = metrics.map(|exporter| tokio::spawn(exporter.serve()));

        let draining = Arc::new(Notify::new());
        let feeds_to_close = store.feeds().clone();
        let signal = {
            let draining = draining.clone();
            async move {
                shutdown.await;
                tracing::info!(grace = ?shutdown_grace, "shutting down: no new calls, waiting for calls in flight");
                watcher.abort();
                replicas.abort();
                upkeep_rounds.abort();
                evaluations.abort();
                if let Some(task) = &key_refresh {
                    task.abort();
                }
                // Open change streams (of both logs) end with UNAVAILABLE
                // (clients resume).
                feeds_to_close.close();
                health::report(&reporter, false).await;
                draining.notify_one();
            }
        };

        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let server = builder
            // A client that vanishes without closing its connection (a
            // watcher of the change stream, say) is found within a minute
            // and its calls end, instead of waiting for TCP to give up.
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            // Outermost: it counts every call, those refused by the
            // layers inside it too.
            .layer(call_metrics)
            // Requests tonic cannot read get the conventional codes.
            .layer(MapResponseLayer::new(move |response| {
                transport::reclassify_unreadable(response, max_request_bytes)
            }))
            // DEADLINE_EXCEEDED names the limit a call's statement ran past.
            .layer(MapFutureLayer::new(move |call| {
                error::with_query_timeout(query_timeout, call)
            }))
            // Who may call what: before any handler reads the request,
            // and before the limits, which count calls by its tenant.
            .layer(AuthLayer::new(verifier))
            .layer(limits)
            .trace_fn(telemetry::call_span)
            .add_service(health_service.max_decoding_message_size(max_request_bytes))
            .add_optional_service(
                reflection.then(|| reflection_v1.max_decoding_message_size(max_request_bytes)),
            )
            .add_optional_service(
                reflection.then(|| reflection_v1alpha.max_decoding_message_size(max_request_bytes)),
            )
            .add_service(
                GroupServiceServer::new(GroupApi::new(store.clone(), heartbeat_interval))
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                SourceServiceServer::new(SourceApi::new(store.clone()))
                    .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                RelationshipServiceServer::new(RelationshipApi::new(
                    store.clone(),
                    heartbeat_interval,
                ))
                .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                CustomerServiceServer::new(CustomerApi::new(store.clone()))
                    .max_decoding_message_size(max_request_bytes),
            )
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .map_ok(move |socket| HandshakeDeadline::new(socket, handshake_timeout)),
                signal,
            );

        tracing::info!(address = %local_addr, "listening");
        tokio::select! {
            result = server => result?,
            () = async {
                draining.notified().await;
                tokio::time::sleep(shutdown_grace).await;
            } => tracing::warn!("shutdown grace period over; abandoning the calls still in flight"),
        }
        feed_readers.abort();
        checkpoints.abort();
        if let Some(exporter) = exporter {
            exporter.abort();
            // Awaited, so the endpoint's socket is closed once this returns.
            let _ = exporter.await;
        }
        store.close().await;
        upkeep.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
