//! The Llama / Qwen2 decoder, frozen, with LoRA adapters the DP engine trains.
//!
//! The math is transformers 5's (`modeling_llama.py`), step for step, because a fine-tuned
//! adapter is only useful on the model it was trained for: RMSNorm in f32 with the weight
//! applied last, RoPE in the `rotate_half` layout with `cat(freqs, freqs)`, grouped-query
//! attention through libtorch's scaled-dot-product attention (head h reads kv head h / n_rep),
//! SwiGLU, the lm_head from the file or tied to the embedding.
//!
//! Frozen weights are plain tensors without gradients; each adapter's A and B are
//! [`engine::Linear`](crate::engine::Linear) layers of an engine [`Model`], so the DP engine
//! sees exactly the adapters and clips them per example (B's recorded output is scaled by s
//! after the record, so the gradient the engine reads already carries s).
//!
//! A batch row is one privacy unit: one example, or (user-level privacy) several examples of
//! one user laid end to end, each with its own positions and attending only to itself.

use tch::{Device, Kind, Tensor};

use super::LlmError;
use super::config::{LlmConfig, RopeScaling};
use super::lora::{LoraSpec, Target};
use super::weights::Weights;
use crate::engine::{Linear, Model, Tape};

/// An adapter on one projection.
#[derive(Debug)]
struct Adapter {
    a: Linear,
    b: Linear,
    scale: f64,
    dropout: f64,
}

/// A frozen projection, perhaps adapted.
#[derive(Debug)]
struct Proj {
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
}

impl Proj {
    fn forward(&self, x: &Tensor, tape: &mut Tape, train: bool) -> Result<Tensor, LlmError> {
        let y = x.f_linear(&self.weight, self.bias.as_ref())?;
        let Some(ad) = &self.adapter else {
            return Ok(y);
        };
        let xin = if train && ad.dropout > 0.0 {
            x.f_dropout(ad.dropout, true)?
        } else {
            x.shallow_clone()
        };
        let xin = if xin.kind() == Kind::Float {
            xin
        } else {
            xin.f_to_kind(Kind::Float)?
        };
        let h = ad.a.forward(&xin, tape)?;
        let z = ad.b.forward(&h, tape)?;
        let z = z.f_mul_scalar(ad.scale)?;
        Ok(y.f_add(&z.f_to_kind(y.kind())?)?)
    }
}

#[derive(Debug)]
struct Block {
    input_norm: Tensor,
    post_norm: Tensor,
    /// q, k, v, o, gate, up, down (the order of [`Target::ALL`]).
    proj: Vec<Proj>,
}

/// A batch of rows for the decoder: token ids (right-padded), their positions, which tokens
/// attend to which, and where the loss is taken.
#[derive(Debug)]
pub struct Batch {
    /// `[B, T]` token ids.
    pub ids: Tensor,
    /// `[B, T]` positions (restart at 0 with each example of a row).
    pub positions: Tensor,
    /// `[B, 1, T, T]` which key each query may see, when rows hold several examples; `None`:
    /// plain causal attention (one example per row, padding only at the end).
    pub mask: Option<Tensor>,
    /// `[N]` flat indices `b·T + t` of the positions whose next token is predicted.
    pub at: Tensor,
    /// `[N]` the token to predict there.
    pub targets: Tensor,
    /// `[N]` the row each loss position belongs to.
    pub row: Tensor,
    /// `[N]` weight of each position's loss (1 / the example's number of loss positions: each
    /// example contributes its mean token loss).
    pub weight: Tensor,
    /// Rows B.
    pub rows: i64,
    /// Tokens in the batch, padding excluded.
    pub tokens: i64,
}

/// One example as the batch builder needs it.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Token ids.
    pub ids: &'a [i64],
    /// Per position: whether the token at that position is predicted (trained on).
    pub trained: &'a [bool],
}

impl Batch {
    /// Build a batch; each row is a list of examples laid end to end (one example per row for
    /// example-level privacy). `pad` fills the rows' ends.
    pub fn new(rows: &[Vec<Segment<'_>>], pad: i64, device: Device) -> Result<Batch, LlmError> {
        let b = rows.len();
        let t = rows
            .iter()
            .map(|r| r.iter().map(|s| s.ids.len()).sum::<usize>())
            .max()
            .unwrap_or(0)
            .max(1);
        let packed = rows.iter().any(|r| r.len() > 1);
        let mut ids = vec![pad; b * t];
        let mut pos = vec![0i64; b * t];
        // segment number of each position (-1: padding), for the packed mask
        let mut seg = vec![-1i64; b * t];
        let (mut at, mut targets, mut row, mut weight) = (vec![], vec![], vec![], vec![]);
        let mut tokens = 0i64;
        for (r, segments) in rows.iter().enumerate() {
            let mut off = 0usize;
            for (k, s) in segments.iter().enumerate() {
                let n = s.ids.len();
                let trained = (1..n).filter(|&i| s.trained[i]).count();
                for i in 0..n {
                    let flat = r * t + off + i;
                    ids[flat] = s.ids[i];
                    pos[flat] = i as i64;
                    seg[flat] = k as i64;
                    // position i predicts token i+1
                    if i + 1 < n && s.trained[i + 1] {
                        at.push(flat as i64);
                        targets.push(s.ids[i + 1]);
                        row.push(r as i64);
                        weight.push(1.0 / trained as f32);
                    }
                }
                off += n;
                tokens += n as i64;
            }
        }
        let mask = if packed {
            let seg = Tensor::from_slice(&seg).f_view([b as i64, t as i64])?;
            let same = seg.f_unsqueeze(2)?.f_eq_tensor(&seg.f_unsqueeze(1)?)?;
            let causal =
                Tensor::f_ones([t as i64, t as i64], (Kind::Bool, Device::Cpu))?.f_tril(0)?;
            // padding attends to itself only (a row of no visible keys would give NaN)
            let eye = Tensor::f_eye(t as i64, (Kind::Bool, Device::Cpu))?;
            let m = same.f_logical_and(&causal)?.f_logical_or(&eye)?;
            Some(m.f_unsqueeze(1)?.f_to_device(device)?)
        } else {
            None
        };
        let dev = |v: Tensor| v.f_to_device(device);
        Ok(Batch {
            ids: dev(Tensor::from_slice(&ids).f_view([b as i64, t as i64])?)?,
            positions: dev(Tensor::from_slice(&pos).f_view([b as i64, t as i64])?)?,
            mask,
            at: dev(Tensor::from_slice(&at))?,
            targets: dev(Tensor::from_slice(&targets))?,
            row: dev(Tensor::from_slice(&row))?,
            weight: dev(Tensor::from_slice(&weight))?,
            rows: b as i64,
            tokens,
        })
    }
}

/// A decoder loaded from a checkpoint directory.
#[derive(Debug)]
pub struct Decoder {
    /// What `config.json` says.
    pub config: LlmConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    inv_freq: Tensor,
    /// Element type of the frozen weights.
    pub kind: Kind,
    /// Where the weights are.
    pub device: Device,
    adapters: Option<LoraSpec>,
}

/// `weight · (x / √(mean(x²) + ε))`, computed in f32.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor, LlmError> {
    let xf = x.f_to_kind(Kind::Float)?;
    let var = xf
        .f_square()?
        .f_mean_dim([-1i64].as_slice(), true, None::<Kind>)?;
    let normed = xf.f_mul(&var.f_add_scalar(eps)?.f_rsqrt()?)?;
    Ok(w.f_mul(&normed.f_to_kind(x.kind())?)?)
}

/// `cat(-x[..., d/2:], x[..., :d/2])`.
fn rotate_half(x: &Tensor) -> Result<Tensor, LlmError> {
    let d = *x.size().last().unwrap_or(&0);
    let x1 = x.f_narrow(-1, 0, d / 2)?;
    let x2 = x.f_narrow(-1, d / 2, d - d / 2)?;
    Ok(Tensor::f_cat(&[x2.f_neg()?, x1], -1)?)
}

/// RoPE inverse frequencies `[hd/2]`, in f32 tensor ops as transformers computes them.
fn inv_freq(c: &LlmConfig, device: Device) -> Result<Tensor, LlmError> {
    let hd = c.head_dim;
    let exp = Tensor::f_arange_start_step(0, hd, 2, (Kind::Int64, device))?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(hd as f64)?;
    let inv = Tensor::f_pow_scalar(c.rope_theta, &exp)?.f_reciprocal()?;
    Ok(match c.rope_scaling {
        RopeScaling::Default => inv,
        RopeScaling::Linear { factor } => inv.f_div_scalar(factor)?,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wl = old / low_freq_factor;
            let high_wl = old / high_freq_factor;
            let wavelen = inv
                .f_reciprocal()?
                .f_mul_scalar(2.0 * std::f64::consts::PI)?;
            // `a.where_self(cond, b)` is `where(cond, a, b)`
            let inv_llama = inv
                .f_div_scalar(factor)?
                .f_where_self(&wavelen.f_gt(low_wl)?, &inv)?;
            let smooth = wavelen
                .f_reciprocal()?
                .f_mul_scalar(old)?
                .f_sub_scalar(low_freq_factor)?
                .f_div_scalar(high_freq_factor - low_freq_factor)?;
            let smoothed = smooth
                .f_neg()?
                .f_add_scalar(1.0)?
                .f_mul(&inv_llama.f_div_scalar(factor)?)?
                .f_add(&smooth.f_mul(&inv_llama)?)?;
            let medium = wavelen
                .f_lt(high_wl)?
                .f_logical_not()?
                .f_logical_and(&wavelen.f_gt(low_wl)?.f_logical_not()?)?;
            smoothed.f_where_self(&medium, &inv_llama)?
        }
    })
}

impl Decoder {
    /// Load the checkpoint in `dir` with frozen weights of element type `kind` (f32, or bf16
    /// to halve the memory; adapters are always f32).
    pub fn load(dir: &std::path::Path, kind: Kind, device: Device) -> Result<Decoder, LlmError> {
        let config = LlmConfig::from_dir(dir)?;
        let mut w = Weights::load(dir, kind, device)?;
        let c = &config;
        let (d, hd) = (c.hidden_size, c.head_dim);
        let (qd, kvd, ff) = (
            c.num_attention_heads * hd,
            c.num_key_value_heads * hd,
            c.intermediate_size,
        );
        let embed = w.take("model.embed_tokens.weight", &[c.vocab_size, d])?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers as usize);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut proj = Vec::with_capacity(7);
            for t in Target::ALL {
                let (out, inp, bias) = match t {
                    Target::Q => (qd, d, c.qkv_bias),
                    Target::K | Target::V => (kvd, d, c.qkv_bias),
                    Target::O => (d, qd, c.o_bias),
                    Target::Gate | Target::Up => (ff, d, c.mlp_bias),
                    Target::Down => (d, ff, c.mlp_bias),
                };
                let name = format!("{p}.{}", t.path());
                let weight = w.take(&format!("{name}.weight"), &[out, inp])?;
                let bias = if bias {
                    Some(w.take(&format!("{name}.bias"), &[out])?)
                } else {
                    None
                };
                proj.push(Proj {
                    weight,
                    bias,
                    adapter: None,
                });
            }
            blocks.push(Block {
                input_norm: w.take(&format!("{p}.input_layernorm.weight"), &[d])?,
                post_norm: w.take(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
                proj,
            });
        }
        let norm = w.take("model.norm.weight", &[d])?;
        // the file's lm_head when present (transformers uses it even when tied), else the
        // embedding when tied
        let lm_head = match w.take_opt("lm_head.weight", &[c.vocab_size, d])? {
            Some(h) => h,
            None if c.tie_word_embeddings => embed.shallow_clone(),
            None => {
                return Err(LlmError::MissingTensor {
                    dir: dir.to_path_buf(),
                    name: "lm_head.weight".into(),
                });
            }
        };
        w.finish()?;
        let inv_freq = inv_freq(&config, device)?;
        Ok(Decoder {
            config,
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            kind,
            device,
            adapters: None,
        })
    }

    /// Add adapters on `spec.targets` of every layer, as layers of `model` (in layer order,
    /// then target order, A before B). B starts at zero.
    pub fn add_lora(&mut self, spec: &LoraSpec, model: &mut Model) -> Result<(), LlmError> {
        let r = spec.rank;
        let scale = spec.scale();
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for (t, proj) in Target::ALL.iter().zip(block.proj.iter_mut()) {
                if !spec.targets.contains(t) {
                    continue;
                }
                let sz = proj.weight.size();
                let (out, inp) = (sz[0], sz[1]);
                let name = format!("layers.{i}.{}", t.path());
                let a = model.linear(&format!("{name}.lora_A"), inp, r, false)?;
                let mut b = model.linear(&format!("{name}.lora_B"), r, out, false)?;
                tch::no_grad(|| b.weight.f_zero_().map(|_| ()))?;
                proj.adapter = Some(Adapter {
                    a,
                    b,
                    scale,
                    dropout: spec.dropout,
                });
            }
        }
        self.adapters = Some(spec.clone());
        Ok(())
    }

    /// The adapter settings, when adapters were added.
    pub fn lora(&self) -> Option<&LoraSpec> {
        self.adapters.as_ref()
    }

    /// Every adapter tensor with its PEFT name, in layer and target order, A before B.
    pub fn adapter_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for (t, proj) in Target::ALL.iter().zip(&block.proj) {
                if let Some(ad) = &proj.adapter {
                    out.push((t.tensor(i as i64, true), ad.a.weight.shallow_clone()));
                    out.push((t.tensor(i as i64, false), ad.b.weight.shallow_clone()));
                }
            }
        }
        out
    }

    /// The final hidden states `[B, T, D]` (after the last norm).
    pub fn hidden(&self, batch: &Batch, tape: &mut Tape, train: bool) -> Result<Tensor, LlmError> {
        let c = &self.config;
        let size = batch.ids.size();
        let (b, t) = (size[0], size[1]);
        let (h, kv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let mut x = Tensor::f_embedding(&self.embed, &batch.ids, -1, false, false)?;
        // RoPE tables shared by every layer: [B, 1, T, hd]
        let freqs = batch
            .positions
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let cos = emb.f_cos()?.f_unsqueeze(1)?.f_to_kind(self.kind)?;
        let sin = emb.f_sin()?.f_unsqueeze(1)?.f_to_kind(self.kind)?;
        let rope = |q: &Tensor| -> Result<Tensor, LlmError> {
            Ok(q.f_mul(&cos)?.f_add(&rotate_half(q)?.f_mul(&sin)?)?)
        };
        let causal = batch.mask.is_none() && t > 1;
        let scale = 1.0 / (hd as f64).sqrt();
        for block in &self.blocks {
            let [q, k, v, o, gate, up, down] = &block.proj[..] else {
                unreachable!("seven projections per block")
            };
            let hn = rms_norm(&x, &block.input_norm, c.rms_norm_eps)?;
            let heads = |y: Tensor, n: i64| -> Result<Tensor, LlmError> {
                Ok(y.f_view([b, t, n, hd])?.f_transpose(1, 2)?)
            };
            let qh = rope(&heads(q.forward(&hn, tape, train)?, h)?)?;
            let kh = rope(&heads(k.forward(&hn, tape, train)?, kv)?)?;
            let vh = heads(v.forward(&hn, tape, train)?, kv)?;
            let a = Tensor::f_scaled_dot_product_attention(
                &qh,
                &kh,
                &vh,
                batch.mask.as_ref(),
                0.0,
                causal,
                Some(scale),
                h != kv,
            )?;
            let a = a.f_transpose(1, 2)?.f_reshape([b, t, h * hd])?;
            x = x.f_add(&o.forward(&a, tape, train)?)?;
            let hn = rms_norm(&x, &block.post_norm, c.rms_norm_eps)?;
            let g = gate.forward(&hn, tape, train)?.f_silu()?;
            let u = up.forward(&hn, tape, train)?;
            x = x.f_add(&down.forward(&g.f_mul(&u)?, tape, train)?)?;
        }
        rms_norm(&x, &self.norm, c.rms_norm_eps)
    }

    /// Logits `[B, T, V]` (f32) at every position.
    pub fn logits(&self, batch: &Batch) -> Result<Tensor, LlmError> {
        let h = self.hidden(batch, &mut Tape::off(), false)?;
        Ok(h.f_linear(&self.lm_head, None::<Tensor>)?
            .f_to_kind(Kind::Float)?)
    }

    /// The loss of each row `[B]`: per example, the mean cross-entropy of its trained tokens;
    /// per row, the sum over its examples. Logits are computed only where the loss is taken.
    pub fn row_losses(
        &self,
        batch: &Batch,
        tape: &mut Tape,
        train: bool,
    ) -> Result<Tensor, LlmError> {
        let h = self.hidden(batch, tape, train)?;
        let d = self.config.hidden_size;
        let picked = h.f_reshape([-1, d])?.f_index_select(0, &batch.at)?;
        let logits = picked
            .f_linear(&self.lm_head, None::<Tensor>)?
            .f_to_kind(Kind::Float)?;
        let logp = logits.f_log_softmax(-1, Kind::Float)?;
        let nll = logp
            .f_gather(1, &batch.targets.f_unsqueeze(1)?, false)?
            .f_squeeze_dim(1)?
            .f_neg()?
            .f_mul(&batch.weight)?;
        let zeros = Tensor::f_zeros([batch.rows], (Kind::Float, self.device))?;
        Ok(zeros.f_index_add(0, &batch.row, &nll)?)
    }

    /// Greedy continuation of `ids` by at most `max_new` tokens, stopping at an EOS id.
    pub fn generate(&self, ids: &[i64], max_new: usize, eos: &[i64]) -> Result<Vec<i64>, LlmError> {
        let _guard = tch::no_grad_guard();
        let mut seq = ids.to_vec();
        for _ in 0..max_new {
            let trained = vec![false; seq.len()];
            let batch = Batch::new(
                &[vec![Segment {
                    ids: &seq,
                    trained: &trained,
                }]],
                0,
                self.device,
            )?;
            let h = self.hidden(&batch, &mut Tape::off(), false)?;
            let last = h.f_select(1, seq.len() as i64 - 1)?;
            let next = last
                .f_linear(&self.lm_head, None::<Tensor>)?
                .f_argmax(-1, false)?
                .f_int64_value(&[0])?;
            seq.push(next);
            if eos.contains(&next) {
                break;
            }
        }
        Ok(seq[ids.len()..].to_vec())
    }
}

impl Decoder {
    /// Write the adapters as PEFT does: `adapter_config.json` and `adapter_model.safetensors`
    /// in `dir` (`base_model`: what `base_model_name_or_path` says).
    pub fn save_adapter(&self, dir: &std::path::Path, base_model: &str) -> Result<(), LlmError> {
        let Some(spec) = &self.adapters else {
            return Err(LlmError::Config {
                file: dir.to_path_buf(),
                msg: "the model has no adapters to save".into(),
            });
        };
        std::fs::create_dir_all(dir).map_err(|e| LlmError::Io(dir.to_path_buf(), e))?;
        let config = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&spec.adapter_config(base_model))
            .map_err(|e| LlmError::Template(e.to_string()))?;
        std::fs::write(&config, text + "\n").map_err(|e| LlmError::Io(config.clone(), e))?;
        let weights = dir.join("adapter_model.safetensors");
        crate::tensors::write_f32(&weights, &self.adapter_tensors(), &[("format", "pt")]).map_err(
            |e| LlmError::Weights {
                file: weights.clone(),
                msg: e.to_string(),
            },
        )
    }

    /// Add the adapters saved in `dir` (PEFT's files) as layers of `model`.
    pub fn load_adapter(
        &mut self,
        dir: &std::path::Path,
        model: &mut Model,
    ) -> Result<LoraSpec, LlmError> {
        let file = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| LlmError::Io(file.clone(), e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LlmError::Config {
            file: file.clone(),
            msg: format!("not JSON: {e}"),
        })?;
        let spec = LoraSpec::from_adapter_config(&file, &v)?;
        self.add_lora(&spec, model)?;
        let weights = dir.join("adapter_model.safetensors");
        let mut saved = crate::tensors::read(&weights).map_err(|e| LlmError::Weights {
            file: weights.clone(),
            msg: e.to_string(),
        })?;
        let _guard = tch::no_grad_guard();
        for (name, t) in self.adapter_tensors() {
            let Some(src) = saved.remove(&name) else {
                return Err(LlmError::MissingTensor {
                    dir: dir.to_path_buf(),
                    name,
                });
            };
            if src.size() != t.size() {
                return Err(LlmError::Shape {
                    name,
                    expected: t.size(),
                    got: src.size(),
                });
            }
            let mut t = t;
            t.f_copy_(&src.f_to_kind(Kind::Float)?.f_to_device(self.device)?)?;
        }
        if let Some(extra) = saved.keys().next() {
            return Err(LlmError::Weights {
                file: weights,
                msg: format!("tensor `{extra}` belongs to no adapter of this model"),
            });
        }
        Ok(spec)
    }
}
