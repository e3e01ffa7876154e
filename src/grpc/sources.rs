//! SourceService handlers.

use tonic::{Request, Response, Status};

use super::{
    context,
    convert::{Checks, catalog as convert, report},
    idempotency_key, page_request, present, present_one, target, write_context,
};
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
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let key = idempotency_key(&req, &req.request_id, |r| r.request_id.clear())?;
        let input = convert::new_source(req.source)?;
        let source = self
            .store
            .create_source(&ctx.tenant, &input, key.as_ref())
            .await?;
        Ok(Response::new(pb::CreateSourceResponse {
            source: present_one(&self.store, &ctx.tenant, source).await?,
        }))
    }

    async fn get_source(
        &self,
        request: Request<pb::GetSourceRequest>,
    ) -> Result<Response<pb::GetSourceResponse>, Status> {
        let ctx = context(&request)?;
        let id = ids::parse("id", &request.get_ref().id)?;
        let source = self.store.get_source(&ctx.tenant, &id).await?;
        Ok(Response::new(pb::GetSourceResponse {
            source: present_one(&self.store, &ctx.tenant, source).await?,
        }))
    }

    async fn list_sources(
        &self,
        request: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let deleted = DeletedFilter::from_flags(req.show_deleted, req.deleted_only);
        let result = self.store.list_sources(&ctx.tenant, deleted, &page).await?;
        Ok(Response::new(pb::ListSourcesResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            sources: present(&self.store, &ctx.tenant, result.items).await?,
        }))
    }

    async fn update_source(
        &self,
        request: Request<pb::UpdateSourceRequest>,
    ) -> Result<Response<pb::UpdateSourceResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let (target, patch) = convert::source_patch(req.source, req.update_mask)?;
        let source = self
            .store
            .update_source(&ctx.tenant, &target, &patch)
            .await?;
        Ok(Response::new(pb::UpdateSourceResponse {
            source: present_one(&self.store, &ctx.tenant, source).await?,
        }))
    }

    async fn delete_source(
        &self,
        request: Request<pb::DeleteSourceRequest>,
    ) -> Result<Response<pb::DeleteSourceResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let source = self.store.delete_source(&ctx.tenant, &target).await?;
        Ok(Response::new(pb::DeleteSourceResponse {
            source: present_one(&self.store, &ctx.tenant, source).await?,
        }))
    }

    async fn restore_source(
        &self,
        request: Request<pb::RestoreSourceRequest>,
    ) -> Result<Response<pb::RestoreSourceResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = target(&req.id, req.etag)?;
        let source = self.store.restore_source(&ctx.tenant, &target).await?;
        Ok(Response::new(pb::RestoreSourceResponse {
            source: present_one(&self.store, &ctx.tenant, source).await?,
        }))
    }

    async fn get_source_report(
        &self,
        request: Request<pb::GetSourceReportRequest>,
    ) -> Result<Response<pb::GetSourceReportResponse>, Status> {
        let ctx = context(&request)?;
        let pb::GetSourceReportRequest {
            create_time_from,
            create_time_to,
        } = request.into_inner();
        let mut checks = Checks::default();
        let period = report::period(
            &mut checks,
            create_time_from,
            create_time_to,
            ("create_time_from", "create_time_to"),
        );
        checks.finish()?;
        let report = self.store.source_report(&ctx, period).await?;
        Ok(Response::new(pb::GetSourceReportResponse {
            rows: report.rows.into_iter().map(Into::into).collect(),
            total: Some(report.total.into()),
        }))
    }
}
