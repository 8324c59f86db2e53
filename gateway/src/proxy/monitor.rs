//! What bounds classification outside a request's critical path, and what the scan-once
//! cache saves it: [`MonitorBudget`] (the CPU share monitor-only classification may use) and
//! [`ToScore`] (a request's classifier texts, those the cache already scored set apart).

use std::time::{Duration, Instant};

use filters::classify::{Classifier, TextScores};
use filters::protocol::Role;
use parking_lot::Mutex;

use crate::scan_cache::ScanCache;

/// The session time monitoring may still use (`models.monitor_share`): credit refills at
/// `share × workers` seconds per second up to one second's worth; a classification is let in
/// while the credit is positive and its time is taken when it ends (the time from submission
/// to scores, which includes tokenizing and any wait, so the share is never exceeded).
#[derive(Debug)]
pub struct MonitorBudget {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl MonitorBudget {
    /// A budget of `share` of `workers` sessions.
    pub fn new(share: f64, workers: usize) -> MonitorBudget {
        let rate = (share * workers as f64).max(0.0);
        MonitorBudget {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    fn refill(&self, s: &mut (f64, Instant), now: Instant) {
        let dt = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + dt * self.rate).min(self.rate);
        s.1 = now;
    }

    /// Whether a monitor classification may start now.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let mut s = self.state.lock();
        self.refill(&mut s, now);
        s.0 > 0.0
    }

    /// Take the time a monitor classification used.
    pub fn spend(&self, took: Duration) {
        self.spend_at(took, Instant::now());
    }

    fn spend_at(&self, took: Duration, now: Instant) {
        let mut s = self.state.lock();
        self.refill(&mut s, now);
        s.0 -= took.as_secs_f64();
    }
}

/// A request's texts for the classifiers, with the scores the scan-once cache remembers.
pub struct ToScore {
    /// One text per message, tool definition or prompt.
    pub texts: Vec<String>,
    /// Who wrote each.
    pub roles: Vec<Role>,
    /// Scores remembered for each text (`None`: to classify).
    pub known: Vec<Option<TextScores>>,
    /// The cache keys of the texts (empty without a cache).
    keys: Vec<[u8; 32]>,
    /// Score on the bundle's idle-priority sessions (monitoring: nobody waits for it).
    pub background: bool,
}

impl ToScore {
    /// Look `texts` up in `cache` for `tenant` and the bundle `model`.
    pub fn new(
        cache: Option<&ScanCache>,
        tenant: &str,
        model: &Classifier,
        texts: Vec<String>,
        roles: Vec<Role>,
    ) -> ToScore {
        let (known, keys) = match cache {
            // the bundle's digest, not its name and version: a version folder replaced by
            // other signed content never reuses the old content's scores
            Some(c) => c.scores(tenant, &model.bundle.digest, &texts),
            None => (vec![None; texts.len()], Vec::new()),
        };
        ToScore {
            texts,
            roles,
            known,
            keys,
            background: false,
        }
    }

    /// Take the scores this request's entity tagging pass made (`tagged`: the bundle's digest
    /// and the scores by text) for the texts the cache did not know, when `model` is the
    /// bundle that made them (a hot swap in between leaves them unused).
    pub fn with_tagged(
        mut self,
        tagged: Option<&super::TaggedScores>,
        model: &Classifier,
    ) -> ToScore {
        let Some((_, scores)) = tagged.filter(|(b, _)| *b == model.bundle.digest) else {
            return self;
        };
        for (t, k) in self.texts.iter().zip(self.known.iter_mut()) {
            if k.is_none()
                && let Some(s) = scores.get(t)
            {
                *k = Some(s.clone());
            }
        }
        self
    }

    /// The texts the model must still score.
    pub fn missing(&self) -> Vec<&str> {
        self.texts
            .iter()
            .zip(&self.known)
            .filter(|(_, k)| k.is_none())
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// Every text's scores: the remembered ones, and `fresh` (the scores of
    /// [`ToScore::missing`], in order), which are remembered for `tenant`.
    pub fn complete(
        self,
        fresh: Vec<TextScores>,
        cache: Option<&ScanCache>,
        tenant: &str,
    ) -> (Vec<TextScores>, Vec<Role>) {
        let mut fresh = fresh.into_iter();
        let mut out = Vec::with_capacity(self.known.len());
        for (i, k) in self.known.into_iter().enumerate() {
            match k {
                Some(s) => out.push(s),
                None => {
                    let Some(s) = fresh.next() else { break };
                    if let (Some(c), Some(key)) = (cache, self.keys.get(i)) {
                        c.remember_scores(tenant, *key, &s);
                    }
                    out.push(s);
                }
            }
        }
        (out, self.roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_lets_in_its_share_and_no_more() {
        let b = MonitorBudget::new(0.1, 2); // 0.2 s of session time per second
        let t0 = Instant::now();
        assert!(b.admit_at(t0));
        // a 0.5 s classification leaves a debt of 0.3 s: 1.5 s to repay
        b.spend_at(Duration::from_millis(500), t0);
        assert!(!b.admit_at(t0 + Duration::from_millis(1400)));
        assert!(b.admit_at(t0 + Duration::from_millis(1600)));
        // idle time refills one second's worth at most
        let later = t0 + Duration::from_secs(100);
        assert!(b.admit_at(later));
        b.spend_at(Duration::from_millis(201), later);
        assert!(!b.admit_at(later));
        // a share of 0 never monitors
        assert!(!MonitorBudget::new(0.0, 4).admit());
    }

    #[test]
    fn over_a_long_run_monitoring_uses_its_share() {
        // classifications of 2 ms arriving every 1 ms for 10 s: a share of 0.1 of 2 sessions
        // lets 0.2 s per second through, 100 a second, about 1,000 in all
        let b = MonitorBudget::new(0.1, 2);
        let t0 = Instant::now();
        let mut ran = 0;
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if b.admit_at(now) {
                b.spend_at(Duration::from_millis(2), now);
                ran += 1;
            }
        }
        assert!((1000..=1101).contains(&ran), "{ran}");
    }
}
