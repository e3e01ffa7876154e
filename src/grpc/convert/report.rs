//! Conversions of the reports: periods and selections validated on the way
//! in, figures (rates and order statistics derived) on the way out.

use prost_types::{Duration, Timestamp};

use std::collections::HashMap;

use super::{Checks, micros, populated, timestamp};
use crate::{
    domain::{customer, ids, report::Period, report::nearest_rank},
    error::{AppError, AppResult},
    pb,
    store::customers::reports::{
        flow::{Flow, LogSelection},
        groups::{GroupFigures, GroupReportQuery},
        owners::OwnerFigures,
    },
};

/// Most groups a group report names.
const MAX_REPORT_GROUPS: usize = 1000;

/// The period between two optional timestamps named `fields`.
pub fn period(
    checks: &mut Checks,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    fields: (&str, &str),
) -> Period {
    let from = checks.take(from.map(|t| micros(fields.0, &t)).transpose());
    let to = checks.take(to.map(|t| micros(fields.1, &t)).transpose());
    checks.take(Period::new(from, to, fields))
}

/// `a / b`, 0 when `b` is 0.
pub fn rate(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Microseconds as a protobuf duration.
fn duration(micros: i64) -> Duration {
    let Timestamp { seconds, nanos } = timestamp(micros);
    Duration { seconds, nanos }
}

/// The ids of `group_ids`, each valid and named once; the violations go to
/// `checks`, on `group_ids[i]`.
pub fn distinct_group_ids(checks: &mut Checks, raw: &[String]) -> Vec<String> {
    let mut first_at: HashMap<String, usize> = HashMap::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for (i, raw) in raw.iter().enumerate() {
        let field = format!("group_ids[{i}]");
        let id = checks.take(ids::parse(&field, raw));
        if !id.is_empty()
            && let Some(first) = first_at.get(&id)
        {
            checks.take::<()>(Err(AppError::invalid(
                field,
                format!("repeats group_ids[{first}]"),
            )));
        } else {
            first_at.insert(id.clone(), i);
        }
        ids.push(id);
    }
    ids
}

/// Validates a GetGroupReport.
pub fn group_report_query(req: pb::GetGroupReportRequest) -> AppResult<GroupReportQuery> {
    let pb::GetGroupReportRequest {
        group_ids,
        include_subgroups,
        create_time_from,
        create_time_to,
    } = req;
    let mut checks = Checks::default();
    if group_ids.len() > MAX_REPORT_GROUPS {
        checks.take::<()>(Err(AppError::invalid(
            "group_ids",
            format!(
                "names {} groups; at most {MAX_REPORT_GROUPS} are allowed",
                group_ids.len()
            ),
        )));
    }
    let ids = distinct_group_ids(
        &mut checks,
        &group_ids[..group_ids.len().min(MAX_REPORT_GROUPS)],
    );
    let period = period(
        &mut checks,
        create_time_from,
        create_time_to,
        ("create_time_from", "create_time_to"),
    );
    checks.finish().map(|()| GroupReportQuery {
        group_ids: ids,
        include_subgroups,
        period,
    })
}

/// Name of the report row of customers in no group.
pub const NO_GROUP_NAME: &str = "No group";

impl From<GroupFigures> for pb::GroupReportRow {
    fn from(figures: GroupFigures) -> Self {
        let GroupFigures {
            group,
            customers,
            tallies,
            sources,
            closed,
            revenue,
            joined,
            left,
        } = figures;
        let (group_id, group_code, group_name) = match group {
            Some(g) => (g.id, g.code, g.name),
            None => (String::new(), String::new(), NO_GROUP_NAME.to_owned()),
        };
        Self {
            group_id,
            group_code,
            group_name,
            customers,
            relationship_counts: tallies.into_iter().map(Into::into).collect(),
            source_counts: sources
                .into_iter()
                .map(|(source_id, count)| pb::SourceCount {
                    source_id: source_id.unwrap_or_default(),
                    count,
                })
                .collect(),
            closed_customers: closed,
            conversion_rate: rate(closed, customers),
            revenue,
            joined,
            left,
        }
    }
}

/// Validates the period and filters of a log report; `owner` is `None`
/// where the request has no owner filter.
fn log_selection(
    checks: &mut Checks,
    (from, to): (Option<Timestamp>, Option<Timestamp>),
    group_id: &str,
    source_id: &str,
    owner_id: Option<&str>,
) -> LogSelection {
    LogSelection {
        period: period(checks, from, to, ("from_time", "to_time")),
        group_id: checks.take(ids::parse_optional("group_id", group_id)),
        source_id: checks.take(ids::parse_optional("source_id", source_id)),
        owner_id: owner_id.and_then(|raw| checks.take(customer::owner_filter("owner_id", raw))),
    }
}

/// Validates a GetRelationshipFlow.
pub fn flow_selection(req: pb::GetRelationshipFlowRequest) -> AppResult<LogSelection> {
    let pb::GetRelationshipFlowRequest {
        from_time,
        to_time,
        group_id,
        source_id,
        owner_id,
    } = req;
    let mut checks = Checks::default();
    let selection = log_selection(
        &mut checks,
        (from_time, to_time),
        &group_id,
        &source_id,
        Some(&owner_id),
    );
    checks.finish().map(|()| selection)
}

/// Validates a GetOwnerReport.
pub fn owner_selection(req: pb::GetOwnerReportRequest) -> AppResult<LogSelection> {
    let pb::GetOwnerReportRequest {
        from_time,
        to_time,
        source_id,
        group_id,
    } = req;
    let mut checks = Checks::default();
    let selection = log_selection(
        &mut checks,
        (from_time, to_time),
        &group_id,
        &source_id,
        None,
    );
    checks.finish().map(|()| selection)
}

impl From<Flow> for pb::GetRelationshipFlowResponse {
    fn from(flow: Flow) -> Self {
        let Flow {
            moves,
            stays,
            created,
        } = flow;
        Self {
            moves: moves
                .into_iter()
                .map(|((from, to), count)| pb::RelationshipMoveCount {
                    from_relationship_id: from,
                    to_relationship_id: to,
                    manual: count.manual,
                    automatic: count.automatic,
                })
                .collect(),
            stays: stays
                .into_iter()
                .map(|(relationship_id, stays)| pb::RelationshipStay {
                    relationship_id,
                    left: stays.left,
                    median_time: stays.median.map(duration),
                    p90_time: stays.p90.map(duration),
                })
                .collect(),
            created,
        }
    }
}

impl From<OwnerFigures> for pb::OwnerReportRow {
    fn from(figures: OwnerFigures) -> Self {
        let OwnerFigures {
            owner_id,
            customers,
            received,
            converted,
            times_to_move,
            closed,
            revenue,
        } = figures;
        Self {
            owner_id,
            customers,
            received,
            moved_from_default: times_to_move.len() as i64,
            median_time_to_move: nearest_rank(&times_to_move, 50).map(duration),
            closed,
            converted,
            conversion_rate: rate(converted, received),
            revenue,
        }
    }
}

/// The `as_of` of a CountCustomersByRelationship, refusing the filters the
/// change log cannot answer; `None` without one.
pub fn as_of(req: &pb::CountCustomersByRelationshipRequest) -> AppResult<Option<i64>> {
    let Some(at) = &req.as_of else {
        return Ok(None);
    };
    let at = micros("as_of", at)?;
    let unsupported = populated(&[
        ("group_id", !req.group_id.is_empty()),
        ("include_subgroups", req.include_subgroups),
        ("source_id", !req.source_id.is_empty()),
        ("owner_id", !req.owner_id.is_empty()),
        ("query", !req.query.is_empty()),
        ("filter", !req.filter.is_empty()),
    ]);
    if unsupported.is_empty() {
        return Ok(Some(at));
    }
    Err(AppError::InvalidArgument(
        unsupported
            .into_iter()
            .map(|field| {
                crate::error::FieldViolation::new(
                    field,
                    "cannot be combined with as_of: the change log answers the summary bar of the whole tenant only",
                )
            })
            .collect(),
    ))
}
