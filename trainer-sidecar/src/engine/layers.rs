//! Layers with parameters, each with a per-sample clipping rule, and the tape that records what
//! the rules need during a forward pass.
//!
//! A model is built through [`Model`], which owns every trainable tensor and knows which layer
//! owns it. Parameter-free operations (activations, attention products, pooling, residuals) are
//! plain tensor code between layers. A trainable tensor created outside a layer
//! ([`Model::parameter`]) has no rule: the DP engine refuses such a model rather than leave the
//! tensor unclipped.

use tch::{Device, Kind, Tensor};

use super::EngineError;

/// The kinds of layers the engine can clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// `y = x Wᵀ + b` over the last axis; any number of leading axes after the batch axis.
    Linear,
    /// Row lookup `y = W[ids]`.
    Embedding,
    /// `y = (x - mean) / sqrt(var + eps) · w + b` over the last axis.
    LayerNorm,
    /// `y = x / sqrt(mean(x²) + eps) · w` over the last axis.
    RmsNorm,
}

/// One layer's parameters, as the model holds them.
#[derive(Debug)]
pub struct LayerParams {
    /// Name, for errors and reports (`block0.attn.qkv`).
    pub name: String,
    /// Which clipping rule applies.
    pub kind: LayerKind,
    /// `[out, in]` (Linear), `[vocab, dim]` (Embedding), `[dim]` (norms).
    pub weight: Tensor,
    /// `[out]` or `[dim]`, when the layer has one.
    pub bias: Option<Tensor>,
}

/// What one forward pass through a layer left for the clipping rule.
#[derive(Debug)]
pub(crate) struct Record {
    pub layer: usize,
    /// Linear: the input; Embedding: the ids; norms: the normalised input (before the affine).
    pub saved: Tensor,
    /// The layer's output, still in the autograd graph: the engine asks for dL/d(output).
    pub output: Tensor,
}

/// Collects [`Record`]s during a forward pass; a disabled tape records nothing (non-private
/// training and evaluation).
#[derive(Debug, Default)]
pub struct Tape {
    pub(crate) records: Vec<Record>,
    enabled: bool,
}

impl Tape {
    /// A tape that records (the DP engine's forward pass).
    pub fn recording() -> Self {
        Self {
            records: Vec::new(),
            enabled: true,
        }
    }

    /// A tape that records nothing.
    pub fn off() -> Self {
        Self::default()
    }

    fn push(&mut self, layer: usize, saved: &Tensor, output: &Tensor) {
        if self.enabled {
            self.records.push(Record {
                layer,
                saved: saved.detach(),
                output: output.shallow_clone(),
            });
        }
    }
}

/// Owner of every trainable tensor of a model.
#[derive(Debug)]
pub struct Model {
    /// The layers, in creation order.
    pub layers: Vec<LayerParams>,
    /// Trainable tensors that belong to no layer with a clipping rule.
    pub free: Vec<(String, Tensor)>,
    /// Element type of new parameters.
    pub kind: Kind,
    /// Device of new parameters.
    pub device: Device,
}

fn uniform(shape: &[i64], bound: f64, kind: Kind, device: Device) -> Result<Tensor, EngineError> {
    let t = Tensor::f_rand(shape, (kind, device))?;
    Ok(t.f_mul_scalar(2.0 * bound)?
        .f_sub_scalar(bound)?
        .set_requires_grad(true))
}

impl Model {
    /// An empty model whose parameters will have this element type and device.
    pub fn new(kind: Kind, device: Device) -> Self {
        Self {
            layers: Vec::new(),
            free: Vec::new(),
            kind,
            device,
        }
    }

    fn add(&mut self, name: &str, kind: LayerKind, weight: Tensor, bias: Option<Tensor>) -> usize {
        self.layers.push(LayerParams {
            name: name.to_string(),
            kind,
            weight,
            bias,
        });
        self.layers.len() - 1
    }

    /// A linear layer with PyTorch's default initialisation (uniform ±1/√in).
    pub fn linear(
        &mut self,
        name: &str,
        inputs: i64,
        outputs: i64,
        bias: bool,
    ) -> Result<Linear, EngineError> {
        let bound = 1.0 / (inputs as f64).sqrt();
        let w = uniform(&[outputs, inputs], bound, self.kind, self.device)?;
        let b = if bias {
            Some(uniform(&[outputs], bound, self.kind, self.device)?)
        } else {
            None
        };
        let id = self.add(
            name,
            LayerKind::Linear,
            w.shallow_clone(),
            b.as_ref().map(Tensor::shallow_clone),
        );
        Ok(Linear {
            id,
            weight: w,
            bias: b,
        })
    }

    /// An embedding table initialised N(0, 1), as PyTorch does.
    pub fn embedding(
        &mut self,
        name: &str,
        vocab: i64,
        dim: i64,
    ) -> Result<Embedding, EngineError> {
        let w = Tensor::f_randn([vocab, dim], (self.kind, self.device))?.set_requires_grad(true);
        let id = self.add(name, LayerKind::Embedding, w.shallow_clone(), None);
        Ok(Embedding { id, weight: w })
    }

    /// A layer norm over the last axis (weight 1, bias 0).
    pub fn layer_norm(&mut self, name: &str, dim: i64, eps: f64) -> Result<Norm, EngineError> {
        let w = Tensor::f_ones([dim], (self.kind, self.device))?.set_requires_grad(true);
        let b = Tensor::f_zeros([dim], (self.kind, self.device))?.set_requires_grad(true);
        let id = self.add(
            name,
            LayerKind::LayerNorm,
            w.shallow_clone(),
            Some(b.shallow_clone()),
        );
        Ok(Norm {
            id,
            weight: w,
            bias: Some(b),
            eps,
            rms: false,
        })
    }

    /// An RMS norm over the last axis (weight 1, no bias).
    pub fn rms_norm(&mut self, name: &str, dim: i64, eps: f64) -> Result<Norm, EngineError> {
        let w = Tensor::f_ones([dim], (self.kind, self.device))?.set_requires_grad(true);
        let id = self.add(name, LayerKind::RmsNorm, w.shallow_clone(), None);
        Ok(Norm {
            id,
            weight: w,
            bias: None,
            eps,
            rms: true,
        })
    }

    /// A trainable tensor outside any layer (a learned scale, a positional table used by hand).
    /// Non-private training uses it; the DP engine refuses the model, because no rule bounds
    /// its per-example gradient.
    pub fn parameter(&mut self, name: &str, value: Tensor) -> Tensor {
        let t = value.detach().set_requires_grad(true);
        self.free.push((name.to_string(), t.shallow_clone()));
        t
    }

    /// Every trainable tensor with its name, layers first (weight then bias), then free ones.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.push((format!("{}.weight", l.name), l.weight.shallow_clone()));
            if let Some(b) = &l.bias {
                out.push((format!("{}.bias", l.name), b.shallow_clone()));
            }
        }
        out.extend(
            self.free
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone())),
        );
        out
    }
}

/// Handle to a linear layer.
#[derive(Debug)]
pub struct Linear {
    id: usize,
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `x Wᵀ + b` over the last axis of `x` (`[batch, ..., in]`).
    pub fn forward(&self, x: &Tensor, tape: &mut Tape) -> Result<Tensor, EngineError> {
        let y = x.f_linear(&self.weight, self.bias.as_ref())?;
        tape.push(self.id, x, &y);
        Ok(y)
    }
}

/// Handle to an embedding table.
#[derive(Debug)]
pub struct Embedding {
    id: usize,
    /// `[vocab, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    /// Rows of the table for `ids` (`[batch, ...]`, int64).
    pub fn forward(&self, ids: &Tensor, tape: &mut Tape) -> Result<Tensor, EngineError> {
        let y = Tensor::f_embedding(&self.weight, ids, -1, false, false)?;
        tape.push(self.id, ids, &y);
        Ok(y)
    }
}

/// Handle to a layer norm or RMS norm.
#[derive(Debug)]
pub struct Norm {
    id: usize,
    /// `[dim]`.
    pub weight: Tensor,
    /// `[dim]` (layer norm only).
    pub bias: Option<Tensor>,
    eps: f64,
    rms: bool,
}

impl Norm {
    /// Normalise over the last axis, then scale (and shift).
    pub fn forward(&self, x: &Tensor, tape: &mut Tape) -> Result<Tensor, EngineError> {
        let last: &[i64] = &[-1];
        let normalised = if self.rms {
            let ms = x.f_square()?.f_mean_dim(last, true, None::<Kind>)?;
            x.f_mul(&ms.f_add_scalar(self.eps)?.f_rsqrt()?)?
        } else {
            // libtorch's fused kernel without the affine part: x̂ is what the clipping rule needs.
            let dim = *x.size().last().unwrap_or(&1);
            x.f_layer_norm(
                [dim].as_slice(),
                None::<Tensor>,
                None::<Tensor>,
                self.eps,
                false,
            )?
        };
        let mut y = normalised.f_mul(&self.weight)?;
        if let Some(b) = &self.bias {
            y = y.f_add(b)?;
        }
        tape.push(self.id, &normalised, &y);
        Ok(y)
    }
}
