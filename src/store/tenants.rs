//! Tenant provisioning: a tenant's first request creates its row and seeds
//! its relationships, exactly once even when many first requests arrive
//! together (the tenant row's primary key decides which one seeds). Reads
//! never provision: a tenant never written has no rows, and its reads show
//! the seeds it would get (see `catalogs::relationships::seed_rows`).

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, TryInsertResult};

use super::{Store, catalogs::relationships};
use crate::{domain::tenant::TenantId, entity::tenant, error::AppResult};

/// Whether `tenant` has been provisioned (a primary-key read).
pub async fn exists(db: &impl ConnectionTrait, tenant: &str) -> AppResult<bool> {
    Ok(tenant::Entity::find_by_id(tenant).one(db).await?.is_some())
}

impl Store {
    /// Whether `tenant` has been provisioned. Known tenants are answered
    /// from memory; only tenants that exist are remembered, since one
    /// that does not may be provisioned by the next write.
    pub async fn tenant_exists(&self, tenant: &TenantId) -> AppResult<bool> {
        if self.is_provisioned(tenant.as_str()) {
            return Ok(true);
        }
        let exists = exists(self.db(), tenant.as_str()).await?;
        if exists {
            self.remember(tenant.as_str());
        }
        Ok(exists)
    }

    /// Makes sure `tenant` exists, seeding it on first use.
    pub async fn provision(&self, tenant: &TenantId) -> AppResult<()> {
        if self.is_provisioned(tenant.as_str()) {
            return Ok(());
        }
        let locale = self.seed_locale;
        let id = tenant.as_str().to_owned();
        let now = self.now();
        self.write(id, move |tx, id| {
            Box::pin(async move {
                let inserted = tenant::Entity::insert(tenant::ActiveModel {
                    id: Set(id.clone()),
                    create_time: Set(now),
                    rules_version: Set(0),
                })
                .on_conflict_do_nothing()
                .exec_without_returning(tx)
                .await?;
                if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
                    relationships::seed(tx, id, locale, now).await?;
                    tracing::info!(tenant = %id, "provisioned a new tenant");
                }
                Ok(())
            })
        })
        .await?;
        self.remember(tenant.as_str());
        Ok(())
    }

    fn remember(&self, tenant: &str) {
        self.provisioned
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_owned());
    }

    fn is_provisioned(&self, tenant: &str) -> bool {
        self.provisioned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tenant)
    }
}
