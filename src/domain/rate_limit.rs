//! Per-client rate limits (sign-ups per address, sends per user): a flood from one client is
//! answered `429` with `Retry-After` instead of filling the database or starving others.
//! Each limit is a GCRA bucket per key (the `governor` crate): up to `n` at once, then one
//! more every `period / n`. A limit of 0 means none.

use crate::error::Error;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

/// Keys seen are kept until their bucket is full again; past this many the idle ones are
/// dropped, so a stream of new keys (addresses) cannot grow memory without end.
const PRUNE_ABOVE: usize = 10_000;

pub struct RateLimit<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    what: &'static str,
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// At most `n` per `period` for each key (a burst of `n` allowed); `n == 0`: no limit.
    /// `what` names the limited action in the `429`'s message.
    pub fn new(n: u32, period: Duration, what: &'static str) -> RateLimit<K> {
        let limiter = NonZeroU32::new(n).and_then(|n| {
            Quota::with_period(period / n.get())
                .map(|q| DefaultKeyedRateLimiter::keyed(q.allow_burst(n)))
        });
        RateLimit { limiter, what }
    }

    /// Counts one action for `key`; `429` with the wait when its bucket is empty (and then
    /// nothing is counted).
    pub fn check(&self, key: &K) -> Result<(), Error> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            let secs = not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1);
            log::info!("rate limit: too many {}; retry in {secs} s", self.what);
            Error::TooManyRequests(secs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_with_a_wait_and_zero_means_none() {
        let limit = RateLimit::new(3, Duration::from_secs(3600), "tries");
        for _ in 0..3 {
            assert!(limit.check(&"a").is_ok());
        }
        match limit.check(&"a") {
            Err(Error::TooManyRequests(secs)) => assert!((1..=1200).contains(&secs), "{secs}"),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limit.check(&"b").is_ok(), "another key has its own bucket");
        let none = RateLimit::new(0, Duration::from_secs(1), "tries");
        for _ in 0..10_000 {
            assert!(none.check(&"a").is_ok());
        }
    }
}
