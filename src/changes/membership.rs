//! The membership log as the stream reads it: every customer joining or
//! leaving a group, manual and rule-driven (`membership_changes`, numbered
//! through `membership_counters`), streamed by WatchGroupMembershipChanges.

use std::collections::HashSet;

use super::log::{Log, Tables};
use crate::entity::{membership_change, membership_counter};

/// The membership log (WatchGroupMembershipChanges).
#[derive(Debug, Clone, Copy, Default)]
pub struct MembershipLog;

impl Log for MembershipLog {
    type Rows = membership_change::Entity;
    type Counters = membership_counter::Entity;
    type Entry = membership_change::Model;
    type Change = membership_change::Model;
    type Filter = Filter;

    const NAME: &'static str = "membership changes";
    const TABLES: Tables<Self::Rows, Self::Counters> = Tables {
        tenant: membership_change::Column::TenantId,
        sequence: membership_change::Column::Sequence,
        change_time: membership_change::Column::ChangeTime,
        counter_tenant: membership_counter::Column::TenantId,
        last_sequence: membership_counter::Column::LastSequence,
        trimmed_through: membership_counter::Column::TrimmedThrough,
    };

    fn sequence(entry: &membership_change::Model) -> i64 {
        entry.sequence
    }

    fn change(entry: &membership_change::Model) -> membership_change::Model {
        entry.clone()
    }

    fn matches(filter: &Filter, entry: &membership_change::Model) -> bool {
        filter.matches(entry)
    }
}

/// Which membership changes a watcher wants; an empty set does not
/// filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The change is of one of these groups.
    pub group_ids: HashSet<String>,
    /// The change is of one of these customers.
    pub customer_ids: HashSet<String>,
}

impl Filter {
    /// Whether `change` passes every filter given.
    pub fn matches(&self, change: &membership_change::Model) -> bool {
        let any = |set: &HashSet<String>, value: &String| set.is_empty() || set.contains(value);
        any(&self.group_ids, &change.group_id) && any(&self.customer_ids, &change.customer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(group: &str, customer: &str) -> membership_change::Model {
        membership_change::Model {
            tenant_id: "t".into(),
            sequence: 1,
            group_id: group.into(),
            customer_id: customer.into(),
            joined: true,
            cause: "MANUAL".into(),
            actor_id: String::new(),
            change_time: 0,
        }
    }

    fn set(values: &[&str]) -> HashSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn empty_sets_do_not_filter_and_given_ones_must_all_match() {
        let everything = Filter::default();
        assert!(everything.matches(&change("g", "c")));
        let group = Filter {
            group_ids: set(&["g", "h"]),
            ..Filter::default()
        };
        assert!(group.matches(&change("h", "c")));
        assert!(!group.matches(&change("x", "c")));
        let both = Filter {
            group_ids: set(&["g"]),
            customer_ids: set(&["c"]),
        };
        assert!(both.matches(&change("g", "c")));
        assert!(!both.matches(&change("g", "d")));
        assert!(!both.matches(&change("x", "c")));
    }
}
