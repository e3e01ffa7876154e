//! The validated inputs of an import: its options, its rows, and what it
//! did with each row.

use std::collections::BTreeMap;

use crate::{
    domain::{catalog::IdempotencyKey, ids, text},
    error::{AppError, AppResult, quoted},
};

/// Most rows in one batch of an import.
pub const MAX_ROWS_PER_BATCH: usize = 1000;

/// What an import does with each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every row creates a customer.
    #[default]
    Create,
    /// A row updates the active customer it matches, or creates one.
    Upsert,
    /// A row updates the active customer it matches; no match fails it.
    Update,
}

/// The field rows are matched to stored customers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKey {
    /// The normalised phone number.
    Phone,
    /// The lower-cased email address.
    Email,
    /// The customer's id.
    Id,
}

impl MatchKey {
    /// The row field that holds the key.
    pub fn field(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Id => "id",
        }
    }
}

/// A relationship, source or group named by a row: by id or by code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Named {
    /// A server id.
    Id(String),
    /// A code, `^[A-Z0-9_]{1,64}$`.
    Code(String),
}

/// Stands in for a name that failed its checks (see `Checks::take`).
impl Default for Named {
    fn default() -> Self {
        Self::Code(String::new())
    }
}

impl Named {
    /// Reads an id (a UUID) or else a code; INVALID_ARGUMENT on `field`
    /// when `raw` is neither.
    pub fn parse(field: &str, raw: &str) -> AppResult<Self> {
        let raw = raw.trim();
        if let Ok(Some(id)) = ids::parse_optional(field, raw) {
            return Ok(Self::Id(id));
        }
        text::code(field, raw).map(Self::Code).map_err(|_| {
            AppError::invalid(
                field,
                format!(
                    "{} is neither an id nor a code (1–64 of A–Z, 0–9 and _)",
                    quoted(raw)
                ),
            )
        })
    }

    /// The id or code, as given.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Id(text) | Self::Code(text) => text,
        }
    }
}

/// The options of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Create, upsert or update.
    pub mode: Mode,
    /// What rows are matched on (`None` with [`Mode::Create`] only).
    pub match_on: Option<MatchKey>,
    /// Check everything, write nothing.
    pub dry_run: bool,
    /// Recorded with the relationship changes made.
    pub reason: String,
    /// The caller's request id, with the options' fingerprint.
    pub key: Option<IdempotencyKey>,
    /// Source of created rows that name none.
    pub default_source: Option<Named>,
    /// Relationship of created rows that name none (else the tenant's
    /// default).
    pub default_relationship: Option<Named>,
    /// Groups every row's customer joins.
    pub default_groups: Vec<Named>,
}

/// One row's fields, validated; `None` leaves a field as it is (or, on a
/// created customer, as a new one has it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFields {
    /// Id to match on.
    pub id: Option<String>,
    /// Name (required to create).
    pub name: Option<String>,
    /// Normalised phone, possibly empty (clears it).
    pub phone: Option<String>,
    /// Lower-cased email, possibly empty (clears it).
    pub email: Option<String>,
    /// Owner.
    pub owner_id: Option<String>,
    /// Source: `Some(None)` clears it.
    pub source: Option<Option<Named>>,
    /// Relationship.
    pub relationship: Option<Named>,
    /// Groups to join.
    pub groups: Vec<Named>,
    /// Province.
    pub province: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Revenue.
    pub revenue: Option<i64>,
    /// Attributes to set; an empty value removes the key.
    pub attributes: BTreeMap<String, String>,
}

/// A row of an import as received: its number and its fields, or why they
/// are invalid (the row fails; the others go on).
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// The client's row number.
    pub number: i64,
    /// The validated fields.
    pub fields: AppResult<RowFields>,
}

/// What an import did with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A customer was created.
    Created,
    /// The matched customer changed.
    Updated,
    /// The matched customer already had every value.
    Unchanged,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Updated => "UPDATED",
            Self::Unchanged => "UNCHANGED",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(text: &str) -> Option<Self> {
        [Self::Created, Self::Updated, Self::Unchanged]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// The result of one row.
#[derive(Debug, Clone)]
pub struct RowResult {
    /// The client's row number.
    pub number: i64,
    /// The outcome and the customer (empty for a row a dry run would
    /// create), or why the row failed.
    pub outcome: AppResult<(Outcome, String)>,
    /// Reported from an earlier run with the same request id.
    pub replayed: bool,
    /// In a dry run: the phone and email the customer the row would create
    /// would hold (what later batches must find taken).
    pub dry_created: Vec<String>,
}

/// The counts of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows received.
    pub rows: i64,
    /// Rows that created a customer.
    pub created: i64,
    /// Rows that changed a customer.
    pub updated: i64,
    /// Rows that matched a customer with nothing to change.
    pub unchanged: i64,
    /// Rows that failed.
    pub failed: i64,
    /// Rows reported from an earlier run.
    pub replayed: i64,
}

impl Summary {
    /// Counts `result`.
    pub fn add(&mut self, result: &RowResult) {
        self.rows += 1;
        self.replayed += i64::from(result.replayed);
        match &result.outcome {
            Ok((Outcome::Created, _)) => self.created += 1,
            Ok((Outcome::Updated, _)) => self.updated += 1,
            Ok((Outcome::Unchanged, _)) => self.unchanged += 1,
            Err(_) => self.failed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_ids_or_codes() {
        let id = ids::new_id();
        assert_eq!(Named::parse("f", &id).unwrap(), Named::Id(id));
        assert_eq!(
            Named::parse("f", " VIP_1 ").unwrap(),
            Named::Code("VIP_1".into())
        );
        assert!(Named::parse("f", "vip").is_err());
        assert!(Named::parse("f", "").is_err());
    }

    #[test]
    fn outcomes_round_trip_their_stored_spelling() {
        for outcome in [Outcome::Created, Outcome::Updated, Outcome::Unchanged] {
            assert_eq!(Outcome::from_stored(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::from_stored("FAILED"), None);
    }
}
