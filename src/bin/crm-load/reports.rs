//! `crm-load reports`: times every report on a seeded tenant, one call at a
//! time (reports are a manager's occasional reads, not a hot path), and
//! prints each scenario's median, p99 and slowest call.

use std::time::{Duration, Instant};

use clap::Args;
use crm_classify::pb::{
    CountCustomersByRelationshipRequest, GetGroupOverlapRequest, GetGroupReportRequest,
    GetOwnerReportRequest, GetRelationshipFlowRequest, ListGroupsRequest,
    customer_service_client::CustomerServiceClient, group_service_client::GroupServiceClient,
    relationship_service_client::RelationshipServiceClient,
};
use prost_types::Timestamp;
use tonic::{Status, service::interceptor::InterceptedService};

use crate::drive::{Tenant, percentile_ms};

/// Options of `crm-load reports`.
#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Tenant seeded with `crm-load seed`.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Calls per scenario (the fast scenario makes ten times as many).
    #[arg(long, default_value_t = 5)]
    calls: usize,
    /// Only the scenarios whose names contain this text.
    #[arg(long)]
    only: Option<String>,
}

const DAY_SECONDS: i64 = 86_400;

fn ago(days: i64) -> Option<Timestamp> {
    let now = chrono::Utc::now().timestamp();
    Some(Timestamp {
        seconds: now - days * DAY_SECONDS,
        nanos: 0,
    })
}

pub async fn run(args: ReportsArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = crate::watch::connect(&args.server).await?;
    let tenant = Tenant::new(&args.tenant)?;
    let svc = InterceptedService::new(channel, tenant);
    let mut customers = CustomerServiceClient::new(svc.clone());
    let mut relationships = RelationshipServiceClient::new(svc.clone());
    let groups: Vec<String> = GroupServiceClient::new(svc)
        .list_groups(ListGroupsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .groups
        .into_iter()
        .map(|g| g.id)
        .collect();
    println!("{} groups in tenant `{}`", groups.len(), args.tenant);
    println!(
        "{:<34} {:>6} {:>10} {:>10} {:>10}",
        "scenario", "calls", "median ms", "p99 ms", "max ms"
    );
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    let twenty: Vec<String> = groups.iter().take(20).cloned().collect();
    let ten: Vec<String> = groups.iter().take(10).cloned().collect();

    macro_rules! scenario {
        ($name:expr, $calls:expr, $call:expr) => {
            if wanted($name) {
                let mut latencies = Vec::with_capacity($calls);
                for _ in 0..$calls {
                    let started = Instant::now();
                    let result: Result<_, Status> = $call.await;
                    result.map_err(|s| format!("{}: {s}", $name))?;
                    latencies.push(started.elapsed());
                }
                print_line($name, latencies);
            }
        };
    }

    scenario!(
        "GroupReport 20 groups, no period",
        args.calls * 10,
        customers.get_group_report(GetGroupReportRequest {
            group_ids: twenty.clone(),
            ..Default::default()
        })
    );
    scenario!(
        "GroupReport 20 groups, last month",
        args.calls,
        customers.get_group_report(GetGroupReportRequest {
            group_ids: twenty.clone(),
            create_time_from: ago(30),
            ..Default::default()
        })
    );
    scenario!(
        "GroupOverlap 10 groups",
        args.calls,
        customers.get_group_overlap(GetGroupOverlapRequest {
            group_ids: ten.clone(),
        })
    );
    for (label, days) in [("year", 365), ("month", 30)] {
        scenario!(
            &format!("RelationshipFlow, last {label}"),
            args.calls,
            relationships.get_relationship_flow(GetRelationshipFlowRequest {
                from_time: ago(days),
                ..Default::default()
            })
        );
        scenario!(
            &format!("OwnerReport, last {label}"),
            args.calls,
            relationships.get_owner_report(GetOwnerReportRequest {
                from_time: ago(days),
                ..Default::default()
            })
        );
    }
    for (label, days) in [("a week", 7), ("a month", 30), ("six months", 182)] {
        scenario!(
            &format!("Summary bar as of {label} ago"),
            args.calls,
            customers.count_customers_by_relationship(CountCustomersByRelationshipRequest {
                as_of: ago(days),
                ..Default::default()
            })
        );
    }
    Ok(())
}

fn print_line(name: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let us: Vec<u64> = latencies.iter().map(|d| d.as_micros() as u64).collect();
    println!(
        "{:<34} {:>6} {:>10.1} {:>10.1} {:>10.1}",
        name,
        us.len(),
        percentile_ms(&us, 0.50),
        percentile_ms(&us, 0.99),
        percentile_ms(&us, 1.0),
    );
}
