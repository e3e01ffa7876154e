//! The record the log reports' tests keep of what they did: each
//! customer's owner, source and groups from the moment the test set them
//! (by the manual clock), and its relationship history read back with
//! ListRelationshipHistory.

use std::collections::{BTreeMap, BTreeSet};

use crm_classify::pb::{Customer, RelationshipChange, RelationshipChangeCause};

use crate::fixtures::{history, micros, now_micros};
use crate::helpers::TestApp;

/// A customer's owner, source and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub owner: String,
    /// Empty for none.
    pub source: String,
    pub groups: BTreeSet<String>,
}

impl Attrs {
    /// The attributes `customer` was created with.
    pub fn of(customer: &Customer) -> Self {
        Self {
            owner: customer.owner_id.clone(),
            source: customer.source_id.clone(),
            groups: customer.group_ids.iter().cloned().collect(),
        }
    }

    /// Whether these attributes pass the filters (empty: no filter).
    pub fn pass(&self, group: &str, source: &str, owner: &str) -> bool {
        (group.is_empty() || self.groups.contains(group))
            && (source.is_empty() || self.source == source)
            && (owner.is_empty() || self.owner == owner)
    }
}

/// Every customer's attributes over time.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Per customer, in the order made: (from this microsecond, attributes).
    timelines: BTreeMap<String, Vec<(i64, Attrs)>>,
}

impl Record {
    /// Notes that `id` has `attrs` from `time` on.
    pub fn set(&mut self, id: &str, time: i64, attrs: Attrs) {
        let timeline = self.timelines.entry(id.to_owned()).or_default();
        if let Some((last, _)) = timeline.last() {
            assert!(*last < time, "attribute changes are made at distinct times");
        }
        timeline.push((time, attrs));
    }

    /// Notes a change of `id`'s attributes made now by `edit`.
    pub fn edit(&mut self, app: &TestApp, id: &str, edit: impl FnOnce(&mut Attrs)) {
        let mut attrs = self.now(id).clone();
        edit(&mut attrs);
        self.set(id, now_micros(app), attrs);
    }

    /// `id`'s attributes at `time`.
    pub fn at(&self, id: &str, time: i64) -> &Attrs {
        self.timelines[id]
            .iter()
            .rev()
            .find(|(from, _)| *from <= time)
            .map(|(_, attrs)| attrs)
            .unwrap_or_else(|| panic!("customer {id} did not exist at {time}"))
    }

    /// `id`'s attributes now.
    pub fn now(&self, id: &str) -> &Attrs {
        &self.timelines[id]
            .last()
            .expect("a customer of the record")
            .1
    }

    /// The customers of the record.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.timelines.keys()
    }

    /// Every customer's relationship history, read back, checked to start
    /// with its creation at its first recorded time.
    pub async fn histories(&self, app: &TestApp) -> BTreeMap<String, Vec<RelationshipChange>> {
        let mut all = BTreeMap::new();
        for id in self.ids() {
            let changes = history(&mut app.customers(), id).await;
            let first = changes.first().expect("a creation");
            assert_eq!(first.cause(), RelationshipChangeCause::Created);
            assert!(first.old_relationship_id.is_empty());
            assert_eq!(
                micros(first.change_time.as_ref().unwrap()),
                self.timelines[id][0].0
            );
            for c in &changes[1..] {
                assert!(
                    !c.old_relationship_id.is_empty(),
                    "only the first change is a creation"
                );
            }
            all.insert(id.clone(), changes);
        }
        all
    }
}

/// The time of a change, in microseconds.
pub fn time_of(change: &RelationshipChange) -> i64 {
    micros(change.change_time.as_ref().expect("change time"))
}

/// A protobuf duration of `micros` microseconds.
pub fn duration(micros: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Whether `time` is in the half-open period.
pub fn within(time: i64, from: Option<i64>, to: Option<i64>) -> bool {
    from.is_none_or(|f| time >= f) && to.is_none_or(|t| time < t)
}
