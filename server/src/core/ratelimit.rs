//! Per-connection frame rate limit: a token bucket, pure, with the time passed in. Each
//! connection's [`super::connection::Connection`] owns one and applies it to every frame.

use std::time::Instant;

/// Frames per second a connection may send, sustained. An honest client sends a few a second;
/// a probe's trickled ICE candidates come in bursts of a dozen (PROTOCOL.md: the limit sits
/// well above 100 a second).
pub const RATE_LIMIT_PER_S: f64 = 200.0;
/// Frames a connection may send at once after a quiet spell.
pub const RATE_LIMIT_BURST: f64 = 400.0;

/// A token bucket: `capacity` tokens, refilled at `per_s` a second; each frame takes one.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    tokens: f64,
    capacity: f64,
    per_s: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket at `now`.
    pub fn new(now: Instant, per_s: f64, capacity: f64) -> Self {
        RateLimiter {
            tokens: capacity,
            capacity,
            per_s,
            last: now,
        }
    }

    /// The server's default limit ([`RATE_LIMIT_PER_S`], [`RATE_LIMIT_BURST`]).
    pub fn standard(now: Instant) -> Self {
        Self::new(now, RATE_LIMIT_PER_S, RATE_LIMIT_BURST)
    }

    /// Takes one token for a frame at `now`; `false` when the bucket is empty (over the limit).
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_s).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(t0, 100.0, 10.0);
        assert!((0..10).all(|_| r.allow(t0)));
        assert!(!r.allow(t0), "burst used up");
        // 100/s: one token every 10 ms.
        assert!(r.allow(t0 + Duration::from_millis(10)));
        assert!(!r.allow(t0 + Duration::from_millis(10)));
        // A sustained 100/s for 10 s passes.
        let mut ok = 0;
        for i in 1..=1000u64 {
            ok += r.allow(t0 + Duration::from_millis(10 + i * 10)) as u32;
        }
        assert_eq!(ok, 1000);
    }

    #[test]
    fn flood_is_refused() {
        let t0 = Instant::now();
        let mut r = RateLimiter::standard(t0);
        let allowed = (0..5000)
            .filter(|i| r.allow(t0 + Duration::from_micros(*i)))
            .count();
        // 5000 frames in 5 ms: the burst plus about one token.
        assert!(allowed <= RATE_LIMIT_BURST as usize + 2, "{allowed}");
    }
}
