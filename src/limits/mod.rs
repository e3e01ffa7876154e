//! Limits that keep one tenant, or one burst, from slowing everyone: a
//! tower layer in front of every service checks each call's tenant rate
//! (`rate`), its place among the server's calls in flight (load
//! shedding) and, for the change streams, the tenant's open watches
//! (`watches`); what a call takes is given back when its response body
//! ends (`body`). The request size limit is tonic's, set on each service
//! (see `app`), and its status is told in [`crate::transport`].
//!
//! Health and reflection pass untouched: an orchestrator must see the
//! server SERVING while it sheds load, and an operator must be able to
//! look at it. The tenant is the `x-tenant-id` header (absent: the default
//! tenant), which authentication, running outside this layer, sets to
//! the token's tenant. A header the handlers will refuse (bad characters,
//! sent twice) counts against no tenant: those calls are refused before
//! any database work.

pub mod body;
pub mod rate;
pub mod watches;

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::{
    Code, Status,
    body::Body,
    codegen::{Bytes, http},
};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use self::{
    body::{Held, Holding},
    rate::TenantRate,
    watches::WatchSlots,
};
use crate::{
    clock::SharedClock,
    config::Config,
    domain::tenant::{DEFAULT_TENANT, TenantId},
    error::ERROR_DOMAIN,
    grpc::TENANT_HEADER,
};

/// The two change streams: long-lived, so they hold a watch slot of their
/// tenant instead of a place among the calls in flight.
pub const WATCH_PATHS: [&str; 2] = [
    "/crm.v1.RelationshipService/WatchRelationshipChanges",
    "/crm.v1.GroupService/WatchGroupMembershipChanges",
];

/// Services no limit applies to: health and reflection (v1 and v1alpha).
const EXEMPT_PREFIXES: [&str; 2] = ["/grpc.health.v1.", "/grpc.reflection."];

/// How long a shed call is told to wait: calls in flight finish in
/// milliseconds, and a client that retries sooner only adds to the crowd.
pub const SHED_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The limits of one server, shared by every connection; a tower layer.
#[derive(Clone)]
pub struct Limits {
    shared: Arc<Shared>,
}

struct Shared {
    /// `None`: no rate limit.
    rate: Option<TenantRate>,
    /// Places among the calls in flight and how many there are; `None`: no
    /// limit.
    calls: Option<(Arc<Semaphore>, usize)>,
    /// `None`: no cap.
    watches: Option<WatchSlots>,
    /// Counts the calls that gave back a place or a watch slot.
    released: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Limits {
    /// The limits `config` asks for; an error names a flag it cannot take.
    /// The rate is measured on `clock`, the service's.
    pub fn from_config(config: &Config, clock: SharedClock) -> Result<Self, String> {
        if config.max_request_bytes == 0 {
            return Err("--max-request-bytes must be more than 0".into());
        }
        let calls = (config.max_concurrent_calls > 0).then(|| {
            let max = config.max_concurrent_calls.min(Semaphore::MAX_PERMITS);
            (Arc::new(Semaphore::new(max)), max)
        });
        Ok(Self {
            shared: Arc::new(Shared {
                rate: TenantRate::new(config.tenant_rate, config.tenant_burst, clock)?,
                calls,
                watches: (config.max_watches_per_tenant > 0)
                    .then(|| WatchSlots::new(config.max_watches_per_tenant)),
                released: Arc::new(tokio::sync::watch::channel(0).0),
            }),
        })
    }

    /// Changes each time a call gives back its place among the calls in
    /// flight or its watch slot: when the client's stream is gone, which
    /// the client itself sees no event of.
    pub fn released(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.released.subscribe()
    }

    /// Admits a call to `path` with `headers`, with what it holds while in
    /// flight, or refuses it with the status to answer.
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Held, Status> {
        let mut held = Held {
            permit: None,
            watch: None,
            released: Some(self.shared.released.clone()),
        };
        if EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            return Ok(held);
        }
        let tenant = tenant(headers);
        if let (Some(rate), Some(tenant)) = (&self.shared.rate, tenant) {
            rate.check(tenant)
                .map_err(|wait| over_rate(tenant, rate, wait))?;
        }
        if WATCH_PATHS.contains(&path) {
            if let (Some(watches), Some(tenant)) = (&self.shared.watches, tenant) {
                held.watch = Some(
                    watches
                        .open(tenant)
                        .ok_or_else(|| too_many_watches(tenant, watches.max()))?,
                );
            }
        } else if let Some((calls, max)) = &self.shared.calls {
            held.permit = Some(calls.clone().try_acquire_owned().map_err(|_| shed(*max))?);
        }
        Ok(held)
    }
}

/// The tenant a call counts against: its one valid `x-tenant-id`, or the
/// default tenant without one; `None` for a header the handlers refuse.
fn tenant(headers: &http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(TENANT_HEADER).iter();
    let Some(value) = values.next() else {
        return Some(DEFAULT_TENANT);
    };
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    TenantId::parse(Some(value)).ok().map(|_| value)
}

/// RESOURCE_EXHAUSTED for a tenant over its rate: RetryInfo with the wait
/// governor computed, a QuotaFailure naming the tenant.
fn over_rate(tenant: &str, rate: &TenantRate, wait: Duration) -> Status {
    let quota = format!(
        "{} calls per second, bursts of {}",
        rate.rate(),
        rate.burst()
    );
    let mut details = ErrorDetails::with_retry_info(Some(wait));
    details
        .add_quota_failure_violation(format!("tenant:{tenant}"), quota.clone())
        .set_error_info(
            "TENANT_RATE_LIMITED",
            ERROR_DOMAIN,
            HashMap::from([
                ("tenant".to_owned(), tenant.to_owned()),
                ("retry_delay_ms".to_owned(), wait.as_millis().to_string()),
            ]),
        );
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "tenant `{tenant}` is over its call rate ({quota}); retry after {}, and spread its calls out",
            humantime::format_duration(wait)
        ),
        details,
    )
}

/// RESOURCE_EXHAUSTED for one watch too many: a QuotaFailure naming the
/// tenant.
fn too_many_watches(tenant: &str, max: usize) -> Status {
    let quota = format!("{max} open change streams");
    let mut details =
        ErrorDetails::with_quota_failure_violation(format!("tenant:{tenant}"), quota.clone());
    details.set_error_info(
        "TOO_MANY_WATCHES",
        ERROR_DOMAIN,
        HashMap::from([
            ("tenant".to_owned(), tenant.to_owned()),
            ("max_watches".to_owned(), max.to_string()),
        ]),
    );
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "tenant `{tenant}` has {quota} already, its limit; close one it no longer reads (one stream can watch several groups or customers)"
        ),
        details,
    )
}

/// UNAVAILABLE for a call over the server's calls in flight: RetryInfo
/// with a short delay.
fn shed(max: usize) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(SHED_RETRY_DELAY));
    details.set_error_info(
        "SERVER_OVERLOADED",
        ERROR_DOMAIN,
        HashMap::from([("max_concurrent_calls".to_owned(), max.to_string())]),
    );
    Status::with_error_details(
        Code::Unavailable,
        format!(
            "the server has {max} calls in flight, its limit, and sheds this one; retry after {} (with backoff), or on another replica",
            humantime::format_duration(SHED_RETRY_DELAY)
        ),
        details,
    )
}

impl<S> Layer<S> for Limits {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limits: self.clone(),
        }
    }
}

/// A service behind [`Limits`].
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: Limits,
}

impl<S, B> Service<http::Request<Body>> for Limited<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let held = match self.limits.admit(request.uri().path(), request.headers()) {
            Ok(held) => held,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        // The service made ready is the one called; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            // A trailers-only answer (an error) is over once sent: nothing
            // stays held for it.
            if held.is_empty() || response.headers().contains_key("grpc-status") {
                return Ok(response.map(Body::new));
            }
            Ok(response.map(|body| Body::new(Holding::new(Body::new(body), held))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{group_service_server, relationship_service_server};

    fn limits(configure: impl FnOnce(&mut Config)) -> Limits {
        let mut config = Config::from_defaults();
        configure(&mut config);
        Limits::from_config(&config, Arc::new(crate::clock::SystemClock)).expect("valid limits")
    }

    fn headers(tenant: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(tenant) = tenant {
            headers.insert(TENANT_HEADER, tenant.parse().expect("header"));
        }
        headers
    }

    const GET: &str = "/crm.v1.CustomerService/GetCustomer";

    #[test]
    fn the_watch_paths_are_the_two_change_streams() {
        assert_eq!(
            WATCH_PATHS,
            [
                format!(
                    "/{}/WatchRelationshipChanges",
                    relationship_service_server::SERVICE_NAME
                ),
                format!(
                    "/{}/WatchGroupMembershipChanges",
                    group_service_server::SERVICE_NAME
                ),
            ]
        );
    }

    #[test]
    fn the_defaults_limit_calls_in_flight_and_watches_but_not_the_rate() {
        let limits = limits(|_| {});
        assert!(limits.shared.rate.is_none());
        assert_eq!(limits.shared.calls.as_ref().map(|c| c.1), Some(512));
        assert_eq!(
            limits.shared.watches.as_ref().map(WatchSlots::max),
            Some(1000)
        );
        let held = limits.admit(GET, &headers(None)).expect("admitted");
        assert!(held.permit.is_some() && held.watch.is_none());
    }

    #[test]
    fn over_the_rate_a_tenant_is_resource_exhausted_with_the_wait() {
        let limits = limits(|c| {
            c.tenant_rate = 0.5;
            c.tenant_burst = Some(1);
        });
        limits
            .admit(GET, &headers(Some("acme")))
            .expect("first call");
        let status = limits
            .admit(GET, &headers(Some("acme")))
            .expect_err("over the rate");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let wait = details
            .retry_info()
            .and_then(|r| r.retry_delay)
            .expect("RetryInfo");
        assert!(
            wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        let violation = &details.quota_failure().expect("QuotaFailure").violations[0];
        assert_eq!(violation.subject, "tenant:acme");
        assert!(status.message().contains("retry after"), "{status:?}");
        // Another tenant, the default one, health and reflection pass.
        limits.admit(GET, &headers(Some("other"))).expect("other");
        limits.admit(GET, &headers(None)).expect("default");
        for exempt in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            let held = limits.admit(exempt, &headers(Some("acme"))).expect(exempt);
            assert!(held.is_empty());
        }
    }

    #[test]
    fn a_tenant_header_the_handlers_refuse_counts_against_no_tenant() {
        let limits = limits(|c| {
            c.tenant_rate = 0.001;
            c.tenant_burst = Some(1);
        });
        for _ in 0..3 {
            limits
                .admit(GET, &headers(Some("a b")))
                .expect("left to the handler");
        }
        let mut twice = headers(Some("acme"));
        twice.append(TENANT_HEADER, "acme".parse().expect("header"));
        limits.admit(GET, &twice).expect("left to the handler");
        limits.admit(GET, &twice).expect("left to the handler");
        limits
            .admit(GET, &headers(Some("acme")))
            .expect("acme's first call");
    }

    #[test]
    fn calls_over_the_limit_in_flight_are_shed_until_one_ends() {
        let limits = limits(|c| c.max_concurrent_calls = 2);
        let first = limits.admit(GET, &headers(None)).expect("first");
        let _second = limits.admit(GET, &headers(Some("b"))).expect("second");
        let status = limits.admit(GET, &headers(Some("c"))).expect_err("shed");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(SHED_RETRY_DELAY)
        );
        // Watches and health take no place.
        let watch = limits
            .admit(WATCH_PATHS[0], &headers(Some("c")))
            .expect("a watch");
        assert!(watch.permit.is_none() && watch.watch.is_some());
        limits
            .admit("/grpc.health.v1.Health/Check", &headers(None))
            .expect("health");
        drop(first);
        limits
            .admit(GET, &headers(Some("c")))
            .expect("a place freed");
    }

    #[test]
    fn both_change_streams_count_against_one_cap_per_tenant() {
        let limits = limits(|c| c.max_watches_per_tenant = 2);
        let relationships = limits
            .admit(WATCH_PATHS[0], &headers(Some("a")))
            .expect("first");
        let _memberships = limits
            .admit(WATCH_PATHS[1], &headers(Some("a")))
            .expect("second");
        let status = limits
            .admit(WATCH_PATHS[0], &headers(Some("a")))
            .expect_err("third");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let violation = &status
            .get_details_quota_failure()
            .expect("QuotaFailure")
            .violations[0];
        assert_eq!(violation.subject, "tenant:a");
        limits
            .admit(WATCH_PATHS[1], &headers(Some("b")))
            .expect("another tenant");
        drop(relationships);
        limits
            .admit(WATCH_PATHS[1], &headers(Some("a")))
            .expect("a freed slot");
    }

    #[test]
    fn zero_turns_a_limit_off_and_bad_values_are_refused() {
        let limits = limits(|c| {
            c.max_concurrent_calls = 0;
            c.max_watches_per_tenant = 0;
        });
        let held = limits.admit(GET, &headers(None)).expect("admitted");
        assert!(held.is_empty());
        let held = limits
            .admit(WATCH_PATHS[0], &headers(None))
            .expect("admitted");
        assert!(held.is_empty());
        let mut config = Config::from_defaults();
        config.max_request_bytes = 0;
        assert!(Limits::from_config(&config, Arc::new(crate::clock::SystemClock)).is_err());
        config = Config::from_defaults();
        config.tenant_rate = -1.0;
        let err = Limits::from_config(&config, Arc::new(crate::clock::SystemClock))
            .err()
            .expect("refused");
        assert!(err.contains("--tenant-rate"), "{err}");
    }
}
