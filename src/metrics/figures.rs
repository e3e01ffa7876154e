//! The service's own figures: what the store and upkeep count as they go
//! ([`ServiceMetrics`]: sweeps, rule evaluations, imported rows), and what
//! is read from the running server when scraped ([`Gauges`]: open change
//! streams and how far behind they are, queued creates, database pool
//! use). None is labelled by tenant.

use std::time::Duration;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::Registry,
};
use sea_orm::{DatabaseConnection, DatabaseConnectionType};

use crate::{
    changes::feed::Watchers, domain::import::Outcome, store::Store,
    store::db::connection::ServiceConnections,
};

/// One fixed label.
type Label = [(&'static str, &'static str); 1];

/// Sweep durations, in seconds: a round over every tenant takes from
/// milliseconds (nothing due) to minutes (a large tenant gone idle).
const SWEEP_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// What the store and the background upkeep count; cheap to bump (atomic
/// counters), whether or not `--metrics-listen` serves them.
#[derive(Debug)]
pub struct ServiceMetrics {
    sweeps_done: Counter,
    sweeps_failed: Counter,
    sweep_moves: Counter,
    sweep_duration: Histogram,
    /// Rule groups whose evaluation finished (committed).
    pub rule_evaluations: Counter,
    /// Batches of customers a rule evaluation committed.
    pub rule_evaluation_batches: Counter,
    rows: Family<Label, Counter>,
    /// The `rows` children, by outcome: created, updated, unchanged, failed.
    row_outcomes: [Counter; 4],
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        let rows = Family::<Label, Counter>::default();
        let row_outcomes = ["created", "updated", "unchanged", "failed"]
            .map(|outcome| rows.get_or_create_owned(&[("outcome", outcome)]));
        Self {
            sweeps_done: Counter::default(),
            sweeps_failed: Counter::default(),
            sweep_moves: Counter::default(),
            sweep_duration: Histogram::new(SWEEP_BUCKETS),
            rule_evaluations: Counter::default(),
            rule_evaluation_batches: Counter::default(),
            rows,
            row_outcomes,
        }
    }
}

impl ServiceMetrics {
    /// Notes a round of the inactivity sweep: how many customers it moved,
    /// or `None` when it failed, and how long it took.
    pub fn sweep_ran(&self, moved: Option<u64>, took: Duration) {
        match moved {
            Some(moved) => {
                self.sweeps_done.inc();
                self.sweep_moves.inc_by(moved);
            }
            None => {
                self.sweeps_failed.inc();
            }
        }
        self.sweep_duration.observe(took.as_secs_f64());
    }

    /// Notes an imported row: its outcome, or `None` when it failed.
    pub fn imported_row(&self, outcome: Option<Outcome>) {
        let index = match outcome {
            Some(Outcome::Created) => 0,
            Some(Outcome::Updated) => 1,
            Some(Outcome::Unchanged) => 2,
            None => 3,
        };
        self.row_outcomes[index].inc();
    }

    /// Registers the figures in `registry`.
    fn register(&self, registry: &mut Registry) {
        let runs = SweepRuns {
            done: self.sweeps_done.clone(),
            failed: self.sweeps_failed.clone(),
        };
        registry.register_collector(Box::new(runs));
        registry.register(
            "crm_sweep_moves",
            "Customers the background inactivity sweep moved",
            self.sweep_moves.clone(),
        );
        registry.register(
            "crm_sweep_duration_seconds",
            "How long a round of the background inactivity sweep took",
            self.sweep_duration.clone(),
        );
        registry.register(
            "crm_rule_evaluations",
            "Rule groups whose evaluation finished",
            self.rule_evaluations.clone(),
        );
        registry.register(
            "crm_rule_evaluation_batches",
            "Batches of customers rule evaluations committed",
            self.rule_evaluation_batches.clone(),
        );
        registry.register(
            "crm_import_rows",
            "Rows imported, by outcome (created, updated, unchanged, failed); dry runs and rows repeated from an earlier run are not counted",
            self.rows.clone(),
        );
    }
}

/// The sweep rounds by result, from the two counters.
#[derive(Debug)]
struct SweepRuns {
    done: Counter,
    failed: Counter,
}

impl Collector for SweepRuns {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut runs = encoder.encode_descriptor(
            "crm_sweep_runs",
            "Rounds of the background inactivity sweep, by result (ok, failed)",
            None,
            MetricType::Counter,
        )?;
        for (result, counter) in [("ok", &self.done), ("failed", &self.failed)] {
            ConstCounter::new(counter.get()).encode(runs.encode_family(&[("result", result)])?)?;
        }
        Ok(())
    }
}

/// The database pools the service works on, by the work they serve.
#[derive(Debug, Clone, Default)]
pub struct Pools(Vec<(&'static str, DatabaseConnection)>);

impl Pools {
    /// The pools of `connections`: requests', and where they have their
    /// own, the writer's and background upkeep's.
    pub fn of(connections: &ServiceConnections) -> Self {
        let mut pools = vec![("requests", connections.requests.clone())];
        pools.extend(connections.writer.clone().map(|w| ("writer", w)));
        pools.extend(connections.background.clone().map(|b| ("background", b)));
        Self(pools)
    }

    /// `(pool, open, idle, max)` of each pool now.
    fn usage(&self) -> impl Iterator<Item = (&'static str, u64, u64, u64)> + '_ {
        self.0.iter().filter_map(|(name, db)| {
            let (size, idle, max) = match &db.inner {
                DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
                    let pool = db.get_sqlite_connection_pool();
                    (
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    )
                }
                DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
                    let pool = db.get_postgres_connection_pool();
                    (
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    )
                }
                _ => return None,
            };
            let idle = idle as u64;
            Some((*name, u64::from(size), idle, u64::from(max)))
        })
    }
}

/// What is read from the running server at each scrape.
struct Gauges {
    store: Store,
    pools: Pools,
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauges")
            .field("pools", &self.pools)
            .finish()
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let feeds = self.store.feeds();
        let streams: [(&str, Watchers); 2] = [
            ("relationship_changes", feeds.relationships.watchers()),
            ("group_memberships", feeds.memberships.watchers()),
        ];
        let mut open = encoder.encode_descriptor(
            "crm_open_streams",
            "Change streams open, by stream (relationship_changes, group_memberships)",
            None,
            MetricType::Gauge,
        )?;
        for (stream, watchers) in &streams {
            ConstGauge::new(watchers.open as i64)
                .encode(open.encode_family(&[("stream", *stream)])?)?;
        }
        let mut behind = encoder.encode_descriptor(
            "crm_stream_lag_batches",
            "The most batches (of up to 500 changes) that the watchers of one tenant have yet to read; at 64 the slowest falls behind and reads from the database",
            None,
            MetricType::Gauge,
        )?;
        for (stream, watchers) in &streams {
            ConstGauge::new(watchers.most_behind as i64)
                .encode(behind.encode_family(&[("stream", *stream)])?)?;
        }
        let mut lagged = encoder.encode_descriptor(
            "crm_stream_lagged",
            "Times a watcher fell behind the live changes and read what it missed from the database",
            None,
            MetricType::Counter,
        )?;
        for (stream, watchers) in &streams {
            ConstCounter::new(watchers.lagged)
                .encode(lagged.encode_family(&[("stream", *stream)])?)?;
        }
        ConstGauge::new(self.store.queued_creates() as i64).encode(encoder.encode_descriptor(
            "crm_create_queue_depth",
            "CreateCustomer calls waiting for their batch",
            None,
            MetricType::Gauge,
        )?)?;
        let usage: Vec<_> = self.pools.usage().collect();
        let mut connections = encoder.encode_descriptor(
            "crm_db_pool_connections",
            "Database connections by pool (requests, writer, background) and state (in_use, idle)",
            None,
            MetricType::Gauge,
        )?;
        for &(pool, open, idle, _) in &usage {
            let in_use = open.saturating_sub(idle);
            for (state, count) in [("in_use", in_use), ("idle", idle)] {
                ConstGauge::new(count as i64)
                    .encode(connections.encode_family(&[("pool", pool), ("state", state)])?)?;
            }
        }
        let mut max = encoder.encode_descriptor(
            "crm_db_pool_max_connections",
            "The most connections each database pool opens",
            None,
            MetricType::Gauge,
        )?;
        for &(pool, _, _, most) in &usage {
            ConstGauge::new(most as i64).encode(max.encode_family(&[("pool", pool)])?)?;
        }
        Ok(())
    }
}

/// Registers the service's figures in `registry`: those `store` counts,
/// and those read from it and `pools` when scraped.
pub fn register(registry: &mut Registry, store: &Store, pools: Pools) {
    store.metrics().register(registry);
    registry.register_collector(Box::new(Gauges {
        store: store.clone(),
        pools,
    }));
}
