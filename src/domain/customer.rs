//! Customer rules: phone and email normalisation, the tenant's attributes,
//! profile completion, search text, and the validated inputs of customer
//! calls.

use std::collections::BTreeMap;

use deunicode::deunicode;

use crate::domain::{filter::Filter, paging::DeletedFilter};
use crate::error::{AppError, AppResult, quoted};

/// Fewest and most digits of a phone number.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 6..=15;
/// Longest email address (RFC 5321).
const EMAIL_MAX_LEN: usize = 254;
/// Most attributes per customer.
pub const ATTRIBUTES_MAX: usize = 50;
/// Longest attribute key.
const ATTRIBUTE_KEY_MAX: usize = 64;
/// Longest attribute value, in characters.
const ATTRIBUTE_VALUE_MAX: usize = 1000;
/// Longest short text field (owner, province, company), in characters; the
/// owner filters of lists, counts and the change stream share it.
pub const SHORT_TEXT_MAX: usize = 200;
/// Longest search text (`query`), in characters: longer than any name,
/// phone and email it could match, and short enough that its LIKE pattern
/// stays far below SQLite's 50,000-byte limit however it transliterates.
pub const QUERY_MAX_CHARS: usize = 200;
/// Largest revenue, in minor currency units (10^15: a thousand trillion
/// đồng). Sums of many such values stay exact ([`crate::store`] sums
/// without overflow and saturates at the edge of `int64`).
pub const REVENUE_MAX: i64 = 1_000_000_000_000_000;
/// Most customers one call may name.
pub const MAX_IDS_PER_CALL: usize = 1000;
/// Most groups a customer may be created in.
pub const MAX_GROUPS_ON_CREATE: usize = 100;

/// Normalises a phone number: spaces, dots, dashes and parentheses go, a
/// leading `+` stays, and 6–15 digits must remain. Empty stays empty.
pub fn phone(field: &str, raw: &str) -> AppResult<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", raw),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            _ => {
                return Err(AppError::invalid(
                    field,
                    format!(
                        "{} is not a phone number: use digits, spaces, dots, dashes, parentheses and a leading +",
                        quoted(raw)
                    ),
                ));
            }
        }
    }
    if !PHONE_DIGITS.contains(&digits.len()) {
        return Err(AppError::invalid(
            field,
            format!(
                "{} has {} digits; a phone number has 6–15",
                quoted(raw),
                digits.len()
            ),
        ));
    }
    Ok(format!("{plus}{digits}"))
}

/// Normalises an email address: trimmed and lower-cased, with one `@`, a
/// local part and a dotted domain. Empty stays empty.
pub fn email(field: &str, raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Ok(email);
    }
    let valid = email.len() <= EMAIL_MAX_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err(AppError::invalid(
            field,
            format!("{} is not an email address", quoted(raw.trim())),
        ))
    }
}

/// Validates a short free-text field (owner, province, company).
pub fn short_text(field: &str, raw: &str) -> AppResult<String> {
    let text = raw.trim();
    if text.chars().count() > SHORT_TEXT_MAX || text.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            format!("must be at most {SHORT_TEXT_MAX} printable characters"),
        ));
    }
    Ok(text.to_owned())
}

/// Validates revenue: 0 ..= [`REVENUE_MAX`].
pub fn revenue(field: &str, value: i64) -> AppResult<i64> {
    if value < 0 {
        Err(AppError::invalid(field, "may not be negative"))
    } else if value > REVENUE_MAX {
        Err(AppError::invalid(
            field,
            format!("is {value}; at most {REVENUE_MAX} is allowed"),
        ))
    } else {
        Ok(value)
    }
}

/// Whether `key` may name an attribute: 1–64 of `a-z 0-9 _`.
pub fn is_attribute_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= ATTRIBUTE_KEY_MAX
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Validates the tenant's own fields: keys of 1–64 of `a-z 0-9 _`, values
/// up to 1000 characters, at most 50 entries.
pub fn attributes(
    field: &str,
    map: &BTreeMap<String, String>,
) -> AppResult<BTreeMap<String, String>> {
    if map.len() > ATTRIBUTES_MAX {
        return Err(AppError::invalid(
            field,
            format!("at most {ATTRIBUTES_MAX} attributes are allowed"),
        ));
    }
    for (key, value) in map {
        if !is_attribute_key(key) {
            return Err(AppError::invalid(
                field,
                format!(
                    "key {} must be 1–{ATTRIBUTE_KEY_MAX} of a–z, 0–9 and _",
                    quoted(key)
                ),
            ));
        }
        if value.chars().count() > ATTRIBUTE_VALUE_MAX {
            return Err(AppError::invalid(
                field,
                format!("value of `{key}` is longer than {ATTRIBUTE_VALUE_MAX} characters"),
            ));
        }
    }
    Ok(map.clone())
}

/// A customer's profile: the fields people fill in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Trimmed name.
    pub name: String,
    /// Normalised phone or empty.
    pub phone: String,
    /// Lower-cased email or empty.
    pub email: String,
    /// Owning user or empty.
    pub owner_id: String,
    /// Source, if any.
    pub source_id: Option<String>,
    /// Province or city.
    pub province: String,
    /// Company.
    pub company: String,
    /// Revenue in minor units.
    pub revenue: i64,
    /// The tenant's own fields.
    pub attributes: BTreeMap<String, String>,
}

impl Profile {
    /// 0–100: the share of name, phone, email, owner, source, province and
    /// company that are filled, rounded down.
    pub fn completion(&self) -> i32 {
        let filled = [
            !self.name.is_empty(),
            !self.phone.is_empty(),
            !self.email.is_empty(),
            !self.owner_id.is_empty(),
            self.source_id.is_some(),
            !self.province.is_empty(),
            !self.company.is_empty(),
        ];
        let count = filled.iter().filter(|f| **f).count() as i32;
        count * 100 / filled.len() as i32
    }

    /// What `query` searches: the transliterated lower-case name, the phone
    /// and the email.
    pub fn search_text(&self) -> String {
        format!(
            "{} {} {}",
            deunicode(&self.name).to_lowercase(),
            self.phone,
            self.email
        )
    }
}

/// The form `query` is matched in: transliterated and lower-cased, and a
/// query that looks like a phone number reduced to its digits. At most
/// [`QUERY_MAX_CHARS`] characters after trimming.
pub fn search_query(field: &str, raw: &str) -> AppResult<Option<String>> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let chars = trimmed.chars().count();
    if chars > QUERY_MAX_CHARS {
        return Err(AppError::invalid(
            field,
            format!("is {chars} characters long; at most {QUERY_MAX_CHARS} are allowed"),
        ));
    }
    let phone_like = trimmed.chars().any(|c| c.is_ascii_digit())
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || " .-()+".contains(c));
    if phone_like {
        return Ok(Some(trimmed.chars().filter(char::is_ascii_digit).collect()));
    }
    Ok(Some(deunicode(trimmed).to_lowercase()))
}

/// Validates an owner filter: empty means any owner; otherwise the rule of
/// the stored `owner_id` ([`short_text`]), so every stored owner can be
/// asked for.
pub fn owner_filter(field: &str, raw: &str) -> AppResult<Option<String>> {
    short_text(field, raw).map(|owner| (!owner.is_empty()).then_some(owner))
}

/// A customer to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    /// Profile fields.
    pub profile: Profile,
    /// Relationship; `None` for the tenant's default.
    pub relationship_id: Option<String>,
    /// Groups to join.
    pub group_ids: Vec<String>,
    /// Reason recorded with the initial relationship.
    pub reason: String,
}

/// Changes to a customer; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    /// New name.
    pub name: Option<String>,
    /// New phone (may be empty).
    pub phone: Option<String>,
    /// New email (may be empty).
    pub email: Option<String>,
    /// New owner.
    pub owner_id: Option<String>,
    /// `Some(None)` clears the source.
    pub source_id: Option<Option<String>>,
    /// New relationship (recorded as a manual change).
    pub relationship_id: Option<String>,
    /// New province.
    pub province: Option<String>,
    /// New company.
    pub company: Option<String>,
    /// New revenue.
    pub revenue: Option<i64>,
    /// New attributes (replacing all).
    pub attributes: Option<BTreeMap<String, String>>,
    /// Reason recorded with a relationship change.
    pub reason: String,
}

/// The orders of ListCustomers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerOrder {
    /// Newest first.
    Newest,
    /// By name.
    Name,
    /// Longest without contact first.
    LeastRecentContact,
}

impl CustomerOrder {
    /// Parses `order_by`.
    pub fn parse(raw: &str) -> AppResult<Self> {
        match raw
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "create_time desc" => Ok(Self::Newest),
            "name" | "name asc" => Ok(Self::Name),
            "last_contact_time" | "last_contact_time asc" => Ok(Self::LeastRecentContact),
            _ => Err(AppError::invalid(
                "order_by",
                format!(
                    "{} is not an order; use `create_time desc`, `name` or `last_contact_time`",
                    quoted(raw)
                ),
            )),
        }
    }
}

/// Which customers a list or count covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFilter {
    /// Members of this group.
    pub group_id: Option<String>,
    /// With `group_id`: members of its active subgroups too.
    pub include_subgroups: bool,
    /// From this source.
    pub source_id: Option<String>,
    /// Holding this relationship.
    pub relationship_id: Option<String>,
    /// Of this owner.
    pub owner_id: Option<String>,
    /// Matching this search (already in [`search_query`] form).
    pub query: Option<String>,
    /// Active, deleted or both.
    pub deleted: DeletedFilter,
    /// Matching this filter ([`Filter::All`] when none was given).
    pub filter: Filter,
}

impl CustomerFilter {
    /// The customers `filter` selects among those `deleted` picks, with no
    /// other filter (a rule's selection).
    pub fn only(filter: Filter, deleted: DeletedFilter) -> Self {
        Self {
            group_id: None,
            include_subgroups: false,
            source_id: None,
            relationship_id: None,
            owner_id: None,
            query: None,
            deleted,
            filter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_keep_digits_and_a_leading_plus() {
        assert_eq!(phone("p", "0912 345.678").unwrap(), "0912345678");
        assert_eq!(phone("p", "+84 (912) 345-678").unwrap(), "+84912345678");
        assert_eq!(phone("p", "").unwrap(), "");
        assert!(phone("p", "12ab").is_err());
        assert!(phone("p", "123").is_err());
        assert!(phone("p", "1+2345678").is_err());
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(email("e", "  An@Example.COM ").unwrap(), "an@example.com");
        for bad in [
            "no-at-sign",
            "a@b",
            "a@@b.vn",
            "a b@c.vn",
            "@c.vn",
            "a@.vn",
            "a@c.vn.",
        ] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn completion_counts_seven_profile_fields() {
        let mut profile = Profile {
            name: "An".into(),
            ..Default::default()
        };
        assert_eq!(profile.completion(), 14);
        profile.phone = "0912345678".into();
        profile.email = "an@example.com".into();
        assert_eq!(profile.completion(), 42);
        profile.owner_id = "u1".into();
        profile.source_id = Some("s".into());
        profile.province = "Huế".into();
        profile.company = "ACME".into();
        assert_eq!(profile.completion(), 100);
    }

    #[test]
    fn searches_ignore_accents_and_phone_punctuation() {
        let query = |raw: &str| search_query("q", raw).unwrap();
        assert_eq!(query(" Nguyễn ").as_deref(), Some("nguyen"));
        assert_eq!(query("0912 345").as_deref(), Some("0912345"));
        assert_eq!(query("  "), None);
        let profile = Profile {
            name: "Nguyễn Văn A".into(),
            ..Default::default()
        };
        assert!(profile.search_text().contains("nguyen van a"));
    }

    #[test]
    fn queries_and_revenue_are_bounded() {
        assert!(search_query("q", &"ạ".repeat(QUERY_MAX_CHARS)).is_ok());
        assert!(search_query("q", &"ạ".repeat(QUERY_MAX_CHARS + 1)).is_err());
        assert!(revenue("r", REVENUE_MAX).is_ok());
        assert!(revenue("r", REVENUE_MAX + 1).is_err());
        assert!(revenue("r", -1).is_err());
        assert_eq!(owner_filter("o", " ").unwrap(), None);
        assert!(owner_filter("o", &"u".repeat(SHORT_TEXT_MAX + 1)).is_err());
    }

    #[test]
    fn attribute_keys_are_snake_case() {
        let ok = BTreeMap::from([("ma_so_thue".to_owned(), "0101".to_owned())]);
        assert!(attributes("a", &ok).is_ok());
        let bad = BTreeMap::from([("Mã".to_owned(), "x".to_owned())]);
        assert!(attributes("a", &bad).is_err());
    }

    #[test]
    fn orders_accept_the_three_contract_spellings() {
        assert_eq!(CustomerOrder::parse("").unwrap(), CustomerOrder::Newest);
        assert_eq!(
            CustomerOrder::parse("create_time  desc").unwrap(),
            CustomerOrder::Newest
        );
        assert_eq!(CustomerOrder::parse("name").unwrap(), CustomerOrder::Name);
        assert_eq!(
            CustomerOrder::parse("last_contact_time").unwrap(),
            CustomerOrder::LeastRecentContact
        );
        assert!(CustomerOrder::parse("revenue").is_err());
    }
}
