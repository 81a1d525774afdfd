//! Failed-login limiter: after `max_failures` failures within `window` from one client
//! address, or for one user name, further attempts are refused until the oldest failure ages
//! out. Memory is bounded: old entries are pruned, and the table has a size cap.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; past this, the table is pruned of everything but the busiest keys'
/// recent failures. A flood of distinct names must not grow memory without bound.
const MAX_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    User(String),
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1) as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` if this address or user name must wait before trying again.
    pub fn check(&self, addr: IpAddr, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.lock();
        let mut wait = Duration::ZERO;
        for key in [Key::Addr(addr), Key::User(user.to_string())] {
            if let Some(times) = map.get_mut(&key) {
                prune(times, now, self.window);
                if times.len() >= self.max_failures {
                    if let Some(oldest) = times.front() {
                        wait = wait.max(self.window.saturating_sub(now - *oldest));
                    }
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait.max(Duration::from_secs(1)))
        }
    }

    pub fn record_failure(&self, addr: IpAddr, user: &str) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, times| {
                prune(times, now, window);
                !times.is_empty()
            });
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for key in [Key::Addr(addr), Key::User(user.to_string())] {
            let times = map.entry(key).or_default();
            times.push_back(now);
            while times.len() > self.max_failures {
                times.pop_front();
            }
        }
    }

    /// A successful login forgets the user's failures (not the address's: one good password
    /// must not reset a guessing address).
    pub fn record_success(&self, user: &str) {
        self.lock().remove(&Key::User(user.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        // The map holds no invariant a panic could break; keep limiting after one.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn blocks_after_the_limit_per_address_and_per_user() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.check(A, "u").is_ok());
            l.record_failure(A, "u");
        }
        assert!(l.check(A, "other").is_err(), "address is blocked");
        assert!(l.check(B, "u").is_err(), "user is blocked from anywhere");
        assert!(l.check(B, "other").is_ok());
    }

    #[test]
    fn failures_age_out() {
        let l = LoginLimiter::new(1, Duration::from_millis(50));
        l.record_failure(A, "u");
        assert!(l.check(A, "u").is_err());
        std::thread::sleep(Duration::from_millis(80));
        assert!(l.check(A, "u").is_ok());
    }

    #[test]
    fn success_clears_the_user_not_the_address() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        l.record_failure(A, "u");
        l.record_failure(A, "u");
        l.record_success("u");
        assert!(l.check(B, "u").is_ok());
        assert!(l.check(A, "v").is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = LoginLimiter::new(5, Duration::from_secs(60));
        for i in 0..(MAX_KEYS * 2) {
            l.record_failure(A, &format!("user{i}"));
        }
        assert!(l.lock().len() <= MAX_KEYS + 2);
    }
}
