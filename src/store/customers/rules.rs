//! The rules a customer write checks against the stored state: which
//! relationships, sources and groups customers may be given, and phone
//! numbers and emails unique among active customers.

use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect, sea_query::Expr};

use crate::{
    domain::relationship::Kind,
    entity::{customer, customer_group, customer_source, relationship},
    error::{AppError, AppResult},
    store::resource::{self, in_tenant},
};

/// The relationship a customer is given by hand: it must exist, be active
/// and be manual.
pub async fn assignable_relationship(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> AppResult<relationship::Model> {
    let row = resource::find::<relationship::Entity>(tx, tenant, id).await?;
    check_assignable_relationship(&row.id, row.delete_time, &row.kind)?;
    Ok(row)
}

/// FAILED_PRECONDITION unless customers may be given the relationship `id`
/// (deleted at `delete_time`, of the stored `kind`) by hand: it must be
/// active and manual.
pub fn check_assignable_relationship(
    id: &str,
    delete_time: Option<i64>,
    kind: &str,
) -> AppResult<()> {
    resource::ensure_undeleted("relationship", id, delete_time, "assigning it")?;
    let kind = Kind::from_stored(kind)
        .ok_or_else(|| AppError::Internal(format!("relationship {id} has kind {kind}")))?;
    if kind == Kind::AutomaticInactivity {
        return Err(AppError::precondition(
            "AUTOMATIC_RELATIONSHIP",
            id,
            format!(
                "relationship `{id}` is automatic; only the inactivity rule moves customers there"
            ),
        ));
    }
    Ok(())
}

/// ALREADY_EXISTS: customer `existing` has `what` (phone or email) `value`.
pub fn contact_point_taken(existing: &str, what: &str, value: &str) -> AppError {
    AppError::AlreadyExists {
        resource: "customer",
        message: format!("customer `{existing}` already has {what} `{value}`"),
        existing_id: existing.to_owned(),
    }
}

pub async fn ensure_source_assignable(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> AppResult<()> {
    let source = resource::find::<customer_source::Entity>(tx, tenant, id).await?;
    check_source_assignable(&source.id, source.delete_time)
}

/// FAILED_PRECONDITION unless customers may be given the source `id`
/// (deleted at `delete_time`): it must be active.
pub fn check_source_assignable(id: &str, delete_time: Option<i64>) -> AppResult<()> {
    resource::ensure_undeleted("source", id, delete_time, "assigning it")
}

/// FAILED_PRECONDITION unless customers may join the group `id` (deleted
/// at `delete_time`): it must be active.
pub fn check_group_assignable(id: &str, delete_time: Option<i64>) -> AppResult<()> {
    resource::ensure_undeleted("group", id, delete_time, "adding customers to it")
}

/// Groups a customer is added to must exist and be active.
pub async fn ensure_group_assignable(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> AppResult<()> {
    let group = resource::find::<customer_group::Entity>(tx, tenant, id).await?;
    check_group_assignable(&group.id, group.delete_time)
}

/// ALREADY_EXISTS when another active customer has the phone or email.
pub async fn ensure_contact_points_free(
    tx: &impl ConnectionTrait,
    tenant: &str,
    phone: &str,
    email: &str,
    except_id: Option<&str>,
) -> AppResult<()> {
    // The literal `<> ''` repeats the partial unique indexes' predicate, so
    // the planners can use them (a bound parameter proves nothing).
    for (column, value, what, indexed) in [
        (customer::Column::Phone, phone, "phone", "phone <> ''"),
        (customer::Column::Email, email, "email", "email <> ''"),
    ] {
        if value.is_empty() {
            continue;
        }
        let mut query = in_tenant::<customer::Entity>(tenant)
            .filter(column.eq(value))
            .filter(Expr::cust(indexed))
            .filter(customer::Column::DeleteTime.is_null());
        if let Some(id) = except_id {
            query = query.filter(customer::Column::Id.ne(id));
        }
        if let Some(existing) = query
            .select_only()
            .column(customer::Column::Id)
            .into_tuple::<String>()
            .one(tx)
            .await?
        {
            return Err(contact_point_taken(&existing, what, value));
        }
    }
    Ok(())
}
