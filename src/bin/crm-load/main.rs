//! `crm-load`: the benchmark tool. `seed` bulk-loads a tenant with N
//! customers straight into the database (with every derived table kept
//! consistent); `run` drives a running server over gRPC with C concurrent
//! clients per RPC for a fixed time and prints calls/s and p50/p99 latency,
//! with grpc.health.v1 Check on the same server as the transport baseline;
//! `sweep` times the inactivity sweep while other writes go on;
//! `watch` benchmarks the relationship change stream (latency to many
//! watchers, throughput, a watcher that stops reading); `filter` times
//! parsing a filter and evaluating it on one customer in memory; `rules`
//! benchmarks rule-based groups (writes with and without 20 rule groups,
//! a rule's evaluation over the tenant, previews, the membership stream);
//! `import-file` writes the spreadsheet the import benchmark imports;
//! `reports` times every report on a seeded tenant; `flood` measures one
//! tenant's GetCustomer p99 alone and while another floods at ten times
//! the per-tenant rate limit.
//! See BENCHMARKS.md for the commands and results.

mod drive;
mod filter;
mod flood;
mod import_file;
mod reports;
mod rules;
mod seed;
mod sweep;
mod watch;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// Seeds and drives crm-classify for benchmarks.
#[derive(Debug, Parser)]
#[command(name = "crm-load")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bulk-load a tenant with customers, groups and sources.
    Seed(seed::SeedArgs),
    /// Drive a running server and print throughput and latency per RPC.
    Run(drive::RunArgs),
    /// Time ApplyInactivityRules on a seeded tenant while writers keep
    /// changing relationships, and print their latency alone and during it.
    Sweep(sweep::SweepArgs),
    /// Benchmark the relationship change stream: delivery latency to many
    /// watchers, throughput, and a watcher that stops reading.
    Watch(watch::WatchArgs),
    /// Time parsing a 20-comparison filter and evaluating it in memory on
    /// one customer.
    Filter(filter::FilterArgs),
    /// Benchmark rule-based groups: writes with and without 20 rule
    /// groups, evaluating a new rule over the tenant while writers write,
    /// PreviewGroupRule, and delivery of membership changes to watchers.
    Rules(rules::RulesArgs),
    /// Write the CSV the import benchmark feeds to `crm-classify import`:
    /// Getfly's Vietnamese column labels, half the rows matching seeded
    /// customers' phones.
    ImportFile(import_file::ImportFileArgs),
    /// Time every report (group report, overlap, relationship flow, owner
    /// report, the summary bar as of past moments) one call at a time.
    Reports(reports::ReportsArgs),
    /// Measure a tenant's GetCustomer p99 alone and while another tenant
    /// floods at ten times the per-tenant rate limit (`--tenant-rate`).
    Flood(flood::FloodArgs),
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crm_classify::config::parse_duration(text)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match Cli::parse().command {
        Command::Seed(args) => seed::run(args).await,
        Command::Run(args) => drive::run(args).await,
        Command::Sweep(args) => sweep::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Filter(args) => filter::run(args),
        Command::Rules(args) => rules::run(args).await,
        Command::ImportFile(args) => import_file::run(args),
        Command::Reports(args) => reports::run(args).await,
        Command::Flood(args) => flood::run(args).await,
    }
}
