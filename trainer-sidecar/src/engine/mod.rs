//! The DP-SGD engine: Poisson sampling → per-example clipping → Gaussian noise → update.
//!
//! Per-example gradients are never materialised for the whole model. For a physical batch the
//! engine runs the forward pass with a recording [`Tape`], asks autograd for the gradients with
//! respect to each recorded layer *output* (`Tensor::run_backward`), and from those and the saved
//! layer inputs computes every example's gradient norm layer by layer:
//!
//! - Linear, input `[B, in]`: ‖∇W_i‖² = ‖a_i‖²‖g_i‖² (exact, no per-example matrix).
//! - Linear, input `[B, T, in]`: ghost norm ‖∇W_i‖² = ⟨a_i a_iᵀ, g_i g_iᵀ⟩ (T×T Gram matrices),
//!   or the per-example gradient g_iᵀa_i materialised, per layer by cost (mixed ghost clipping,
//!   Bu et al. 2022; see [`ClipMode`]).
//! - Embedding: ‖∇W_i‖² = Σ_{t,t'} [id_t = id_t'] ⟨g_t, g_t'⟩.
//! - LayerNorm / RMSNorm: per-example gradients Σ_t x̂_t ⊙ g_t (and Σ_t g_t) are only `[B, dim]`.
//!
//! The clipped sum Σ_i c_i ∇_i is then assembled directly from the same inputs and output
//! gradients (book-keeping, Bu et al. 2023): one matmul per layer with the output gradients
//! scaled by c_i, instead of a second backward pass. Any trainable tensor that belongs to no
//! layer with a rule makes [`PrivateEngine::new`] fail.

pub mod layers;
pub mod noise;
pub mod optim;
pub mod sampler;

use tch::{Kind, Tensor};

pub use layers::{Embedding, LayerKind, Linear, Model, Norm, Tape};
pub use noise::NoiseSource;
pub use optim::{Optimizer, OptimizerKind};
pub use sampler::PoissonSampler;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// libtorch refused an operation (shapes, dtypes, devices).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The model has a trainable tensor that no clipping rule covers.
    #[error(
        "parameter `{0}` belongs to no layer with a per-sample clipping rule (Linear, Embedding, \
         LayerNorm, RmsNorm); DP training would leave it unclipped. Freeze it \
         (requires_grad=false) or build it from a supported layer"
    )]
    Unsupported(String),
    /// A layer ran more than once in one forward pass (shared weights).
    #[error(
        "layer `{0}` ran {1} times in one forward pass; shared weights need cross terms the \
         clipping rules do not compute"
    )]
    Reused(String, usize),
    /// The loss closure returned the wrong shape.
    #[error("the loss must be one value per example ([{expected}]), got {got:?}")]
    LossShape {
        /// Examples in the batch.
        expected: i64,
        /// What came back.
        got: Vec<i64>,
    },
    /// A configuration value is out of range.
    #[error("invalid DP configuration: {0}")]
    Config(String),
    /// The OS random source failed.
    #[error("cannot seed the noise generator from the OS: {0}")]
    Entropy(String),
}

/// How Linear layers with sequence inputs compute per-example norms.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ClipMode {
    /// Per layer, by cost (mixed ghost clipping, Bu et al. 2022): the materialised per-example
    /// gradient when it fits the memory budget and the Gram matrices would cost more, i.e.
    /// T²·(in+out) > [`AUTO_GHOST_RATIO`]·in·out; ghost norms otherwise.
    Auto,
    /// Always ghost norms (least memory: B·T² per layer).
    Ghost,
    /// Always materialise per-example gradients (B·in·out per layer).
    Materialize,
}

/// `ClipMode::Auto` materialises a Linear layer's per-example gradients when the ghost norm's
/// Gram matrices take more than this many times as many multiply-adds per example,
/// T²·(in+out) against in·out.
///
/// Both ways then build the clipped sum with the same in·out·T multiply-adds per example, so
/// the choice is between the Grams' arithmetic and the per-example gradients' memory traffic
/// (written once, read twice). Bu et al.'s rule (ghost when 2T² < in·out) counts space; on a CPU
/// with glibc's allocator tuned (`runtime::tune_allocator`) it picks ghost where materialising
/// is faster. Calibrated with `benches/dp` (`dp_step --model transformer --seq T --batch 2048/T`,
/// d=256, f32, one thread): materialising was 1.3x slower than ghost at T=64 and 1.25x faster at
/// T=128, which puts the crossover near T=96, where T²·(in+out) ≈ 48·in·out.
pub const AUTO_GHOST_RATIO: i64 = 48;

/// A deliberate fault, so that the privacy audit ([`crate::audit`]) can show it detects a
/// broken engine. No job sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// The engine works as designed.
    #[default]
    None,
    /// No noise is added (the accountant still claims its ε).
    NoNoise,
    /// Gradients are summed unclipped (the accountant still assumes sensitivity C).
    NoClipping,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct DpConfig {
    /// Clipping norm C (flat, over all parameters of an example).
    pub max_grad_norm: f64,
    /// Noise multiplier σ: the noise standard deviation is σ·C.
    pub noise_multiplier: f64,
    /// The expected logical batch size q·N: the noisy sum is divided by it (not by the drawn
    /// size, which would leak it).
    pub expected_batch_size: f64,
    /// Clipping strategy for Linear layers over sequences.
    pub clip_mode: ClipMode,
    /// Per-layer memory budget for materialised per-example gradients, in bytes (Auto mode).
    pub materialize_budget: usize,
}

impl DpConfig {
    fn check(&self) -> Result<(), EngineError> {
        if !(self.max_grad_norm > 0.0 && self.max_grad_norm.is_finite()) {
            return Err(EngineError::Config(format!(
                "max_grad_norm must be positive, got {}",
                self.max_grad_norm
            )));
        }
        if !(self.noise_multiplier >= 0.0 && self.noise_multiplier.is_finite()) {
            return Err(EngineError::Config(format!(
                "noise_multiplier must be >= 0, got {}",
                self.noise_multiplier
            )));
        }
        if !(self.expected_batch_size > 0.0 && self.expected_batch_size.is_finite()) {
            return Err(EngineError::Config(format!(
                "expected_batch_size must be positive, got {}",
                self.expected_batch_size
            )));
        }
        Ok(())
    }
}

/// What one physical batch produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchStats {
    /// Examples in the batch.
    pub examples: i64,
    /// Sum of the per-example losses.
    pub loss_sum: f64,
    /// Examples whose gradient norm exceeded C.
    pub clipped: i64,
}

/// Per-layer clipping decisions, for reports and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerPlan {
    /// Layer name.
    pub name: String,
    /// Rule kind.
    pub kind: LayerKind,
    /// `ghost`, `materialized` or `exact` (inputs without a sequence axis, norms).
    pub method: &'static str,
}

/// Clipped-gradient accumulator and noise for one model.
pub struct PrivateEngine {
    config: DpConfig,
    layers: Vec<(String, LayerKind)>,
    /// One accumulator per layer parameter, in `Model::parameters` order.
    sums: Vec<Tensor>,
    /// Index of each layer's weight (and bias) in `sums`.
    slots: Vec<(usize, Option<usize>)>,
    /// Next-step noise; none when σ = 0.
    noise: Option<noise::Prefetch>,
    plans: Vec<Option<&'static str>>,
    fault: Fault,
}

impl std::fmt::Debug for PrivateEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateEngine")
            .field("config", &self.config)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl PrivateEngine {
    /// Check that every trainable tensor of `model` has a clipping rule and set up the
    /// accumulators.
    pub fn new(model: &Model, config: DpConfig, noise: NoiseSource) -> Result<Self, EngineError> {
        config.check()?;
        if let Some((name, _)) = model.free.iter().find(|(_, t)| t.requires_grad()) {
            return Err(EngineError::Unsupported(name.clone()));
        }
        let mut sums = Vec::new();
        let mut slots = Vec::new();
        for l in &model.layers {
            let w = sums.len();
            sums.push(l.weight.f_zeros_like()?);
            let b = match &l.bias {
                Some(b) => {
                    sums.push(b.f_zeros_like()?);
                    Some(w + 1)
                }
                None => None,
            };
            slots.push((w, b));
        }
        let sizes = sums.iter().map(Tensor::numel).collect();
        let noise = (config.noise_multiplier > 0.0)
            .then(|| noise::Prefetch::start(noise, sizes, model.kind));
        Ok(Self {
            config,
            layers: model
                .layers
                .iter()
                .map(|l| (l.name.clone(), l.kind))
                .collect(),
            sums,
            slots,
            noise,
            plans: vec![None; model.layers.len()],
            fault: Fault::None,
        })
    }

    /// Break the engine on purpose (the privacy audit's negative controls).
    pub fn inject_fault(&mut self, fault: Fault) {
        self.fault = fault;
    }

    /// The configuration.
    pub fn config(&self) -> &DpConfig {
        &self.config
    }

    /// How each layer was clipped in the last batch (`None`: not run yet).
    pub fn plan(&self) -> Vec<LayerPlan> {
        self.layers
            .iter()
            .zip(&self.plans)
            .map(|((name, kind), m)| LayerPlan {
                name: name.clone(),
                kind: *kind,
                method: m.unwrap_or("not run"),
            })
            .collect()
    }

    /// Run one physical batch: `forward` gets a recording tape and returns the per-example
    /// losses `[B]`. Adds Σ_i clip(∇ℓ_i) to the step's accumulators.
    pub fn accumulate(
        &mut self,
        batch: i64,
        forward: impl FnOnce(&mut Tape) -> Result<Tensor, EngineError>,
    ) -> Result<BatchStats, EngineError> {
        if batch == 0 {
            return Ok(BatchStats::default());
        }
        let mut tape = Tape::recording();
        let losses = forward(&mut tape)?;
        if losses.size() != [batch] {
            return Err(EngineError::LossShape {
                expected: batch,
                got: losses.size(),
            });
        }
        let mut seen = vec![0usize; self.layers.len()];
        for r in &tape.records {
            seen[r.layer] += 1;
        }
        if let Some((i, n)) = seen.iter().enumerate().find(|(_, n)| **n > 1) {
            return Err(EngineError::Reused(self.layers[i].0.clone(), *n));
        }
        let total = losses.f_sum(losses.kind())?;
        let outputs: Vec<&Tensor> = tape.records.iter().map(|r| &r.output).collect();
        let grads = Tensor::f_run_backward(&[&total], &outputs, false, false)?;

        // Pass 1: per-example squared norms, layer by layer.
        let kind = losses.kind();
        let device = losses.device();
        let mut norm2 = Tensor::f_zeros([batch], (kind, device))?;
        let mut prepared = Vec::with_capacity(grads.len());
        for (r, g) in tape.records.iter().zip(grads) {
            let p = self.prepare(r, g, batch)?;
            norm2 = norm2.f_add(&p.norm2)?;
            self.plans[r.layer] = Some(p.method);
            prepared.push((r.layer, p));
        }
        let norms = norm2.f_sqrt()?;
        let factors = if self.fault == Fault::NoClipping {
            norms.f_ones_like()?
        } else {
            norms
                .f_add_scalar(1e-6)?
                .f_reciprocal()?
                .f_mul_scalar(self.config.max_grad_norm)?
                .f_clamp_max(1.0)?
        };
        let clipped = norms
            .f_gt(self.config.max_grad_norm)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?;

        // Pass 2: Σ_i c_i ∇_i per parameter, from the same pieces.
        let _guard = tch::no_grad_guard();
        for (layer, p) in prepared {
            let (w, b) = self.slots[layer];
            match p.weighted(&factors)? {
                Weighted::Dense(gw, gb) => {
                    let _ = self.sums[w].f_add_(&gw)?;
                    if let (Some(b), Some(gb)) = (b, gb) {
                        let _ = self.sums[b].f_add_(&gb)?;
                    }
                }
                Weighted::Rows(ids, rows) => {
                    let _ = self.sums[w].f_index_add_(0, &ids, &rows)?;
                }
            }
        }
        Ok(BatchStats {
            examples: batch,
            loss_sum: total.f_double_value(&[])?,
            clipped,
        })
    }

    /// The accumulated clipped sum without noise (tests), in `Model::parameters` order.
    pub fn clipped_sum(&self) -> Vec<Tensor> {
        self.sums.iter().map(Tensor::shallow_clone).collect()
    }

    /// Close the logical batch: add N(0, σ²C²) to each accumulated sum, divide by the expected
    /// batch size, reset the accumulators. Returns the gradients in `Model::parameters` order.
    pub fn finish_step(&mut self) -> Result<Vec<Tensor>, EngineError> {
        let _guard = tch::no_grad_guard();
        let std = self.config.noise_multiplier * self.config.max_grad_norm;
        let mut out = Vec::with_capacity(self.sums.len());
        let noise = match &self.noise {
            Some(p) => Some(p.next()?).filter(|_| self.fault != Fault::NoNoise),
            None => None,
        };
        let scale = 1.0 / self.config.expected_batch_size;
        for (i, s) in self.sums.iter_mut().enumerate() {
            // (Σ clipped + σC·z) / E, in place on buffers this step owns.
            let g = match &noise {
                Some(z) => {
                    let mut z = z[i].f_reshape(s.size())?.f_to_device(s.device())?;
                    let _ = z.f_mul_scalar_(std)?;
                    let _ = z.f_add_(s)?;
                    let _ = z.f_mul_scalar_(scale)?;
                    z
                }
                None => s.f_mul_scalar(scale)?,
            };
            out.push(g);
            let _ = s.f_zero_()?;
        }
        Ok(out)
    }

    fn prepare(&self, r: &layers::Record, g: Tensor, batch: i64) -> Result<Prepared, EngineError> {
        let kind = self.layers[r.layer].1;
        let gsz = g.size();
        let d_out = *gsz.last().unwrap_or(&1);
        let seq = |t: &Tensor, last: i64| t.f_reshape([batch, -1, last]);
        match kind {
            LayerKind::Linear => {
                let d_in = *r.saved.size().last().unwrap_or(&1);
                let a = seq(&r.saved, d_in)?;
                let g = seq(&g, d_out)?;
                let t = a.size()[1];
                let has_bias = self.slots[r.layer].1.is_some();
                let gsum = if has_bias {
                    Some(g.f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?)
                } else {
                    None
                };
                let bias_n2 = match &gsum {
                    Some(s) => Some(s.f_square()?.f_sum_dim_intlist(
                        [1i64].as_slice(),
                        false,
                        None::<Kind>,
                    )?),
                    None => None,
                };
                let elem = a.kind().elt_size_in_bytes();
                let mat_bytes = (batch * d_in * d_out) as usize * elem;
                let materialize = t > 1
                    && match self.config.clip_mode {
                        ClipMode::Ghost => false,
                        ClipMode::Materialize => true,
                        ClipMode::Auto => {
                            mat_bytes <= self.config.materialize_budget
                                && t * t * (d_in + d_out) > AUTO_GHOST_RATIO * d_in * d_out
                        }
                    };
                let (w_n2, method, per_example) = if t == 1 {
                    let a2 = a.f_squeeze_dim(1)?;
                    let g2 = g.f_squeeze_dim(1)?;
                    let n = a2
                        .f_square()?
                        .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?
                        .f_mul(&g2.f_square()?.f_sum_dim_intlist(
                            [1i64].as_slice(),
                            false,
                            None::<Kind>,
                        )?)?;
                    (n, "exact", None)
                } else if materialize {
                    let pg = g.f_transpose(1, 2)?.f_bmm(&a)?; // [B, out, in]
                    // a fused norm: squaring first would write (and read back) a temporary as
                    // large as every per-example gradient, which costs as much as the bmm
                    let n = pg
                        .f_norm_scalaropt_dim(2.0, [1i64, 2].as_slice(), false)?
                        .f_square()?;
                    (n, "materialized", Some(pg))
                } else {
                    let aa = a.f_bmm(&a.f_transpose(1, 2)?)?;
                    let gg = g.f_bmm(&g.f_transpose(1, 2)?)?;
                    let n = aa.f_mul(&gg)?.f_sum_dim_intlist(
                        [1i64, 2].as_slice(),
                        false,
                        None::<Kind>,
                    )?;
                    (n, "ghost", None)
                };
                let norm2 = match &bias_n2 {
                    Some(b) => w_n2.f_add(b)?,
                    None => w_n2,
                };
                Ok(Prepared {
                    norm2,
                    method,
                    rule: Rule::Linear {
                        a,
                        g,
                        per_example,
                        gsum,
                    },
                })
            }
            LayerKind::Embedding => {
                let ids = r.saved.f_reshape([batch, -1])?;
                let g = seq(&g, d_out)?;
                let same = ids
                    .f_unsqueeze(2)?
                    .f_eq_tensor(&ids.f_unsqueeze(1)?)?
                    .f_to_kind(g.kind())?;
                let gg = g.f_bmm(&g.f_transpose(1, 2)?)?;
                let norm2 = gg.f_mul(&same)?.f_sum_dim_intlist(
                    [1i64, 2].as_slice(),
                    false,
                    None::<Kind>,
                )?;
                Ok(Prepared {
                    norm2,
                    method: "ghost",
                    rule: Rule::Embedding { ids, g },
                })
            }
            LayerKind::LayerNorm | LayerKind::RmsNorm => {
                let xh = seq(&r.saved, d_out)?;
                let g = seq(&g, d_out)?;
                let pw = xh
                    .f_mul(&g)?
                    .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?; // [B, d]
                let mut norm2 =
                    pw.f_square()?
                        .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?;
                let pb = if kind == LayerKind::LayerNorm {
                    let pb = g.f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?;
                    norm2 = norm2.f_add(&pb.f_square()?.f_sum_dim_intlist(
                        [1i64].as_slice(),
                        false,
                        None::<Kind>,
                    )?)?;
                    Some(pb)
                } else {
                    None
                };
                Ok(Prepared {
                    norm2,
                    method: "exact",
                    rule: Rule::Norm { pw, pb },
                })
            }
        }
    }
}

enum Rule {
    Linear {
        a: Tensor,
        g: Tensor,
        per_example: Option<Tensor>,
        gsum: Option<Tensor>,
    },
    Embedding {
        ids: Tensor,
        g: Tensor,
    },
    Norm {
        pw: Tensor,
        pb: Option<Tensor>,
    },
}

struct Prepared {
    norm2: Tensor,
    method: &'static str,
    rule: Rule,
}

impl Prepared {
    /// Σ_i c_i ∇W_i (and the bias), given the clip factors `c` `[B]`.
    fn weighted(self, c: &Tensor) -> Result<Weighted, EngineError> {
        // c as a row vector: c @ X sums rows weighted by c.
        let row = c.f_unsqueeze(0)?;
        match self.rule {
            Rule::Linear {
                a,
                g,
                per_example,
                gsum,
            } => {
                let gb = match gsum {
                    Some(s) => Some(row.f_mm(&s)?.f_squeeze_dim(0)?),
                    None => None,
                };
                let gw = match per_example {
                    Some(pg) => {
                        let sz = pg.size();
                        row.f_mm(&pg.f_reshape([sz[0], -1])?)?
                            .f_reshape([sz[1], sz[2]])?
                    }
                    None => {
                        let d_in = a.size()[2];
                        let d_out = g.size()[2];
                        let gc = g.f_mul(&c.f_reshape([-1, 1, 1])?)?;
                        gc.f_reshape([-1, d_out])?
                            .f_tr()?
                            .f_mm(&a.f_reshape([-1, d_in])?)?
                    }
                };
                Ok(Weighted::Dense(gw, gb))
            }
            Rule::Embedding { ids, g } => {
                let d = g.size()[2];
                let gc = g.f_mul(&c.f_reshape([-1, 1, 1])?)?.f_reshape([-1, d])?;
                Ok(Weighted::Rows(ids.f_reshape([-1])?, gc))
            }
            Rule::Norm { pw, pb } => {
                let gw = row.f_mm(&pw)?.f_squeeze_dim(0)?;
                let gb = match pb {
                    Some(pb) => Some(row.f_mm(&pb)?.f_squeeze_dim(0)?),
                    None => None,
                };
                Ok(Weighted::Dense(gw, gb))
            }
        }
    }
}

/// A layer's clipped gradient sum: dense tensors, or rows to add into an embedding table.
enum Weighted {
    Dense(Tensor, Option<Tensor>),
    Rows(Tensor, Tensor),
}

/// Gradients of `loss` (a scalar) with respect to every parameter, for non-private training
/// and for the benchmarks' baseline.
pub fn gradients(loss: &Tensor, params: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
    Ok(Tensor::f_run_backward(&[loss], params, false, false)?)
}
