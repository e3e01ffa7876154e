//! The log's changes and stays over any period (unfiltered), from its
//! daily tallies, which the write path keeps with every logged change
//! (`flow_tallies`, `stay_tallies`): a period's whole UTC days are read
//! from the tallies, a few rows a day, and only the parts of days at its
//! ends from the log. The flow report and the summary bar as of a moment
//! read them.
//!
//! The stays' median and 90th percentile stay exact: the tallies count the
//! stays per bucket of their length (`migrations::tallies`), which gives
//! the bucket each percentile lies in and its rank there; the lengths of
//! that one bucket in the period are then read from the log's index of
//! moves by the length of the stay they end, and the value taken at that
//! rank.

use std::collections::{BTreeMap, HashMap};

use migrations::tallies::{DAY, stay_bounds, stay_bucket};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Select,
    Statement, Value,
    sea_query::{Expr, ExprTrait},
};

use super::{
    bounded,
    flow::{ChangeCount, LogSelection, Stays, count_changes, stay_durations},
    placeholder, read_by, rows_of,
};
use crate::{
    domain::report::{Period, rank_of},
    entity::{flow_tally, stay_tally},
    error::{AppError, AppResult},
};

/// A period cut at UTC midnights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DayCut {
    /// The whole days inside, `[first, end)` in days since the epoch (an
    /// open side when the period is); `None` when there is none.
    pub(super) days: Option<(Option<i64>, Option<i64>)>,
    /// The rest of the period: the parts of days before and after them.
    pub(super) partial: Vec<Period>,
}

impl DayCut {
    pub(super) fn of(period: Period) -> Self {
        // The first midnight at or after the start; the last at or before
        // the end.
        let first = period
            .from
            .map(|from| -(from.saturating_neg()).div_euclid(DAY));
        let end = period.to.map(|to| to.div_euclid(DAY));
        if let (Some(first), Some(end)) = (first, end)
            && first >= end
        {
            return Self {
                days: None,
                partial: vec![period],
            };
        }
        let mut partial = Vec::new();
        if let (Some(from), Some(first)) = (period.from, first)
            && from < first.saturating_mul(DAY)
        {
            partial.push(Period {
                from: Some(from),
                to: Some(first * DAY),
            });
        }
        if let (Some(to), Some(end)) = (period.to, end)
            && end.saturating_mul(DAY) < to
        {
            partial.push(Period {
                from: Some(end * DAY),
                to: Some(to),
            });
        }
        Self {
            days: Some((first, end)),
            partial,
        }
    }
}

/// The counts of stays per bucket of their length, by relationship left.
type Histograms = BTreeMap<String, BTreeMap<i32, i64>>;

/// The changes of `period`, counted by (old, new, cause).
pub(super) async fn changes(
    db: &impl ConnectionTrait,
    tenant: &str,
    period: Period,
) -> AppResult<Vec<ChangeCount>> {
    let cut = DayCut::of(period);
    let mut counted = Vec::new();
    if let Some(days) = cut.days {
        counted.extend(tallied_changes(db, tenant, days).await?);
    }
    for part in cut.partial {
        counted.extend(count_changes(db, tenant, &only(part)).await?);
    }
    Ok(counted)
}

/// The stays that ended in `period`, by relationship left.
pub(super) async fn stays(
    db: &impl ConnectionTrait,
    tenant: &str,
    period: Period,
) -> AppResult<BTreeMap<String, Stays>> {
    let cut = DayCut::of(period);
    let mut histograms = Histograms::new();
    if let Some(days) = cut.days {
        for (relationship, bucket, n) in tallied_stays(db, tenant, days).await? {
            *histograms
                .entry(relationship)
                .or_default()
                .entry(bucket)
                .or_default() += n;
        }
    }
    for part in cut.partial {
        for (relationship, durations) in stay_durations(db, tenant, &only(part)).await? {
            let histogram = histograms.entry(relationship).or_default();
            for held in durations {
                *histogram.entry(stay_bucket(held)).or_default() += 1;
            }
        }
    }
    let mut stays = BTreeMap::new();
    for (relationship, histogram) in histograms {
        let left: i64 = histogram.values().sum();
        if left == 0 {
            continue;
        }
        let mut lengths = Lengths {
            db,
            tenant,
            relationship: &relationship,
            period,
            read: HashMap::new(),
        };
        let median = lengths.at_percentile(&histogram, 50).await?;
        let p90 = lengths.at_percentile(&histogram, 90).await?;
        stays.insert(relationship, Stays { left, median, p90 });
    }
    Ok(stays)
}

/// Every logged change of `period`.
pub(super) fn only(period: Period) -> LogSelection {
    LogSelection {
        period,
        ..Default::default()
    }
}

/// `query` restricted to the tallies of `days`.
pub(super) fn in_days<E: EntityTrait>(
    query: Select<E>,
    day: E::Column,
    (first, end): (Option<i64>, Option<i64>),
) -> Select<E> {
    query
        .apply_if(first, |q, first| q.filter(day.gte(first)))
        .apply_if(end, |q, end| q.filter(day.lt(end)))
}

/// The changes of whole `days`, from their tallies.
async fn tallied_changes(
    db: &impl ConnectionTrait,
    tenant: &str,
    days: (Option<i64>, Option<i64>),
) -> AppResult<Vec<ChangeCount>> {
    use flow_tally::Column as F;
    let query = flow_tally::Entity::find().filter(F::TenantId.eq(tenant));
    let rows = in_days(query, F::ChangeDay, days)
        .select_only()
        .column(F::OldRelationshipId)
        .column(F::NewRelationshipId)
        .column(F::Cause)
        .column_as(Expr::col(F::Changes).sum().cast_as("BIGINT"), "n")
        .column_as(Expr::col(F::LastSequence).max(), "last")
        .group_by(F::OldRelationshipId)
        .group_by(F::NewRelationshipId)
        .group_by(F::Cause)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(ChangeCount::of).collect())
}

/// The stays that ended in whole `days`, by (relationship left, bucket),
/// from their tallies.
async fn tallied_stays(
    db: &impl ConnectionTrait,
    tenant: &str,
    days: (Option<i64>, Option<i64>),
) -> AppResult<Vec<(String, i32, i64)>> {
    use stay_tally::Column as S;
    let query = stay_tally::Entity::find().filter(S::TenantId.eq(tenant));
    Ok(in_days(query, S::ChangeDay, days)
        .select_only()
        .column(S::RelationshipId)
        .column(S::Bucket)
        .column_as(Expr::col(S::Stays).sum().cast_as("BIGINT"), "n")
        .group_by(S::RelationshipId)
        .group_by(S::Bucket)
        .into_tuple()
        .all(db)
        .await?)
}

/// The lengths of the stays in one relationship that ended in a period,
/// read a bucket at a time as percentiles need them.
struct Lengths<'a, C> {
    db: &'a C,
    tenant: &'a str,
    relationship: &'a str,
    period: Period,
    /// The buckets read, their lengths ascending.
    read: HashMap<i32, Vec<i64>>,
}

impl<C: ConnectionTrait> Lengths<'_, C> {
    /// The `p`-th percentile by nearest rank of the stays `histogram`
    /// counts per bucket.
    async fn at_percentile(
        &mut self,
        histogram: &BTreeMap<i32, i64>,
        p: u32,
    ) -> AppResult<Option<i64>> {
        let total = histogram.values().sum::<i64>() as usize;
        let Some(rank) = rank_of(total, p) else {
            return Ok(None);
        };
        let mut before = 0;
        for (&bucket, &n) in histogram {
            let n = n as usize;
            if before + n < rank {
                before += n;
                continue;
            }
            if !self.read.contains_key(&bucket) {
                let lengths = self.in_bucket(bucket).await?;
                if lengths.len() != n {
                    return Err(AppError::Internal(format!(
                        "the stay tallies of {} count {n} stays of bucket {bucket}, the log {}",
                        self.relationship,
                        lengths.len()
                    )));
                }
                self.read.insert(bucket, lengths);
            }
            return Ok(self.read[&bucket].get(rank - before - 1).copied());
        }
        Ok(None)
    }

    /// The lengths of the stays in bucket `bucket`, ascending, read from
    /// the log's index of moves by the length of the stay they end.
    async fn in_bucket(&self, bucket: i32) -> AppResult<Vec<i64>> {
        const HELD: &str = "change_time - held_since";
        let backend = self.db.get_database_backend();
        let mut values: Vec<Value> = vec![self.tenant.into(), self.relationship.into()];
        let (lower, upper) = stay_bounds(bucket);
        let (at_least, below) = (format!("{HELD} >="), format!("{HELD} <"));
        let conditions = bounded(
            backend,
            &mut values,
            &[
                (lower, &at_least),
                (upper, &below),
                (self.period.from, "change_time >="),
                (self.period.to, "change_time <"),
            ],
        );
        let by_stay = read_by(backend, "relationship_changes_by_stay");
        let (tenant_at, relationship_at) = (placeholder(backend, 1), placeholder(backend, 2));
        let sql = format!(
            "SELECT {HELD} FROM relationship_changes {by_stay}
             WHERE tenant_id = {tenant_at} AND old_relationship_id = {relationship_at}
               AND held_since IS NOT NULL{conditions}"
        );
        let mut lengths: Vec<i64> = rows_of(
            self.db,
            Statement::from_sql_and_values(backend, sql, values),
        )
        .await?;
        lengths.sort_unstable();
        Ok(lengths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(from: Option<i64>, to: Option<i64>) -> Period {
        Period { from, to }
    }

    #[test]
    fn periods_are_cut_at_midnights() {
        let noon = DAY / 2;
        // Open on both sides: every day, nothing from the log.
        assert_eq!(
            DayCut::of(period(None, None)),
            DayCut {
                days: Some((None, None)),
                partial: vec![]
            }
        );
        // From midnight to midnight: whole days only.
        assert_eq!(
            DayCut::of(period(Some(10 * DAY), Some(12 * DAY))),
            DayCut {
                days: Some((Some(10), Some(12))),
                partial: vec![]
            }
        );
        // Noon to noon: a half day on each side.
        assert_eq!(
            DayCut::of(period(Some(10 * DAY + noon), Some(13 * DAY + noon))),
            DayCut {
                days: Some((Some(11), Some(13))),
                partial: vec![
                    period(Some(10 * DAY + noon), Some(11 * DAY)),
                    period(Some(13 * DAY), Some(13 * DAY + noon)),
                ],
            }
        );
        // Within a day, or across one midnight: the log alone.
        for (from, to) in [
            (10 * DAY + 1, 10 * DAY + noon),
            (10 * DAY + noon, 11 * DAY + noon),
        ] {
            assert_eq!(
                DayCut::of(period(Some(from), Some(to))),
                DayCut {
                    days: None,
                    partial: vec![period(Some(from), Some(to))]
                }
            );
        }
        // One bound open.
        assert_eq!(
            DayCut::of(period(Some(10 * DAY + 1), None)),
            DayCut {
                days: Some((Some(11), None)),
                partial: vec![period(Some(10 * DAY + 1), Some(11 * DAY))]
            }
        );
        assert_eq!(
            DayCut::of(period(None, Some(10 * DAY + 1))),
            DayCut {
                days: Some((None, Some(10))),
                partial: vec![period(Some(10 * DAY), Some(10 * DAY + 1))]
            }
        );
        // Before the epoch too.
        let (from, to) = (-DAY - noon, -noon);
        assert_eq!(
            DayCut::of(period(Some(from), Some(to))),
            DayCut {
                days: None,
                partial: vec![period(Some(from), Some(to))]
            }
        );
        let (from, to) = (-2 * DAY - noon, noon);
        assert_eq!(
            DayCut::of(period(Some(from), Some(to))),
            DayCut {
                days: Some((Some(-2), Some(0))),
                partial: vec![
                    period(Some(from), Some(-2 * DAY)),
                    period(Some(0), Some(to))
                ],
            }
        );
    }
}
