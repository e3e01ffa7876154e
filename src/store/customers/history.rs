//! Each customer's relationship history, read from the change log.

use sea_orm::{ColumnTrait, EntityTrait, Order, QueryFilter};

use crate::{
    domain::{
        paging::{Cursor, CursorKind, CursorValue, Page, PageRequest},
        tenant::RequestContext,
    },
    entity::{customer, relationship_change},
    error::AppResult,
    store::{Store, resource},
};

impl Store {
    /// Every relationship change of a customer, oldest first.
    pub async fn list_history(
        &self,
        ctx: &RequestContext,
        customer_id: &str,
        page: &PageRequest,
    ) -> AppResult<Page<relationship_change::Model>> {
        let tenant = ctx.tenant.as_str();
        resource::find::<customer::Entity>(self.db(), tenant, customer_id).await?;
        let query = relationship_change::Entity::find()
            .filter(relationship_change::Column::TenantId.eq(tenant))
            .filter(relationship_change::Column::CustomerId.eq(customer_id));
        // The customer id is the same on every row: a tie-break that never
        // breaks, since sequences are unique.
        let order = [
            (relationship_change::Column::Sequence, CursorKind::Int),
            (relationship_change::Column::CustomerId, CursorKind::Id),
        ];
        resource::list_page(self.db(), query, order, Order::Asc, page, |c| {
            Cursor(vec![
                CursorValue::Int(c.sequence),
                CursorValue::Text(c.customer_id.clone()),
            ])
        })
        .await
    }
}
