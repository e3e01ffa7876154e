//! Rule groups evaluated in the background: a group whose rule was set or
//! changed (or whose rule refers to groups that changed, or uses `ago()`
//! and time passed) is `EVALUATING` until its rule has been evaluated on
//! every customer of the tenant, in bounded batches in id order, each
//! batch one write through the customers' write path (see [`BATCH`]). The group keeps its
//! place (`evaluated_through`), so a replica that stops mid-way (or dies)
//! leaves the rest to whichever replica looks next; each batch locks the
//! group's row first, so two replicas never evaluate the same batch.
//!
//! Customers written meanwhile already follow the new rule: the write path
//! evaluates the stored rule on every write.

use std::time::Duration;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockType},
};

use std::collections::BTreeSet;

use super::{
    lists::filtered,
    records::lock_customers,
    write::{self, Change},
};
use crate::{
    domain::{
        customer::CustomerFilter,
        filter::{Filter, Reads},
        membership::{EvaluationState, MembershipCause},
        paging::DeletedFilter,
    },
    entity::{customer, customer_group, group_member},
    error::{AppError, AppResult},
    store::{
        Store, WriteTx,
        customers::group_rules::{RuleSet, hold_rules, parsed},
    },
};

/// Customers a batch covers, in id order. Of them, only those the rule
/// matches (found by the rule as one SQL condition over the batch's id
/// range) and those it matched so far are evaluated (in memory, on their
/// locked records) and written; the others cannot change.
pub const BATCH: u64 = 5_000;
/// Customers a batch locks, evaluates and writes at most.
const MOST_WRITTEN: usize = 500;
/// How often a replica looks for groups to evaluate that no write here
/// announced (made through another replica, or left by one that stopped).
pub const POLL: Duration = Duration::from_millis(500);

/// Marks group `group_id`'s rule for evaluation from the first customer,
/// its moves logged with `cause`.
pub async fn start(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    cause: MembershipCause,
) -> AppResult<()> {
    restart(tx, tenant, group_id, cause, false).await
}

/// [`start`], only when the group is `CURRENT` if `only_current`.
async fn restart(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    cause: MembershipCause,
    only_current: bool,
) -> AppResult<()> {
    let mut update = customer_group::Entity::update_many()
        .col_expr(
            customer_group::Column::EvaluationState,
            Expr::value(EvaluationState::Evaluating.as_str()),
        )
        .col_expr(customer_group::Column::EvaluatedThrough, Expr::value(""))
        .col_expr(
            customer_group::Column::EvaluationCause,
            Expr::value(cause.as_str()),
        )
        .filter(customer_group::Column::TenantId.eq(tenant))
        .filter(customer_group::Column::Id.eq(group_id));
    if only_current {
        update = update
            .filter(customer_group::Column::EvaluationState.eq(EvaluationState::Current.as_str()));
    }
    update.exec(tx).await?;
    Ok(())
}

/// Marks for evaluation every active rule group of the tenant whose rule
/// reads `reads` (a group's subtree changed: rules reading groups).
pub async fn start_reading(
    tx: &WriteTx,
    tenant: &str,
    reads: Reads,
    cause: MembershipCause,
    now: i64,
) -> AppResult<()> {
    let rules = RuleSet::load(tx, tenant, now).await?;
    for group in rules.groups.iter().filter(|g| g.reads.meets(reads)) {
        start(tx, tenant, &group.id, cause).await?;
    }
    Ok(())
}

impl Store {
    /// Evaluates rule groups in the background until the returned future
    /// is dropped: whenever a write here starts an evaluation, and every
    /// [`POLL`] otherwise.
    pub async fn run_evaluations(&self) {
        let mut failures = crate::telemetry::Throttle::default();
        loop {
            match self.evaluate_pending().await {
                Ok(_) => failures.clear(),
                Err(error) => crate::warn_throttled!(
                    failures,
                    %error,
                    "evaluating group rules failed; trying again"
                ),
            }
            tokio::select! {
                () = self.evaluations().notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Starts a pass of every active rule group whose rule uses `ago()`
    /// and is not being evaluated already: time moved, and so may its
    /// members. Its moves are logged as SWEEP.
    pub async fn start_time_rule_passes(&self) -> AppResult<u64> {
        let current: Vec<(String, String, String)> = customer_group::Entity::find()
            .filter(customer_group::Column::DeleteTime.is_null())
            .filter(customer_group::Column::Rule.ne(""))
            .filter(customer_group::Column::EvaluationState.eq(EvaluationState::Current.as_str()))
            .select_only()
            .column(customer_group::Column::TenantId)
            .column(customer_group::Column::Id)
            .column(customer_group::Column::Rule)
            .into_tuple()
            .all(self.db())
            .await?;
        let timed: Vec<(String, String)> = current
            .into_iter()
            .filter(|(_, _, rule)| parsed(rule).is_ok_and(|f| f.reads().meets(Reads::CLOCK)))
            .map(|(tenant, id, _)| (tenant, id))
            .collect();
        let started = timed.len() as u64;
        if started == 0 {
            return Ok(0);
        }
        self.write(timed, |tx, timed| {
            Box::pin(async move {
                for (tenant, id) in timed {
                    // Not one an evaluation started meanwhile would redo.
                    restart(tx, tenant, id, MembershipCause::Sweep, true).await?;
                }
                Ok(())
            })
        })
        .await?;
        self.evaluations().notify_one();
        Ok(started)
    }

    /// Evaluates every group waiting for it to the end; returns how many
    /// batches that took.
    pub async fn evaluate_pending(&self) -> AppResult<u64> {
        let pending: Vec<(String, String)> = customer_group::Entity::find()
            .filter(
                customer_group::Column::EvaluationState.eq(EvaluationState::Evaluating.as_str()),
            )
            .filter(customer_group::Column::DeleteTime.is_null())
            .select_only()
            .column(customer_group::Column::TenantId)
            .column(customer_group::Column::Id)
            .into_tuple()
            .all(self.db())
            .await?;
        let mut batches = 0;
        for (tenant, group_id) in pending {
            loop {
                batches += 1;
                if self.evaluate_batch(&tenant, &group_id).await? {
                    break;
                }
            }
        }
        Ok(batches)
    }

    /// Evaluates group `group_id`'s rule on its next batch of customers;
    /// returns whether the evaluation is over (or was not going on).
    async fn evaluate_batch(&self, tenant: &str, group_id: &str) -> AppResult<bool> {
        let now = self.now();
        let input = (tenant.to_owned(), group_id.to_owned());
        let done = self
            .write(input, move |tx, (tenant, group_id)| {
                Box::pin(async move { evaluate_next(tx, tenant, group_id, now).await })
            })
            .await?;
        self.metrics().rule_evaluation_batches.inc();
        // Committed: said so, for operators and for whoever waits on it.
        if done {
            tracing::info!(%tenant, group = %group_id, "rule group evaluated");
            self.evaluation_finished();
        } else {
            tracing::debug!(%tenant, group = %group_id, "rule evaluation batch committed");
        }
        Ok(done)
    }
}

async fn evaluate_next(tx: &WriteTx, tenant: &str, group_id: &str, now: i64) -> AppResult<bool> {
    hold_rules(tx, tenant).await?;
    // FOR NO KEY UPDATE: another replica's batch of this group waits, while
    // writers adding rows that refer to the group (FOR KEY SHARE) do not.
    let group = customer_group::Entity::find()
        .filter(customer_group::Column::TenantId.eq(tenant))
        .filter(customer_group::Column::Id.eq(group_id))
        .lock(LockType::NoKeyUpdate)
        .one(tx)
        .await?
        .ok_or_else(|| AppError::not_found("group", group_id))?;
    if group.delete_time.is_some()
        || group.rule.is_empty()
        || EvaluationState::from_stored(&group.evaluation_state)
            != Some(EvaluationState::Evaluating)
    {
        return Ok(true);
    }
    let range: Vec<String> = customer::Entity::find()
        .filter(customer::Column::TenantId.eq(tenant))
        .filter(customer::Column::Id.gt(group.evaluated_through.as_str()))
        .order_by_asc(customer::Column::Id)
        .limit(BATCH)
        .select_only()
        .column(customer::Column::Id)
        .into_tuple()
        .all(tx)
        .await?;
    let (Some(first), Some(last)) = (range.first(), range.last()) else {
        return finish(tx, tenant, group_id, now).await.map(|()| true);
    };
    let mut candidates = candidates(tx, tenant, &group, (first, last), now).await?;
    // At most so many customers locked and written per transaction; the
    // next batch starts after the last one taken.
    let mut through = last.clone();
    let mut more = (range.len() as u64) == BATCH;
    if candidates.len() > MOST_WRITTEN {
        candidates.truncate(MOST_WRITTEN);
        through = candidates[MOST_WRITTEN - 1].clone();
        more = true;
    }
    lock_customers(tx, tenant, &candidates).await?;
    let cause = MembershipCause::from_stored(&group.evaluation_cause)
        .unwrap_or(MembershipCause::RuleChanged);
    let changes: Vec<Change> = candidates
        .iter()
        .map(|customer_id| Change::Evaluate {
            group_id,
            customer_id,
            cause,
        })
        .collect();
    write::apply(tx, tenant, now, "", &changes, None).await?;
    if !more {
        finish(tx, tenant, group_id, now).await?;
        return Ok(true);
    }
    customer_group::Entity::update_many()
        .col_expr(
            customer_group::Column::EvaluatedThrough,
            Expr::value(through),
        )
        .filter(customer_group::Column::TenantId.eq(tenant))
        .filter(customer_group::Column::Id.eq(group_id))
        .exec(tx)
        .await?;
    Ok(false)
}

/// The customers with ids in `range` (inclusive) whose membership of
/// `group` its rule may change: those it matches now (in SQL, deleted
/// customers included) and those it matched so far.
async fn candidates(
    tx: &WriteTx,
    tenant: &str,
    group: &customer_group::Model,
    (first, last): (&String, &String),
    now: i64,
) -> AppResult<Vec<String>> {
    let selection = CustomerFilter::only(Filter::clone(&*parsed(&group.rule)?), DeletedFilter::All);
    let matching: Vec<String> = filtered(tx, tenant, &selection, false, now)
        .await?
        .filter(customer::Column::Id.gte(first.as_str()))
        .filter(customer::Column::Id.lte(last.as_str()))
        .select_only()
        .column(customer::Column::Id)
        .into_tuple()
        .all(tx)
        .await?;
    let matched: Vec<String> = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::GroupId.eq(&group.id))
        .filter(group_member::Column::Matched.eq(true))
        .filter(group_member::Column::CustomerId.gte(first.as_str()))
        .filter(group_member::Column::CustomerId.lte(last.as_str()))
        .select_only()
        .column(group_member::Column::CustomerId)
        .into_tuple()
        .all(tx)
        .await?;
    let all: BTreeSet<String> = matching.into_iter().chain(matched).collect();
    Ok(all.into_iter().collect())
}

/// The evaluation of group `group_id` is over: CURRENT, as of `now`.
async fn finish(tx: &WriteTx, tenant: &str, group_id: &str, now: i64) -> AppResult<()> {
    customer_group::Entity::update_many()
        .col_expr(
            customer_group::Column::EvaluationState,
            Expr::value(EvaluationState::Current.as_str()),
        )
        .col_expr(customer_group::Column::EvaluatedThrough, Expr::value(""))
        .col_expr(customer_group::Column::EvaluateTime, Expr::value(now))
        .filter(customer_group::Column::TenantId.eq(tenant))
        .filter(customer_group::Column::Id.eq(group_id))
        .exec(tx)
        .await?;
    Ok(())
}
