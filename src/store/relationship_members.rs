//! `relationship_members`: each customer's relationship with copies of its
//! activeness, creation and activity times, which lists by relationship and
//! the inactivity sweep read (see the entity). Every write of one of those
//! goes through here, in the same transaction as the customer's row.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Select,
    sea_query::Expr,
};

use crate::{
    entity::{customer, relationship_member},
    error::AppResult,
};

/// Rows per `INSERT` (seven values each), well below the databases' limits
/// on bound values.
const ROWS_PER_STATEMENT: usize = 2_000;

/// The row of a customer as it stands, which holds a manual relationship
/// (customers are created in manual relationships only).
fn row_of(customer: &customer::Model) -> relationship_member::ActiveModel {
    relationship_member::ActiveModel {
        customer_id: Set(customer.id.clone()),
        tenant_id: Set(customer.tenant_id.clone()),
        relationship_id: Set(customer.relationship_id.clone()),
        automatic_relationship: Set(false),
        customer_active: Set(customer.delete_time.is_none()),
        customer_create_time: Set(customer.create_time),
        activity_time: Set(customer.activity_time),
    }
}

/// Adds the rows of new customers.
pub async fn insert_created(
    tx: &impl ConnectionTrait,
    customers: &[customer::Model],
) -> AppResult<()> {
    for chunk in customers.chunks(ROWS_PER_STATEMENT) {
        relationship_member::Entity::insert_many(chunk.iter().map(row_of))
            .exec_without_returning(tx)
            .await?;
    }
    Ok(())
}

/// The tenant's rows of `ids`.
fn of(tenant: &str, ids: &[String]) -> sea_orm::UpdateMany<relationship_member::Entity> {
    relationship_member::Entity::update_many()
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::CustomerId.is_in(ids.iter().cloned()))
}

/// Points customers at relationship `to` (`automatic` when it is an
/// automatic one).
pub async fn set_relationship(
    tx: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
    to: &str,
    automatic: bool,
) -> AppResult<()> {
    of(tenant, ids)
        .col_expr(relationship_member::Column::RelationshipId, Expr::value(to))
        .col_expr(
            relationship_member::Column::AutomaticRelationship,
            Expr::value(automatic),
        )
        .exec(tx)
        .await?;
    Ok(())
}

/// Copies a customer's deletion (`active` false) or restoration.
pub async fn set_active(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    active: bool,
) -> AppResult<()> {
    of(tenant, &[id.to_owned()])
        .col_expr(
            relationship_member::Column::CustomerActive,
            Expr::value(active),
        )
        .exec(tx)
        .await?;
    Ok(())
}

/// Copies a customer's new activity time.
pub async fn set_activity(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    activity_time: i64,
) -> AppResult<()> {
    of(tenant, &[id.to_owned()])
        .col_expr(
            relationship_member::Column::ActivityTime,
            Expr::value(activity_time),
        )
        .exec(tx)
        .await?;
    Ok(())
}

/// The customers holding `relationship_id`, active or deleted ones
/// (`relationship_members_by_relationship`).
pub fn holders(
    tenant: &str,
    relationship_id: &str,
    active: bool,
) -> Select<relationship_member::Entity> {
    relationship_member::Entity::find()
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::RelationshipId.eq(relationship_id))
        .filter(relationship_member::Column::CustomerActive.eq(active))
}
