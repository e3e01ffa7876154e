//! The relationship-change log: the history of every customer and the
//! source of the change stream.
//!
//! Every change of a customer's relationship — on create, by hand, in bulk,
//! through an update, on reassignment, by the inactivity rule — goes through
//! [`record`] (or its two halves, [`apply`] and [`Applied::log`]), inside
//! the writer's own transaction: the customer row, its
//! memberships' copies, the summary-bar counts and the log entry commit or
//! roll back together, so an acknowledged change is never lost and a
//! rolled-back one is never seen.
//!
//! # Sequence numbers
//!
//! Each tenant's log is numbered 1, 2, 3, … in commit order with no gaps.
//! A database sequence (BIGSERIAL) cannot give that: on PostgreSQL two
//! transactions may take 7 and 8 and commit 8 first (a reader that saw 8
//! would later find 7 appear), and a rollback leaves a hole. Instead the
//! tenant's row in `change_counters` is incremented inside the writing
//! transaction. The row lock it takes is held until commit, so a second
//! writer of the same tenant waits on it and can only take the next numbers
//! after the first has committed (or rolled back, releasing its numbers
//! unused). Numbers therefore become visible in order and none is skipped.
//! On SQLite the write transaction already excludes every other writer.

pub mod feed;
pub mod retention;
pub mod watch;

use std::collections::{BTreeMap, HashSet};

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, OnConflict},
};

use crate::{
    domain::{change::Cause, relationship::Kind},
    entity::{
        change_counter, customer, group_member, group_relationship_count, relationship,
        relationship_change, relationship_count,
    },
    error::{AppError, AppResult},
    store::relationship_members,
};

/// One customer's move to another relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The customer.
    pub customer_id: String,
    /// The relationship held before; `None` when the customer is being created
    /// (its row already carries `to`).
    pub from: Option<String>,
    /// The relationship held after.
    pub to: String,
    /// Whether the customer is active (deleted customers are not counted).
    pub active: bool,
    /// The customer's owner (the log keeps it for the stream's filters).
    pub owner: String,
    /// The groups the customer belongs to, when the caller knows them
    /// (saves looking them up).
    pub groups: Option<Vec<String>>,
}

/// Who made a set of moves, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The cause.
    pub cause: Cause,
    /// `x-actor-id`, or empty for the system.
    pub actor: String,
    /// Free text.
    pub reason: String,
}

/// Applies `moves` and appends one log entry per move, in the caller's
/// transaction. Moves whose `from` equals `to` must be filtered out by the
/// caller. Returns the entries in sequence order.
pub async fn record(
    tx: &impl ConnectionTrait,
    tenant: &str,
    moves: &[Move],
    origin: &Origin,
    now: i64,
) -> AppResult<Vec<relationship_change::Model>> {
    apply(tx, tenant, moves, now).await?.log(tx, origin).await
}

/// Like [`record`], each move with its own origin (`origins[i]` made
/// `moves[i]`).
pub async fn record_each(
    tx: &impl ConnectionTrait,
    tenant: &str,
    moves: &[Move],
    origins: &[&Origin],
    now: i64,
) -> AppResult<Vec<relationship_change::Model>> {
    apply(tx, tenant, moves, now)
        .await?
        .log_each(tx, origins)
        .await
}

/// The first half of [`record`]: points the customers and their
/// memberships' copies at their new relationship. [`Applied::log`] (or
/// [`Applied::log_each`]) must follow in the same transaction; between the
/// two the caller may read back what it returns, before the counters and
/// the tenant's sequence are locked: every writer of the tenant waits for
/// those row locks until the commit (on PostgreSQL; SQLite has one writer
/// anyway), so the less done after taking them, the more writes a tenant
/// takes per second.
pub async fn apply<'m>(
    tx: &impl ConnectionTrait,
    tenant: &str,
    moves: &'m [Move],
    now: i64,
) -> AppResult<Applied<'m>> {
    let mut memberships = Memberships::new();
    if !moves.is_empty() {
        let updated = move_customers(tx, tenant, moves, now).await?;
        memberships = memberships_of_moved(tx, tenant, moves, updated).await?;
        // Delivered at commit whenever it is sent, so sent before the locks.
        crate::store::replicas::announce_changes(tx, tenant).await?;
    }
    Ok(Applied {
        tenant: tenant.to_owned(),
        moves,
        memberships,
        now,
    })
}

/// Moves applied by [`apply`], to be counted and logged.
#[must_use = "applied moves must be logged"]
pub struct Applied<'m> {
    tenant: String,
    moves: &'m [Move],
    memberships: Memberships,
    now: i64,
}

impl Applied<'_> {
    /// Counts the moves in the summary bars and appends their log entries,
    /// all made for the same reason. Returns the entries in sequence order.
    pub async fn log(
        self,
        tx: &impl ConnectionTrait,
        origin: &Origin,
    ) -> AppResult<Vec<relationship_change::Model>> {
        let origins = vec![origin; self.moves.len()];
        self.log_each(tx, &origins).await
    }

    /// Like [`Applied::log`], each move with its own origin.
    pub async fn log_each(
        self,
        tx: &impl ConnectionTrait,
        origins: &[&Origin],
    ) -> AppResult<Vec<relationship_change::Model>> {
        let Applied {
            tenant,
            moves,
            memberships,
            now,
        } = self;
        if moves.len() != origins.len() {
            return Err(AppError::Internal("a move without its origin".into()));
        }
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = tenant.as_str();
        // The counters before the sequence, and both as late as can be:
        // their row locks are held from here to the commit.
        adjust_counts(tx, tenant, &count_deltas(moves)).await?;
        adjust_group_counts(tx, tenant, &group_count_deltas(moves, &memberships)).await?;

        let last = allocate(tx, tenant, moves.len() as i64).await?;
        let first = last - moves.len() as i64 + 1;
        let entries: Vec<relationship_change::Model> = moves
            .iter()
            .zip(origins)
            .zip(first..)
            .map(|((m, origin), sequence)| relationship_change::Model {
                tenant_id: tenant.to_owned(),
                sequence,
                customer_id: m.customer_id.clone(),
                old_relationship_id: m.from.clone().unwrap_or_default(),
                new_relationship_id: m.to.clone(),
                cause: origin.cause.as_str().to_owned(),
                actor_id: origin.actor.clone(),
                reason: origin.reason.clone(),
                change_time: now,
                owner_id: m.owner.clone(),
                group_ids: memberships
                    .get(&m.customer_id)
                    .map(|groups| groups.join(","))
                    .unwrap_or_default(),
            })
            .collect();
        // In chunks well below the databases' limits on bound values (a
        // relationship's deletion may move every customer of the tenant).
        for chunk in entries.chunks(LOG_ROWS_PER_STATEMENT) {
            relationship_change::Entity::insert_many(
                chunk
                    .iter()
                    .cloned()
                    .map(relationship_change::ActiveModel::from),
            )
            .exec_without_returning(tx)
            .await?;
        }
        Ok(entries)
    }
}

/// Points existing customers (their rows in `relationship_members` and
/// their memberships' copies with them) at their new relationship. Returns
/// the groups of the customers moved, as the memberships' update found them
/// (a customer in no group is missing).
async fn move_customers(
    tx: &impl ConnectionTrait,
    tenant: &str,
    moves: &[Move],
    now: i64,
) -> AppResult<Memberships> {
    let mut by_target: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for m in moves.iter().filter(|m| m.from.is_some()) {
        by_target
            .entry(&m.to)
            .or_default()
            .push(m.customer_id.clone());
    }
    let automatic: HashSet<String> = relationship::Entity::find()
        .filter(relationship::Column::TenantId.eq(tenant))
        .filter(relationship::Column::Id.is_in(by_target.keys().copied()))
        .filter(relationship::Column::Kind.eq(Kind::AutomaticInactivity.as_str()))
        .select_only()
        .column(relationship::Column::Id)
        .into_tuple()
        .all(tx)
        .await?
        .into_iter()
        .collect();
    let mut memberships = Memberships::new();
    for (to, ids) in by_target {
        for chunk in ids.chunks(500) {
            customer::Entity::update_many()
                .col_expr(customer::Column::RelationshipId, Expr::value(to))
                .col_expr(
                    customer::Column::Revision,
                    Expr::col(customer::Column::Revision).add(1),
                )
                .col_expr(customer::Column::UpdateTime, Expr::value(now))
                .filter(customer::Column::TenantId.eq(tenant))
                .filter(customer::Column::Id.is_in(chunk.iter().cloned()))
                .exec(tx)
                .await?;
            relationship_members::set_relationship(tx, tenant, chunk, to, automatic.contains(to))
                .await?;
            let updated = group_member::Entity::update_many()
                .col_expr(group_member::Column::RelationshipId, Expr::value(to))
                .filter(group_member::Column::TenantId.eq(tenant))
                .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
                .exec_with_returning(tx)
                .await?;
            for member in updated {
                memberships
                    .entry(member.customer_id)
                    .or_default()
                    .push(member.group_id);
            }
        }
    }
    Ok(memberships)
}

fn count_deltas(moves: &[Move]) -> BTreeMap<String, i64> {
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for m in moves.iter().filter(|m| m.active) {
        if let Some(from) = &m.from {
            *deltas.entry(from.clone()).or_default() -= 1;
        }
        *deltas.entry(m.to.clone()).or_default() += 1;
    }
    deltas
}

/// Changes to the per-(group, relationship) counts, keyed by
/// `(group_id, relationship_id)`.
pub type GroupDeltas = BTreeMap<(String, String), i64>;

/// Each customer's groups, by customer id.
pub type Memberships = BTreeMap<String, Vec<String>>;

/// The groups each of `customer_ids` belongs to (deleted groups included:
/// their counts are kept so a restore finds them right).
pub async fn memberships_of(
    tx: &impl ConnectionTrait,
    tenant: &str,
    customer_ids: &[String],
) -> AppResult<Memberships> {
    let mut groups = Memberships::new();
    for chunk in customer_ids.chunks(500) {
        let rows: Vec<(String, String)> = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .select_only()
            .column(group_member::Column::CustomerId)
            .column(group_member::Column::GroupId)
            .into_tuple()
            .all(tx)
            .await?;
        for (customer_id, group_id) in rows {
            groups.entry(customer_id).or_default().push(group_id);
        }
    }
    Ok(groups)
}

/// The groups of each moved customer (deleted customers' are not needed),
/// sorted: those the caller gave, else those the memberships' update found
/// (`updated`, which covers every customer that held a relationship
/// before), the others looked up.
async fn memberships_of_moved(
    tx: &impl ConnectionTrait,
    tenant: &str,
    moves: &[Move],
    mut updated: Memberships,
) -> AppResult<Memberships> {
    let unknown: Vec<String> = moves
        .iter()
        .filter(|m| m.active && m.groups.is_none() && m.from.is_none())
        .map(|m| m.customer_id.clone())
        .collect();
    let mut memberships = memberships_of(tx, tenant, &unknown).await?;
    for m in moves.iter().filter(|m| m.active) {
        let groups = match &m.groups {
            Some(groups) => Some(groups.clone()),
            None => updated.remove(&m.customer_id),
        };
        if let Some(groups) = groups {
            memberships.insert(m.customer_id.clone(), groups);
        }
    }
    // The same order whichever statement found them (RETURNING has none).
    memberships
        .values_mut()
        .for_each(|groups| groups.sort_unstable());
    Ok(memberships)
}

fn group_count_deltas(moves: &[Move], memberships: &Memberships) -> GroupDeltas {
    let mut deltas = GroupDeltas::new();
    for m in moves.iter().filter(|m| m.active) {
        for group in memberships.get(&m.customer_id).into_iter().flatten() {
            if let Some(from) = &m.from {
                *deltas.entry((group.clone(), from.clone())).or_default() -= 1;
            }
            *deltas.entry((group.clone(), m.to.clone())).or_default() += 1;
        }
    }
    deltas
}

/// Log entries written per statement (each binds eleven values).
const LOG_ROWS_PER_STATEMENT: usize = 1000;

/// Counter rows written per statement (each binds four values).
const COUNTER_ROWS_PER_STATEMENT: usize = 1000;

/// Adds `deltas` to the tenant's per-(group, relationship) customer counts,
/// many rows per statement.
pub async fn adjust_group_counts(
    tx: &impl ConnectionTrait,
    tenant: &str,
    deltas: &GroupDeltas,
) -> AppResult<()> {
    use group_relationship_count::{ActiveModel, Column};
    let rows = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|((group_id, relationship_id), delta)| ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            group_id: Set(group_id.clone()),
            relationship_id: Set(relationship_id.clone()),
            customers: Set(*delta),
        })
        .collect::<Vec<ActiveModel>>();
    add_to_counters(
        tx,
        rows,
        OnConflict::columns([Column::TenantId, Column::GroupId, Column::RelationshipId]),
        "group_relationship_counts",
    )
    .await
}

/// Adds `deltas` to the tenant's per-relationship customer counts, many
/// rows per statement.
pub async fn adjust_counts(
    tx: &impl ConnectionTrait,
    tenant: &str,
    deltas: &BTreeMap<String, i64>,
) -> AppResult<()> {
    use relationship_count::{ActiveModel, Column};
    let rows = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(relationship_id, delta)| ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            relationship_id: Set(relationship_id.clone()),
            customers: Set(*delta),
        })
        .collect::<Vec<ActiveModel>>();
    add_to_counters(
        tx,
        rows,
        OnConflict::columns([Column::TenantId, Column::RelationshipId]),
        "relationship_counts",
    )
    .await
}

/// Inserts counter rows whose `customers` column holds a delta; a row that
/// exists already gets the delta added instead.
async fn add_to_counters<A: ActiveModelTrait + Send>(
    tx: &impl ConnectionTrait,
    rows: Vec<A>,
    mut conflict: OnConflict,
    table: &str,
) -> AppResult<()> {
    conflict.value(
        Alias::new("customers"),
        Expr::cust(format!(r#""{table}"."customers" + "excluded"."customers""#)),
    );
    // In chunks that stay far below the databases' limits on bound values;
    // in the callers' (sorted) order, so concurrent writers lock counters
    // in one order.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(COUNTER_ROWS_PER_STATEMENT).collect();
        A::Entity::insert_many(chunk)
            .on_conflict(conflict.clone())
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

/// Takes the next `n` sequence numbers of the tenant's log; returns the last.
/// See the module documentation for why this orders commits.
async fn allocate(tx: &impl ConnectionTrait, tenant: &str, n: i64) -> AppResult<i64> {
    let counter = change_counter::Entity::insert(change_counter::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        last_sequence: Set(n),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(change_counter::Column::TenantId)
            .value(
                change_counter::Column::LastSequence,
                Expr::col((change_counter::Entity, change_counter::Column::LastSequence)).add(n),
            )
            .to_owned(),
    )
    .exec_with_returning(tx)
    .await?;
    if counter.last_sequence < n {
        return Err(AppError::Internal(format!(
            "change counter of {tenant} went backwards"
        )));
    }
    Ok(counter.last_sequence)
}
