//! Gaussian noise from a cryptographically secure generator (ChaCha20, seeded from the OS).
//! torch's own generators (Mersenne Twister, Philox) are predictable from their outputs, so the
//! DP noise never comes from them. A fixed seed exists only for tests ([`NoiseSource::for_tests`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;
use tch::{Kind, Tensor};

use super::EngineError;

/// Source of the DP noise (and of Poisson sampling decisions).
pub struct NoiseSource {
    rng: ChaCha20Rng,
    deterministic: bool,
}

impl std::fmt::Debug for NoiseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSource")
            .field("deterministic", &self.deterministic)
            .finish()
    }
}

impl NoiseSource {
    /// ChaCha20 seeded from the operating system's entropy.
    pub fn from_os() -> Result<Self, EngineError> {
        let rng =
            ChaCha20Rng::try_from_os_rng().map_err(|e| EngineError::Entropy(e.to_string()))?;
        Ok(Self {
            rng,
            deterministic: false,
        })
    }

    /// A fixed seed: reproducible, and therefore not private. Tests and benchmarks only; reports
    /// say so.
    pub fn for_tests(seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            deterministic: true,
        }
    }

    /// Whether the seed was fixed (test mode).
    pub fn is_deterministic(&self) -> bool {
        self.deterministic
    }

    /// The generator, for Poisson sampling.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// A tensor shaped like `like` (same dtype and device) of N(0, std²) draws.
    pub fn gaussian_like(&mut self, like: &Tensor, std: f64) -> Result<Tensor, EngineError> {
        let n = like.numel();
        let t = match like.kind() {
            Kind::Double => {
                let v: Vec<f64> = (0..n)
                    .map(|_| self.rng.sample::<f64, _>(StandardNormal) * std)
                    .collect();
                Tensor::f_from_slice(&v)?
            }
            _ => {
                let s = std as f32;
                let v: Vec<f32> = (0..n)
                    .map(|_| self.rng.sample::<f32, _>(StandardNormal) * s)
                    .collect();
                Tensor::f_from_slice(&v)?.f_to_kind(like.kind())?
            }
        };
        Ok(t.f_reshape(like.size())?.f_to_device(like.device())?)
    }
}
