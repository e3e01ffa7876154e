//! Group membership of customers: adding and removing, both idempotent.

use std::collections::HashSet;

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{
    Store,
    customers::{ensure_group_assignable, lock_customers},
    record_cache::Touches,
    resource,
};
use crate::{
    changes::{self, GroupDeltas},
    domain::tenant::RequestContext,
    entity::{customer, customer_group, group_member},
    error::AppResult,
};

impl Store {
    /// Adds customers to an active group; returns how many were not in it.
    pub async fn add_customers_to_group(
        &self,
        ctx: &RequestContext,
        group_id: &str,
        customer_ids: &[String],
    ) -> AppResult<u64> {
        let (tenant, group_id, customer_ids) = (
            ctx.tenant.as_str().to_owned(),
            group_id.to_owned(),
            customer_ids.to_vec(),
        );
        self.write(Touches::Customers(customer_ids.clone()), move |tx| {
            let (tenant, group_id, ids) = (tenant.clone(), group_id.clone(), customer_ids.clone());
            Box::pin(async move {
                ensure_group_assignable(tx, &tenant, &group_id).await?;
                let customers = lock_customers(tx, &tenant, &ids).await?;
                for id in &ids {
                    resource::ensure_active::<customer::Entity>(
                        &customers[id],
                        "adding it to groups",
                    )?;
                }
                let present: HashSet<String> = group_member::Entity::find()
                    .filter(group_member::Column::TenantId.eq(&tenant))
                    .filter(group_member::Column::GroupId.eq(&group_id))
                    .filter(group_member::Column::CustomerId.is_in(ids.iter().cloned()))
                    .select_only()
                    .column(group_member::Column::CustomerId)
                    .into_tuple::<String>()
                    .all(tx)
                    .await?
                    .into_iter()
                    .collect();
                let new: Vec<&customer::Model> = ids
                    .iter()
                    .filter(|id| !present.contains(*id))
                    .map(|id| &customers[id])
                    .collect();
                if new.is_empty() {
                    return Ok(0);
                }
                group_member::Entity::insert_many(new.iter().map(|c| group_member::ActiveModel {
                    tenant_id: Set(tenant.clone()),
                    group_id: Set(group_id.clone()),
                    customer_id: Set(c.id.clone()),
                    relationship_id: Set(c.relationship_id.clone()),
                    customer_active: Set(c.delete_time.is_none()),
                    customer_create_time: Set(c.create_time),
                }))
                .exec_without_returning(tx)
                .await?;
                let mut deltas = GroupDeltas::new();
                for c in new.iter().filter(|c| c.delete_time.is_none()) {
                    *deltas
                        .entry((group_id.clone(), c.relationship_id.clone()))
                        .or_default() += 1;
                }
                changes::adjust_group_counts(tx, &tenant, &deltas).await?;
                Ok(new.len() as u64)
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
        let (tenant, group_id, customer_ids) = (
            ctx.tenant.as_str().to_owned(),
            group_id.to_owned(),
            customer_ids.to_vec(),
        );
        self.write(Touches::Customers(customer_ids.clone()), move |tx| {
            let (tenant, group_id, ids) = (tenant.clone(), group_id.clone(), customer_ids.clone());
            Box::pin(async move {
                resource::find::<customer_group::Entity>(tx, &tenant, &group_id).await?;
                lock_customers(tx, &tenant, &ids).await?;
                let leaving: Vec<(String, bool)> = group_member::Entity::find()
                    .filter(group_member::Column::TenantId.eq(&tenant))
                    .filter(group_member::Column::GroupId.eq(&group_id))
                    .filter(group_member::Column::CustomerId.is_in(ids.iter().cloned()))
                    .select_only()
                    .column(group_member::Column::RelationshipId)
                    .column(group_member::Column::CustomerActive)
                    .into_tuple()
                    .all(tx)
                    .await?;
                let mut deltas = GroupDeltas::new();
                for (relationship_id, active) in leaving {
                    if active {
                        *deltas
                            .entry((group_id.clone(), relationship_id))
                            .or_default() -= 1;
                    }
                }
                changes::adjust_group_counts(tx, &tenant, &deltas).await?;
                let removed = group_member::Entity::delete_many()
                    .filter(group_member::Column::TenantId.eq(&tenant))
                    .filter(group_member::Column::GroupId.eq(&group_id))
                    .filter(group_member::Column::CustomerId.is_in(ids.iter().cloned()))
                    .exec(tx)
                    .await?;
                Ok(removed.rows_affected)
            })
        })
        .await
    }
}
