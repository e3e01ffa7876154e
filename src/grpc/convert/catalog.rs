//! Conversions of groups, sources and relationships.

use prost_types::FieldMask;

use super::{Checks, populated, required, target, timestamp};
use crate::grpc::mask::{self, MaskRules};
use crate::{
    domain::{
        catalog::{EntryPatch, GroupPatch, NewEntry, NewGroup, Target},
        filter, ids,
        membership::EvaluationState,
        relationship::{self, InactivityRule, Kind, NewRelationship, RelationshipPatch},
        text,
    },
    entity::{customer_group, customer_source, relationship as relationship_row},
    error::{AppError, AppResult},
    pb,
    store::resource::etag,
};

fn optional_code(field: &str, raw: &str) -> AppResult<Option<String>> {
    if raw.is_empty() {
        Ok(None)
    } else {
        text::code(field, raw).map(Some)
    }
}

fn new_entry(
    checks: &mut Checks,
    prefix: &str,
    code: &str,
    name: &str,
    description: &str,
) -> NewEntry {
    NewEntry {
        code: checks.take(optional_code(&format!("{prefix}.code"), code)),
        name: checks.take(text::name(&format!("{prefix}.name"), name)),
        description: checks.take(text::description(
            &format!("{prefix}.description"),
            description,
        )),
    }
}

/// The common fields chosen by a resolved mask.
fn entry_patch(
    checks: &mut Checks,
    paths: &std::collections::BTreeSet<&str>,
    prefix: &str,
    code: &str,
    name: &str,
    description: &str,
) -> EntryPatch {
    EntryPatch {
        code: paths
            .contains("code")
            .then(|| checks.take(text::code(&format!("{prefix}.code"), code))),
        name: paths
            .contains("name")
            .then(|| checks.take(text::name(&format!("{prefix}.name"), name))),
        description: paths.contains("description").then(|| {
            checks.take(text::description(
                &format!("{prefix}.description"),
                description,
            ))
        }),
    }
}

// ---- groups ----

const GROUP_MASK: MaskRules = MaskRules {
    mutable: &["code", "name", "description", "parent_id", "rule"],
    output_only: &[
        "id",
        "customer_count",
        "create_time",
        "update_time",
        "delete_time",
        "etag",
        "evaluation_state",
        "evaluate_time",
    ],
    immutable: &[],
};

/// Validates the group of a CreateGroup.
pub fn new_group(group: Option<pb::Group>) -> AppResult<NewGroup> {
    let pb::Group {
        id: _,
        code,
        name,
        description,
        parent_id,
        customer_count: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag: _,
        rule,
        evaluation_state: _,
        evaluate_time: _,
    } = required(group, "group")?;
    let mut checks = Checks::default();
    let input = NewGroup {
        entry: new_entry(&mut checks, "group", &code, &name, &description),
        parent_id: checks.take(ids::parse_optional("group.parent_id", &parent_id)),
        rule: checks.take(group_rule(&rule)),
    };
    checks.finish().map(|()| input)
}

/// Validates an UpdateGroup.
pub fn group_patch(
    group: Option<pb::Group>,
    update_mask: Option<FieldMask>,
) -> AppResult<(Target, GroupPatch)> {
    let pb::Group {
        id,
        code,
        name,
        description,
        parent_id,
        customer_count: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag,
        rule,
        evaluation_state: _,
        evaluate_time: _,
    } = required(group, "group")?;
    let paths = mask::resolve(
        update_mask.as_ref(),
        &GROUP_MASK,
        &populated(&[
            ("code", !code.is_empty()),
            ("name", !name.is_empty()),
            ("description", !description.is_empty()),
            ("parent_id", !parent_id.is_empty()),
            ("rule", !rule.is_empty()),
        ]),
    )?;
    let mut checks = Checks::default();
    let target = target(&mut checks, "group.id", &id, etag);
    let patch = GroupPatch {
        entry: entry_patch(&mut checks, &paths, "group", &code, &name, &description),
        parent_id: paths
            .contains("parent_id")
            .then(|| checks.take(ids::parse_optional("group.parent_id", &parent_id))),
        rule: paths
            .contains("rule")
            .then(|| checks.take(group_rule(&rule))),
    };
    checks.finish().map(|()| (target, patch))
}

/// A group's rule as stored: trimmed, and parsed to check it (empty: no
/// rule). What its names refer to is checked against the tenant later.
fn group_rule(rule: &str) -> AppResult<String> {
    let rule = rule.trim();
    if !rule.is_empty() {
        filter::parse_field(rule, "group.rule")?;
    }
    Ok(rule.to_owned())
}

impl From<customer_group::Model> for pb::Group {
    fn from(row: customer_group::Model) -> Self {
        Self {
            id: row.id,
            code: row.code,
            name: row.name,
            description: row.description,
            parent_id: row.parent_id.unwrap_or_default(),
            customer_count: 0,
            create_time: Some(timestamp(row.create_time)),
            update_time: Some(timestamp(row.update_time)),
            delete_time: row.delete_time.map(timestamp),
            etag: etag(row.revision),
            evaluation_state: match EvaluationState::from_stored(&row.evaluation_state) {
                Some(EvaluationState::Evaluating) => pb::EvaluationState::Evaluating,
                _ => pb::EvaluationState::Current,
            } as i32,
            evaluate_time: if row.rule.is_empty() {
                None
            } else {
                row.evaluate_time.map(timestamp)
            },
            rule: row.rule,
        }
    }
}

// ---- sources ----

const SOURCE_MASK: MaskRules = MaskRules {
    mutable: &["code", "name", "description"],
    output_only: &[
        "id",
        "customer_count",
        "create_time",
        "update_time",
        "delete_time",
        "etag",
    ],
    immutable: &[],
};

/// Validates the source of a CreateSource.
pub fn new_source(source: Option<pb::Source>) -> AppResult<NewEntry> {
    let pb::Source {
        id: _,
        code,
        name,
        description,
        customer_count: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag: _,
    } = required(source, "source")?;
    let mut checks = Checks::default();
    let entry = new_entry(&mut checks, "source", &code, &name, &description);
    checks.finish().map(|()| entry)
}

/// Validates an UpdateSource.
pub fn source_patch(
    source: Option<pb::Source>,
    update_mask: Option<FieldMask>,
) -> AppResult<(Target, EntryPatch)> {
    let pb::Source {
        id,
        code,
        name,
        description,
        customer_count: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag,
    } = required(source, "source")?;
    let paths = mask::resolve(
        update_mask.as_ref(),
        &SOURCE_MASK,
        &populated(&[
            ("code", !code.is_empty()),
            ("name", !name.is_empty()),
            ("description", !description.is_empty()),
        ]),
    )?;
    let mut checks = Checks::default();
    let target = target(&mut checks, "source.id", &id, etag);
    let patch = entry_patch(&mut checks, &paths, "source", &code, &name, &description);
    checks.finish().map(|()| (target, patch))
}

impl From<customer_source::Model> for pb::Source {
    fn from(row: customer_source::Model) -> Self {
        Self {
            id: row.id,
            code: row.code,
            name: row.name,
            description: row.description,
            customer_count: 0,
            create_time: Some(timestamp(row.create_time)),
            update_time: Some(timestamp(row.update_time)),
            delete_time: row.delete_time.map(timestamp),
            etag: etag(row.revision),
        }
    }
}

// ---- relationships ----

const RELATIONSHIP_MASK: MaskRules = MaskRules {
    mutable: &[
        "code",
        "name",
        "description",
        "color",
        "position",
        "inactivity_days",
        "restore_on_contact",
        "exempt_relationship_ids",
        "is_default",
    ],
    output_only: &[
        "id",
        "customer_count",
        "create_time",
        "update_time",
        "delete_time",
        "etag",
    ],
    immutable: &["kind"],
};

fn kind(raw: i32) -> AppResult<Kind> {
    match pb::RelationshipKind::try_from(raw) {
        Ok(pb::RelationshipKind::Unspecified | pb::RelationshipKind::Manual) => Ok(Kind::Manual),
        Ok(pb::RelationshipKind::AutomaticInactivity) => Ok(Kind::AutomaticInactivity),
        Err(_) => Err(AppError::invalid(
            "relationship.kind",
            format!("{raw} is not a relationship kind"),
        )),
    }
}

fn position(field: &str, raw: i32, zero_appends: bool) -> AppResult<Option<u32>> {
    match raw {
        0 if zero_appends => Ok(None),
        n if n >= 1 => Ok(Some(n as u32)),
        _ => Err(AppError::invalid(field, "positions start at 1")),
    }
}

/// Parses exempt ids, dropping repeats.
fn exempt_ids(raw: &[String]) -> AppResult<Vec<String>> {
    let mut parsed: Vec<String> = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let id = ids::parse(&format!("relationship.exempt_relationship_ids[{i}]"), id)?;
        if !parsed.contains(&id) {
            parsed.push(id);
        }
    }
    Ok(parsed)
}

/// Validates the relationship of a CreateRelationship.
pub fn new_relationship(relationship: Option<pb::Relationship>) -> AppResult<NewRelationship> {
    let pb::Relationship {
        id: _,
        code,
        name,
        description,
        color,
        position: raw_position,
        kind: raw_kind,
        inactivity_days,
        restore_on_contact,
        exempt_relationship_ids,
        is_default,
        customer_count: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag: _,
    } = required(relationship, "relationship")?;
    let mut checks = Checks::default();
    let entry = new_entry(&mut checks, "relationship", &code, &name, &description);
    let color = checks.take(relationship::color("relationship.color", &color));
    let position = checks.take(position("relationship.position", raw_position, true));
    let kind = checks
        .take(kind(raw_kind).map(Some))
        .unwrap_or(Kind::Manual);
    let rule = InactivityRule {
        inactivity_days,
        restore_on_contact,
        exempt_ids: checks.take(exempt_ids(&exempt_relationship_ids)),
    };
    checks.take(rule.check(kind, "relationship"));
    checks.finish()?;
    Ok(NewRelationship {
        entry,
        color,
        position,
        kind,
        rule,
        is_default,
    })
}

/// Validates an UpdateRelationship.
pub fn relationship_patch(
    relationship: Option<pb::Relationship>,
    update_mask: Option<FieldMask>,
) -> AppResult<(Target, RelationshipPatch)> {
    let pb::Relationship {
        id,
        code,
        name,
        description,
        color,
        position: raw_position,
        kind: _,
        inactivity_days,
        restore_on_contact,
        exempt_relationship_ids,
        is_default,
        customer_count: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag,
    } = required(relationship, "relationship")?;
    let paths = mask::resolve(
        update_mask.as_ref(),
        &RELATIONSHIP_MASK,
        &populated(&[
            ("code", !code.is_empty()),
            ("name", !name.is_empty()),
            ("description", !description.is_empty()),
            ("color", !color.is_empty()),
            ("position", raw_position != 0),
            ("inactivity_days", inactivity_days != 0),
            ("restore_on_contact", restore_on_contact),
            (
                "exempt_relationship_ids",
                !exempt_relationship_ids.is_empty(),
            ),
            ("is_default", is_default),
        ]),
    )?;
    let mut checks = Checks::default();
    let target = target(&mut checks, "relationship.id", &id, etag);
    let has = |path: &str| paths.contains(path);
    let patch = RelationshipPatch {
        entry: entry_patch(
            &mut checks,
            &paths,
            "relationship",
            &code,
            &name,
            &description,
        ),
        color: has("color").then(|| checks.take(relationship::color("relationship.color", &color))),
        position: if has("position") {
            checks.take(position("relationship.position", raw_position, false))
        } else {
            None
        },
        inactivity_days: has("inactivity_days").then_some(inactivity_days),
        restore_on_contact: has("restore_on_contact").then_some(restore_on_contact),
        exempt_ids: has("exempt_relationship_ids")
            .then(|| checks.take(exempt_ids(&exempt_relationship_ids))),
        is_default: has("is_default").then_some(is_default),
    };
    checks.finish().map(|()| (target, patch))
}

impl From<relationship_row::Model> for pb::Relationship {
    fn from(row: relationship_row::Model) -> Self {
        // Checked before conversion (`grpc::Counted::check`).
        let exempt_relationship_ids = row.exempt_ids().unwrap_or_default();
        let kind = match Kind::from_stored(&row.kind) {
            Some(Kind::Manual) => pb::RelationshipKind::Manual,
            Some(Kind::AutomaticInactivity) => pb::RelationshipKind::AutomaticInactivity,
            None => pb::RelationshipKind::Unspecified,
        };
        Self {
            id: row.id,
            code: row.code,
            name: row.name,
            description: row.description,
            color: row.color,
            position: row.position,
            kind: kind.into(),
            inactivity_days: row.inactivity_days,
            restore_on_contact: row.restore_on_contact,
            exempt_relationship_ids,
            is_default: row.is_default,
            customer_count: 0,
            create_time: Some(timestamp(row.create_time)),
            update_time: Some(timestamp(row.update_time)),
            delete_time: row.delete_time.map(timestamp),
            etag: etag(row.revision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_names_every_bad_field_at_once() {
        let Err(AppError::InvalidArgument(v)) = new_group(Some(pb::Group {
            name: " ".into(),
            code: "bad code".into(),
            parent_id: "not-an-id".into(),
            ..Default::default()
        })) else {
            panic!("expected INVALID_ARGUMENT");
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["group.code", "group.name", "group.parent_id"]);
    }
}
