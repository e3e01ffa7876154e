//! The counters, of active customers only: the summary bar's customers per
//! relationship and per (group, relationship), and the group report's
//! tallies per (group, relationship, source) with their revenue.
//! [`Deltas`] gathers a write's changes to them and writes them in one
//! statement per table (per thousand rows).
//!
//! All of them are derived in one place from each touched customer's
//! [`Standing`] before and after the write, whatever the write did: a
//! move, an edit of the source or revenue, a deletion, a membership.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, OnConflict},
};

use super::{copies::IDS_PER_STATEMENT, membership::Pair};
use crate::{
    domain::report::revenue_halves,
    entity::{customer, group_relationship_count, group_tally, owner_count, relationship_count},
    error::AppResult,
};

/// What the group tallies count of an active customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Standing {
    pub relationship_id: String,
    /// `''` for none.
    pub owner_id: String,
    /// `''` for no source.
    pub source_id: String,
    pub revenue: i64,
    /// Every group it has a membership row of (deleted groups too).
    pub groups: Vec<String>,
}

impl Standing {
    /// The standing of a customer row (active or not) in `groups`.
    pub(super) fn of(row: &customer::Model, groups: Vec<String>) -> Option<Self> {
        row.delete_time.is_none().then(|| Self {
            relationship_id: row.relationship_id.clone(),
            owner_id: row.owner_id.clone(),
            source_id: row.source_id.clone().unwrap_or_default(),
            revenue: row.revenue,
            groups,
        })
    }
}

/// The groups of each customer in `memberships`.
pub(super) fn groups_by_customer(memberships: &BTreeSet<Pair>) -> HashMap<&str, Vec<String>> {
    let mut groups: HashMap<&str, Vec<String>> = HashMap::new();
    for (group, customer) in memberships {
        groups
            .entry(customer.as_str())
            .or_default()
            .push(group.clone());
    }
    groups
}

/// The standings of the active customers among `ids`, their groups taken
/// out of `groups` (every membership of these customers, by customer;
/// the entries of others are left).
pub(super) async fn standings(
    tx: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
    groups: &mut HashMap<&str, Vec<String>>,
) -> AppResult<HashMap<String, Standing>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        use customer::Column as C;
        // By id alone, the primary key: with `tenant_id = ?` and
        // `delete_time IS NULL` beside the ids, PostgreSQL walked a partial
        // index of the whole tenant's active customers instead.
        type Row = (
            String,
            String,
            Option<i64>,
            String,
            String,
            Option<String>,
            i64,
        );
        let rows: Vec<Row> = customer::Entity::find()
            .filter(C::Id.is_in(chunk.iter().cloned()))
            .select_only()
            .column(C::TenantId)
            .column(C::Id)
            .column(C::DeleteTime)
            .column(C::RelationshipId)
            .column(C::OwnerId)
            .column(C::SourceId)
            .column(C::Revenue)
            .into_tuple()
            .all(tx)
            .await?;
        let active = rows
            .into_iter()
            .filter(|(t, _, deleted, ..)| t == tenant && deleted.is_none());
        for (_, id, _, relationship_id, owner_id, source_id, revenue) in active {
            let standing = Standing {
                relationship_id,
                owner_id,
                source_id: source_id.unwrap_or_default(),
                revenue,
                groups: groups.remove(id.as_str()).unwrap_or_default(),
            };
            found.insert(id, standing);
        }
    }
    Ok(found)
}

/// Counter rows written per statement (each binds at most seven values).
const ROWS_PER_STATEMENT: usize = 1000;

/// Changes to a tenant's counters.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    /// By relationship id.
    relationships: BTreeMap<String, i64>,
    /// By owner id (`''` for none).
    owners: BTreeMap<String, i64>,
    /// By (group id, relationship id).
    groups: BTreeMap<(String, String), i64>,
    /// By (group id or `''`, relationship id, source id or `''`):
    /// customers, revenue's high and low sums.
    tallies: BTreeMap<(String, String, String), [i64; 3]>,
}

impl Deltas {
    /// Counts `sign` (±1) customers of `standing` in every counter: its
    /// relationship's, each of its groups' (with that relationship), and
    /// the tallies of each of its groups, or of group `''` when it has none.
    pub(super) fn tally(&mut self, standing: &Standing, sign: i64) {
        *self
            .relationships
            .entry(standing.relationship_id.clone())
            .or_default() += sign;
        *self.owners.entry(standing.owner_id.clone()).or_default() += sign;
        for group in &standing.groups {
            *self
                .groups
                .entry((group.clone(), standing.relationship_id.clone()))
                .or_default() += sign;
        }
        let (high, low) = revenue_halves(standing.revenue);
        let figures = [sign, sign * high, sign * low];
        let none = [String::new()];
        let groups = if standing.groups.is_empty() {
            &none[..]
        } else {
            &standing.groups[..]
        };
        for group in groups {
            let key = (
                group.clone(),
                standing.relationship_id.clone(),
                standing.source_id.clone(),
            );
            let sums = self.tallies.entry(key).or_default();
            for (sum, figure) in sums.iter_mut().zip(figures) {
                *sum += figure;
            }
        }
    }

    /// Adds the deltas to the stored counters: per relationship first,
    /// then per owner, per group, then the tallies, each in key order, so
    /// concurrent writers lock counter rows in one order.
    pub(super) async fn write(&self, tx: &impl ConnectionTrait, tenant: &str) -> AppResult<()> {
        use group_relationship_count as g;
        use relationship_count as r;
        let rows: Vec<r::ActiveModel> = self
            .relationships
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|(relationship_id, delta)| r::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                relationship_id: Set(relationship_id.clone()),
                customers: Set(*delta),
            })
            .collect();
        add_to_counters(
            tx,
            rows,
            OnConflict::columns([r::Column::TenantId, r::Column::RelationshipId]),
            Merged::new("relationship_counts", &["customers"]),
        )
        .await?;
        let rows: Vec<owner_count::ActiveModel> = self
            .owners
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|(owner_id, delta)| owner_count::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                owner_id: Set(owner_id.clone()),
                customers: Set(*delta),
            })
            .collect();
        add_to_counters(
            tx,
            rows,
            OnConflict::columns([owner_count::Column::TenantId, owner_count::Column::OwnerId]),
            Merged::new("owner_counts", &["customers"]),
        )
        .await?;
        let rows: Vec<g::ActiveModel> = self
            .groups
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|((group_id, relationship_id), delta)| g::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                group_id: Set(group_id.clone()),
                relationship_id: Set(relationship_id.clone()),
                customers: Set(*delta),
            })
            .collect();
        add_to_counters(
            tx,
            rows,
            OnConflict::columns([
                g::Column::TenantId,
                g::Column::GroupId,
                g::Column::RelationshipId,
            ]),
            Merged::new("group_relationship_counts", &["customers"]),
        )
        .await?;
        let rows: Vec<group_tally::ActiveModel> = self
            .tallies
            .iter()
            .filter(|(_, sums)| sums.iter().any(|s| *s != 0))
            .map(
                |((group_id, relationship_id, source_id), [customers, high, low])| {
                    group_tally::ActiveModel {
                        tenant_id: Set(tenant.to_owned()),
                        group_id: Set(group_id.clone()),
                        relationship_id: Set(relationship_id.clone()),
                        source_id: Set(source_id.clone()),
                        customers: Set(*customers),
                        revenue_high: Set(*high),
                        revenue_low: Set(*low),
                    }
                },
            )
            .collect();
        use group_tally::Column as t;
        add_to_counters(
            tx,
            rows,
            OnConflict::columns([t::TenantId, t::GroupId, t::RelationshipId, t::SourceId]),
            Merged::new(
                "group_tallies",
                &["customers", "revenue_high", "revenue_low"],
            ),
        )
        .await
    }
}

/// How a counter table's rows merge with those stored: the `sums` columns
/// hold deltas added to the stored values, the `greatest` columns values
/// that replace smaller stored ones.
pub(super) struct Merged<'a> {
    table: &'a str,
    sums: &'a [&'a str],
    greatest: &'a [&'a str],
}

impl<'a> Merged<'a> {
    pub(super) fn new(table: &'a str, sums: &'a [&'a str]) -> Self {
        Self {
            table,
            sums,
            greatest: &[],
        }
    }

    pub(super) fn with_greatest(self, greatest: &'a [&'a str]) -> Self {
        Self { greatest, ..self }
    }
}

/// Inserts counter rows; a row that exists already is merged with the
/// stored one as `merged` says.
pub(super) async fn add_to_counters<A: ActiveModelTrait + Send>(
    tx: &impl ConnectionTrait,
    rows: Vec<A>,
    mut conflict: OnConflict,
    merged: Merged<'_>,
) -> AppResult<()> {
    let table = merged.table;
    for column in merged.sums {
        conflict.value(
            Alias::new(*column),
            Expr::cust(format!(r#""{table}"."{column}" + "excluded"."{column}""#)),
        );
    }
    let greatest = match tx.get_database_backend() {
        DatabaseBackend::Postgres => "GREATEST",
        _ => "MAX",
    };
    for column in merged.greatest {
        conflict.value(
            Alias::new(*column),
            Expr::cust(format!(
                r#"{greatest}("{table}"."{column}", "excluded"."{column}")"#
            )),
        );
    }
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        A::Entity::insert_many(chunk)
            .on_conflict(conflict.clone())
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}
