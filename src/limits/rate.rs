//! The per-tenant call rate: a GCRA bucket per tenant (governor), and the
//! sweep that forgets tenants whose bucket has refilled, so a flood of
//! made-up tenant ids cannot grow the state without bound.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

/// Calls between two sweeps of idle tenants. The state holds at most the
/// tenants whose bucket is still refilling plus this many new ones; a
/// sweep walks the map once, so its cost spread over these calls is small.
const SWEEP_EVERY: u64 = 10_000;

/// Fastest rate accepted: one call a nanosecond is governor's resolution.
const MAX_RATE: f64 = 1e9;

use crate::clock::SharedClock;

/// The service's one clock as governor reads it, so that a test server's
/// manual clock moves its tenants' buckets as it moves every other rule.
#[derive(Clone)]
pub struct ServiceClock(SharedClock);

impl Clock for ServiceClock {
    type Instant = std::time::SystemTime;

    fn now(&self) -> Self::Instant {
        self.0.now().into()
    }
}

/// Each tenant's calls per second, with a burst.
pub struct TenantRate<C: Clock = ServiceClock> {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    rate: f64,
    burst: u32,
    /// Calls checked, to sweep every [`SWEEP_EVERY`].
    checked: AtomicU64,
}

impl TenantRate {
    /// `rate` calls per second per tenant and bursts of `burst` (twice the
    /// rate, at least 1, when `None`); `None` when `rate` is 0 (no limit).
    pub fn new(rate: f64, burst: Option<u32>, clock: SharedClock) -> Result<Option<Self>, String> {
        Self::with_clock(rate, burst, ServiceClock(clock))
    }
}

impl<C: Clock + Clone> TenantRate<C> {
    /// [`TenantRate::new`] on `clock` (unit tests pass a fake one).
    pub fn with_clock(rate: f64, burst: Option<u32>, clock: C) -> Result<Option<Self>, String> {
        if rate == 0.0 {
            return Ok(None);
        }
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(format!(
                "--tenant-rate must be 0 (no limit) or a number of calls per second up to {MAX_RATE:e}, not {rate}"
            ));
        }
        let burst = burst.unwrap_or_else(|| default_burst(rate));
        let Some(burst_size) = NonZeroU32::new(burst) else {
            return Err("--tenant-burst must be at least 1".into());
        };
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))
            .ok_or_else(|| format!("--tenant-rate {rate} is too fast to measure"))?
            .allow_burst(burst_size);
        Ok(Some(Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            rate,
            burst,
            checked: AtomicU64::new(0),
        }))
    }

    /// Counts a call of `tenant`: `Err` with how long until the tenant may
    /// call again when it is over its rate.
    pub fn check(&self, tenant: &str) -> Result<(), Duration> {
        if self.checked.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        self.limiter
            .check_key(&tenant.to_owned())
            .map_err(|refused| round_up_to_millis(refused.wait_time_from(self.clock.now())))
    }

    /// Forgets the tenants whose bucket is full again: they are no
    /// different from a tenant never seen.
    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Tenants whose state is kept.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// The configured calls per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The configured burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// Twice the rate, at least one call.
fn default_burst(rate: f64) -> u32 {
    (rate * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}

/// A client told to wait this long and calling right after must pass: the
/// wait is rounded up, never down, to what RetryInfo and the message show.
fn round_up_to_millis(wait: Duration) -> Duration {
    Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn system() -> SharedClock {
        std::sync::Arc::new(crate::clock::SystemClock)
    }

    fn limiter(
        rate: f64,
        burst: Option<u32>,
    ) -> (TenantRate<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let rate = TenantRate::with_clock(rate, burst, clock.clone())
            .expect("valid")
            .expect("limited");
        (rate, clock)
    }

    #[test]
    fn a_tenant_over_its_burst_waits_one_period_and_others_are_unaffected() {
        let (rate, clock) = limiter(2.0, Some(3));
        for _ in 0..3 {
            rate.check("a").expect("within the burst");
        }
        assert_eq!(rate.check("a"), Err(Duration::from_millis(500)));
        rate.check("b").expect("another tenant has its own bucket");
        clock.advance(Duration::from_millis(499));
        assert_eq!(rate.check("a"), Err(Duration::from_millis(1)));
        clock.advance(Duration::from_millis(1));
        rate.check("a").expect("after the wait it tells");
        assert!(rate.check("a").is_err(), "one call per period after that");
    }

    #[test]
    fn the_burst_defaults_to_twice_the_rate_and_at_least_one() {
        assert_eq!(limiter(5.0, None).0.burst(), 10);
        assert_eq!(limiter(0.1, None).0.burst(), 1);
        assert_eq!(limiter(1.5, None).0.burst(), 3);
    }

    #[test]
    fn a_slow_rate_tells_the_whole_wait() {
        let (rate, _clock) = limiter(0.5, Some(1));
        rate.check("a").expect("first call");
        assert_eq!(rate.check("a"), Err(Duration::from_secs(2)));
    }

    #[test]
    fn zero_is_no_limit_and_nonsense_is_refused() {
        assert!(
            TenantRate::new(0.0, None, system())
                .expect("valid")
                .is_none()
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e10] {
            assert!(TenantRate::new(bad, None, system()).is_err(), "{bad}");
        }
        assert!(TenantRate::new(1.0, Some(0), system()).is_err());
    }

    #[test]
    fn waits_are_rounded_up_to_whole_milliseconds() {
        assert_eq!(
            round_up_to_millis(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
        assert_eq!(
            round_up_to_millis(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
        assert_eq!(
            round_up_to_millis(Duration::from_micros(7_001)),
            Duration::from_millis(8)
        );
    }

    #[test]
    fn a_flood_of_made_up_tenants_is_forgotten_once_their_buckets_refill() {
        let (rate, clock) = limiter(10.0, Some(1));
        for i in 0..SWEEP_EVERY - 1 {
            rate.check(&format!("made-up-{i}")).expect("a fresh tenant");
        }
        assert_eq!(rate.tracked(), (SWEEP_EVERY - 1) as usize);
        // A bucket is full again one period (100 ms) after its call;
        // governor forgets it a period later still.
        clock.advance(Duration::from_millis(200));
        rate.check("steady").expect("the call that sweeps");
        assert!(
            rate.tracked() <= 1,
            "{} tenants kept after the sweep",
            rate.tracked()
        );
        // A tenant still refilling is kept: its limit holds across sweeps.
        rate.check("busy").expect("first call");
        for i in 0..SWEEP_EVERY {
            let _ = rate.check(&format!("other-{i}"));
        }
        assert!(
            rate.check("busy").is_err(),
            "the sweep forgot a busy tenant"
        );
    }
}
