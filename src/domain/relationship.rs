//! Relationship statuses: kinds, the seeded defaults, and the rules tying a
//! relationship's kind to its inactivity settings.

use crate::domain::catalog::{EntryPatch, NewEntry};
use crate::error::{AppError, AppResult, FieldViolation, quoted};

/// Largest inactivity threshold, in days (ten years).
pub const MAX_INACTIVITY_DAYS: i32 = 3650;

/// How a customer comes to hold a relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Set by people.
    Manual,
    /// Set by the inactivity rule only.
    AutomaticInactivity,
}

impl Kind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::AutomaticInactivity => "AUTOMATIC_INACTIVITY",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(text: &str) -> Option<Self> {
        match text {
            "MANUAL" => Some(Self::Manual),
            "AUTOMATIC_INACTIVITY" => Some(Self::AutomaticInactivity),
            _ => None,
        }
    }
}

/// The inactivity settings, which must agree with the kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InactivityRule {
    /// Days without contact before the move (automatic only).
    pub inactivity_days: i32,
    /// Whether a contact moves the customer back (automatic only).
    pub restore_on_contact: bool,
    /// Manual relationships whose customers are never moved (automatic only).
    pub exempt_ids: Vec<String>,
}

impl InactivityRule {
    /// Checks the settings against the kind; `prefix` is the request path of
    /// the relationship message, e.g. `relationship`.
    pub fn check(&self, kind: Kind, prefix: &str) -> AppResult<()> {
        let mut violations = Vec::new();
        match kind {
            Kind::AutomaticInactivity => {
                if !(1..=MAX_INACTIVITY_DAYS).contains(&self.inactivity_days) {
                    violations.push(FieldViolation::new(
                        format!("{prefix}.inactivity_days"),
                        format!("an automatic relationship needs 1–{MAX_INACTIVITY_DAYS} days"),
                    ));
                }
            }
            Kind::Manual => {
                if self.inactivity_days != 0 {
                    violations.push(FieldViolation::new(
                        format!("{prefix}.inactivity_days"),
                        "only automatic relationships have an inactivity threshold",
                    ));
                }
                if self.restore_on_contact {
                    violations.push(FieldViolation::new(
                        format!("{prefix}.restore_on_contact"),
                        "only automatic relationships can restore on contact",
                    ));
                }
                if !self.exempt_ids.is_empty() {
                    violations.push(FieldViolation::new(
                        format!("{prefix}.exempt_relationship_ids"),
                        "only automatic relationships have exemptions",
                    ));
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidArgument(violations))
        }
    }
}

/// A relationship to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelationship {
    /// Code, name, description.
    pub entry: NewEntry,
    /// `#RRGGBB` or empty.
    pub color: String,
    /// 1-based place; `None` appends at the end.
    pub position: Option<u32>,
    /// Manual or automatic.
    pub kind: Kind,
    /// Inactivity settings, already checked against `kind`.
    pub rule: InactivityRule,
    /// Whether it becomes the default.
    pub is_default: bool,
}

/// Changes to a relationship; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationshipPatch {
    /// Code, name, description.
    pub entry: EntryPatch,
    /// New colour.
    pub color: Option<String>,
    /// New place in the order.
    pub position: Option<u32>,
    /// New threshold.
    pub inactivity_days: Option<i32>,
    /// New restore-on-contact flag.
    pub restore_on_contact: Option<bool>,
    /// New exemptions.
    pub exempt_ids: Option<Vec<String>>,
    /// Make it the default (`true`); `false` on the default is refused.
    pub is_default: Option<bool>,
}

/// Validates a colour: empty, or `#RRGGBB` (stored upper case).
pub fn color(field: &str, raw: &str) -> AppResult<String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let ok =
        raw.len() == 7 && raw.starts_with('#') && raw[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(raw.to_ascii_uppercase())
    } else {
        Err(AppError::invalid(
            field,
            format!("{} is not a colour; write #RRGGBB", quoted(raw)),
        ))
    }
}

/// One relationship every new tenant starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// Code.
    pub code: &'static str,
    /// Name in the chosen language.
    pub name: &'static str,
    /// Display colour.
    pub color: &'static str,
    /// Manual or automatic.
    pub kind: Kind,
    /// Threshold for the automatic one.
    pub inactivity_days: i32,
    /// Whether new customers get it.
    pub is_default: bool,
}

const fn manual(
    code: &'static str,
    name: &'static str,
    color: &'static str,
    is_default: bool,
) -> Seed {
    Seed {
        code,
        name,
        color,
        kind: Kind::Manual,
        inactivity_days: 0,
        is_default,
    }
}

/// Language of the relationship names seeded for a new tenant. A
/// command-line value too (`--seed-locale`), hence the clap derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum SeedLocale {
    /// New, Approached, Hot, …
    #[default]
    En,
    /// Mới, Tiếp cận, Nóng, …
    Vi,
}

/// The seeded relationships in position order.
pub fn seeds(locale: SeedLocale) -> [Seed; 7] {
    let vi = locale == SeedLocale::Vi;
    let pick = |en: &'static str, vi_name: &'static str| if vi { vi_name } else { en };
    [
        manual("NEW", pick("New", "Mới"), "#3B82F6", true),
        manual(
            "APPROACHED",
            pick("Approached", "Tiếp cận"),
            "#06B6D4",
            false,
        ),
        manual("HOT", pick("Hot", "Nóng"), "#EF4444", false),
        manual(
            "POTENTIAL",
            pick("Potential", "Tiềm năng"),
            "#F59E0B",
            false,
        ),
        manual("LOST", pick("Lost", "Mất"), "#6B7280", false),
        manual("CLOSED", pick("Closed", "Chốt"), "#22C55E", false),
        Seed {
            code: "DONT_FORGET",
            name: pick("Don't Forget", "Đừng quên"),
            color: "#A855F7",
            kind: Kind::AutomaticInactivity,
            inactivity_days: 30,
            is_default: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_inactivity_settings_must_agree() {
        let automatic = InactivityRule {
            inactivity_days: 30,
            ..Default::default()
        };
        assert!(automatic.check(Kind::AutomaticInactivity, "r").is_ok());
        assert!(automatic.check(Kind::Manual, "r").is_err());
        assert!(
            InactivityRule::default()
                .check(Kind::AutomaticInactivity, "r")
                .is_err()
        );
        assert!(InactivityRule::default().check(Kind::Manual, "r").is_ok());
    }

    #[test]
    fn colours_are_hex_triplets() {
        assert_eq!(color("c", "#a1b2c3").unwrap(), "#A1B2C3");
        assert_eq!(color("c", "").unwrap(), "");
        assert!(color("c", "red").is_err());
        assert!(color("c", "#12345").is_err());
    }

    #[test]
    fn seeds_have_one_default_and_one_automatic_status() {
        for locale in [SeedLocale::En, SeedLocale::Vi] {
            let seeds = seeds(locale);
            assert_eq!(seeds.iter().filter(|s| s.is_default).count(), 1);
            assert_eq!(seeds[6].kind, Kind::AutomaticInactivity);
        }
        assert_eq!(seeds(SeedLocale::Vi)[6].name, "Đừng quên");
    }
}
