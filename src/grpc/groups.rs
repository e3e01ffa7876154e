//! GroupService handlers.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{
    context, convert::catalog as convert, idempotency_key, membership_stream, page_request,
    present, present_one, target, write_context,
};
use crate::{
    domain::{ids, paging::DeletedFilter},
    pb::{self, group_service_server::GroupService},
    store::Store,
};

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
        _request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        Err(Status::unimplemented("ListGroupMembers is not built yet"))
    }

    async fn preview_group_rule(
        &self,
        _request: Request<pb::PreviewGroupRuleRequest>,
    ) -> Result<Response<pb::PreviewGroupRuleResponse>, Status> {
        Err(Status::unimplemented("PreviewGroupRule is not built yet"))
    }

    async fn clear_group_pins(
        &self,
        _request: Request<pb::ClearGroupPinsRequest>,
    ) -> Result<Response<pb::ClearGroupPinsResponse>, Status> {
        Err(Status::unimplemented("ClearGroupPins is not built yet"))
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
