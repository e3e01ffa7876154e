//! Keeping the record caches of several replicas right on PostgreSQL.
//!
//! A write announces the customers it changed with `pg_notify` inside its
//! own transaction, so the notice is delivered when, and only if, it
//! commits. Every replica listens and drops those entries from its cache.
//! A replica that is not listening (starting, or its listening connection
//! lost) may have missed notices, so its cache stays off until it listens
//! again, and starts empty then.

use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, sqlx::postgres::PgListener,
};

use super::record_cache::{RecordCache, Touches};
use crate::error::AppResult;

/// The notification channel.
const CHANNEL: &str = "crm_classify_records";
/// A notice longer than this names no ids: every cache is cleared instead
/// (PostgreSQL limits a payload to 8000 bytes).
const MAX_PAYLOAD: usize = 7000;
/// The payload that clears every cache.
const EVERYTHING: &str = "*";
/// Wait before listening again after the connection was lost.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

fn payload(touches: &Touches) -> Option<String> {
    match touches {
        Touches::Nothing => None,
        Touches::Everything => Some(EVERYTHING.to_owned()),
        Touches::Customers(ids) if ids.is_empty() => None,
        Touches::Customers(ids) => {
            let joined = ids.join(",");
            Some(if joined.len() > MAX_PAYLOAD {
                EVERYTHING.to_owned()
            } else {
                joined
            })
        }
    }
}

fn touches_of(payload: &str) -> Touches {
    if payload == EVERYTHING {
        Touches::Everything
    } else {
        Touches::Customers(payload.split(',').map(str::to_owned).collect())
    }
}

/// Sends the notice of `touches` in the transaction `tx` (PostgreSQL only).
pub async fn announce(tx: &impl ConnectionTrait, touches: &Touches) -> AppResult<()> {
    if tx.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    if let Some(payload) = payload(touches) {
        tx.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), payload.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Applies the other replicas' notices to `cache` for as long as it runs;
/// keeps the cache off whenever it is not listening.
pub async fn listen(db: DatabaseConnection, cache: RecordCache) {
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        cache.set_enabled(false);
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for cache invalidations; cache off");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for cache invalidations; cache off");
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        }
        cache.set_enabled(true);
        tracing::debug!("listening for cache invalidations");
        loop {
            match listener.try_recv().await {
                Ok(Some(notice)) => cache.invalidate(&touches_of(notice.payload())),
                Ok(None) => {
                    tracing::warn!("lost the cache-invalidation connection; cache off");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cache-invalidation listener failed; cache off");
                    break;
                }
            }
        }
        cache.set_enabled(false);
        drop(listener);
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_long_ones_clear_everything() {
        assert_eq!(payload(&Touches::Nothing), None);
        let two = Touches::Customers(vec!["a".into(), "b".into()]);
        assert_eq!(touches_of(&payload(&two).unwrap()), two);
        assert_eq!(
            touches_of(&payload(&Touches::Everything).unwrap()),
            Touches::Everything
        );
        let many = Touches::Customers((0..1000).map(|i| format!("{i:036}")).collect());
        assert_eq!(payload(&many).as_deref(), Some(EVERYTHING));
    }
}
