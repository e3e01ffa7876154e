//! CustomerService handlers.

use tonic::{Request, Response, Status};

use super::{
    context,
    convert::{
        customer::{self as convert, ListsCustomers},
        report,
    },
    idempotency_key, page_request, stream_context, target, write_context,
};
use crate::{
    domain::{catalog::Target, customer::CustomerOrder, ids, paging::DeletedFilter},
    pb::{self, customer_service_server::CustomerService},
    store::{AsOf, Store},
};

/// The CustomerService implementation.
#[derive(Clone)]
pub struct CustomerApi {
    store: Store,
}

impl CustomerApi {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    type ImportCustomersStream = super::import::ImportStream;
    type ExportCustomersStream = super::export::ExportStream;

    async fn import_customers(
        &self,
        request: Request<tonic::Streaming<pb::ImportCustomersRequest>>,
    ) -> Result<Response<Self::ImportCustomersStream>, Status> {
        let ctx = stream_context(request.metadata())?;
        let results = super::import::start(self.store.clone(), ctx, request.into_inner()).await?;
        Ok(Response::new(results))
    }

    async fn export_customers(
        &self,
        request: Request<pb::ExportCustomersRequest>,
    ) -> Result<Response<Self::ExportCustomersStream>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let order = CustomerOrder::parse(&req.order_by)?;
        let filter = req.customer_filter()?;
        let export = self.store.export_customers(&ctx, filter, order).await?;
        Ok(Response::new(super::export::stream(export)))
    }

    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::CreateCustomerResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let key = idempotency_key(&req, &req.request_id, |r| r.request_id.clear())?;
        let input = convert::new_customer(req.customer, &req.reason)?;
        let customer = self
            .store
            .create_customer(&ctx, &input, key.as_ref())
            .await?;
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    async fn get_group_overlap(
        &self,
        request: Request<pb::GetGroupOverlapRequest>,
    ) -> Result<Response<pb::GetGroupOverlapResponse>, Status> {
        let ctx = context(&request)?;
        let ids = convert::overlap_group_ids(&request.get_ref().group_ids)?;
        let overlap = self.store.group_overlap(&ctx, &ids).await?;
        Ok(Response::new(convert::group_overlap(&ids, &overlap)))
    }

    async fn get_group_report(
        &self,
        request: Request<pb::GetGroupReportRequest>,
    ) -> Result<Response<pb::GetGroupReportResponse>, Status> {
        let ctx = context(&request)?;
        let query = report::group_report_query(request.into_inner())?;
        let rows = self.store.group_report(&ctx, &query).await?;
        Ok(Response::new(pb::GetGroupReportResponse {
            rows: rows.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let ctx = context(&request)?;
        let id = ids::parse("id", &request.get_ref().id)?;
        let customer = self.store.get_customer(&ctx, &id).await?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let order = CustomerOrder::parse(&req.order_by)?;
        let filter = req.customer_filter()?;
        let AsOf {
            read: result,
            sequence,
        } = self
            .store
            .list_customers(&ctx, &filter, order, &page)
            .await?;
        Ok(Response::new(pb::ListCustomersResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            customers: result.items.into_iter().map(Into::into).collect(),
            watch_from_sequence: sequence,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::UpdateCustomerResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let (target, patch) = convert::customer_patch(req.customer, req.update_mask, &req.reason)?;
        let customer = self.store.update_customer(&ctx, &target, &patch).await?;
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<pb::DeleteCustomerResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let customer = self
            .store
            .delete_customer(&ctx, &target(&req.id, req.etag)?)
            .await?;
        Ok(Response::new(pb::DeleteCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    async fn restore_customer(
        &self,
        request: Request<pb::RestoreCustomerRequest>,
    ) -> Result<Response<pb::RestoreCustomerResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let customer = self
            .store
            .restore_customer(&ctx, &target(&req.id, req.etag)?)
            .await?;
        Ok(Response::new(pb::RestoreCustomerResponse {
            customer: Some(customer.into()),
        }))
    }

    async fn change_relationship(
        &self,
        request: Request<pb::ChangeRelationshipRequest>,
    ) -> Result<Response<pb::ChangeRelationshipResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let target = Target {
            id: ids::parse("customer_id", &req.customer_id)?,
            etag: req.etag,
        };
        let relationship_id = ids::parse("relationship_id", &req.relationship_id)?;
        let reason = crate::domain::text::description("reason", &req.reason)?;
        let (customer, change) = self
            .store
            .change_relationship(&ctx, &target, &relationship_id, &reason)
            .await?;
        Ok(Response::new(pb::ChangeRelationshipResponse {
            customer: Some(customer.into()),
            change: change.map(Into::into),
        }))
    }

    async fn batch_change_relationship(
        &self,
        request: Request<pb::BatchChangeRelationshipRequest>,
    ) -> Result<Response<pb::BatchChangeRelationshipResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let customer_ids = convert::customer_ids(&req.customer_ids)?;
        let relationship_id = ids::parse("relationship_id", &req.relationship_id)?;
        let reason = crate::domain::text::description("reason", &req.reason)?;
        let changes = self
            .store
            .batch_change_relationship(&ctx, &customer_ids, &relationship_id, &reason)
            .await?;
        Ok(Response::new(pb::BatchChangeRelationshipResponse {
            changes: changes.into_iter().map(Into::into).collect(),
        }))
    }

    async fn add_customers_to_group(
        &self,
        request: Request<pb::AddCustomersToGroupRequest>,
    ) -> Result<Response<pb::AddCustomersToGroupResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let group_id = ids::parse("group_id", &req.group_id)?;
        let customer_ids = convert::customer_ids(&req.customer_ids)?;
        let added = self
            .store
            .add_customers_to_group(&ctx, &group_id, &customer_ids)
            .await?;
        Ok(Response::new(pb::AddCustomersToGroupResponse {
            added_count: added as i64,
        }))
    }

    async fn remove_customers_from_group(
        &self,
        request: Request<pb::RemoveCustomersFromGroupRequest>,
    ) -> Result<Response<pb::RemoveCustomersFromGroupResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let req = request.into_inner();
        let group_id = ids::parse("group_id", &req.group_id)?;
        let customer_ids = convert::customer_ids(&req.customer_ids)?;
        let removed = self
            .store
            .remove_customers_from_group(&ctx, &group_id, &customer_ids)
            .await?;
        Ok(Response::new(pb::RemoveCustomersFromGroupResponse {
            removed_count: removed as i64,
        }))
    }

    async fn record_contact(
        &self,
        request: Request<pb::RecordContactRequest>,
    ) -> Result<Response<pb::RecordContactResponse>, Status> {
        let ctx = write_context(&self.store, &request).await?;
        let input = convert::new_contact(request.into_inner())?;
        let (contact, customer) = self.store.record_contact(&ctx, &input).await?;
        Ok(Response::new(pb::RecordContactResponse {
            contact: Some(contact.into()),
            customer: Some(customer.into()),
        }))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let customer_id = ids::parse("customer_id", &req.customer_id)?;
        let result = self.store.list_contacts(&ctx, &customer_id, &page).await?;
        Ok(Response::new(pb::ListContactsResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            contacts: result.items.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_relationship_history(
        &self,
        request: Request<pb::ListRelationshipHistoryRequest>,
    ) -> Result<Response<pb::ListRelationshipHistoryResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let page = page_request(&self.store, &req).await?;
        let customer_id = ids::parse("customer_id", &req.customer_id)?;
        let result = self.store.list_history(&ctx, &customer_id, &page).await?;
        Ok(Response::new(pb::ListRelationshipHistoryResponse {
            next_page_token: page.next_token(&result),
            total_size: result.total as i64,
            changes: result.items.into_iter().map(Into::into).collect(),
        }))
    }

    async fn count_customers_by_relationship(
        &self,
        request: Request<pb::CountCustomersByRelationshipRequest>,
    ) -> Result<Response<pb::CountCustomersByRelationshipResponse>, Status> {
        let ctx = context(&request)?;
        let req = request.into_inner();
        let counted = match report::as_of(&req)? {
            Some(at) => self.store.count_as_of(&ctx, at).await?,
            None => {
                let filter = convert::customer_filter(
                    &req.group_id,
                    req.include_subgroups,
                    &req.source_id,
                    "",
                    &req.owner_id,
                    &req.query,
                    DeletedFilter::Active,
                    &req.filter,
                )?;
                self.store.count_by_relationship(&ctx, &filter).await?
            }
        };
        let AsOf {
            read: tallies,
            sequence,
        } = counted;
        Ok(Response::new(pb::CountCustomersByRelationshipResponse {
            total: tallies.total,
            counts: tallies
                .by_relationship
                .into_iter()
                .map(Into::into)
                .collect(),
            watch_from_sequence: sequence,
        }))
    }
}
