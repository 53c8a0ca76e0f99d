//! Login rate limiting: failed attempts per account and per source address in
//! a sliding window. Kept in memory: a restart forgets it, which only ever
//! grants an attacker one more window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sliding-window counter of failed logins per key.
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// Allows `max_failures` failures per key within `window`.
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Time until the key may try again, if it is blocked now.
    pub fn blocked_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = map.get_mut(key)?;
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() < self.max_failures {
            return None;
        }
        let oldest = *q.front()?;
        Some(self.window.saturating_sub(now.duration_since(oldest)))
    }

    /// Records a failed attempt.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory under a flood of distinct keys: drop entries whose window passed.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = map.entry(key.to_string()).or_default();
        q.push_back(now);
        while q.len() > self.max_failures {
            q.pop_front();
        }
    }

    /// Forgets a key's failures (after a successful login to that account).
    pub fn clear(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_and_releases_after_window() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.blocked_for("k", t0).is_none(), "attempt {i}");
            l.fail("k", t0 + Duration::from_secs(i));
        }
        let wait = l.blocked_for("k", t0 + Duration::from_secs(10));
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert!(l.blocked_for("other", t0).is_none());
        assert!(l.blocked_for("k", t0 + Duration::from_secs(60)).is_none());
        l.fail("k", t0);
        l.clear("k");
        assert!(l.blocked_for("k", t0).is_none());
    }
}
