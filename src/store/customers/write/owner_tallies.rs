//! The owner report's tallies, kept by every write that logs a change or
//! edits a revenue (see migration 18 for what each holds):
//!
//! - `reception_tallies`: customers per (creation day, owner at creation);
//! - `first_moves`: each customer's creation and the time to its next
//!   logged change, written once, when that change is logged;
//! - `arrival_tallies`: moves per (relationship entered, day, day of the
//!   customer's previous move into it with the same owner, owner), with
//!   the customers' present revenue.
//!
//! All three are functions of a customer's log and present revenue. A
//! write reads the log of every customer whose log grew or whose revenue
//! changed, works out what the customer contributed before the write and
//! after it, and adds the difference; a customer merely created adds its
//! creation without a read.

use std::collections::{BTreeMap, HashMap};

use migrations::tallies::{NO_PREVIOUS_DAY, day_of};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::OnConflict,
};

use super::counters::{Merged, add_to_counters};
use crate::{
    domain::report::revenue_halves,
    entity::{arrival_tally, customer, first_move, reception_tally, relationship_change},
    error::AppResult,
};

/// Customers read per statement.
const CUSTOMERS_PER_STATEMENT: usize = 500;

/// One logged change, as the tallies need it.
#[derive(Debug, Clone)]
struct Logged {
    sequence: i64,
    /// Whether it is the customer's creation (no relationship left).
    creation: bool,
    to: String,
    owner: String,
    time: i64,
}

impl From<&relationship_change::Model> for Logged {
    fn from(row: &relationship_change::Model) -> Self {
        Self {
            sequence: row.sequence,
            creation: row.old_relationship_id.is_empty(),
            to: row.new_relationship_id.clone(),
            owner: row.owner_id.clone(),
            time: row.change_time,
        }
    }
}

/// A `reception_tallies` key: creation day, owner.
type Reception = (i64, String);

/// An `arrival_tallies` key: relationship, day, previous day, owner.
type Arrival = (String, i64, i64, String);

/// A customer's first move, as `first_moves` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FirstMove {
    owner: String,
    created_in: String,
    create_time: i64,
    time_to_move: i64,
}

/// The changes a write makes to the tallies.
#[derive(Debug, Default)]
struct Deltas {
    receptions: BTreeMap<Reception, i64>,
    /// Moves, and the revenue's high and low halves.
    arrivals: BTreeMap<Arrival, (i64, i64, i64)>,
    first_moves: BTreeMap<String, FirstMove>,
}

impl Deltas {
    /// Counts what a customer with `log` (in sequence order) and `revenue`
    /// contributes, `sign` times.
    fn count(&mut self, log: &[Logged], revenue: i64, sign: i64) {
        let Some(creation) = log.first().filter(|c| c.creation) else {
            return;
        };
        *self
            .receptions
            .entry((day_of(creation.time), creation.owner.clone()))
            .or_default() += sign;
        let mut moves: Vec<&Logged> = log.iter().filter(|l| !l.creation).collect();
        moves.sort_by_key(|l| (l.time, l.sequence));
        let mut previous: HashMap<(&str, &str), i64> = HashMap::new();
        for arrival in moves {
            let key = (arrival.to.as_str(), arrival.owner.as_str());
            let previous_day = previous.get(&key).map_or(NO_PREVIOUS_DAY, |&t| day_of(t));
            previous.insert(key, arrival.time);
            let cell = self
                .arrivals
                .entry((
                    arrival.to.clone(),
                    day_of(arrival.time),
                    previous_day,
                    arrival.owner.clone(),
                ))
                .or_default();
            let (high, low) = revenue_halves(revenue);
            cell.0 += sign;
            cell.1 += sign * high;
            cell.2 += sign * low;
        }
    }

    /// Counts the change of `customer` whose log (in sequence order) is
    /// `after` now and was its first `before` changes before the write,
    /// `revenue` its present revenue and `revenue_before` the revenue
    /// before the write of those it changed.
    fn change(
        &mut self,
        customer: &str,
        after: &[Logged],
        before: usize,
        revenue: i64,
        revenue_before: &HashMap<String, i64>,
    ) {
        let before = &after[..before];
        let revenue_then = revenue_before.get(customer).copied().unwrap_or(revenue);
        self.count(before, revenue_then, -1);
        self.count(after, revenue, 1);
        if first_move(before).is_none()
            && let Some(first) = first_move(after)
        {
            self.first_moves.insert(customer.to_owned(), first);
        }
    }
}

/// The first move of a customer with `log` (in sequence order).
fn first_move(log: &[Logged]) -> Option<FirstMove> {
    let [creation, next, ..] = log else {
        return None;
    };
    creation.creation.then(|| FirstMove {
        owner: creation.owner.clone(),
        created_in: creation.to.clone(),
        create_time: creation.time,
        time_to_move: next.time - creation.time,
    })
}

/// What the write path reads of a customer before logging its changes.
pub(super) struct Known {
    /// Its log so far, in sequence order.
    log: Vec<Logged>,
    /// Its source (after the write's own edits); empty for none.
    pub source: String,
    /// Its revenue (after the write's own edits).
    revenue: i64,
}

impl Known {
    /// When it entered the relationship it holds: the time of its latest
    /// logged change.
    pub fn entered(&self) -> Option<i64> {
        self.log.last().map(|l| l.time)
    }
}

/// The [`Known`] of each of `customers` (of the tenant), read in two
/// statements per chunk.
pub(super) async fn read_known(
    tx: &impl ConnectionTrait,
    tenant: &str,
    customers: &[&str],
) -> AppResult<HashMap<String, Known>> {
    let mut known = HashMap::with_capacity(customers.len());
    for chunk in customers.chunks(CUSTOMERS_PER_STATEMENT) {
        use relationship_change::Column as C;
        let rows: Vec<(String, i64, bool, String, String, i64)> =
            relationship_change::Entity::find()
                .filter(C::TenantId.eq(tenant))
                .filter(C::CustomerId.is_in(chunk.iter().copied()))
                .select_only()
                .columns([C::CustomerId, C::Sequence])
                .column_as(C::OldRelationshipId.eq(""), "creation")
                .columns([C::NewRelationshipId, C::OwnerId, C::ChangeTime])
                .into_tuple()
                .all(tx)
                .await?;
        let mut logs: HashMap<String, Vec<Logged>> = HashMap::new();
        for (customer, sequence, creation, to, owner, time) in rows {
            logs.entry(customer).or_default().push(Logged {
                sequence,
                creation,
                to,
                owner,
                time,
            });
        }
        let rows: Vec<(String, Option<String>, i64)> = customer::Entity::find()
            .filter(customer::Column::TenantId.eq(tenant))
            .filter(customer::Column::Id.is_in(chunk.iter().copied()))
            .select_only()
            .column(customer::Column::Id)
            .column(customer::Column::SourceId)
            .column(customer::Column::Revenue)
            .into_tuple()
            .all(tx)
            .await?;
        for (id, source, revenue) in rows {
            let mut log = logs.remove(&id).unwrap_or_default();
            log.sort_by_key(|l| l.sequence);
            let source = source.unwrap_or_default();
            known.insert(
                id,
                Known {
                    log,
                    source,
                    revenue,
                },
            );
        }
    }
    Ok(known)
}

/// Keeps the tallies for a write that appended `logged` to the tenant's
/// log and changed the revenue of the customers in `revenue_before` (their
/// revenue before it). `known` holds what was read of some of them before
/// the rows were appended; the others are read now.
pub(super) async fn follow(
    tx: &impl ConnectionTrait,
    tenant: &str,
    logged: &[relationship_change::Model],
    mut known: HashMap<String, Known>,
    revenue_before: &HashMap<String, i64>,
) -> AppResult<()> {
    if logged.is_empty() && revenue_before.is_empty() {
        return Ok(());
    }
    let mut appended: BTreeMap<&str, Vec<Logged>> = BTreeMap::new();
    for row in logged {
        appended
            .entry(row.customer_id.as_str())
            .or_default()
            .push(row.into());
    }
    let mut deltas = Deltas::default();
    let mut read: Vec<&str> = Vec::new();
    for (&customer, log) in &appended {
        if let Some(Known {
            log: mut after,
            revenue,
            ..
        }) = known.remove(customer)
        {
            let before = after.len();
            after.extend(log.iter().cloned());
            deltas.change(customer, &after, before, revenue, revenue_before);
        } else if log.len() == 1 && log[0].creation && !revenue_before.contains_key(customer) {
            // Created by this write, and nothing else: its creation is its
            // whole log.
            deltas.count(log, 0, 1);
        } else {
            read.push(customer);
        }
    }
    read.extend(
        revenue_before
            .keys()
            .map(String::as_str)
            .filter(|c| !appended.contains_key(c)),
    );
    read.sort_unstable();
    // Read after the append: the rows just logged, numbered after every
    // earlier one, end each log.
    let first_new = logged.first().map_or(i64::MAX, |l| l.sequence);
    for (customer, now) in read_known(tx, tenant, &read).await? {
        let before = now.log.partition_point(|l| l.sequence < first_new);
        deltas.change(&customer, &now.log, before, now.revenue, revenue_before);
    }
    write(tx, tenant, deltas).await
}

/// Adds `deltas` to the tallies, in key order (as every writer does), and
/// inserts the first moves.
async fn write(tx: &impl ConnectionTrait, tenant: &str, deltas: Deltas) -> AppResult<()> {
    use reception_tally::Column as R;
    let receptions: Vec<reception_tally::ActiveModel> = deltas
        .receptions
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|((day, owner), n)| reception_tally::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            create_day: Set(day),
            owner_id: Set(owner),
            customers: Set(n),
        })
        .collect();
    let key = [R::TenantId, R::CreateDay, R::OwnerId];
    let table = Merged::new("reception_tallies", &["customers"]);
    add_to_counters(tx, receptions, OnConflict::columns(key), table).await?;
    use arrival_tally::Column as A;
    let arrivals: Vec<arrival_tally::ActiveModel> = deltas
        .arrivals
        .into_iter()
        .filter(|(_, sums)| *sums != (0, 0, 0))
        .map(
            |((relationship, day, previous_day, owner), (n, high, low))| {
                arrival_tally::ActiveModel {
                    tenant_id: Set(tenant.to_owned()),
                    relationship_id: Set(relationship),
                    arrival_day: Set(day),
                    previous_day: Set(previous_day),
                    owner_id: Set(owner),
                    arrivals: Set(n),
                    revenue_high: Set(high),
                    revenue_low: Set(low),
                }
            },
        )
        .collect();
    let key = [
        A::TenantId,
        A::RelationshipId,
        A::ArrivalDay,
        A::PreviousDay,
        A::OwnerId,
    ];
    let table = Merged::new(
        "arrival_tallies",
        &["arrivals", "revenue_high", "revenue_low"],
    );
    add_to_counters(tx, arrivals, OnConflict::columns(key), table).await?;
    let first_moves: Vec<first_move::ActiveModel> = deltas
        .first_moves
        .into_iter()
        .map(|(customer, first)| first_move::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            customer_id: Set(customer),
            owner_id: Set(first.owner),
            created_in: Set(first.created_in),
            create_time: Set(first.create_time),
            time_to_move: Set(first.time_to_move),
        })
        .collect();
    let mut first_moves = first_moves.into_iter().peekable();
    while first_moves.peek().is_some() {
        first_move::Entity::insert_many(first_moves.by_ref().take(CUSTOMERS_PER_STATEMENT))
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(sequence: i64, from: &str, to: &str, owner: &str, time: i64) -> Logged {
        Logged {
            sequence,
            creation: from.is_empty(),
            to: to.into(),
            owner: owner.into(),
            time,
        }
    }

    const D: i64 = migrations::tallies::DAY;

    #[test]
    fn a_customer_counts_its_creation_now_and_each_arrival_after_the_previous() {
        let log = [
            logged(1, "", "new", "u1", 10),
            logged(4, "new", "closed", "u1", D + 5),
            logged(6, "closed", "new", "u2", 2 * D),
            logged(9, "new", "closed", "u1", 3 * D + 1),
            logged(12, "closed", "lost", "u1", 3 * D + 2),
        ];
        let mut deltas = Deltas::default();
        deltas.count(&log, (3 << 32) + 7, 1);
        assert_eq!(deltas.receptions, BTreeMap::from([((0, "u1".into()), 1)]));
        let arrivals: Vec<_> = deltas.arrivals.into_iter().collect();
        assert_eq!(
            arrivals,
            vec![
                (
                    ("closed".into(), 1, NO_PREVIOUS_DAY, "u1".into()),
                    (1, 3, 7)
                ),
                (("closed".into(), 3, 1, "u1".into()), (1, 3, 7)),
                (("lost".into(), 3, NO_PREVIOUS_DAY, "u1".into()), (1, 3, 7)),
                (("new".into(), 2, NO_PREVIOUS_DAY, "u2".into()), (1, 3, 7)),
            ]
        );
        assert_eq!(
            first_move(&log),
            Some(FirstMove {
                owner: "u1".into(),
                created_in: "new".into(),
                create_time: 10,
                time_to_move: D - 5,
            })
        );
        assert_eq!(first_move(&log[..1]), None);
    }

    #[test]
    fn arrivals_follow_time_then_sequence_and_undo_exactly() {
        // Logged out of time order: the earlier time is the first arrival.
        let log = [
            logged(1, "", "new", "", 0),
            logged(2, "new", "closed", "u1", 2 * D),
            logged(3, "closed", "new", "u1", 2 * D + 1),
            logged(4, "new", "closed", "u1", D),
        ];
        let mut deltas = Deltas::default();
        deltas.count(&log, -5, 1);
        assert!(
            deltas
                .arrivals
                .contains_key(&("closed".into(), 1, NO_PREVIOUS_DAY, "u1".into()))
        );
        assert!(
            deltas
                .arrivals
                .contains_key(&("closed".into(), 2, 1, "u1".into()))
        );
        deltas.count(&log, -5, -1);
        assert!(deltas.receptions.values().all(|&n| n == 0));
        assert!(deltas.arrivals.values().all(|&s| s == (0, 0, 0)));
    }
}
