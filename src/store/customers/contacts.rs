//! Contacts with customers: recording one (which may bring a customer back
//! from an automatic relationship) and listing them.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, Order, QueryFilter};

use super::{
    CustomerRecord, inactivity,
    records::find_record,
    write::{self, Change},
};
use crate::{
    domain::{
        catalog::Target,
        change::NewContact,
        ids,
        paging::{Cursor, CursorKind, CursorValue, Page, PageRequest},
        tenant::RequestContext,
    },
    entity::{contact, customer},
    error::{AppError, AppResult},
    store::{Store, resource},
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
        self.write((ctx.clone(), input.clone()), move |tx, (ctx, input)| {
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
                if row.last_contact_time.is_none_or(|last| contact_time > last) {
                    let contacted = Change::Contact {
                        row: &row,
                        time: contact_time,
                    };
                    write::apply(tx, tenant, now, &ctx.actor.0, &[contacted], None).await?;
                    let row = customer::Model {
                        last_contact_time: Some(contact_time),
                        activity_time: contact_time,
                        ..row
                    };
                    inactivity::restore_on_contact(tx, ctx, &row, input.channel, now).await?;
                }
                let record = find_record(tx, tenant, &input.customer_id).await?;
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
            (contact::Column::Id, CursorKind::Id),
        ];
        resource::list_page(self.db(), query, order, Order::Desc, page, |c| {
            Cursor(vec![
                CursorValue::Int(c.contact_time),
                CursorValue::Text(c.id.clone()),
            ])
        })
        .await
    }
}
