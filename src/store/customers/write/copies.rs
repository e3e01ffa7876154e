//! The copies of customer fields that other tables keep so that lists,
//! counts and the inactivity sweep read narrow indexes: each customer's row
//! in `relationship_members` (relationship, activeness, creation and
//! activity times, owner) and the relationship, activeness and creation time on
//! each of its `group_members` rows. Written only here, next to the
//! customer row they copy.

use std::collections::HashSet;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};

use crate::{
    entity::{customer, group_member, relationship_member},
    error::AppResult,
};

/// Rows per `INSERT` (at most seven values each), well below the
/// databases' limits on bound values.
const ROWS_PER_STATEMENT: usize = 2_000;
/// Ids per `IN (…)` list.
pub(super) const IDS_PER_STATEMENT: usize = 500;

/// The `relationship_members` row of a new customer, which holds a manual
/// relationship (customers are created in manual relationships only).
fn member_row(customer: &customer::Model) -> relationship_member::ActiveModel {
    relationship_member::ActiveModel {
        customer_id: Set(customer.id.clone()),
        tenant_id: Set(customer.tenant_id.clone()),
        relationship_id: Set(customer.relationship_id.clone()),
        automatic_relationship: Set(false),
        customer_active: Set(customer.delete_time.is_none()),
        customer_create_time: Set(customer.create_time),
        activity_time: Set(customer.activity_time),
        owner_id: Set(customer.owner_id.clone()),
    }
}

/// Why a `group_members` row is there.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// Added by hand (a manual group's member, or pinned in).
    Pinned,
    /// The group's rule matches.
    Matched,
}

/// The `group_members` row of `customer` in `group_id`.
fn membership(
    tenant: &str,
    group_id: &str,
    customer: &customer::Model,
    why: Why,
) -> group_member::ActiveModel {
    group_member::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        group_id: Set(group_id.to_owned()),
        customer_id: Set(customer.id.clone()),
        relationship_id: Set(customer.relationship_id.clone()),
        customer_active: Set(customer.delete_time.is_none()),
        customer_create_time: Set(customer.create_time),
        matched: Set(matches!(why, Why::Matched)),
        pinned: Set(matches!(why, Why::Pinned)),
    }
}

/// Adds the rows of new customers and their memberships of `groups`.
pub(super) async fn insert_created(
    tx: &impl ConnectionTrait,
    tenant: &str,
    customers: &[(&customer::Model, &[String])],
) -> AppResult<()> {
    for chunk in customers.chunks(ROWS_PER_STATEMENT) {
        relationship_member::Entity::insert_many(chunk.iter().map(|(c, _)| member_row(c)))
            .exec_without_returning(tx)
            .await?;
    }
    let memberships: Vec<group_member::ActiveModel> = customers
        .iter()
        .flat_map(|(c, groups)| groups.iter().map(|g| membership(tenant, g, c, Why::Pinned)))
        .collect();
    for chunk in memberships.chunks(ROWS_PER_STATEMENT) {
        group_member::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

/// Points customers `ids` at relationship `to` (`automatic` when it is an
/// automatic one); returns their memberships as updated.
pub(super) async fn set_relationship(
    tx: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
    to: &str,
    automatic: bool,
) -> AppResult<Vec<group_member::Model>> {
    relationship_member::Entity::update_many()
        .col_expr(relationship_member::Column::RelationshipId, Expr::value(to))
        .col_expr(
            relationship_member::Column::AutomaticRelationship,
            Expr::value(automatic),
        )
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::CustomerId.is_in(ids.iter().cloned()))
        .exec(tx)
        .await?;
    Ok(group_member::Entity::update_many()
        .col_expr(group_member::Column::RelationshipId, Expr::value(to))
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::CustomerId.is_in(ids.iter().cloned()))
        .exec_with_returning(tx)
        .await?)
}

/// Copies a customer's deletion (`active` false) or restoration.
pub(super) async fn set_active(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    active: bool,
) -> AppResult<()> {
    relationship_member::Entity::update_many()
        .col_expr(
            relationship_member::Column::CustomerActive,
            Expr::value(active),
        )
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::CustomerId.eq(id))
        .exec(tx)
        .await?;
    group_member::Entity::update_many()
        .col_expr(group_member::Column::CustomerActive, Expr::value(active))
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::CustomerId.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Copies a customer's new owner.
pub(super) async fn set_owner(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    owner_id: &str,
) -> AppResult<()> {
    relationship_member::Entity::update_many()
        .col_expr(relationship_member::Column::OwnerId, Expr::value(owner_id))
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::CustomerId.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Copies a customer's new activity time.
pub(super) async fn set_activity(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    activity_time: i64,
) -> AppResult<()> {
    relationship_member::Entity::update_many()
        .col_expr(
            relationship_member::Column::ActivityTime,
            Expr::value(activity_time),
        )
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::CustomerId.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Adds `customers` to group `group_id` where they are not members yet;
/// returns those added.
pub(super) async fn join<'c>(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    customers: &[&'c customer::Model],
) -> AppResult<Vec<&'c customer::Model>> {
    let mut present: HashSet<String> = HashSet::new();
    for chunk in customers.chunks(IDS_PER_STATEMENT) {
        let found: Vec<String> = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().map(|c| c.id.clone())))
            .select_only()
            .column(group_member::Column::CustomerId)
            .into_tuple()
            .all(tx)
            .await?;
        present.extend(found);
    }
    // `insert` also leaves out a customer named twice.
    let new: Vec<&customer::Model> = customers
        .iter()
        .copied()
        .filter(|c| present.insert(c.id.clone()))
        .collect();
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        group_member::Entity::insert_many(
            chunk
                .iter()
                .map(|c| membership(tenant, group_id, c, Why::Pinned)),
        )
        .exec_without_returning(tx)
        .await?;
    }
    Ok(new)
}

/// Adds `customers`, which have no row in rule group `group_id`, as
/// members the rule matches.
pub(super) async fn join_matched(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    customers: &[&customer::Model],
) -> AppResult<()> {
    for chunk in customers.chunks(ROWS_PER_STATEMENT) {
        group_member::Entity::insert_many(
            chunk
                .iter()
                .map(|c| membership(tenant, group_id, c, Why::Matched)),
        )
        .exec_without_returning(tx)
        .await?;
    }
    Ok(())
}

/// Notes whether the rule of group `group_id` matches its members `ids`.
pub(super) async fn set_matched(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    ids: &[String],
    matched: bool,
) -> AppResult<()> {
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        group_member::Entity::update_many()
            .col_expr(group_member::Column::Matched, Expr::value(matched))
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .exec(tx)
            .await?;
    }
    Ok(())
}

/// Removes customers `ids` from group `group_id`; returns the memberships
/// removed.
pub(super) async fn leave(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    ids: &[String],
) -> AppResult<Vec<group_member::Model>> {
    let mut removed = Vec::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        removed.extend(
            group_member::Entity::delete_many()
                .filter(group_member::Column::TenantId.eq(tenant))
                .filter(group_member::Column::GroupId.eq(group_id))
                .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
                .exec_with_returning(tx)
                .await?,
        );
    }
    Ok(removed)
}
