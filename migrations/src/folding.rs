//! How customer text is folded for filtering, defined once for the whole
//! service: the folded columns are written by the service on every write
//! and by the migration that added them (for the rows already stored), so
//! both must fold alike — the service uses this very function
//! (`domain::filter::text::fold`). A change to the folding needs a new
//! migration that folds every row again.
//!
//! Folded text is ASCII letters and digits, lower-cased, each run of other
//! characters one space, no space at either end: "  Nguyễn  Văn-An " is
//! "nguyen van an". It holds no LIKE wildcard, so patterns made of it need
//! no escaping.

use std::collections::BTreeMap;

use deunicode::deunicode;

/// The folded form of `text`.
pub fn fold(text: &str) -> String {
    let ascii = deunicode(text).to_lowercase();
    let mut folded = String::with_capacity(ascii.len());
    for word in ascii.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if !folded.is_empty() {
            folded.push(' ');
        }
        folded.push_str(word);
    }
    folded
}

/// The stored form of a customer's folded attributes: a JSON object of
/// each key and its folded value.
pub fn folded_attributes(attributes: &BTreeMap<String, String>) -> String {
    let folded: BTreeMap<&str, String> = attributes
        .iter()
        .map(|(key, value)| (key.as_str(), fold(value)))
        .collect();
    // A map of strings always serialises.
    serde_json::to_string(&folded).unwrap_or_else(|_| "{}".to_owned())
}
