//! Tenant provisioning: a tenant's first request creates its row and seeds
//! its relationships, exactly once even when many first requests arrive
//! together (the tenant row's primary key decides which one seeds).

use sea_orm::{ActiveValue::Set, EntityTrait, TryInsertResult};

use super::{Store, catalogs::relationships};
use crate::{domain::tenant::TenantId, entity::tenant, error::AppResult};

impl Store {
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
        self.provisioned
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.as_str().to_owned());
        Ok(())
    }

    fn is_provisioned(&self, tenant: &str) -> bool {
        self.provisioned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tenant)
    }
}
