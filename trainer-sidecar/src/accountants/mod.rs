//! Privacy accountants for the Poisson-subsampled Gaussian mechanism that DP-SGD runs: how much
//! (ε, δ) a number of steps at sample rate q and noise multiplier σ costs, and the smallest σ that
//! keeps a run within a target ε. No torch here: the CLI, the budget monitor and the ledger use
//! these functions on plain numbers.
//!
//! - [`rdp`]: Rényi DP (Mironov, Talwar & Zhang 2019), integer and fractional orders, converted
//!   with Canonne, Kamath & Steinke 2020. A bound.
//! - [`prv`]: numerical composition of privacy-loss random variables (Gopi, Lee & Wutschitz
//!   2021). A bound (the upper end of its proven interval), tighter than RDP.
//! - [`gdp`]: the Gaussian-DP central-limit estimate. An approximation, labelled as such.
//!
//! Every function refuses with [`AccountantError`] where the numerics cannot give a bound,
//! rather than return a number that could understate ε.

pub mod gdp;
pub mod monitor;
pub mod prv;
pub mod rdp;
pub mod special;

use serde::Serialize;

/// Why an accountant gave no number.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccountantError {
    /// A parameter is out of its domain.
    #[error("invalid accounting parameter: {0}")]
    Invalid(String),
    /// The computation cannot produce a trustworthy bound for these parameters.
    #[error("cannot bound epsilon: {0}")]
    Numerics(&'static str),
    /// The PRV mesh would be too large to allocate.
    #[error(
        "cannot bound epsilon: the PRV mesh would need {points:.0} points (limit {max}); \
         use --accountant rdp or a larger eps_error"
    )]
    TooLarge {
        /// Points the mesh would need.
        points: f64,
        /// The limit.
        max: usize,
    },
    /// No noise multiplier up to the search limit reaches the target.
    #[error(
        "no noise multiplier up to {max_sigma} reaches epsilon {target} (q={q}, steps={steps}, \
         delta={delta}): the budget is too small for this many steps"
    )]
    Unreachable {
        /// The target ε.
        target: f64,
        /// Sample rate.
        q: f64,
        /// Steps.
        steps: u64,
        /// δ.
        delta: f64,
        /// The largest σ tried.
        max_sigma: f64,
    },
}

/// One step of DP-SGD seen by the accountant: Poisson sampling at rate q, Gaussian noise σ·C.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SubsampledGaussian {
    /// Probability that each example joins a batch, in [0, 1].
    pub sample_rate: f64,
    /// Noise standard deviation divided by the clipping norm, > 0.
    pub noise_multiplier: f64,
}

impl SubsampledGaussian {
    /// Checked constructor.
    pub fn new(sample_rate: f64, noise_multiplier: f64) -> Result<Self, AccountantError> {
        if !(0.0..=1.0).contains(&sample_rate) {
            return Err(AccountantError::Invalid(format!(
                "sample rate must be in [0, 1], got {sample_rate}"
            )));
        }
        if !(noise_multiplier > 0.0 && noise_multiplier.is_finite()) {
            return Err(AccountantError::Invalid(format!(
                "noise multiplier must be positive and finite, got {noise_multiplier}"
            )));
        }
        Ok(Self {
            sample_rate,
            noise_multiplier,
        })
    }
}

/// Which accountant to use.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    serde::Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Accountant {
    /// Rényi DP: a bound, cheap, a little loose.
    Rdp,
    /// Privacy random variables: a tighter bound, costs an FFT.
    Prv,
    /// Gaussian DP (CLT): an approximation, not a bound.
    Gdp,
}

impl Accountant {
    /// Lower-case name, as the CLI and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rdp => "rdp",
            Self::Prv => "prv",
            Self::Gdp => "gdp",
        }
    }

    /// Whether the value is a proven upper bound on ε (false for GDP).
    pub fn is_bound(self) -> bool {
        !matches!(self, Self::Gdp)
    }
}

/// ε spent, with what produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Epsilon {
    /// The ε for the requested δ.
    pub epsilon: f64,
    /// The accountant's name.
    pub accountant: &'static str,
    /// The RDP order that gave the bound (RDP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Set for GDP, whose value is an approximation rather than a bound.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub approximation: bool,
}

fn check_delta(delta: f64) -> Result<(), AccountantError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AccountantError::Invalid(format!(
            "delta must be in (0, 1), got {delta}"
        )))
    }
}

/// ε after `steps` steps of `mechanism` at `delta`.
pub fn epsilon(
    accountant: Accountant,
    mechanism: SubsampledGaussian,
    steps: u64,
    delta: f64,
) -> Result<Epsilon, AccountantError> {
    check_delta(delta)?;
    let (epsilon, order) = match accountant {
        Accountant::Rdp => {
            if steps == 0 {
                (0.0, None)
            } else {
                let (e, o) = rdp::epsilon(mechanism, steps, delta, &rdp::default_orders())?;
                (e, Some(o))
            }
        }
        Accountant::Prv => (
            prv::epsilon(mechanism, steps, delta, prv::PrvOptions::default())?.upper,
            None,
        ),
        Accountant::Gdp => (gdp::epsilon(mechanism, steps, delta)?, None),
    };
    Ok(Epsilon {
        epsilon,
        accountant: accountant.name(),
        order,
        approximation: !accountant.is_bound(),
    })
}

/// The largest σ the calibration searches (Opacus stops at 2000 too).
pub const MAX_SIGMA: f64 = 2000.0;

/// The smallest noise multiplier (to a relative precision of 1e-6) whose ε after `steps` steps at
/// `delta` is at most `target_epsilon`. The returned σ always satisfies the target.
pub fn noise_multiplier(
    accountant: Accountant,
    target_epsilon: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<f64, AccountantError> {
    check_delta(delta)?;
    if !(target_epsilon > 0.0 && target_epsilon.is_finite()) {
        return Err(AccountantError::Invalid(format!(
            "target epsilon must be positive and finite, got {target_epsilon}"
        )));
    }
    SubsampledGaussian::new(sample_rate, 1.0)?;
    let eps_at = |sigma: f64| -> Result<f64, AccountantError> {
        Ok(epsilon(
            accountant,
            SubsampledGaussian::new(sample_rate, sigma)?,
            steps,
            delta,
        )?
        .epsilon)
    };
    let unreachable = AccountantError::Unreachable {
        target: target_epsilon,
        q: sample_rate,
        steps,
        delta,
        max_sigma: MAX_SIGMA,
    };
    // Bracket: grow σ until the target holds.
    let mut hi = 1.0;
    loop {
        match eps_at(hi) {
            Ok(e) if e <= target_epsilon => break,
            // Too little noise for the numerics (PRV mesh, exp range) also means "more noise".
            Ok(_) | Err(AccountantError::Numerics(_) | AccountantError::TooLarge { .. }) => {}
            Err(e) => return Err(e),
        }
        hi *= 2.0;
        if hi > MAX_SIGMA {
            return Err(unreachable);
        }
    }
    let mut lo = if hi > 1.0 { hi / 2.0 } else { 0.0 };
    while (hi - lo) > 1e-6 * hi {
        let mid = 0.5 * (lo + hi);
        match eps_at(mid) {
            Ok(e) if e <= target_epsilon => hi = mid,
            Ok(_) | Err(AccountantError::Numerics(_) | AccountantError::TooLarge { .. }) => {
                lo = mid
            }
            Err(e) => return Err(e),
        }
    }
    Ok(hi)
}
