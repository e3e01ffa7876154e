//! The one write path of customers. Every change to a stored customer —
//! created, edited, contacted, deleted, restored, moved to another
//! relationship, added to or removed from a group — is applied by
//! [`apply`], inside the writer's transaction, and nothing else writes
//! what other reads trust to follow the customers:
//!
//! - the customer rows themselves;
//! - the copies in `relationship_members` and `group_members` ([`copies`]);
//! - the summary-bar counters ([`counters`]), derived in one place from
//!   each customer's counted state before and after the change;
//! - the relationship-change log and the tenant's sequence ([`log`]);
//! - group memberships: pins on rule groups, the tenant's group rules
//!   followed on every customer the write touches, and the membership log
//!   with its own sequence, derived from each touched customer's
//!   memberships before and after the write ([`membership`]);
//! - which customer records changed: noted on the [`WriteTx`] (this
//!   replica's record cache drops them when the write ends) and announced
//!   to the other replicas, delivered at commit. Callers name nothing.
//!
//! All of it commits or rolls back with the caller's transaction, so an
//! acknowledged change is never lost and a rolled-back one never seen. A
//! new kind of write, or a rule that follows customers, hooks in here.

mod copies;
mod counters;
mod log;
mod membership;
mod owner_tallies;

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    CustomerRecord,
    cache::Touches,
    group_rules::{self, RuleSet},
    records::{find_record, set_profile},
};
use crate::{
    domain::{
        change::{Cause, Origin},
        customer::Profile,
        filter::Reads,
        membership::MembershipCause,
        relationship::Kind,
    },
    entity::{customer, customer_group, relationship, relationship_change},
    error::AppResult,
    store::{WriteTx, db::replicas, resource::Revisable},
};
use counters::Deltas;
use log::{Entry, MembershipEntry};
use membership::{Pair, ToFollow};

/// Customers per `INSERT` (21 values each), below SQLite's limit of
/// 32,766 bound values.
const CUSTOMERS_PER_STATEMENT: usize = 1_000;

/// Edited customers per statement (25 values each).
const EDITS_PER_STATEMENT: usize = 1_000;

/// One customer's move to another relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The customer.
    pub customer_id: String,
    /// The relationship it holds.
    pub from: String,
    /// The relationship it moves to (not `from`).
    pub to: String,
    /// Whether the customer is active (deleted customers are not counted).
    pub active: bool,
    /// The customer's owner (the log keeps it for the stream's filters).
    pub owner: String,
}

/// One change to a customer. [`apply`] applies a list of them kind by
/// kind, in the order the variants are declared here.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// A new customer: its row as it is to be stored, its groups, and who
    /// created it why (logged as its first relationship change).
    Create {
        row: &'a customer::Model,
        groups: &'a [String],
        origin: &'a Origin,
    },
    /// New profile fields for a customer (its row as locked).
    Edit {
        row: &'a customer::Model,
        profile: &'a Profile,
    },
    /// A contact at `time`, later than the customer's last one (its row as
    /// locked): its activity time moves to `time`.
    Contact { row: &'a customer::Model, time: i64 },
    /// A soft delete (the row as locked).
    Delete(&'a customer::Model),
    /// A restore (the row as locked).
    Restore(&'a customer::Model),
    /// The customer joins the group, unless it is a member already; on a
    /// rule group it is pinned in.
    Join {
        group_id: &'a str,
        customer: &'a customer::Model,
        cause: MembershipCause,
    },
    /// The customer leaves the group, if it is a member; on a rule group it
    /// is pinned out.
    Leave {
        group_id: &'a str,
        customer_id: &'a str,
        cause: MembershipCause,
    },
    /// The customer's pins on a rule group go; the rule decides.
    Unpin {
        group_id: &'a str,
        customer_id: &'a str,
    },
    /// The rule group's rule is evaluated on the customer (a changed rule,
    /// or a time-based one as time passes), its moves logged with `cause`.
    Evaluate {
        group_id: &'a str,
        customer_id: &'a str,
        cause: MembershipCause,
    },
    /// A move to another relationship, and who made it why.
    Move {
        change: &'a Move,
        origin: &'a Origin,
    },
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The log entries written, in sequence order.
    pub logged: Vec<relationship_change::Model>,
    /// Customers that joined a group they had no row in (a manual member,
    /// or one pinned in).
    pub joined: u64,
    /// Rows removed from a group by hand (removed, or pinned out).
    pub left: u64,
    /// The customers whose pins were dropped.
    pub unpinned: u64,
    /// When memberships were followed: every group (deleted ones included)
    /// each touched or created active customer is a member of after the
    /// changes, sorted.
    pub memberships: BTreeMap<String, Vec<String>>,
    /// Membership changes logged, by group: (joined, left).
    pub membership_moves: HashMap<String, (u64, u64)>,
    /// The record read back, when one was asked for.
    pub record: Option<CustomerRecord>,
}

/// Applies `changes` to customers of `tenant` at `now`; reads back the
/// record of customer `read_back`, when given, as the changes left it.
///
/// The record is read after the rows are written and before the counters
/// and the sequence are: those rows' locks are held from there to the
/// commit and every writer of the tenant waits for them (on PostgreSQL;
/// SQLite has one writer anyway), so the less done after taking them, the
/// more writes a tenant takes per second.
/// `actor` made the changes (`x-actor-id`; empty for the system): the
/// membership log says so.
pub async fn apply(
    tx: &WriteTx,
    tenant: &str,
    now: i64,
    actor: &str,
    changes: &[Change<'_>],
    read_back: Option<&str>,
) -> AppResult<Applied> {
    // The rules loaded are the rules stored when this write commits.
    group_rules::hold_rules(tx, tenant).await?;
    let rules = RuleSet::load(tx, tenant, now).await?;
    // Memberships can change only where a change names groups, or changes
    // what some rule reads.
    let rules_read = rules.reads();
    let mut work = Work {
        tracks_memberships: changes.iter().any(|c| match c {
            Change::Create { groups, .. } => !groups.is_empty() || !rules.is_empty(),
            Change::Edit { .. } => rules_read.meets(Reads::PROFILE.with(Reads::UPDATE_TIME)),
            Change::Contact { .. } => rules_read.meets(Reads::CONTACT.with(Reads::UPDATE_TIME)),
            Change::Move { .. } => rules_read.meets(Reads::RELATIONSHIP.with(Reads::UPDATE_TIME)),
            Change::Delete(_)
            | Change::Restore(_)
            | Change::Join { .. }
            | Change::Leave { .. }
            | Change::Unpin { .. }
            | Change::Evaluate { .. } => true,
        }),
        ..Work::default()
    };
    let touched = touched_customers(changes);
    // Only a contact changes nothing the counters count (unless a rule
    // follows it).
    let tallied =
        work.tracks_memberships || changes.iter().any(|c| !matches!(c, Change::Contact { .. }));
    let before = if tallied {
        membership::members(tx, tenant, &touched).await?
    } else {
        Default::default()
    };
    let standing_before = if tallied {
        let mut groups = counters::groups_by_customer(&before);
        counters::standings(tx, tenant, &touched, &mut groups).await?
    } else {
        Default::default()
    };
    work.create(tx, tenant, changes).await?;
    work.edit(tx, changes, now).await?;
    for change in changes {
        if let Change::Contact { row, time } = *change {
            work.contact(tx, tenant, row, time, now).await?;
        }
    }
    for change in changes {
        match *change {
            Change::Delete(row) => work.set_deleted(tx, tenant, row, true, now).await?,
            Change::Restore(row) => work.set_deleted(tx, tenant, row, false, now).await?,
            _ => {}
        }
    }
    work.join(tx, tenant, &rules, changes).await?;
    work.leave(tx, tenant, &rules, changes, now).await?;
    work.unpin(tx, tenant, &rules, changes).await?;
    work.relocate(tx, tenant, changes, now).await?;
    let mut membership_entries = Vec::new();
    let mut memberships: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if work.tracks_memberships {
        for change in changes {
            if let Change::Evaluate {
                group_id,
                customer_id,
                cause,
            } = *change
            {
                work.settle(group_id, customer_id, cause);
            }
        }
        let follow = std::mem::take(&mut work.follow);
        let followed = membership::follow_rules(tx, tenant, &rules, follow).await?;
        work.changed(followed.changed);
        // New customers' memberships are known; only the others are read.
        let mut after = membership::members(tx, tenant, &touched).await?;
        for (customer, groups) in followed.created {
            after.extend(groups.into_iter().map(|g| (g, customer.clone())));
        }
        membership_entries = work.membership_entries(&before, &after);
        if tallied {
            work.tally(tx, tenant, changes, &touched, &after, &standing_before)
                .await?;
        }
        for (group, customer) in after {
            memberships.entry(customer).or_default().push(group);
        }
        // A logged relationship change names the groups the write left
        // the customer in, those its rules took it into (or out of) too.
        for entry in &mut work.entries {
            entry.group_ids = memberships
                .get(entry.customer_id)
                .cloned()
                .unwrap_or_default();
        }
    } else if tallied {
        // No membership changed: the customers' groups are as before.
        work.tally(tx, tenant, changes, &touched, &before, &standing_before)
            .await?;
    }

    // Delivered at commit whenever they are sent, so sent before the locks.
    replicas::announce(
        tx,
        &work.changed,
        // Either log grew: the other replicas' feeds read now.
        (!work.entries.is_empty() || !membership_entries.is_empty()).then_some(tenant),
    )
    .await?;
    tx.note(std::mem::replace(&mut work.changed, Touches::Nothing));
    let record = match read_back {
        Some(id) => Some(find_record(tx, tenant, id).await?),
        None => None,
    };
    // The counters before the sequences, and all as late as can be.
    work.deltas.write(tx, tenant).await?;
    let logged = log::append(tx, tenant, work.entries, &work.revenue_before).await?;
    let mut membership_moves: HashMap<String, (u64, u64)> = HashMap::new();
    for entry in &membership_entries {
        let moves = membership_moves.entry(entry.group_id.clone()).or_default();
        if entry.joined {
            moves.0 += 1;
        } else {
            moves.1 += 1;
        }
    }
    log::append_memberships(tx, tenant, actor, now, membership_entries).await?;
    Ok(Applied {
        logged,
        joined: work.joined,
        left: work.left,
        unpinned: work.unpinned,
        memberships,
        membership_moves,
        record,
    })
}

/// Whether group `group_id` (deleted or not) has a rule.
async fn has_rule(tx: &WriteTx, tenant: &str, group_id: &str) -> AppResult<bool> {
    let rule: Option<String> = customer_group::Entity::find()
        .filter(customer_group::Column::TenantId.eq(tenant))
        .filter(customer_group::Column::Id.eq(group_id))
        .select_only()
        .column(customer_group::Column::Rule)
        .into_tuple()
        .one(tx)
        .await?;
    Ok(rule.is_some_and(|r| !r.is_empty()))
}

/// The customers that `changes` touch and that exist already (not those
/// created), in order, once each.
fn touched_customers(changes: &[Change<'_>]) -> Vec<String> {
    let mut seen = HashSet::new();
    changes
        .iter()
        .filter_map(|c| match *c {
            Change::Create { .. } => None,
            Change::Edit { row, .. } | Change::Contact { row, .. } => Some(row.id.as_str()),
            Change::Delete(row) | Change::Restore(row) => Some(row.id.as_str()),
            Change::Join { customer, .. } => Some(customer.id.as_str()),
            Change::Leave { customer_id, .. }
            | Change::Unpin { customer_id, .. }
            | Change::Evaluate { customer_id, .. } => Some(customer_id),
            Change::Move { change, .. } => Some(change.customer_id.as_str()),
        })
        .filter(|id| seen.insert(*id))
        .map(str::to_owned)
        .collect()
}

/// What [`apply`] has done so far.
#[derive(Default)]
struct Work<'a> {
    deltas: Deltas,
    entries: Vec<Entry<'a>>,
    changed: Touches,
    joined: u64,
    left: u64,
    unpinned: u64,
    /// Whether memberships may change (and are to be logged).
    tracks_memberships: bool,
    /// What the group rules are to look at.
    follow: ToFollow,
    /// Customers created, and who created each.
    created: Vec<String>,
    creators: HashMap<String, String>,
    /// Why a membership changed, where a change says so.
    causes: HashMap<Pair, MembershipCause>,
    /// Why every membership of a customer changed (deleted, restored).
    customer_causes: HashMap<String, MembershipCause>,
    /// The cause of the moves nothing else explains: the rules'.
    rule_cause: Option<MembershipCause>,
    /// The revenue before the write of each customer whose revenue it
    /// changed.
    revenue_before: HashMap<String, i64>,
}

impl<'a> Work<'a> {
    fn changed(&mut self, ids: impl IntoIterator<Item = String>) {
        self.changed
            .add(Touches::Customers(ids.into_iter().collect()));
    }

    /// Notes that the write changed `reads` of customer `id`.
    fn touch(&mut self, id: &str, reads: Reads) {
        if self.tracks_memberships {
            self.follow.touch(id, reads);
        }
    }

    /// Notes that customer `id`'s membership of rule group `group_id` is
    /// to be settled by its rule, for `cause`.
    fn settle(&mut self, group_id: &str, id: &str, cause: MembershipCause) {
        self.follow.settle(group_id, id);
        self.causes
            .insert((group_id.to_owned(), id.to_owned()), cause);
        if matches!(cause, MembershipCause::RuleChanged | MembershipCause::Sweep) {
            self.rule_cause = Some(cause);
        }
    }

    /// The membership log's entries: each (group, customer) membership
    /// that `before` and `after` disagree on, customer by customer.
    fn membership_entries(
        &self,
        before: &std::collections::BTreeSet<Pair>,
        after: &std::collections::BTreeSet<Pair>,
    ) -> Vec<MembershipEntry> {
        let mut moves: Vec<(&Pair, bool)> = after
            .difference(before)
            .map(|p| (p, true))
            .chain(before.difference(after).map(|p| (p, false)))
            .collect();
        moves.sort_by(|(a, _), (b, _)| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        moves
            .into_iter()
            .map(|(pair, joined)| MembershipEntry {
                group_id: pair.0.clone(),
                customer_id: pair.1.clone(),
                joined,
                cause: self
                    .causes
                    .get(pair)
                    .or_else(|| self.customer_causes.get(&pair.1))
                    .copied()
                    .unwrap_or(self.rule_cause.unwrap_or(MembershipCause::Rule)),
                actor: self.creators.get(&pair.1).cloned(),
            })
            .collect()
    }

    /// Counts the change of every counter: the touched customers'
    /// standings before (`before`) and now, and the created customers';
    /// `memberships` holds every membership of both after the write.
    async fn tally(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        changes: &[Change<'_>],
        touched: &[String],
        memberships: &std::collections::BTreeSet<Pair>,
        before: &HashMap<String, counters::Standing>,
    ) -> AppResult<()> {
        for standing in before.values() {
            self.deltas.tally(standing, -1);
        }
        let mut by_customer = counters::groups_by_customer(memberships);
        for standing in counters::standings(tx, tenant, touched, &mut by_customer)
            .await?
            .values()
        {
            self.deltas.tally(standing, 1);
        }
        for change in changes {
            if let Change::Create { row, groups, .. } = *change {
                let groups = if self.tracks_memberships {
                    by_customer.remove(row.id.as_str()).unwrap_or_default()
                } else {
                    groups.to_vec()
                };
                if let Some(standing) = counters::Standing::of(row, groups) {
                    self.deltas.tally(&standing, 1);
                }
            }
        }
        Ok(())
    }

    /// Inserts the new customers, their copies and memberships. Nobody
    /// can have read a customer not yet created: no record changes.
    async fn create(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        changes: &[Change<'a>],
    ) -> AppResult<()> {
        let created: Vec<(&'a customer::Model, &'a [String], &'a Origin)> = changes
            .iter()
            .filter_map(|c| match *c {
                Change::Create {
                    row,
                    groups,
                    origin,
                } => Some((row, groups, origin)),
                _ => None,
            })
            .collect();
        if created.is_empty() {
            return Ok(());
        }
        for chunk in created.chunks(CUSTOMERS_PER_STATEMENT) {
            customer::Entity::insert_many(
                chunk
                    .iter()
                    .map(|(row, _, _)| customer::ActiveModel::from((*row).clone())),
            )
            .exec_without_returning(tx)
            .await?;
        }
        let rows: Vec<(&customer::Model, &[String])> = created
            .iter()
            .map(|(row, groups, _)| (*row, *groups))
            .collect();
        copies::insert_created(tx, tenant, &rows).await?;
        for (row, groups, origin) in created {
            self.created.push(row.id.clone());
            if self.tracks_memberships {
                let mut group_ids = groups.to_vec();
                group_ids.sort_unstable();
                let record = CustomerRecord {
                    row: (*row).clone(),
                    group_ids,
                };
                self.follow.created.insert(row.id.clone(), record);
            }
            self.creators.insert(row.id.clone(), origin.actor.clone());
            self.touch(&row.id, Reads::ALL);
            let cause = if origin.cause == Cause::Import {
                MembershipCause::Import
            } else {
                MembershipCause::CustomerCreated
            };
            for group in groups {
                self.causes.insert((group.clone(), row.id.clone()), cause);
            }
            let mut group_ids = groups.to_vec();
            group_ids.sort_unstable();
            self.entries.push(Entry {
                customer_id: &row.id,
                from: "",
                to: &row.relationship_id,
                owner: &row.owner_id,
                source: Some(row.source_id.as_deref().unwrap_or_default()),
                origin,
                time: row.create_time,
                group_ids,
            });
        }
        Ok(())
    }

    /// Writes the changes' new profiles: one customer with an UPDATE, many
    /// (an import's batch) with one statement per few hundred, an
    /// `INSERT … ON CONFLICT (id) DO UPDATE` of the profile columns (every
    /// row exists and is locked, so each is an update).
    async fn edit(&mut self, tx: &WriteTx, changes: &[Change<'_>], now: i64) -> AppResult<()> {
        let edits: Vec<(&customer::Model, &Profile)> = changes
            .iter()
            .filter_map(|c| match *c {
                Change::Edit { row, profile } => Some((row, profile)),
                _ => None,
            })
            .collect();
        let mut updated = Vec::with_capacity(edits.len());
        for &(row, profile) in &edits {
            let mut active: customer::ActiveModel = row.clone().into();
            set_profile(&mut active, profile);
            active.bump(row.revision + 1, now);
            updated.push(active);
        }
        if updated.len() == 1 {
            updated.remove(0).update(tx).await?;
        } else {
            use customer::Column as C;
            let profile_columns = [
                C::Name,
                C::SortKey,
                C::SearchText,
                C::Phone,
                C::Email,
                C::OwnerId,
                C::SourceId,
                C::Province,
                C::Company,
                C::NameFolded,
                C::CompanyFolded,
                C::ProvinceFolded,
                C::AttributesFolded,
                C::Revenue,
                C::Attributes,
                C::ProfileCompletion,
                C::Revision,
                C::UpdateTime,
            ];
            while !updated.is_empty() {
                let chunk: Vec<_> = updated
                    .drain(..updated.len().min(EDITS_PER_STATEMENT))
                    .collect();
                let on_id = sea_orm::sea_query::OnConflict::column(C::Id)
                    .update_columns(profile_columns)
                    .to_owned();
                customer::Entity::insert_many(chunk)
                    .on_conflict(on_id)
                    .exec_without_returning(tx)
                    .await?;
            }
        }
        for (row, profile) in edits {
            if profile.revenue != row.revenue {
                self.revenue_before
                    .entry(row.id.clone())
                    .or_insert(row.revenue);
            }
            if profile.owner_id != row.owner_id {
                copies::set_owner(tx, &row.tenant_id, &row.id, &profile.owner_id).await?;
            }
            self.touch(&row.id, Reads::PROFILE.with(Reads::UPDATE_TIME));
            self.changed([row.id.clone()]);
        }
        Ok(())
    }

    async fn contact(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        row: &customer::Model,
        time: i64,
        now: i64,
    ) -> AppResult<()> {
        let mut active: customer::ActiveModel = row.clone().into();
        active.last_contact_time = Set(Some(time));
        active.activity_time = Set(time);
        active.bump(row.revision + 1, now);
        active.update(tx).await?;
        copies::set_activity(tx, tenant, &row.id, time).await?;
        self.touch(&row.id, Reads::CONTACT.with(Reads::UPDATE_TIME));
        self.changed([row.id.clone()]);
        Ok(())
    }

    async fn set_deleted(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        row: &customer::Model,
        delete: bool,
        now: i64,
    ) -> AppResult<()> {
        copies::set_active(tx, tenant, &row.id, !delete).await?;
        let mut active: customer::ActiveModel = row.clone().into();
        active.delete_time = Set(delete.then_some(now));
        active.bump(row.revision + 1, now);
        active.update(tx).await?;
        if delete {
            self.customer_causes
                .insert(row.id.clone(), MembershipCause::CustomerDeleted);
        } else {
            self.customer_causes
                .insert(row.id.clone(), MembershipCause::CustomerRestored);
            self.touch(&row.id, Reads::ALL);
        }
        self.changed([row.id.clone()]);
        Ok(())
    }

    /// What `pick` takes from `changes` — (group, item, customer id, the
    /// cause it gives the membership change) — by group, with the causes
    /// noted.
    fn by_group<T>(
        &mut self,
        changes: &[Change<'a>],
        pick: impl Fn(&Change<'a>) -> Option<(&'a str, T, &'a str, Option<MembershipCause>)>,
    ) -> BTreeMap<&'a str, Vec<T>> {
        let mut by_group: BTreeMap<&str, Vec<T>> = BTreeMap::new();
        for (group_id, item, customer_id, cause) in changes.iter().filter_map(pick) {
            by_group.entry(group_id).or_default().push(item);
            if let Some(cause) = cause {
                self.causes
                    .insert((group_id.to_owned(), customer_id.to_owned()), cause);
            }
        }
        by_group
    }

    /// Adds customers to groups (pins them into rule groups), each
    /// group's in one statement.
    async fn join(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        rules: &RuleSet,
        changes: &[Change<'a>],
    ) -> AppResult<()> {
        let by_group = self.by_group(changes, |c| match *c {
            Change::Join {
                group_id,
                customer,
                cause,
            } => Some((group_id, customer, &customer.id, Some(cause))),
            _ => None,
        });
        for (group_id, customers) in by_group {
            if rules.get(group_id).is_some() {
                self.joined += membership::pin_in(tx, tenant, group_id, &customers).await?;
                for c in &customers {
                    self.follow.settle(group_id, &c.id);
                    self.touch(&c.id, Reads::GROUPS);
                }
                self.changed(customers.iter().map(|c| c.id.clone()));
                continue;
            }
            let joined = copies::join(tx, tenant, group_id, &customers).await?;
            for c in &joined {
                self.touch(&c.id, Reads::GROUPS);
            }
            self.joined += joined.len() as u64;
            self.changed(joined.iter().map(|c| c.id.clone()));
        }
        Ok(())
    }

    /// Removes customers from groups (pins them out of rule groups), each
    /// group's in one statement.
    async fn leave(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        rules: &RuleSet,
        changes: &[Change<'a>],
        now: i64,
    ) -> AppResult<()> {
        let by_group = self.by_group(changes, |c| match *c {
            Change::Leave {
                group_id,
                customer_id,
                cause,
            } => Some((group_id, customer_id.to_owned(), customer_id, Some(cause))),
            _ => None,
        });
        for (group_id, ids) in by_group {
            // A deleted rule group is not in `rules`, and still keeps pins.
            if rules.get(group_id).is_some() || has_rule(tx, tenant, group_id).await? {
                self.left += membership::pin_out(tx, tenant, group_id, &ids, now).await?;
                for id in &ids {
                    self.touch(id, Reads::GROUPS);
                }
                self.changed(ids);
                continue;
            }
            let removed = copies::leave(tx, tenant, group_id, &ids).await?;
            for m in &removed {
                self.touch(&m.customer_id, Reads::GROUPS);
            }
            self.left += removed.len() as u64;
            self.changed(removed.into_iter().map(|m| m.customer_id));
        }
        Ok(())
    }

    /// Drops customers' pins on rule groups; their rules decide.
    async fn unpin(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        rules: &RuleSet,
        changes: &[Change<'a>],
    ) -> AppResult<()> {
        let by_group = self.by_group(changes, |c| match *c {
            Change::Unpin {
                group_id,
                customer_id,
            } => Some((group_id, customer_id.to_owned(), customer_id, None)),
            _ => None,
        });
        for (group_id, ids) in by_group {
            if rules.get(group_id).is_none() {
                continue;
            }
            let cleared = membership::unpin(tx, tenant, group_id, &ids).await?;
            self.unpinned += cleared.len() as u64;
            for id in cleared {
                self.settle(group_id, &id, MembershipCause::Manual);
                self.touch(&id, Reads::GROUPS);
            }
        }
        Ok(())
    }

    /// Points the moved customers (their copies with them) at their new
    /// relationship, customers of one target a statement at a time.
    async fn relocate(
        &mut self,
        tx: &WriteTx,
        tenant: &str,
        changes: &[Change<'a>],
        now: i64,
    ) -> AppResult<()> {
        let moves: Vec<(&'a Move, &'a Origin)> = changes
            .iter()
            .filter_map(|c| match *c {
                Change::Move { change, origin } => Some((change, origin)),
                _ => None,
            })
            .collect();
        if moves.is_empty() {
            return Ok(());
        }
        let mut by_target: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (m, _) in &moves {
            by_target
                .entry(&m.to)
                .or_default()
                .push(m.customer_id.clone());
        }
        let automatic: HashSet<String> = relationship::Entity::find()
            .filter(relationship::Column::TenantId.eq(tenant))
            .filter(relationship::Column::Id.is_in(by_target.keys().copied()))
            .filter(relationship::Column::Kind.eq(Kind::AutomaticInactivity.as_str()))
            .select_only()
            .column(relationship::Column::Id)
            .into_tuple()
            .all(tx)
            .await?
            .into_iter()
            .collect();
        let mut memberships: HashMap<String, Vec<String>> = HashMap::new();
        for (to, ids) in by_target {
            for chunk in ids.chunks(copies::IDS_PER_STATEMENT) {
                customer::Entity::update_many()
                    .col_expr(customer::Column::RelationshipId, Expr::value(to))
                    .col_expr(
                        customer::Column::Revision,
                        Expr::col(customer::Column::Revision).add(1),
                    )
                    .col_expr(customer::Column::UpdateTime, Expr::value(now))
                    .filter(customer::Column::TenantId.eq(tenant))
                    .filter(customer::Column::Id.is_in(chunk.iter().cloned()))
                    .exec(tx)
                    .await?;
                let moved =
                    copies::set_relationship(tx, tenant, chunk, to, automatic.contains(to)).await?;
                for member in moved {
                    memberships
                        .entry(member.customer_id)
                        .or_default()
                        .push(member.group_id);
                }
            }
        }
        for (m, origin) in moves {
            // Deleted customers are not counted, nor logged with groups.
            let mut group_ids = if m.active {
                memberships.remove(&m.customer_id).unwrap_or_default()
            } else {
                Vec::new()
            };
            // The same order whichever statement found them (RETURNING
            // has none).
            group_ids.sort_unstable();
            self.entries.push(Entry {
                customer_id: &m.customer_id,
                from: &m.from,
                to: &m.to,
                owner: &m.owner,
                source: None,
                origin,
                time: now,
                group_ids,
            });
            self.touch(&m.customer_id, Reads::RELATIONSHIP.with(Reads::UPDATE_TIME));
            self.changed([m.customer_id.clone()]);
        }
        Ok(())
    }
}

/// Group `group_id`'s rule was cleared: its members stay, as manual
/// members, and its pins out go. Nobody's membership changes.
pub async fn rule_cleared(tx: &WriteTx, tenant: &str, group_id: &str) -> AppResult<()> {
    membership::make_manual(tx, tenant, group_id).await
}

/// Notes that the active group ids of possibly every customer of the
/// tenant changed (a group was deleted or restored, its subtree with it).
pub async fn groups_changed(tx: &WriteTx) -> AppResult<()> {
    replicas::announce(tx, &Touches::Everything, None).await?;
    tx.note(Touches::Everything);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// What only the write path may write: customer rows, their copies, the
    /// counters and the log. A statement like these anywhere else in `src/`
    /// is a second writer, which the record cache and the counters would
    /// not follow.
    const WRITES: &[&str] = &[
        "customer::Entity::insert",
        "customer::Entity::update",
        "customer::Entity::delete",
        ": customer::ActiveModel = ",
        "group_member::Entity::insert",
        "group_member::Entity::update",
        "group_member::Entity::delete",
        "group_member::ActiveModel",
        "relationship_member::Entity::insert",
        "relationship_member::Entity::update",
        "relationship_member::Entity::delete",
        "relationship_count::Entity::insert",
        "relationship_count::ActiveModel",
        "group_tally::Entity::insert",
        "group_tally::ActiveModel",
        "INSERT INTO group_tallies",
        "flow_tally::Entity::insert",
        "flow_tally::ActiveModel",
        "INSERT INTO flow_tallies",
        "stay_tally::Entity::insert",
        "stay_tally::ActiveModel",
        "INSERT INTO stay_tallies",
        "owner_count::Entity::insert",
        "owner_count::ActiveModel",
        "INSERT INTO owner_counts",
        "reception_tally::Entity::insert",
        "reception_tally::ActiveModel",
        "arrival_tally::Entity::insert",
        "arrival_tally::ActiveModel",
        "first_move::Entity::insert",
        "first_move::ActiveModel",
        "INSERT INTO reception_tallies",
        "INSERT INTO arrival_tallies",
        "INSERT INTO first_moves",
        "relationship_change::Entity::insert",
        "relationship_change::ActiveModel",
        "change_counter::Entity::insert",
        "UPDATE customers",
        "INSERT INTO customers",
        "UPDATE group_members",
        "INSERT INTO group_members",
        "UPDATE relationship_members",
        "INSERT INTO relationship_changes",
        "group_exclusion::Entity::insert",
        "group_exclusion::Entity::delete",
        "group_exclusion::ActiveModel",
        "membership_change::Entity::insert",
        "membership_change::ActiveModel",
        "INSERT INTO membership_changes",
    ];

    fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn nothing_outside_the_write_path_writes_customers_or_what_follows_them() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let allowed = [src.join("store/customers/write"), src.join("entity")];
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(files.len() > 50, "found the sources");
        let mut offences = Vec::new();
        for file in files
            .iter()
            .filter(|f| !allowed.iter().any(|a| f.starts_with(a)))
        {
            let text = std::fs::read_to_string(file).expect("read source");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || code.contains("EXPLAIN") {
                    continue;
                }
                for write in WRITES.iter().filter(|w| code.contains(**w)) {
                    offences.push(format!("{}:{}: {write}", file.display(), n + 1));
                }
            }
        }
        assert!(
            offences.is_empty(),
            "customer writes outside store::customers::write:\n{}",
            offences.join("\n")
        );
    }
}
