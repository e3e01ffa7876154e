//! Tracing set up once for the process: pretty lines for people, JSON for log
//! collectors. `RUST_LOG` overrides the default filter. Each call's span,
//! which carries the W3C trace id of a caller that sent `traceparent`. Also
//! the throttle that keeps a retry loop's warnings to a few lines a minute.

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

/// The span of one call: its method and, when the caller sent a valid W3C
/// `traceparent`, its trace id, so every line the call logs can be found
/// with the caller's trace.
pub fn call_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        method = %request.uri().path(),
        trace_id = tracing::field::Empty
    );
    if let Some(trace_id) = request
        .headers()
        .get("traceparent")
        .and_then(|value| trace_id(value.as_bytes()))
    {
        span.record("trace_id", trace_id);
    }
    span
}

/// The trace id of a W3C `traceparent` value of version 00
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase,
/// neither id all zeros); `None` for anything else, which is ignored.
pub fn trace_id(traceparent: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(traceparent).ok()?;
    let mut parts = text.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let zero = |field: &str| field.bytes().all(|b| b == b'0');
    (parts.next().is_none()
        && version == "00"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && !zero(trace_id)
        && !zero(parent_id))
    .then_some(trace_id)
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

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_and_anything_else_nothing() {
        assert_eq!(
            trace_id(TRACEPARENT.as_bytes()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00",
            // Another version, uppercase, too short or long, all zeros.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(trace_id(b"00-\xff"), None);
    }

    /// Writes log lines into a shared buffer.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a line logged inside the span of a call with `traceparent`
    /// says, in JSON as the production log writes it.
    fn logged_in_call(traceparent: Option<&str>) -> serde_json::Value {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let mut request = http::Request::builder().uri("/crm.v1.CustomerService/GetCustomer");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let request = request.body(()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            call_span(&request).in_scope(|| tracing::warn!("inside the call"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        serde_json::from_str(text.trim()).unwrap()
    }

    #[test]
    fn a_calls_log_line_carries_the_trace_id_its_caller_sent() {
        let line = logged_in_call(Some(TRACEPARENT));
        assert_eq!(line["message"], "inside the call");
        assert_eq!(
            line["span"]["method"],
            "/crm.v1.CustomerService/GetCustomer"
        );
        assert_eq!(line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let line = logged_in_call(Some(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ));
        assert_eq!(
            line["span"]["method"],
            "/crm.v1.CustomerService/GetCustomer"
        );
        assert!(line["span"].get("trace_id").is_none(), "{line}");
        let line = logged_in_call(None);
        assert!(line["span"].get("trace_id").is_none(), "{line}");
    }

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
