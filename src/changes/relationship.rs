//! The relationship-change log as the stream reads it: every change of a
//! customer's relationship (`relationship_changes`, numbered through
//! `change_counters`), with the customer's owner and groups at the time
//! of the change for the filters. The same rows are the customers'
//! relationship history, so retention only moves their replay floor.

use std::collections::HashSet;

use super::log::{Log, Tables};
use crate::{
    domain::change::split_group_ids,
    entity::{change_counter, relationship_change},
};

/// The relationship-change log (WatchRelationshipChanges).
#[derive(Debug, Clone, Copy, Default)]
pub struct RelationshipLog;

impl Log for RelationshipLog {
    type Rows = relationship_change::Entity;
    type Counters = change_counter::Entity;
    type Entry = Entry;
    type Change = relationship_change::Model;
    type Filter = Filter;

    const NAME: &'static str = "relationship changes";
    const TABLES: Tables<Self::Rows, Self::Counters> = Tables {
        tenant: relationship_change::Column::TenantId,
        sequence: relationship_change::Column::Sequence,
        change_time: relationship_change::Column::ChangeTime,
        counter_tenant: change_counter::Column::TenantId,
        last_sequence: change_counter::Column::LastSequence,
        trimmed_through: change_counter::Column::TrimmedThrough,
    };

    fn sequence(entry: &Entry) -> i64 {
        entry.change.sequence
    }

    fn change(entry: &Entry) -> relationship_change::Model {
        entry.change.clone()
    }

    fn matches(filter: &Filter, entry: &Entry) -> bool {
        filter.matches(entry)
    }
}

/// One change, with what the stream's filters look at: the customer's
/// owner and groups when the change was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The change.
    pub change: relationship_change::Model,
    /// The customer's owner.
    pub owner_id: String,
    /// The customer's groups.
    pub group_ids: Vec<String>,
}

impl From<relationship_change::Model> for Entry {
    fn from(mut change: relationship_change::Model) -> Self {
        let owner_id = std::mem::take(&mut change.owner_id);
        let group_ids = split_group_ids(Some(std::mem::take(&mut change.group_ids)));
        Self {
            change,
            owner_id,
            group_ids,
        }
    }
}

/// Which relationship changes a watcher wants; an empty set does not
/// filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The change's old or new relationship is one of these.
    pub relationship_ids: HashSet<String>,
    /// The customer is in one of these groups.
    pub group_ids: HashSet<String>,
    /// The customer's owner is one of these.
    pub owner_ids: HashSet<String>,
    /// The customer is one of these.
    pub customer_ids: HashSet<String>,
}

impl Filter {
    /// Whether `entry` passes every filter given.
    pub fn matches(&self, entry: &Entry) -> bool {
        let change = &entry.change;
        let any = |set: &HashSet<String>, mut values: std::slice::Iter<'_, String>| {
            set.is_empty() || values.any(|v| set.contains(v))
        };
        any(
            &self.relationship_ids,
            [
                change.old_relationship_id.clone(),
                change.new_relationship_id.clone(),
            ]
            .iter(),
        ) && any(&self.group_ids, entry.group_ids.iter())
            && any(
                &self.owner_ids,
                std::slice::from_ref(&entry.owner_id).iter(),
            )
            && any(
                &self.customer_ids,
                std::slice::from_ref(&change.customer_id).iter(),
            )
    }
}
