//! `config.json` of a Hugging Face Llama or Qwen2 checkpoint, read the way transformers 5 reads
//! it, and refused where our decoder would compute something else.
//!
//! Both ways of writing RoPE are accepted: transformers 5's `rope_parameters` and the older
//! top-level `rope_theta` plus `rope_scaling` (whose `type` key is an alias of `rope_type`); a
//! non-null `rope_scaling` wins, as it does in transformers. Supported RoPE types are `default`,
//! `linear` and `llama3`; `dynamic` (which changes with the sequence length), `yarn` and
//! `longrope` (attention scaling) are refused rather than approximated, as are Qwen2's sliding
//! window and a partial rotary factor.

use std::path::Path;

use serde_json::{Map, Value};

use super::LlmError;

/// Which family's module layout and biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// `LlamaForCausalLM` (Llama 2/3, SmolLM, Mistral-like without sliding window).
    Llama,
    /// `Qwen2ForCausalLM`: q/k/v always have a bias, o_proj and the MLP never do.
    Qwen2,
}

/// How RoPE frequencies are scaled.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Every frequency divided by `factor`.
    Linear {
        /// Divides every frequency.
        factor: f64,
    },
    /// Llama 3.1's three bands: low frequencies divided by `factor`, high ones kept, the middle
    /// interpolated.
    Llama3 {
        /// Divides the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are low.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are high.
        high_freq_factor: f64,
        /// The context length the model was pretrained with.
        original_max_position_embeddings: f64,
    },
}

/// Everything the decoder needs from `config.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlmConfig {
    /// Module layout.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: i64,
    /// Model width D.
    pub hidden_size: i64,
    /// MLP width.
    pub intermediate_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads H.
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention when < H).
    pub num_key_value_heads: i64,
    /// Width of one head (may differ from D / H).
    pub head_dim: i64,
    /// RMSNorm ε.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Longest sequence the model was built for.
    pub max_position_embeddings: i64,
    /// The output projection is the embedding table.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases.
    pub qkv_bias: bool,
    /// o_proj has a bias (Llama `attention_bias`).
    pub o_bias: bool,
    /// gate/up/down have biases (Llama `mlp_bias`).
    pub mlp_bias: bool,
    /// End-of-sequence token ids (one or several).
    pub eos_token_ids: Vec<i64>,
    /// Beginning-of-sequence token id, when the model has one.
    pub bos_token_id: Option<i64>,
}

/// Reads fields of one JSON object, naming the file and the key in every error.
struct Fields<'a> {
    file: &'a Path,
    prefix: &'a str,
    o: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> LlmError {
        LlmError::Config {
            file: self.file.to_path_buf(),
            msg: format!("`{}{key}`: {msg}", self.prefix),
        }
    }

    /// Absent and `null` are the same.
    fn get(&self, key: &str) -> Option<&Value> {
        self.o.get(key).filter(|v| !v.is_null())
    }

    fn int(&self, key: &str) -> Result<Option<i64>, LlmError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a positive integer, found {v}"))),
        }
    }

    fn need_int(&self, key: &str) -> Result<i64, LlmError> {
        self.int(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    fn float(&self, key: &str) -> Result<Option<f64>, LlmError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a number, found {v}"))),
        }
    }

    fn need_float(&self, key: &str) -> Result<f64, LlmError> {
        self.float(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, LlmError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(key, format!("expected true or false, found {v}"))),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&str>, LlmError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, format!("expected a string, found {v}"))),
        }
    }
}

impl LlmConfig {
    /// Read `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<LlmConfig, LlmError> {
        let file = dir.join("config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| LlmError::Io(file.clone(), e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| LlmError::Config {
            file: file.clone(),
            msg: format!("not JSON: {e}"),
        })?;
        LlmConfig::parse(&file, &v)
    }

    /// Read a parsed `config.json` (`file` names it in errors).
    pub fn parse(file: &Path, v: &Value) -> Result<LlmConfig, LlmError> {
        let Some(o) = v.as_object() else {
            return Err(LlmError::Config {
                file: file.to_path_buf(),
                msg: "expected a JSON object".into(),
            });
        };
        let f = Fields {
            file,
            prefix: "",
            o,
        };
        let arch = match f.string("model_type")? {
            Some("llama") => Arch::Llama,
            Some("qwen2") => Arch::Qwen2,
            Some(other) => {
                return Err(f.err(
                    "model_type",
                    format!("`{other}` is not supported (supported: llama, qwen2)"),
                ));
            }
            None => return Err(f.err("model_type", "missing")),
        };
        match f.string("hidden_act")?.unwrap_or("silu") {
            "silu" | "swish" => {}
            other => {
                return Err(f.err(
                    "hidden_act",
                    format!("`{other}` is not supported (the decoder computes SwiGLU with silu)"),
                ));
            }
        }
        let hidden_size = f.need_int("hidden_size")?;
        let heads = f.need_int("num_attention_heads")?;
        let kv = f.int("num_key_value_heads")?.unwrap_or(heads);
        if heads % kv != 0 {
            return Err(f.err(
                "num_key_value_heads",
                format!("{kv} does not divide num_attention_heads ({heads})"),
            ));
        }
        let head_dim = match f.int("head_dim")? {
            Some(d) => d,
            None if hidden_size % heads == 0 => hidden_size / heads,
            None => {
                return Err(f.err(
                    "hidden_size",
                    format!("{hidden_size} is not a multiple of num_attention_heads ({heads})"),
                ));
            }
        };
        if head_dim % 2 != 0 {
            return Err(f.err("head_dim", format!("{head_dim} is odd; RoPE needs pairs")));
        }
        if arch == Arch::Qwen2 && f.boolean("use_sliding_window", false)? {
            return Err(f.err(
                "use_sliding_window",
                "sliding-window attention is not supported; the decoder attends to the whole context",
            ));
        }
        if let Some(p) = f.float("partial_rotary_factor")?
            && p != 1.0
        {
            return Err(f.err("partial_rotary_factor", "only 1.0 is supported"));
        }
        let (rope_theta, rope_scaling) = rope(&f)?;
        let (qkv_bias, o_bias, mlp_bias) = match arch {
            Arch::Qwen2 => (true, false, false),
            Arch::Llama => {
                let ab = f.boolean("attention_bias", false)?;
                (ab, ab, f.boolean("mlp_bias", false)?)
            }
        };
        let eos_token_ids = match f.get("eos_token_id") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| f.err("eos_token_id", "expected integers"))
                })
                .collect::<Result<_, _>>()?,
            Some(x) => vec![
                x.as_i64()
                    .ok_or_else(|| f.err("eos_token_id", "expected an integer or a list"))?,
            ],
        };
        let bos_token_id = match f.get("bos_token_id") {
            None => None,
            Some(x) => Some(
                x.as_i64()
                    .ok_or_else(|| f.err("bos_token_id", "expected an integer"))?,
            ),
        };
        Ok(LlmConfig {
            arch,
            vocab_size: f.need_int("vocab_size")?,
            hidden_size,
            intermediate_size: f.need_int("intermediate_size")?,
            num_hidden_layers: f.need_int("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: f.float("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: f.int("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: f.boolean("tie_word_embeddings", false)?,
            qkv_bias,
            o_bias,
            mlp_bias,
            eos_token_ids,
            bos_token_id,
        })
    }
}

/// RoPE base and scaling from either form of the config.
fn rope(f: &Fields<'_>) -> Result<(f64, RopeScaling), LlmError> {
    // transformers: `rope_scaling` (legacy) wins when set, then `rope_parameters`
    let (key, dict) = match (f.get("rope_scaling"), f.get("rope_parameters")) {
        (Some(v), _) => ("rope_scaling", Some(v)),
        (None, Some(v)) => ("rope_parameters", Some(v)),
        (None, None) => ("rope_parameters", None),
    };
    let empty = Map::new();
    let o = match dict {
        None => &empty,
        Some(Value::Object(o)) => o,
        Some(v) => return Err(f.err(key, format!("expected an object, found {v}"))),
    };
    let prefix = format!("{key}.");
    let d = Fields {
        file: f.file,
        prefix: &prefix,
        o,
    };
    if o.values().any(Value::is_object) {
        return Err(f.err(
            key,
            "per-layer-type RoPE settings are not supported (one setting for every layer)",
        ));
    }
    let theta = match d.float("rope_theta")? {
        Some(t) => t,
        None => f.float("rope_theta")?.unwrap_or(10_000.0),
    };
    if theta <= 0.0 {
        return Err(d.err("rope_theta", "must be positive"));
    }
    let ty = match (d.string("rope_type")?, d.string("type")?) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => "default",
    };
    let scaling = match ty {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: d.need_float("factor")?,
        },
        "llama3" => {
            let original = match f.float("original_max_position_embeddings")? {
                Some(x) => x,
                None => match d.float("original_max_position_embeddings")? {
                    Some(x) => x,
                    None => f.need_int("max_position_embeddings")? as f64,
                },
            };
            let s = RopeScaling::Llama3 {
                factor: d.need_float("factor")?,
                low_freq_factor: d.need_float("low_freq_factor")?,
                high_freq_factor: d.need_float("high_freq_factor")?,
                original_max_position_embeddings: original,
            };
            if let RopeScaling::Llama3 {
                low_freq_factor,
                high_freq_factor,
                ..
            } = s
                && high_freq_factor <= low_freq_factor
            {
                return Err(d.err("high_freq_factor", "must exceed low_freq_factor"));
            }
            s
        }
        other => {
            return Err(d.err(
                "rope_type",
                format!(
                    "`{other}` is not supported (supported: default, linear, llama3); \
                     dynamic, yarn and longrope change attention in ways this decoder does not compute"
                ),
            ));
        }
    };
    if let RopeScaling::Linear { factor } | RopeScaling::Llama3 { factor, .. } = scaling
        && factor <= 0.0
    {
        return Err(d.err("factor", "must be positive"));
    }
    Ok((theta, scaling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<LlmConfig, String> {
        LlmConfig::parse(Path::new("config.json"), &v).map_err(|e| e.to_string())
    }

    fn base() -> Value {
        json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 96,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})
    }

    #[test]
    fn both_rope_forms_read_the_same() {
        let mut new = base();
        new["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
        let mut old = base();
        old["rope_theta"] = json!(5e5);
        old["rope_scaling"] = json!({"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
        let (a, b) = (parse(new).unwrap(), parse(old).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 5e5);
        assert_eq!(a.head_dim, 16);
        // a null rope_scaling falls back to the top-level theta
        let mut legacy = base();
        legacy["rope_theta"] = json!(1e6);
        legacy["rope_scaling"] = Value::Null;
        let c = parse(legacy).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1e6, RopeScaling::Default));
    }

    #[test]
    fn what_the_decoder_cannot_compute_is_refused_with_the_key() {
        let cases = [
            (
                json!({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}),
                "rope_parameters.rope_type",
            ),
            (
                json!({"rope_scaling": {"type": "dynamic", "factor": 2.0}}),
                "rope_scaling.rope_type",
            ),
            (json!({"hidden_act": "gelu"}), "hidden_act"),
            (json!({"model_type": "gpt2"}), "model_type"),
            (json!({"num_key_value_heads": 3}), "num_key_value_heads"),
            (
                json!({"partial_rotary_factor": 0.5}),
                "partial_rotary_factor",
            ),
            (json!({"vocab_size": "big"}), "vocab_size"),
            (
                json!({"rope_parameters": {"full_attention": {"rope_type": "default"}}}),
                "rope_parameters",
            ),
        ];
        for (patch, key) in cases {
            let mut v = base();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = parse(v).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
        let mut q = base();
        q["model_type"] = json!("qwen2");
        q["use_sliding_window"] = json!(true);
        assert!(parse(q).unwrap_err().contains("use_sliding_window"));
    }

    #[test]
    fn biases_follow_the_family() {
        let mut q = base();
        q["model_type"] = json!("qwen2");
        q["attention_bias"] = json!(false);
        let c = parse(q).unwrap();
        assert_eq!((c.qkv_bias, c.o_bias, c.mlp_bias), (true, false, false));
        let mut l = base();
        l["attention_bias"] = json!(true);
        let c = parse(l).unwrap();
        assert_eq!((c.qkv_bias, c.o_bias, c.mlp_bias), (true, true, false));
    }
}
