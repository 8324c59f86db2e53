//! The privacy-loss random variable (PRV) accountant of Gopi, Lee & Wutschitz 2021
//! (arXiv 2106.02848) for the Poisson-subsampled Gaussian: discretise the PRV on a mesh chosen
//! from the error budget, compose `steps` copies with one FFT, read ε off the composed
//! distribution. Reports the upper end of the interval the paper proves, as Opacus does.

use realfft::RealFftPlanner;
use realfft::num_complex::Complex;

use super::special::integrate;
use super::{AccountantError, SubsampledGaussian, rdp};

/// Error budget and limits of one PRV computation.
#[derive(Debug, Clone, Copy)]
pub struct PrvOptions {
    /// Width of the ε interval the discretisation may add on each side (Opacus's default 0.01).
    pub eps_error: f64,
    /// Error allowed on δ; `None` means δ/1000 (Opacus's default).
    pub delta_error: Option<f64>,
    /// Largest mesh the computation may allocate (points). Beyond it the accountant refuses.
    pub max_points: usize,
}

impl Default for PrvOptions {
    fn default() -> Self {
        Self {
            eps_error: 0.01,
            delta_error: None,
            max_points: 1 << 24,
        }
    }
}

/// The interval the PRV accountant proves: ε lies in `[lower, upper]`; `estimate` is the point
/// value without the error terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrvEpsilon {
    /// Lower end of the interval.
    pub lower: f64,
    /// Estimate from the discretised distribution.
    pub estimate: f64,
    /// Upper end: the value to report as a guarantee.
    pub upper: f64,
}

fn prv_cdf(m: SubsampledGaussian, t: f64) -> f64 {
    let (q, s) = (m.sample_rate, m.noise_multiplier);
    if q == 1.0 {
        // Full batch: the privacy loss is N(1/(2σ²), 1/σ²).
        return 0.5 * libm::erfc(-(t - 0.5 / (s * s)) * s / std::f64::consts::SQRT_2);
    }
    if t <= (-q).ln_1p() {
        return 0.0;
    }
    let z = ((t.exp() + q - 1.0) / q).ln();
    let r = 2.0 * std::f64::consts::SQRT_2 * s;
    -q * libm::erfc((2.0 * z * s * s - 1.0) / r) / 2.0
        - (1.0 - q) * libm::erfc((2.0 * z * s * s + 1.0) / r) / 2.0
        + 1.0
}

/// ε of `steps` compositions at `delta`.
pub fn epsilon(
    m: SubsampledGaussian,
    steps: u64,
    delta: f64,
    opts: PrvOptions,
) -> Result<PrvEpsilon, AccountantError> {
    if steps == 0 || m.sample_rate == 0.0 {
        return Ok(PrvEpsilon {
            lower: 0.0,
            estimate: 0.0,
            upper: 0.0,
        });
    }
    if !(opts.eps_error > 0.0 && opts.eps_error.is_finite()) {
        return Err(AccountantError::Invalid(format!(
            "eps_error must be positive, got {}",
            opts.eps_error
        )));
    }
    let delta_error = opts.delta_error.unwrap_or(delta / 1000.0);
    if !(delta_error > 0.0 && delta_error < delta) {
        return Err(AccountantError::Invalid(format!(
            "delta_error must be in (0, delta), got {delta_error}"
        )));
    }
    let n = steps as f64;

    // Domain: remark 5.6 of the paper, as implemented by the authors and Opacus.
    let orders = rdp::default_orders();
    let mut l_max = rdp::epsilon(m, steps, delta_error / 4.0, &orders)?.0;
    l_max = l_max.max(rdp::epsilon(m, 1, delta_error / (8.0 * n), &orders)?.0);
    let half_width = l_max.max(opts.eps_error) + 3.0;
    if half_width > 700.0 {
        return Err(AccountantError::Numerics(
            "the PRV domain would reach past exp()'s range (epsilon in the hundreds); use rdp",
        ));
    }
    let mesh = opts.eps_error / (n * (12.0 / delta_error).ln() / 2.0).sqrt();
    let t_min = (-half_width / mesh).floor() * mesh;
    let mut t_max = (half_width / mesh).ceil() * mesh;
    let points = ((t_max - t_min) / mesh).round() + 1.0;
    if !(points.is_finite() && points <= opts.max_points as f64) {
        return Err(AccountantError::TooLarge {
            points,
            max: opts.max_points,
        });
    }
    let mut size = points as usize;
    if size % 2 == 1 {
        size += 1;
        t_max += mesh;
    }
    let dt = (t_max - t_min) / (size - 1) as f64;
    if f64::EPSILON * size as f64 > delta - delta_error {
        return Err(AccountantError::Numerics(
            "floating-point error would dominate at this delta; raise delta or eps_error",
        ));
    }

    // Truncated PRV on [t_min, t_max].
    let c_min = prv_cdf(m, t_min);
    let mass = prv_cdf(m, t_max) - c_min;
    let cdf_t = |t: f64| {
        if t < t_min {
            0.0
        } else if t < t_max {
            (prv_cdf(m, t) - c_min) / mass
        } else {
            1.0
        }
    };
    let ts: Vec<f64> = (0..size).map(|i| t_min + i as f64 * dt).collect();
    let mut edge_prev = cdf_t(ts[0] - dt / 2.0);
    let mut pmf = Vec::with_capacity(size);
    for &t in &ts {
        let edge = cdf_t(t + dt / 2.0);
        pmf.push(edge - edge_prev);
        edge_prev = edge;
    }
    let mean_d: f64 = ts.iter().zip(&pmf).map(|(t, p)| t * p).sum();
    let mean_c = truncated_mean(&cdf_t, t_min, t_max);
    let shift = mean_c - mean_d;
    if shift.abs() >= dt / 2.0 {
        return Err(AccountantError::Numerics(
            "the discretised PRV's mean differs from the continuous mean by half a mesh step",
        ));
    }

    // Compose: pmf^(*steps) by one real FFT, then roll so the support lines up again.
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(size);
    let inv = planner.plan_fft_inverse(size);
    let mut spectrum = fwd.make_output_vec();
    fwd.process(&mut pmf, &mut spectrum)
        .map_err(|_| AccountantError::Numerics("FFT failed"))?;
    for c in spectrum.iter_mut() {
        *c = pow(*c, steps);
    }
    // A real signal's DC and Nyquist terms are real; clear rounding residue for the inverse.
    if let Some(first) = spectrum.first_mut() {
        first.im = 0.0;
    }
    if let Some(last) = spectrum.last_mut() {
        last.im = 0.0;
    }
    let mut composed = inv.make_output_vec();
    inv.process(&mut spectrum, &mut composed)
        .map_err(|_| AccountantError::Numerics("inverse FFT failed"))?;
    let mut roll = (steps - 1) as usize % size;
    if steps.is_multiple_of(2) {
        roll = (roll + size / 2) % size;
    }
    composed.rotate_right(roll);
    let scale = 1.0 / size as f64;
    let offset = shift * n;
    let ts: Vec<f64> = (0..size).map(|i| t_min + offset + i as f64 * dt).collect();
    let p: Vec<f64> = composed.iter().map(|x| x * scale).collect();

    // δ(ε) = Σ_{t ≥ ε} p(t) (1 - e^{ε - t}); tail sums from the right.
    let mut d1 = vec![0.0; size];
    let mut d2 = vec![0.0; size];
    let (mut s1, mut s2) = (0.0, 0.0);
    for i in (0..size).rev() {
        s1 += p[i];
        s2 += p[i] * (-ts[i]).exp();
        d1[i] = s1;
        d2[i] = s2;
    }
    let ndelta: Vec<f64> = (0..size).map(|i| ts[i].exp() * d2[i] - d1[i]).collect();
    let find = |target: f64| -> Result<f64, AccountantError> {
        let i = ndelta.partition_point(|&v| v < -target);
        if i == 0 || i >= size {
            return Err(AccountantError::Numerics(
                "delta lies outside the composed PRV's domain: epsilon cannot be bounded",
            ));
        }
        let eps = ((d1[i] - target) / d2[i]).ln();
        if eps.is_finite() {
            Ok(eps)
        } else {
            Err(AccountantError::Numerics(
                "the composed PRV gave a non-finite epsilon",
            ))
        }
    };
    Ok(PrvEpsilon {
        upper: find(delta - delta_error)? + opts.eps_error,
        lower: find(delta + delta_error)? - opts.eps_error,
        estimate: find(delta)?,
    })
}

fn pow(mut base: Complex<f64>, mut exp: u64) -> Complex<f64> {
    let mut acc = Complex::new(1.0, 0.0);
    while exp > 0 {
        if exp & 1 == 1 {
            acc *= base;
        }
        base *= base;
        exp >>= 1;
    }
    acc
}

/// E[t] of the truncated PRV by parts: Σ [r F(r) - l F(l) - ∫_l^r F], on the breakpoints
/// Opacus uses (log-spaced towards 0 on both sides).
fn truncated_mean(cdf: &impl Fn(f64) -> f64, t_min: f64, t_max: f64) -> f64 {
    let lower_exp = t_min.abs().log10().trunc();
    let upper_exp = t_max.log10().trunc();
    let mut points = vec![t_min];
    let logspace = |a: f64, b: f64| -> Vec<f64> {
        (0..10)
            .map(|k| 10f64.powf(a + (b - a) * f64::from(k) / 9.0))
            .collect()
    };
    points.extend(logspace(lower_exp, -5.0).into_iter().map(|x| -x));
    points.push(0.0);
    points.extend(logspace(-5.0, upper_exp));
    points.push(t_max);
    let mut mean = 0.0;
    for w in points.windows(2) {
        let (l, r) = (w[0], w[1]);
        let integral = integrate(cdf, l, r, 1e-13);
        mean += r * cdf(r) - l * cdf(l) - integral;
    }
    mean
}
