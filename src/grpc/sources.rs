//! SourceService handlers.

use tonic::{Request, Response, Status};

use super::{context, convert, idempotency_key, page_request, target};
use crate::{
    domain::{ids, paging::DeletedFilter},
    pb::{self, source_service_server::SourceService},
    store::Store,
};

/// The SourceService implementation.
#[derive(Clone)]
pub struct SourceApi {
    store: Store,
}

impl SourceApi {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl SourceService for SourceApi {
    async fn create_source(
        &self,
        request: Request<pb::CreateSourceRequest>,
    ) -> Result<Response<pb::CreateSourceResponse>, Status> {
        let ctx = context(&self.store, &request).await?;
        let req = request.into_inner();
        let key = idempotency_key(&req, &req.request_id, |r| r.request_id.clear())?;
        let input = convert::new_source(req.source)?;
        let source = self
            .store
            .create_source(&ctx.tenant, &input, key.as_ref())
            .await?;
        Ok(Response::new(pb::CreateSourceResponse {
            source: Some(source.into()),
        }))
    }

    async fn get_source(
        &self,
        request: Request<pb::GetSourceRequest>,
    ) -> Result<Response<pb::GetSourceResponse>, Status> {
        let ctx = context(&self.store, &request).await?;
        let id = ids::parse("id", &request.get_ref().id)?;
        let source = self.store.get_source(&ctx.tenant, &id).await?;
        Ok(Response::new(pb::GetSourceResponse {
            source: Some(source.into()),
        }))
    }

    async fn list_sources(
        &self,
        request: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let ctx = context(&self.store, &request).await?;
        let req = request.into_inner();
        let page = page_request("ListSources", &req, req.page_size, &req.page_token, |r| {
            r.page_size = 0;
            r.page_token.clear();
        })?;
        let deleted = DeletedFilter::from_flags(req.show_deleted, req.deleted_only);
        let result = self.store.list_sources(&ctx.tenant, deleted, &page).await?;
        Ok(Response::new(pb::ListSourcesResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            sources: result.items.into_iter().map(Into::into).collect(),
        }))
    }

    async fn update_source(
        &self,
        request: Request<pb::UpdateSourceRequest>,
    ) -> Result<Response<pb::UpdateSourceResponse>, Status> {
        let ctx = context(&self.store, &request).await?;
        let req = request.into_inner();
        let (target, patch) = convert::source_patch(req.source, req.update_mask)?;
        let source = self
            .store
            .update_source(&ctx.tenant, &target, &patch)
            .await?;
        Ok(Response::new(pb::UpdateSourceResponse {
            source: Some(source.into()),
        }))
    }

    async fn delete_source(
        &self,
        request: Request<pb::DeleteSourceRequest>,
    ) -> Result<Response<pb::DeleteSourceResponse>, Status> {
        let ctx = context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let source = self.store.delete_source(&ctx.tenant, &target).await?;
        Ok(Response::new(pb::DeleteSourceResponse {
            source: Some(source.into()),
        }))
    }

    async fn restore_source(
        &self,
        request: Request<pb::RestoreSourceRequest>,
    ) -> Result<Response<pb::RestoreSourceResponse>, Status> {
        let ctx = context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let source = self.store.restore_source(&ctx.tenant, &target).await?;
        Ok(Response::new(pb::RestoreSourceResponse {
            source: Some(source.into()),
        }))
    }

    async fn get_source_report(
        &self,
        _request: Request<pb::GetSourceReportRequest>,
    ) -> Result<Response<pb::GetSourceReportResponse>, Status> {
        Err(Status::unimplemented("GetSourceReport arrives with CustomerService"))
    }
}
