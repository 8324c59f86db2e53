//! A per-backend circuit breaker.
//!
//! Closed: requests flow; consecutive failures are counted. At the threshold the circuit opens:
//! no request goes to the backend for `open_for`. Then it is half-open: exactly one probe
//! request is let through; its success closes the circuit, its failure opens it again.
//! Every method takes `now` so tests drive time by hand.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Observable state, for metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the deadline.
    Open,
    /// One probe is allowed (or in flight).
    HalfOpen,
}

impl BreakerState {
    /// Numeric form for the `portcullis_upstream_circuit_state` gauge.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// What a caller got from [`Breaker::try_acquire`]: a normal pass or the single probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The circuit is closed.
    Normal,
    /// The one request allowed through a half-open circuit.
    Probe,
}

/// The breaker. `threshold == 0` disables it (always closed).
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// A breaker that never opens.
    pub fn disabled() -> Self {
        Breaker::new(0, Duration::ZERO)
    }

    /// Ask to send a request. `None`: the circuit refuses it.
    pub fn try_acquire(&self, now: Instant) -> Option<Pass> {
        if self.threshold == 0 {
            return Some(Pass::Normal);
        }
        let mut s = self.state.lock();
        match *s {
            State::Closed { .. } => Some(Pass::Normal),
            State::Open { until } if now < until => None,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Some(Pass::Probe)
            }
            State::HalfOpen { probing: true } => None,
        }
    }

    /// Whether a request would be let through now (does not take the probe).
    pub fn would_allow(&self, now: Instant) -> bool {
        if self.threshold == 0 {
            return true;
        }
        match *self.state.lock() {
            State::Closed { .. } | State::HalfOpen { probing: false } => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probing: true } => false,
        }
    }

    /// The request succeeded. Returns true when this closed an open/half-open circuit.
    pub fn on_success(&self, pass: Pass) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut s = self.state.lock();
        match (&*s, pass) {
            (State::HalfOpen { .. }, Pass::Probe) => {
                *s = State::Closed { failures: 0 };
                true
            }
            (State::Closed { .. }, _) => {
                *s = State::Closed { failures: 0 };
                false
            }
            // A normal request that started before the circuit opened: no news about now.
            _ => false,
        }
    }

    /// The request failed. Returns true when this opened the circuit.
    pub fn on_failure(&self, pass: Pass, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut s = self.state.lock();
        match (&*s, pass) {
            (State::HalfOpen { .. }, Pass::Probe) => {
                *s = State::Open {
                    until: now + self.open_for,
                };
                true
            }
            (State::Closed { failures }, _) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    *s = State::Open {
                        until: now + self.open_for,
                    };
                    true
                } else {
                    *s = State::Closed { failures };
                    false
                }
            }
            _ => false,
        }
    }

    /// The request ended without telling anything about the backend (the client went away).
    /// A probe gives its slot back so the next request can probe.
    pub fn on_abandon(&self, pass: Pass) {
        if pass == Pass::Probe {
            let mut s = self.state.lock();
            if let State::HalfOpen { probing: true } = *s {
                *s = State::HalfOpen { probing: false };
            }
        }
    }

    /// The current state (an open circuit past its deadline reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        if self.threshold == 0 {
            return BreakerState::Closed;
        }
        match *self.state.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.try_acquire(t), Some(Pass::Normal));
            assert!(!b.on_failure(Pass::Normal, t));
        }
        // a success resets the count
        assert!(!b.on_success(Pass::Normal));
        for _ in 0..2 {
            b.on_failure(Pass::Normal, t);
        }
        assert_eq!(b.state(t), BreakerState::Closed);
        assert!(b.on_failure(Pass::Normal, t));
        assert_eq!(b.state(t), BreakerState::Open);
        assert_eq!(b.try_acquire(t + Duration::from_secs(9)), None);
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t = Instant::now();
        b.on_failure(Pass::Normal, t);
        let later = t + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(later), Some(Pass::Probe));
        assert_eq!(
            b.try_acquire(later),
            None,
            "second request during the probe"
        );
        assert!(b.on_success(Pass::Probe));
        assert_eq!(b.state(later), BreakerState::Closed);
        assert_eq!(b.try_acquire(later), Some(Pass::Normal));
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t = Instant::now();
        b.on_failure(Pass::Normal, t);
        let t1 = t + Duration::from_secs(11);
        assert_eq!(b.try_acquire(t1), Some(Pass::Probe));
        assert!(b.on_failure(Pass::Probe, t1));
        assert_eq!(b.try_acquire(t1 + Duration::from_secs(9)), None);
        assert_eq!(
            b.try_acquire(t1 + Duration::from_secs(10)),
            Some(Pass::Probe)
        );
    }

    #[test]
    fn abandoned_probe_frees_the_slot() {
        let b = Breaker::new(1, Duration::from_millis(1));
        let t = Instant::now();
        b.on_failure(Pass::Normal, t);
        let t1 = t + Duration::from_secs(1);
        assert_eq!(b.try_acquire(t1), Some(Pass::Probe));
        b.on_abandon(Pass::Probe);
        assert_eq!(b.try_acquire(t1), Some(Pass::Probe));
    }

    #[test]
    fn late_results_of_normal_requests_do_not_flip_an_open_circuit() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t = Instant::now();
        b.on_failure(Pass::Normal, t);
        assert!(!b.on_success(Pass::Normal));
        assert_eq!(b.state(t), BreakerState::Open);
    }

    #[test]
    fn disabled_never_opens() {
        let b = Breaker::disabled();
        let t = Instant::now();
        for _ in 0..100 {
            b.on_failure(Pass::Normal, t);
        }
        assert_eq!(b.try_acquire(t), Some(Pass::Normal));
    }
}
