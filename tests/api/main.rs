//! Integration tests: the real server over gRPC with the generated clients,
//! every test body on SQLite and, when `CRM_TEST_POSTGRES_URL` is set, on
//! PostgreSQL.

mod fixtures;
mod helpers;
mod report_record;
mod requests;

mod as_of;
mod auth;
mod change_stream;
mod cli;
mod create_batches;
mod customers;
mod filter_differential;
mod filters;
mod folded_text;
mod group_report;
mod groups;
mod hostile_fuzz;
mod hostile_input;
mod hostile_tokens;
mod hostile_transport;
mod import_export;
mod inactivity;
mod limits;
mod membership_stream;
mod metrics;
mod owner_report;
mod processes;
mod query_timeout;
mod readme;
mod record_cache;
mod relationship_flow;
mod relationship_members;
mod relationships;
mod reports;
mod retention;
mod rule_groups;
mod server;
mod sources;
mod stored_data;
mod tenancy;
mod tls;
mod unwritten_tenants;
mod watch_from;
mod write_path;
