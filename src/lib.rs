//! crm-classify: a gRPC service that classifies a company's customers by
//! group, source and relationship status.
//!
//! # Layout
//!
//! - [`config`]: command line and `CRM_*` environment options.
//! - [`telemetry`]: tracing subscriber (pretty or JSON), each call's span
//!   (with the W3C trace id a caller sent), and the throttle for warnings
//!   a retry loop repeats.
//! - [`app`]: builds the server (socket, database, services) and runs it
//!   until the caller's shutdown signal.
//! - [`auth`]: `--auth` modes, JWT verification (HS256 secret or JWK
//!   set), the table of the scope each RPC requires, the layer applying
//!   them to every call, and TLS / mutual TLS.
//! - [`health`]: grpc.health.v1 statuses that follow the database and its
//!   schema.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`: every call's
//!   (go-grpc-prometheus names, from the outermost layer) and the
//!   service's own figures.
//! - [`transport`]: below the handlers: the handshake deadline of new
//!   connections, and conventional codes for requests tonic cannot read.
//! - [`limits`]: per-tenant call rate, load shedding of calls in flight,
//!   per-tenant cap of open change streams (a tower layer).
//! - [`maintenance`]: background upkeep: the inactivity sweep and the
//!   change stream's retention.
//! - [`clock`]: the one source of "now", controllable in tests.
//! - [`error`]: `AppError`, database error classification, gRPC statuses.
//! - [`domain`]: validated inputs and rules (codes, names, ids, paging,
//!   relationship kinds, the filter language and its in-memory
//!   evaluator); no tonic, no SeaORM.
//! - [`store`]: persistence, no tonic: `store::customers` (with the one
//!   write path every customer change goes through,
//!   `store::customers::write`, and filters as SQL in
//!   `store::customers::filter`), `store::catalogs` (groups, sources,
//!   relationships), `store::db` (connection and statement time limits,
//!   write transactions, read snapshots, replicas).
//! - [`changes`]: the change stream: tailing the relationship-change log
//!   (which only the write path appends to), fan-out and retention.
//! - [`entity`]: SeaORM entities.
//! - [`grpc`]: transport: one handler file per service plus conversions.
//! - [`pb`]: generated protobuf code and the reflection descriptor set.
//! - [`cli`]: `crm-classify import FILE` and `crm-classify export`, clients
//!   of a running server: CSV and XLSX files (`cli::read`, `cli::write`),
//!   their columns and labels (`cli::columns`), the streams
//!   (`cli::import`, `cli::export`) and the progress (`cli::progress`).

pub mod app;
pub mod auth;
pub mod changes;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod entity;
pub mod error;
pub mod grpc;
pub mod health;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod pb;
pub mod store;
pub mod telemetry;
pub mod transport;

pub use app::Application;
pub use config::Config;
