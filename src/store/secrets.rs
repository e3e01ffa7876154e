//! Secrets every replica shares, kept in `service_secrets`: the key page
//! tokens are signed with. The first replica that needs the key generates
//! a random one and inserts it with `ON CONFLICT DO NOTHING`, then every
//! replica reads back the one row that won, so replicas starting together
//! agree on one key and a token issued by one is honoured by all. The key
//! is read once per process and kept.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use super::Store;
use crate::{
    domain::paging::{PAGE_KEY_LEN, PageKey},
    error::{AppError, AppResult},
};

/// The `service_secrets` row holding the page-token key (hex).
const PAGE_TOKEN_KEY: &str = "page_token_key";

impl Store {
    /// The key page tokens are signed with, created on first use.
    pub async fn page_key(&self) -> AppResult<PageKey> {
        self.page_key
            .get_or_try_init(|| self.load_page_key())
            .await
            .cloned()
    }

    async fn load_page_key(&self) -> AppResult<PageKey> {
        let backend = self.db.get_database_backend();
        let mut fresh = [0u8; PAGE_KEY_LEN];
        getrandom::fill(&mut fresh)
            .map_err(|e| AppError::Internal(format!("no random bytes for a page key: {e}")))?;
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        let (insert, select) = match backend {
            DatabaseBackend::Postgres => (
                "INSERT INTO service_secrets (name, value, create_time) VALUES ($1, $2, $3)
                    ON CONFLICT (name) DO NOTHING",
                "SELECT value FROM service_secrets WHERE name = $1",
            ),
            _ => (
                "INSERT INTO service_secrets (name, value, create_time) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO NOTHING",
                "SELECT value FROM service_secrets WHERE name = ?",
            ),
        };
        self.writer
            .execute_raw(Statement::from_sql_and_values(
                backend,
                insert,
                [PAGE_TOKEN_KEY.into(), hex.into(), self.now().into()],
            ))
            .await?;
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                select,
                [PAGE_TOKEN_KEY.into()],
            ))
            .await?
            .ok_or_else(|| AppError::Internal("the page-token key is missing".into()))?;
        let stored: String = row.try_get_by_index(0)?;
        parse_key(&stored).ok_or_else(|| {
            AppError::Internal(format!(
                "service_secrets.{PAGE_TOKEN_KEY} is not {PAGE_KEY_LEN} bytes in hex"
            ))
        })
    }
}

/// A key from its stored hex form.
fn parse_key(hex: &str) -> Option<PageKey> {
    if hex.len() != 2 * PAGE_KEY_LEN || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; PAGE_KEY_LEN];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(PageKey::from_bytes(bytes))
}
