//! Contacts with customers and each customer's relationship history.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, Order, QueryFilter};

use super::{
    Store,
    customers::{CustomerRecord, find_record},
    inactivity,
    record_cache::Touches,
    relationship_members,
    resource::{self, Revisable},
};
use crate::{
    domain::{
        catalog::Target,
        change::NewContact,
        ids,
        paging::{Cursor, CursorKind, CursorValue, Page, PageRequest},
        tenant::RequestContext,
    },
    entity::{contact, customer, relationship_change},
    error::{AppError, AppResult},
};

impl Store {
    /// Records a contact; the customer's last contact time becomes the
    /// latest of its contacts.
    pub async fn record_contact(
        &self,
        ctx: &RequestContext,
        input: &NewContact,
    ) -> AppResult<(contact::Model, CustomerRecord)> {
        let now = self.now();
        let (ctx, input) = (ctx.clone(), input.clone());
        self.write(Touches::customer(&input.customer_id), move |tx| {
            let (ctx, input) = (ctx.clone(), input.clone());
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let contact_time = input.contact_time.unwrap_or(now);
                if contact_time > now {
                    return Err(AppError::invalid(
                        "contact_time",
                        "may not be in the future",
                    ));
                }
                let target = Target {
                    id: input.customer_id.clone(),
                    etag: String::new(),
                };
                let row = resource::lock_target::<customer::Entity>(tx, tenant, &target).await?;
                resource::ensure_active::<customer::Entity>(&row, "recording contacts")?;
                let contact = contact::ActiveModel {
                    id: Set(ids::new_id()),
                    tenant_id: Set(tenant.to_owned()),
                    customer_id: Set(row.id.clone()),
                    channel: Set(input.channel.as_str().to_owned()),
                    note: Set(input.note.clone()),
                    contact_time: Set(contact_time),
                    actor_id: Set(ctx.actor.0.clone()),
                    create_time: Set(now),
                }
                .insert(tx)
                .await?;
                let row = if row.last_contact_time.is_none_or(|last| contact_time > last) {
                    let revision = row.revision + 1;
                    let mut active: customer::ActiveModel = row.into();
                    active.last_contact_time = Set(Some(contact_time));
                    active.activity_time = Set(contact_time);
                    active.bump(revision, now);
                    let row = active.update(tx).await?;
                    relationship_members::set_activity(tx, tenant, &row.id, contact_time).await?;
                    inactivity::restore_on_contact(tx, &ctx, &row, input.channel, now).await?;
                    row
                } else {
                    row
                };
                let record = find_record(tx, tenant, &row.id).await?;
                Ok((contact, record))
            })
        })
        .await
    }

    /// A customer's contacts, newest first.
    pub async fn list_contacts(
        &self,
        ctx: &RequestContext,
        customer_id: &str,
        page: &PageRequest,
    ) -> AppResult<Page<contact::Model>> {
        let tenant = ctx.tenant.as_str();
        resource::find::<customer::Entity>(self.db(), tenant, customer_id).await?;
        let query = contact::Entity::find()
            .filter(contact::Column::TenantId.eq(tenant))
            .filter(contact::Column::CustomerId.eq(customer_id));
        let order = [
            (contact::Column::ContactTime, CursorKind::Int),
            (contact::Column::Id, CursorKind::Text),
        ];
        resource::list_page(self.db(), query, order, Order::Desc, page, |c| {
            Cursor(vec![
                CursorValue::Int(c.contact_time),
                CursorValue::Text(c.id.clone()),
            ])
        })
        .await
    }

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
            (relationship_change::Column::CustomerId, CursorKind::Text),
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
