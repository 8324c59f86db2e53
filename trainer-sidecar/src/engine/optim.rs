//! Optimisers applied to explicit gradients (the engine's noisy averages, or plain gradients in
//! non-private mode). Post-processing: they cannot weaken the DP guarantee.

use tch::Tensor;

use super::EngineError;

/// Which update rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum.
    Sgd,
    /// Adam (bias-corrected), with decoupled weight decay when set (AdamW).
    Adam,
}

/// Optimiser state for a list of parameters.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Optimizer {
    /// A new optimiser; `momentum` is used by SGD only.
    pub fn new(kind: OptimizerKind, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Self {
            kind,
            lr,
            momentum,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// The state to checkpoint: the step count and (Adam, SGD with momentum) the moment
    /// buffers, in parameter order (empty before the first step).
    pub fn state(&self) -> (i32, &[Tensor], &[Tensor]) {
        (self.step, &self.m, &self.v)
    }

    /// Restore a checkpointed state (buffers in parameter order; empty: before the first step).
    pub fn restore(
        &mut self,
        step: i32,
        m: Vec<Tensor>,
        v: Vec<Tensor>,
    ) -> Result<(), EngineError> {
        if m.len() != v.len() {
            return Err(EngineError::Config(
                "optimiser state: moment buffers of different lengths".into(),
            ));
        }
        self.step = step;
        self.m = m;
        self.v = v;
        Ok(())
    }

    /// Apply one update to `params` with `grads` (same order and shapes).
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor]) -> Result<(), EngineError> {
        let _guard = tch::no_grad_guard();
        if self.m.is_empty() {
            for p in params.iter() {
                self.m.push(p.f_zeros_like()?);
                self.v.push(p.f_zeros_like()?);
            }
        }
        self.step += 1;
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            if self.weight_decay > 0.0 {
                let decay = p.f_mul_scalar(self.lr * self.weight_decay)?;
                let _ = p.f_sub_(&decay)?;
            }
            match self.kind {
                OptimizerKind::Sgd if self.momentum == 0.0 => {
                    let _ = p.f_sub_(&g.f_mul_scalar(self.lr)?)?;
                }
                OptimizerKind::Sgd => {
                    let m = &mut self.m[i];
                    let _ = m.f_mul_scalar_(self.momentum)?;
                    let _ = m.f_add_(g)?;
                    let _ = p.f_sub_(&m.f_mul_scalar(self.lr)?)?;
                }
                OptimizerKind::Adam => {
                    let (m, v) = (&mut self.m[i], &mut self.v[i]);
                    let _ = m.f_mul_scalar_(self.beta1)?;
                    let _ = m.f_add_(&g.f_mul_scalar(1.0 - self.beta1)?)?;
                    let _ = v.f_mul_scalar_(self.beta2)?;
                    let _ = v.f_add_(&g.f_square()?.f_mul_scalar(1.0 - self.beta2)?)?;
                    let bc1 = 1.0 - self.beta1.powi(self.step);
                    let bc2 = 1.0 - self.beta2.powi(self.step);
                    let denom = v.f_div_scalar(bc2)?.f_sqrt()?.f_add_scalar(self.eps)?;
                    let upd = m.f_div_scalar(bc1)?.f_div(&denom)?.f_mul_scalar(self.lr)?;
                    let _ = p.f_sub_(&upd)?;
                }
            }
        }
        Ok(())
    }
}
