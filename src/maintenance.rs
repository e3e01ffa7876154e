//! Background upkeep, every `--sweep-interval`: the inactivity rule for
//! every tenant, a pass of every group rule that uses `ago()` (see
//! [`crate::store::customers::evaluation`]), then the change streams'
//! retention, for the relationship changes and the memberships alike (see
//! [`crate::changes::retention`]), and the rows of imports older than their
//! request ids' 24 hours. Each replica runs it; every job is safe
//! to run on several replicas at once. It runs on connections of its own,
//! whose statements are held to the background limit rather than to
//! `--query-timeout` (see [`crate::store::db::connection`]).

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, time::MissedTickBehavior};

use crate::{
    changes::{log::Log, membership::MembershipLog, relationship::RelationshipLog, retention},
    store::Store,
};

/// Runs the upkeep until dropped, counting its rounds in `rounds`. The
/// first round comes one interval after start, so replicas restarted
/// together do not all sweep at once while they warm up.
pub async fn run(
    store: Store,
    interval: Duration,
    retention: Duration,
    rounds: Arc<watch::Sender<u64>>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        round(&store, retention).await;
        rounds.send_modify(|n| *n += 1);
    }
}

/// One round of upkeep; failures are logged and tried again next round.
pub async fn round(store: &Store, retention: Duration) {
    let started = std::time::Instant::now();
    let swept = store.sweep_all_tenants().await;
    store
        .metrics()
        .sweep_ran(swept.as_ref().ok().copied(), started.elapsed());
    if let Err(err) = swept {
        tracing::warn!(error = %err, "inactivity sweep failed");
    }
    if let Err(err) = store.start_time_rule_passes().await {
        tracing::warn!(error = %err, "starting the time-based group rules' passes failed");
    }
    let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    let cutoff = store.now().saturating_sub(retention);
    trim::<RelationshipLog>(store, cutoff).await;
    trim::<MembershipLog>(store, cutoff).await;
    match store.forget_old_imports().await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "imported rows past 24 hours forgotten"),
        Err(err) => tracing::warn!(error = %err, "forgetting old imported rows failed"),
    }
}

/// Moves log `L`'s replay floor past `cutoff`; failures are logged.
async fn trim<L: Log>(store: &Store, cutoff: i64) {
    match retention::trim::<L>(store.db(), cutoff).await {
        Ok(0) => {}
        Ok(trimmed) => tracing::info!(
            trimmed,
            log = L::NAME,
            "changes past the retention period are no longer replayable"
        ),
        Err(err) => {
            tracing::warn!(error = %err, log = L::NAME, "trimming the change stream failed")
        }
    }
}
