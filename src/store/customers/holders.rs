//! Who holds a relationship, read from `relationship_members` (each
//! customer's relationship with copies of its activeness, creation and
//! activity times; see the entity). Only the write path writes the table.

use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Select,
    sea_query::SelectStatement,
};

use crate::{domain::paging::DeletedFilter, entity::relationship_member};

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
        store::{Store, db::connection as database},
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

        // Back to before `relationship_members`, however many came after it.
        let since = Migrator::migrations()
            .iter()
            .rev()
            .position(|m| m.name() == "m20261206_000008_relationship_members")
            .expect("the migration")
            + 1;
        Migrator::down(&db, Some(since as u32))
            .await
            .expect("roll back");
        assert!(kept().await.is_err(), "the table is gone");
        Migrator::up(&db, None).await.expect("migrate again");
        assert_eq!(kept().await.expect("rows"), written);
    }
}
