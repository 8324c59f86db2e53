//! Rényi DP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang 2019,
//! arXiv 1908.10530) and the conversion to (ε, δ) of Canonne, Kamath & Steinke 2020.

use super::special::{log_add, log_erfc, log_sub};
use super::{AccountantError, SubsampledGaussian};

/// Opacus's default orders: 1.1, 1.2, ..., 10.9, then 12..63.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((12..64).map(f64::from));
    orders
}

/// RDP of one step of the mechanism at order `alpha` (> 1).
pub fn rdp_step(m: SubsampledGaussian, alpha: f64) -> Result<f64, AccountantError> {
    let (q, sigma) = (m.sample_rate, m.noise_multiplier);
    if q == 0.0 {
        return Ok(0.0);
    }
    if q == 1.0 {
        return Ok(alpha / (2.0 * sigma * sigma));
    }
    let log_a = if alpha.fract() == 0.0 && alpha < 1e6 {
        log_a_int(q, sigma, alpha)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    Ok(log_a / (alpha - 1.0))
}

/// log A_α for integer α: log Σ_k C(α,k) (1-q)^(α-k) q^k exp((k²-k)/(2σ²)).
fn log_a_int(q: f64, sigma: f64, alpha: f64) -> f64 {
    let n = alpha as u64;
    let mut log_a = f64::NEG_INFINITY;
    let mut log_binom = 0.0_f64; // log C(n, 0)
    for k in 0..=n {
        let kf = k as f64;
        if k > 0 {
            log_binom += ((n - k + 1) as f64).ln() - kf.ln();
        }
        let term = log_binom
            + kf * q.ln()
            + (alpha - kf) * (-q).ln_1p()
            + (kf * kf - kf) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a
}

/// log A_α for fractional α: the two-series form (section 3.3 of Mironov et al.), with the
/// binomial coefficients' signs, as Opacus computes it. Should cancellation ever make a partial
/// sum negative, the order falls back to summing magnitudes (dp-accounting's form), which bounds
/// A_α from above: ε can only err on the safe side.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    frac_series(q, sigma, alpha, true)
        .or_else(|| frac_series(q, sigma, alpha, false))
        .unwrap_or(f64::INFINITY)
}

fn frac_series(q: f64, sigma: f64, alpha: f64, signed: bool) -> Option<f64> {
    let mut log_a0 = f64::NEG_INFINITY;
    let mut log_a1 = f64::NEG_INFINITY;
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let s2 = 2.0_f64.sqrt() * sigma;
    // Binomial coefficient C(α, i) carried as log|c| and sign.
    let mut log_coef = 0.0_f64;
    let mut positive = true;
    let mut i = 0.0_f64;
    loop {
        let j = alpha - i;
        let log_t0 = log_coef + i * q.ln() + j * (-q).ln_1p();
        let log_t1 = log_coef + j * q.ln() + i * (-q).ln_1p();
        let log_e0 = 0.5_f64.ln() + log_erfc((i - z0) / s2);
        let log_e1 = 0.5_f64.ln() + log_erfc((z0 - j) / s2);
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        if positive || !signed {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0)?;
            log_a1 = log_sub(log_a1, log_s1)?;
        }
        if log_s0.max(log_s1) < -30.0 {
            break;
        }
        if i > 1e6 {
            // A truncated sum would understate A_α: drop this order instead (ε can only grow).
            return Some(f64::INFINITY);
        }
        // C(α, i+1) = C(α, i) · (α - i) / (i + 1)
        let ratio = (alpha - i) / (i + 1.0);
        if ratio == 0.0 {
            break;
        }
        log_coef += ratio.abs().ln();
        if ratio < 0.0 {
            positive = !positive;
        }
        i += 1.0;
    }
    Some(log_add(log_a0, log_a1))
}

/// The best (ε, order) over `orders` for `steps` compositions, or an error when no order gives a
/// finite bound.
pub fn epsilon(
    m: SubsampledGaussian,
    steps: u64,
    delta: f64,
    orders: &[f64],
) -> Result<(f64, f64), AccountantError> {
    let mut best: Option<(f64, f64)> = None;
    for &alpha in orders {
        if alpha <= 1.0 || !alpha.is_finite() {
            return Err(AccountantError::Invalid(format!(
                "RDP orders must be finite and > 1, got {alpha}"
            )));
        }
        let rdp = rdp_step(m, alpha)? * steps as f64;
        // Canonne, Kamath & Steinke 2020, Proposition 12 (as in Opacus and dp-accounting).
        let eps = rdp - (delta.ln() + alpha.ln()) / (alpha - 1.0) + ((alpha - 1.0) / alpha).ln();
        if eps.is_finite() && best.is_none_or(|(b, _)| eps < b) {
            best = Some((eps, alpha));
        }
    }
    let (eps, order) = best.ok_or(AccountantError::Numerics(
        "no RDP order gives a finite epsilon for these parameters",
    ))?;
    Ok((eps.max(0.0), order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacus_reference_value() {
        // Opacus's test: q=0.04, sigma=1.5, 2250 steps, delta=1e-5 -> 7.32911117143.
        let m = SubsampledGaussian::new(0.04, 1.5).unwrap_or_else(|e| panic!("{e}"));
        let (eps, _) = epsilon(m, 2250, 1e-5, &default_orders()).unwrap_or_else(|e| panic!("{e}"));
        assert!((eps - 7.329_111_171_43).abs() < 1e-9, "{eps}");
    }

    #[test]
    fn integer_and_fractional_forms_agree_at_integers() {
        let (q, sigma) = (0.01, 1.1);
        for alpha in [2.0, 3.0, 8.0, 32.0] {
            let a = log_a_int(q, sigma, alpha);
            let b = log_a_frac(q, sigma, alpha);
            assert!(
                (a - b).abs() < 1e-9 * a.abs().max(1e-12),
                "{alpha}: {a} vs {b}"
            );
        }
    }
}
