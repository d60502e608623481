//! Per-key rate limits: a token bucket for each API key (`--rate-limit N` requests a minute,
//! bursts up to N). A key over its limit gets 429 with `Retry-After`; the master key and a
//! keyless server are not limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The buckets, by key uid.
pub struct RateLimits {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimits {
    /// `per_minute` requests a minute for each key.
    pub fn new(per_minute: u32) -> Self {
        RateLimits { per_minute: per_minute.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket: `Ok`, or `Err(seconds)` until one is free.
    pub fn take(&self, key: &str) -> Result<(), u32> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let r = RateLimits::new(3);
        assert!(r.take("a").is_ok() && r.take("a").is_ok() && r.take("a").is_ok());
        let wait = r.take("a").unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(r.take("b").is_ok(), "keys have their own buckets");
    }
}
