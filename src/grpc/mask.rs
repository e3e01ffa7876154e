//! Update masks: which fields an Update changes. Paths are the resource's
//! snake_case field names; an empty mask means every populated mutable field
//! and `*` means every mutable field.

use std::collections::BTreeSet;

use prost_types::FieldMask;

use crate::error::{AppError, AppResult, FieldViolation, quoted};

/// The fields of one resource, by how an Update may treat them.
pub struct MaskRules {
    /// Fields an Update may change.
    pub mutable: &'static [&'static str],
    /// Fields only the server sets.
    pub output_only: &'static [&'static str],
    /// Fields fixed at create.
    pub immutable: &'static [&'static str],
}

/// The paths to apply. `populated` lists the mutable fields the request
/// sets, used when the mask is empty.
pub fn resolve(
    mask: Option<&FieldMask>,
    rules: &MaskRules,
    populated: &[&'static str],
) -> AppResult<BTreeSet<&'static str>> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Ok(populated.iter().copied().collect());
    }
    let mut chosen = BTreeSet::new();
    let mut violations = Vec::new();
    for path in paths {
        if path == "*" {
            chosen.extend(rules.mutable.iter().copied());
        } else if let Some(field) = rules.mutable.iter().find(|f| *f == path) {
            chosen.insert(*field);
        } else if rules.output_only.contains(&path.as_str()) {
            violations.push(
                FieldViolation::new("update_mask", format!("{} is output only", quoted(path)))
                    .because("OUTPUT_ONLY_FIELD"),
            );
        } else if rules.immutable.contains(&path.as_str()) {
            violations.push(
                FieldViolation::new(
                    "update_mask",
                    format!("{} cannot be changed after create", quoted(path)),
                )
                .because("IMMUTABLE_FIELD"),
            );
        } else {
            violations.push(
                FieldViolation::new(
                    "update_mask",
                    format!(
                        "unknown path {}; updatable fields are: {}",
                        quoted(path),
                        rules.mutable.join(", ")
                    ),
                )
                .because("UNKNOWN_FIELD"),
            );
        }
    }
    if violations.is_empty() {
        Ok(chosen)
    } else {
        Err(AppError::InvalidArgument(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: MaskRules = MaskRules {
        mutable: &["name", "description"],
        output_only: &["id", "etag"],
        immutable: &["kind"],
    };

    fn mask(paths: &[&str]) -> FieldMask {
        FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn empty_masks_take_the_populated_fields() {
        let chosen = resolve(None, &RULES, &["description"]).unwrap();
        assert_eq!(chosen.into_iter().collect::<Vec<_>>(), vec!["description"]);
    }

    #[test]
    fn wildcard_takes_every_mutable_field() {
        assert_eq!(resolve(Some(&mask(&["*"])), &RULES, &[]).unwrap().len(), 2);
    }

    #[test]
    fn unknown_output_only_and_immutable_paths_are_each_reported() {
        let Err(AppError::InvalidArgument(v)) =
            resolve(Some(&mask(&["nope", "id", "kind", "name"])), &RULES, &[])
        else {
            panic!("expected INVALID_ARGUMENT");
        };
        assert_eq!(v.len(), 3);
        assert!(v[0].description.contains("unknown path `nope`"));
        assert!(v[1].description.contains("output only"));
        assert!(v[2].description.contains("cannot be changed"));
    }
}
