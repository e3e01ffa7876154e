//! Creating customers: the checks a batch of creates runs against the
//! database and against the creates before it, and the write of those
//! that pass (see `create_queue` for how creates are batched).
//!
//! The result is exactly that of running the batch's creates one after the
//! other in queue order: each is checked against the database *and* the
//! creates before it in the batch (a second customer with the same phone is
//! ALREADY_EXISTS naming the first), a create that fails its checks gets its
//! own error and the others still commit, and each gets its own log entry
//! with its own actor and reason.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{
    ConnectionTrait,
    sea_query::{Expr, ExprTrait, Query, UnionType},
};

use super::{
    CustomerRecord,
    records::new_row,
    rules::{
        check_assignable_relationship, check_group_assignable, check_source_assignable,
        contact_point_taken,
    },
    write::{self, Change},
};
use crate::{
    domain::{
        catalog::IdempotencyKey,
        change::{Cause, Origin},
        customer::NewCustomer,
        ids,
        tenant::RequestContext,
    },
    entity::{customer, customer_group, customer_source, relationship},
    error::{AppError, AppResult},
    store::{
        WriteTx,
        idempotency::{self, Claim},
        resource,
    },
};

/// One queued CreateCustomer.
#[derive(Debug, Clone)]
pub(super) struct Create {
    pub(super) ctx: RequestContext,
    pub(super) input: NewCustomer,
    pub(super) key: Option<IdempotencyKey>,
}

/// Creates `creates` in the transaction `tx`, as if one after the other;
/// returns each one's result in order. `Err` only when the transaction
/// failed.
pub(super) async fn create_all(
    tx: &WriteTx,
    creates: &[Create],
    now: i64,
) -> AppResult<Vec<AppResult<CustomerRecord>>> {
    let mut results: Vec<Option<AppResult<CustomerRecord>>> =
        creates.iter().map(|_| None).collect();
    let mut by_tenant: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, create) in creates.iter().enumerate() {
        by_tenant
            .entry(create.ctx.tenant.as_str())
            .or_default()
            .push(index);
    }
    for (tenant, indexes) in by_tenant {
        let batch: Vec<&Create> = indexes.iter().map(|&i| &creates[i]).collect();
        for (index, result) in indexes
            .into_iter()
            .zip(create_in_tenant(tx, tenant, &batch, now).await?)
        {
            results[index] = Some(result);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(went_missing))
        .collect())
}

/// The result of a create that got none (a bug, never expected).
pub(super) fn went_missing() -> AppResult<CustomerRecord> {
    Err(AppError::Internal("a create went missing".into()))
}

/// What a create that passed its checks will write.
struct Accepted {
    index: usize,
    id: String,
    relationship_id: String,
}

async fn create_in_tenant(
    tx: &WriteTx,
    tenant: &str,
    creates: &[&Create],
    now: i64,
) -> AppResult<Vec<AppResult<CustomerRecord>>> {
    let mut results: Vec<Option<AppResult<CustomerRecord>>> =
        creates.iter().map(|_| None).collect();

    // Request ids: a repeat answers with the first result. Claimed in key
    // order, so concurrent batches cannot wait on each other's keys.
    let mut by_key: Vec<(usize, &Create)> = creates.iter().copied().enumerate().collect();
    by_key.sort_by(|a, b| {
        let key = |c: &Create| c.key.as_ref().map(|k| k.request_id.clone());
        key(a.1).cmp(&key(b.1))
    });
    for (index, create) in by_key {
        match idempotency::claim(tx, tenant, OPERATION, create.key.as_ref(), now).await {
            Ok(Claim::Fresh) => {}
            Ok(Claim::Replay(first)) => results[index] = Some(idempotency::first_result(&first)),
            Err(err @ AppError::InvalidArgument(_)) => results[index] = Some(Err(err)),
            Err(err) => return Err(err),
        }
    }

    let catalog = Catalog::load(tx, tenant, creates, &results).await?;
    let mut accepted: Vec<Accepted> = Vec::new();
    for (index, create) in creates.iter().enumerate() {
        if results[index].is_some() {
            continue;
        }
        match catalog.check(create) {
            Ok(relationship_id) => accepted.push(Accepted {
                index,
                id: ids::new_id(),
                relationship_id,
            }),
            Err(err) => results[index] = Some(Err(err)),
        }
    }

    // Phones and emails: free in the database and among the creates before.
    let mut phones = HashSet::new();
    let mut emails = HashSet::new();
    for a in &accepted {
        let profile = &creates[a.index].input.profile;
        phones.insert(profile.phone.clone());
        emails.insert(profile.email.clone());
    }
    let (mut phones, mut emails) = taken(tx, tenant, phones, emails).await?;
    accepted.retain(|a| {
        let profile = &creates[a.index].input.profile;
        let clash = [
            ("phone", &profile.phone, &phones),
            ("email", &profile.email, &emails),
        ]
        .into_iter()
        .find_map(|(what, value, taken)| {
            taken
                .get(value.as_str())
                .map(|existing| contact_point_taken(existing, what, value))
        });
        match clash {
            Some(err) => {
                results[a.index] = Some(Err(err));
                false
            }
            None => {
                for (value, taken) in [(&profile.phone, &mut phones), (&profile.email, &mut emails)]
                {
                    if !value.is_empty() {
                        taken.insert(value.clone(), a.id.clone());
                    }
                }
                true
            }
        }
    });

    if !accepted.is_empty() {
        let records = write_accepted(tx, tenant, creates, &accepted, now).await?;
        for (a, record) in accepted.iter().zip(records) {
            let key = creates[a.index].key.as_ref();
            idempotency::remember(tx, tenant, OPERATION, key, &a.id, &record, now).await?;
            results[a.index] = Some(Ok(record));
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(went_missing))
        .collect())
}

/// The operation name request ids are kept under.
const OPERATION: &str = "CreateCustomer";

/// Which of `phones` and of `emails` (empty ones skipped) active customers
/// of the tenant have, and who has them, read in one statement. Each part
/// repeats its partial unique index's predicate, so the planners use it.
pub(super) async fn taken(
    tx: &impl ConnectionTrait,
    tenant: &str,
    phones: HashSet<String>,
    emails: HashSet<String>,
) -> AppResult<(HashMap<String, String>, HashMap<String, String>)> {
    use customer::Column as C;
    let part = |what: &str, column: C, indexed: &'static str, values: HashSet<String>| {
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        (!values.is_empty()).then(|| {
            Query::select()
                .expr(Expr::val(what))
                .column(column)
                .column(C::Id)
                .from(customer::Entity)
                .and_where(Expr::col(C::TenantId).eq(tenant))
                .and_where(Expr::col(column).is_in(values))
                .and_where(Expr::cust(indexed))
                .and_where(Expr::col(C::DeleteTime).is_null())
                .to_owned()
        })
    };
    let mut parts = [
        part("phone", C::Phone, "phone <> ''", phones),
        part("email", C::Email, "email <> ''", emails),
    ]
    .into_iter()
    .flatten();
    let (mut phones, mut emails) = (HashMap::new(), HashMap::new());
    let Some(mut query) = parts.next() else {
        return Ok((phones, emails));
    };
    for other in parts {
        query.union(UnionType::All, other);
    }
    for row in tx
        .query_all_raw(tx.get_database_backend().build(&query))
        .await?
    {
        let (what, value, id): (String, String, String) = (
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        );
        let taken = if what == "phone" {
            &mut phones
        } else {
            &mut emails
        };
        taken.insert(value, id);
    }
    Ok((phones, emails))
}

/// Inserts the accepted customers, with their memberships and log
/// entries, through the write path.
async fn write_accepted(
    tx: &WriteTx,
    tenant: &str,
    creates: &[&Create],
    accepted: &[Accepted],
    now: i64,
) -> AppResult<Vec<CustomerRecord>> {
    let mut rows = Vec::with_capacity(accepted.len());
    let mut origins = Vec::with_capacity(accepted.len());
    for a in accepted {
        let create = creates[a.index];
        let (id, relationship_id) = (a.id.clone(), a.relationship_id.clone());
        rows.push(new_row(
            tenant,
            id,
            relationship_id,
            &create.input.profile,
            now,
        )?);
        origins.push(Origin {
            cause: Cause::Created,
            actor: create.ctx.actor.0.clone(),
            reason: create.input.reason.clone(),
        });
    }
    let changes: Vec<Change> = accepted
        .iter()
        .zip(&rows)
        .zip(&origins)
        .map(|((a, row), origin)| Change::Create {
            row,
            groups: &creates[a.index].input.group_ids,
            origin,
        })
        .collect();
    // Each creation is logged with its own actor (a batch may mix them).
    let mut applied = write::apply(tx, tenant, now, "", &changes, None).await?;
    Ok(accepted
        .iter()
        .zip(rows)
        .map(|(a, row)| {
            // The groups given, and any whose rule took the customer in.
            let group_ids = applied.memberships.remove(&row.id).unwrap_or_else(|| {
                let mut given = creates[a.index].input.group_ids.clone();
                given.sort();
                given
            });
            CustomerRecord { row, group_ids }
        })
        .collect())
}

/// What the checks need of a relationship, source or group a create names.
struct Named {
    delete_time: Option<i64>,
    /// Relationships only: the stored kind.
    kind: String,
}

/// The relationships, sources and groups a set of creates names (and the
/// default relationship), read in one statement.
struct Catalog {
    relationships: HashMap<String, Named>,
    default_relationship: Option<String>,
    sources: HashMap<String, Named>,
    groups: HashMap<String, Named>,
}

impl Catalog {
    async fn load(
        tx: &impl ConnectionTrait,
        tenant: &str,
        creates: &[&Create],
        decided: &[Option<AppResult<CustomerRecord>>],
    ) -> AppResult<Self> {
        let pending = || {
            creates
                .iter()
                .zip(decided)
                .filter(|(_, d)| d.is_none())
                .map(|(c, _)| &c.input)
        };
        let relationship_ids: HashSet<String> = pending()
            .filter_map(|i| i.relationship_id.clone())
            .collect();
        let source_ids: HashSet<String> = pending()
            .filter_map(|i| i.profile.source_id.clone())
            .collect();
        let group_ids: HashSet<String> = pending().flat_map(|i| i.group_ids.clone()).collect();

        use relationship::Column as R;
        let mut query = Query::select()
            .expr(Expr::val("relationship"))
            .columns([R::Id, R::DeleteTime, R::Kind, R::IsDefault])
            .from(relationship::Entity)
            .and_where(Expr::col(R::TenantId).eq(tenant))
            .cond_where(
                sea_orm::Condition::any()
                    .add(Expr::col(R::IsDefault).eq(true))
                    .add(Expr::col(R::Id).is_in(relationship_ids)),
            )
            .to_owned();
        for part in [
            named_part::<customer_source::Entity>(tenant, source_ids),
            named_part::<customer_group::Entity>(tenant, group_ids),
        ]
        .into_iter()
        .flatten()
        {
            query.union(UnionType::All, part);
        }
        let mut catalog = Self {
            relationships: HashMap::new(),
            default_relationship: None,
            sources: HashMap::new(),
            groups: HashMap::new(),
        };
        for row in tx
            .query_all_raw(tx.get_database_backend().build(&query))
            .await?
        {
            let what: String = row.try_get_by_index(0)?;
            let id: String = row.try_get_by_index(1)?;
            let named = Named {
                delete_time: row.try_get_by_index(2)?,
                kind: row.try_get_by_index(3)?,
            };
            let is_default: bool = row.try_get_by_index(4)?;
            let into = match what.as_str() {
                "relationship" => {
                    if is_default {
                        catalog.default_relationship = Some(id.clone());
                    }
                    &mut catalog.relationships
                }
                s if s == <customer_source::Entity as resource::Resource>::RESOURCE => {
                    &mut catalog.sources
                }
                _ => &mut catalog.groups,
            };
            into.insert(id, named);
        }
        Ok(catalog)
    }

    /// The create's checks, in the order a lone create runs them; returns
    /// the relationship it starts in.
    fn check(&self, create: &Create) -> AppResult<String> {
        let input = &create.input;
        let relationship_id = match &input.relationship_id {
            Some(id) => {
                let named = self
                    .relationships
                    .get(id)
                    .ok_or_else(|| AppError::not_found("relationship", id.clone()))?;
                check_assignable_relationship(id, named.delete_time, &named.kind)?;
                id.clone()
            }
            None => self.default_relationship.clone().ok_or_else(|| {
                AppError::Internal(format!(
                    "tenant {} has no default relationship",
                    create.ctx.tenant.as_str()
                ))
            })?,
        };
        if let Some(id) = &input.profile.source_id {
            let source = self
                .sources
                .get(id)
                .ok_or_else(|| AppError::not_found("source", id.clone()))?;
            check_source_assignable(id, source.delete_time)?;
        }
        for id in &input.group_ids {
            let group = self
                .groups
                .get(id)
                .ok_or_else(|| AppError::not_found("group", id.clone()))?;
            check_group_assignable(id, group.delete_time)?;
        }
        Ok(relationship_id)
    }
}

/// The part of the catalog statement reading the rows `ids` of `E` (a
/// source or group table): what, id, delete time, and the relationship-only
/// columns empty. `None` when no id is asked for.
fn named_part<E: resource::Resource>(
    tenant: &str,
    ids: HashSet<String>,
) -> Option<sea_orm::sea_query::SelectStatement> {
    (!ids.is_empty()).then(|| {
        Query::select()
            .expr(Expr::val(E::RESOURCE))
            .columns([E::id_col(), E::delete_time_col()])
            .expr(Expr::val(""))
            .expr(Expr::val(false))
            .from(E::default())
            .and_where(Expr::col(E::tenant_col()).eq(tenant))
            .and_where(Expr::col(E::id_col()).is_in(ids))
            .to_owned()
    })
}
