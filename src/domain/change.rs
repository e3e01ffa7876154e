//! Why a customer's relationship changed, and how a customer was contacted.

/// The cause of a relationship change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The customer was created.
    Created,
    /// Someone changed it by hand.
    Manual,
    /// The inactivity rule moved the customer.
    AutomaticInactivity,
    /// A contact brought the customer back from an automatic relationship.
    ContactResumed,
    /// The relationship was deleted and its customers reassigned.
    RelationshipDeleted,
    /// The customer was imported.
    Import,
}

impl Cause {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Manual => "MANUAL",
            Self::AutomaticInactivity => "AUTOMATIC_INACTIVITY",
            Self::ContactResumed => "CONTACT_RESUMED",
            Self::RelationshipDeleted => "RELATIONSHIP_DELETED",
            Self::Import => "IMPORT",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(text: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Manual,
            Self::AutomaticInactivity,
            Self::ContactResumed,
            Self::RelationshipDeleted,
            Self::Import,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// How a customer was contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Phone call.
    Call,
    /// Email.
    Email,
    /// Meeting.
    Meeting,
    /// Text message.
    Sms,
    /// Chat.
    Chat,
    /// Anything else.
    Other,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Self; 6] = [
        Self::Call,
        Self::Email,
        Self::Meeting,
        Self::Sms,
        Self::Chat,
        Self::Other,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "CALL",
            Self::Email => "EMAIL",
            Self::Meeting => "MEETING",
            Self::Sms => "SMS",
            Self::Chat => "CHAT",
            Self::Other => "OTHER",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// A contact to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// The customer.
    pub customer_id: String,
    /// How.
    pub channel: Channel,
    /// Note.
    pub note: String,
    /// When; `None` for now.
    pub contact_time: Option<i64>,
}

/// Who made a change, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The cause.
    pub cause: Cause,
    /// `x-actor-id`, or empty for the system.
    pub actor: String,
    /// Free text.
    pub reason: String,
}

/// The sorted ids of a comma-joined list of group ids (as the change log
/// keeps them, and as a customer's groups are read in one column); `None`
/// or empty gives none.
pub fn split_group_ids(joined: Option<String>) -> Vec<String> {
    let mut ids: Vec<String> = joined
        .iter()
        .flat_map(|j| j.split(','))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}
