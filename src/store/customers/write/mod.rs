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
    records::{find_record, set_profile},
};
use crate::{
    domain::{change::Origin, customer::Profile, relationship::Kind},
    entity::{customer, relationship, relationship_change},
    error::AppResult,
    store::{WriteTx, db::replicas, resource::Revisable},
};
use counters::Deltas;
use log::Entry;

/// Customers per `INSERT` (21 values each), below SQLite's limit of
/// 32,766 bound values.
const CUSTOMERS_PER_STATEMENT: usize = 1_000;

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
    /// The customer joins the group, unless it is a member already.
    Join {
        group_id: &'a str,
        customer: &'a customer::Model,
    },
    /// The customer leaves the group, if it is a member.
    Leave {
        group_id: &'a str,
        customer_id: &'a str,
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
    /// Customers that joined a group they were not in.
    pub joined: u64,
    /// Memberships removed.
    pub left: u64,
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
pub async fn apply(
    tx: &WriteTx,
    tenant: &str,
    now: i64,
    changes: &[Change<'_>],
    read_back: Option<&str>,
) -> AppResult<Applied> {
    let mut work = Work::default();
    work.create(tx, tenant, changes).await?;
    for change in changes {
        match *change {
            Change::Edit { row, profile } => work.edit(tx, row, profile, now).await?,
            Change::Contact { row, time } => work.contact(tx, tenant, row, time, now).await?,
            _ => {}
        }
    }
    for change in changes {
        match *change {
            Change::Delete(row) => work.set_deleted(tx, tenant, row, true, now).await?,
            Change::Restore(row) => work.set_deleted(tx, tenant, row, false, now).await?,
            _ => {}
        }
    }
    work.join(tx, tenant, changes).await?;
    work.leave(tx, tenant, changes).await?;
    work.relocate(tx, tenant, changes, now).await?;

    // Delivered at commit whenever they are sent, so sent before the locks.
    replicas::announce(
        tx,
        &work.changed,
        (!work.entries.is_empty()).then_some(tenant),
    )
    .await?;
    tx.note(std::mem::replace(&mut work.changed, Touches::Nothing));
    let record = match read_back {
        Some(id) => Some(find_record(tx, tenant, id).await?),
        None => None,
    };
    // The counters before the sequence, and both as late as can be.
    work.deltas.write(tx, tenant).await?;
    let logged = log::append(tx, tenant, work.entries).await?;
    Ok(Applied {
        logged,
        joined: work.joined,
        left: work.left,
        record,
    })
}

/// What [`apply`] has done so far.
#[derive(Default)]
struct Work<'a> {
    deltas: Deltas,
    entries: Vec<Entry<'a>>,
    changed: Touches,
    joined: u64,
    left: u64,
}

impl<'a> Work<'a> {
    fn changed(&mut self, ids: impl IntoIterator<Item = String>) {
        self.changed
            .add(Touches::Customers(ids.into_iter().collect()));
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
            self.deltas.count(&row.relationship_id, groups, 1);
            let mut group_ids = groups.to_vec();
            group_ids.sort_unstable();
            self.entries.push(Entry {
                customer_id: &row.id,
                from: "",
                to: &row.relationship_id,
                owner: &row.owner_id,
                origin,
                time: row.create_time,
                group_ids,
            });
        }
        Ok(())
    }

    async fn edit(
        &mut self,
        tx: &WriteTx,
        row: &customer::Model,
        profile: &Profile,
        now: i64,
    ) -> AppResult<()> {
        let mut active: customer::ActiveModel = row.clone().into();
        set_profile(&mut active, profile);
        active.bump(row.revision + 1, now);
        active.update(tx).await?;
        if profile.owner_id != row.owner_id {
            copies::set_owner(tx, &row.tenant_id, &row.id, &profile.owner_id).await?;
        }
        self.changed([row.id.clone()]);
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
        let groups = copies::set_active(tx, tenant, &row.id, !delete).await?;
        self.deltas
            .count(&row.relationship_id, &groups, if delete { -1 } else { 1 });
        let mut active: customer::ActiveModel = row.clone().into();
        active.delete_time = Set(delete.then_some(now));
        active.bump(row.revision + 1, now);
        active.update(tx).await?;
        self.changed([row.id.clone()]);
        Ok(())
    }

    /// Adds customers to groups, each group's in one statement.
    async fn join(&mut self, tx: &WriteTx, tenant: &str, changes: &[Change<'a>]) -> AppResult<()> {
        let mut by_group: BTreeMap<&str, Vec<&customer::Model>> = BTreeMap::new();
        for change in changes {
            if let Change::Join { group_id, customer } = *change {
                by_group.entry(group_id).or_default().push(customer);
            }
        }
        for (group_id, customers) in by_group {
            let joined = copies::join(tx, tenant, group_id, &customers).await?;
            for c in &joined {
                if c.delete_time.is_none() {
                    self.deltas.count_in_group(group_id, &c.relationship_id, 1);
                }
            }
            self.joined += joined.len() as u64;
            self.changed(joined.iter().map(|c| c.id.clone()));
        }
        Ok(())
    }

    /// Removes customers from groups, each group's in one statement.
    async fn leave(&mut self, tx: &WriteTx, tenant: &str, changes: &[Change<'a>]) -> AppResult<()> {
        let mut by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for change in changes {
            if let Change::Leave {
                group_id,
                customer_id,
            } = *change
            {
                by_group
                    .entry(group_id)
                    .or_default()
                    .push(customer_id.to_owned());
            }
        }
        for (group_id, ids) in by_group {
            let removed = copies::leave(tx, tenant, group_id, &ids).await?;
            for m in removed.iter().filter(|m| m.customer_active) {
                self.deltas.count_in_group(group_id, &m.relationship_id, -1);
            }
            self.left += removed.len() as u64;
            self.changed(removed.into_iter().map(|m| m.customer_id));
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
            if m.active {
                self.deltas.count(&m.from, &group_ids, -1);
                self.deltas.count(&m.to, &group_ids, 1);
            }
            self.entries.push(Entry {
                customer_id: &m.customer_id,
                from: &m.from,
                to: &m.to,
                owner: &m.owner,
                origin,
                time: now,
                group_ids,
            });
            self.changed([m.customer_id.clone()]);
        }
        Ok(())
    }
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
        "relationship_change::Entity::insert",
        "relationship_change::ActiveModel",
        "change_counter::Entity::insert",
        "UPDATE customers",
        "INSERT INTO customers",
        "UPDATE group_members",
        "INSERT INTO group_members",
        "UPDATE relationship_members",
        "INSERT INTO relationship_changes",
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
