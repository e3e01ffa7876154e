//! The inactivity rule ("Don't Forget"), free of storage: which automatic
//! relationship a customer belongs in, given how long it has gone without
//! contact, and the reason written down for the move.
//!
//! A customer whose last activity (last contact, or creation if never
//! contacted) is at least an automatic relationship's `inactivity_days` old
//! belongs in the automatic relationship with the largest threshold that
//! applies to it; one applies unless the customer's current relationship is
//! among its exemptions. Two automatic relationships with the same
//! threshold are ranked by position, the first wins.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

/// Microseconds in a day: stored times are microseconds since the epoch.
pub const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// One automatic relationship's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomaticRule {
    /// The automatic relationship.
    pub relationship_id: String,
    /// Days without activity before a customer moves there.
    pub inactivity_days: i32,
    /// Whether a contact sends its customers back to their last manual
    /// relationship.
    pub restore_on_contact: bool,
    /// Relationships whose customers it leaves alone.
    pub exempt_ids: HashSet<String>,
}

impl AutomaticRule {
    /// The latest activity time that is old enough for this rule at `as_of`.
    pub fn cutoff(&self, as_of: i64) -> i64 {
        as_of.saturating_sub(i64::from(self.inactivity_days) * DAY_MICROS)
    }

    fn applies_to(&self, current: &str) -> bool {
        !self.exempt_ids.contains(current)
    }
}

/// The customers of one relationship whose activity time lies in
/// `(after, upto]` belong in `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band<'a> {
    /// Exclusive lower bound; `None`: no bound.
    pub after: Option<i64>,
    /// Inclusive upper bound.
    pub upto: i64,
    /// Where they belong.
    pub target: &'a AutomaticRule,
}

/// A tenant's automatic relationships, strongest (largest threshold) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InactivityRules {
    rules: Vec<AutomaticRule>,
}

impl InactivityRules {
    /// The rules of the tenant's active automatic relationships, each given
    /// with its position.
    pub fn new(mut rules: Vec<(i32, AutomaticRule)>) -> Self {
        rules.sort_by(|(pa, a), (pb, b)| {
            b.inactivity_days
                .cmp(&a.inactivity_days)
                .then(pa.cmp(pb))
                .then(a.relationship_id.cmp(&b.relationship_id))
        });
        Self {
            rules: rules.into_iter().map(|(_, r)| r).collect(),
        }
    }

    /// Whether the tenant has no automatic relationship.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule of the automatic relationship `id`, if it is one.
    pub fn rule_of(&self, id: &str) -> Option<&AutomaticRule> {
        self.rules.iter().find(|r| r.relationship_id == id)
    }

    /// For customers now holding `current`, the activity-time bands that
    /// move them at `as_of`, oldest activity first. A band whose target is
    /// `current` itself is left out: those customers are already there.
    pub fn bands(&self, current: &str, as_of: i64) -> Vec<Band<'_>> {
        let mut bands = Vec::new();
        let mut after = None;
        // Strongest first means the cutoffs come in ascending order: each
        // applicable rule takes the activity times between the previous
        // applicable cutoff and its own.
        for rule in self.rules.iter().filter(|r| r.applies_to(current)) {
            let upto = rule.cutoff(as_of);
            let empty = after.is_some_and(|after| upto <= after);
            if !empty && rule.relationship_id != current {
                bands.push(Band {
                    after,
                    upto,
                    target: rule,
                });
            }
            if !empty {
                after = Some(upto);
            }
        }
        bands
    }

    /// Where a customer holding `current` with last activity `activity`
    /// belongs at `as_of`: `None` when it stays.
    pub fn target(&self, current: &str, activity: i64, as_of: i64) -> Option<&AutomaticRule> {
        self.bands(current, as_of)
            .into_iter()
            .find(|b| b.after.is_none_or(|after| activity > after) && activity <= b.upto)
            .map(|b| b.target)
    }
}

/// Whole days from `activity` to `as_of`.
pub fn idle_days(activity: i64, as_of: i64) -> i64 {
    as_of.saturating_sub(activity).max(0) / DAY_MICROS
}

/// The UTC date of a stored time, as reasons write it: `2026-10-01`.
pub fn date_of(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Why the rule moves a customer: "no contact since 2026-10-01, 30 days",
/// or "… since creation on …" for a customer never contacted.
pub fn reason(last_contact: Option<i64>, activity: i64, as_of: i64) -> String {
    let date = date_of(activity);
    let days = idle_days(activity, as_of);
    let unit = if days == 1 { "day" } else { "days" };
    match last_contact {
        Some(_) => format!("no contact since {date}, {days} {unit}"),
        None => format!("no contact since creation on {date}, {days} {unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, days: i32, exempt: &[&str]) -> AutomaticRule {
        AutomaticRule {
            relationship_id: id.into(),
            inactivity_days: days,
            restore_on_contact: false,
            exempt_ids: exempt.iter().map(|s| s.to_string()).collect(),
        }
    }

    const NOW: i64 = 1_000 * DAY_MICROS;

    fn days_ago(days: i64) -> i64 {
        NOW - days * DAY_MICROS
    }

    #[test]
    fn a_customer_moves_exactly_at_the_threshold() {
        let rules = InactivityRules::new(vec![(7, rule("df", 30, &[]))]);
        assert_eq!(rules.target("new", days_ago(30) + 1, NOW), None);
        assert_eq!(
            rules
                .target("new", days_ago(30), NOW)
                .map(|r| &*r.relationship_id),
            Some("df")
        );
        assert_eq!(rules.target("df", days_ago(40), NOW), None, "already there");
    }

    #[test]
    fn the_largest_threshold_that_applies_wins() {
        let rules = InactivityRules::new(vec![
            (7, rule("df", 30, &[])),
            (8, rule("dormant", 90, &["closed"])),
        ]);
        let target = |current: &str, days: i64| {
            rules
                .target(current, days_ago(days), NOW)
                .map(|r| r.relationship_id.clone())
        };
        assert_eq!(target("new", 29), None);
        assert_eq!(target("new", 30).as_deref(), Some("df"));
        assert_eq!(target("new", 90).as_deref(), Some("dormant"));
        assert_eq!(target("df", 89), None);
        assert_eq!(target("df", 90).as_deref(), Some("dormant"));
        assert_eq!(target("dormant", 200), None);
        // Exempt from the 90-day one only: the 30-day one takes it (a later
        // run judges it again from there).
        assert_eq!(target("closed", 200).as_deref(), Some("df"));
        // Contacted while dormant (and not restored): idle again at 30.
        assert_eq!(target("dormant", 30).as_deref(), Some("df"));
    }

    #[test]
    fn bands_cover_each_activity_time_once() {
        let rules = InactivityRules::new(vec![
            (7, rule("df", 30, &[])),
            (8, rule("dormant", 90, &[])),
            (9, rule("same", 30, &[])),
        ]);
        let bands = rules.bands("new", NOW);
        assert_eq!(bands.len(), 2, "the second 30-day rule gets nothing");
        assert_eq!(bands[0].target.relationship_id, "dormant");
        assert_eq!((bands[0].after, bands[0].upto), (None, days_ago(90)));
        assert_eq!(bands[1].target.relationship_id, "df");
        assert_eq!(
            (bands[1].after, bands[1].upto),
            (Some(days_ago(90)), days_ago(30))
        );
    }

    #[test]
    fn exempt_relationships_are_left_alone() {
        let rules = InactivityRules::new(vec![(7, rule("df", 30, &["closed"]))]);
        assert!(rules.bands("closed", NOW).is_empty());
        assert_eq!(rules.target("closed", days_ago(365), NOW), None);
    }

    #[test]
    fn reasons_say_since_when_and_how_long() {
        let activity = DateTime::parse_from_rfc3339("2026-10-01T08:00:00Z")
            .unwrap()
            .timestamp_micros();
        let as_of = activity + 30 * DAY_MICROS + 5;
        assert_eq!(
            reason(Some(activity), activity, as_of),
            "no contact since 2026-10-01, 30 days"
        );
        assert_eq!(
            reason(None, activity, activity + DAY_MICROS),
            "no contact since creation on 2026-10-01, 1 day"
        );
    }
}
