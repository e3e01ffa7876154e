//! The filter evaluated in memory on one customer — what rule groups will
//! do at write time. It must select exactly what the SQL evaluator
//! selects; the rules both follow:
//!
//! - text fields compare folded text ([`super::text`]);
//! - `phone` compares normalised numbers, `email` lower-cased text, ids and
//!   codes exactly;
//! - a comparison with a value the customer lacks (no source, never
//!   contacted, no such attribute) is false, and `!=` is always the
//!   negation of `=`;
//! - `FIELD:*` holds when the field has a value: non-empty text, a
//!   source, a contact, an attribute, a group; integers and the creation
//!   and update times always have one.

use std::collections::{HashMap, HashSet};

use super::{
    Field, Filter, Op, Time, Value,
    text::{equals, has_words, starts_with},
};

/// What the evaluator needs of one customer.
pub trait Subject {
    /// The value of a text or exact field; `None` when it has none.
    fn text(&self, field: &Field) -> Option<&str>;
    /// `revenue` or `profile_completion`.
    fn integer(&self, field: &Field) -> i64;
    /// A time field; `None` for a customer never contacted.
    fn time(&self, field: &Field) -> Option<i64>;
    /// Whether it is a direct member of group `id`.
    fn member_of(&self, id: &str) -> bool;
    /// Whether it is a member of any group.
    fn in_any_group(&self) -> bool;
}

/// What the names in a filter mean for one tenant at one moment, resolved
/// before evaluating.
#[derive(Debug, Clone, Default)]
pub struct Meaning {
    /// The evaluation time (microseconds), for `ago(…)`.
    pub now: i64,
    /// Source ids by code.
    pub sources: HashMap<String, String>,
    /// Relationship ids by code.
    pub relationships: HashMap<String, String>,
    /// For each `in_group` argument as written: the group's id and its
    /// active subgroups' (empty when it names no group).
    pub subtrees: HashMap<String, HashSet<String>>,
}

/// Whether `subject` is selected by `filter`.
pub fn matches(filter: &Filter, subject: &impl Subject, meaning: &Meaning) -> bool {
    match filter {
        Filter::All => true,
        Filter::And(parts) => parts.iter().all(|f| matches(f, subject, meaning)),
        Filter::Or(parts) => parts.iter().any(|f| matches(f, subject, meaning)),
        Filter::Not(inner) => !matches(inner, subject, meaning),
        Filter::InGroup(group) => meaning
            .subtrees
            .get(group)
            .is_some_and(|ids| ids.iter().any(|id| subject.member_of(id))),
        Filter::Present(field) => present(field, subject),
        Filter::Compare(c) if c.op == Op::Ne => {
            !compare(&c.field, Op::Eq, &c.value, subject, meaning)
        }
        Filter::Compare(c) => compare(&c.field, c.op, &c.value, subject, meaning),
    }
}

fn present(field: &Field, subject: &impl Subject) -> bool {
    match field {
        Field::GroupIds => subject.in_any_group(),
        Field::Revenue | Field::ProfileCompletion | Field::CreateTime | Field::UpdateTime => true,
        Field::LastContactTime => subject.time(field).is_some(),
        Field::Source => subject
            .text(&Field::SourceId)
            .is_some_and(|t| !t.is_empty()),
        Field::Relationship => true,
        _ => subject.text(field).is_some_and(|t| !t.is_empty()),
    }
}

/// A comparison other than `!=`.
fn compare(
    field: &Field,
    op: Op,
    value: &Value,
    subject: &impl Subject,
    meaning: &Meaning,
) -> bool {
    match (field, value) {
        (Field::GroupIds, Value::Text(id)) => subject.member_of(id),
        (Field::Revenue | Field::ProfileCompletion, Value::Integer(v)) => {
            ordered(op, subject.integer(field).cmp(v))
        }
        (_, Value::Time(t)) => {
            let at = match *t {
                Time::At(at) => at,
                Time::Ago(back) => meaning.now.saturating_sub(back),
            };
            subject
                .time(field)
                .is_some_and(|have| ordered(op, have.cmp(&at)))
        }
        (Field::Source, Value::Text(code)) => {
            same_id(subject.text(&Field::SourceId), meaning.sources.get(code))
        }
        (Field::Relationship, Value::Text(code)) => same_id(
            subject.text(&Field::RelationshipId),
            meaning.relationships.get(code),
        ),
        (Field::Phone, Value::Text(v)) => subject
            .text(field)
            .is_some_and(|have| !have.is_empty() && have == normalised_phone(v)),
        (Field::Email, Value::Text(v)) => subject
            .text(field)
            .is_some_and(|have| !have.is_empty() && have == v.to_lowercase()),
        (Field::OwnerId | Field::SourceId | Field::RelationshipId, Value::Text(v)) => {
            subject.text(field) == Some(v.as_str())
        }
        (_, Value::Text(v)) => subject.text(field).is_some_and(|have| match op {
            Op::Has => has_words(have, v),
            _ => equals(have, v),
        }),
        (_, Value::Prefix(p)) => subject.text(field).is_some_and(|have| starts_with(have, p)),
        // The typed tree pairs no other field with these values.
        _ => false,
    }
}

fn same_id(have: Option<&str>, wanted: Option<&String>) -> bool {
    matches!((have, wanted), (Some(have), Some(wanted)) if have == wanted)
}

fn ordered(op: Op, order: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => order == Equal,
        Op::Ne => order != Equal,
        Op::Lt => order == Less,
        Op::Le => order != Greater,
        Op::Gt => order == Greater,
        Op::Ge => order != Less,
        Op::Has => false,
    }
}

/// A phone number as stored (digits and a leading +), or the text as
/// written when it is not one (it then equals no stored number).
pub fn normalised_phone(text: &str) -> String {
    crate::domain::customer::phone("filter", text).unwrap_or_else(|_| text.to_owned())
}
