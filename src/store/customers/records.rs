//! Reading stored customers as records (the row with its active group
//! ids), from the record cache where it holds them; the one reader of a
//! customer's groups; locking customers for a write; and the conversions
//! between a row and a profile.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Select, sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        change::split_group_ids,
        customer::Profile,
        filter::text::{fold, folded_attributes},
        tenant::RequestContext,
        text,
    },
    entity::customer,
    error::{AppError, AppResult},
    store::{Snapshot, Store, resource::in_tenant},
};

/// A customer with the ids of the active groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// The stored row.
    pub row: customer::Model,
    /// Active groups the customer belongs to.
    pub group_ids: Vec<String>,
}

impl CustomerRecord {
    /// A record of a stored row; INTERNAL (and logged) when the row's
    /// stored attributes are corrupt, so no read serves them as empty.
    pub fn new(row: customer::Model, group_ids: Vec<String>) -> AppResult<Self> {
        attributes_of(&row)?;
        Ok(Self { row, group_ids })
    }

    /// The customer's attributes (checked when the record was read).
    pub fn attributes(&self) -> BTreeMap<String, String> {
        attributes_of(&self.row).unwrap_or_default()
    }
}

/// The stored attributes of a row; INTERNAL, and logged, when they are not
/// the JSON object of strings they must be.
fn attributes_of(row: &customer::Model) -> AppResult<BTreeMap<String, String>> {
    serde_json::from_str(&row.attributes).map_err(|e| {
        tracing::error!(customer = %row.id, tenant = %row.tenant_id, error = %e, "corrupt stored attributes");
        AppError::Internal(format!(
            "customer {} has corrupt stored attributes: {e}",
            row.id
        ))
    })
}

/// The column carrying a customer's active group ids, comma-separated.
const GROUP_IDS: &str = "record_group_ids";

/// A scalar sub-select of the active group ids of the customer whose
/// tenant and id the SQL expressions `tenant` and `customer` give, joined
/// with commas (NULL when none); read back with [`split_group_ids`]. The
/// one definition of "a customer's groups" that every read uses.
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

/// [`active_group_ids_of`] a row of `customers` in a query.
fn group_ids_column(backend: DatabaseBackend) -> Expr {
    active_group_ids_of(backend, r#""customers"."tenant_id""#, r#""customers"."id""#)
}

/// The customers `query` selects, each with its active group ids, in one
/// statement.
async fn records_of(
    db: &impl ConnectionTrait,
    query: Select<customer::Entity>,
) -> AppResult<Vec<CustomerRecord>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(
            query
                .expr_as(group_ids_column(backend), GROUP_IDS)
                .build(backend),
        )
        .await?;
    rows.iter()
        .map(|row| {
            CustomerRecord::new(
                customer::Model::from_query_result(row, "")?,
                split_group_ids(row.try_get("", GROUP_IDS)?),
            )
        })
        .collect()
}

/// Attaches their active group ids to rows read already.
pub async fn with_groups(
    db: &impl ConnectionTrait,
    tenant: &str,
    rows: Vec<customer::Model>,
) -> AppResult<Vec<CustomerRecord>> {
    let backend = db.get_database_backend();
    let mut groups: HashMap<String, Vec<String>> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(500) {
        let query = in_tenant::<customer::Entity>(tenant)
            .filter(customer::Column::Id.is_in(chunk.iter().map(|r| r.id.clone())))
            .select_only()
            .column(customer::Column::Id)
            .expr_as(group_ids_column(backend), GROUP_IDS);
        for row in db.query_all_raw(query.build(backend)).await? {
            let id: String = row.try_get("", "id")?;
            groups.insert(id, split_group_ids(row.try_get("", GROUP_IDS)?));
        }
    }
    rows.into_iter()
        .map(|row| {
            let group_ids = groups.remove(&row.id).unwrap_or_default();
            CustomerRecord::new(row, group_ids)
        })
        .collect()
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

/// Customers `ids` of the tenant (those that exist) with their active
/// groups, deleted or not, read a few hundred a statement.
pub async fn find_records(
    db: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
) -> AppResult<Vec<CustomerRecord>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let query = in_tenant::<customer::Entity>(tenant)
            .filter(customer::Column::Id.is_in(chunk.iter().cloned()));
        found.extend(records_of(db, query).await?);
    }
    Ok(found)
}

/// The profile fields of a stored row; INTERNAL when its stored
/// attributes are not the JSON object they must be.
pub fn profile_of(row: &customer::Model) -> AppResult<Profile> {
    let attributes = attributes_of(row)?;
    Ok(Profile {
        name: row.name.clone(),
        phone: row.phone.clone(),
        email: row.email.clone(),
        owner_id: row.owner_id.clone(),
        source_id: row.source_id.clone(),
        province: row.province.clone(),
        company: row.company.clone(),
        revenue: row.revenue,
        attributes,
    })
}

/// The row of a customer created at `now` with `profile`, as it is to be
/// stored (its first revision, never contacted).
pub fn new_row(
    tenant: &str,
    id: String,
    relationship_id: String,
    profile: &Profile,
    now: i64,
) -> AppResult<customer::Model> {
    let mut active = customer::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.to_owned()),
        relationship_id: Set(relationship_id),
        last_contact_time: Set(None),
        activity_time: Set(now),
        revision: Set(1),
        create_time: Set(now),
        update_time: Set(now),
        delete_time: Set(None),
        ..Default::default()
    };
    set_profile(&mut active, profile);
    Ok(sea_orm::TryIntoModel::try_into_model(active)?)
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
    active.name_folded = Set(fold(&profile.name));
    active.company_folded = Set(fold(&profile.company));
    active.province_folded = Set(fold(&profile.province));
    active.attributes_folded = Set(folded_attributes(&profile.attributes));
    active.revenue = Set(profile.revenue);
    // A map of strings always serialises.
    active.attributes = Set(serde_json::to_string(&profile.attributes).unwrap_or_default());
    active.profile_completion = Set(profile.completion());
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

    /// The customers `held` names (each with the relationship it holds in
    /// `snapshot`) that exist, in that order, each with that relationship:
    /// from the record cache where the cached record holds it, otherwise
    /// read in the snapshot.
    ///
    /// A cached record with another relationship is older than the
    /// snapshot (a write committed whose invalidation has not reached the
    /// cache yet, e.g. one made through another replica) or newer. A
    /// client that watches changes from the snapshot's sequence would
    /// never be sent the change an older one misses, so neither is served.
    /// Other fields of a cached record may differ from the snapshot as
    /// they may for any cached read; the stream does not carry them.
    pub async fn customer_records(
        &self,
        snapshot: &Snapshot,
        tenant: &str,
        held: &[(String, String)],
    ) -> AppResult<Vec<CustomerRecord>> {
        let mut found: HashMap<String, CustomerRecord> = HashMap::with_capacity(held.len());
        let mut missing = Vec::new();
        for (id, relationship_id) in held {
            match self.records().get(tenant, id) {
                Some(record) if record.row.relationship_id == *relationship_id => {
                    found.insert(id.clone(), CustomerRecord::clone(&record));
                }
                _ => missing.push(id.clone()),
            }
        }
        if !missing.is_empty() {
            let query =
                in_tenant::<customer::Entity>(tenant).filter(customer::Column::Id.is_in(missing));
            for record in records_of(snapshot.db(), query).await? {
                snapshot.fill(&record);
                found.insert(record.row.id.clone(), record);
            }
        }
        Ok(held.iter().filter_map(|(id, _)| found.remove(id)).collect())
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
