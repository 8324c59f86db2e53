//! `trainer-sidecar train JOB.yaml`: train a gateway classifier head with DP-SGD on the frozen
//! encoder's features, and write the head (the bundle format of `filters::classify`), a JSON
//! report and a plot of loss and ε over steps.
//!
//! Order of work: read and validate the job → read the data and digest it → plan the privacy
//! (σ from the target ε, the steps the budget allows) → register the run in the ledger (refused
//! here if the dataset's lifetime budget would be exceeded; no data has been touched by training
//! yet) → embed the texts (cached per dataset and encoder) → train, recording each step's spend
//! before its update is applied → evaluate on the validation split → write the outputs.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::accountants::monitor::BudgetMonitor;
use crate::accountants::{self, Accountant, SubsampledGaussian};
use crate::engine::{
    ClipMode, DpConfig, Model, NoiseSource, Optimizer, OptimizerKind, PoissonSampler,
    PrivateEngine, Tape,
};
use crate::ledger::{Budget, Ledger, RunRecord, RunStatus};
use filters::classify::bundle::sha256_file;

/// A training job (YAML). Relative paths are relative to the current directory.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Job name: run ids, reports and bundle cards carry it.
    pub name: String,
    /// Where the examples are.
    pub data: DataSpec,
    /// The bundle whose encoder embeds the texts: a version folder (`models/guard/1`) or a name
    /// folder (`models/guard`, newest version). Default `models/guard`.
    #[serde(default = "default_encoder")]
    pub encoder: PathBuf,
    /// The head to train.
    #[serde(default)]
    pub head: HeadSpec,
    /// The privacy guarantee.
    pub privacy: PrivacySpec,
    /// Optimisation.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Where results go.
    pub output: OutputSpec,
    /// The per-dataset privacy ledger. Default `models/ledger.json` (a sidecar job: the
    /// sidecar's `ledger.json`).
    #[serde(default)]
    pub ledger: Option<PathBuf>,
    /// Feature cache folder. Default `.deps/trainer-cache`.
    #[serde(default = "default_cache")]
    pub cache: PathBuf,
    /// A fixed seed for sampling and noise. Makes the run reproducible and therefore NOT
    /// private: for tests only; the report says so.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Leave the bundle in its hidden staging folder (`<root>/<name>/.<version>.tmp`, which
    /// registries skip) for the caller to sign and publish: the sidecar never lets a gateway
    /// see an unsigned version. Not part of the job file.
    #[serde(skip)]
    pub stage_only: bool,
}

/// Training data: JSON lines `{"text": "...", "label": 0 | 1}`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Training examples (the dataset the ledger accounts for).
    pub train: PathBuf,
    /// Validation examples; without it, a share of `train` is held out (by a hash of the
    /// text, so the split is stable).
    #[serde(default)]
    pub validation: Option<PathBuf>,
    /// Share of `train` held out when `validation` is absent. Default 0.1.
    #[serde(default = "default_fraction")]
    pub validation_fraction: f64,
    /// Benign texts from *elsewhere* (JSON lines, `label` 0): ordinary traffic that is not
    /// yours, such as other teams' prompts or a public set. The threshold is raised until at
    /// most 1% of them are flagged too, so a head tuned on your traffic does not start refusing
    /// everyone else's. Used only to choose the threshold, never trained on, and not accounted:
    /// give public data, not private data.
    #[serde(default)]
    pub reference: Option<PathBuf>,
}

/// The head: an MLP `features → hidden → ReLU → 1`, read as a sigmoid score.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Head name in the bundle (`injection`, `toxicity`, or a new one). Default `injection`.
    #[serde(default = "default_head")]
    pub name: String,
    /// Hidden width. Default 256 (the shipped heads' shape).
    #[serde(default = "default_hidden")]
    pub hidden: i64,
    /// Where the weights start: `random` (a new head), or `encoder` — the encoder bundle's own
    /// head of this name, so that the run *fine-tunes* the shipped head on your labelled
    /// traffic (its hidden width must match). Default `random`.
    #[serde(default)]
    pub init: HeadInit,
}

/// The starting weights of a head job.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// Fresh random weights.
    #[default]
    Random,
    /// The encoder bundle's head of the same name.
    Encoder,
}

impl Default for HeadSpec {
    fn default() -> Self {
        Self {
            name: default_head(),
            hidden: default_hidden(),
            init: HeadInit::Random,
        }
    }
}

/// The (ε, δ) target and how noise and clipping are set.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// ε the run may spend; σ is calibrated to it. Give this or `noise_multiplier`.
    #[serde(default)]
    pub target_epsilon: Option<f64>,
    /// A fixed σ; the report gives the ε it spent.
    #[serde(default)]
    pub noise_multiplier: Option<f64>,
    /// δ. Default min(1e-5, 0.1 / training examples).
    #[serde(default)]
    pub delta: Option<f64>,
    /// Clipping norm C. Default 1.0.
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// `rdp` (default) or `prv`; `gdp` is refused (not a bound).
    #[serde(default = "default_accountant")]
    pub accountant: Accountant,
    /// Lifetime budget of the dataset in the ledger (set once, may be lowered).
    #[serde(default)]
    pub dataset_budget: Option<Budget>,
}

/// Optimisation settings.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Passes over the data (steps = epochs / q). Default 20.
    #[serde(default = "default_epochs")]
    pub epochs: f64,
    /// Expected logical batch size; q = batch_size / examples. Default 256.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Most examples per forward pass (memory only; results do not depend on it). Default 1024.
    #[serde(default = "default_physical")]
    pub physical_batch_size: usize,
    /// `adam` (default) or `sgd`.
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerKind,
    /// Default 1e-3.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// SGD momentum. Default 0.9.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Decoupled weight decay. Default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clipping method for Linear layers over sequences. Default `auto`.
    #[serde(default = "default_clip_mode")]
    pub clip_mode: ClipMode,
    /// Validation evaluations over the run (points in the plot). Default 40.
    #[serde(default = "default_evaluations")]
    pub evaluations: u64,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_size: default_batch(),
            physical_batch_size: default_physical(),
            optimizer: default_optimizer(),
            learning_rate: default_lr(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            clip_mode: default_clip_mode(),
            evaluations: default_evaluations(),
        }
    }
}

/// Outputs.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Folder for `head.safetensors`, `report.json`, `training.svg`.
    pub dir: PathBuf,
    /// Also assemble a model bundle (encoder + this head) as the next version of
    /// `<root>/<name>`, ready for the gateway's registry.
    #[serde(default)]
    pub bundle: Option<BundleOut>,
}

/// Where to put a bundle.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleOut {
    /// Registry root (`models`).
    pub root: PathBuf,
    /// Bundle name (`guard-dp`).
    pub name: String,
}

fn default_encoder() -> PathBuf {
    PathBuf::from("models/guard")
}
fn default_cache() -> PathBuf {
    PathBuf::from(".deps/trainer-cache")
}
fn default_fraction() -> f64 {
    0.1
}
fn default_head() -> String {
    "injection".into()
}
fn default_hidden() -> i64 {
    256
}
fn default_clip() -> f64 {
    1.0
}
fn default_accountant() -> Accountant {
    Accountant::Rdp
}
fn default_epochs() -> f64 {
    20.0
}
fn default_batch() -> usize {
    256
}
fn default_physical() -> usize {
    1024
}
fn default_optimizer() -> OptimizerKind {
    OptimizerKind::Adam
}
fn default_lr() -> f64 {
    1e-3
}
fn default_momentum() -> f64 {
    0.9
}
fn default_clip_mode() -> ClipMode {
    ClipMode::Auto
}
fn default_evaluations() -> u64 {
    40
}

impl Job {
    /// Read and validate a job file.
    pub fn load(path: &Path) -> anyhow::Result<Job> {
        let raw =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let job: Job = serde_yaml::from_str(&raw).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{}{at}: {e}", path.display())
        })?;
        job.check()
            .with_context(|| format!("invalid job {}", path.display()))?;
        Ok(job)
    }

    /// The checks a schema cannot express (ranges, combinations).
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(!self.name.trim().is_empty(), "name: must not be empty");
        let p = &self.privacy;
        match (p.target_epsilon, p.noise_multiplier) {
            (Some(_), Some(_)) => {
                bail!("privacy: give target_epsilon or noise_multiplier, not both")
            }
            (None, None) => {
                bail!("privacy: give target_epsilon (σ is calibrated to it) or noise_multiplier")
            }
            (Some(e), None) => ensure!(
                e > 0.0 && e.is_finite(),
                "privacy.target_epsilon: must be positive, got {e}"
            ),
            (None, Some(s)) => ensure!(
                s > 0.0 && s.is_finite(),
                "privacy.noise_multiplier: must be positive, got {s}"
            ),
        }
        if let Some(d) = p.delta {
            ensure!(
                d > 0.0 && d < 1.0,
                "privacy.delta: must be in (0, 1), got {d}"
            );
        }
        ensure!(
            p.max_grad_norm > 0.0 && p.max_grad_norm.is_finite(),
            "privacy.max_grad_norm: must be positive, got {}",
            p.max_grad_norm
        );
        ensure!(
            p.accountant != Accountant::Gdp,
            "privacy.accountant: gdp is an approximation, not a bound; use rdp or prv"
        );
        if let Some(b) = p.dataset_budget {
            ensure!(
                b.epsilon > 0.0 && b.delta > 0.0 && b.delta < 1.0,
                "privacy.dataset_budget: epsilon must be positive and delta in (0, 1)"
            );
        }
        let t = &self.training;
        ensure!(
            t.epochs > 0.0 && t.epochs.is_finite(),
            "training.epochs: must be positive, got {}",
            t.epochs
        );
        ensure!(t.batch_size >= 1, "training.batch_size: must be at least 1");
        ensure!(
            t.physical_batch_size >= 1,
            "training.physical_batch_size: must be at least 1"
        );
        ensure!(
            t.learning_rate > 0.0 && t.learning_rate.is_finite(),
            "training.learning_rate: must be positive"
        );
        ensure!(
            (0.0..1.0).contains(&t.momentum),
            "training.momentum: must be in [0, 1)"
        );
        ensure!(t.weight_decay >= 0.0, "training.weight_decay: must be >= 0");
        ensure!(
            t.evaluations >= 1,
            "training.evaluations: must be at least 1"
        );
        ensure!(self.head.hidden >= 1, "head.hidden: must be at least 1");
        ensure!(
            !self.head.name.is_empty()
                && self
                    .head
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "head.name: letters, digits, `_` and `-` only, got `{}`",
            self.head.name
        );
        ensure!(
            (0.0..0.9).contains(&self.data.validation_fraction),
            "data.validation_fraction: must be in [0, 0.9)"
        );
        Ok(())
    }
}

/// One labelled text.
#[derive(Debug, Clone)]
struct Example {
    text: String,
    label: f32,
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Example>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        let text = v.get("text").and_then(|t| t.as_str()).with_context(|| {
            format!("{}:{}: needs a string field `text`", path.display(), i + 1)
        })?;
        let label = match v.get("label") {
            Some(serde_json::Value::Bool(b)) => f32::from(u8::from(*b)),
            Some(serde_json::Value::Number(n)) if n.as_f64() == Some(0.0) => 0.0,
            Some(serde_json::Value::Number(n)) if n.as_f64() == Some(1.0) => 1.0,
            _ => bail!(
                "{}:{}: `label` must be 0, 1, true or false",
                path.display(),
                i + 1
            ),
        };
        out.push(Example {
            text: text.to_string(),
            label,
        });
    }
    ensure!(!out.is_empty(), "{}: no examples", path.display());
    Ok(out)
}

fn held_out(text: &str, fraction: f64) -> bool {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(text.as_bytes());
    let v = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    (f64::from(v) / f64::from(u32::MAX)) < fraction
}

/// Resolve `models/guard` (newest version) or `models/guard/1`.
fn resolve_bundle(path: &Path) -> anyhow::Result<PathBuf> {
    if path.join("manifest.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let (Some(root), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("encoder: {} is not a bundle folder", path.display());
    };
    let versions = filters::classify::bundle::versions(root, &name.to_string_lossy())
        .with_context(|| {
            format!(
                "encoder: no bundle at {} (run scripts/setup.sh)",
                path.display()
            )
        })?;
    let v = versions
        .last()
        .with_context(|| format!("encoder: {} has no versions", path.display()))?;
    Ok(path.join(v))
}

/// Per-step record for the report and the plot.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Step number (1-based).
    pub step: u64,
    /// ε spent after this step.
    pub epsilon: f64,
    /// Mean training loss of the step's logical batch (None for an empty batch).
    pub train_loss: Option<f64>,
    /// Validation loss, at evaluation points.
    pub validation_loss: Option<f64>,
    /// Validation accuracy at logit 0, at evaluation points.
    pub validation_accuracy: Option<f64>,
}

/// What `train` prints and writes as `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Job name.
    pub job: String,
    /// Run id (as in the ledger).
    pub run: String,
    /// The dataset.
    pub dataset: serde_json::Value,
    /// The guarantee and its parameters.
    pub privacy: serde_json::Value,
    /// Optimisation facts.
    pub training: serde_json::Value,
    /// Validation results of the final head.
    pub validation: serde_json::Value,
    /// Files written.
    pub outputs: serde_json::Value,
    /// Loss and ε over steps.
    pub history: Vec<Point>,
}

/// Load the job at `path` and run it.
pub fn run_job_file(path: &Path, progress: bool) -> anyhow::Result<Report> {
    let job = Job::load(path)?;
    run_job(&job, progress)
}

fn features(
    job: &Job,
    encoder_dir: &Path,
    train_digest: &str,
    examples: &[Example],
    tag: &str,
    progress: bool,
) -> anyhow::Result<Tensor> {
    use sha2::{Digest, Sha256};
    let bundle = filters::classify::Bundle::open(encoder_dir)
        .with_context(|| format!("opening encoder bundle {}", encoder_dir.display()))?;
    let mut h = Sha256::new();
    h.update(b"portcullis-features-v1\0");
    h.update(train_digest.as_bytes());
    h.update(bundle.digest.as_bytes());
    h.update(tag.as_bytes());
    let key = hex::encode(h.finalize());
    let cache = job.cache.join(format!("{}.safetensors", &key[..32]));
    let width = bundle.manifest.encoder.features as i64;
    if let Some(t) = read_cached(&cache, examples.len(), width) {
        return Ok(t);
    }
    let opts = filters::classify::EncoderOptions {
        keep_features: true,
        // a long training example is represented by its first and last windows
        long_texts: filters::classify::LongTexts::KeepEnds,
        ..Default::default()
    };
    let clf = filters::classify::Classifier::load(encoder_dir, &opts, None, None)
        .with_context(|| format!("loading encoder {}", encoder_dir.display()))?;
    let bar = bar(progress, examples.len() as u64, &format!("embedding {tag}"));
    let mut flat: Vec<f32> = Vec::with_capacity(examples.len() * width as usize);
    for chunk in examples.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        for f in clf.features_blocking(&texts)? {
            ensure!(
                f.len() == width as usize,
                "the encoder returned {} features, expected {width}",
                f.len()
            );
            flat.extend(f);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let bytes: Vec<u8> = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![examples.len(), width as usize],
        &bytes,
    )?;
    std::fs::create_dir_all(&job.cache)
        .with_context(|| format!("creating {}", job.cache.display()))?;
    let data = safetensors::tensor::serialize([("features", view)], None)?;
    let tmp = cache.with_extension("tmp");
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &cache))
        .with_context(|| format!("writing {}", cache.display()))?;
    Ok(Tensor::f_from_slice(&flat)?.f_reshape([examples.len() as i64, width])?)
}

/// Features from the cache, when the file is there and has the expected shape.
fn read_cached(path: &Path, rows: usize, width: i64) -> Option<Tensor> {
    let raw = std::fs::read(path).ok()?;
    let st = safetensors::SafeTensors::deserialize(&raw).ok()?;
    let view = st.tensor("features").ok()?;
    if view.shape() != [rows, width as usize] {
        return None;
    }
    Tensor::f_from_data_size(view.data(), &[rows as i64, width], Kind::Float).ok()
}

fn bar(show: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix:>12} [{bar:32}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix(what.to_string());
    b
}

struct Head {
    model: Model,
    l0: crate::engine::Linear,
    l2: crate::engine::Linear,
}

impl Head {
    fn new(name: &str, width: i64, hidden: i64) -> anyhow::Result<Head> {
        let mut model = Model::new(Kind::Float, Device::Cpu);
        let l0 = model.linear(&format!("{name}.0"), width, hidden, true)?;
        let l2 = model.linear(&format!("{name}.2"), hidden, 1, true)?;
        Ok(Head { model, l0, l2 })
    }

    /// Start from the weights of the bundle's head `name` (a fine-tune of the shipped head).
    fn load_from(&self, bundle_dir: &Path, name: &str) -> anyhow::Result<()> {
        let b = filters::classify::bundle::Bundle::open(bundle_dir)?;
        let Some(spec) = b.manifest.heads.iter().find(|h| h.name == name) else {
            bail!(
                "head.init is `encoder`, but the bundle {} has no head `{name}` (it has: {})",
                bundle_dir.display(),
                b.manifest
                    .heads
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let tensors = crate::tensors::read(&b.path(&spec.file))
            .with_context(|| format!("reading the head `{name}` of {}", bundle_dir.display()))?;
        for (pname, p) in self.model.parameters() {
            // `<name>.0.weight` here is `<tensors>.0.weight` in the bundle
            let key = format!("{}{}", spec.tensors, &pname[name.len()..]);
            let Some(src) = tensors.get(&key) else {
                bail!("the bundle's head `{name}` has no tensor `{key}`");
            };
            ensure!(
                src.size() == p.size(),
                "the bundle's `{key}` is {:?}, the job's head wants {:?} (set head.hidden to match)",
                src.size(),
                p.size()
            );
            let mut p = p;
            tch::no_grad(|| p.f_copy_(&src.to_kind(Kind::Float)))?;
        }
        Ok(())
    }

    fn logits(&self, x: &Tensor, tape: &mut Tape) -> Result<Tensor, crate::engine::EngineError> {
        let h = self.l0.forward(x, tape)?.f_relu()?;
        Ok(self.l2.forward(&h, tape)?.f_squeeze_dim(1)?)
    }

    fn losses(
        &self,
        x: &Tensor,
        y: &Tensor,
        tape: &mut Tape,
    ) -> Result<Tensor, crate::engine::EngineError> {
        let z = self.logits(x, tape)?;
        Ok(z.f_binary_cross_entropy_with_logits(
            y,
            None::<Tensor>,
            None::<Tensor>,
            tch::Reduction::None,
        )?)
    }
}

/// The smallest logit with at most 1% of `neg` (benign logits, sorted ascending, not empty)
/// strictly above it.
fn threshold_at_1pct(neg: &[f32]) -> f64 {
    let allowed = (neg.len() as f64 * 0.01).floor() as usize;
    f64::from(neg[neg.len() - 1 - allowed.min(neg.len() - 1)])
}

/// (loss, accuracy, AUC, (threshold, recall)).
type Metrics = (f64, f64, Option<f64>, Option<(f64, f64)>);

/// Validation metrics: loss, accuracy at logit 0, ROC AUC, the logit threshold at ≤ 1% FPR and
/// recall there.
fn evaluate(head: &Head, x: &Tensor, y: &Tensor) -> anyhow::Result<Metrics> {
    let _g = tch::no_grad_guard();
    let z = head.logits(x, &mut Tape::off())?;
    let loss = z
        .f_binary_cross_entropy_with_logits(
            y,
            None::<Tensor>,
            None::<Tensor>,
            tch::Reduction::Mean,
        )?
        .f_double_value(&[])?;
    let zs: Vec<f32> = Vec::try_from(&z)?;
    let ys: Vec<f32> = Vec::try_from(y)?;
    let acc = zs
        .iter()
        .zip(&ys)
        .filter(|(z, y)| (**z > 0.0) == (**y > 0.5))
        .count() as f64
        / zs.len().max(1) as f64;
    let mut pos: Vec<f32> = zs
        .iter()
        .zip(&ys)
        .filter(|(_, y)| **y > 0.5)
        .map(|(z, _)| *z)
        .collect();
    let mut neg: Vec<f32> = zs
        .iter()
        .zip(&ys)
        .filter(|(_, y)| **y <= 0.5)
        .map(|(z, _)| *z)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return Ok((loss, acc, None, None));
    }
    pos.sort_by(f32::total_cmp);
    neg.sort_by(f32::total_cmp);
    // AUC = P(score of a positive > score of a negative), ties count half.
    let mut wins = 0.0f64;
    let mut j_lo = 0;
    let mut j_hi = 0;
    for p in &pos {
        while j_lo < neg.len() && neg[j_lo] < *p {
            j_lo += 1;
        }
        j_hi = j_hi.max(j_lo);
        while j_hi < neg.len() && neg[j_hi] <= *p {
            j_hi += 1;
        }
        wins += j_lo as f64 + 0.5 * (j_hi - j_lo) as f64;
    }
    let auc = wins / (pos.len() as f64 * neg.len() as f64);
    let threshold = threshold_at_1pct(&neg);
    let recall =
        pos.iter().filter(|p| f64::from(**p) > threshold).count() as f64 / pos.len() as f64;
    Ok((loss, acc, Some(auc), Some((threshold, recall))))
}

/// Run a validated job.
pub fn run_job(job: &Job, progress: bool) -> anyhow::Result<Report> {
    run_job_inner(job, progress, &crate::finetune::Quiet)
}

/// Run a validated job, reporting each step through `hooks` (and stopping early, outputs
/// written, when it asks to cancel).
pub fn run_job_with(job: &Job, hooks: &dyn crate::finetune::Hooks) -> anyhow::Result<Report> {
    run_job_inner(job, false, hooks)
}

fn run_job_inner(
    job: &Job,
    progress: bool,
    hooks: &dyn crate::finetune::Hooks,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    // Data.
    let all = read_jsonl(&job.data.train)?;
    let digest = sha256_file(&job.data.train)?;
    let (train, validation): (Vec<Example>, Vec<Example>) = match &job.data.validation {
        Some(v) => (all, read_jsonl(v)?),
        None => all
            .into_iter()
            .partition(|e| !held_out(&e.text, job.data.validation_fraction)),
    };
    let n = train.len();
    ensure!(
        n >= 2,
        "{}: only {n} training examples",
        job.data.train.display()
    );
    let t = &job.training;
    ensure!(
        t.batch_size < n,
        "training.batch_size ({}) must be smaller than the training set ({n} examples)",
        t.batch_size
    );
    let q = t.batch_size as f64 / n as f64;
    let planned_steps = (t.epochs / q).ceil() as u64;
    let p = &job.privacy;
    let delta = p.delta.unwrap_or_else(|| (0.1 / n as f64).min(1e-5));
    ensure!(
        delta < 1.0 / n as f64,
        "privacy.delta ({delta}) must be below 1/examples ({:.2e}): a larger δ allows publishing a record",
        1.0 / n as f64
    );
    let sigma = match (p.target_epsilon, p.noise_multiplier) {
        (Some(e), _) => accountants::noise_multiplier(p.accountant, e, q, planned_steps, delta)
            .context("calibrating the noise to privacy.target_epsilon")?,
        (None, Some(s)) => s,
        (None, None) => bail!("privacy: no target_epsilon or noise_multiplier"),
    };
    let mech = SubsampledGaussian::new(q, sigma)?;
    let monitor = BudgetMonitor::new(p.accountant, mech, delta, planned_steps, p.target_epsilon)?;
    let planned_epsilon = monitor.epsilon_after(monitor.max_steps)?;

    // Ledger: refuse before any training.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let run_id = format!("{}-{now}-{:08x}", job.name, rand::random::<u32>());
    let ledger_path = job
        .ledger
        .clone()
        .unwrap_or_else(|| PathBuf::from("models/ledger.json"));
    let ledger = Ledger::open(&ledger_path)?;
    let dataset_name = job
        .data
        .train
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    ledger.begin(
        &digest,
        &dataset_name,
        p.dataset_budget,
        RunRecord {
            run: run_id.clone(),
            job: job.name.clone(),
            started: now,
            accountant: p.accountant.name().into(),
            sample_rate: q,
            noise_multiplier: sigma,
            delta,
            planned_steps: monitor.max_steps,
            planned_epsilon,
            steps: 0,
            epsilon: 0.0,
            status: RunStatus::Running,
        },
    )?;
    let result = train_registered(
        job,
        &ledger,
        &digest,
        &run_id,
        &train,
        &validation,
        &Plan {
            q,
            sigma,
            delta,
            planned_steps,
            monitor: &monitor,
        },
        progress,
        hooks,
        started,
    );
    let status = match &result {
        Ok((_, steps)) if *steps == monitor.max_steps => RunStatus::Finished,
        _ => RunStatus::Stopped,
    };
    ledger.finish(&digest, &run_id, status)?;
    let (mut report, _) = result?;
    report.dataset["ledger_spent_epsilon"] = serde_json::json!(
        ledger
            .snapshot()?
            .datasets
            .get(&digest)
            .map(|a| a.spent().0)
    );
    let json = serde_json::to_vec_pretty(&report)?;
    std::fs::write(job.output.dir.join("report.json"), json)?;
    Ok(report)
}

/// The privacy plan of a run, fixed before the ledger entry is made.
struct Plan<'a> {
    q: f64,
    sigma: f64,
    delta: f64,
    /// Steps the epochs ask for (the monitor may allow fewer).
    planned_steps: u64,
    monitor: &'a BudgetMonitor,
}

#[allow(clippy::too_many_arguments)] // one call site: the steps of `run_job` after the ledger
fn train_registered(
    job: &Job,
    ledger: &Ledger,
    digest: &str,
    run_id: &str,
    train: &[Example],
    validation: &[Example],
    plan: &Plan,
    progress: bool,
    hooks: &dyn crate::finetune::Hooks,
    started: Instant,
) -> anyhow::Result<(Report, u64)> {
    let &Plan {
        q,
        sigma,
        delta,
        planned_steps,
        monitor,
    } = plan;
    let encoder_dir = resolve_bundle(&job.encoder)?;
    let x = features(job, &encoder_dir, digest, train, "train", progress)?;
    let vdigest = match &job.data.validation {
        Some(v) => sha256_file(v)?,
        None => format!("{digest}-holdout-{}", job.data.validation_fraction),
    };
    let xv = if validation.is_empty() {
        None
    } else {
        Some(features(
            job,
            &encoder_dir,
            &vdigest,
            validation,
            "validation",
            progress,
        )?)
    };
    let y = Tensor::f_from_slice(&train.iter().map(|e| e.label).collect::<Vec<_>>())?;
    let yv = Tensor::f_from_slice(&validation.iter().map(|e| e.label).collect::<Vec<_>>())?;
    let embed_s = started.elapsed().as_secs_f64();

    let t = &job.training;
    let p = &job.privacy;
    let n = train.len();
    if let Some(seed) = job.seed {
        tch::manual_seed(seed as i64);
    }
    let head = Head::new(&job.head.name, x.size()[1], job.head.hidden)?;
    if job.head.init == HeadInit::Encoder {
        head.load_from(&encoder_dir, &job.head.name)?;
    }
    let mut params: Vec<Tensor> = head
        .model
        .parameters()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let noise = match job.seed {
        Some(s) => NoiseSource::for_tests(s),
        None => NoiseSource::from_os()?,
    };
    let mut sampler_rng = match job.seed {
        Some(s) => NoiseSource::for_tests(s.wrapping_add(1)),
        None => NoiseSource::from_os()?,
    };
    let config = DpConfig {
        max_grad_norm: p.max_grad_norm,
        noise_multiplier: sigma,
        expected_batch_size: q * n as f64,
        clip_mode: t.clip_mode,
        materialize_budget: 256 << 20,
    };
    let deterministic = noise.is_deterministic();
    let mut engine = PrivateEngine::new(&head.model, config, noise)?;
    let mut opt = Optimizer::new(t.optimizer, t.learning_rate, t.momentum, t.weight_decay);
    let sampler = PoissonSampler::new(n, q);
    let every = (monitor.max_steps / t.evaluations).max(1);
    let bar = bar(progress, monitor.max_steps, "training");
    let mut history = Vec::new();
    let (mut examples_seen, mut clipped, mut empty) = (0i64, 0i64, 0u64);
    let train_start = Instant::now();
    let mut step = 0u64;
    while monitor.allows(step + 1) {
        if hooks.cancelled() {
            break;
        }
        let step_start = Instant::now();
        step += 1;
        let idx = sampler.sample(&mut sampler_rng);
        let mut loss_sum = 0.0;
        for chunk in crate::engine::sampler::physical_batches(&idx, t.physical_batch_size) {
            let ids = Tensor::f_from_slice(chunk)?;
            let xb = x.f_index_select(0, &ids)?;
            let yb = y.f_index_select(0, &ids)?;
            let s = engine.accumulate(chunk.len() as i64, |tape| head.losses(&xb, &yb, tape))?;
            loss_sum += s.loss_sum;
            clipped += s.clipped;
        }
        examples_seen += idx.len() as i64;
        if idx.is_empty() {
            empty += 1;
        }
        let grads = engine.finish_step()?;
        let eps = monitor.epsilon_after(step)?;
        // The spend is durable before the noisy update can influence anything.
        ledger.record(digest, run_id, step, eps)?;
        opt.step(&mut params, &grads)?;
        let mut point = Point {
            step,
            epsilon: eps,
            train_loss: (!idx.is_empty()).then(|| loss_sum / idx.len() as f64),
            validation_loss: None,
            validation_accuracy: None,
        };
        if let Some(xv) = &xv
            && (step.is_multiple_of(every) || step == monitor.max_steps)
        {
            let (vl, va, _, _) = evaluate(&head, xv, &yv)?;
            point.validation_loss = Some(vl);
            point.validation_accuracy = Some(va);
            bar.set_message(format!("ε={eps:.3} val loss {vl:.4} acc {va:.3}"));
        }
        hooks.event(
            "progress",
            serde_json::json!({
                "step": step,
                "steps": monitor.max_steps,
                "loss": point.train_loss,
                "epsilon": eps,
                "steps_per_second": 1.0 / step_start.elapsed().as_secs_f64().max(1e-9),
                "eta_seconds": train_start.elapsed().as_secs_f64() / step as f64
                    * monitor.max_steps.saturating_sub(step) as f64,
            }),
        );
        history.push(point);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let train_s = train_start.elapsed().as_secs_f64();

    // Outputs.
    std::fs::create_dir_all(&job.output.dir)
        .with_context(|| format!("creating {}", job.output.dir.display()))?;
    let head_path = job.output.dir.join("head.safetensors");
    write_head(&head.model, &head_path)?;
    let (vloss, vacc, auc, thr) = match &xv {
        Some(xv) => {
            let (l, a, auc, thr) = evaluate(&head, xv, &yv)?;
            (Some(l), Some(a), auc, thr)
        }
        None => (None, None, None, None),
    };
    // The reference texts' own 1% point: the threshold is the higher of the two.
    let reference = match &job.data.reference {
        Some(path) => {
            let rows = read_jsonl(path)?;
            ensure!(
                rows.iter().all(|e| e.label == 0.0),
                "{}: data.reference holds benign texts only (label 0)",
                path.display()
            );
            let xr = features(
                job,
                &encoder_dir,
                &sha256_file(path)?,
                &rows,
                "reference",
                progress,
            )?;
            let _g = tch::no_grad_guard();
            let mut z: Vec<f32> = Vec::try_from(&head.logits(&xr, &mut Tape::off())?)?;
            z.sort_by(f32::total_cmp);
            Some((threshold_at_1pct(&z), rows.len()))
        }
        None => None,
    };
    let threshold = match (thr, reference) {
        (Some((t, _)), Some((r, _))) => Some(t.max(r)),
        (t, r) => t.map(|t| t.0).or(r.map(|r| r.0)),
    };
    let svg_path = job.output.dir.join("training.svg");
    let series = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|p| f(p).map(|y| (p.step as f64, y)))
            .collect()
    };
    crate::plot::write(
        &svg_path,
        &job.name,
        (
            "loss",
            &[
                ("train loss", series(|p| p.train_loss)),
                ("validation loss", series(|p| p.validation_loss)),
            ],
        ),
        ("privacy", &[("ε spent", series(|p| Some(p.epsilon)))]),
    )?;
    let eps = monitor.epsilon_after(step)?;
    let bundle = match &job.output.bundle {
        Some(b) => Some(write_bundle(
            job,
            b,
            &encoder_dir,
            &head_path,
            threshold.unwrap_or(0.0),
            eps,
            delta,
        )?),
        None => None,
    };
    let report = Report {
        job: job.name.clone(),
        run: run_id.to_string(),
        dataset: serde_json::json!({
            "path": job.data.train,
            "sha256": digest,
            "training_examples": n,
            "validation_examples": validation.len(),
            "validation_source": if job.data.validation.is_some() { "file" } else { "held out from train by text hash" },
        }),
        privacy: serde_json::json!({
            "epsilon": eps,
            "delta": delta,
            "accountant": job.privacy.accountant.name(),
            "target_epsilon": job.privacy.target_epsilon,
            "noise_multiplier": sigma,
            "max_grad_norm": p.max_grad_norm,
            "sample_rate": q,
            "steps": step,
            "planned_steps": planned_steps,
            "stopped_by_budget": step < planned_steps,
            "sampling": "poisson",
            "noise": if deterministic { "FIXED SEED (test mode): NOT private" } else { "ChaCha20 seeded from the OS" },
            "unit": "one example (one line of the training file)",
            "not_covered": "the validation split (accuracy, threshold) is used without DP",
        }),
        training: serde_json::json!({
            "optimizer": t.optimizer,
            "learning_rate": t.learning_rate,
            "expected_batch_size": q * n as f64,
            "examples_seen": examples_seen,
            "empty_batches": empty,
            "clipped_fraction": if examples_seen > 0 { clipped as f64 / examples_seen as f64 } else { 0.0 },
            "clipping": engine.plan(),
            "embedding_seconds": embed_s,
            "training_seconds": train_s,
            "steps_per_second": step as f64 / train_s.max(1e-9),
        }),
        validation: serde_json::json!({
            "loss": vloss,
            "accuracy": vacc,
            "auc": auc,
            "threshold_logit_at_1pct_fpr": thr.map(|t| t.0),
            "recall_at_1pct_fpr": thr.map(|t| t.1),
            "reference_threshold_logit": reference.map(|r| r.0),
            "reference_texts": reference.map(|r| r.1),
            "threshold_logit": threshold,
        }),
        outputs: serde_json::json!({
            "head": head_path,
            "report": job.output.dir.join("report.json"),
            "plot": svg_path,
            "bundle": bundle,
        }),
        history,
    };
    Ok((report, step))
}

fn write_head(model: &Model, path: &Path) -> anyhow::Result<()> {
    crate::tensors::write_f32(
        path,
        &model.parameters(),
        &[("format", "portcullis-head-1")],
    )
    .with_context(|| format!("writing {}", path.display()))
}

fn write_bundle(
    job: &Job,
    out: &BundleOut,
    encoder_dir: &Path,
    head_path: &Path,
    threshold: f64,
    epsilon: f64,
    delta: f64,
) -> anyhow::Result<PathBuf> {
    use filters::classify::bundle::{self, Bundle, HeadSpec};
    let enc = Bundle::open(encoder_dir)?;
    let dir = out.root.join(&out.name);
    std::fs::create_dir_all(&dir)?;
    let next = bundle::next_version(&out.root, &out.name, "manifest.json");
    let tmp = dir.join(format!(".{next}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for f in [&enc.manifest.encoder.file, &enc.manifest.encoder.tokenizer] {
        let (src, dst) = (enc.path(f), tmp.join(f));
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    std::fs::copy(head_path, tmp.join("heads.safetensors"))?;
    // The encoder's entity head (person names, addresses) comes along unchanged, in a file of
    // its own (the base keeps it beside heads this bundle does not carry).
    let entities = match &enc.manifest.entities {
        Some(spec) => {
            let raw = std::fs::read(enc.path(&spec.file))
                .with_context(|| format!("reading {}", enc.path(&spec.file).display()))?;
            let st = safetensors::SafeTensors::deserialize(&raw)?;
            let prefix = format!("{}.", spec.tensors);
            let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
                .tensors()
                .into_iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .collect();
            let bytes = safetensors::tensor::serialize(kept, None)?;
            std::fs::write(tmp.join("entities.safetensors"), bytes)?;
            Some(filters::classify::bundle::EntitySpec {
                file: "entities.safetensors".into(),
                ..spec.clone()
            })
        }
        None => None,
    };
    std::fs::write(
        tmp.join("MODEL_CARD.md"),
        format!(
            "# {name} {next}\n\nHead `{head}` trained by `trainer-sidecar train` (job `{job}`){start} with DP-SGD: \
             (ε = {epsilon:.4}, δ = {delta:.1e})-DP with respect to one line of the training file, \
             accounted with {acc}. Encoder: {enc_name} {enc_version} (frozen).\n\nThe decision threshold \
             (logit {threshold:.4}) flags at most 1% of the benign texts of the validation split{reference}; \
             it was chosen without DP: the validation split is not covered by the guarantee.\n",
            name = out.name,
            head = job.head.name,
            job = job.name,
            reference = if job.data.reference.is_some() {
                " and of the job's reference texts (`data.reference`)"
            } else {
                ""
            },
            start = match job.head.init {
                HeadInit::Random => String::new(),
                HeadInit::Encoder => format!(
                    ", starting from the head `{}` of {} {}",
                    job.head.name, enc.manifest.name, enc.manifest.version
                ),
            },
            acc = job.privacy.accountant.name(),
            enc_name = enc.manifest.name,
            enc_version = enc.manifest.version,
        ),
    )?;
    let mut manifest = enc.manifest.clone();
    manifest.name = out.name.clone();
    manifest.version = next.clone();
    manifest.created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    manifest.signature = None;
    manifest.heads = vec![HeadSpec {
        name: job.head.name.clone(),
        file: "heads.safetensors".into(),
        tensors: job.head.name.clone(),
        kind: "mlp".into(),
        activation: "sigmoid".into(),
        threshold_logit: threshold,
        calibration: Some(format!(
            "false-positive rate <= 0.01 on the validation split{}; DP-SGD (epsilon={epsilon:.4}, delta={delta:.1e})",
            if job.data.reference.is_some() {
                " and on data.reference"
            } else {
                ""
            }
        )),
        operating_points: Default::default(),
    }];
    manifest.entities = entities;
    bundle::write_manifest(&tmp, &mut manifest)?;
    if job.stage_only {
        return Ok(tmp);
    }
    let dest = dir.join(&next);
    std::fs::rename(&tmp, &dest).with_context(|| format!("publishing {}", dest.display()))?;
    Ok(dest)
}
