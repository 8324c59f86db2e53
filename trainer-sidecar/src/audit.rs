//! An empirical privacy audit in one training run (Steinke, Nasr & Jagielski, "Privacy
//! Auditing with One (1) Training Run", NeurIPS 2023).
//!
//! `m` canaries are examples whose gradient is a Dirac: a one-hot input through a linear layer
//! with a linear loss makes the example's gradient `s` at one weight and zero elsewhere, each
//! canary at its own weight, `s` far above the clipping norm C. Each canary is put in the
//! training set with probability ½ (S_i = ±1). One DP-SGD run trains on the real examples and
//! the included canaries, all Poisson-sampled at the same rate, through the engine's own
//! clipping and noise. White-box score: the sum over steps of the privatised gradient at the
//! canary's weight (what an adversary seeing every update sees). Guess "in" for the k highest
//! scores; if the run is (ε, δ)-DP, the number of correct guesses among k is dominated by a
//! Binomial(k, e^ε/(1+e^ε)) up to a δ term, so many correct guesses reject every ε below a
//! bound. The bound holds at the confidence asked for, over a pre-registered set of k
//! (powers of two) with a Bonferroni correction.
//!
//! With the accountant's σ and working clipping the bound stays below the claimed ε (the audit
//! is loose by design: one run). With the noise off or the clipping off ([`Fault`]) the
//! canaries stand out and the bound passes the claimed ε: the audit can fail, and catches
//! those bugs.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::accountants::{self, Accountant};
use crate::engine::{
    ClipMode, DpConfig, EngineError, Fault, Model, NoiseSource, Optimizer, OptimizerKind,
    PoissonSampler, PrivateEngine,
};

/// Settings of an audit run.
#[derive(Debug, Clone, Serialize)]
pub struct AuditConfig {
    /// Canaries m (each included with probability ½).
    pub canaries: usize,
    /// Real examples n (always included).
    pub examples: usize,
    /// Expected examples per step (q = this / (n + m)).
    pub batch_size: usize,
    /// Steps T.
    pub steps: u64,
    /// The ε the accountant claims (σ is calibrated to it).
    pub target_epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Clipping norm C.
    pub max_grad_norm: f64,
    /// A canary's gradient norm before clipping, in units of C.
    pub canary_scale: f64,
    /// Confidence of the lower bound (0.95).
    pub confidence: f64,
    /// A deliberate fault (negative controls).
    #[serde(skip)]
    pub fault: Fault,
    /// Fixed seed (reproducible).
    pub seed: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            canaries: 2000,
            examples: 1000,
            batch_size: 150,
            steps: 250,
            target_epsilon: 2.0,
            delta: 1e-5,
            max_grad_norm: 1.0,
            canary_scale: 100.0,
            confidence: 0.95,
            fault: Fault::None,
            seed: None,
        }
    }
}

/// What an audit found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The settings.
    pub config: AuditConfig,
    /// The fault injected, if any.
    pub fault: &'static str,
    /// ε the accountant claims for the run.
    pub claimed_epsilon: f64,
    /// σ the run used (calibrated to the claim).
    pub noise_multiplier: f64,
    /// Sample rate q.
    pub sample_rate: f64,
    /// ε the run provably exceeds... or 0: the largest ε rejected at `confidence`.
    pub epsilon_lower_bound: f64,
    /// Canaries included.
    pub included: usize,
    /// The guess that gave the bound: k guesses, this many correct.
    pub guesses: usize,
    /// Correct among them.
    pub correct: usize,
    /// Whether the run is consistent with its claim (lower bound ≤ claimed ε).
    pub consistent: bool,
    /// Seconds the run took.
    pub seconds: f64,
}

/// `ln C(n, k)` from a table of `ln i!`.
struct LogFact(Vec<f64>);

impl LogFact {
    fn new(n: usize) -> LogFact {
        let mut v = vec![0.0; n + 1];
        for i in 1..=n {
            v[i] = v[i - 1] + (i as f64).ln();
        }
        LogFact(v)
    }
    fn choose(&self, n: usize, k: usize) -> f64 {
        self.0[n] - self.0[k] - self.0[n - k]
    }
}

/// `P[Binomial(r, p) = k]` for every k, by log-space pmf.
fn pmf(lf: &LogFact, r: usize, p: f64) -> Vec<f64> {
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    (0..=r)
        .map(|k| (lf.choose(r, k) + k as f64 * lp + (r - k) as f64 * lq).exp())
        .collect()
}

/// The p-value of seeing `v` correct of `r` guesses if the run were (ε, δ)-DP, with `m`
/// canaries (Steinke et al., Appendix D).
pub fn p_value(lf_n: usize, m: usize, r: usize, v: usize, eps: f64, delta: f64) -> f64 {
    let lf = LogFact::new(lf_n.max(r));
    let q = 1.0 / (1.0 + (-eps).exp());
    let pm = pmf(&lf, r, q);
    let beta: f64 = pm[v..].iter().sum();
    if delta == 0.0 {
        return beta.min(1.0);
    }
    // α = max_i P[v−i ≤ W < v] / i
    let mut alpha: f64 = 0.0;
    let mut run = 0.0;
    for i in 1..=v {
        run += pm[v - i];
        alpha = alpha.max(run / i as f64);
    }
    (beta + alpha * delta * 2.0 * m as f64).min(1.0)
}

/// The largest ε rejected at `significance` by `v` correct of `r` guesses (0 if none).
pub fn epsilon_lower_bound(m: usize, r: usize, v: usize, delta: f64, significance: f64) -> f64 {
    if r == 0 || p_value(m, m, r, v, 0.0, delta) >= significance {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    // past ε ≈ 30 the accuracy e^ε/(1+e^ε) rounds to 1 in f64
    while p_value(m, m, r, v, hi, delta) < significance && hi < 30.0 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if p_value(m, m, r, v, mid, delta) < significance {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The bound from the scores of included and excluded canaries: guess "in" for the k highest
/// scores, k over powers of two up to m (pre-registered), Bonferroni over them.
pub fn bound_from_scores(
    scores: &[f64],
    included: &[bool],
    delta: f64,
    confidence: f64,
) -> (f64, usize, usize) {
    let m = scores.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut ks = Vec::new();
    let mut k = 1;
    while k < m {
        ks.push(k);
        k *= 2;
    }
    ks.push(m);
    let significance = (1.0 - confidence) / ks.len() as f64;
    let mut best = (0.0, 0, 0);
    for &k in &ks {
        let v = order[..k].iter().filter(|&&i| included[i]).count();
        let eps = epsilon_lower_bound(m, k, v, delta, significance);
        if eps > best.0 {
            best = (eps, k, v);
        }
    }
    best
}

/// Run the audit.
pub fn run(cfg: &AuditConfig) -> Result<AuditReport, AuditError> {
    let started = std::time::Instant::now();
    let (n, m) = (cfg.examples, cfg.canaries);
    // inputs: the first half of the columns carry the real features, the second half the
    // canaries' one-hot inputs; outputs are all shared
    let (half, d_out) = (32i64, 64i64);
    let d_in = 2 * half;
    if m as i64 > half * d_out {
        return Err(AuditError::Config(format!(
            "at most {} canaries (one weight each)",
            half * d_out
        )));
    }
    let mut rng = match cfg.seed {
        Some(s) => NoiseSource::for_tests(s),
        None => NoiseSource::from_os()?,
    };
    use rand::Rng;
    let included: Vec<bool> = (0..m).map(|_| rng.rng().random_bool(0.5)).collect();
    let canary_ids: Vec<usize> = (0..m).filter(|&i| included[i]).collect();
    let total = n + canary_ids.len();
    let q = cfg.batch_size as f64 / total as f64;
    let sigma = accountants::noise_multiplier(
        Accountant::Rdp,
        cfg.target_epsilon,
        q,
        cfg.steps,
        cfg.delta,
    )?;
    let claimed = accountants::epsilon(
        Accountant::Rdp,
        accountants::SubsampledGaussian::new(q, sigma)?,
        cfg.steps,
        cfg.delta,
    )?
    .epsilon;
    if let Some(s) = cfg.seed {
        tch::manual_seed(s as i64);
    }
    let device = Device::Cpu;
    let mut model = Model::new(Kind::Float, device);
    let layer = model.linear("audit", d_in, d_out, false)?;
    let mut params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    // real examples: regression of random targets from random features
    let feats = Tensor::f_randn([n as i64, half], (Kind::Float, device))?;
    let x_real = Tensor::f_cat(
        &[
            &feats,
            &Tensor::f_zeros([n as i64, half], (Kind::Float, device))?,
        ],
        1,
    )?;
    let t_real = Tensor::f_randn([n as i64, d_out], (Kind::Float, device))?.f_mul_scalar(0.1)?;
    let noise = match cfg.seed {
        Some(s) => NoiseSource::for_tests(s.wrapping_add(17)),
        None => NoiseSource::from_os()?,
    };
    let config = DpConfig {
        max_grad_norm: cfg.max_grad_norm,
        noise_multiplier: sigma,
        expected_batch_size: q * total as f64,
        clip_mode: ClipMode::Auto,
        materialize_budget: 64 << 20,
    };
    let mut engine = PrivateEngine::new(&model, config, noise)?;
    engine.inject_fault(cfg.fault);
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.05, 0.0, 0.0);
    let sampler = PoissonSampler::new(total, q);
    let mut scores = vec![0.0f64; m];
    // canary i's weight: output row i / half, input column half + i % half
    let coord = |i: usize| -> (i64, i64) { ((i as i64) / half, half + (i as i64) % half) };
    let s = cfg.canary_scale * cfg.max_grad_norm;
    for _ in 0..cfg.steps {
        let batch = sampler.sample(&mut rng);
        let b = batch.len() as i64;
        if b > 0 {
            let mut x = Vec::with_capacity(batch.len());
            let mut t = Vec::with_capacity(batch.len());
            let mut u = vec![0f32; batch.len() * d_out as usize];
            let mut a = vec![0f32; batch.len()];
            for (row, &j) in batch.iter().enumerate() {
                let j = j as usize;
                if j < n {
                    x.push(x_real.f_get(j as i64)?);
                    t.push(t_real.f_get(j as i64)?);
                    a[row] = 1.0;
                } else {
                    let c = canary_ids[j - n];
                    let (out, col) = coord(c);
                    let mut xi = vec![0f32; d_in as usize];
                    xi[col as usize] = 1.0;
                    x.push(Tensor::f_from_slice(&xi)?);
                    t.push(Tensor::f_zeros([d_out], (Kind::Float, device))?);
                    u[row * d_out as usize + out as usize] = s as f32;
                }
            }
            let x = Tensor::f_stack(&x, 0)?;
            let t = Tensor::f_stack(&t, 0)?;
            let u = Tensor::f_from_slice(&u)?.f_view([b, d_out])?;
            let a = Tensor::f_from_slice(&a)?;
            engine.accumulate(b, |tape| {
                let y = layer.forward(&x, tape)?;
                // real rows: ½‖y − t‖²; canary rows: s·y_out (gradient s at one weight)
                let mse = y
                    .f_sub(&t)?
                    .f_square()?
                    .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?
                    .f_mul_scalar(0.5)?
                    .f_mul(&a)?;
                let lin = y
                    .f_mul(&u)?
                    .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?;
                Ok(mse.f_add(&lin)?)
            })?;
        }
        let grads = engine.finish_step()?;
        // white-box score: the privatised gradient at each canary's weight
        let g: Vec<f32> = Vec::try_from(&grads[0].f_flatten(0, -1)?)?;
        for (i, sc) in scores.iter_mut().enumerate() {
            let (out, col) = coord(i);
            *sc += f64::from(g[(out * d_in + col) as usize]);
        }
        opt.step(&mut params, &grads)?;
    }
    let (bound, k, v) = bound_from_scores(&scores, &included, cfg.delta, cfg.confidence);
    Ok(AuditReport {
        config: cfg.clone(),
        fault: match cfg.fault {
            Fault::None => "none",
            Fault::NoNoise => "no noise",
            Fault::NoClipping => "no clipping",
        },
        claimed_epsilon: claimed,
        noise_multiplier: sigma,
        sample_rate: q,
        epsilon_lower_bound: bound,
        included: canary_ids.len(),
        guesses: k,
        correct: v,
        consistent: bound <= claimed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Bad settings.
    #[error("audit: {0}")]
    Config(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The accountant gave no number.
    #[error(transparent)]
    Accountant(#[from] accountants::AccountantError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_published_recipe() {
        // all r guesses correct, δ = 0: ε = logit(p^(1/r))
        for r in [10usize, 100, 1000] {
            let want = {
                let x = 0.05f64.powf(1.0 / r as f64);
                (x / (1.0 - x)).ln()
            };
            let got = epsilon_lower_bound(r, r, r, 0.0, 0.05);
            assert!((got - want).abs() < 1e-6, "r={r}: {got} vs {want}");
        }
        // the research notes' table (δ = 1e-5, m = 1000): r = 1000 all correct → 5.78
        let got = epsilon_lower_bound(1000, 1000, 1000, 1e-5, 0.05);
        assert!((got - 5.78).abs() < 0.01, "{got}");
        // chance-level guessing rejects nothing
        assert_eq!(epsilon_lower_bound(1000, 500, 250, 1e-5, 0.05), 0.0);
    }

    #[test]
    fn perfectly_separated_scores_give_a_high_bound() {
        let m = 1000;
        let included: Vec<bool> = (0..m).map(|i| i % 2 == 0).collect();
        let scores: Vec<f64> = included
            .iter()
            .map(|&b| if b { 1.0 } else { 0.0 })
            .collect();
        let (eps, k, v) = bound_from_scores(&scores, &included, 1e-5, 0.95);
        // 256 of 256 right at 0.05/11 (Bonferroni over the 11 guess counts)
        assert!(eps > 3.5 && k == v, "{eps} {k} {v}");
        // random scores give nothing
        let scores: Vec<f64> = (0..m).map(|i| ((i * 7919) % 1000) as f64).collect();
        let (eps, _, _) = bound_from_scores(&scores, &included, 1e-5, 0.95);
        assert!(eps < 0.5, "{eps}");
    }
}
