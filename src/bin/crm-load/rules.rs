//! `crm-load rules`: rule-based groups at scale, on a tenant seeded by
//! `crm-load seed`. Four scenarios:
//!
//! - `writes`: CreateCustomer and ChangeRelationship throughput with C
//!   concurrent callers for a fixed time, first with no rule group, then
//!   with 20 rule groups of varied rules (once all are CURRENT); the groups
//!   are deleted before the next round's measurement without them and
//!   restored (and evaluated again) for its measurement with them. Prints
//!   each round's ratio (with / without) and the medians.
//! - `evaluate`: sets a rule on a new group and times until the group is
//!   CURRENT, while writers change relationships; prints their latency
//!   alone and during the evaluation.
//! - `preview`: PreviewGroupRule over the whole tenant, a few rules, with
//!   and without `group_id`; per-call latency.
//! - `deliver`: many watchers of WatchGroupMembershipChanges while a writer
//!   adds single customers to a manual group and removes them again at a
//!   steady rate; acknowledgement-to-delivery latency over every (change,
//!   watcher) delivery.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use crm_classify::pb::{
    self, AddCustomersToGroupRequest, BatchChangeRelationshipRequest, ChangeRelationshipRequest,
    CountCustomersByRelationshipRequest, CreateCustomerRequest, CreateGroupRequest,
    DeleteGroupRequest, GetGroupRequest, ListGroupMembersRequest, ListGroupsRequest,
    ListSourcesRequest, PreviewGroupRuleRequest, RemoveCustomersFromGroupRequest,
    RestoreGroupRequest, WatchGroupMembershipChangesRequest, WatchGroupMembershipChangesResponse,
    customer_service_client::CustomerServiceClient, group_service_client::GroupServiceClient,
    membership_change::Change, source_service_client::SourceServiceClient,
    watch_group_membership_changes_response::Event,
};
use tonic::{Status, Streaming, transport::Channel};

use super::{
    drive::{Caller, Outcome, Svc, Tenant, closed_loop, first_customer_ids, percentile_ms},
    sweep::Work,
    watch::{
        Deliveries, StreamMessage, Write, connect, manual_relationships, open_watchers, paced,
        print_peak, start_rss_sampler,
    },
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `reason` of every relationship change made here.
const REASON: &str = "crm-load rules";
/// How often GetGroup is asked whether a group is CURRENT yet.
const POLL: Duration = Duration::from_millis(100);

/// Options of `crm-load rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Tenant seeded with `crm-load seed`.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Which scenario to run.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// writes: concurrent callers per measurement.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// writes: how long each measurement runs; deliver: how long the
    /// writer writes.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// writes: (without rules, with rules) pairs of measurements.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// HTTP/2 connections the callers (or the streams) share; deliver's
    /// writes use one more of their own.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Customers the relationship changes and the membership changes pick
    /// from, listed from the tenant.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
    /// evaluate: the rule timed (the seed's revenues are uniform in
    /// 0–50,000,000, so this one selects about a tenth).
    #[arg(long, default_value = "revenue < 5000000")]
    rule: String,
    /// evaluate: concurrent ChangeRelationship writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// evaluate: pause between one writer's calls.
    #[arg(long, default_value = "10ms", value_parser = super::parse_duration)]
    pace: Duration,
    /// evaluate: how long the writers run alone first.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    baseline: Duration,
    /// preview: calls per rule, with and without `group_id` each.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// deliver: open streams.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// deliver: membership changes per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// deliver: how long the watchers may take, after the last write, to
    /// receive every change.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    drain: Duration,
    /// How long a group may take to become CURRENT.
    #[arg(long, default_value = "30m", value_parser = super::parse_duration)]
    settle: Duration,
    /// Server process id, to report its peak resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Writes,
    Evaluate,
    Preview,
    Deliver,
}

pub async fn run(args: RulesArgs) -> Result<(), BoxError> {
    let tenant = Tenant::new(&args.tenant)?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(connect(&args.server).await?);
    }
    let fixture = Fixture::load(&channels[0], &tenant, args.sample).await?;
    println!(
        "tenant `{}`: {} customers, {} sampled; {} manual groups, {} sources, {} manual relationships",
        args.tenant,
        fixture.total,
        fixture.customers.len(),
        fixture.groups.len(),
        fixture.sources.len(),
        fixture.relationships.len(),
    );
    let bench = Bench {
        args: &args,
        tenant,
        channels,
        fixture,
    };
    let sampler = start_rss_sampler(args.server_pid);
    match args.scenario {
        Scenario::Writes => bench.writes().await?,
        Scenario::Evaluate => bench.evaluate().await?,
        Scenario::Preview => bench.preview().await?,
        Scenario::Deliver => bench.deliver().await?,
    }
    print_peak(sampler);
    Ok(())
}

/// What the scenarios pick from.
struct Fixture {
    /// Active customers of the tenant.
    total: i64,
    customers: Arc<[String]>,
    /// Manual groups (id, code), the seed's.
    groups: Vec<(String, String)>,
    /// Sources (id, code).
    sources: Vec<(String, String)>,
    /// Manual relationships (id, code).
    relationships: Vec<(String, String)>,
}

impl Fixture {
    async fn load(channel: &Channel, tenant: &Tenant, sample: usize) -> Result<Self, BoxError> {
        let mut customers =
            CustomerServiceClient::with_interceptor(channel.clone(), tenant.clone());
        let total = customers
            .count_customers_by_relationship(CountCustomersByRelationshipRequest::default())
            .await?
            .into_inner()
            .total;
        // By name: the seed's customers, spread over the whole tenant.
        let mut ids = first_customer_ids(&mut customers, "name", sample).await?;
        ids.sort_unstable();
        ids.dedup();
        let groups = GroupServiceClient::with_interceptor(channel.clone(), tenant.clone())
            .list_groups(ListGroupsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .groups
            .into_iter()
            .filter(|g| g.rule.is_empty())
            .map(|g| (g.id, g.code))
            .collect::<Vec<_>>();
        let sources = SourceServiceClient::with_interceptor(channel.clone(), tenant.clone())
            .list_sources(ListSourcesRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .sources
            .into_iter()
            .map(|s| (s.id, s.code))
            .collect::<Vec<_>>();
        let relationships = manual_relationships(channel, tenant).await?;
        if ids.len() < 100 || groups.len() < 2 || sources.is_empty() || relationships.len() < 2 {
            return Err(
                "the tenant needs customers, groups, sources and two manual relationships; run `crm-load seed` first"
                    .into(),
            );
        }
        Ok(Self {
            total,
            customers: ids.into(),
            groups,
            sources,
            relationships,
        })
    }

    /// The id of the manual relationship with `code`, else the `fallback`th.
    fn relationship(&self, code: &str, fallback: usize) -> &(String, String) {
        self.relationships
            .iter()
            .find(|(_, c)| c == code)
            .unwrap_or(&self.relationships[fallback % self.relationships.len()])
    }

    /// Twenty rules of the kinds a tenant would write: over province,
    /// relationship, revenue, source, owner, last contact (with `ago()`),
    /// attributes, company and name, two with `in_group` of a seeded group.
    fn twenty_rules(&self) -> Vec<String> {
        let hot = &self.relationship("HOT", 0).1;
        let potential = &self.relationship("POTENTIAL", 1).1;
        let closed = &self.relationship("CLOSED", 2).1;
        let source = |i: usize| &self.sources[i % self.sources.len()].1;
        let group = |i: usize| &self.groups[i % self.groups.len()].1;
        vec![
            r#"province = "Đà Nẵng""#.to_owned(),
            r#"province = "Hà Nội" AND revenue > 20000000"#.to_owned(),
            format!(r#"relationship = "{hot}""#),
            format!(r#"relationship = "{potential}" AND last_contact_time < ago("14d")"#),
            "revenue >= 45000000".to_owned(),
            r#"revenue < 1000000 AND NOT last_contact_time:*"#.to_owned(),
            format!(r#"source = "{}""#, source(0)),
            format!(r#"source = "{}" OR source = "{}""#, source(1), source(2)),
            r#"owner_id = "u7""#.to_owned(),
            r#"owner_id = "u1" OR owner_id = "u2" OR owner_id = "u3""#.to_owned(),
            r#"last_contact_time > ago("7d")"#.to_owned(),
            r#"last_contact_time < ago("30d") AND revenue > 10000000"#.to_owned(),
            r#"attributes.tier = "vang""#.to_owned(),
            r#"attributes.region:"mien trung" AND revenue > 10000000"#.to_owned(),
            format!(r#"in_group("{}") AND relationship = "{hot}""#, group(0)),
            format!(r#"in_group("{}") AND revenue > 25000000"#, group(5)),
            format!(r#"relationship = "{closed}" AND revenue > 30000000"#),
            r#"company:"thuong mai" AND province = "Hồ Chí Minh""#.to_owned(),
            r#"name = "khach hang 00001*""#.to_owned(),
            format!(
                r#"owner_id = "u9" AND source = "{}" AND last_contact_time > ago("3d")"#,
                source(3)
            ),
        ]
    }
}

/// Everything the scenarios share.
struct Bench<'a> {
    args: &'a RulesArgs,
    tenant: Tenant,
    channels: Vec<Channel>,
    fixture: Fixture,
}

impl Bench<'_> {
    fn customers(&self, i: usize) -> CustomerServiceClient<Svc> {
        CustomerServiceClient::with_interceptor(
            self.channels[i % self.channels.len()].clone(),
            self.tenant.clone(),
        )
    }

    fn groups(&self) -> GroupServiceClient<Svc> {
        GroupServiceClient::with_interceptor(self.channels[0].clone(), self.tenant.clone())
    }

    /// Creates a group named `name` (unique per run) with `rule`.
    async fn create_group(&self, name: &str, rule: &str) -> Result<pb::Group, BoxError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        Ok(self
            .groups()
            .create_group(CreateGroupRequest {
                group: Some(pb::Group {
                    name: format!("{name} {nanos}"),
                    rule: rule.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner()
            .group
            .ok_or("CreateGroup returned no group")?)
    }

    async fn get_group(&self, id: &str) -> Result<pb::Group, BoxError> {
        Ok(self
            .groups()
            .get_group(GetGroupRequest { id: id.to_owned() })
            .await?
            .into_inner()
            .group
            .ok_or("GetGroup returned no group")?)
    }

    /// Polls GetGroup until every group of `ids` is CURRENT; returns how
    /// long that took from `since`.
    async fn wait_current(&self, ids: &[String], since: Instant) -> Result<Duration, BoxError> {
        let deadline = since + self.args.settle;
        let mut waiting: Vec<&String> = ids.iter().collect();
        loop {
            let mut still = Vec::new();
            for id in waiting {
                if self.get_group(id).await?.evaluation_state() != pb::EvaluationState::Current {
                    still.push(id);
                }
            }
            if still.is_empty() {
                return Ok(since.elapsed());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {} groups not CURRENT after {:?}",
                    still.len(),
                    ids.len(),
                    self.args.settle
                )
                .into());
            }
            waiting = still;
            tokio::time::sleep(POLL).await;
        }
    }

    async fn delete_group(&self, id: &str) -> Result<(), BoxError> {
        self.groups()
            .delete_group(DeleteGroupRequest {
                id: id.to_owned(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// CreateCustomer and ChangeRelationship without rule groups, then with
    /// twenty, in rounds.
    async fn writes(&self) -> Result<(), BoxError> {
        let args = self.args;
        let moves = Moves::prepare(self, args.clients).await?;
        let rules = self.fixture.twenty_rules();
        println!(
            "\n== writes: {} callers for {:?} per measurement, {} rounds of (no rule groups, {} rule groups)",
            args.clients,
            args.duration,
            args.rounds,
            rules.len()
        );
        for rule in &rules {
            println!("   rule: {rule}");
        }
        println!(
            "{:<7} {:<34} {:>9} {:>9} {:>9} {:>7}",
            "round", "measurement", "calls/s", "p50 ms", "p99 ms", "errors"
        );
        let mut ids: Vec<String> = Vec::new();
        let (mut create_ratios, mut change_ratios) = (Vec::new(), Vec::new());
        let mut rows: Vec<(&str, Vec<Outcome>)> = vec![
            ("CreateCustomer, no rules", vec![]),
            ("ChangeRelationship, no rules", vec![]),
            ("CreateCustomer, 20 rules", vec![]),
            ("ChangeRelationship, 20 rules", vec![]),
        ];
        for round in 1..=args.rounds {
            let create = self.measure_creates().await;
            print_row(round, rows[0].0, &create);
            let change = self.measure_changes(&moves).await;
            print_row(round, rows[1].0, &change);

            let started = Instant::now();
            if ids.is_empty() {
                for (i, rule) in rules.iter().enumerate() {
                    ids.push(
                        self.create_group(&format!("crm-load rule {i}"), rule)
                            .await?
                            .id,
                    );
                }
            } else {
                for id in &ids {
                    self.groups()
                        .restore_group(RestoreGroupRequest {
                            id: id.clone(),
                            ..Default::default()
                        })
                        .await?;
                }
            }
            let took = self.wait_current(&ids, started).await?;
            println!(
                "{round:<7} {} rule groups {} and CURRENT in {:.1} s",
                ids.len(),
                if round == 1 { "created" } else { "restored" },
                took.as_secs_f64()
            );
            let create_rules = self.measure_creates().await;
            print_row(round, rows[2].0, &create_rules);
            let change_rules = self.measure_changes(&moves).await;
            print_row(round, rows[3].0, &change_rules);
            create_ratios.push(create_rules.rate() / create.rate());
            change_ratios.push(change_rules.rate() / change.rate());
            println!(
                "{round:<7} with / without rules: CreateCustomer {:.0} %, ChangeRelationship {:.0} %",
                100.0 * create_ratios[round - 1],
                100.0 * change_ratios[round - 1],
            );
            for id in &ids {
                self.delete_group(id).await?;
            }
            for (row, outcome) in rows
                .iter_mut()
                .zip([create, change, create_rules, change_rules])
            {
                row.1.push(outcome);
            }
        }
        println!("medians over {} rounds:", args.rounds);
        for (name, outcomes) in &rows {
            println!(
                "        {:<34} {:>9.0} {:>9.2} {:>9.2}",
                name,
                median(outcomes.iter().map(Outcome::rate).collect()),
                median(outcomes.iter().map(|o| o.percentile(0.50)).collect()),
                median(outcomes.iter().map(|o| o.percentile(0.99)).collect()),
            );
        }
        println!(
            "median ratio with / without 20 rule groups (target >= 70 %): CreateCustomer {:.0} %, ChangeRelationship {:.0} %",
            100.0 * median(create_ratios),
            100.0 * median(change_ratios),
        );
        println!("(the rule groups are left deleted)");
        Ok(())
    }

    async fn measure_creates(&self) -> Outcome {
        let groups: Arc<[String]> = self.fixture.groups.iter().map(|g| g.0.clone()).collect();
        let sources: Arc<[String]> = self.fixture.sources.iter().map(|s| s.0.clone()).collect();
        let callers = (0..self.args.clients)
            .map(|worker| CreateCaller {
                client: self.customers(worker),
                rng: fastrand::Rng::new(),
                worker,
                groups: groups.clone(),
                sources: sources.clone(),
            })
            .collect();
        closed_loop(callers, self.args.duration).await
    }

    async fn measure_changes(&self, moves: &Moves) -> Outcome {
        let callers = (0..self.args.clients)
            .map(|worker| ChangeCaller {
                client: self.customers(worker),
                moves: moves.clone(),
                worker,
            })
            .collect();
        closed_loop(callers, self.args.duration).await
    }

    /// A new rule group over the whole tenant, timed until CURRENT, while
    /// writers change relationships.
    async fn evaluate(&self) -> Result<(), BoxError> {
        let args = self.args;
        let started = Instant::now();
        let expected = match self
            .groups()
            .preview_group_rule(PreviewGroupRuleRequest {
                rule: args.rule.clone(),
                page_size: 1,
                ..Default::default()
            })
            .await
        {
            Ok(preview) => preview.into_inner().total_size.to_string(),
            Err(status) => format!(
                "? (PreviewGroupRule failed after {:.1} s: {:?})",
                started.elapsed().as_secs_f64(),
                status.code()
            ),
        };
        println!(
            "\n== evaluate: rule `{}` matches {expected} of {} customers (PreviewGroupRule); {} writers changing relationships every {:?}",
            args.rule, self.fixture.total, args.writers, args.pace
        );
        let work = Work::load(
            self.channels[self.channels.len() - 1].clone(),
            self.tenant.clone(),
            args.pace,
            REASON,
        )
        .await?;
        let alone = work
            .during(args.writers, tokio::time::sleep(args.baseline))
            .await;
        let evaluation = async {
            let started = Instant::now();
            let group = self.create_group("crm-load evaluate", &args.rule).await?;
            let created = started.elapsed();
            let took = self
                .wait_current(std::slice::from_ref(&group.id), started)
                .await?;
            Ok::<_, BoxError>((group.id, created, took))
        };
        let (during, result) = work.during_with(args.writers, evaluation).await;
        let (id, created, took) = result?;
        let group = self.get_group(&id).await?;
        println!(
            "   CreateGroup took {:.0} ms; CURRENT {:.2} s after it was sent (target < 30 s); {} members ({} expected)",
            created.as_secs_f64() * 1000.0,
            took.as_secs_f64(),
            group.customer_count,
            expected,
        );
        println!(
            "   {:<28} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "ChangeRelationship writes", "calls", "p50 ms", "p99 ms", "max ms", "errors"
        );
        for (name, outcome) in [
            ("alone (baseline)", alone),
            ("during the evaluation", during),
        ] {
            println!(
                "   {:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                name,
                outcome.latencies_us.len(),
                outcome.percentile(0.50),
                outcome.percentile(0.99),
                outcome.percentile(1.0),
                outcome.errors
            );
        }
        println!("   (target: p99 during the evaluation < 100 ms)");
        self.delete_group(&id).await?;
        Ok(())
    }

    /// PreviewGroupRule over the whole tenant.
    async fn preview(&self) -> Result<(), BoxError> {
        let f = &self.fixture;
        let hot = &f.relationship("HOT", 0).1;
        let (group, group_code) = &f.groups[0];
        let rules = [
            "revenue < 5000000".to_owned(),
            format!(r#"relationship = "{hot}" AND owner_id = "u7""#),
            r#"last_contact_time < ago("30d") AND revenue > 25000000"#.to_owned(),
            format!(
                r#"in_group("{}") OR source = "{}""#,
                f.groups[1].1, f.sources[0].1
            ),
            r#"province = "Đà Nẵng" OR attributes.tier = "vang""#.to_owned(),
        ];
        println!(
            "\n== preview: PreviewGroupRule over {} customers, {} sequential calls per line; with group_id: {group_code} (manual)",
            f.total, self.args.calls
        );
        println!(
            "{:<62} {:>5} {:>8} {:>13} {:>9} {:>9} {:>9} {:>6}",
            "rule", "group", "matches", "join/leave", "p50 ms", "p99 ms", "max ms", "errors"
        );
        let mut all = Vec::new();
        for rule in &rules {
            for group_id in ["", group.as_str()] {
                let mut latencies_us = Vec::new();
                let mut last = None;
                let mut errors = Vec::new();
                for _ in 0..self.args.calls {
                    let started = Instant::now();
                    let response = self
                        .groups()
                        .preview_group_rule(PreviewGroupRuleRequest {
                            rule: rule.clone(),
                            group_id: group_id.to_owned(),
                            page_size: 50,
                        })
                        .await;
                    // Failed calls count too: with their time until the
                    // server gave up.
                    latencies_us.push(started.elapsed().as_micros() as u64);
                    match response {
                        Ok(response) => last = Some(response.into_inner()),
                        Err(status) => errors.push(status.code()),
                    }
                }
                all.extend(&latencies_us);
                latencies_us.sort_unstable();
                let last = last.unwrap_or_default();
                println!(
                    "{:<62} {:>5} {:>8} {:>13} {:>9.1} {:>9.1} {:>9.1} {:>6}{}",
                    rule,
                    if group_id.is_empty() { "no" } else { "yes" },
                    last.total_size,
                    if group_id.is_empty() {
                        "-".to_owned()
                    } else {
                        format!("{}/{}", last.join_count, last.leave_count)
                    },
                    percentile_ms(&latencies_us, 0.50),
                    percentile_ms(&latencies_us, 0.99),
                    percentile_ms(&latencies_us, 1.0),
                    errors.len(),
                    errors
                        .first()
                        .map_or(String::new(), |code| format!(" ({code:?})")),
                );
            }
        }
        all.sort_unstable();
        println!(
            "all {} calls: p50 {:.1} ms, p99 {:.1} ms (target p99 < 2 s)",
            all.len(),
            percentile_ms(&all, 0.50),
            percentile_ms(&all, 0.99)
        );
        Ok(())
    }

    /// Watchers of the membership stream while single customers join and
    /// leave a manual group at a steady rate.
    async fn deliver(&self) -> Result<(), BoxError> {
        let args = self.args;
        let n = args.watchers;
        let writes_needed = (args.rate * args.duration.as_secs_f64()).ceil() as usize;
        let mut customers = self.fixture.customers.to_vec();
        let warm_up = customers.pop().unwrap_or_default();
        if writes_needed > 2 * customers.len() {
            return Err(format!(
                "{writes_needed} changes need at least {} customers; raise --sample",
                writes_needed.div_ceil(2)
            )
            .into());
        }
        let group = self.create_group("crm-load deliver", "").await?;
        let writes_channel = connect(&args.server).await?;
        let client =
            CustomerServiceClient::with_interceptor(writes_channel.clone(), self.tenant.clone());
        let watchers =
            open_watchers(&self.channels, &self.tenant, n, open_membership_stream).await?;
        let started = Instant::now();
        join(client.clone(), group.id.clone(), warm_up, true).await?;
        watchers.warm(n).await?;
        let warm = started.elapsed();
        let mut i = 0;
        let writes = paced(
            Duration::from_secs_f64(1.0 / args.rate),
            args.duration,
            1,
            || {
                // The first pass over the customers adds them, the second
                // removes them: every call is one change.
                let (customer, joined) =
                    (customers[i % customers.len()].clone(), i < customers.len());
                i += 1;
                join(client.clone(), group.id.clone(), customer, joined)
            },
        )
        .await?;
        let upto = self
            .groups()
            .list_group_members(ListGroupMembersRequest {
                group_id: group.id.clone(),
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner()
            .watch_from_sequence;
        let received = watchers.finish(upto, args.drain).await;
        println!(
            "\n== deliver: {n} watchers of WatchGroupMembershipChanges on {} connections; single-customer AddCustomersToGroup / RemoveCustomersFromGroup on a manual group at {}/s for {:?}",
            self.channels.len(),
            args.rate,
            args.duration
        );
        println!(
            "   all {n} streams open; the first change reached them all {:.1} ms after it was sent",
            warm.as_secs_f64() * 1000.0
        );
        println!("   writes: {}", writes.summary());
        Deliveries::count(&writes, &received).print();
        println!("   (target: ack->delivery p99 < 50 ms)");
        self.delete_group(&group.id).await?;
        Ok(())
    }
}

fn print_row(round: usize, name: &str, outcome: &Outcome) {
    println!(
        "{round:<7} {name:<34} {:>9.0} {:>9.2} {:>9.2} {:>7}",
        outcome.rate(),
        outcome.percentile(0.50),
        outcome.percentile(0.99),
        outcome.errors
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Creates customers with varied profiles, so that the rules match some.
struct CreateCaller {
    client: CustomerServiceClient<Svc>,
    rng: fastrand::Rng,
    worker: usize,
    groups: Arc<[String]>,
    sources: Arc<[String]>,
}

impl Caller for CreateCaller {
    async fn call(&mut self, n: u64) -> bool {
        const PROVINCES: [&str; 6] = [
            "Hà Nội",
            "Hồ Chí Minh",
            "Đà Nẵng",
            "Huế",
            "Cần Thơ",
            "Hải Phòng",
        ];
        let rng = &mut self.rng;
        let unique = format!("{}-{}-{n}-{}", std::process::id(), self.worker, rng.u64(..));
        let attributes = [
            ("tier", ["vang", "bac", "dong"][rng.usize(..3)]),
            (
                "region",
                ["Miền Trung", "Miền Bắc", "Miền Nam"][rng.usize(..3)],
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let customer = pb::Customer {
            name: format!("Tải thử {unique}"),
            email: format!("rules-{unique}@example.vn"),
            owner_id: format!("u{}", rng.u32(..50)),
            source_id: self.sources[rng.usize(..self.sources.len())].clone(),
            province: PROVINCES[rng.usize(..PROVINCES.len())].to_owned(),
            company: if rng.bool() {
                "Công ty Thương mại Sông Hàn".to_owned()
            } else {
                String::new()
            },
            revenue: rng.i64(0..50_000_000),
            attributes,
            group_ids: vec![self.groups[rng.usize(..self.groups.len())].clone()],
            ..Default::default()
        };
        self.client
            .create_customer(CreateCustomerRequest {
                customer: Some(customer),
                ..Default::default()
            })
            .await
            .is_ok()
    }
}

/// The relationship changes of the writes scenario: the sample's customers
/// alternate between HOT and POTENTIAL, each caller moving only its own
/// share (customers `worker`, `worker + callers`, …) in turn, so that every
/// call really moves a customer and no two calls race for one.
#[derive(Clone)]
struct Moves {
    customers: Arc<[String]>,
    targets: Arc<[String; 2]>,
    /// Which target each customer is in.
    at: Arc<[AtomicU8]>,
    /// Each caller's next turn.
    turns: Arc<[AtomicUsize]>,
}

impl Moves {
    /// Moves every customer of the sample to the second target.
    async fn prepare(bench: &Bench<'_>, callers: usize) -> Result<Self, BoxError> {
        let f = &bench.fixture;
        let targets = [
            f.relationship("HOT", 0).0.clone(),
            f.relationship("POTENTIAL", 1).0.clone(),
        ];
        let customers = f.customers.clone();
        if customers.len() < callers {
            return Err("fewer customers sampled than callers; raise --sample".into());
        }
        for chunk in customers.chunks(1000) {
            bench
                .customers(0)
                .batch_change_relationship(BatchChangeRelationshipRequest {
                    customer_ids: chunk.to_vec(),
                    relationship_id: targets[1].clone(),
                    reason: REASON.into(),
                })
                .await?;
        }
        Ok(Self {
            at: customers.iter().map(|_| AtomicU8::new(1)).collect(),
            turns: (0..callers).map(|_| AtomicUsize::new(0)).collect(),
            customers,
            targets: Arc::new(targets),
        })
    }
}

/// Moves the next customer of its share of [`Moves`] to the other target.
struct ChangeCaller {
    client: CustomerServiceClient<Svc>,
    moves: Moves,
    worker: usize,
}

impl Caller for ChangeCaller {
    async fn call(&mut self, _: u64) -> bool {
        let m = &self.moves;
        let callers = m.turns.len();
        let share = (m.customers.len() - self.worker).div_ceil(callers);
        let turn = m.turns[self.worker].fetch_add(1, Ordering::Relaxed);
        let i = self.worker + (turn % share) * callers;
        let to = 1 - m.at[i].load(Ordering::Relaxed);
        let ok = self
            .client
            .change_relationship(ChangeRelationshipRequest {
                customer_id: m.customers[i].clone(),
                relationship_id: m.targets[to as usize].clone(),
                reason: REASON.into(),
                etag: String::new(),
            })
            .await
            .is_ok();
        if ok {
            m.at[i].store(to, Ordering::Relaxed);
        }
        ok
    }
}

/// A membership change as the deliver scenario knows it: (group, customer,
/// joined).
type MembershipKey = (String, String, bool);

impl StreamMessage for WatchGroupMembershipChangesResponse {
    type Key = MembershipKey;

    fn change(self) -> Option<(i64, MembershipKey)> {
        match self.event {
            Some(Event::Change(change)) => {
                let joined = change.change() == Change::Joined;
                Some((
                    change.sequence,
                    (change.group_id, change.customer_id, joined),
                ))
            }
            Some(Event::Heartbeat(_)) | None => None,
        }
    }
}

async fn open_membership_stream(
    channel: Channel,
    tenant: Tenant,
) -> Result<Streaming<WatchGroupMembershipChangesResponse>, Status> {
    Ok(GroupServiceClient::with_interceptor(channel, tenant)
        .watch_group_membership_changes(WatchGroupMembershipChangesRequest::default())
        .await?
        .into_inner())
}

/// Adds `customer` to manual group `group` (or removes it); one change,
/// known by its key.
async fn join(
    mut client: CustomerServiceClient<Svc>,
    group_id: String,
    customer_id: String,
    joined: bool,
) -> Result<Write<MembershipKey>, String> {
    let sent = tokio::time::Instant::now();
    let customer_ids = vec![customer_id.clone()];
    let changed = if joined {
        client
            .add_customers_to_group(AddCustomersToGroupRequest {
                group_id: group_id.clone(),
                customer_ids,
            })
            .await
            .map(|r| r.into_inner().added_count)
    } else {
        client
            .remove_customers_from_group(RemoveCustomersFromGroupRequest {
                group_id: group_id.clone(),
                customer_ids,
            })
            .await
            .map(|r| r.into_inner().removed_count)
    }
    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(Write {
        sent,
        acked: tokio::time::Instant::now(),
        keys: (changed > 0)
            .then_some((group_id, customer_id, joined))
            .into_iter()
            .collect(),
        customers: 1,
    })
}
