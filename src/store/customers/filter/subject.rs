//! A customer record as the subject of the
//! in-memory evaluator ([`crate::domain::filter::eval`]).

use std::collections::BTreeMap;

use crate::domain::filter::{Field, eval};
use crate::store::customers::CustomerRecord;

/// A record as the filter evaluator reads it (its attributes parsed once).
pub struct FilterSubject<'a> {
    record: &'a CustomerRecord,
    attributes: BTreeMap<String, String>,
}

impl<'a> FilterSubject<'a> {
    /// The record `record`, ready to be evaluated.
    pub fn new(record: &'a CustomerRecord) -> Self {
        Self {
            record,
            attributes: record.attributes(),
        }
    }
}

impl eval::Subject for FilterSubject<'_> {
    fn text(&self, field: &Field) -> Option<&str> {
        let row = &self.record.row;
        match field {
            Field::Name => Some(&row.name),
            Field::Company => Some(&row.company),
            Field::Province => Some(&row.province),
            Field::Phone => Some(&row.phone),
            Field::Email => Some(&row.email),
            Field::OwnerId => Some(&row.owner_id),
            Field::SourceId => row.source_id.as_deref(),
            Field::RelationshipId => Some(&row.relationship_id),
            Field::Attribute(key) => self.attributes.get(key).map(String::as_str),
            Field::Source
            | Field::Relationship
            | Field::GroupIds
            | Field::Revenue
            | Field::ProfileCompletion
            | Field::CreateTime
            | Field::UpdateTime
            | Field::LastContactTime => None,
        }
    }

    fn integer(&self, field: &Field) -> i64 {
        match field {
            Field::ProfileCompletion => i64::from(self.record.row.profile_completion),
            _ => self.record.row.revenue,
        }
    }

    fn time(&self, field: &Field) -> Option<i64> {
        let row = &self.record.row;
        match field {
            Field::CreateTime => Some(row.create_time),
            Field::UpdateTime => Some(row.update_time),
            _ => row.last_contact_time,
        }
    }

    /// Active groups only, as the record (and the API) shows them.
    fn member_of(&self, id: &str) -> bool {
        self.record.group_ids.iter().any(|g| g == id)
    }

    fn in_any_group(&self) -> bool {
        !self.record.group_ids.is_empty()
    }
}
