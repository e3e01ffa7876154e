//! Relationship statuses: the seeded set, the single default, the position
//! order (kept 1..n over active relationships) and the inactivity settings of
//! automatic ones. Writes hold the tenant's relationship lock, so the default
//! and the order are changed by one writer at a time.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TryIntoModel,
    sea_query::{Expr, ExprTrait},
};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::{
    Store, WriteTx,
    catalogs::{self as catalog, CatalogActive, CreateEntry},
    customers::{
        evaluation::start_reading,
        group_rules::lock_rules,
        holders,
        write::{self, Change, Move},
    },
    lock_scope,
    resource::{self, Revisable, in_tenant},
    tenants,
};
use crate::{
    domain::{
        catalog::{IdempotencyKey, NewEntry, Target},
        change::{Cause, Origin},
        filter::Reads,
        membership::MembershipCause,
        paging::{Cursor, CursorKind, CursorValue, DeletedFilter, Page, PageRequest},
        relationship::{
            InactivityRule, Kind, NewRelationship, RelationshipPatch, SeedLocale, seeds,
        },
        tenant::{RequestContext, TenantId},
    },
    entity::{
        customer,
        relationship::{ActiveModel, Column, Entity, Model},
    },
    error::{AppError, AppResult},
};

/// The advisory-lock scope every change to a tenant's relationships takes.
pub(crate) const SCOPE: &str = "relationships";

/// The stored kind of a row.
pub fn kind_of(row: &Model) -> AppResult<Kind> {
    Kind::from_stored(&row.kind)
        .ok_or_else(|| AppError::Internal(format!("relationship {} has kind {}", row.id, row.kind)))
}

/// The exempt relationship ids of a row; INTERNAL (and logged) when the
/// stored list is corrupt, never "no exemptions".
pub fn exempt_ids_of(row: &Model) -> AppResult<Vec<String>> {
    row.exempt_ids().map_err(|e| {
        tracing::error!(relationship = %row.id, tenant = %row.tenant_id, error = %e, "corrupt stored exemption list");
        AppError::Internal(format!(
            "relationship {} has a corrupt stored exemption list: {e}",
            row.id
        ))
    })
}

/// Moves every customer holding `from` (deleted customers too, so none is
/// left on a deleted relationship) to `to`, recording each move. Without a
/// target, holders are FAILED_PRECONDITION. Returns how many moved.
async fn reassign_holders(
    tx: &WriteTx,
    ctx: &RequestContext,
    from: &str,
    to: Option<&str>,
    now: i64,
) -> AppResult<u64> {
    let tenant = ctx.tenant.as_str();
    // Active and deleted holders in one statement, and whether each is
    // deleted from its locked row: a customer deleted or restored while
    // this waited for its lock is counted once, as it now is.
    let members = holders::holder_ids(tenant, from, DeletedFilter::All);
    let holders: Vec<(String, Option<i64>, String)> = in_tenant::<customer::Entity>(tenant)
        .filter(customer::Column::Id.in_subquery(members))
        // Locked: a holder moved meanwhile (by hand, by the sweep) is
        // re-checked on PostgreSQL and left out.
        .filter(customer::Column::RelationshipId.eq(from))
        .order_by_asc(customer::Column::Id)
        .lock_exclusive()
        .select_only()
        .column(customer::Column::Id)
        .column(customer::Column::DeleteTime)
        .column(customer::Column::OwnerId)
        .into_tuple()
        .all(tx)
        .await?;
    if holders.is_empty() {
        return Ok(0);
    }
    let Some(to) = to else {
        return Err(AppError::precondition(
            "HAS_CUSTOMERS",
            from,
            format!(
                "{} customer(s) hold relationship `{from}`; name reassign_to_id to move them",
                holders.len()
            ),
        ));
    };
    let moves: Vec<Move> = holders
        .into_iter()
        .map(|(customer_id, delete_time, owner)| Move {
            customer_id,
            from: from.to_owned(),
            to: to.to_owned(),
            active: delete_time.is_none(),
            owner,
        })
        .collect();
    let origin = Origin {
        cause: Cause::RelationshipDeleted,
        actor: ctx.actor.0.clone(),
        reason: format!("relationship `{from}` was deleted"),
    };
    let changes: Vec<Change> = moves
        .iter()
        .map(|change| Change::Move {
            change,
            origin: &origin,
        })
        .collect();
    write::apply(tx, tenant, now, &ctx.actor.0, &changes, None).await?;
    Ok(moves.len() as u64)
}

/// The id of the seeded relationship `code` of `tenant`: derived from the
/// pair (a UUIDv8 of its SHA-256), so a tenant read before its first write
/// shows the ids its seeding will store. Tenants seeded before this kept
/// the random ids they were given.
pub fn seed_id(tenant: &str, code: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"crm-classify seeded relationship\0")
        .chain_update(tenant.as_bytes())
        .chain_update(b"\0")
        .chain_update(code.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes).hyphenated().to_string()
}

/// The seeded relationships of a new tenant, made at `now`: the rows its
/// provisioning inserts and, as plain models, what reads show before then.
pub fn seed_rows(tenant: &str, locale: SeedLocale, now: i64) -> Vec<ActiveModel> {
    seeds(locale)
        .into_iter()
        .zip(1..)
        .map(|(seed, position)| ActiveModel {
            color: Set(seed.color.to_owned()),
            position: Set(position),
            kind: Set(seed.kind.as_str().to_owned()),
            inactivity_days: Set(seed.inactivity_days),
            restore_on_contact: Set(false),
            exempt_relationship_ids: Set("[]".to_owned()),
            is_default: Set(seed.is_default),
            ..ActiveModel::created(
                seed_id(tenant, seed.code),
                tenant,
                seed.code.to_owned(),
                NewEntry {
                    code: None,
                    name: seed.name.to_owned(),
                    description: String::new(),
                },
                now,
            )
        })
        .collect()
}

/// Inserts the seeded relationships of a new tenant.
pub async fn seed(
    tx: &impl ConnectionTrait,
    tenant: &str,
    locale: SeedLocale,
    now: i64,
) -> AppResult<()> {
    Entity::insert_many(seed_rows(tenant, locale, now))
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// NOT_FOUND unless `id` is a relationship of `tenant`: one of its rows,
/// or, while the tenant has not been provisioned, one of its seeds.
pub async fn ensure_exists(db: &impl ConnectionTrait, tenant: &str, id: &str) -> AppResult<()> {
    match resource::find::<Entity>(db, tenant, id).await {
        Err(AppError::NotFound { .. })
            if seeds(SeedLocale::En)
                .iter()
                .any(|seed| seed_id(tenant, seed.code) == id)
                && !tenants::exists(db, tenant).await? =>
        {
            Ok(())
        }
        found => found.map(drop),
    }
}

/// Active relationships in position order.
async fn active_in_order(tx: &impl ConnectionTrait, tenant: &str) -> AppResult<Vec<Model>> {
    Ok(in_tenant::<Entity>(tenant)
        .filter(Column::DeleteTime.is_null())
        .order_by_asc(Column::Position)
        .order_by_asc(Column::Id)
        .all(tx)
        .await?)
}

/// Gives `order` the positions 1..n, touching only rows whose position moves.
async fn renumber(tx: &impl ConnectionTrait, order: Vec<Model>, now: i64) -> AppResult<()> {
    for (row, position) in order.into_iter().zip(1..) {
        if row.position != position {
            let revision = row.revision + 1;
            let mut active: ActiveModel = row.into();
            active.position = Set(position);
            active.bump(revision, now);
            active.update(tx).await?;
        }
    }
    Ok(())
}

/// Moves `row` to 1-based `position` (clamped to the end) among the active
/// relationships and renumbers the rest.
async fn place(
    tx: &impl ConnectionTrait,
    tenant: &str,
    row_id: &str,
    position: Option<u32>,
    now: i64,
) -> AppResult<()> {
    let mut order = active_in_order(tx, tenant).await?;
    if let Some(position) = position {
        let from = order.iter().position(|r| r.id == row_id);
        if let Some(from) = from {
            let row = order.remove(from);
            let to = (Ord::max(position, 1) as usize - 1).min(order.len());
            order.insert(to, row);
        }
    }
    renumber(tx, order, now).await
}

/// Clears the default flag of every relationship but `except`.
async fn unset_default(
    tx: &impl ConnectionTrait,
    tenant: &str,
    except: &str,
    now: i64,
) -> AppResult<()> {
    Entity::update_many()
        .col_expr(Column::IsDefault, Expr::value(false))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .filter(Column::TenantId.eq(tenant))
        .filter(Column::IsDefault.eq(true))
        .filter(Column::Id.ne(except))
        .exec(tx)
        .await?;
    Ok(())
}

/// A relationship that others point at (an exemption, a reassignment
/// target) must exist, be active and be manual.
async fn ensure_manual_target(
    tx: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    field: &str,
) -> AppResult<()> {
    let target = resource::find::<Entity>(tx, tenant, id).await?;
    resource::ensure_active::<Entity>(&target, "using it")?;
    if kind_of(&target)? != Kind::Manual {
        return Err(AppError::invalid(
            field,
            format!("relationship `{id}` is automatic; name a manual one"),
        ));
    }
    Ok(())
}

async fn ensure_exemptions(
    tx: &impl ConnectionTrait,
    tenant: &str,
    rule: &InactivityRule,
    own_id: &str,
) -> AppResult<()> {
    for (i, id) in rule.exempt_ids.iter().enumerate() {
        let field = format!("relationship.exempt_relationship_ids[{i}]");
        if id == own_id {
            return Err(AppError::invalid(
                field,
                "a relationship cannot exempt itself",
            ));
        }
        ensure_manual_target(tx, tenant, id, &field).await?;
    }
    Ok(())
}

fn exempt_json(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

fn default_must_be_manual(kind: Kind) -> AppResult<()> {
    match kind {
        Kind::Manual => Ok(()),
        Kind::AutomaticInactivity => Err(AppError::invalid(
            "relationship.is_default",
            "an automatic relationship cannot be the default for new customers",
        )),
    }
}

impl CreateEntry for Entity {
    const SCOPE: &'static str = SCOPE;
    const OPERATION: &'static str = "CreateRelationship";
    type Input = NewRelationship;

    fn entry(input: &NewRelationship) -> &NewEntry {
        &input.entry
    }

    /// Also checks the exemptions and the default flag, and places the new
    /// relationship at its position.
    async fn insert_row(
        tx: &WriteTx,
        tenant: &str,
        id: &str,
        input: NewRelationship,
        row: ActiveModel,
        now: i64,
    ) -> AppResult<Model> {
        ensure_exemptions(tx, tenant, &input.rule, id).await?;
        if input.is_default {
            default_must_be_manual(input.kind)?;
            unset_default(tx, tenant, id, now).await?;
        }
        ActiveModel {
            color: Set(input.color),
            position: Set(i32::MAX),
            kind: Set(input.kind.as_str().to_owned()),
            inactivity_days: Set(input.rule.inactivity_days),
            restore_on_contact: Set(input.rule.restore_on_contact),
            exempt_relationship_ids: Set(exempt_json(&input.rule.exempt_ids)),
            is_default: Set(input.is_default),
            ..row
        }
        .insert(tx)
        .await?;
        place(tx, tenant, id, input.position, now).await?;
        resource::find::<Entity>(tx, tenant, id).await
    }
}

impl Store {
    /// Creates a relationship.
    pub async fn create_relationship(
        &self,
        tenant: &TenantId,
        input: &NewRelationship,
        key: Option<&IdempotencyKey>,
    ) -> AppResult<Model> {
        self.create_entry::<Entity>(tenant, input, key).await
    }

    /// The seeded relationships of `tenant` as its reads show them before
    /// it is provisioned (nothing is written).
    pub fn unprovisioned_relationships(&self, tenant: &TenantId) -> AppResult<Vec<Model>> {
        seed_rows(tenant.as_str(), self.seed_locale, self.now())
            .into_iter()
            .map(|row| Ok(row.try_into_model()?))
            .collect()
    }

    /// One relationship, deleted or not.
    pub async fn get_relationship(&self, tenant: &TenantId, id: &str) -> AppResult<Model> {
        if self.tenant_exists(tenant).await? {
            return resource::find::<Entity>(self.db(), tenant.as_str(), id).await;
        }
        self.unprovisioned_relationships(tenant)?
            .into_iter()
            .find(|row| row.id == id)
            .ok_or_else(|| AppError::not_found(<Entity as resource::Resource>::RESOURCE, id))
    }

    /// Relationships in position order.
    pub async fn list_relationships(
        &self,
        tenant: &TenantId,
        deleted: DeletedFilter,
        page: &PageRequest,
    ) -> AppResult<Page<Model>> {
        let order = [
            (Column::Position, CursorKind::Position),
            (Column::Id, CursorKind::Id),
        ];
        let key = |m: &Model| {
            Cursor(vec![
                CursorValue::Int(i64::from(m.position)),
                CursorValue::Text(m.id.clone()),
            ])
        };
        if !self.tenant_exists(tenant).await? {
            // Seeds are active, already in (position, id) order.
            let rows = match deleted {
                DeletedFilter::Only => Vec::new(),
                DeletedFilter::Active | DeletedFilter::All => {
                    self.unprovisioned_relationships(tenant)?
                }
            };
            return resource::page_in_memory(rows, order.map(|(_, kind)| kind), page, key);
        }
        let query = resource::with_deleted_filter(in_tenant::<Entity>(tenant.as_str()), deleted);
        resource::list_page(self.db(), query, order, sea_orm::Order::Asc, page, key).await
    }

    /// Applies `patch` to a relationship.
    pub async fn update_relationship(
        &self,
        tenant: &TenantId,
        target: &Target,
        patch: &RelationshipPatch,
    ) -> AppResult<Model> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), patch.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, patch, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, SCOPE).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                resource::ensure_active::<Entity>(&row, "changing it")?;
                let kind = kind_of(&row)?;
                let rule = InactivityRule {
                    inactivity_days: patch.inactivity_days.unwrap_or(row.inactivity_days),
                    restore_on_contact: patch.restore_on_contact.unwrap_or(row.restore_on_contact),
                    exempt_ids: match &patch.exempt_ids {
                        Some(ids) => ids.clone(),
                        None => exempt_ids_of(&row)?,
                    },
                };
                rule.check(kind, "relationship")?;
                if patch.exempt_ids.is_some() {
                    ensure_exemptions(tx, tenant, &rule, &row.id).await?;
                }
                catalog::ensure_patch_free::<Entity>(tx, tenant, &row.id, &patch.entry).await?;
                if patch.entry.code.as_ref().is_some_and(|c| *c != row.code) {
                    lock_rules(tx, tenant).await?;
                    // Rules naming relationships by code may now name another.
                    start_reading(
                        tx,
                        tenant,
                        Reads::RELATIONSHIP,
                        MembershipCause::RuleChanged,
                        now,
                    )
                    .await?;
                }
                match patch.is_default {
                    Some(true) if !row.is_default => {
                        default_must_be_manual(kind)?;
                        unset_default(tx, tenant, &row.id, now).await?;
                    }
                    Some(false) if row.is_default => {
                        return Err(AppError::precondition(
                            "IS_DEFAULT",
                            &row.id,
                            format!("relationship `{}` is the default; make another relationship the default instead", row.id),
                        ));
                    }
                    _ => {}
                }

                let id = row.id.clone();
                let revision = row.revision + 1;
                let mut active: ActiveModel = row.into();
                active.apply_entry(&patch.entry);
                if let Some(color) = &patch.color {
                    active.color = Set(color.clone());
                }
                if let Some(is_default) = patch.is_default {
                    active.is_default = Set(is_default);
                }
                active.inactivity_days = Set(rule.inactivity_days);
                active.restore_on_contact = Set(rule.restore_on_contact);
                active.exempt_relationship_ids = Set(exempt_json(&rule.exempt_ids));
                active.bump(revision, now);
                active.update(tx).await?;
                if patch.position.is_some() {
                    place(tx, tenant, &id, patch.position, now).await?;
                }
                resource::find::<Entity>(tx, tenant, &id).await
            })
        })
        .await
        .inspect(|_| self.evaluations().notify_one())
    }

    /// Soft-deletes a relationship. Customers holding it move to
    /// `reassign_to`; returns the relationship and how many moved.
    pub async fn delete_relationship(
        &self,
        ctx: &RequestContext,
        target: &Target,
        reassign_to: Option<&str>,
    ) -> AppResult<(Model, u64)> {
        let now = self.now();
        let input = (target.clone(), reassign_to.map(str::to_owned), ctx.clone());
        self.write(input, move |tx, (target, reassign_to, ctx)| {
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                lock_scope(tx, tenant, SCOPE).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
                resource::ensure_not_yet_deleted::<Entity>(&row)?;
                if row.is_default {
                    return Err(AppError::precondition(
                        "IS_DEFAULT",
                        &row.id,
                        format!(
                            "relationship `{}` is the default and cannot be deleted; make another one the default first",
                            row.id
                        ),
                    ));
                }
                if let Some(to) = &reassign_to {
                    if to == &row.id {
                        return Err(AppError::invalid("reassign_to_id", "cannot be the relationship being deleted"));
                    }
                    ensure_manual_target(tx, tenant, to, "reassign_to_id").await?;
                }
                let reassigned = reassign_holders(tx, ctx, &row.id, reassign_to.as_deref(), now).await?;

                let id = row.id.clone();
                let revision = row.revision + 1;
                let mut active: ActiveModel = row.into();
                active.delete_time = Set(Some(now));
                active.bump(revision, now);
                active.update(tx).await?;
                place(tx, tenant, &id, None, now).await?;
                Ok((resource::find::<Entity>(tx, tenant, &id).await?, reassigned))
            })
        })
        .await
    }

    /// Restores a deleted relationship at the end of the order.
    pub async fn restore_relationship(
        &self,
        tenant: &TenantId,
        target: &Target,
    ) -> AppResult<Model> {
        let now = self.now();
        let tenant = tenant.as_str();
        let input = (target.clone(), tenant.to_owned());
        self.write(input, move |tx, (target, tenant)| {
            Box::pin(async move {
                lock_scope(tx, tenant, SCOPE).await?;
                let row = resource::lock_target::<Entity>(tx, tenant, target).await?;
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
                let end = active_in_order(tx, tenant).await?.len() as i32 + 1;
                let revision = row.revision + 1;
                let mut active: ActiveModel = row.into();
                active.delete_time = Set(None);
                active.position = Set(end);
                active.bump(revision, now);
                Ok(active.update(tx).await?)
            })
        })
        .await
    }
}
