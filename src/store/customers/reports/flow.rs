//! How customers move between relationships, from the change log: the
//! from → to matrix of a period's moves (by people and by the service's
//! rules apart), and how long customers stayed in a relationship before
//! leaving it.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Select,
    sea_query::{Expr, ExprTrait},
};

use super::{daily, in_report_order};
use crate::{
    domain::{
        change::Cause,
        report::{Period, nearest_rank},
        tenant::RequestContext,
    },
    entity::{customer_group, customer_source, relationship_change},
    error::{AppError, AppResult},
    store::{Store, resource, snapshot},
};

/// Which logged changes a report reads: those of its period, of customers
/// who had the source, owner and group given at the time of the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSelection {
    /// When the changes were made.
    pub period: Period,
    /// The customer's group at the time.
    pub group_id: Option<String>,
    /// The customer's source at the time.
    pub source_id: Option<String>,
    /// The customer's owner at the time.
    pub owner_id: Option<String>,
}

impl LogSelection {
    /// Whether it picks by period alone (no group, source or owner).
    pub(super) fn is_unfiltered(&self) -> bool {
        self.group_id.is_none() && self.source_id.is_none() && self.owner_id.is_none()
    }

    /// The tenant's logged changes it selects.
    pub(super) fn changes(&self, tenant: &str) -> Select<relationship_change::Entity> {
        use relationship_change::Column as C;
        let mut query = relationship_change::Entity::find().filter(C::TenantId.eq(tenant));
        if let Some(from) = self.period.from {
            query = query.filter(C::ChangeTime.gte(from));
        }
        if let Some(to) = self.period.to {
            query = query.filter(C::ChangeTime.lt(to));
        }
        if let Some(source) = &self.source_id {
            query = query.filter(C::SourceId.eq(source));
        }
        if let Some(owner) = &self.owner_id {
            query = query.filter(C::OwnerId.eq(owner));
        }
        if let Some(group) = &self.group_id {
            // The groups are kept comma-joined; ids hold no comma.
            query = query.filter(
                Expr::cust("(',' || relationship_changes.group_ids || ',')")
                    .like(format!("%,{group},%")),
            );
        }
        query
    }

    /// INVALID_ARGUMENT naming the group or source that is no group or
    /// source of the tenant (deleted ones are known).
    pub(super) async fn check(&self, db: &impl ConnectionTrait, tenant: &str) -> AppResult<()> {
        let mut unknown = Vec::new();
        if let Some(id) = &self.group_id {
            let named = [("group_id".to_owned(), id.as_str())];
            unknown.extend(resource::unknown::<customer_group::Entity>(db, tenant, &named).await?);
        }
        if let Some(id) = &self.source_id {
            let named = [("source_id".to_owned(), id.as_str())];
            unknown.extend(resource::unknown::<customer_source::Entity>(db, tenant, &named).await?);
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidArgument(unknown))
        }
    }
}

/// Moves from one relationship to another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveCount {
    /// Made by people (MANUAL, IMPORT, RELATIONSHIP_DELETED).
    pub manual: i64,
    /// Made by the service's rules (AUTOMATIC_INACTIVITY, CONTACT_RESUMED).
    pub automatic: i64,
}

/// How long customers stayed in a relationship before leaving it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stays {
    /// Stays that ended in the period (moves out of the relationship).
    pub left: i64,
    /// Their median length in microseconds, by nearest rank.
    pub median: Option<i64>,
    /// Their 90th-percentile length in microseconds, by nearest rank.
    pub p90: Option<i64>,
}

impl Stays {
    /// The stays of these lengths, `sorted` ascending.
    fn of_sorted(sorted: &[i64]) -> Self {
        Self {
            left: sorted.len() as i64,
            median: nearest_rank(sorted, 50),
            p90: nearest_rank(sorted, 90),
        }
    }
}

/// The flow report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// Moves by (from, to), in report order.
    pub moves: Vec<((String, String), MoveCount)>,
    /// Stays by the relationship left, in report order.
    pub stays: Vec<(String, Stays)>,
    /// Customers created in the period.
    pub created: i64,
}

/// Whether a change of this cause was made by the service's own rules.
pub fn is_automatic(cause: &str) -> bool {
    matches!(
        Cause::from_stored(cause),
        Some(Cause::AutomaticInactivity | Cause::ContactResumed)
    )
}

/// Logged changes of one (old relationship, new relationship, cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChangeCount {
    /// The relationship left; empty for creations.
    pub from: String,
    /// The relationship entered.
    pub to: String,
    /// As the log keeps it.
    pub cause: String,
    /// How many.
    pub changes: i64,
    /// The greatest sequence among them.
    pub last_sequence: i64,
}

impl ChangeCount {
    /// From a `(from, to, cause, changes, last_sequence)` row.
    pub(super) fn of(
        (from, to, cause, changes, last_sequence): (String, String, String, i64, i64),
    ) -> Self {
        Self {
            from,
            to,
            cause,
            changes,
            last_sequence,
        }
    }
}

impl Store {
    /// The flow of the changes `selection` picks, read in one snapshot:
    /// unfiltered, from the log's daily tallies (see [`daily`]); for one
    /// group, source or owner, from the log.
    pub async fn relationship_flow(
        &self,
        ctx: &RequestContext,
        selection: &LogSelection,
    ) -> AppResult<Flow> {
        let tenant = ctx.tenant.as_str();
        let tx = snapshot(self.db()).await?;
        selection.check(&tx, tenant).await?;
        let order = ReportOrder::read(&tx, tenant).await?;
        let (counted, stays) = if selection.is_unfiltered() {
            let period = selection.period;
            (
                daily::changes(&tx, tenant, period).await?,
                daily::stays(&tx, tenant, period).await?,
            )
        } else {
            let counted = count_changes(&tx, tenant, selection).await?;
            let stays = stay_durations(&tx, tenant, selection)
                .await?
                .into_iter()
                .map(|(relationship, mut durations)| {
                    durations.sort_unstable();
                    (relationship, Stays::of_sorted(&durations))
                })
                .collect();
            (counted, stays)
        };
        tx.commit().await?;

        let mut created = 0;
        let mut moves: HashMap<(String, String), MoveCount> = HashMap::new();
        for ChangeCount {
            from,
            to,
            cause,
            changes,
            ..
        } in counted
        {
            if from.is_empty() {
                created += changes;
                continue;
            }
            let count = moves.entry((from, to)).or_default();
            if is_automatic(&cause) {
                count.automatic += changes;
            } else {
                count.manual += changes;
            }
        }
        let mut moves: Vec<((String, String), MoveCount)> = moves.into_iter().collect();
        moves.sort_by_key(|((from, to), _)| (order.rank(from), order.rank(to)));
        let mut stays: Vec<(String, Stays)> = stays.into_iter().collect();
        stays.sort_by_key(|(relationship, _)| order.rank(relationship));
        Ok(Flow {
            moves,
            stays,
            created,
        })
    }
}

/// The changes `selection` picks, counted from the log.
pub(super) async fn count_changes(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
) -> AppResult<Vec<ChangeCount>> {
    use relationship_change::Column as C;
    let rows = selection
        .changes(tenant)
        .select_only()
        .column(C::OldRelationshipId)
        .column(C::NewRelationshipId)
        .column(C::Cause)
        .column_as(Expr::cust("COUNT(*)").cast_as("BIGINT"), "n")
        .column_as(Expr::col(C::Sequence).max(), "last")
        .group_by(C::OldRelationshipId)
        .group_by(C::NewRelationshipId)
        .group_by(C::Cause)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(ChangeCount::of).collect())
}

/// For each move `selection` picks, the relationship left and how long
/// the customer held it: since the change that entered it (its creation,
/// or the move into it), which the log keeps on the move.
pub(super) async fn stay_durations(
    db: &impl ConnectionTrait,
    tenant: &str,
    selection: &LogSelection,
) -> AppResult<BTreeMap<String, Vec<i64>>> {
    use relationship_change::Column as C;
    let rows: Vec<(String, Option<i64>)> = selection
        .changes(tenant)
        .filter(C::OldRelationshipId.ne(""))
        .select_only()
        .column(C::OldRelationshipId)
        .column_as(
            Expr::col(C::ChangeTime).sub(Expr::col(C::HeldSince)),
            "held",
        )
        .into_tuple()
        .all(db)
        .await?;
    let mut durations: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (left, held) in rows {
        // Every customer's first change is its creation: a move always
        // has one before it.
        if let Some(held) = held {
            durations.entry(left).or_default().push(held);
        }
    }
    Ok(durations)
}

/// The order reports list relationships in (see [`in_report_order`]); ids
/// no relationship has last.
pub(super) struct ReportOrder(HashMap<String, usize>);

impl ReportOrder {
    pub(super) async fn read(db: &impl ConnectionTrait, tenant: &str) -> AppResult<Self> {
        Ok(Self(
            in_report_order(db, tenant)
                .await?
                .into_iter()
                .enumerate()
                .map(|(rank, r)| (r.id, rank))
                .collect(),
        ))
    }

    pub(super) fn rank(&self, id: &str) -> (usize, String) {
        (self.0.get(id).copied().unwrap_or(usize::MAX), id.to_owned())
    }
}
