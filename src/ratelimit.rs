//! Token-bucket rate limits, keyed by client IP and by user.
//!
//! Each key has a bucket of `burst` tokens refilled at `per_second`; a
//! request takes one or is answered 429 with the wait until one is back.
//! The table is bounded: past [`BUCKETS_MAX`] keys, full buckets (which
//! carry no information) are dropped first, then the table is cleared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::util::lock;

/// Most keys tracked at once; each costs about a hundred bytes.
pub const BUCKETS_MAX: usize = 10_000;
/// Requests per second one other server may make (its transactions,
/// queries and media), and its burst: servers batch their work, so they
/// get more than a client (`rate_limit_per_second`), as in Synapse's
/// `rc_federation` (about ten a second before it slows a server down).
pub const FEDERATION_PER_SECOND: f64 = 10.0;
pub const FEDERATION_BURST: u32 = 50;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter { per_second, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, key: &str) -> Result<()> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<()> {
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(key) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| refill(b, now, per_second, burst) < burst);
            if buckets.len() >= BUCKETS_MAX {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now });
        let tokens = refill(bucket, now, self.per_second, self.burst);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - tokens) / self.per_second * 1000.0).ceil() as u64;
        Err(Error::new(ErrorKind::LimitExceeded { retry_after_ms: wait_ms.max(1) }, "Too many requests"))
    }
}

/// Brings a bucket's tokens up to `now` and returns them.
fn refill(b: &mut Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
    b.tokens = (b.tokens + elapsed * per_second).min(burst);
    b.updated = now;
    b.tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check_at("ip:a", t0).unwrap();
        }
        let e = rl.check_at("ip:a", t0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LimitExceeded { retry_after_ms: 500 });
        // Another key has its own bucket.
        rl.check_at("ip:b", t0).unwrap();
        // Half a second later one token is back.
        rl.check_at("ip:a", t0 + Duration::from_millis(500)).unwrap();
        assert!(rl.check_at("ip:a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn table_stays_bounded() {
        let rl = RateLimiter::new(1.0, 1);
        let t0 = Instant::now();
        for i in 0..BUCKETS_MAX + 10 {
            rl.check_at(&format!("k{i}"), t0).unwrap();
        }
        assert!(lock(&rl.buckets).len() <= BUCKETS_MAX);
    }
}
