//! Group membership as the write path keeps it: pins on rule groups, the
//! rules followed on every customer a write touches, and the membership
//! log's entries, derived from the memberships before and after the write.
//!
//! A customer is a member of a group when it has a `group_members` row
//! there and is not deleted. On a rule group the row says why: `matched`
//! (the rule matches) and `pinned` (added by hand); a customer pinned out
//! has a `group_exclusions` row instead. The row exists exactly when the
//! customer is pinned, or matched and not pinned out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, OnConflict, Query, UnionType},
};

use super::copies;
use crate::{
    domain::filter::{Field, Reads, eval},
    entity::{customer, group_exclusion, group_member},
    error::AppResult,
    store::customers::{
        CustomerRecord, filter::FilterSubject, group_rules::RuleSet, records::find_records,
    },
};

/// (group id, customer id).
pub(super) type Pair = (String, String);

/// The memberships of `customers` (active customers only): (group,
/// customer) pairs.
pub(super) async fn members(
    tx: &impl ConnectionTrait,
    tenant: &str,
    customers: &[String],
) -> AppResult<BTreeSet<Pair>> {
    let mut found = BTreeSet::new();
    for chunk in customers.chunks(copies::IDS_PER_STATEMENT) {
        let rows: Vec<(String, String)> = group_member::Entity::find()
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .filter(group_member::Column::CustomerActive.eq(true))
            .select_only()
            .column(group_member::Column::GroupId)
            .column(group_member::Column::CustomerId)
            .into_tuple()
            .all(tx)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Pins `customers` into rule group `group_id`: their pins out go, their
/// rows become pinned (new rows are added, their `matched` left for the
/// rules to settle). Returns how many had no row (were not members).
pub(super) async fn pin_in(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    customers: &[&customer::Model],
) -> AppResult<u64> {
    let ids: Vec<String> = customers.iter().map(|c| c.id.clone()).collect();
    unexclude(tx, tenant, group_id, &ids).await?;
    for chunk in ids.chunks(copies::IDS_PER_STATEMENT) {
        group_member::Entity::update_many()
            .col_expr(group_member::Column::Pinned, Expr::value(true))
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .exec(tx)
            .await?;
    }
    let added = copies::join(tx, tenant, group_id, customers).await?;
    Ok(added.len() as u64)
}

/// Pins customers `ids` out of rule group `group_id`: their rows go and a
/// pin out is kept. Returns how many had a row.
pub(super) async fn pin_out(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    ids: &[String],
    now: i64,
) -> AppResult<u64> {
    let removed = copies::leave(tx, tenant, group_id, ids).await?;
    let unique: BTreeSet<&String> = ids.iter().collect();
    let rows: Vec<group_exclusion::ActiveModel> = unique
        .into_iter()
        .map(|id| group_exclusion::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            group_id: Set(group_id.to_owned()),
            customer_id: Set(id.clone()),
            create_time: Set(now),
        })
        .collect();
    for chunk in rows.chunks(copies::IDS_PER_STATEMENT) {
        group_exclusion::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    group_exclusion::Column::TenantId,
                    group_exclusion::Column::GroupId,
                    group_exclusion::Column::CustomerId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .try_insert()
            .exec_without_returning(tx)
            .await?;
    }
    Ok(removed.len() as u64)
}

/// Hands customers `ids` of rule group `group_id` back to its rule: pins
/// in and out are dropped (the rules then settle each one). Returns the
/// customers that had a pin.
pub(super) async fn unpin(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    ids: &[String],
) -> AppResult<BTreeSet<String>> {
    let mut cleared: BTreeSet<String> = unexclude(tx, tenant, group_id, ids).await?;
    for chunk in ids.chunks(copies::IDS_PER_STATEMENT) {
        let rows = group_member::Entity::update_many()
            .col_expr(group_member::Column::Pinned, Expr::value(false))
            .filter(group_member::Column::TenantId.eq(tenant))
            .filter(group_member::Column::GroupId.eq(group_id))
            .filter(group_member::Column::Pinned.eq(true))
            .filter(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .exec_with_returning(tx)
            .await?;
        cleared.extend(rows.into_iter().map(|m| m.customer_id));
    }
    Ok(cleared)
}

/// Drops the pins out of `ids`; returns those that had one.
async fn unexclude(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
    ids: &[String],
) -> AppResult<BTreeSet<String>> {
    let mut dropped = BTreeSet::new();
    for chunk in ids.chunks(copies::IDS_PER_STATEMENT) {
        let rows = group_exclusion::Entity::delete_many()
            .filter(group_exclusion::Column::TenantId.eq(tenant))
            .filter(group_exclusion::Column::GroupId.eq(group_id))
            .filter(group_exclusion::Column::CustomerId.is_in(chunk.iter().cloned()))
            .exec_with_returning(tx)
            .await?;
        dropped.extend(rows.into_iter().map(|r| r.customer_id));
    }
    Ok(dropped)
}

/// A group's rule cleared: its members stay, as manual members; its pins
/// out go.
pub(super) async fn make_manual(
    tx: &impl ConnectionTrait,
    tenant: &str,
    group_id: &str,
) -> AppResult<()> {
    group_member::Entity::update_many()
        .col_expr(group_member::Column::Pinned, Expr::value(true))
        .col_expr(group_member::Column::Matched, Expr::value(false))
        .filter(group_member::Column::TenantId.eq(tenant))
        .filter(group_member::Column::GroupId.eq(group_id))
        .exec(tx)
        .await?;
    group_exclusion::Entity::delete_many()
        .filter(group_exclusion::Column::TenantId.eq(tenant))
        .filter(group_exclusion::Column::GroupId.eq(group_id))
        .exec(tx)
        .await?;
    Ok(())
}

/// What the rules are to look at.
#[derive(Debug, Default)]
pub(super) struct ToFollow {
    /// Per customer, what the write changed.
    pub touched: HashMap<String, Reads>,
    /// Per rule group, customers whose membership of it is to be settled
    /// whatever changed (pins dropped or added, a rule's evaluation).
    pub settle: HashMap<String, BTreeSet<String>>,
    /// The records of the customers this write created, as created (their
    /// given groups pinned): nothing to read back.
    pub created: HashMap<String, CustomerRecord>,
}

impl ToFollow {
    /// Notes that customer `id`'s membership of rule group `group_id` is
    /// to be settled whatever changed.
    pub fn settle(&mut self, group_id: &str, id: &str) {
        self.settle
            .entry(group_id.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    /// Notes that the write changed `reads` of customer `id`.
    pub fn touch(&mut self, id: &str, reads: Reads) {
        let entry = self.touched.entry(id.to_owned()).or_default();
        *entry = entry.with(reads);
    }
}

/// The stored reasons of one membership.
#[derive(Debug, Clone, Copy)]
struct Reasons {
    matched: bool,
    pinned: bool,
}

/// What [`follow_rules`] did.
#[derive(Debug, Default)]
pub(super) struct Followed {
    /// The customers whose memberships changed.
    pub changed: Vec<String>,
    /// The groups of each customer the write created, as the rules left
    /// them (given ones and those whose rules took it in), sorted.
    pub created: HashMap<String, Vec<String>>,
}

/// A record with its groups as the rules settle them.
struct Subject<'a> {
    subject: FilterSubject<'a>,
    groups: HashSet<String>,
}

impl eval::Subject for Subject<'_> {
    fn text(&self, field: &Field) -> Option<&str> {
        self.subject.text(field)
    }
    fn integer(&self, field: &Field) -> i64 {
        self.subject.integer(field)
    }
    fn time(&self, field: &Field) -> Option<i64> {
        self.subject.time(field)
    }
    fn member_of(&self, id: &str) -> bool {
        self.groups.contains(id)
    }
    fn in_any_group(&self) -> bool {
        !self.groups.is_empty()
    }
}

/// Settles the memberships of the rule groups in `rules` that `follow`
/// names: each group in rule order, each customer whose change the rule
/// reads (or named outright), so a group that refers to another sees that
/// one settled first. Returns what the rules did.
pub(super) async fn follow_rules(
    tx: &impl ConnectionTrait,
    tenant: &str,
    rules: &RuleSet,
    mut follow: ToFollow,
) -> AppResult<Followed> {
    let reads = rules.reads();
    let mut ids: BTreeSet<String> = follow
        .touched
        .iter()
        .filter(|(_, r)| r.meets(reads))
        .map(|(id, _)| id.clone())
        .collect();
    for customers in follow.settle.values() {
        ids.extend(customers.iter().cloned());
    }
    if rules.is_empty() || ids.is_empty() {
        let created = follow
            .created
            .into_iter()
            .map(|(id, record)| (id, record.group_ids))
            .collect();
        return Ok(Followed {
            changed: Vec::new(),
            created,
        });
    }
    let stored: Vec<String> = ids
        .into_iter()
        .filter(|id| !follow.created.contains_key(id))
        .collect();
    let created_ids: Vec<String> = follow.created.keys().cloned().collect();
    let mut records: Vec<CustomerRecord> = find_records(tx, tenant, &stored).await?;
    let rule_ids: Vec<String> = rules.groups.iter().map(|g| g.id.clone()).collect();
    let (mut reasons, excluded) = stored_reasons(tx, tenant, &rule_ids, &stored).await?;
    // A new customer's only rows are its given groups', pinned.
    for (id, record) in std::mem::take(&mut follow.created) {
        for group in &record.group_ids {
            let pinned = Reasons {
                matched: false,
                pinned: true,
            };
            reasons.insert((group.clone(), id.clone()), pinned);
        }
        records.push(record);
    }
    let mut followed: BTreeMap<&str, Subject<'_>> = records
        .iter()
        .map(|r| {
            (
                r.row.id.as_str(),
                Subject {
                    subject: FilterSubject::new(r),
                    groups: r.group_ids.iter().cloned().collect(),
                },
            )
        })
        .collect();
    let rows: HashMap<&str, &customer::Model> = records
        .iter()
        .map(|r| (r.row.id.as_str(), &r.row))
        .collect();
    let mut changed = BTreeSet::new();
    for group in &rules.groups {
        let named = follow.settle.remove(&group.id).unwrap_or_default();
        let mut join: Vec<&customer::Model> = Vec::new();
        let mut leave: Vec<String> = Vec::new();
        let mut now_matched: Vec<String> = Vec::new();
        let mut no_longer_matched: Vec<String> = Vec::new();
        for (id, customer) in followed.iter_mut() {
            let touched = follow.touched.get(*id).copied().unwrap_or_default();
            if !named.contains(*id) && !touched.meets(group.reads) {
                continue;
            }
            let matched = eval::matches(&group.filter, customer, &rules.meaning);
            let key = (group.id.clone(), (*id).to_owned());
            let pinned_out = excluded.contains(&key);
            let moved = match reasons.get(&key).copied() {
                Some(r) if r.pinned || (matched && !pinned_out) => {
                    if r.matched != matched {
                        if matched {
                            now_matched.push((*id).to_owned());
                        } else {
                            no_longer_matched.push((*id).to_owned());
                        }
                    }
                    false
                }
                Some(_) => {
                    leave.push((*id).to_owned());
                    customer.groups.remove(&group.id);
                    reasons.remove(&key);
                    true
                }
                None if matched && !pinned_out => {
                    join.push(rows[*id]);
                    customer.groups.insert(group.id.clone());
                    true
                }
                None => false,
            };
            if moved {
                changed.insert((*id).to_owned());
                let entry = follow.touched.entry((*id).to_owned()).or_default();
                *entry = entry.with(Reads::GROUPS);
            }
        }
        copies::join_matched(tx, tenant, &group.id, &join).await?;
        copies::leave(tx, tenant, &group.id, &leave).await?;
        copies::set_matched(tx, tenant, &group.id, &now_matched, true).await?;
        copies::set_matched(tx, tenant, &group.id, &no_longer_matched, false).await?;
    }
    let created = created_ids
        .into_iter()
        .map(|id| {
            let mut groups: Vec<String> = followed
                .get(id.as_str())
                .map(|s| s.groups.iter().cloned().collect())
                .unwrap_or_default();
            groups.sort_unstable();
            (id, groups)
        })
        .collect();
    Ok(Followed {
        changed: changed.into_iter().collect(),
        created,
    })
}

/// The reasons of the memberships of `customers` in `groups`, and their
/// pins out, read together (one statement a chunk of customers).
async fn stored_reasons(
    tx: &impl ConnectionTrait,
    tenant: &str,
    groups: &[String],
    customers: &[String],
) -> AppResult<(HashMap<Pair, Reasons>, HashSet<Pair>)> {
    let mut reasons = HashMap::new();
    let mut excluded = HashSet::new();
    let backend = tx.get_database_backend();
    for chunk in customers.chunks(copies::IDS_PER_STATEMENT) {
        let rows = Query::select()
            .column(group_member::Column::GroupId)
            .column(group_member::Column::CustomerId)
            .column(group_member::Column::Matched)
            .column(group_member::Column::Pinned)
            .expr_as(Expr::value(false), "pinned_out")
            .from(group_member::Entity)
            .and_where(group_member::Column::TenantId.eq(tenant))
            .and_where(group_member::Column::GroupId.is_in(groups.iter().cloned()))
            .and_where(group_member::Column::CustomerId.is_in(chunk.iter().cloned()))
            .union(
                UnionType::All,
                Query::select()
                    .column(group_exclusion::Column::GroupId)
                    .column(group_exclusion::Column::CustomerId)
                    .expr(Expr::value(false))
                    .expr(Expr::value(false))
                    .expr(Expr::value(true))
                    .from(group_exclusion::Entity)
                    .and_where(group_exclusion::Column::TenantId.eq(tenant))
                    .and_where(group_exclusion::Column::GroupId.is_in(groups.iter().cloned()))
                    .and_where(group_exclusion::Column::CustomerId.is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .to_owned();
        for row in tx.query_all_raw(backend.build(&rows)).await? {
            let pair: Pair = (
                row.try_get("", "group_id")?,
                row.try_get("", "customer_id")?,
            );
            if row.try_get::<bool>("", "pinned_out")? {
                excluded.insert(pair);
            } else {
                let reason = Reasons {
                    matched: row.try_get("", "matched")?,
                    pinned: row.try_get("", "pinned")?,
                };
                reasons.insert(pair, reason);
            }
        }
    }
    Ok((reasons, excluded))
}
