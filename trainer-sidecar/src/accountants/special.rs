//! Numerical helpers shared by the accountants: log-space sums, `log erfc`, the normal CDF, a
//! bracketing root finder and adaptive quadrature. Plain `f64`, no torch.

/// `log(exp(a) + exp(b))` without overflow.
pub fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `log(exp(a) - exp(b))` for `a >= b`; `None` when the difference is negative.
pub fn log_sub(a: f64, b: f64) -> Option<f64> {
    if b == f64::NEG_INFINITY {
        return Some(a);
    }
    if a < b {
        return None;
    }
    if a == b {
        return Some(f64::NEG_INFINITY);
    }
    // log(e^a - e^b) = a + log(1 - e^(b-a))
    Some(a + (-(b - a).exp()).ln_1p())
}

/// `log(erfc(x))`, accurate where `erfc` itself underflows.
pub fn log_erfc(x: f64) -> f64 {
    if x < 20.0 {
        return libm::erfc(x).ln();
    }
    // Asymptotic expansion: erfc(x) = exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶) + ...)
    let r = 1.0 / (x * x);
    let series = 1.0 - 0.5 * r + 0.75 * r * r - 1.875 * r * r * r + 6.5625 * r * r * r * r;
    -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln()
}

/// The standard normal CDF Φ(x).
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// `log Φ(x)`, accurate in the far left tail.
pub fn log_norm_cdf(x: f64) -> f64 {
    std::f64::consts::LN_2.mul_add(-1.0, log_erfc(-x / std::f64::consts::SQRT_2))
}

/// Find a root of `f` in `[lo, hi]` where `f(lo)` and `f(hi)` have opposite signs, by bisection
/// to `x_tol` (absolute). Returns `None` when the bracket does not hold a sign change.
pub fn bisect(mut lo: f64, mut hi: f64, x_tol: f64, f: impl Fn(f64) -> f64) -> Option<f64> {
    let mut f_lo = f(lo);
    let f_hi = f(hi);
    if f_lo.is_nan() || f_hi.is_nan() || f_lo.signum() == f_hi.signum() {
        return None;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if (hi - lo) <= x_tol {
            return Some(mid);
        }
        let f_mid = f(mid);
        if f_mid.is_nan() {
            return None;
        }
        if f_mid.signum() == f_lo.signum() {
            lo = mid;
            f_lo = f_mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

/// ∫ f over `[a, b]` by adaptive Simpson's rule to absolute tolerance `tol`.
pub fn integrate(f: &impl Fn(f64) -> f64, a: f64, b: f64, tol: f64) -> f64 {
    let fa = f(a);
    let fb = f(b);
    let m = 0.5 * (a + b);
    let fm = f(m);
    let whole = (b - a) / 6.0 * (fa + 4.0 * fm + fb);
    simpson(f, a, b, fa, fm, fb, whole, tol, 48)
}

#[allow(clippy::too_many_arguments)] // the recursion carries the already evaluated points
fn simpson(
    f: &impl Fn(f64) -> f64,
    a: f64,
    b: f64,
    fa: f64,
    fm: f64,
    fb: f64,
    whole: f64,
    tol: f64,
    depth: u32,
) -> f64 {
    let m = 0.5 * (a + b);
    let lm = 0.5 * (a + m);
    let rm = 0.5 * (m + b);
    let flm = f(lm);
    let frm = f(rm);
    let left = (m - a) / 6.0 * (fa + 4.0 * flm + fm);
    let right = (b - m) / 6.0 * (fm + 4.0 * frm + fb);
    let delta = left + right - whole;
    if depth == 0 || delta.abs() <= 15.0 * tol {
        return left + right + delta / 15.0;
    }
    simpson(f, a, m, fa, flm, fm, left, tol / 2.0, depth - 1)
        + simpson(f, m, b, fm, frm, fb, right, tol / 2.0, depth - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_erfc_is_continuous_across_the_switch() {
        let below = libm::erfc(19.999_999).ln();
        let above = log_erfc(20.000_001);
        assert!((below - above).abs() < 1e-4, "{below} vs {above}");
        // erfc(30) = 2.5646e-393 underflows f64; its log does not.
        assert!((log_erfc(30.0) - (-903.974_117_110_643_9)).abs() < 1e-9);
    }

    #[test]
    fn log_space_sums() {
        assert!((log_add(1.0_f64.ln(), 2.0_f64.ln()) - 3.0_f64.ln()).abs() < 1e-15);
        assert!((log_sub(3.0_f64.ln(), 2.0_f64.ln()).unwrap_or(f64::NAN)).abs() < 1e-15);
        assert_eq!(log_sub(1.0, 2.0), None);
        assert_eq!(log_add(f64::NEG_INFINITY, 0.5), 0.5);
    }

    #[test]
    fn root_and_quadrature() {
        let r = bisect(0.0, 2.0, 1e-14, |x| x * x - 2.0).unwrap_or(f64::NAN);
        assert!((r - std::f64::consts::SQRT_2).abs() < 1e-13);
        let i = integrate(&|x: f64| x.sin(), 0.0, std::f64::consts::PI, 1e-12);
        assert!((i - 2.0).abs() < 1e-10);
        assert!((norm_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((log_norm_cdf(-40.0) - (-804.608_442_013_754_2)).abs() < 1e-8);
    }
}
