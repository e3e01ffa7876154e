//! `request_id` idempotency of Create calls. The key is claimed inside the
//! Create's own transaction, so a key is remembered exactly when the row it
//! created was committed; two concurrent calls with one key race on the
//! primary key and the loser's retry finds the winner's row. On PostgreSQL
//! calls with one key also take turns (an advisory lock on the key), so a
//! repeat never runs its checks beside the first call. Repeats get the
//! first call's result as it was, not the row as it is now.

use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    domain::catalog::IdempotencyKey,
    entity::idempotency_key,
    error::{AppError, AppResult},
};

/// How long a request id is remembered, in microseconds (24 hours).
pub const RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;

/// What a Create should do with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use (or no key): create, then [`remember`].
    Fresh,
    /// The key was used for the same request: answer with its first result
    /// (see [`first_result`]).
    Replay(String),
}

/// Looks the key up. A key reused for a different request is
/// INVALID_ARGUMENT; an expired one is forgotten.
pub async fn claim(
    tx: &impl ConnectionTrait,
    tenant: &str,
    operation: &str,
    key: Option<&IdempotencyKey>,
    now: i64,
) -> AppResult<Claim> {
    let Some(key) = key else {
        return Ok(Claim::Fresh);
    };
    // Calls with the same key take turns from here to their commit, so a
    // repeat that arrives while the first is being written waits and finds
    // it (instead of failing its duplicate checks against the first's row).
    // Callers claiming several keys claim them in key order.
    super::lock_scope(
        tx,
        tenant,
        &format!("request:{operation}:{}", key.request_id),
    )
    .await?;
    let existing = idempotency_key::Entity::find_by_id((
        tenant.to_owned(),
        operation.to_owned(),
        key.request_id.clone(),
    ))
    .one(tx)
    .await?;
    match existing {
        None => Ok(Claim::Fresh),
        Some(row) if row.create_time <= now - RETENTION_MICROS => {
            idempotency_key::Entity::delete_many()
                .filter(idempotency_key::Column::TenantId.eq(tenant))
                .filter(idempotency_key::Column::Operation.eq(operation))
                .filter(idempotency_key::Column::RequestId.eq(&key.request_id))
                .exec(tx)
                .await?;
            Ok(Claim::Fresh)
        }
        Some(row) if row.fingerprint == key.fingerprint => Ok(Claim::Replay(row.response)),
        Some(_) => Err(AppError::invalid(
            "request_id",
            "was already used for a different request in the last 24 hours; use a new request_id",
        )),
    }
}

/// The first result of a replayed Create.
pub fn first_result<T: DeserializeOwned>(response: &str) -> AppResult<T> {
    serde_json::from_str(response)
        .map_err(|e| AppError::Internal(format!("stored idempotent response: {e}")))
}

/// Remembers that `key` created `resource_id` with the result `response`.
pub async fn remember(
    tx: &impl ConnectionTrait,
    tenant: &str,
    operation: &str,
    key: Option<&IdempotencyKey>,
    resource_id: &str,
    response: &impl Serialize,
    now: i64,
) -> AppResult<()> {
    let Some(key) = key else {
        return Ok(());
    };
    let response = serde_json::to_string(response)
        .map_err(|e| AppError::Internal(format!("idempotent response: {e}")))?;
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        operation: Set(operation.to_owned()),
        request_id: Set(key.request_id.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        resource_id: Set(resource_id.to_owned()),
        response: Set(response),
        create_time: Set(now),
    })
    .exec_without_returning(tx)
    .await?;
    Ok(())
}
