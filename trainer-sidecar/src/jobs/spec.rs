//! Job specifications: what `POST /v1/jobs` and `trainer-sidecar train` accept.
//!
//! A spec is JSON or YAML with a `kind`: `lora` (DP LoRA fine-tuning of a Llama/Qwen2 model into
//! a PEFT adapter) or `classifier_head` (DP training of a gateway classifier head, the format of
//! [`crate::train::Job`]). It is checked in two passes so that a user sees every problem at once:
//! the JSON Schema generated from these types (types, unknown keys, missing keys), then the
//! rules a schema cannot say (ranges, combinations, files that must exist). Each problem names
//! its path (`privacy.target_epsilon`).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::accountants::Accountant;
use crate::engine::{ClipMode, OptimizerKind};
use crate::ledger::Budget;
use crate::llm::LoraSpec;

/// A job of either kind.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// DP LoRA fine-tuning of an LLM.
    Lora(LoraJob),
    /// DP training of a gateway classifier head.
    ClassifierHead(crate::train::Job),
}

/// The unit a DP guarantee protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyUnit {
    /// One line of the training file.
    #[default]
    Example,
    /// All lines of one user (`data.user_field`): users are sampled, and a user's examples
    /// are clipped together.
    User,
}

/// Element type of the frozen base weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BaseDtype {
    /// f32 (exact).
    #[default]
    F32,
    /// bf16: half the memory; adapters stay f32.
    Bf16,
}

/// A DP LoRA fine-tuning job.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraJob {
    /// A name for reports and the ledger. Default: the data file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// The base model: a Hugging Face checkpoint directory (config.json, safetensors,
    /// tokenizer.json, chat template).
    pub base_model: PathBuf,
    /// Training data: JSON lines of `{"prompt", "completion"}` or `{"messages": [...]}`.
    pub train_data: PathBuf,
    /// How the data is read.
    #[serde(default)]
    pub data: LoraData,
    /// The privacy guarantee.
    pub privacy: LoraPrivacy,
    /// The adapter.
    #[serde(default)]
    pub lora: LoraSpec,
    /// Steps (noisy updates). Default 100.
    #[serde(default = "default_max_steps")]
    pub max_steps: u64,
    /// Optimisation.
    #[serde(default)]
    pub training: LoraTraining,
    /// The privacy ledger. Default: `ledger.json` in the sidecar's folder (the CLI:
    /// `models/ledger.json`).
    #[serde(default)]
    pub ledger: Option<PathBuf>,
    /// A fixed seed for sampling and noise: reproducible and therefore NOT private (tests).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_max_steps() -> u64 {
    100
}

/// How the data is read and guarded.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraData {
    /// The member naming each line's user (needed with `privacy.unit: user`). Default `user`.
    #[serde(default = "default_user_field")]
    pub user_field: String,
    /// Longest example in tokens; longer ones are cut at the end. Default 256.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// User-level privacy: most examples of one user in one step (a sampled user contributes
    /// a random subset this large). Default 8.
    #[serde(default = "default_per_user")]
    pub max_examples_per_user: usize,
    /// The data guard: every text passes this policy's input rules before training (PII
    /// pseudonymized, secrets redacted; a block finding drops the example).
    #[serde(default)]
    pub guard: DataGuard,
}

fn default_user_field() -> String {
    "user".into()
}
fn default_max_length() -> usize {
    256
}
fn default_per_user() -> usize {
    8
}

impl Default for LoraData {
    fn default() -> Self {
        LoraData {
            user_field: default_user_field(),
            max_length: default_max_length(),
            max_examples_per_user: default_per_user(),
            guard: DataGuard::default(),
        }
    }
}

/// Which policy guards the training data.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataGuard {
    /// A policy file (its `input` rules apply). Default: the built-in `training-data` policy
    /// (policies/training-data.yaml).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// The model registry the policy's `classifiers.model` is loaded from, when the policy has
    /// a `classifiers:` section (person names and addresses are tagged by its entity head).
    /// Default: `models` (relative to the sidecar's working directory).
    #[serde(default)]
    pub models: Option<PathBuf>,
    /// Train on the data as it is, unguarded (the report says so).
    #[serde(default)]
    pub disabled: bool,
}

/// The privacy of a LoRA job.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraPrivacy {
    /// ε the job may spend; σ is calibrated to it for `max_steps`.
    pub target_epsilon: f64,
    /// δ. Default min(1e-5, 0.1 / units).
    #[serde(default)]
    pub delta: Option<f64>,
    /// Clipping norm C of one unit's gradient. Default 1.0.
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// What the guarantee protects: `example` (default) or `user`.
    #[serde(default)]
    pub unit: PrivacyUnit,
    /// `rdp` (default) or `prv`.
    #[serde(default = "default_accountant")]
    pub accountant: Accountant,
    /// Lifetime budget of the dataset in the ledger (set once, may be lowered).
    #[serde(default)]
    pub dataset_budget: Option<Budget>,
}

fn default_clip() -> f64 {
    1.0
}
fn default_accountant() -> Accountant {
    Accountant::Rdp
}

/// Optimisation of a LoRA job.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraTraining {
    /// Expected units per step; the sample rate is this over the number of units. Default 16.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Most rows per forward pass (memory only). Default 8.
    #[serde(default = "default_physical")]
    pub physical_batch_size: usize,
    /// `adam` (default) or `sgd`.
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerKind,
    /// Default 2e-3.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// SGD momentum. Default 0.9.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Decoupled weight decay. Default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// How per-example norms of the adapters are computed. Default `auto`.
    #[serde(default = "default_clip_mode")]
    pub clip_mode: ClipMode,
    /// A checkpoint every this many steps (and on cancel). Default 10.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Element type of the frozen base. Default `f32`.
    #[serde(default)]
    pub base_dtype: BaseDtype,
}

fn default_batch() -> usize {
    16
}
fn default_physical() -> usize {
    8
}
fn default_optimizer() -> OptimizerKind {
    OptimizerKind::Adam
}
fn default_lr() -> f64 {
    2e-3
}
fn default_momentum() -> f64 {
    0.9
}
fn default_clip_mode() -> ClipMode {
    ClipMode::Auto
}
fn default_checkpoint_every() -> u64 {
    10
}

impl Default for LoraTraining {
    fn default() -> Self {
        LoraTraining {
            batch_size: default_batch(),
            physical_batch_size: default_physical(),
            optimizer: default_optimizer(),
            learning_rate: default_lr(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            clip_mode: default_clip_mode(),
            checkpoint_every: default_checkpoint_every(),
            base_dtype: BaseDtype::F32,
        }
    }
}

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Where (`privacy.target_epsilon`; empty: the whole spec).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of a spec.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid job spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SpecError(pub Vec<Problem>);

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// The JSON Schema of a job spec.
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(JobSpec)).unwrap_or(Value::Null)
}

/// `/a/b/0` → `a.b[0]`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

/// Parse a spec from JSON or YAML text (`yaml`: the text is YAML; JSON is YAML too, but its
/// errors read better from the JSON parser). `base` resolves relative paths.
pub fn parse(text: &str, yaml: bool, base: &Path) -> Result<JobSpec, SpecError> {
    let value: Value = if yaml {
        serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            SpecError(vec![problem("", format!("not YAML{at}: {e}"))])
        })?
    } else {
        serde_json::from_str(text)
            .map_err(|e| SpecError(vec![problem("", format!("not JSON: {e}"))]))?
    };
    from_value(value, base)
}

/// Check a parsed spec (schema, then rules) and resolve its paths against `base`.
pub fn from_value(value: Value, base: &Path) -> Result<JobSpec, SpecError> {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| SpecError(vec![problem("", format!("internal: the job schema: {e}"))]))?;
    let mut problems: Vec<Problem> = validator
        .iter_errors(&value)
        .map(|e| problem(dotted(&e.instance_path.to_string()), e.to_string()))
        .collect();
    if !problems.is_empty() {
        // the schema of a tagged enum reports every variant's complaints: keep the ones of
        // the variant the spec names
        problems.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
        problems.dedup();
        return Err(SpecError(narrow(&value, problems)));
    }
    let mut spec: JobSpec =
        serde_json::from_value(value).map_err(|e| SpecError(vec![problem("", e.to_string())]))?;
    spec.resolve(base);
    let problems = spec.problems();
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(SpecError(problems))
    }
}

/// A tagged enum's schema errors name every variant's missing keys; report those of the
/// variant named by `kind` (or the `kind` problem alone).
fn narrow(value: &Value, problems: Vec<Problem>) -> Vec<Problem> {
    let kind = value.get("kind").and_then(Value::as_str);
    match kind {
        Some("lora" | "classifier_head") => {}
        _ => {
            return vec![problem(
                "kind",
                format!(
                    "expected `lora` or `classifier_head`, found {}",
                    value.get("kind").map_or("nothing".into(), Value::to_string)
                ),
            )];
        }
    }
    // jsonschema reports a oneOf failure as one error at the root; re-validate against the
    // named variant's own schema for the detail
    let schema = schema();
    let variant = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter().find(|v| {
                v.pointer("/properties/kind/const").and_then(Value::as_str) == kind
                    || v.pointer("/properties/kind/enum/0").and_then(Value::as_str) == kind
            })
        })
        .cloned();
    let Some(mut variant) = variant else {
        return problems;
    };
    if let (Some(defs), Some(o)) = (schema.get("$defs"), variant.as_object_mut()) {
        o.insert("$defs".into(), defs.clone());
    }
    match jsonschema::validator_for(&variant) {
        Ok(v) => {
            let mut out: Vec<Problem> = v
                .iter_errors(value)
                .map(|e| problem(dotted(&e.instance_path.to_string()), e.to_string()))
                .collect();
            out.dedup();
            if out.is_empty() { problems } else { out }
        }
        Err(_) => problems,
    }
}

fn resolve_path(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl JobSpec {
    /// The job's name.
    pub fn name(&self) -> String {
        match self {
            JobSpec::Lora(j) => j.name(),
            JobSpec::ClassifierHead(j) => j.name.clone(),
        }
    }

    /// `lora` or `classifier_head`.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Lora(_) => "lora",
            JobSpec::ClassifierHead(_) => "classifier_head",
        }
    }

    /// The training data file (the dataset the ledger accounts for).
    pub fn train_data(&self) -> &Path {
        match self {
            JobSpec::Lora(j) => &j.train_data,
            JobSpec::ClassifierHead(j) => &j.data.train,
        }
    }

    /// The ε the job plans to spend (its target), when it has one.
    pub fn target_epsilon(&self) -> Option<f64> {
        match self {
            JobSpec::Lora(j) => Some(j.privacy.target_epsilon),
            JobSpec::ClassifierHead(j) => j.privacy.target_epsilon,
        }
    }

    /// The dataset's lifetime budget the spec sets, if any.
    pub fn dataset_budget(&self) -> Option<Budget> {
        match self {
            JobSpec::Lora(j) => j.privacy.dataset_budget,
            JobSpec::ClassifierHead(j) => j.privacy.dataset_budget,
        }
    }

    fn resolve(&mut self, base: &Path) {
        match self {
            JobSpec::Lora(j) => {
                resolve_path(&mut j.base_model, base);
                resolve_path(&mut j.train_data, base);
                if let Some(p) = &mut j.data.guard.policy {
                    resolve_path(p, base);
                }
                if let Some(l) = &mut j.ledger {
                    resolve_path(l, base);
                }
            }
            JobSpec::ClassifierHead(j) => {
                resolve_path(&mut j.data.train, base);
                if let Some(v) = &mut j.data.validation {
                    resolve_path(v, base);
                }
                resolve_path(&mut j.encoder, base);
            }
        }
    }

    /// What the schema cannot say.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            JobSpec::Lora(j) => j.problems(),
            JobSpec::ClassifierHead(j) => match j.check() {
                Ok(()) => Vec::new(),
                Err(e) => vec![problem("", format!("{e:#}"))],
            },
        }
    }
}

impl LoraJob {
    /// The job's name (the data file's stem when not given).
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.train_data
                .file_stem()
                .map_or_else(|| "lora".into(), |s| s.to_string_lossy().into_owned())
        })
    }

    /// Every problem the schema cannot catch.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(n) = &self.name
            && (n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            out.push(problem("name", "letters, digits, `-`, `_` and `.` only"));
        }
        if !self.base_model.join("config.json").is_file() {
            out.push(problem(
                "base_model",
                format!(
                    "{} is not a Hugging Face checkpoint folder (no config.json)",
                    self.base_model.display()
                ),
            ));
        }
        if !self.train_data.is_file() {
            out.push(problem(
                "train_data",
                format!("{} does not exist", self.train_data.display()),
            ));
        }
        let p = &self.privacy;
        if !(p.target_epsilon > 0.0 && p.target_epsilon.is_finite()) {
            out.push(problem("privacy.target_epsilon", "must be positive"));
        }
        if let Some(d) = p.delta
            && !(d > 0.0 && d < 1.0)
        {
            out.push(problem("privacy.delta", "must be in (0, 1)"));
        }
        if !(p.max_grad_norm > 0.0 && p.max_grad_norm.is_finite()) {
            out.push(problem("privacy.max_grad_norm", "must be positive"));
        }
        if p.accountant == Accountant::Gdp {
            out.push(problem(
                "privacy.accountant",
                "gdp is an approximation, not a bound; use rdp or prv",
            ));
        }
        if let Some(b) = p.dataset_budget
            && !(b.epsilon > 0.0 && b.delta > 0.0 && b.delta < 1.0)
        {
            out.push(problem(
                "privacy.dataset_budget",
                "epsilon must be positive and delta in (0, 1)",
            ));
        }
        out.extend(
            self.lora
                .problems("lora")
                .into_iter()
                .map(|(k, m)| problem(k, m)),
        );
        if self.max_steps == 0 {
            out.push(problem("max_steps", "must be at least 1"));
        }
        let t = &self.training;
        if t.batch_size == 0 {
            out.push(problem("training.batch_size", "must be at least 1"));
        }
        if t.physical_batch_size == 0 {
            out.push(problem(
                "training.physical_batch_size",
                "must be at least 1",
            ));
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            out.push(problem("training.learning_rate", "must be positive"));
        }
        if !(0.0..1.0).contains(&t.momentum) {
            out.push(problem("training.momentum", "must be in [0, 1)"));
        }
        if t.weight_decay < 0.0 {
            out.push(problem("training.weight_decay", "must be >= 0"));
        }
        if t.checkpoint_every == 0 {
            out.push(problem("training.checkpoint_every", "must be at least 1"));
        }
        if self.data.max_length < 2 {
            out.push(problem("data.max_length", "must be at least 2 tokens"));
        }
        if self.data.max_examples_per_user == 0 {
            out.push(problem("data.max_examples_per_user", "must be at least 1"));
        }
        if let Some(policy) = &self.data.guard.policy
            && !policy.is_file()
        {
            out.push(problem(
                "data.guard.policy",
                format!("{} does not exist", policy.display()),
            ));
        }
        if self.data.guard.disabled && self.data.guard.policy.is_some() {
            out.push(problem(
                "data.guard",
                "give a policy or disable the guard, not both",
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_the_spec() {
        assert_eq!(dotted("/privacy/target_epsilon"), "privacy.target_epsilon");
        assert_eq!(dotted("/lora/targets/2"), "lora.targets[2]");
        assert_eq!(dotted(""), "");
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let dir = std::env::temp_dir();
        let text = r#"{"kind": "lora", "base_model": "nowhere", "train_data": "none.jsonl",
            "privacy": {"target_epsilon": -1, "delta": 2}, "lora": {"rank": 0}, "max_steps": 0}"#;
        let e = parse(text, false, &dir).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "base_model",
            "train_data",
            "privacy.target_epsilon",
            "privacy.delta",
            "lora.rank",
            "max_steps",
        ] {
            assert!(paths.contains(&want), "{want} not in {paths:?}");
        }
        // schema problems: an unknown key and a wrong type, both reported
        let text = "kind: lora\nbase_model: x\ntrain_data: y\nprivacy: {target_epsilon: high}\nlearning_rate: 3\n";
        let e = parse(text, true, &dir).unwrap_err();
        let all = e.to_string();
        assert!(all.contains("privacy.target_epsilon"), "{all}");
        assert!(all.contains("learning_rate"), "{all}");
        let e = parse("kind: gan\n", true, &dir).unwrap_err();
        assert_eq!(e.0[0].path, "kind");
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            "(lora|classifier_head|kind|privacy|[a-z_]{0,12})".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "(kind|base_model|train_data|privacy|lora|training|data|target_epsilon|rank|max_steps|[a-z]{1,8})",
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_json_is_accepted_or_refused_with_problems_never_a_panic(v in arb_json()) {
            match from_value(v, &std::env::temp_dir()) {
                Ok(_) => {}
                Err(SpecError(problems)) => proptest::prop_assert!(!problems.is_empty()),
            }
        }
    }
}
