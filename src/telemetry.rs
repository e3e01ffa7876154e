//! Tracing set up once for the process: pretty lines for people, JSON for log
//! collectors. `RUST_LOG` overrides the default filter. Also the throttle
//! that keeps a retry loop's warnings to a few lines a minute.

use std::time::Duration;

use tokio::time::Instant;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls
/// keep the first subscriber), which tests rely on.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// How often a warning that keeps recurring (a database outage seen by a
/// loop that retries many times a second) is logged.
pub const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// Thins out a warning that a retry loop would repeat many times a second:
/// the first of a run is logged, then at most one per interval, saying how
/// many were held back since the last one. Clearing it (the trouble is
/// over) lets the next one through at once. Runs on tokio's clock, so
/// tests can pause it. Use through [`warn_throttled!`](crate::warn_throttled).
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last_logged: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// At most one warning per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last_logged: None,
            held_back: 0,
        }
    }

    /// Counts one occurrence: `Some(held back since the last one logged)`
    /// when this one is to be logged, `None` when it is held back.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last_logged {
            Some(last) if now.duration_since(last) < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }

    /// The trouble is over: the next occurrence is logged at once.
    pub fn clear(&mut self) {
        self.last_logged = None;
        self.held_back = 0;
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(REPEAT_EVERY)
    }
}

/// `tracing::warn!` through a [`Throttle`]: `warn_throttled!(throttle,
/// %error, "message")` logs when the throttle admits it, with a `held_back`
/// field counting the warnings skipped since the last one.
#[macro_export]
macro_rules! warn_throttled {
    ($throttle:expr, $($rest:tt)+) => {
        if let Some(held_back) = $throttle.admit() {
            ::tracing::warn!(held_back, $($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_recurring_warning_is_logged_first_then_once_per_interval_with_a_count() {
        let every = Duration::from_secs(10);
        let mut throttle = Throttle::new(every);
        assert_eq!(throttle.admit(), Some(0), "the first is logged");
        for _ in 0..39 {
            tokio::time::advance(Duration::from_millis(25)).await;
            assert_eq!(throttle.admit(), None, "repeats within the interval wait");
        }
        tokio::time::advance(every).await;
        assert_eq!(
            throttle.admit(),
            Some(39),
            "the next one counts those held back"
        );
        assert_eq!(throttle.admit(), None);
        throttle.clear();
        assert_eq!(
            throttle.admit(),
            Some(0),
            "after recovery the next is logged at once"
        );
    }
}
