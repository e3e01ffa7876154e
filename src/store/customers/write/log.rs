//! The relationship-change log: the history of every customer and the
//! source of the change stream, appended to by the write path only. Each
//! change appended is counted in the log's daily tallies too
//! (`flow_tallies`, `stay_tallies`), from which the flow report reads
//! whole days, and in the owner report's tallies ([`owner_tallies`]), which
//! follow each customer's log from what is read of it before the append.
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

use std::collections::{BTreeMap, HashMap};

use migrations::tallies::{day_of, stay_bucket};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseBackend, EntityTrait, Statement,
    sea_query::OnConflict,
};

use super::{
    counters::{Merged, add_to_counters},
    owner_tallies::{self, Known, read_known},
};
use crate::{
    domain::{change::Origin, membership::MembershipCause},
    entity::{flow_tally, membership_change, relationship_change, stay_tally},
    error::{AppError, AppResult},
};

/// A tenant's log, numbered by its own counter.
#[derive(Debug, Clone, Copy)]
enum Counter {
    /// The relationship-change log (`change_counters`).
    Relationships,
    /// The membership log (`membership_counters`).
    Memberships,
}

impl Counter {
    fn table(self) -> &'static str {
        match self {
            Self::Relationships => "change_counters",
            Self::Memberships => "membership_counters",
        }
    }
}

/// Log entries written per statement (each binds eleven values).
const ROWS_PER_STATEMENT: usize = 1000;

/// One change to log.
pub(super) struct Entry<'a> {
    pub customer_id: &'a str,
    /// Empty when the customer was created.
    pub from: &'a str,
    pub to: &'a str,
    pub owner: &'a str,
    /// A created customer's source; `None` for a move, whose source (and
    /// when it entered the relationship it leaves) is read.
    pub source: Option<&'a str>,
    pub origin: &'a Origin,
    pub time: i64,
    /// The customer's groups, sorted.
    pub group_ids: Vec<String>,
}

/// Appends `entries` to the tenant's log, numbered in order; returns them
/// as stored.
pub(super) async fn append(
    tx: &impl ConnectionTrait,
    tenant: &str,
    entries: Vec<Entry<'_>>,
    revenue_before: &HashMap<String, i64>,
) -> AppResult<Vec<relationship_change::Model>> {
    if entries.is_empty() {
        owner_tallies::follow(tx, tenant, &[], HashMap::new(), revenue_before).await?;
        return Ok(Vec::new());
    }
    let present = present(tx, tenant, &entries).await?;
    let last = allocate(tx, Counter::Relationships, tenant, entries.len() as i64).await?;
    let first = last - entries.len() as i64 + 1;
    let rows: Vec<relationship_change::Model> = entries
        .into_iter()
        .zip(first..)
        .map(|(e, sequence)| relationship_change::Model {
            held_since: present.get(e.customer_id).and_then(Known::entered),
            source_id: match e.source {
                Some(source) => source.to_owned(),
                None => present
                    .get(e.customer_id)
                    .map(|p| p.source.clone())
                    .unwrap_or_default(),
            },
            tenant_id: tenant.to_owned(),
            sequence,
            customer_id: e.customer_id.to_owned(),
            old_relationship_id: e.from.to_owned(),
            new_relationship_id: e.to.to_owned(),
            cause: e.origin.cause.as_str().to_owned(),
            actor_id: e.origin.actor.clone(),
            reason: e.origin.reason.clone(),
            change_time: e.time,
            owner_id: e.owner.to_owned(),
            group_ids: e.group_ids.join(","),
        })
        .collect();
    // In chunks well below the databases' limits on bound values (a
    // relationship's deletion may move every customer of the tenant).
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        relationship_change::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(relationship_change::ActiveModel::from),
        )
        .exec_without_returning(tx)
        .await?;
    }
    add_to_daily_tallies(tx, tenant, &rows).await?;
    owner_tallies::follow(tx, tenant, &rows, present, revenue_before).await?;
    Ok(rows)
}

/// Counts `rows` in the log's daily tallies: the changes per (day, old
/// relationship, new relationship, cause) with the latest one's sequence,
/// and the moves per (day,
/// relationship left, bucket of the stay's length). Written in key order,
/// under the tenant's log counter already locked by [`allocate`].
async fn add_to_daily_tallies(
    tx: &impl ConnectionTrait,
    tenant: &str,
    rows: &[relationship_change::Model],
) -> AppResult<()> {
    let mut flows: BTreeMap<(i64, &str, &str, &str), (i64, i64)> = BTreeMap::new();
    let mut stays: BTreeMap<(i64, &str, i32), i64> = BTreeMap::new();
    for row in rows {
        let day = day_of(row.change_time);
        let from = row.old_relationship_id.as_str();
        let flow = flows
            .entry((day, from, &row.new_relationship_id, &row.cause))
            .or_default();
        flow.0 += 1;
        flow.1 = Ord::max(flow.1, row.sequence);
        if let Some(since) = row.held_since {
            let bucket = stay_bucket(row.change_time.saturating_sub(since));
            *stays.entry((day, from, bucket)).or_default() += 1;
        }
    }
    use flow_tally::Column as F;
    let flows: Vec<flow_tally::ActiveModel> = flows
        .into_iter()
        .map(
            |((day, from, to, cause), (n, last))| flow_tally::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                change_day: Set(day),
                old_relationship_id: Set(from.to_owned()),
                new_relationship_id: Set(to.to_owned()),
                cause: Set(cause.to_owned()),
                changes: Set(n),
                last_sequence: Set(last),
            },
        )
        .collect();
    let key = [
        F::TenantId,
        F::ChangeDay,
        F::OldRelationshipId,
        F::NewRelationshipId,
        F::Cause,
    ];
    let table = Merged::new("flow_tallies", &["changes"]).with_greatest(&["last_sequence"]);
    add_to_counters(tx, flows, OnConflict::columns(key), table).await?;
    use stay_tally::Column as S;
    let stays: Vec<stay_tally::ActiveModel> = stays
        .into_iter()
        .map(|((day, from, bucket), n)| stay_tally::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            change_day: Set(day),
            relationship_id: Set(from.to_owned()),
            bucket: Set(bucket),
            stays: Set(n),
        })
        .collect();
    let key = [S::TenantId, S::ChangeDay, S::RelationshipId, S::Bucket];
    let table = Merged::new("stay_tallies", &["stays"]);
    add_to_counters(tx, stays, OnConflict::columns(key), table).await
}

/// What is known of every customer in `entries` whose source is not given
/// (those moved) before their changes are logged.
async fn present(
    tx: &impl ConnectionTrait,
    tenant: &str,
    entries: &[Entry<'_>],
) -> AppResult<HashMap<String, Known>> {
    let mut ids: Vec<&str> = entries
        .iter()
        .filter(|e| e.source.is_none())
        .map(|e| e.customer_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    read_known(tx, tenant, &ids).await
}

/// One change of a group's membership to log.
pub(super) struct MembershipEntry {
    pub group_id: String,
    pub customer_id: String,
    pub joined: bool,
    pub cause: MembershipCause,
    /// Who acted; `None`: the write's actor.
    pub actor: Option<String>,
}

/// Appends `entries` to the tenant's membership log, numbered in order,
/// made by `actor` at `time`.
pub(super) async fn append_memberships(
    tx: &impl ConnectionTrait,
    tenant: &str,
    actor: &str,
    time: i64,
    entries: Vec<MembershipEntry>,
) -> AppResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let last = allocate(tx, Counter::Memberships, tenant, entries.len() as i64).await?;
    let first = last - entries.len() as i64 + 1;
    let rows: Vec<membership_change::ActiveModel> = entries
        .into_iter()
        .zip(first..)
        .map(|(e, sequence)| {
            membership_change::Model {
                tenant_id: tenant.to_owned(),
                sequence,
                group_id: e.group_id,
                customer_id: e.customer_id,
                joined: e.joined,
                cause: e.cause.as_str().to_owned(),
                actor_id: e.actor.unwrap_or_else(|| actor.to_owned()),
                change_time: time,
            }
            .into()
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        membership_change::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

/// Takes the next `n` sequence numbers of the tenant's log `counter`;
/// returns the last. See the module documentation for why this orders
/// commits.
async fn allocate(
    tx: &impl ConnectionTrait,
    counter: Counter,
    tenant: &str,
    n: i64,
) -> AppResult<i64> {
    let backend = tx.get_database_backend();
    let (tenant_at, n_at) = match backend {
        DatabaseBackend::Postgres => ("$1", "$2"),
        _ => ("?1", "?2"),
    };
    let table = counter.table();
    let sql = format!(
        "INSERT INTO {table} (tenant_id, last_sequence) VALUES ({tenant_at}, {n_at})
         ON CONFLICT (tenant_id) DO UPDATE SET last_sequence = {table}.last_sequence + {n_at}
         RETURNING last_sequence"
    );
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [tenant.into(), n.into()],
        ))
        .await?
        .ok_or_else(|| AppError::Internal(format!("{table} returned no row for {tenant}")))?;
    let last: i64 = row.try_get("", "last_sequence")?;
    if last < n {
        return Err(AppError::Internal(format!(
            "{table} of {tenant} went backwards"
        )));
    }
    Ok(last)
}
