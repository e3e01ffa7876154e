//! Group membership of customers: adding and removing, both idempotent.

use super::{
    records::lock_customers,
    rules::ensure_group_assignable,
    write::{self, Change},
};
use crate::{
    domain::{membership::MembershipCause, tenant::RequestContext},
    entity::{customer, customer_group},
    error::AppResult,
    store::{Store, resource},
};

impl Store {
    /// Adds customers to an active group; returns how many were not in it.
    pub async fn add_customers_to_group(
        &self,
        ctx: &RequestContext,
        group_id: &str,
        customer_ids: &[String],
    ) -> AppResult<u64> {
        let now = self.now();
        let input = (ctx.clone(), group_id.to_owned(), customer_ids.to_vec());
        self.write(input, move |tx, (ctx, group_id, ids)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                ensure_group_assignable(tx, tenant, group_id).await?;
                let customers = lock_customers(tx, tenant, ids).await?;
                let mut changes = Vec::with_capacity(ids.len());
                for id in ids {
                    let customer = &customers[id];
                    resource::ensure_active::<customer::Entity>(customer, "adding it to groups")?;
                    changes.push(Change::Join {
                        group_id,
                        customer,
                        cause: MembershipCause::Manual,
                    });
                }
                Ok(write::apply(tx, tenant, now, &ctx.actor.0, &changes, None)
                    .await?
                    .joined)
            })
        })
        .await
    }

    /// Removes customers from a group (deleted or not); returns how many
    /// were in it.
    pub async fn remove_customers_from_group(
        &self,
        ctx: &RequestContext,
        group_id: &str,
        customer_ids: &[String],
    ) -> AppResult<u64> {
        let now = self.now();
        let input = (ctx.clone(), group_id.to_owned(), customer_ids.to_vec());
        self.write(input, move |tx, (ctx, group_id, ids)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                resource::find::<customer_group::Entity>(tx, tenant, group_id).await?;
                lock_customers(tx, tenant, ids).await?;
                let changes: Vec<Change> = ids
                    .iter()
                    .map(|customer_id| Change::Leave {
                        group_id,
                        customer_id,
                        cause: MembershipCause::Manual,
                    })
                    .collect();
                Ok(write::apply(tx, tenant, now, &ctx.actor.0, &changes, None)
                    .await?
                    .left)
            })
        })
        .await
    }
}
