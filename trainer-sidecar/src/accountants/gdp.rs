//! The Gaussian-DP estimate of Dong, Roth & Su (central limit theorem for Poisson subsampling).
//! An approximation, not a bound: it can report less than the true ε. Opacus ships it under the
//! same caveat; use RDP or PRV for guarantees.

use super::special::{bisect, log_norm_cdf, norm_cdf};
use super::{AccountantError, SubsampledGaussian};

/// μ of the CLT approximation after `steps` Poisson-subsampled steps.
pub fn mu(m: SubsampledGaussian, steps: u64) -> f64 {
    let s = m.noise_multiplier;
    ((1.0 / (s * s)).exp() - 1.0).sqrt() * (steps as f64).sqrt() * m.sample_rate
}

/// δ(ε) of μ-GDP: Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2).
pub fn delta_of(eps: f64, mu: f64) -> f64 {
    norm_cdf(-eps / mu + mu / 2.0) - (eps + log_norm_cdf(-eps / mu - mu / 2.0)).exp()
}

/// ε for `delta` under the approximation, solved on [0, 500] as Opacus does.
pub fn epsilon(m: SubsampledGaussian, steps: u64, delta: f64) -> Result<f64, AccountantError> {
    let mu = mu(m, steps);
    if mu == 0.0 {
        return Ok(0.0);
    }
    if delta_of(0.0, mu) <= delta {
        return Ok(0.0);
    }
    bisect(0.0, 500.0, 1e-12, |e| delta_of(e, mu) - delta).ok_or(AccountantError::Numerics(
        "the GDP approximation gives epsilon above 500 for these parameters",
    ))
}
