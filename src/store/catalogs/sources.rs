//! Customer sources: a flat catalog with tenant-wide unique names.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, Condition};

use crate::store::{
    Store, WriteTx,
    catalogs::{self as catalog, CatalogActive, CreateEntry},
    customers::{evaluation::start_reading, group_rules::lock_rules},
    lock_scope,
    resource::{self, Revisable, in_tenant},
};
use crate::{
    domain::{
        catalog::{EntryPatch, IdempotencyKey, NewEntry, Target},
        filter::Reads,
        membership::MembershipCause,
        paging::{DeletedFilter, Page, PageRequest},
        tenant::TenantId,
    },
    entity::customer_source::{ActiveModel, Entity, Model},
    error::AppResult,
};

/// Source writes of a tenant take turns, so codes generated from similar
/// names are picked one after the other instead of racing on the index.
const SCOPE: &str = "sources";

impl CreateEntry for Entity {
    const SCOPE: &'static str = SCOPE;
    const OPERATION: &'static str = "CreateSource";
    type Input = NewEntry;

    fn entry(input: &NewEntry) -> &NewEntry {
        input
    }

    async fn insert_row(
        tx: &WriteTx,
        _tenant: &str,
        _id: &str,
        _input: NewEntry,
        row: ActiveModel,
        _now: i64,
    ) -> AppResult<Model> {
        Ok(row.insert(tx).await?)
    }
}

impl Store {
    /// Creates a source.
    pub async fn create_source(
        &self,
        tenant: &TenantId,
        entry: &NewEntry,
        key: Option<&IdempotencyKey>,
    ) -> AppResult<Model> {
        self.create_entry::<Entity>(tenant, entry, key).await
    }

    /// One source, deleted or not.
    pub async fn get_source(&self, tenant: &TenantId, id: &str) -> AppResult<Model> {
        resource::find::<Entity>(self.db(), tenant.as_str(), id).await
    }

    /// Sources ordered by name, then id.
    pub async fn list_sources(
        &self,
        tenant: &TenantId,
        deleted: DeletedFilter,
        page: &PageRequest,
    ) -> AppResult<Page<Model>> {
        let query = resource::with_deleted_filter(in_tenant::<Entity>(tenant.as_str()), deleted);
        resource::list_by_name(self.db(), query, page).await
    }

    /// Applies `patch` to a source.
    pub async fn update_source(
        &self,
        tenant: &TenantId,
        target: &Target,
        patch: &EntryPatch,
    ) -> AppResult<Model> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), patch.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, patch, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, SCOPE).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                resource::ensure_active::<Entity>(&row, "changing it")?;
                catalog::ensure_patch_free::<Entity>(tx, tenant, &row.id, patch).await?;
                if patch.code.as_ref().is_some_and(|c| *c != row.code) {
                    lock_rules(tx, tenant).await?;
                    // Rules naming sources by code may now name another.
                    start_reading(
                        tx,
                        tenant,
                        Reads::PROFILE,
                        MembershipCause::RuleChanged,
                        now,
                    )
                    .await?;
                }
                let revision = row.revision + 1;
                let mut active: ActiveModel = row.into();
                active.apply_entry(patch);
                active.bump(revision, now);
                Ok(active.update(tx).await?)
            })
        })
        .await
        .inspect(|_| self.evaluations().notify_one())
    }

    /// Soft-deletes a source.
    pub async fn delete_source(&self, tenant: &TenantId, target: &Target) -> AppResult<Model> {
        self.set_source_deleted(tenant, target, true).await
    }

    /// Restores a deleted source.
    pub async fn restore_source(&self, tenant: &TenantId, target: &Target) -> AppResult<Model> {
        self.set_source_deleted(tenant, target, false).await
    }

    async fn set_source_deleted(
        &self,
        tenant: &TenantId,
        target: &Target,
        delete: bool,
    ) -> AppResult<Model> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, SCOPE).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                if delete {
                    resource::ensure_not_yet_deleted::<Entity>(&row)?;
                } else {
                    resource::ensure_deleted::<Entity>(&row)?;
                    catalog::ensure_name_free::<Entity>(
                        tx,
                        tenant,
                        &row.name,
                        Condition::all(),
                        "",
                        None,
                    )
                    .await?;
                }
                let revision = row.revision + 1;
                let mut active: ActiveModel = row.into();
                active.delete_time = Set(delete.then_some(now));
                active.bump(revision, now);
                Ok(active.update(tx).await?)
            })
        })
        .await
    }
}
