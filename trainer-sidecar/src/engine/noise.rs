//! Gaussian noise from a cryptographically secure generator (ChaCha20, seeded from the OS).
//! torch's own generators (Mersenne Twister, Philox) are predictable from their outputs, so the
//! DP noise never comes from them. A fixed seed exists only for tests ([`NoiseSource::for_tests`]).

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

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

    /// `n` standard normal draws as a 1-D tensor of `kind` (f64 for `Double`, else f32).
    pub fn standard_normals(&mut self, n: usize, kind: Kind) -> Result<Tensor, EngineError> {
        Ok(match kind {
            Kind::Double => {
                let v: Vec<f64> = (0..n)
                    .map(|_| self.rng.sample::<f64, _>(StandardNormal))
                    .collect();
                Tensor::f_from_slice(&v)?
            }
            _ => {
                let v: Vec<f32> = (0..n)
                    .map(|_| self.rng.sample::<f32, _>(StandardNormal))
                    .collect();
                Tensor::f_from_slice(&v)?
            }
        })
    }
}

/// Draws the next step's noise on a thread of its own while the current step computes: the
/// draws are the same, in the same order, as drawing them in `finish_step`, only off the
/// critical path. Holds one step of noise (the model's size) ahead.
pub(crate) struct Prefetch {
    rx: Receiver<Result<Vec<Tensor>, String>>,
}

impl Prefetch {
    /// Start drawing, for parameters of these sizes and element kind.
    pub(crate) fn start(mut source: NoiseSource, sizes: Vec<usize>, kind: Kind) -> Prefetch {
        let (tx, rx): (SyncSender<Result<Vec<Tensor>, String>>, _) = sync_channel(1);
        std::thread::Builder::new()
            .name("dp-noise".into())
            .spawn(move || {
                loop {
                    let step: Result<Vec<Tensor>, String> = sizes
                        .iter()
                        .map(|&n| source.standard_normals(n, kind).map_err(|e| e.to_string()))
                        .collect();
                    if tx.send(step).is_err() {
                        return; // the engine is gone
                    }
                }
            })
            .map_or_else(
                |e| {
                    let (tx, rx) = sync_channel(1);
                    let _ = tx.send(Err(format!("cannot start the noise thread: {e}")));
                    Prefetch { rx }
                },
                |_| Prefetch { rx },
            )
    }

    /// The next step's unit normals, one flat tensor per parameter.
    pub(crate) fn next(&self) -> Result<Vec<Tensor>, EngineError> {
        match self.rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(EngineError::Entropy(e)),
            Err(_) => Err(EngineError::Entropy("the noise thread stopped".into())),
        }
    }
}
