//! RelationshipService handlers.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{
    context,
    convert::{Checks, catalog as convert, micros, report, timestamp},
    idempotency_key, page_request, present, present_one, target,
    watch::{EventStream, filter_ids, respond},
    write_context,
};
use crate::{
    auth::layer::may_administer,
    changes::{
        relationship::Filter,
        watch::{Event, Watch},
    },
    domain::{
        customer, ids,
        paging::{DeletedFilter, page_size_of},
        tenant::RequestContext,
    },
    entity::relationship_change,
    error::{AppError, AppResult},
    pb::{self, relationship_service_server::RelationshipService},
    store::{
        Store,
        customers::inactivity::{InactivityMove, Sweep},
    },
};

/// The RelationshipService implementation.
#[derive(Clone)]
pub struct RelationshipApi {
    store: Store,
    heartbeat: Duration,
}

/// The change stream as tonic sends it.
type ChangeStream = EventStream<pb::WatchRelationshipChangesResponse>;

impl RelationshipApi {
    /// A service over `store`; change streams send a heartbeat after
    /// `heartbeat` without an event.
    pub fn new(store: Store, heartbeat: Duration) -> Self {
        Self { store, heartbeat }
    }
}

/// The filters of a WatchRelationshipChanges request.
fn watch_filter(request: &pb::WatchRelationshipChangesRequest) -> AppResult<Filter> {
    let mut checks = Checks::default();
    let filter = Filter {
        relationship_ids: filter_ids(&mut checks, "relationship_ids", &request.relationship_ids),
        group_ids: filter_ids(&mut checks, "group_ids", &request.group_ids),
        customer_ids: filter_ids(&mut checks, "customer_ids", &request.customer_ids),
        owner_ids: request
            .owner_ids
            .iter()
            .enumerate()
            .map(|(i, owner)| checks.take(customer::short_text(&format!("owner_ids[{i}]"), owner)))
            .collect(),
    };
    checks.finish()?;
    Ok(filter)
}

/// Most moves an ApplyInactivityRules response lists.
const MAX_LISTED_MOVES: u64 = 10_000;
/// Moves listed when the request does not say.
const DEFAULT_LISTED_MOVES: u64 = 100;

/// The application of the inactivity rule a request asks for, judged at
/// `now` unless it names another time.
fn inactivity_sweep(
    ctx: &RequestContext,
    request: &pb::ApplyInactivityRulesRequest,
    now: i64,
) -> AppResult<Sweep> {
    let mut checks = Checks::default();
    let as_of = match &request.as_of {
        None => now,
        Some(ts) => match micros("as_of", ts) {
            Ok(as_of) if as_of != now && !request.dry_run => checks.take(Err(AppError::invalid(
                "as_of",
                "may be set only with dry_run; a real run judges inactivity as of now",
            ))),
            parsed => checks.take(parsed),
        },
    };
    let list = checks.take(page_size_of(
        request.page_size,
        DEFAULT_LISTED_MOVES,
        MAX_LISTED_MOVES,
    )) as usize;
    checks.finish()?;
    Ok(Sweep {
        tenant: ctx.tenant.as_str().to_owned(),
        actor: ctx.actor.0.clone(),
        as_of,
        dry_run: request.dry_run,
        list,
    })
}

impl From<InactivityMove> for pb::InactivityMove {
    fn from(m: InactivityMove) -> Self {
        Self {
            customer_id: m.customer_id,
            from_relationship_id: m.from,
            to_relationship_id: m.to,
            last_activity_time: Some(timestamp(m.activity_time)),
            inactive_days: m.idle_days,
            reason: m.reason,
            sequence: m.sequence.unwrap_or_default(),
        }
    }
}

impl From<Event<relationship_change::Model>> for pb::WatchRelationshipChangesResponse {
    fn from(event: Event<relationship_change::Model>) -> Self {
        use pb::watch_relationship_changes_response::Event as E;
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

#[tonic::async_trait]
impl RelationshipService for RelationshipApi {
    type WatchRelationshipChangesStream = ChangeStream;

    async fn get_relationship_flow(
        &self,
        request: Request<pb::GetRelationshipFlowRequest>,
    ) -> Result<Response<pb::GetRelationshipFlowResponse>, Status> {
        let ctx = context(&request)?;
        let selection = report::flow_selection(request.into_inner())?;
        let flow = self.store.relationship_flow(&ctx, &selection).await?;
        Ok(Response::new(flow.into()))
    }

    async fn get_owner_report(
        &self,
        request: Request<pb::GetOwnerReportRequest>,
    ) -> Result<Response<pb::GetOwnerReportResponse>, Status> {
        let ctx = context(&request)?;
        let selection = report::owner_selection(request.into_inner())?;
        let rows = self.store.owner_report(&ctx, &selection).await?;
        Ok(Response::new(pb::GetOwnerReportResponse {
            rows: rows.into_iter().map(Into::into).collect(),
        }))
    }

    async fn watch_relationship_changes(
        &self,
        request: Request<pb::WatchRelationshipChangesRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let ctx = context(&request)?;
        let request = request.into_inner();
        let watch = Watch {
            tenant: ctx.tenant.as_str().to_owned(),
            after_sequence: request.after_sequence,
            filter: watch_filter(&request)?,
            heartbeat: self.heartbeat,
        };
        respond(&self.store, self.store.feed(), watch).await
    }

    async fn apply_inactivity_rules(
        &self,
        request: Request<pb::ApplyInactivityRulesRequest>,
    ) -> Result<Response<pb::ApplyInactivityRulesResponse>, Status> {
        // A dry run reads only; a real run may move customers.
        let ctx = if request.get_ref().dry_run {
            context(&request)?
        } else {
            may_administer(&request)?;
            write_context(&self.store, &request).await?
        };
        let sweep = inactivity_sweep(&ctx, request.get_ref(), self.store.now())?;
        let report = self.store.apply_inactivity_rules(&sweep).await?;
        Ok(Response::new(pb::ApplyInactivityRulesResponse {
            move_count: report.count as i64,
            moves: report.moves.into_iter().map(Into::into).collect(),
        }))
    }

    async fn create_relationship(
        &self,
        request: Request<pb::CreateRelationshipRequest>,
    ) -> Result<Response<pb::CreateRelationshipResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let key = idempotency_key(&req, &req.request_id, |r| r.request_id.clear())?;
        let input = convert::new_relationship(req.relationship)?;
        let relationship = self
            .store
            .create_relationship(&ctx.tenant, &input, key.as_ref())
            .await?;
        Ok(Response::new(pb::CreateRelationshipResponse {
            relationship: present_one(&self.store, &ctx.tenant, relationship).await?,
        }))
    }

    async fn get_relationship(
        &self,
        request: Request<pb::GetRelationshipRequest>,
    ) -> Result<Response<pb::GetRelationshipResponse>, Status> {
        let ctx = context(&request)?;
        let id = ids::parse("id", &request.get_ref().id)?;
        let relationship = self.store.get_relationship(&ctx.tenant, &id).await?;
        Ok(Response::new(pb::GetRelationshipResponse {
            relationship: present_one(&self.store, &ctx.tenant, relationship).await?,
        }))
    }

    async fn list_relationships(
        &self,
        request: Request<pb::ListRelationshipsRequest>,
    ) -> Result<Response<pb::ListRelationshipsResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let deleted = DeletedFilter::from_flags(req.show_deleted, req.deleted_only);
        let result = self
            .store
            .list_relationships(&ctx.tenant, deleted, &page)
            .await?;
        Ok(Response::new(pb::ListRelationshipsResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            relationships: present(&self.store, &ctx.tenant, result.items).await?,
        }))
    }

    async fn update_relationship(
        &self,
        request: Request<pb::UpdateRelationshipRequest>,
    ) -> Result<Response<pb::UpdateRelationshipResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let (target, patch) = convert::relationship_patch(req.relationship, req.update_mask)?;
        let relationship = self
            .store
            .update_relationship(&ctx.tenant, &target, &patch)
            .await?;
        Ok(Response::new(pb::UpdateRelationshipResponse {
            relationship: present_one(&self.store, &ctx.tenant, relationship).await?,
        }))
    }

    async fn delete_relationship(
        &self,
        request: Request<pb::DeleteRelationshipRequest>,
    ) -> Result<Response<pb::DeleteRelationshipResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let reassign_to = ids::parse_optional("reassign_to_id", &req.reassign_to_id)?;
        let (relationship, reassigned) = self
            .store
            .delete_relationship(&ctx, &target, reassign_to.as_deref())
            .await?;
        Ok(Response::new(pb::DeleteRelationshipResponse {
            relationship: present_one(&self.store, &ctx.tenant, relationship).await?,
            reassigned_customer_count: reassigned as i64,
        }))
    }

    async fn restore_relationship(
        &self,
        request: Request<pb::RestoreRelationshipRequest>,
    ) -> Result<Response<pb::RestoreRelationshipResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let relationship = self
            .store
            .restore_relationship(&ctx.tenant, &target)
            .await?;
        Ok(Response::new(pb::RestoreRelationshipResponse {
            relationship: present_one(&self.store, &ctx.tenant, relationship).await?,
        }))
    }
}
