//! What a filter reads of a customer, so that a write to a customer
//! re-evaluates only the rules it can affect, and which groups a filter
//! refers to, so that rules referring to groups are evaluated after those
//! groups' own rules.

use super::{Comparison, Field, Filter, Time, Value};

/// A set of the kinds of customer data a filter reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reads(u8);

impl Reads {
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// Profile fields: name, company, province, phone, email, owner,
    /// source, revenue, profile completion, attributes.
    pub const PROFILE: Self = Self(1);
    /// The relationship.
    pub const RELATIONSHIP: Self = Self(1 << 1);
    /// The last contact time.
    pub const CONTACT: Self = Self(1 << 2);
    /// The update time (every write to the customer row moves it).
    pub const UPDATE_TIME: Self = Self(1 << 3);
    /// The creation time.
    pub const CREATE_TIME: Self = Self(1 << 4);
    /// Group memberships (`group_ids`, `in_group`).
    pub const GROUPS: Self = Self(1 << 5);
    /// The evaluation time (`ago(…)`): the result changes as time passes.
    pub const CLOCK: Self = Self(1 << 6);
    /// Everything: a new or restored customer.
    pub const ALL: Self = Self(u8::MAX);

    /// Both sets.
    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the sets share something.
    pub fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl Field {
    /// What reading this field reads.
    pub fn reads(&self) -> Reads {
        match self {
            Self::Name
            | Self::Company
            | Self::Province
            | Self::Phone
            | Self::Email
            | Self::OwnerId
            | Self::SourceId
            | Self::Source
            | Self::Revenue
            | Self::ProfileCompletion
            | Self::Attribute(_) => Reads::PROFILE,
            Self::RelationshipId | Self::Relationship => Reads::RELATIONSHIP,
            Self::GroupIds => Reads::GROUPS,
            Self::CreateTime => Reads::CREATE_TIME,
            Self::UpdateTime => Reads::UPDATE_TIME,
            // The filter languages's `last_contact_time` also reads the
            // activity time, which only a contact moves after creation.
            Self::LastContactTime => Reads::CONTACT,
        }
    }
}

impl Filter {
    /// What the filter reads of a customer.
    pub fn reads(&self) -> Reads {
        match self {
            Self::All => Reads::NONE,
            Self::And(parts) | Self::Or(parts) => parts
                .iter()
                .fold(Reads::NONE, |reads, part| reads.with(part.reads())),
            Self::Not(inner) => inner.reads(),
            Self::Present(field) => field.reads(),
            Self::InGroup(_) => Reads::GROUPS,
            Self::Compare(Comparison { field, value, .. }) => match value {
                Value::Time(Time::Ago(_)) => field.reads().with(Reads::CLOCK),
                _ => field.reads(),
            },
        }
    }

    /// The groups the filter names, as written: `in_group` arguments (ids
    /// or codes) and `group_ids` values (ids).
    pub fn groups_named(&self) -> Vec<&str> {
        let mut named = Vec::new();
        self.collect_groups(&mut named);
        named.sort_unstable();
        named.dedup();
        named
    }

    fn collect_groups<'a>(&'a self, named: &mut Vec<&'a str>) {
        match self {
            Self::All | Self::Present(_) => {}
            Self::And(parts) | Self::Or(parts) => {
                parts.iter().for_each(|p| p.collect_groups(named));
            }
            Self::Not(inner) => inner.collect_groups(named),
            Self::InGroup(group) => named.push(group),
            Self::Compare(Comparison {
                field: Field::GroupIds,
                value: Value::Text(id),
                ..
            }) => named.push(id),
            Self::Compare(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{super::parse, Reads};

    #[test]
    fn a_filter_reads_what_its_fields_read() {
        let f = parse(r#"province = "Đà Nẵng" AND relationship = "HOT""#).unwrap();
        assert_eq!(f.reads(), Reads::PROFILE.with(Reads::RELATIONSHIP));
        let f = parse(r#"NOT last_contact_time > ago("60d")"#).unwrap();
        assert_eq!(f.reads(), Reads::CONTACT.with(Reads::CLOCK));
        let f = parse(r#"in_group("VIP") OR group_ids:"g1""#).unwrap();
        assert_eq!(f.reads(), Reads::GROUPS);
        assert_eq!(f.groups_named(), vec!["VIP", "g1"]);
        assert!(!parse("revenue > 5").unwrap().reads().meets(Reads::GROUPS));
        assert!(Reads::ALL.contains(Reads::CLOCK));
    }
}
