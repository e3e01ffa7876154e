//! Prometheus metrics on `--metrics-listen`: one registry per server (tests
//! run several servers in one process), served over HTTP at `/metrics`.
//!
//! - [`grpc`]: every call's metrics, go-grpc-prometheus's names and
//!   labels, from the outermost tower layer.
//! - [`figures`]: the service's own figures (change streams, queued
//!   creates, sweeps, rule evaluations, imported rows, database pools).
//! - [`http`]: the endpoint.

pub mod figures;
pub mod grpc;
pub mod http;

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::{pb, store::Store};
use figures::Pools;
use grpc::GrpcMetrics;

/// Why the metrics could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The metrics of one server, bound to their address, not yet served.
pub struct Exporter {
    listener: TcpListener,
    local_addr: SocketAddr,
    registry: Registry,
    grpc: Arc<GrpcMetrics>,
}

impl Exporter {
    /// Binds `addr` and registers the metrics of the server of `store`,
    /// which works on `pools`.
    pub async fn bind(addr: SocketAddr, store: &Store, pools: Pools) -> Result<Self, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        let local_addr = listener.local_addr()?;
        let mut registry = Registry::default();
        // Every service the server answers: ours, health, reflection.
        let grpc = GrpcMetrics::new(
            &[
                pb::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ],
            &mut registry,
        )?;
        figures::register(&mut registry, store, pools);
        Ok(Self {
            listener,
            local_addr,
            registry,
            grpc: Arc::new(grpc),
        })
    }

    /// The address the metrics are served on (the real port when 0 was
    /// asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The per-call metrics, for the server's layer.
    pub fn grpc(&self) -> Arc<GrpcMetrics> {
        self.grpc.clone()
    }

    /// Serves the metrics until dropped (the server aborts it as it stops).
    pub async fn serve(self) {
        tracing::info!(address = %self.local_addr, "metrics listening");
        http::serve(self.listener, Arc::new(self.registry)).await;
    }
}
