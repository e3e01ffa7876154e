//! `relationship_members`: each customer's relationship with copies of its
//! activeness, creation and activity times, which lists by relationship and
//! the inactivity sweep read (see the entity). Every write of one of those
//! goes through here, in the same transaction as the customer's row.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, SelectStatement},
};

use crate::{
    domain::paging::DeletedFilter,
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

/// Points customers at relationship `to` (`automatic` when it is an
/// automatic one).
pub async fn set_relationship(
    tx: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
    to: &str,
    automatic: bool,
) -> AppResult<()> {
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
    Ok(())
}

/// Copies a customer's deletion (`active` false) or restoration.
pub async fn set_active(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    active: bool,
) -> AppResult<()> {
    set_copy(
        tx,
        tenant,
        id,
        relationship_member::Column::CustomerActive,
        active,
    )
    .await
}

/// Copies a customer's new activity time.
pub async fn set_activity(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    activity_time: i64,
) -> AppResult<()> {
    set_copy(
        tx,
        tenant,
        id,
        relationship_member::Column::ActivityTime,
        activity_time,
    )
    .await
}

/// Sets `column` of customer `id`'s row to `value`.
async fn set_copy(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    column: relationship_member::Column,
    value: impl Into<sea_orm::Value>,
) -> AppResult<()> {
    relationship_member::Entity::update_many()
        .col_expr(column, Expr::value(value))
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::CustomerId.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// The customers holding `relationship_id` that `deleted` selects, from
/// `relationship_members_by_relationship`.
pub fn holders(
    tenant: &str,
    relationship_id: &str,
    deleted: DeletedFilter,
) -> Select<relationship_member::Entity> {
    let query = relationship_member::Entity::find()
        .filter(relationship_member::Column::TenantId.eq(tenant))
        .filter(relationship_member::Column::RelationshipId.eq(relationship_id));
    match deleted {
        DeletedFilter::Active => query.filter(relationship_member::Column::CustomerActive.eq(true)),
        DeletedFilter::Only => query.filter(relationship_member::Column::CustomerActive.eq(false)),
        DeletedFilter::All => query,
    }
}

/// The ids of [`holders`], as a subquery.
pub fn holder_ids(tenant: &str, relationship_id: &str, deleted: DeletedFilter) -> SelectStatement {
    holders(tenant, relationship_id, deleted)
        .select_only()
        .column(relationship_member::Column::CustomerId)
        .into_query()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use migrations::{Migrator, MigratorTrait};
    use sea_orm::{EntityTrait, QueryOrder};

    use crate::{
        clock::ManualClock,
        domain::{
            catalog::Target,
            customer::{NewCustomer, Profile},
            relationship::SeedLocale,
            tenant::{Actor, RequestContext, TenantId},
        },
        entity::relationship_member,
        store::{Store, database},
    };

    /// Migrating a database that already has customers gives each its row
    /// as the writes since would have kept it: rolled back past the
    /// migration and migrated again, the rows are the same.
    #[tokio::test]
    async fn migrating_fills_the_rows_of_existing_customers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("crm.db").display());
        let db = database::open(&url, true).await.expect("open");
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap(),
        ));
        let store = Store::new(db.clone(), clock.clone(), SeedLocale::En);
        let tenant = TenantId::parse(Some("backfill")).expect("tenant");
        store.provision(&tenant).await.expect("provision");
        let ctx = RequestContext {
            tenant,
            actor: Actor(String::new()),
        };
        let mut ids = Vec::new();
        for name in ["Ann", "Bao", "Chi"] {
            let input = NewCustomer {
                profile: Profile {
                    name: name.into(),
                    ..Default::default()
                },
                relationship_id: None,
                group_ids: Vec::new(),
                reason: String::new(),
            };
            let record = store
                .create_customer(&ctx, &input, None)
                .await
                .expect("create");
            ids.push(record.row.id.clone());
            clock.advance(chrono::Duration::seconds(1));
        }
        let target = Target {
            id: ids[1].clone(),
            etag: String::new(),
        };
        store.delete_customer(&ctx, &target).await.expect("delete");
        let kept = || {
            relationship_member::Entity::find()
                .order_by_asc(relationship_member::Column::CustomerId)
                .all(&db)
        };
        let written = kept().await.expect("rows");
        let active: Vec<bool> = written.iter().map(|r| r.customer_active).collect();
        assert_eq!(active, [true, false, true]);

        Migrator::down(&db, Some(1)).await.expect("roll back");
        assert!(kept().await.is_err(), "the table is gone");
        Migrator::up(&db, None).await.expect("migrate again");
        assert_eq!(kept().await.expect("rows"), written);
    }
}
