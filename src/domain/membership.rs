//! Group membership: why a customer joined or left a group, and why it is
//! in one.

/// The cause of a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipCause {
    /// Added, removed, pinned or unpinned by hand.
    Manual,
    /// The customer was created in the group.
    CustomerCreated,
    /// A write to the customer made the group's rule match it or stop
    /// matching it.
    Rule,
    /// The group's rule (or a group it refers to) changed and its
    /// evaluation moved the customer.
    RuleChanged,
    /// The periodic sweep re-evaluated a rule that uses `ago()`.
    Sweep,
    /// The customer was deleted.
    CustomerDeleted,
    /// The customer was restored.
    CustomerRestored,
    /// The customer was imported into the group.
    Import,
}

impl MembershipCause {
    /// Every cause.
    pub const ALL: [Self; 8] = [
        Self::Manual,
        Self::CustomerCreated,
        Self::Rule,
        Self::RuleChanged,
        Self::Sweep,
        Self::CustomerDeleted,
        Self::CustomerRestored,
        Self::Import,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::CustomerCreated => "CUSTOMER_CREATED",
            Self::Rule => "RULE",
            Self::RuleChanged => "RULE_CHANGED",
            Self::Sweep => "SWEEP",
            Self::CustomerDeleted => "CUSTOMER_DELETED",
            Self::CustomerRestored => "CUSTOMER_RESTORED",
            Self::Import => "IMPORT",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Where a rule group's evaluation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationState {
    /// The membership follows the rule.
    Current,
    /// Being evaluated in the background.
    Evaluating,
}

impl EvaluationState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "CURRENT",
            Self::Evaluating => "EVALUATING",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(text: &str) -> Option<Self> {
        [Self::Current, Self::Evaluating]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_back_their_stored_spelling() {
        for cause in MembershipCause::ALL {
            assert_eq!(MembershipCause::from_stored(cause.as_str()), Some(cause));
        }
        assert_eq!(MembershipCause::from_stored("NOPE"), None);
    }
}
