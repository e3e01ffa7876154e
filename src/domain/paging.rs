//! Paging shared by every List call: page size rules, the soft-delete filter,
//! and opaque page tokens.
//!
//! A token is base64url text of a small JSON payload (the keyset cursor plus a
//! fingerprint of the request's filters) followed by a checksum. A token that
//! was edited, truncated or made up fails the checksum, and a token used with
//! other filters than the ones it was issued for fails the fingerprint: both
//! are INVALID_ARGUMENT, never a crash and never a silently wrong page.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page; larger requests are clamped to it.
pub const MAX_PAGE_SIZE: u64 = 1000;

const TOKEN_VERSION: u8 = 1;
const CHECKSUM_LEN: usize = 8;
const CHECKSUM_DOMAIN: &[u8] = b"crm-classify/page-token/v1";

/// One value of a keyset cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorValue {
    /// An integer sort key.
    Int(i64),
    /// A text sort key.
    Text(String),
}

impl CursorValue {
    /// Whether the value is of `kind`.
    pub fn is(&self, kind: CursorKind) -> bool {
        matches!(
            (self, kind),
            (Self::Int(_), CursorKind::Int) | (Self::Text(_), CursorKind::Text)
        )
    }
}

/// The type of one sort key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// Integer column.
    Int,
    /// Text column.
    Text,
}

/// The sort key of the last row of a page; the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub Vec<CursorValue>);

/// Which rows a List returns with respect to soft deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletedFilter {
    /// Active rows only.
    Active,
    /// Active and deleted rows (`show_deleted`).
    All,
    /// Deleted rows only (`deleted_only`).
    Only,
}

impl DeletedFilter {
    /// From a request's `show_deleted` and `deleted_only`; `deleted_only` wins.
    pub fn from_flags(show_deleted: bool, deleted_only: bool) -> Self {
        match (show_deleted, deleted_only) {
            (_, true) => Self::Only,
            (true, false) => Self::All,
            (false, false) => Self::Active,
        }
    }
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, 1–1000.
    pub size: u64,
    /// Where to start; `None` for the first page.
    pub after: Option<Cursor>,
    /// Fingerprint of the request's filters, carried into the next token.
    filters: String,
}

/// One page of rows.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Cursor of the last row when more rows follow.
    pub next: Option<Cursor>,
    /// Rows matching the filters across all pages.
    pub total: u64,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    f: String,
    k: Cursor,
}

/// A request's `page_size`: `default` for 0, at most `max`; negative is
/// INVALID_ARGUMENT.
pub fn page_size_of(page_size: i32, default: u64, max: u64) -> AppResult<u64> {
    match page_size {
        n if n < 0 => Err(AppError::invalid("page_size", "may not be negative")),
        0 => Ok(default),
        n => Ok((n as u64).min(max)),
    }
}

impl PageRequest {
    /// Validates `page_size` and `page_token`. `filters` fingerprints every
    /// filter of the request (see [`fingerprint`]), so a token only works with
    /// the filters it was issued for.
    pub fn parse(page_size: i32, page_token: &str, filters: String) -> AppResult<Self> {
        let size = page_size_of(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, &filters)?)
        };
        Ok(Self {
            size,
            after,
            filters,
        })
    }

    /// The `next_page_token` for a page, empty on the last page.
    pub fn next_token<T>(&self, page: &Page<T>) -> String {
        page.next
            .as_ref()
            .map(|cursor| encode(cursor, &self.filters))
            .unwrap_or_default()
    }
}

/// A short fingerprint of some bytes (a request's encoded filters).
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(CHECKSUM_DOMAIN);
    hasher.update(payload);
    let digest = hasher.finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

fn encode(cursor: &Cursor, filters: &str) -> String {
    let payload = serde_json::to_vec(&Payload {
        v: TOKEN_VERSION,
        f: filters.to_owned(),
        k: cursor.clone(),
    })
    .unwrap_or_default();
    let mut bytes = payload.clone();
    bytes.extend_from_slice(&checksum(&payload));
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode(token: &str, filters: &str) -> AppResult<Cursor> {
    let invalid = |why: &str| AppError::invalid("page_token", why.to_owned());
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("is not a token this service issued"))?;
    if bytes.len() <= CHECKSUM_LEN {
        return Err(invalid("is not a token this service issued"));
    }
    let (payload, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(payload) != sum {
        return Err(invalid("is damaged or was not issued by this service"));
    }
    let payload: Payload = serde_json::from_slice(payload)
        .map_err(|_| invalid("is not a token this service issued"))?;
    if payload.v != TOKEN_VERSION {
        return Err(invalid(
            "comes from another version of this service; start from the first page",
        ));
    }
    if payload.f != filters {
        return Err(invalid(
            "was issued for different filters; start from the first page",
        ));
    }
    Ok(payload.k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with_next(next: Cursor) -> Page<()> {
        Page {
            items: vec![],
            next: Some(next),
            total: 0,
        }
    }

    #[test]
    fn page_sizes_default_clamp_and_reject_negatives() {
        assert_eq!(PageRequest::parse(0, "", "f".into()).unwrap().size, 50);
        assert_eq!(PageRequest::parse(5000, "", "f".into()).unwrap().size, 1000);
        assert!(PageRequest::parse(-1, "", "f".into()).is_err());
    }

    #[test]
    fn a_token_round_trips_with_the_same_filters_only() {
        let first = PageRequest::parse(10, "", "abc".into()).unwrap();
        let cursor = Cursor(vec![CursorValue::Text("khách".into()), CursorValue::Int(7)]);
        let token = first.next_token(&page_with_next(cursor.clone()));
        assert_eq!(
            PageRequest::parse(10, &token, "abc".into()).unwrap().after,
            Some(cursor)
        );
        assert!(PageRequest::parse(10, &token, "other".into()).is_err());
    }

    #[test]
    fn every_single_character_edit_of_a_token_is_rejected() {
        let first = PageRequest::parse(10, "", "abc".into()).unwrap();
        let token = first.next_token(&page_with_next(Cursor(vec![CursorValue::Int(42)])));
        let alphabet: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect();
        for i in 0..token.len() {
            for &c in &alphabet {
                let mut edited: Vec<char> = token.chars().collect();
                if edited[i] == c {
                    continue;
                }
                edited[i] = c;
                let edited: String = edited.into_iter().collect();
                // Changing the final character may only alter unused padding bits.
                if URL_SAFE_NO_PAD.decode(&edited).ok() == URL_SAFE_NO_PAD.decode(&token).ok() {
                    continue;
                }
                assert!(
                    PageRequest::parse(10, &edited, "abc".into()).is_err(),
                    "accepted {edited}"
                );
            }
        }
        assert!(PageRequest::parse(10, "garbage!", "abc".into()).is_err());
        assert!(PageRequest::parse(10, &token[..token.len() - 3], "abc".into()).is_err());
    }
}
