//! Paging shared by every List call: page size rules, the soft-delete filter,
//! and opaque page tokens.
//!
//! A token is base64url text of a small JSON payload (the keyset cursor plus a
//! fingerprint of the request's filters) followed by an HMAC-SHA-256 tag under
//! the service's [`PageKey`]. A token that was edited, truncated, made up or
//! signed with another key fails the tag, and a token used with other filters
//! than the ones it was issued for fails the fingerprint: both are
//! INVALID_ARGUMENT, never a crash and never a silently wrong page.
//!
//! The tag is not the only defence: every value of a decoded cursor is
//! checked like a request field against the shape of its column
//! ([`Cursor::check`]), so even a validly signed token with odd content (a
//! leaked key, a bug) is INVALID_ARGUMENT before it reaches the database.

/// The violation reason of a page token that cannot be used.
const PAGE_TOKEN_INVALID: &str = "PAGE_TOKEN_INVALID";

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page; larger requests are clamped to it.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Version 2: signed with a key (version 1 had an unkeyed checksum).
const TOKEN_VERSION: u8 = 2;
/// Bytes of the HMAC tag kept in a token (of 32): 128 bits.
const TAG_LEN: usize = 16;
const TAG_DOMAIN: &[u8] = b"crm-classify/page-token/v2";
/// Longest text cursor value: above any key `text::sort_key` makes (256
/// ASCII bytes, a separator, and a name of at most 200 characters lower
/// cased, each at most 3 characters of at most 4 bytes: 2,657 bytes).
pub const CURSOR_TEXT_MAX_BYTES: usize = 4096;
/// Bytes of a [`PageKey`].
pub const PAGE_KEY_LEN: usize = 32;

/// The secret page tokens are signed with. Every replica must use the same
/// key (a token issued by one is read by another); see `store::secrets`.
#[derive(Clone)]
pub struct PageKey(Arc<[u8; PAGE_KEY_LEN]>);

impl PageKey {
    /// A key of these bytes.
    pub fn from_bytes(bytes: [u8; PAGE_KEY_LEN]) -> Self {
        Self(Arc::new(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0[..])
            .expect("HMAC takes a key of any length");
        mac.update(TAG_DOMAIN);
        mac
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        mac.update(payload);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        out
    }

    /// Whether `tag` is `payload`'s, compared in constant time.
    fn verifies(&self, payload: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_truncated_left(tag).is_ok()
    }
}

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(..)")
    }
}

/// One value of a keyset cursor. Values of one column compare as the
/// column does (a checked cursor holds the column's type).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorValue {
    /// An integer sort key.
    Int(i64),
    /// A text sort key.
    Text(String),
}

impl CursorValue {
    /// Whether the value could be in a column of `kind`: the type, and for
    /// text no NUL, a bounded length and the column's shape (ids in
    /// canonical form), for integers the column's range.
    pub fn fits(&self, kind: CursorKind) -> bool {
        match (self, kind) {
            (Self::Int(_), CursorKind::Int) => true,
            (Self::Int(i), CursorKind::Position) => (1..=i64::from(i32::MAX)).contains(i),
            (Self::Text(s), CursorKind::Id) => {
                Uuid::try_parse(s).is_ok_and(|u| u.hyphenated().to_string() == *s)
            }
            (Self::Text(s), CursorKind::SortKey) => {
                s.len() <= CURSOR_TEXT_MAX_BYTES && !s.contains('\0')
            }
            _ => false,
        }
    }
}

/// The type of one sort key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// A BIGINT column (times, sequences): any `i64`.
    Int,
    /// A position (INTEGER): 1 to `i32::MAX`.
    Position,
    /// An id: a UUID in canonical (lower-case, hyphenated) form.
    Id,
    /// A name order key (`text::sort_key`): text without NUL, at most
    /// [`CURSOR_TEXT_MAX_BYTES`] bytes.
    SortKey,
}

/// The sort key of the last row of a page; the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor(pub Vec<CursorValue>);

impl Cursor {
    /// INVALID_ARGUMENT (`page_token`) unless the cursor has one value per
    /// column of `kinds`, each fitting its column: a decoded cursor is
    /// checked like any request field before a query sees it.
    pub fn check(&self, kinds: &[CursorKind]) -> AppResult<()> {
        let fits = self.0.len() == kinds.len()
            && self
                .0
                .iter()
                .zip(kinds)
                .all(|(value, &kind)| value.fits(kind));
        if fits {
            Ok(())
        } else {
            Err(AppError::invalid_because(
                "page_token",
                PAGE_TOKEN_INVALID,
                "is not a token for this list",
            ))
        }
    }
}

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
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Rows per page, 1–1000.
    pub size: u64,
    /// Where to start; `None` for the first page.
    pub after: Option<Cursor>,
    /// Fingerprint of the request's filters, carried into the next token.
    filters: String,
    /// What the next token is signed with.
    key: PageKey,
    /// Whether the page's `total` is wanted (an export reads it once).
    pub counted: bool,
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
    /// the filters it was issued for; `key` signs and checks tokens.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: String,
        key: &PageKey,
    ) -> AppResult<Self> {
        let size = page_size_of(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, &filters, key)?)
        };
        Ok(Self {
            size,
            after,
            filters,
            key: key.clone(),
            counted: true,
        })
    }

    /// A page of `size` rows after `after`, read by the server for itself
    /// (an export): it issues no token, and its total is read only when
    /// `counted`.
    pub fn internal(size: u64, after: Option<Cursor>, counted: bool) -> Self {
        Self {
            size,
            after,
            filters: String::new(),
            key: PageKey::from_bytes([0; PAGE_KEY_LEN]),
            counted,
        }
    }

    /// The `next_page_token` for a page, empty on the last page.
    pub fn next_token<T>(&self, page: &Page<T>) -> String {
        page.next
            .as_ref()
            .map(|cursor| encode(cursor, &self.filters, &self.key))
            .unwrap_or_default()
    }
}

/// A short fingerprint of some bytes (a request's encoded filters).
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(cursor: &Cursor, filters: &str, key: &PageKey) -> String {
    let payload = serde_json::to_vec(&Payload {
        v: TOKEN_VERSION,
        f: filters.to_owned(),
        k: cursor.clone(),
    })
    .unwrap_or_default();
    let mut bytes = payload.clone();
    bytes.extend_from_slice(&key.tag(&payload));
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode(token: &str, filters: &str, key: &PageKey) -> AppResult<Cursor> {
    let invalid =
        |why: &str| AppError::invalid_because("page_token", PAGE_TOKEN_INVALID, why.to_owned());
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("is not a token this service issued"))?;
    if bytes.len() <= TAG_LEN {
        return Err(invalid("is not a token this service issued"));
    }
    let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    if !key.verifies(payload, tag) {
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

    fn key() -> PageKey {
        PageKey::from_bytes([7; PAGE_KEY_LEN])
    }

    fn parse(size: i32, token: &str, filters: &str) -> AppResult<PageRequest> {
        PageRequest::parse(size, token, filters.into(), &key())
    }

    fn page_with_next(next: Cursor) -> Page<()> {
        Page {
            items: vec![],
            next: Some(next),
            total: 0,
        }
    }

    #[test]
    fn page_sizes_default_clamp_and_reject_negatives() {
        assert_eq!(parse(0, "", "f").unwrap().size, 50);
        assert_eq!(parse(5000, "", "f").unwrap().size, 1000);
        assert!(parse(-1, "", "f").is_err());
    }

    #[test]
    fn a_token_round_trips_with_the_same_filters_only() {
        let first = parse(10, "", "abc").unwrap();
        let cursor = Cursor(vec![CursorValue::Text("khách".into()), CursorValue::Int(7)]);
        let token = first.next_token(&page_with_next(cursor.clone()));
        assert_eq!(parse(10, &token, "abc").unwrap().after, Some(cursor));
        assert!(parse(10, &token, "other").is_err());
    }

    #[test]
    fn every_single_character_edit_of_a_token_is_rejected() {
        let first = parse(10, "", "abc").unwrap();
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
                assert!(parse(10, &edited, "abc").is_err(), "accepted {edited}");
            }
        }
        assert!(parse(10, "garbage!", "abc").is_err());
        assert!(parse(10, &token[..token.len() - 3], "abc").is_err());
    }

    #[test]
    fn a_token_signed_with_another_key_is_rejected() {
        let first = parse(10, "", "abc").unwrap();
        let token = first.next_token(&page_with_next(Cursor(vec![CursorValue::Int(42)])));
        let other = PageKey::from_bytes([8; PAGE_KEY_LEN]);
        assert!(PageRequest::parse(10, &token, "abc".into(), &other).is_err());
        assert!(parse(10, &token, "abc").is_ok());
    }

    #[test]
    fn cursor_values_must_fit_their_columns() {
        let id = "0190a5b2-7c4e-7d3a-8f00-123456789abc";
        let text = |s: &str| CursorValue::Text(s.to_owned());
        assert!(text(id).fits(CursorKind::Id));
        for bad in [
            &id.to_uppercase(),
            "",
            "x",
            &format!("{id}\0"),
            &id.replace('-', ""),
        ] {
            assert!(!text(bad).fits(CursorKind::Id), "{bad:?}");
        }
        assert!(text("da nang\u{1}đà nẵng").fits(CursorKind::SortKey));
        assert!(!text("a\0b").fits(CursorKind::SortKey));
        assert!(!text(&"a".repeat(CURSOR_TEXT_MAX_BYTES + 1)).fits(CursorKind::SortKey));
        assert!(CursorValue::Int(i64::MIN).fits(CursorKind::Int));
        assert!(CursorValue::Int(1).fits(CursorKind::Position));
        for bad in [0, -1, i64::from(i32::MAX) + 1, i64::MAX] {
            assert!(!CursorValue::Int(bad).fits(CursorKind::Position), "{bad}");
        }
        assert!(!CursorValue::Int(1).fits(CursorKind::Id));
        assert!(!text(id).fits(CursorKind::Int));
        let cursor = Cursor(vec![CursorValue::Int(3), text(id)]);
        assert!(cursor.check(&[CursorKind::Int, CursorKind::Id]).is_ok());
        assert!(cursor.check(&[CursorKind::Int]).is_err());
        assert!(cursor.check(&[CursorKind::Id, CursorKind::Int]).is_err());
    }
}
