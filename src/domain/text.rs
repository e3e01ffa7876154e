//! Text rules shared by every resource: names, descriptions, codes and the
//! case-insensitive name key used for uniqueness.

use deunicode::deunicode;
use unicode_normalization::UnicodeNormalization;

use crate::error::{AppError, AppResult, quoted};

/// Longest name, in characters, after trimming.
pub const NAME_MAX_CHARS: usize = 200;
/// Longest description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
/// Longest code.
pub const CODE_MAX_LEN: usize = 64;
/// Longest transliterated part of a sort key.
const SORT_PREFIX_MAX: usize = 256;

/// Validates a required name: trimmed, 1–200 characters. The trimmed text is
/// kept exactly as given (no case or Unicode changes).
pub fn name(field: &str, raw: &str) -> AppResult<String> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(AppError::invalid(field, "is required and may not be blank"));
    }
    if chars > NAME_MAX_CHARS {
        return Err(AppError::invalid(
            field,
            format!("is {chars} characters long; at most {NAME_MAX_CHARS} are allowed"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            "may not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Validates a description: at most 2000 characters, kept as given.
pub fn description(field: &str, raw: &str) -> AppResult<String> {
    let chars = raw.chars().count();
    if chars > DESCRIPTION_MAX_CHARS {
        return Err(AppError::invalid(
            field,
            format!("is {chars} characters long; at most {DESCRIPTION_MAX_CHARS} are allowed"),
        ));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(AppError::invalid(
            field,
            "may not contain control characters other than tabs and line breaks",
        ));
    }
    Ok(raw.to_owned())
}

/// Validates a code given by the caller: `^[A-Z0-9_]{1,64}$`.
pub fn code(field: &str, raw: &str) -> AppResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= CODE_MAX_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(AppError::invalid(
            field,
            format!(
                "{} is not a code: use 1–{CODE_MAX_LEN} of A–Z, 0–9 and _",
                quoted(raw)
            ),
        ))
    }
}

/// The key names are compared by: NFC-normalised and lower-cased, so
/// "KHÁCH VIP" and "khách vip" clash whatever the input's Unicode form.
pub fn name_key(name: &str) -> String {
    name.nfc().collect::<String>().to_lowercase()
}

/// The key lists are ordered by: the name transliterated to ASCII and
/// lower-cased ("Đà Nẵng" → "da nang"), then the exact name key to order
/// names that transliterate alike.
pub fn sort_key(name: &str) -> String {
    // Transliteration can turn one character into dozens; the cap keeps the
    // key well inside PostgreSQL's index entry limit.
    let ascii: String = deunicode(name)
        .to_lowercase()
        .chars()
        .take(SORT_PREFIX_MAX)
        .collect();
    format!("{ascii}\u{1}{}", name_key(name))
}

/// Derives a code from a name: transliterated to ASCII, upper case, every run
/// of other characters turned into one `_`, trimmed of `_`. Falls back to
/// `fallback` when nothing is left (a name of only symbols).
pub fn code_from_name(name: &str, fallback: &str) -> String {
    let ascii = deunicode(name);
    let mut code = String::with_capacity(ascii.len());
    let mut pending_sep = false;
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_sep && !code.is_empty() {
                code.push('_');
            }
            pending_sep = false;
            code.push(c.to_ascii_uppercase());
        } else {
            pending_sep = true;
        }
    }
    if code.is_empty() {
        code.push_str(fallback);
    }
    truncate_code(&code, CODE_MAX_LEN)
}

/// `base` with the clash suffix `_n` appended, shortened so the result stays
/// within the code length limit.
pub fn code_with_suffix(base: &str, n: u32) -> String {
    let suffix = format!("_{n}");
    let mut code = truncate_code(base, CODE_MAX_LEN - suffix.len());
    code.push_str(&suffix);
    code
}

fn truncate_code(code: &str, max: usize) -> String {
    // Codes are ASCII, so bytes are characters.
    code[..code.len().min(max)].trim_end_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_transliterated_from_vietnamese_names() {
        assert_eq!(code_from_name("Khách hàng VIP", "GROUP"), "KHACH_HANG_VIP");
        assert_eq!(code_from_name("Đà Nẵng", "GROUP"), "DA_NANG");
        assert_eq!(code_from_name("Đừng quên", "REL"), "DUNG_QUEN");
        assert_eq!(
            code_from_name("  --Hà  Nội!! 2024 ", "GROUP"),
            "HA_NOI_2024"
        );
        assert_eq!(code_from_name("!!!", "GROUP"), "GROUP");
    }

    #[test]
    fn long_codes_are_cut_and_suffixes_fit_the_limit() {
        let long = "a".repeat(100);
        assert_eq!(code_from_name(&long, "G").len(), CODE_MAX_LEN);
        let with_suffix = code_with_suffix(&code_from_name(&long, "G"), 12);
        assert_eq!(with_suffix.len(), CODE_MAX_LEN);
        assert!(with_suffix.ends_with("_12"));
        assert_eq!(code_with_suffix("VIP", 2), "VIP_2");
    }

    #[test]
    fn names_are_trimmed_and_limited_in_characters_not_bytes() {
        assert_eq!(name("n", "  Khách  ").unwrap(), "Khách");
        assert!(name("n", "   ").is_err());
        assert!(name("n", &"ạ".repeat(200)).is_ok());
        assert!(name("n", &"ạ".repeat(201)).is_err());
        assert!(name("n", "a\u{0}b").is_err());
    }

    #[test]
    fn name_keys_ignore_case_and_unicode_form() {
        let precomposed = "KHÁCH VIP";
        let decomposed = "kha\u{0301}ch vip";
        assert_eq!(name_key(precomposed), name_key(decomposed));
    }

    #[test]
    fn sort_keys_stay_short_whatever_the_name_expands_to() {
        let name = "\u{fdfa}".repeat(NAME_MAX_CHARS);
        assert!(deunicode(&name).len() > 2000);
        assert!(sort_key(&name).len() < 2000);
        assert!(sort_key("Đà Nẵng").starts_with("da nang"));
    }

    #[test]
    fn descriptions_keep_line_breaks_but_not_other_control_characters() {
        assert!(description("d", "line\nnext\ttab").is_ok());
        assert!(description("d", "a\u{0}b").is_err());
    }

    #[test]
    fn codes_must_match_the_pattern() {
        assert!(code("c", "VIP_1").is_ok());
        assert!(code("c", "vip").is_err());
        assert!(code("c", "").is_err());
        assert!(code("c", &"A".repeat(65)).is_err());
    }
}
