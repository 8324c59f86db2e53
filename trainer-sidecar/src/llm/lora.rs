//! LoRA adapters: their settings, and the files PEFT writes for them.
//!
//! An adapter adds `s·B(A x)` to a frozen projection `W x (+ b)`: A is `[r, in]`
//! (initialised like a PyTorch Linear, uniform ±1/√in, as PEFT's kaiming-uniform with a=√5
//! is), B is `[out, r]` and starts at zero, so training starts from the base model exactly;
//! `s = α/r`, or `α/√r` with rsLoRA.
//!
//! On disk (what `PeftModel.save_pretrained` writes, and what PEFT, vLLM and TGI load):
//! `adapter_config.json` with PEFT 0.21's keys (`peft_type: LORA`, `task_type: CAUSAL_LM`,
//! `bias: none`, `modules_to_save: null`, sorted `target_modules`), and
//! `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `…lora_B.weight` (`[out, r]`), f32, metadata `{"format": "pt"}`. Every targeted projection
//! has an adapter in every layer: TGI skips a projection type for all layers when one layer
//! lacks it.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LlmError;

/// Ranks vLLM accepts as `--max-lora-rank` (an adapter's rank must not exceed the server's).
pub const VLLM_RANKS: [i64; 9] = [1, 8, 16, 32, 64, 128, 256, 320, 512];

/// A projection LoRA can adapt.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Target {
    /// Attention query.
    #[serde(rename = "q_proj")]
    Q,
    /// Attention key.
    #[serde(rename = "k_proj")]
    K,
    /// Attention value.
    #[serde(rename = "v_proj")]
    V,
    /// Attention output.
    #[serde(rename = "o_proj")]
    O,
    /// MLP gate.
    #[serde(rename = "gate_proj")]
    Gate,
    /// MLP up.
    #[serde(rename = "up_proj")]
    Up,
    /// MLP down.
    #[serde(rename = "down_proj")]
    Down,
}

impl Target {
    /// Every target, in the decoder's order.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// PEFT's module name (`q_proj`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The module path inside a layer (`self_attn.q_proj`).
    pub fn path(self) -> String {
        match self {
            Target::Q | Target::K | Target::V | Target::O => format!("self_attn.{}", self.name()),
            _ => format!("mlp.{}", self.name()),
        }
    }

    /// PEFT's tensor name of this target's factor in layer `layer` (`a`: lora_A).
    pub fn tensor(self, layer: i64, a: bool) -> String {
        format!(
            "base_model.model.model.layers.{layer}.{}.lora_{}.weight",
            self.path(),
            if a { "A" } else { "B" }
        )
    }
}

fn default_rank() -> i64 {
    16
}
fn default_targets() -> Vec<Target> {
    Target::ALL.to_vec()
}

/// The adapter to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraSpec {
    /// Rank r. Default 16 (vLLM's default `max_lora_rank`).
    #[serde(default = "default_rank")]
    pub rank: i64,
    /// α; the update is scaled by α/r (α/√r with rsLoRA). Default 2·r.
    #[serde(default)]
    pub alpha: Option<i64>,
    /// Dropout on the adapter's input while training. Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Scale by α/√r instead of α/r (rank-stabilised LoRA).
    #[serde(default)]
    pub rslora: bool,
    /// Projections to adapt, in every layer. Default all seven.
    #[serde(default = "default_targets")]
    pub targets: Vec<Target>,
}

impl Default for LoraSpec {
    fn default() -> Self {
        LoraSpec {
            rank: default_rank(),
            alpha: None,
            dropout: 0.0,
            rslora: false,
            targets: default_targets(),
        }
    }
}

impl LoraSpec {
    /// α (2·r when not given).
    pub fn alpha(&self) -> i64 {
        self.alpha.unwrap_or(2 * self.rank)
    }

    /// The factor s applied to B(A x).
    pub fn scale(&self) -> f64 {
        let r = self.rank as f64;
        if self.rslora {
            self.alpha() as f64 / r.sqrt()
        } else {
            self.alpha() as f64 / r
        }
    }

    /// Problems with these settings, each with its key (`lora.rank`).
    pub fn problems(&self, prefix: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.rank < 1 {
            out.push((format!("{prefix}.rank"), "must be at least 1".into()));
        } else if self.rank > 512 {
            out.push((
                format!("{prefix}.rank"),
                "at most 512 (the largest rank vLLM serves)".into(),
            ));
        }
        if let Some(a) = self.alpha
            && a < 1
        {
            out.push((format!("{prefix}.alpha"), "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            out.push((format!("{prefix}.dropout"), "must be in [0, 1)".into()));
        }
        if self.targets.is_empty() {
            out.push((
                format!("{prefix}.targets"),
                "name at least one projection".into(),
            ));
        }
        let mut seen = self.targets.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.targets.len() {
            out.push((
                format!("{prefix}.targets"),
                "a projection is named twice".into(),
            ));
        }
        out
    }

    /// The smallest `--max-lora-rank` a vLLM server needs for this adapter.
    pub fn vllm_max_lora_rank(&self) -> i64 {
        VLLM_RANKS
            .iter()
            .copied()
            .find(|&r| r >= self.rank)
            .unwrap_or(512)
    }

    /// `adapter_config.json` as PEFT 0.21 writes it (keys sorted).
    pub fn adapter_config(&self, base_model: &str) -> Value {
        let mut targets: Vec<&str> = self.targets.iter().map(|t| t.name()).collect();
        targets.sort_unstable();
        json!({
            "alora_invocation_tokens": null,
            "alpha_pattern": {},
            "arrow_config": null,
            "auto_mapping": null,
            "base_model_name_or_path": base_model,
            "bias": "none",
            "corda_config": null,
            "ensure_weight_tying": false,
            "eva_config": null,
            "exclude_modules": null,
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "kasa_config": null,
            "layer_replication": null,
            "layers_pattern": null,
            "layers_to_transform": null,
            "loftq_config": {},
            "lora_alpha": self.alpha(),
            "lora_bias": false,
            "lora_dropout": self.dropout,
            "lora_ga_config": null,
            "megatron_config": null,
            "megatron_core": "megatron.core",
            "modules_to_save": null,
            "monteclora_config": null,
            "peft_type": "LORA",
            "peft_version": "0.21.2",
            "qalora_group_size": 16,
            "r": self.rank,
            "rank_pattern": {},
            "revision": null,
            "target_modules": targets,
            "target_parameters": null,
            "task_type": "CAUSAL_LM",
            "trainable_token_indices": null,
            "use_bdlora": null,
            "use_dora": false,
            "use_qalora": false,
            "use_rslora": self.rslora,
            "velora_config": null
        })
    }

    /// Read the settings back from an `adapter_config.json` (PEFT's or ours). Refuses what this
    /// decoder would not apply the way PEFT does (biases, DoRA, saved modules, patterns).
    pub fn from_adapter_config(file: &Path, v: &Value) -> Result<LoraSpec, LlmError> {
        let bad = |msg: String| LlmError::Config {
            file: file.to_path_buf(),
            msg,
        };
        if v.get("peft_type").and_then(Value::as_str) != Some("LORA") {
            return Err(bad("`peft_type`: expected \"LORA\"".into()));
        }
        let empty = |x: &Value| x.is_null() || x.as_object().is_some_and(|o| o.is_empty());
        type Check<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);
        let checks: [Check<'_>; 8] = [
            ("bias", &|x| x.is_null() || x == "none"),
            ("use_dora", &|x| x.is_null() || x == false),
            ("lora_bias", &|x| x.is_null() || x == false),
            ("fan_in_fan_out", &|x| x.is_null() || x == false),
            ("modules_to_save", &|x| x.is_null()),
            ("layers_to_transform", &|x| x.is_null()),
            ("rank_pattern", &empty),
            ("alpha_pattern", &empty),
        ];
        for (key, ok) in checks {
            if let Some(x) = v.get(key)
                && !ok(x)
            {
                return Err(bad(format!("`{key}`: {x} is not supported")));
            }
        }
        let rank = v
            .get("r")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("`r`: missing or not an integer".into()))?;
        let alpha = v
            .get("lora_alpha")
            .and_then(|a| a.as_i64().or_else(|| a.as_f64().map(|f| f as i64)))
            .ok_or_else(|| bad("`lora_alpha`: missing (PEFT would silently use 8)".into()))?;
        let names: Vec<String> = match v.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("`target_modules`: expected module names".into()))?,
            Some(Value::String(s)) => vec![s.clone()],
            _ => {
                return Err(bad(
                    "`target_modules`: missing (PEFT would silently fall back to q_proj, v_proj)"
                        .into(),
                ));
            }
        };
        let by_name: HashMap<&str, Target> = Target::ALL.iter().map(|t| (t.name(), *t)).collect();
        let mut targets = Vec::new();
        for n in &names {
            match by_name.get(n.as_str()) {
                Some(t) => targets.push(*t),
                None => return Err(bad(format!("`target_modules`: `{n}` is not a projection"))),
            }
        }
        targets.sort();
        Ok(LoraSpec {
            rank,
            alpha: Some(alpha),
            dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
            rslora: v
                .get("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_names_follow_peft() {
        let spec = LoraSpec {
            rank: 8,
            alpha: Some(16),
            targets: vec![Target::V, Target::Q, Target::Down],
            ..LoraSpec::default()
        };
        let c = spec.adapter_config("models/base/x");
        assert_eq!(
            c["target_modules"],
            json!(["down_proj", "q_proj", "v_proj"])
        );
        assert_eq!(c["modules_to_save"], Value::Null);
        let back = LoraSpec::from_adapter_config(Path::new("a.json"), &c).unwrap();
        assert_eq!(back.rank, 8);
        assert_eq!(back.targets, vec![Target::Q, Target::V, Target::Down]);
        assert_eq!(
            Target::Q.tensor(3, true),
            "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!(
            Target::Down.tensor(0, false),
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"
        );
        assert_eq!(spec.scale(), 2.0);
        assert_eq!(spec.vllm_max_lora_rank(), 8);
        assert_eq!(
            LoraSpec {
                rank: 20,
                ..LoraSpec::default()
            }
            .vllm_max_lora_rank(),
            32
        );
    }

    #[test]
    fn what_peft_would_apply_differently_is_refused() {
        let mut c = LoraSpec::default().adapter_config("b");
        c["use_dora"] = json!(true);
        assert!(
            LoraSpec::from_adapter_config(Path::new("a.json"), &c)
                .unwrap_err()
                .to_string()
                .contains("use_dora")
        );
        let mut c = LoraSpec::default().adapter_config("b");
        c.as_object_mut().unwrap().remove("target_modules");
        assert!(
            LoraSpec::from_adapter_config(Path::new("a.json"), &c)
                .unwrap_err()
                .to_string()
                .contains("target_modules")
        );
        let bad = LoraSpec {
            rank: 0,
            dropout: 1.0,
            targets: vec![Target::Q, Target::Q],
            ..LoraSpec::default()
        };
        let keys: Vec<String> = bad.problems("lora").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["lora.rank", "lora.dropout", "lora.targets"]);
    }
}
