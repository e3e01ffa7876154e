//! How filters compare text, the same in every evaluator: text fields are
//! folded (transliterated to ASCII, lower-cased, every run of other
//! characters one space), so "Nguyễn  Văn-An" and "nguyen van an" are
//! equal; `=` compares folded text whole, `VALUE*` is a folded prefix, and
//! `:` finds the folded words of the value as consecutive words inside.

/// The folded form of text: ASCII letters and digits, lower-cased, words
/// separated by single spaces, no space at either end. Defined with the
/// migrations, which fold the rows stored before the folded columns
/// existed: one definition for the stored columns and the evaluators.
pub use migrations::folding::{fold, folded_attributes};

/// `=`: equal once folded.
pub fn equals(field: &str, value: &str) -> bool {
    fold(field) == fold(value)
}

/// `VALUE*`: the folded field starts with the folded value.
pub fn starts_with(field: &str, prefix: &str) -> bool {
    fold(field).starts_with(&fold(prefix))
}

/// `:`: the value's folded words stand, consecutively, among the field's.
/// A value with no letters or digits matches nothing.
pub fn has_words(field: &str, value: &str) -> bool {
    let value = fold(value);
    !value.is_empty() && format!(" {} ", fold(field)).contains(&format!(" {value} "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_accents_and_punctuation() {
        assert_eq!(fold("  Nguyễn  Văn-An "), "nguyen van an");
        assert_eq!(fold("ĐÀ NẴNG"), "da nang");
        assert_eq!(fold("---"), "");
        assert!(equals("Công ty TNHH Đà Nẵng", "cong ty tnhh da nang"));
        assert!(!equals("Đà Nẵng", "Da"));
    }

    #[test]
    fn prefixes_and_words() {
        assert!(starts_with("Nguyễn Văn An", "nguy"));
        assert!(starts_with("Nguyễn Văn An", "Nguyễn V"));
        assert!(!starts_with("Nguyễn Văn An", "van"));
        assert!(has_words("Nguyễn Văn An", "văn"));
        assert!(has_words("Nguyễn Văn An", "van an"));
        assert!(!has_words("Nguyễn Văn An", "va"));
        assert!(!has_words("Nguyễn Văn An", "an van"));
        assert!(!has_words("Nguyễn Văn An", "  "));
    }
}
