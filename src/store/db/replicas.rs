//! What replicas sharing one PostgreSQL database tell each other: which
//! customer records to drop from their caches, and that a change log grew
//! (so their change feeds read it now rather than at the next poll; one
//! notice wakes the feeds of both logs, the relationship changes and the
//! memberships, so a write passes its tenant to [`announce`] when either
//! log grew).
//!
//! A write announces the customers it changed with `pg_notify` inside its
//! own transaction, so the notice is delivered when, and only if, it
//! commits. Every replica listens and drops those entries from its cache.
//! A replica that is not listening (starting, or its listening connection
//! lost) may have missed notices, so its cache stays off until it listens
//! again, and starts empty then. A connection can also die without a word
//! (a network flow dropped on the way), so a listener that has heard
//! nothing for a while sends itself a probe and gives up on the connection
//! when the probe does not come back.

use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, sqlx::postgres::PgListener,
};

use crate::store::customers::cache::{RecordCache, Touches};
use crate::{changes::feed::Feeds, error::AppResult, telemetry::Throttle, warn_throttled};

/// The notification channel of cache invalidations.
const CHANNEL: &str = "crm_classify_records";
/// The notification channel of new changes (in either log); the payload is
/// the tenant.
const CHANGES_CHANNEL: &str = "crm_classify_changes";
/// A notice longer than this names no ids: every cache is cleared instead
/// (PostgreSQL limits a payload to 8000 bytes).
const MAX_PAYLOAD: usize = 7000;
/// The payload that clears every cache.
const EVERYTHING: &str = "*";
/// Wait before listening again after the connection was lost.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// After this long without a notice the listener proves it still hears:
/// it sends itself a probe, which must come back within [`PROBE_TIMEOUT`].
/// A connection that died without a word (a dropped network flow) is found
/// within about a second, and the cache switched off.
const QUIET_LIMIT: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Payloads of probes start with this (ids never contain it).
const PROBE_PREFIX: &str = "probe:";

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

/// Sends, in the transaction `tx` and so delivered at commit, the notice
/// of the records `touches` names and, when `log_grew_of` names a tenant,
/// that one of its change logs (relationship changes, memberships) grew:
/// one statement for both (PostgreSQL only).
pub async fn announce(
    tx: &impl ConnectionTrait,
    touches: &Touches,
    log_grew_of: Option<&str>,
) -> AppResult<()> {
    if tx.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let notices: Vec<(&str, String)> = payload(touches)
        .map(|p| (CHANNEL, p))
        .into_iter()
        .chain(log_grew_of.map(|tenant| (CHANGES_CHANNEL, tenant.to_owned())))
        .collect();
    if notices.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> = (0..notices.len())
        .map(|i| format!("pg_notify(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let values: Vec<sea_orm::Value> = notices
        .into_iter()
        .flat_map(|(channel, payload)| [channel.into(), payload.into()])
        .collect();
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("SELECT {}", calls.join(", ")),
        values,
    ))
    .await?;
    Ok(())
}

/// `pg_notify(channel, payload)` on `db` (in its transaction, if it is one:
/// delivered at commit); nothing on SQLite.
async fn notify(db: &impl ConnectionTrait, channel: &str, payload: String) -> AppResult<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.into(), payload.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Applies the other replicas' notices to `cache` and `feeds` for as long
/// as it runs; keeps the cache off whenever it is not sure to hear them.
/// (The feeds also poll, so they need no such care.)
pub async fn listen(db: DatabaseConnection, cache: RecordCache, feeds: Feeds) {
    let pool = db.get_postgres_connection_pool().clone();
    // Retried every RECONNECT_PAUSE during an outage.
    let mut failures = Throttle::default();
    loop {
        cache.set_enabled(false);
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                // Report a lost connection at once instead of reconnecting
                // first, so the cache goes off before any notice is missed.
                listener.eager_reconnect(false);
                match listener.listen_all([CHANNEL, CHANGES_CHANNEL]).await {
                    Ok(()) => {
                        failures.clear();
                        cache.set_enabled(true);
                        tracing::debug!("listening for cache invalidations");
                        let why = hear(&db, &mut listener, &cache, &feeds).await;
                        tracing::warn!(%why, "stopped hearing cache invalidations; cache off");
                    }
                    Err(error) => {
                        warn_throttled!(failures, %error, "cannot listen for cache invalidations")
                    }
                }
            }
            Err(error) => {
                warn_throttled!(failures, %error, "cannot listen for cache invalidations")
            }
        }
        cache.set_enabled(false);
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// Applies notices until the listener fails or stops answering probes;
/// returns why it stopped.
async fn hear(
    db: &DatabaseConnection,
    listener: &mut PgListener,
    cache: &RecordCache,
    feeds: &Feeds,
) -> String {
    let mut probe: Option<(String, tokio::time::Instant)> = None;
    loop {
        let wait = match &probe {
            Some((_, sent)) => {
                (*sent + PROBE_TIMEOUT).saturating_duration_since(tokio::time::Instant::now())
            }
            None => QUIET_LIMIT,
        };
        match tokio::time::timeout(wait, listener.try_recv()).await {
            Ok(Ok(Some(notice))) if notice.channel() == CHANGES_CHANNEL => feeds.wake(),
            Ok(Ok(Some(notice))) => {
                let payload = notice.payload();
                if let Some(token) = payload.strip_prefix(PROBE_PREFIX) {
                    if probe.as_ref().is_some_and(|(sent, _)| sent == token) {
                        probe = None;
                    }
                } else {
                    cache.invalidate(&touches_of(payload));
                }
            }
            Ok(Ok(None)) => return "the connection was lost".into(),
            Ok(Err(error)) => return error.to_string(),
            Err(_) if probe.is_some() => return "a probe did not come back in time".into(),
            Err(_) => {
                // The probe's time runs from before it is sent: sending goes
                // through the pool, whose connections may be dead as well.
                let started = tokio::time::Instant::now();
                let token = crate::domain::ids::new_id();
                let send = notify(db, CHANNEL, format!("{PROBE_PREFIX}{token}"));
                match tokio::time::timeout(PROBE_TIMEOUT, send).await {
                    Ok(Ok(_)) => probe = Some((token, started)),
                    Ok(Err(error)) => return format!("cannot send a probe: {error}"),
                    Err(_) => return "a probe could not be sent in time".into(),
                }
            }
        }
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
