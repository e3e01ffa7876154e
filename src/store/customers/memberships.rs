//! Group membership of customers: adding and removing, both idempotent
//! (on a rule group they pin in and out), and handing pinned customers
//! back to a group's rule.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{
    records::lock_customers,
    rules::ensure_group_assignable,
    write::{self, Change},
};
use crate::{
    domain::{membership::MembershipCause, tenant::RequestContext},
    entity::{customer, customer_group, group_exclusion, group_member},
    error::{AppError, AppResult},
    store::{Store, resource},
};

/// What ClearGroupPins did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinsCleared {
    /// Customers whose pins went.
    pub cleared: u64,
    /// Of them, those that joined the group (pinned out, matched).
    pub joined: u64,
    /// Those that left it (pinned in, not matched).
    pub left: u64,
}

impl Store {
    /// Hands customers `customer_ids` of rule group `group_id` (none: every
    /// pinned one, [`PINS_PER_WRITE`] a transaction) back to its rule.
    pub async fn clear_group_pins(
        &self,
        ctx: &RequestContext,
        group_id: &str,
        customer_ids: &[String],
    ) -> AppResult<PinsCleared> {
        if !customer_ids.is_empty() {
            let (cleared, _) = self.clear_pins(ctx, group_id, Some(customer_ids)).await?;
            return Ok(cleared);
        }
        let mut total = PinsCleared::default();
        loop {
            let (cleared, more) = self.clear_pins(ctx, group_id, None).await?;
            total.cleared += cleared.cleared;
            total.joined += cleared.joined;
            total.left += cleared.left;
            if !more {
                return Ok(total);
            }
        }
    }

    /// One transaction of [`Store::clear_group_pins`]: the pins of
    /// `customer_ids`, or of the first pinned customers; also says whether
    /// more pinned customers may remain.
    async fn clear_pins(
        &self,
        ctx: &RequestContext,
        group_id: &str,
        customer_ids: Option<&[String]>,
    ) -> AppResult<(PinsCleared, bool)> {
        let now = self.now();
        let input = (
            ctx.clone(),
            group_id.to_owned(),
            customer_ids.map(<[String]>::to_vec),
        );
        self.write(input, move |tx, (ctx, group_id, ids)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let group = resource::find::<customer_group::Entity>(tx, tenant, group_id).await?;
                resource::ensure_active::<customer_group::Entity>(&group, "clearing its pins")?;
                if group.rule.is_empty() {
                    return Err(AppError::precondition(
                        "NOT_A_RULE_GROUP",
                        group_id.as_str(),
                        format!(
                            "group `{group_id}` has no rule: its members are all added by hand; remove them instead"
                        ),
                    ));
                }
                let (ids, more) = match ids {
                    Some(ids) => (ids.clone(), false),
                    None => {
                        let pinned = pinned_customers(tx, tenant, group_id).await?;
                        let more = pinned.len() >= PINS_PER_WRITE;
                        (pinned, more)
                    }
                };
                lock_customers(tx, tenant, &ids).await?;
                let changes: Vec<Change> = ids
                    .iter()
                    .map(|customer_id| Change::Unpin {
                        group_id,
                        customer_id,
                    })
                    .collect();
                let applied = write::apply(tx, tenant, now, &ctx.actor.0, &changes, None).await?;
                let (joined, left) = applied
                    .membership_moves
                    .get(group_id.as_str())
                    .copied()
                    .unwrap_or_default();
                let cleared = PinsCleared {
                    cleared: applied.unpinned,
                    joined,
                    left,
                };
                Ok((cleared, more))
            })
        })
        .await
    }

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

/// Pins cleared per transaction when a whole group's are.
const PINS_PER_WRITE: usize = 1_000;

/// Some [`PINS_PER_WRITE`] customers pinned into or out of group
/// `group_id` (pins in first).
async fn pinned_customers(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
) -> AppResult<Vec<String>> {
    let mut ids: Vec<String> = group_member::Entity::find()
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::GroupId.eq(group_id))
        .filter(group_member::Column::Pinned.eq(true))
        .select_only()
        .column(group_member::Column::CustomerId)
        .limit(PINS_PER_WRITE as u64)
        .into_tuple()
        .all(tx)
        .await?;
    let room = PINS_PER_WRITE - ids.len();
    if room > 0 {
        let out: Vec<String> = group_exclusion::Entity::find()
            .filter(group_exclusion::Column::TenantId.eq(tenant))
            .filter(group_exclusion::Column::GroupId.eq(group_id))
            .select_only()
            .column(group_exclusion::Column::CustomerId)
            .limit(room as u64)
            .into_tuple()
            .all(tx)
            .await?;
        ids.extend(out);
    }
    Ok(ids)
}
