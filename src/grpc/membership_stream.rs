//! GroupService/WatchGroupMembershipChanges: the membership log streamed
//! by the change-stream machinery the relationship stream uses (see
//! [`crate::changes`]), with its guarantees: contiguous per-tenant
//! sequences, replay after a resume point then live with no gap and no
//! duplicate, filters by group and customer, heartbeats, OUT_OF_RANGE,
//! changes made through other replicas, UNAVAILABLE at shutdown.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{
    context,
    convert::{Checks, timestamp},
    watch::{EventStream, filter_ids, respond},
};
use crate::{
    changes::{
        membership::Filter,
        watch::{Event, Watch},
    },
    domain::membership::MembershipCause,
    entity::membership_change,
    error::AppResult,
    pb,
    store::Store,
};

/// The membership stream as tonic sends it.
pub type MembershipStream = EventStream<pb::WatchGroupMembershipChangesResponse>;

/// Answers a WatchGroupMembershipChanges call; the stream sends a
/// heartbeat after `heartbeat` without an event.
pub async fn watch(
    store: &Store,
    heartbeat: Duration,
    request: Request<pb::WatchGroupMembershipChangesRequest>,
) -> Result<Response<MembershipStream>, Status> {
    let ctx = context(&request)?;
    let request = request.into_inner();
    let watch = Watch {
        tenant: ctx.tenant.as_str().to_owned(),
        after_sequence: request.after_sequence,
        filter: watch_filter(&request)?,
        heartbeat,
    };
    respond(store, store.membership_feed(), watch).await
}

/// The filters of a WatchGroupMembershipChanges request.
fn watch_filter(request: &pb::WatchGroupMembershipChangesRequest) -> AppResult<Filter> {
    let mut checks = Checks::default();
    let filter = Filter {
        group_ids: filter_ids(&mut checks, "group_ids", &request.group_ids),
        customer_ids: filter_ids(&mut checks, "customer_ids", &request.customer_ids),
    };
    checks.finish()?;
    Ok(filter)
}

impl From<membership_change::Model> for pb::MembershipChange {
    fn from(row: membership_change::Model) -> Self {
        use pb::membership_change::Change;
        let cause = match MembershipCause::from_stored(&row.cause) {
            Some(MembershipCause::Manual) => pb::MembershipCause::Manual,
            Some(MembershipCause::CustomerCreated) => pb::MembershipCause::CustomerCreated,
            Some(MembershipCause::Rule) => pb::MembershipCause::Rule,
            Some(MembershipCause::RuleChanged) => pb::MembershipCause::RuleChanged,
            Some(MembershipCause::Sweep) => pb::MembershipCause::Sweep,
            Some(MembershipCause::CustomerDeleted) => pb::MembershipCause::CustomerDeleted,
            Some(MembershipCause::CustomerRestored) => pb::MembershipCause::CustomerRestored,
            Some(MembershipCause::Import) => pb::MembershipCause::Import,
            None => pb::MembershipCause::Unspecified,
        };
        let change = if row.joined {
            Change::Joined
        } else {
            Change::Left
        };
        Self {
            sequence: row.sequence,
            group_id: row.group_id,
            customer_id: row.customer_id,
            change: change.into(),
            cause: cause.into(),
            actor_id: row.actor_id,
            change_time: Some(timestamp(row.change_time)),
        }
    }
}

impl From<Event<membership_change::Model>> for pb::WatchGroupMembershipChangesResponse {
    fn from(event: Event<membership_change::Model>) -> Self {
        use pb::watch_group_membership_changes_response::Event as E;
        Self {
            event: Some(match event {
                Event::Change(change) => E::Change((*change).into()),
                Event::Heartbeat(latest_sequence) => {
                    E::Heartbeat(pb::Heartbeat { latest_sequence })
                }
            }),
        }
    }
}
