//! The budget monitor: how many steps a run may take within its target ε, and the ε spent
//! after each step. With a fixed sample rate and noise multiplier ε(T) grows with T, so the last
//! allowed step is found before training starts and the run stops before any step past it.

use super::{Accountant, AccountantError, SubsampledGaussian, epsilon, prv, rdp};

/// Per-step ε for one run.
#[derive(Debug, Clone)]
pub struct BudgetMonitor {
    accountant: Accountant,
    mechanism: SubsampledGaussian,
    delta: f64,
    /// The most steps whose ε stays within the target (the planned steps when no target).
    pub max_steps: u64,
    /// RDP per step at each default order (RDP runs: ε at any T in microseconds).
    rdp_curve: Option<Vec<(f64, f64)>>,
    /// (step, ε) checkpoints for PRV/GDP runs, increasing; ε at step t is read at the first
    /// checkpoint ≥ t, which can only overstate it.
    checkpoints: Vec<(u64, f64)>,
}

impl BudgetMonitor {
    /// A monitor for `planned_steps` steps, capped so ε never exceeds `target` when given.
    pub fn new(
        accountant: Accountant,
        mechanism: SubsampledGaussian,
        delta: f64,
        planned_steps: u64,
        target: Option<f64>,
    ) -> Result<Self, AccountantError> {
        let rdp_curve = match accountant {
            Accountant::Rdp => Some(
                rdp::default_orders()
                    .into_iter()
                    .map(|a| Ok((a, rdp::rdp_step(mechanism, a)?)))
                    .collect::<Result<Vec<_>, AccountantError>>()?,
            ),
            _ => None,
        };
        let mut m = Self {
            accountant,
            mechanism,
            delta,
            max_steps: planned_steps,
            rdp_curve,
            checkpoints: Vec::new(),
        };
        if let Some(target) = target
            && m.exact(planned_steps)? > target
        {
            // Largest T with ε(T) ≤ target, by bisection (ε grows with T).
            let (mut lo, mut hi) = (0u64, planned_steps);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if m.exact(mid)? <= target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            m.max_steps = lo;
        }
        if m.rdp_curve.is_none() && m.max_steps > 0 {
            let points = 48u64.min(m.max_steps);
            for k in 1..=points {
                let t = (m.max_steps * k).div_ceil(points);
                if m.checkpoints.last().is_none_or(|(s, _)| *s < t) {
                    m.checkpoints.push((t, m.exact(t)?));
                }
            }
        }
        Ok(m)
    }

    fn exact(&self, steps: u64) -> Result<f64, AccountantError> {
        if steps == 0 {
            return Ok(0.0);
        }
        match &self.rdp_curve {
            Some(curve) => {
                let t = steps as f64;
                curve
                    .iter()
                    .map(|&(a, r)| {
                        t * r - (self.delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln()
                    })
                    .filter(|e| e.is_finite())
                    .fold(None, |best: Option<f64>, e| {
                        Some(best.map_or(e, |b| b.min(e)))
                    })
                    .map(|e| e.max(0.0))
                    .ok_or(AccountantError::Numerics(
                        "no RDP order gives a finite epsilon",
                    ))
            }
            None => match self.accountant {
                Accountant::Prv => {
                    Ok(prv::epsilon(self.mechanism, steps, self.delta, Default::default())?.upper)
                }
                _ => Ok(epsilon(self.accountant, self.mechanism, steps, self.delta)?.epsilon),
            },
        }
    }

    /// ε spent after `steps` steps (an upper bound between PRV checkpoints).
    pub fn epsilon_after(&self, steps: u64) -> Result<f64, AccountantError> {
        if self.rdp_curve.is_some() || steps > self.max_steps {
            return self.exact(steps);
        }
        match self.checkpoints.iter().find(|(s, _)| *s >= steps) {
            Some((_, e)) if steps > 0 => Ok(*e),
            _ => self.exact(steps),
        }
    }

    /// Whether step number `step` (1-based) may run.
    pub fn allows(&self, step: u64) -> bool {
        step <= self.max_steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_last_step_within_the_target() {
        let m = SubsampledGaussian::new(0.04, 1.5).unwrap_or_else(|e| panic!("{e}"));
        let mon = BudgetMonitor::new(Accountant::Rdp, m, 1e-5, 10_000, Some(5.0))
            .unwrap_or_else(|e| panic!("{e}"));
        let eps = |t| mon.epsilon_after(t).unwrap_or(f64::NAN);
        assert!(
            eps(mon.max_steps) <= 5.0 && eps(mon.max_steps + 1) > 5.0,
            "{}",
            mon.max_steps
        );
        assert!(mon.allows(mon.max_steps) && !mon.allows(mon.max_steps + 1));
        // The curve matches the accountant at any step.
        let direct = epsilon(Accountant::Rdp, m, 777, 1e-5).unwrap_or_else(|e| panic!("{e}"));
        assert!((eps(777) - direct.epsilon).abs() < 1e-12);
        // PRV: checkpoints never understate.
        let mon = BudgetMonitor::new(Accountant::Prv, m, 1e-5, 300, None)
            .unwrap_or_else(|e| panic!("{e}"));
        for t in [1, 17, 150, 299, 300] {
            let exact = prv::epsilon(m, t, 1e-5, Default::default())
                .unwrap_or_else(|e| panic!("{e}"))
                .upper;
            assert!(
                mon.epsilon_after(t).unwrap_or(0.0) >= exact - 1e-12,
                "step {t}"
            );
        }
    }
}
