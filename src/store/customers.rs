//! Customer records: read, update, soft delete and restore, with the
//! checks that keep phone numbers and emails unique among active customers
//! and the relationship rules of the contract (creating them is
//! `customer_creates`). Relationship changes go through
//! [`crate::changes::record`].

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Select,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};

use super::{
    Store,
    record_cache::Touches,
    relationship_members,
    resource::{self, Revisable, in_tenant},
};
use crate::{
    changes::{self, Move, Origin},
    domain::{
        catalog::Target,
        change::Cause,
        customer::{CustomerPatch, Profile},
        relationship::Kind,
        tenant::RequestContext,
        text,
    },
    entity::{
        customer, customer_group, customer_source, group_member, relationship, relationship_change,
    },
    error::{AppError, AppResult},
};

/// A customer with the ids of the active groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// The stored row.
    pub row: customer::Model,
    /// Active groups the customer belongs to.
    pub group_ids: Vec<String>,
}

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

async fn ensure_source_assignable(
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
async fn ensure_contact_points_free(
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

/// Ids of the active groups each customer belongs to.
pub async fn active_group_ids(
    db: &impl ConnectionTrait,
    tenant: &str,
    customer_ids: &[String],
) -> AppResult<HashMap<String, Vec<String>>> {
    let mut result: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in customer_ids.chunks(500) {
        let memberships: Vec<(String, String)> = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .filter(
                group_member::Column::GroupId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(customer_group::Column::Id)
                        .from(customer_group::Entity)
                        .and_where(Expr::col(customer_group::Column::TenantId).eq(tenant))
                        .and_where(Expr::col(customer_group::Column::DeleteTime).is_null())
                        .to_owned(),
                ),
            )
            .select_only()
            .column(group_member::Column::CustomerId)
            .column(group_member::Column::GroupId)
            .into_tuple()
            .all(db)
            .await?;
        for (customer_id, group_id) in memberships {
            result.entry(customer_id).or_default().push(group_id);
        }
    }
    for groups in result.values_mut() {
        groups.sort();
    }
    Ok(result)
}

/// Attaches active group ids to rows.
pub async fn with_groups(
    db: &impl ConnectionTrait,
    tenant: &str,
    rows: Vec<customer::Model>,
) -> AppResult<Vec<CustomerRecord>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut groups = active_group_ids(db, tenant, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| CustomerRecord {
            group_ids: groups.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect())
}

/// The column carrying a customer's active group ids, comma-separated.
const GROUP_IDS: &str = "record_group_ids";

/// The customers `query` selects, each with its active group ids, in one
/// statement (the ids aggregated into one column per customer).
async fn records_of(
    db: &impl ConnectionTrait,
    query: Select<customer::Entity>,
) -> AppResult<Vec<CustomerRecord>> {
    let backend = db.get_database_backend();
    let group_ids =
        active_group_ids_of(backend, r#""customers"."tenant_id""#, r#""customers"."id""#);
    let rows = db
        .query_all_raw(query.expr_as(group_ids, GROUP_IDS).build(backend))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(CustomerRecord {
                group_ids: split_group_ids(row.try_get("", GROUP_IDS)?),
                row: customer::Model::from_query_result(row, "")?,
            })
        })
        .collect()
}

/// A scalar sub-select of the active group ids of the customer whose
/// tenant and id the SQL expressions `tenant` and `customer` give, joined
/// with commas (NULL when none); read back with [`split_group_ids`].
pub fn active_group_ids_of(backend: DatabaseBackend, tenant: &str, customer: &str) -> Expr {
    let aggregate = match backend {
        DatabaseBackend::Postgres => "string_agg",
        _ => "group_concat",
    };
    Expr::cust(format!(
        r#"(SELECT {aggregate}(m.group_id, ',') FROM group_members m
            JOIN customer_groups g ON g.id = m.group_id AND g.delete_time IS NULL
            WHERE m.tenant_id = {tenant} AND m.customer_id = {customer})"#
    ))
}

/// The sorted ids of a column made by [`active_group_ids_of`].
pub fn split_group_ids(joined: Option<String>) -> Vec<String> {
    let mut ids: Vec<String> = joined
        .iter()
        .flat_map(|j| j.split(','))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

/// Records `moved` (if any), made by hand for `reason`, and returns the
/// customer `id`'s record with the change logged. The record is read
/// between the move and its log entry: the log locks the tenant's counters
/// and sequence until the commit, and every writer of the tenant waits for
/// them (see [`changes::apply`]).
async fn record_by_hand(
    tx: &impl ConnectionTrait,
    ctx: &RequestContext,
    id: &str,
    moved: Option<Move>,
    reason: String,
    now: i64,
) -> AppResult<(CustomerRecord, Option<relationship_change::Model>)> {
    let tenant = ctx.tenant.as_str();
    let applied = changes::apply(tx, tenant, moved.as_slice(), now).await?;
    let record = find_record(tx, tenant, id).await?;
    let origin = Origin {
        cause: Cause::Manual,
        actor: ctx.actor.0.clone(),
        reason,
    };
    let change = applied.log(tx, &origin).await?.pop();
    Ok((record, change))
}

/// Customer `id` of the tenant with its active groups, deleted or not;
/// NOT_FOUND otherwise.
pub async fn find_record(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> AppResult<CustomerRecord> {
    let query = in_tenant::<customer::Entity>(tenant).filter(customer::Column::Id.eq(id));
    records_of(db, query)
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("customer", id))
}

fn profile_of(row: &customer::Model) -> Profile {
    Profile {
        name: row.name.clone(),
        phone: row.phone.clone(),
        email: row.email.clone(),
        owner_id: row.owner_id.clone(),
        source_id: row.source_id.clone(),
        province: row.province.clone(),
        company: row.company.clone(),
        revenue: row.revenue,
        attributes: serde_json::from_str(&row.attributes).unwrap_or_default(),
    }
}

fn attributes_json(attributes: &BTreeMap<String, String>) -> String {
    serde_json::to_string(attributes).unwrap_or_else(|_| "{}".to_owned())
}

/// Writes the profile fields and everything derived from them.
pub fn set_profile(active: &mut customer::ActiveModel, profile: &Profile) {
    active.name = Set(profile.name.clone());
    active.sort_key = Set(text::sort_key(&profile.name));
    active.search_text = Set(profile.search_text());
    active.phone = Set(profile.phone.clone());
    active.email = Set(profile.email.clone());
    active.owner_id = Set(profile.owner_id.clone());
    active.source_id = Set(profile.source_id.clone());
    active.province = Set(profile.province.clone());
    active.company = Set(profile.company.clone());
    active.revenue = Set(profile.revenue);
    active.attributes = Set(attributes_json(&profile.attributes));
    active.profile_completion = Set(profile.completion());
}

/// Copies a customer's activeness (deleted or not) to its memberships and
/// its row in `relationship_members`.
async fn sync_copies(
    tx: &impl ConnectionTrait,
    tenant: &str,
    customer_id: &str,
    active: bool,
) -> AppResult<()> {
    group_member::Entity::update_many()
        .col_expr(group_member::Column::CustomerActive, Expr::value(active))
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::CustomerId.eq(customer_id))
        .exec(tx)
        .await?;
    relationship_members::set_active(tx, tenant, customer_id, active).await
}

impl Store {
    /// One customer, deleted or not; from the record cache when it holds it.
    pub async fn get_customer(&self, ctx: &RequestContext, id: &str) -> AppResult<CustomerRecord> {
        let tenant = ctx.tenant.as_str();
        if let Some(record) = self.records().get(tenant, id) {
            return Ok(CustomerRecord::clone(&record));
        }
        let ticket = self.records().ticket(id);
        let record = find_record(self.db(), tenant, id).await?;
        self.records().fill(ticket, &record);
        Ok(record)
    }

    /// The customers `ids` of the tenant that exist, in that order; from the
    /// record cache where it holds them.
    pub async fn customer_records(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> AppResult<Vec<CustomerRecord>> {
        let mut found: HashMap<String, CustomerRecord> = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.records().get(tenant, id) {
                Some(record) => {
                    found.insert(id.clone(), CustomerRecord::clone(&record));
                }
                None => missing.push((id.clone(), self.records().ticket(id))),
            }
        }
        if !missing.is_empty() {
            let missing_ids: Vec<String> = missing.iter().map(|(id, _)| id.clone()).collect();
            let query = in_tenant::<customer::Entity>(tenant)
                .filter(customer::Column::Id.is_in(missing_ids));
            let tickets: HashMap<String, _> = missing.into_iter().collect();
            for record in records_of(self.db(), query).await? {
                if let Some(ticket) = tickets.get(&record.row.id) {
                    self.records().fill(*ticket, &record);
                }
                found.insert(record.row.id.clone(), record);
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// Applies `patch`; a new relationship is recorded as a manual change.
    pub async fn update_customer(
        &self,
        ctx: &RequestContext,
        target: &Target,
        patch: &CustomerPatch,
    ) -> AppResult<CustomerRecord> {
        let now = self.now();
        let (target, patch, ctx) = (target.clone(), patch.clone(), ctx.clone());
        self.write(Touches::customer(&target.id), move |tx| {
            let (target, patch, ctx) = (target.clone(), patch.clone(), ctx.clone());
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let row = resource::lock_target::<customer::Entity>(tx, tenant, &target).await?;
                resource::ensure_active::<customer::Entity>(&row, "changing it")?;
                let mut profile = profile_of(&row);
                let CustomerPatch {
                    name,
                    phone,
                    email,
                    owner_id,
                    source_id,
                    relationship_id,
                    province,
                    company,
                    revenue,
                    attributes,
                    reason,
                } = patch;
                if let Some(source) = source_id {
                    if let Some(id) = &source
                        && row.source_id.as_deref() != Some(id)
                    {
                        ensure_source_assignable(tx, tenant, id).await?;
                    }
                    profile.source_id = source;
                }
                profile.name = name.unwrap_or(profile.name);
                profile.phone = phone.unwrap_or(profile.phone);
                profile.email = email.unwrap_or(profile.email);
                profile.owner_id = owner_id.unwrap_or(profile.owner_id);
                profile.province = province.unwrap_or(profile.province);
                profile.company = company.unwrap_or(profile.company);
                profile.revenue = revenue.unwrap_or(profile.revenue);
                profile.attributes = attributes.unwrap_or(profile.attributes);
                ensure_contact_points_free(
                    tx,
                    tenant,
                    &profile.phone,
                    &profile.email,
                    Some(&row.id),
                )
                .await?;

                let new_relationship = match relationship_id {
                    Some(id) if id != row.relationship_id => {
                        Some(assignable_relationship(tx, tenant, &id).await?.id)
                    }
                    _ => None,
                };
                let id = row.id.clone();
                let old_relationship = row.relationship_id.clone();
                let revision = row.revision + 1;
                let mut active: customer::ActiveModel = row.into();
                set_profile(&mut active, &profile);
                active.bump(revision, now);
                active.update(tx).await?;
                let moved = new_relationship.map(|to| Move {
                    customer_id: id.clone(),
                    from: Some(old_relationship),
                    to,
                    active: true,
                    owner: profile.owner_id.clone(),
                    groups: None,
                });
                let (record, _) = record_by_hand(tx, &ctx, &id, moved, reason, now).await?;
                Ok(record)
            })
        })
        .await
    }

    /// Soft-deletes a customer.
    pub async fn delete_customer(
        &self,
        ctx: &RequestContext,
        target: &Target,
    ) -> AppResult<CustomerRecord> {
        self.set_customer_deleted(ctx, target, true).await
    }

    /// Restores a deleted customer; its phone and email must still be free.
    pub async fn restore_customer(
        &self,
        ctx: &RequestContext,
        target: &Target,
    ) -> AppResult<CustomerRecord> {
        self.set_customer_deleted(ctx, target, false).await
    }

    async fn set_customer_deleted(
        &self,
        ctx: &RequestContext,
        target: &Target,
        delete: bool,
    ) -> AppResult<CustomerRecord> {
        let now = self.now();
        let (target, ctx) = (target.clone(), ctx.clone());
        self.write(Touches::customer(&target.id), move |tx| {
            let (target, ctx) = (target.clone(), ctx.clone());
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let row = resource::lock_target::<customer::Entity>(tx, tenant, &target).await?;
                if delete {
                    resource::ensure_not_yet_deleted::<customer::Entity>(&row)?;
                } else {
                    resource::ensure_deleted::<customer::Entity>(&row)?;
                    ensure_contact_points_free(tx, tenant, &row.phone, &row.email, Some(&row.id))
                        .await?;
                }
                let delta = if delete { -1 } else { 1 };
                changes::adjust_counts(
                    tx,
                    tenant,
                    &BTreeMap::from([(row.relationship_id.clone(), delta)]),
                )
                .await?;
                sync_copies(tx, tenant, &row.id, !delete).await?;
                let groups =
                    changes::memberships_of(tx, tenant, std::slice::from_ref(&row.id)).await?;
                let deltas: changes::GroupDeltas = groups
                    .into_values()
                    .flatten()
                    .map(|group| ((group, row.relationship_id.clone()), delta))
                    .collect();
                changes::adjust_group_counts(tx, tenant, &deltas).await?;
                let revision = row.revision + 1;
                let mut active: customer::ActiveModel = row.into();
                active.delete_time = Set(delete.then_some(now));
                active.bump(revision, now);
                let row = active.update(tx).await?;
                find_record(tx, tenant, &row.id).await
            })
        })
        .await
    }

    /// Moves one customer to a manual relationship. Returns the customer and
    /// the recorded change (none when it already held the relationship).
    pub async fn change_relationship(
        &self,
        ctx: &RequestContext,
        target: &Target,
        relationship_id: &str,
        reason: &str,
    ) -> AppResult<(CustomerRecord, Option<relationship_change::Model>)> {
        let now = self.now();
        let (target, ctx, relationship_id, reason) = (
            target.clone(),
            ctx.clone(),
            relationship_id.to_owned(),
            reason.to_owned(),
        );
        self.write(Touches::customer(&target.id), move |tx| {
            let (target, ctx, relationship_id, reason) = (
                target.clone(),
                ctx.clone(),
                relationship_id.clone(),
                reason.clone(),
            );
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let row = resource::lock_target::<customer::Entity>(tx, tenant, &target).await?;
                resource::ensure_active::<customer::Entity>(&row, "changing its relationship")?;
                let to = assignable_relationship(tx, tenant, &relationship_id)
                    .await?
                    .id;
                let moved = (to != row.relationship_id).then(|| Move {
                    customer_id: row.id.clone(),
                    from: Some(row.relationship_id.clone()),
                    to,
                    active: true,
                    owner: row.owner_id.clone(),
                    groups: None,
                });
                record_by_hand(tx, &ctx, &row.id, moved, reason, now).await
            })
        })
        .await
    }

    /// Moves up to 1000 customers to a manual relationship, all or nothing.
    /// Customers already holding it are left out of the returned changes.
    pub async fn batch_change_relationship(
        &self,
        ctx: &RequestContext,
        customer_ids: &[String],
        relationship_id: &str,
        reason: &str,
    ) -> AppResult<Vec<relationship_change::Model>> {
        let now = self.now();
        let (ctx, relationship_id, reason) =
            (ctx.clone(), relationship_id.to_owned(), reason.to_owned());
        let customer_ids = customer_ids.to_vec();
        self.write(Touches::Customers(customer_ids.clone()), move |tx| {
            let (ctx, ids, relationship_id, reason) = (
                ctx.clone(),
                customer_ids.clone(),
                relationship_id.clone(),
                reason.clone(),
            );
            Box::pin(async move {
                let tenant = ctx.tenant.as_str();
                let to = assignable_relationship(tx, tenant, &relationship_id)
                    .await?
                    .id;
                let rows = lock_customers(tx, tenant, &ids).await?;
                let mut moves = Vec::new();
                for id in &ids {
                    let row = &rows[id];
                    resource::ensure_active::<customer::Entity>(row, "changing its relationship")?;
                    if row.relationship_id != to {
                        moves.push(Move {
                            customer_id: id.clone(),
                            from: Some(row.relationship_id.clone()),
                            to: to.clone(),
                            active: true,
                            owner: row.owner_id.clone(),
                            groups: None,
                        });
                    }
                }
                let origin = Origin {
                    cause: Cause::Manual,
                    actor: ctx.actor.0.clone(),
                    reason,
                };
                changes::record(tx, tenant, &moves, &origin, now).await
            })
        })
        .await
    }
}

/// Locks the customers `ids` of the tenant; NOT_FOUND naming the first
/// missing one.
pub async fn lock_customers(
    tx: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
) -> AppResult<HashMap<String, customer::Model>> {
    let mut rows = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let found = in_tenant::<customer::Entity>(tenant)
            .filter(customer::Column::Id.is_in(chunk.iter().cloned()))
            .lock_exclusive()
            .all(tx)
            .await?;
        rows.extend(found.into_iter().map(|r| (r.id.clone(), r)));
    }
    if let Some(missing) = ids.iter().find(|id| !rows.contains_key(*id)) {
        return Err(AppError::not_found("customer", missing.clone()));
    }
    Ok(rows)
}
