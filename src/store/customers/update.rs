//! Changing existing customers by hand: the profile (and with it the
//! relationship), soft delete and restore, and relationship changes of one
//! customer or many. Each checks the rules, then applies its change
//! through the write path.

use super::{
    CustomerRecord,
    records::{lock_customers, profile_of},
    rules::{assignable_relationship, ensure_contact_points_free, ensure_source_assignable},
    write::{self, Change, Move},
};
use crate::{
    domain::{
        catalog::Target,
        change::{Cause, Origin},
        customer::CustomerPatch,
        tenant::RequestContext,
    },
    entity::{customer, relationship_change},
    error::AppResult,
    store::{Store, WriteTx, resource},
};

/// Who changes customers by hand, and why.
fn by_hand(ctx: &RequestContext, reason: &str) -> Origin {
    Origin {
        cause: Cause::Manual,
        actor: ctx.actor.0.clone(),
        reason: reason.to_owned(),
    }
}

/// The move of a locked customer to `to`, when it holds another.
fn move_of(row: &customer::Model, to: String) -> Option<Move> {
    (to != row.relationship_id).then(|| Move {
        customer_id: row.id.clone(),
        from: row.relationship_id.clone(),
        to,
        active: row.delete_time.is_none(),
        owner: row.owner_id.clone(),
    })
}

/// Applies `changes` to the customer `row` and reads its record back.
async fn apply_to_one(
    tx: &WriteTx,
    ctx: &RequestContext,
    row: &customer::Model,
    changes: &[Change<'_>],
    now: i64,
) -> AppResult<(CustomerRecord, Option<relationship_change::Model>)> {
    let mut applied = write::apply(
        tx,
        ctx.tenant.as_str(),
        now,
        &ctx.actor.0,
        changes,
        Some(&row.id),
    )
    .await?;
    let record = applied
        .record
        .take()
        .ok_or_else(|| crate::error::AppError::not_found("customer", row.id.clone()))?;
    Ok((record, applied.logged.pop()))
}

impl Store {
    /// Applies `patch`; a new relationship is recorded as a manual change.
    pub async fn update_customer(
        &self,
        ctx: &RequestContext,
        target: &Target,
        patch: &CustomerPatch,
    ) -> AppResult<CustomerRecord> {
        let now = self.now();
        let input = (ctx.clone(), target.clone(), patch.clone());
        self.write(input, move |tx, (ctx, target, patch)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let row = resource::lock_target::<customer::Entity>(tx, tenant, target).await?;
                resource::ensure_active::<customer::Entity>(&row, "changing it")?;
                let mut profile = profile_of(&row)?;
                let CustomerPatch {
                    name,
                    phone,
                    email,
                    owner_id,
                    source_id,
                    relationship_id,
                    province,
                    company,
                    revenue,
                    attributes,
                    reason,
                } = patch.clone();
                if let Some(source) = source_id {
                    if let Some(id) = &source
                        && row.source_id.as_deref() != Some(id)
                    {
                        ensure_source_assignable(tx, tenant, id).await?;
                    }
                    profile.source_id = source;
                }
                profile.name = name.unwrap_or(profile.name);
                profile.phone = phone.unwrap_or(profile.phone);
                profile.email = email.unwrap_or(profile.email);
                profile.owner_id = owner_id.unwrap_or(profile.owner_id);
                profile.province = province.unwrap_or(profile.province);
                profile.company = company.unwrap_or(profile.company);
                profile.revenue = revenue.unwrap_or(profile.revenue);
                profile.attributes = attributes.unwrap_or(profile.attributes);
                ensure_contact_points_free(
                    tx,
                    tenant,
                    &profile.phone,
                    &profile.email,
                    Some(&row.id),
                )
                .await?;
                let moved = match relationship_id {
                    Some(id) if id != row.relationship_id => {
                        let to = assignable_relationship(tx, tenant, &id).await?.id;
                        move_of(&row, to).map(|m| Move {
                            owner: profile.owner_id.clone(),
                            ..m
                        })
                    }
                    _ => None,
                };
                let origin = by_hand(ctx, &reason);
                let mut changes = vec![Change::Edit {
                    row: &row,
                    profile: &profile,
                }];
                if let Some(change) = &moved {
                    changes.push(Change::Move {
                        change,
                        origin: &origin,
                    });
                }
                Ok(apply_to_one(tx, ctx, &row, &changes, now).await?.0)
            })
        })
        .await
    }

    /// Soft-deletes a customer.
    pub async fn delete_customer(
        &self,
        ctx: &RequestContext,
        target: &Target,
    ) -> AppResult<CustomerRecord> {
        self.set_customer_deleted(ctx, target, true).await
    }

    /// Restores a deleted customer; its phone and email must still be free.
    pub async fn restore_customer(
        &self,
        ctx: &RequestContext,
        target: &Target,
    ) -> AppResult<CustomerRecord> {
        self.set_customer_deleted(ctx, target, false).await
    }

    async fn set_customer_deleted(
        &self,
        ctx: &RequestContext,
        target: &Target,
        delete: bool,
    ) -> AppResult<CustomerRecord> {
        let now = self.now();
        self.write((ctx.clone(), target.clone()), move |tx, (ctx, target)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let row = resource::lock_target::<customer::Entity>(tx, tenant, target).await?;
                let change = if delete {
                    resource::ensure_not_yet_deleted::<customer::Entity>(&row)?;
                    Change::Delete(&row)
                } else {
                    resource::ensure_deleted::<customer::Entity>(&row)?;
                    ensure_contact_points_free(tx, tenant, &row.phone, &row.email, Some(&row.id))
                        .await?;
                    Change::Restore(&row)
                };
                Ok(apply_to_one(tx, ctx, &row, &[change], now).await?.0)
            })
        })
        .await
    }

    /// Moves one customer to a manual relationship. Returns the customer and
    /// the recorded change (none when it already held the relationship).
    pub async fn change_relationship(
        &self,
        ctx: &RequestContext,
        target: &Target,
        relationship_id: &str,
        reason: &str,
    ) -> AppResult<(CustomerRecord, Option<relationship_change::Model>)> {
        let now = self.now();
        let input = (
            ctx.clone(),
            target.clone(),
            relationship_id.to_owned(),
            reason.to_owned(),
        );
        self.write(input, move |tx, (ctx, target, relationship_id, reason)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let row = resource::lock_target::<customer::Entity>(tx, tenant, target).await?;
                resource::ensure_active::<customer::Entity>(&row, "changing its relationship")?;
                let to = assignable_relationship(tx, tenant, relationship_id)
                    .await?
                    .id;
                let moved = move_of(&row, to);
                let origin = by_hand(ctx, reason);
                let changes: Vec<Change> = moved
                    .iter()
                    .map(|change| Change::Move {
                        change,
                        origin: &origin,
                    })
                    .collect();
                apply_to_one(tx, ctx, &row, &changes, now).await
            })
        })
        .await
    }

    /// Moves up to 1000 customers to a manual relationship, all or nothing.
    /// Customers already holding it are left out of the returned changes.
    pub async fn batch_change_relationship(
        &self,
        ctx: &RequestContext,
        customer_ids: &[String],
        relationship_id: &str,
        reason: &str,
    ) -> AppResult<Vec<relationship_change::Model>> {
        let now = self.now();
        let input = (
            ctx.clone(),
            customer_ids.to_vec(),
            relationship_id.to_owned(),
            reason.to_owned(),
        );
        self.write(input, move |tx, (ctx, ids, relationship_id, reason)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let to = assignable_relationship(tx, tenant, relationship_id)
                    .await?
                    .id;
                let rows = lock_customers(tx, tenant, ids).await?;
                let mut moves = Vec::new();
                for id in ids {
                    let row = &rows[id];
                    resource::ensure_active::<customer::Entity>(row, "changing its relationship")?;
                    moves.extend(move_of(row, to.clone()));
                }
                let origin = by_hand(ctx, reason);
                let changes: Vec<Change> = moves
                    .iter()
                    .map(|change| Change::Move {
                        change,
                        origin: &origin,
                    })
                    .collect();
                Ok(write::apply(tx, tenant, now, &ctx.actor.0, &changes, None)
                    .await?
                    .logged)
            })
        })
        .await
    }
}
