//! GroupService handlers.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{
    context, convert::catalog as convert, idempotency_key, membership_stream, page_request,
    present, present_one, target, write_context,
};
use crate::{
    domain::{
        ids,
        paging::{DeletedFilter, PageRequest},
    },
    error::AppError,
    grpc::convert::customer::customer_ids,
    pb::{self, group_service_server::GroupService},
    store::{Store, customers::members::Member, db::snapshot::AsOf},
};

/// A listed member, with its reasons.
fn member_message(member: Member) -> pb::GroupMember {
    let r = member.reasons;
    let reasons = [
        (r.rule, pb::MembershipReason::Rule),
        (r.pinned, pb::MembershipReason::Pinned),
        (r.pinned_out, pb::MembershipReason::PinnedOut),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, reason)| reason as i32)
    .collect();
    pb::GroupMember {
        customer_id: member.customer_id,
        reasons,
    }
}

/// The GroupService implementation.
#[derive(Clone)]
pub struct GroupApi {
    store: Store,
    heartbeat: Duration,
}

impl GroupApi {
    /// A service over `store`; membership streams send a heartbeat after
    /// `heartbeat` without an event.
    pub fn new(store: Store, heartbeat: Duration) -> Self {
        Self { store, heartbeat }
    }
}

#[tonic::async_trait]
impl GroupService for GroupApi {
    type WatchGroupMembershipChangesStream = membership_stream::MembershipStream;

    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let group_id = ids::parse("group_id", &req.group_id)?;
        let AsOf {
            read: members,
            sequence,
        } = self
            .store
            .list_group_members(&ctx, &group_id, req.show_pinned_out, &page)
            .await?;
        Ok(Response::new(pb::ListGroupMembersResponse {
            next_page_token: page.next_token(&members),
            total_size: members.total as i64,
            members: members.items.into_iter().map(member_message).collect(),
            watch_from_sequence: sequence,
        }))
    }

    async fn preview_group_rule(
        &self,
        request: Request<pb::PreviewGroupRuleRequest>,
    ) -> Result<Response<pb::PreviewGroupRuleResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let rule = req.rule.trim();
        if rule.is_empty() {
            return Err(AppError::invalid("rule", "give the rule to preview").into());
        }
        let group_id = ids::parse_optional("group_id", &req.group_id)?;
        let key = self.store.page_key().await?;
        let first = PageRequest::parse(req.page_size, "", String::new(), &key)?;
        let preview = self
            .store
            .preview_group_rule(&ctx, rule, group_id.as_deref(), &first)
            .await?;
        Ok(Response::new(pb::PreviewGroupRuleResponse {
            total_size: preview.tallies.total,
            counts: preview
                .tallies
                .by_relationship
                .into_iter()
                .map(Into::into)
                .collect(),
            customers: preview.first.into_iter().map(Into::into).collect(),
            join_count: preview.joining,
            leave_count: preview.leaving,
        }))
    }

    async fn clear_group_pins(
        &self,
        request: Request<pb::ClearGroupPinsRequest>,
    ) -> Result<Response<pb::ClearGroupPinsResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let group_id = ids::parse("group_id", &req.group_id)?;
        let customer_ids = if req.customer_ids.is_empty() {
            Vec::new()
        } else {
            customer_ids(&req.customer_ids)?
        };
        let cleared = self
            .store
            .clear_group_pins(&ctx, &group_id, &customer_ids)
            .await?;
        Ok(Response::new(pb::ClearGroupPinsResponse {
            cleared_count: cleared.cleared as i64,
            joined_count: cleared.joined as i64,
            left_count: cleared.left as i64,
        }))
    }

    async fn watch_group_membership_changes(
        &self,
        request: Request<pb::WatchGroupMembershipChangesRequest>,
    ) -> Result<Response<Self::WatchGroupMembershipChangesStream>, Status> {
        membership_stream::watch(&self.store, self.heartbeat, request).await
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let key = idempotency_key(&req, &req.request_id, |r| r.request_id.clear())?;
        let input = convert::new_group(req.group)?;
        let group = self
            .store
            .create_group(&ctx.tenant, &input, key.as_ref())
            .await?;
        Ok(Response::new(pb::CreateGroupResponse {
            group: present_one(&self.store, &ctx.tenant, group).await?,
        }))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GetGroupResponse>, Status> {
        let ctx = context(&request)?;
        let id = ids::parse("id", &request.get_ref().id)?;
        let group = self.store.get_group(&ctx.tenant, &id).await?;
        Ok(Response::new(pb::GetGroupResponse {
            group: present_one(&self.store, &ctx.tenant, group).await?,
        }))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let parent = ids::parse_optional("parent_id", &req.parent_id)?;
        let deleted = DeletedFilter::from_flags(req.show_deleted, req.deleted_only);
        let result = self
            .store
            .list_groups(&ctx.tenant, parent.as_deref(), deleted, &page)
            .await?;
        Ok(Response::new(pb::ListGroupsResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            groups: present(&self.store, &ctx.tenant, result.items).await?,
        }))
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Result<Response<pb::UpdateGroupResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let (target, patch) = convert::group_patch(req.group, req.update_mask)?;
        let group = self
            .store
            .update_group(&ctx.tenant, &target, &patch)
            .await?;
        Ok(Response::new(pb::UpdateGroupResponse {
            group: present_one(&self.store, &ctx.tenant, group).await?,
        }))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let (group, cascaded) = self
            .store
            .delete_group(&ctx.tenant, &target, req.cascade)
            .await?;
        Ok(Response::new(pb::DeleteGroupResponse {
            group: present_one(&self.store, &ctx.tenant, group).await?,
            cascaded_group_ids: cascaded,
        }))
    }

    async fn restore_group(
        &self,
        request: Request<pb::RestoreGroupRequest>,
    ) -> Result<Response<pb::RestoreGroupResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let (group, restored) = self.store.restore_group(&ctx.tenant, &target).await?;
        Ok(Response::new(pb::RestoreGroupResponse {
            group: present_one(&self.store, &ctx.tenant, group).await?,
            restored_group_ids: restored,
        }))
    }
}
