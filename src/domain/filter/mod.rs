//! The customer filter language: the subset of AIP-160 the contract names
//! ("Filtering"), parsed once into a typed [`Filter`] that every evaluator
//! works from. [`syntax`] reads the text (nom); [`tree`] checks fields,
//! operators and values and builds the typed filter. Errors are
//! INVALID_ARGUMENT on `filter`, naming the character offset and what was
//! expected there.

pub mod eval;
mod reads;
mod syntax;
pub mod text;
mod tree;

pub use reads::Reads;
pub use tree::{Comparison, Field, Filter, Kind, Op, Time, Value};

use crate::error::{AppError, AppResult};

/// Longest filter, in characters.
pub const MAX_LENGTH: usize = 2_000;
/// Most comparisons (and `in_group` calls) in one filter.
pub const MAX_COMPARISONS: usize = 50;
/// Deepest nesting of parentheses and `NOT`.
pub const MAX_DEPTH: usize = 8;

/// The request field filters arrive in.
const FIELD: &str = "filter";
/// The violation reason of a filter over the length, comparison or
/// nesting limits (FILTER_SYNTAX: one that does not parse or type-check).
const TOO_COMPLEX: &str = "FILTER_TOO_COMPLEX";

/// Parses `text` into a filter; the empty (or blank) filter is
/// [`Filter::All`].
pub fn parse(text: &str) -> AppResult<Filter> {
    parse_field(text, FIELD)
}

/// [`parse`] for a filter that arrives in request field `field` (a group's
/// rule, say): its errors name that field.
pub fn parse_field(text: &str, field: &str) -> AppResult<Filter> {
    parse_text(text).map_err(|e| e.for_field(FIELD, field))
}

fn parse_text(text: &str) -> AppResult<Filter> {
    let length = text.chars().count();
    if length > MAX_LENGTH {
        return Err(AppError::invalid_because(
            FIELD,
            TOO_COMPLEX,
            format!("is {length} characters long; at most {MAX_LENGTH}"),
        ));
    }
    if let Some(at) = text.find('\0') {
        return Err(invalid_at(text, at, "a NUL character is not allowed"));
    }
    if let Some(at) = too_deep(text) {
        return Err(invalid_at(
            text,
            at,
            format!("nesting is deeper than {MAX_DEPTH} levels"),
        ));
    }
    let node = match syntax::parse(text) {
        Ok(Some(node)) => node,
        Ok(None) => return Ok(Filter::All),
        Err(e) => return Err(invalid_at(text, e.at, format!("expected {}", e.expected))),
    };
    let filter = tree::typed(&node).map_err(|m| invalid_at(text, m.at, m.message))?;
    let comparisons = count(&filter);
    if comparisons > MAX_COMPARISONS {
        return Err(AppError::invalid_because(
            FIELD,
            TOO_COMPLEX,
            format!("has {comparisons} comparisons; at most {MAX_COMPARISONS}"),
        ));
    }
    if depth(&filter) > MAX_DEPTH {
        return Err(AppError::invalid_because(
            FIELD,
            TOO_COMPLEX,
            format!("nesting is deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(filter)
}

/// INVALID_ARGUMENT on `filter`: `message` at byte offset `at`, told as a
/// character offset.
fn invalid_at(text: &str, at: usize, message: impl std::fmt::Display) -> AppError {
    let chars = text.get(..at).map_or(at, |before| before.chars().count());
    AppError::invalid_because(FIELD, "FILTER_SYNTAX", format!("{message} at {chars}"))
}

/// The byte offset of the first `(` nested deeper than [`MAX_DEPTH`],
/// outside strings: found before parsing, so that no input can make the
/// parser recurse deeply.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(i);
                    }
                }
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
}

fn count(filter: &Filter) -> usize {
    match filter {
        Filter::All => 0,
        Filter::And(parts) | Filter::Or(parts) => parts.iter().map(count).sum(),
        Filter::Not(inner) => count(inner),
        Filter::Compare(_) | Filter::Present(_) | Filter::InGroup(_) => 1,
    }
}

/// Nesting of `NOT` and groups of `AND`/`OR` under one another.
fn depth(filter: &Filter) -> usize {
    match filter {
        Filter::All | Filter::Compare(_) | Filter::Present(_) | Filter::InGroup(_) => 0,
        Filter::And(parts) | Filter::Or(parts) => 1 + parts.iter().map(depth).max().unwrap_or(0),
        Filter::Not(inner) => 1 + depth(inner),
    }
}

#[cfg(test)]
mod tests;
