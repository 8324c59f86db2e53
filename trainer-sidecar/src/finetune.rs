//! A DP LoRA fine-tuning job, from data to PEFT adapter: the code both `POST /v1/jobs` and
//! `trainer-sidecar train` run.
//!
//! Order of work, each step before the next can touch the data:
//! 1. read the data, pass it through the data guard ([`crate::guard`]), tokenize it;
//! 2. plan the privacy: units (examples, or users), sample rate q, σ calibrated to the target
//!    ε for `max_steps`, δ;
//! 3. register the run in the ledger (refused here if the dataset's budget would be passed);
//! 4. train: Poisson-sample units, clip each unit's adapter gradient, add noise, record the
//!    step's ε in the ledger *before* applying the update, checkpoint every N steps;
//! 5. check the adapter moved and is finite, write it (PEFT's format), the report and the plot.
//!
//! Checkpoints hold the adapters, the optimiser state, the history and the number of noisy
//! steps drawn. After a crash the job resumes from the last checkpoint: the steps drawn after
//! it were recorded in the ledger before their update, so they stay spent, and the resumed run
//! stops when the ledger's steps reach the plan (the guarantee holds; the adapter gets fewer
//! updates). A resumed run draws fresh noise and batches: replaying a lost step's noise on
//! other weights would release two values with the same noise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use crate::accountants::monitor::BudgetMonitor;
use crate::accountants::{self, SubsampledGaussian};
use crate::engine::{DpConfig, Model, NoiseSource, Optimizer, PoissonSampler, PrivateEngine};
use crate::guard::{self, GuardReport};
use crate::jobs::spec::{BaseDtype, LoraJob, PrivacyUnit};
use crate::ledger::{Ledger, RunRecord, RunStatus};
use crate::llm::data::{self, Example};
use crate::llm::model::Segment;
use crate::llm::{Batch, Decoder, TextCodec};
use filters::classify::bundle::sha256_file;

/// What a running job reports and asks.
pub trait Hooks: Sync {
    /// An event for the job's stream (`progress`, `checkpoint`, `log`).
    fn event(&self, kind: &str, data: Value);
    /// Whether the user asked to cancel.
    fn cancelled(&self) -> bool;
}

/// Hooks that print nothing and never cancel.
#[derive(Debug, Default)]
pub struct Quiet;

impl Hooks for Quiet {
    fn event(&self, _: &str, _: Value) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// The adapter is written; the report.
    Succeeded(Value),
    /// Cancelled after this many steps (a checkpoint was written).
    Cancelled(u64),
}

/// One point of the training history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// Noisy steps drawn so far.
    pub step: u64,
    /// ε spent after it.
    pub epsilon: f64,
    /// Mean per-example loss of the step's batch (none for an empty batch).
    pub loss: Option<f64>,
}

/// What a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    run: String,
    digest: String,
    /// Updates applied to the adapters.
    applied: u64,
    /// Noisy steps drawn (what the ledger counts).
    drawn: u64,
    optimizer_step: i32,
    history: Vec<Point>,
    examples_seen: u64,
    clipped: u64,
    tokens: u64,
    seconds: f64,
}

/// The data after the guard and the tokenizer.
struct Prepared {
    examples: Vec<Example>,
    /// Each privacy unit's examples (indices into `examples`).
    units: Vec<Vec<usize>>,
    guard: GuardReport,
    data: Value,
}

fn prepare(job: &LoraJob, codec: &TextCodec) -> anyhow::Result<Prepared> {
    let user_field =
        (job.privacy.unit == PrivacyUnit::User).then_some(job.data.user_field.as_str());
    let mut lines = data::read(&job.train_data, user_field)?;
    let read = lines.len();
    let guard = if job.data.guard.disabled {
        guard::disabled(read)
    } else {
        let policy = guard::policy(job.data.guard.policy.as_deref())?;
        let models = job
            .data
            .guard
            .models
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("models"));
        let tagger = guard::entity_model(&policy, &models)?;
        guard::run(
            &mut lines,
            &policy,
            &guard::pseudonym_key(),
            tagger.as_deref(),
        )?
    };
    let mut examples = Vec::with_capacity(lines.len());
    let (mut truncated, mut empty) = (0usize, 0usize);
    for line in &lines {
        match data::tokenize(codec, line, job.data.max_length)? {
            Some(e) => {
                truncated += usize::from(e.truncated);
                examples.push(e);
            }
            None => empty += 1,
        }
    }
    ensure!(
        !examples.is_empty(),
        "{}: no example has a token to train on within data.max_length ({})",
        job.train_data.display(),
        job.data.max_length
    );
    let units: Vec<Vec<usize>> = match job.privacy.unit {
        PrivacyUnit::Example => (0..examples.len()).map(|i| vec![i]).collect(),
        PrivacyUnit::User => {
            let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, e) in examples.iter().enumerate() {
                by.entry(e.user.as_deref().unwrap_or_default())
                    .or_default()
                    .push(i);
            }
            by.into_values().collect()
        }
    };
    let tokens: usize = examples.iter().map(|e| e.ids.len()).sum();
    let trained: usize = examples.iter().map(Example::trained_tokens).sum();
    let data = json!({
        "lines": read,
        "dropped_by_guard": guard.dropped,
        "dropped_nothing_to_train": empty,
        "examples": examples.len(),
        "truncated": truncated,
        "max_length": job.data.max_length,
        "units": units.len(),
        "unit": job.privacy.unit,
        "tokens": tokens,
        "trained_tokens": trained,
    });
    Ok(Prepared {
        examples,
        units,
        guard,
        data,
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The checkpoint folder of a job folder.
fn checkpoints(work: &Path) -> PathBuf {
    work.join("checkpoints")
}

/// The newest checkpoint of `work`, if any.
fn latest_checkpoint(work: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(checkpoints(work).join("latest")).ok()?;
    let dir = checkpoints(work).join(name.trim());
    dir.join("state.json").is_file().then_some(dir)
}

/// Run `job` in the folder `work` (checkpoints, outputs), accounting in the ledger at
/// `ledger_path`. Resumes from a checkpoint in `work` when there is one.
pub fn run(
    job: &LoraJob,
    work: &Path,
    ledger_path: &Path,
    hooks: &dyn Hooks,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let codec = TextCodec::from_dir(&job.base_model)
        .with_context(|| format!("reading the tokenizer of {}", job.base_model.display()))?;
    let prep = prepare(job, &codec)?;
    hooks.event(
        "log",
        json!({"message": "data ready", "data": prep.data, "guard": prep.guard}),
    );
    let digest = sha256_file(&job.train_data)?;
    let n = prep.units.len();
    let t = &job.training;
    ensure!(
        t.batch_size < n,
        "training.batch_size ({}) must be smaller than the number of privacy units ({n})",
        t.batch_size
    );
    let q = t.batch_size as f64 / n as f64;
    let p = &job.privacy;
    let delta = p.delta.unwrap_or_else(|| (0.1 / n as f64).min(1e-5));
    ensure!(
        delta < 1.0 / n as f64,
        "privacy.delta ({delta}) must be below 1/units ({:.2e}): a larger δ allows publishing a record",
        1.0 / n as f64
    );
    let sigma =
        accountants::noise_multiplier(p.accountant, p.target_epsilon, q, job.max_steps, delta)
            .context("calibrating the noise to privacy.target_epsilon")?;
    let mech = SubsampledGaussian::new(q, sigma)?;
    let monitor = BudgetMonitor::new(
        p.accountant,
        mech,
        delta,
        job.max_steps,
        Some(p.target_epsilon),
    )?;
    let ledger = Ledger::open(ledger_path)?;

    // a new run, or the one a checkpoint (or a crash before the first one) left
    let resume = latest_checkpoint(work)
        .map(|dir| -> anyhow::Result<(PathBuf, State)> {
            let s: State = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?;
            Ok((dir, s))
        })
        .transpose()?;
    let run_marker = work.join("run.json");
    let run_id = match (&resume, std::fs::read(&run_marker).ok()) {
        (Some((_, s)), _) => {
            ensure!(
                s.digest == digest,
                "{} changed since the job started; it cannot be resumed",
                job.train_data.display()
            );
            s.run.clone()
        }
        (None, Some(raw)) => {
            // crashed before its first checkpoint: the same run, from the start
            let v: Value = serde_json::from_slice(&raw)?;
            v["run"].as_str().unwrap_or_default().to_string()
        }
        (None, None) => {
            let run_id = format!(
                "{}-{}-{:08x}",
                job.name(),
                now_secs(),
                rand::random::<u32>()
            );
            let planned_epsilon = monitor.epsilon_after(monitor.max_steps)?;
            ledger.begin(
                &digest,
                &job.train_data
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                p.dataset_budget,
                RunRecord {
                    run: run_id.clone(),
                    job: job.name(),
                    started: now_secs(),
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
            std::fs::create_dir_all(work)?;
            std::fs::write(
                &run_marker,
                json!({"run": run_id, "dataset": digest}).to_string(),
            )?;
            run_id
        }
    };
    // steps the ledger already counts for this run (a crash may have lost some of them)
    let counted = ledger
        .snapshot()?
        .datasets
        .get(&digest)
        .and_then(|a| a.runs.iter().find(|r| r.run == run_id))
        .map_or(0, |r| r.steps);
    let result = train(
        job, work, &ledger, &digest, &run_id, &prep, &codec, q, sigma, delta, &monitor, counted,
        resume, hooks, started,
    );
    let status = match &result {
        Ok(Outcome::Succeeded(_)) => RunStatus::Finished,
        _ => RunStatus::Stopped,
    };
    ledger.finish(&digest, &run_id, status)?;
    result
}

/// Adapter names and optimiser slots of a checkpoint's tensor file.
fn optim_names(i: usize) -> (String, String) {
    (format!("optimizer.m.{i}"), format!("optimizer.v.{i}"))
}

#[allow(clippy::too_many_arguments)] // one call site: the planned run of `run`
fn train(
    job: &LoraJob,
    work: &Path,
    ledger: &Ledger,
    digest: &str,
    run_id: &str,
    prep: &Prepared,
    codec: &TextCodec,
    q: f64,
    sigma: f64,
    delta: f64,
    monitor: &BudgetMonitor,
    counted: u64,
    resume: Option<(PathBuf, State)>,
    hooks: &dyn Hooks,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let t = &job.training;
    let device = Device::Cpu;
    let kind = match t.base_dtype {
        BaseDtype::F32 => Kind::Float,
        BaseDtype::Bf16 => Kind::BFloat16,
    };
    if let Some(seed) = job.seed {
        tch::manual_seed(seed as i64);
    }
    let mut decoder = Decoder::load(&job.base_model, kind, device)
        .with_context(|| format!("loading {}", job.base_model.display()))?;
    let mut model = Model::new(Kind::Float, device);
    decoder.add_lora(&job.lora, &mut model)?;
    let mut params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    let mut opt = Optimizer::new(t.optimizer, t.learning_rate, t.momentum, t.weight_decay);
    let mut state = State {
        run: run_id.to_string(),
        digest: digest.to_string(),
        applied: 0,
        drawn: 0,
        optimizer_step: 0,
        history: Vec::new(),
        examples_seen: 0,
        clipped: 0,
        tokens: 0,
        seconds: 0.0,
    };
    if let Some((dir, s)) = resume {
        let saved = crate::tensors::read(&dir.join("weights.safetensors"))?;
        let _guard = tch::no_grad_guard();
        for (name, mut p) in decoder.adapter_tensors() {
            let src = saved
                .get(&name)
                .with_context(|| format!("checkpoint {}: no tensor {name}", dir.display()))?;
            p.f_copy_(src)?;
        }
        let mut m = Vec::new();
        let mut v = Vec::new();
        for i in 0..params.len() {
            let (mn, vn) = optim_names(i);
            if let (Some(a), Some(b)) = (saved.get(&mn), saved.get(&vn)) {
                m.push(a.shallow_clone());
                v.push(b.shallow_clone());
            }
        }
        opt.restore(s.optimizer_step, m, v)?;
        hooks.event(
            "log",
            json!({"message": "resumed from a checkpoint", "applied": s.applied, "drawn": s.drawn, "ledger_steps": counted}),
        );
        state = s;
    }
    // every noisy step drawn counts, including those a crash lost after the checkpoint
    state.drawn = state.drawn.max(counted);
    let initial: Vec<Tensor> = params.iter().map(Tensor::copy).collect();
    let noise = match job.seed {
        Some(s) => NoiseSource::for_tests(s.wrapping_add(state.drawn.wrapping_mul(0x9e37_79b9))),
        None => NoiseSource::from_os()?,
    };
    let mut rng = match job.seed {
        Some(s) => {
            NoiseSource::for_tests(s.wrapping_add(1 + state.drawn.wrapping_mul(0x85eb_ca6b)))
        }
        None => NoiseSource::from_os()?,
    };
    let deterministic = noise.is_deterministic();
    let n = prep.units.len();
    let config = DpConfig {
        max_grad_norm: job.privacy.max_grad_norm,
        noise_multiplier: sigma,
        expected_batch_size: q * n as f64,
        clip_mode: t.clip_mode,
        materialize_budget: 256 << 20,
    };
    let mut engine = PrivateEngine::new(&model, config, noise)?;
    let sampler = PoissonSampler::new(n, q);
    let pad = codec.eos_id.unwrap_or(0);
    let total = monitor.max_steps;
    let train_start = Instant::now();
    let seconds_before = state.seconds;
    let mut cancelled = false;
    while monitor.allows(state.drawn + 1) {
        if hooks.cancelled() {
            cancelled = true;
            break;
        }
        let step_start = Instant::now();
        let chosen = sampler.sample(&mut rng);
        // one row per unit: a user's examples (a random subset past the cap) laid end to end
        let rows: Vec<Vec<usize>> = chosen
            .iter()
            .map(|&u| {
                let mut ex = prep.units[u as usize].clone();
                let cap = job.data.max_examples_per_user;
                while ex.len() > cap {
                    let i = rng.rng().random_range(0..ex.len());
                    ex.swap_remove(i);
                }
                ex
            })
            .collect();
        let (mut loss_sum, mut examples, mut tokens) = (0.0, 0u64, 0i64);
        for chunk in rows.chunks(t.physical_batch_size.max(1)) {
            let segs: Vec<Vec<Segment<'_>>> = chunk
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|&i| Segment {
                            ids: &prep.examples[i].ids,
                            trained: &prep.examples[i].trained,
                        })
                        .collect()
                })
                .collect();
            let batch = Batch::new(&segs, pad, device)?;
            tokens += batch.tokens;
            let s = engine.accumulate(batch.rows, |tape| {
                decoder
                    .row_losses(&batch, tape, true)
                    .map_err(|e| crate::engine::EngineError::Config(e.to_string()))
            })?;
            loss_sum += s.loss_sum;
            state.clipped += s.clipped as u64;
            examples += chunk.iter().map(|r| r.len() as u64).sum::<u64>();
        }
        let grads = engine.finish_step()?;
        state.drawn += 1;
        let eps = monitor.epsilon_after(state.drawn)?;
        // the spend is durable before the noisy update can influence anything
        ledger.record(digest, run_id, state.drawn, eps)?;
        opt.step(&mut params, &grads)?;
        state.applied += 1;
        state.examples_seen += examples;
        state.tokens += tokens as u64;
        let loss = (examples > 0).then(|| loss_sum / examples as f64);
        state.history.push(Point {
            step: state.drawn,
            epsilon: eps,
            loss,
        });
        state.seconds = seconds_before + train_start.elapsed().as_secs_f64();
        let per_step = state.seconds / state.applied.max(1) as f64;
        hooks.event(
            "progress",
            json!({
                "step": state.drawn,
                "steps": total,
                "loss": loss,
                "epsilon": eps,
                "tokens_per_second": tokens as f64 / step_start.elapsed().as_secs_f64().max(1e-9),
                "steps_per_second": 1.0 / step_start.elapsed().as_secs_f64().max(1e-9),
                "eta_seconds": per_step * total.saturating_sub(state.drawn) as f64,
            }),
        );
        if state.drawn.is_multiple_of(t.checkpoint_every) {
            let dir = checkpoint(work, &decoder, &opt, &params, &state)?;
            hooks.event("checkpoint", json!({"step": state.drawn, "path": dir}));
        }
    }
    if cancelled {
        let dir = checkpoint(work, &decoder, &opt, &params, &state)?;
        hooks.event("checkpoint", json!({"step": state.drawn, "path": dir}));
        return Ok(Outcome::Cancelled(state.drawn));
    }

    // the adapters must have moved, and be finite (a LoRA that silently did not train is the
    // failure users of other DP stacks met: meta-pytorch/opacus#820)
    let mut moved = 0usize;
    for (p, i) in params.iter().zip(&initial) {
        ensure!(
            p.f_isfinite()?.f_all()?.f_int64_value(&[])? == 1,
            "the adapter has non-finite weights after training; nothing was written"
        );
        if p.f_sub(i)?.f_abs()?.f_max()?.f_double_value(&[])? > 0.0 {
            moved += 1;
        }
    }
    ensure!(
        moved > 0 || state.applied == 0,
        "the adapter weights did not change in {} updates; nothing was written",
        state.applied
    );
    let out = work.join("outputs");
    let adapter = out.join("adapter");
    let base_name = job.base_model.display().to_string();
    decoder.save_adapter(&adapter, &base_name)?;
    let eps = monitor.epsilon_after(state.drawn)?;
    let plot = out.join("training.svg");
    crate::plot::training(&plot, &job.name(), &state.history)?;
    let report = json!({
        "job": job.name(),
        "kind": "lora",
        "run": run_id,
        "base_model": job.base_model,
        "dataset": {"path": job.train_data, "sha256": digest},
        "data": prep.data,
        "data_guard": prep.guard,
        "privacy": {
            "epsilon": eps,
            "delta": delta,
            "target_epsilon": job.privacy.target_epsilon,
            "accountant": job.privacy.accountant.name(),
            "noise_multiplier": sigma,
            "max_grad_norm": job.privacy.max_grad_norm,
            "sample_rate": q,
            "unit": job.privacy.unit,
            "steps_accounted": state.drawn,
            "steps_applied": state.applied,
            "planned_steps": job.max_steps,
            "sampling": "poisson",
            "noise": if deterministic { "FIXED SEED (test mode): NOT private" } else { "ChaCha20 seeded from the OS" },
        },
        "lora": {
            "rank": job.lora.rank,
            "alpha": job.lora.alpha(),
            "targets": job.lora.targets,
            "rslora": job.lora.rslora,
            "dropout": job.lora.dropout,
            "vllm_max_lora_rank": job.lora.vllm_max_lora_rank(),
            "parameters": params.iter().map(Tensor::numel).sum::<usize>(),
            "tensors_moved": moved,
        },
        "training": {
            "optimizer": t.optimizer,
            "learning_rate": t.learning_rate,
            "expected_batch_size": q * n as f64,
            "examples_seen": state.examples_seen,
            "clipped_fraction": if state.examples_seen > 0 { state.clipped as f64 / state.examples_seen as f64 } else { 0.0 },
            "clipping": engine.plan(),
            "tokens": state.tokens,
            "training_seconds": state.seconds,
            "tokens_per_second": state.tokens as f64 / state.seconds.max(1e-9),
            "wall_seconds": started.elapsed().as_secs_f64(),
            "final_loss": state.history.iter().rev().find_map(|p| p.loss),
            "first_loss": state.history.iter().find_map(|p| p.loss),
        },
        "outputs": {"adapter": adapter, "report": out.join("report.json"), "plot": plot},
        "history": state.history,
    });
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    Ok(Outcome::Succeeded(report))
}

/// Write a checkpoint (adapters, optimiser state, state.json) and point `latest` at it; keep
/// the two newest.
fn checkpoint(
    work: &Path,
    decoder: &Decoder,
    opt: &Optimizer,
    params: &[Tensor],
    state: &State,
) -> anyhow::Result<PathBuf> {
    let root = checkpoints(work);
    let name = format!("step-{:06}", state.drawn);
    let tmp = root.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut tensors = decoder.adapter_tensors();
    let (step, m, v) = opt.state();
    ensure!(
        m.is_empty() || m.len() == params.len(),
        "optimiser state does not match the adapters"
    );
    for (i, (a, b)) in m.iter().zip(v).enumerate() {
        let (mn, vn) = optim_names(i);
        tensors.push((mn, a.shallow_clone()));
        tensors.push((vn, b.shallow_clone()));
    }
    crate::tensors::write_f32(&tmp.join("weights.safetensors"), &tensors, &[])?;
    let mut st = state.clone();
    st.optimizer_step = step;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec(&st)?)?;
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    let latest_tmp = root.join(".latest.tmp");
    std::fs::write(&latest_tmp, &name)?;
    std::fs::rename(&latest_tmp, root.join("latest"))?;
    // keep the newest two
    let mut all: Vec<String> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    all.sort();
    for old in all.iter().rev().skip(2) {
        let _ = std::fs::remove_dir_all(root.join(old));
    }
    Ok(dir)
}

/// Run a LoRA job file from the CLI: progress on stderr, the report on stdout.
pub fn run_file(
    job: &LoraJob,
    work: &Path,
    ledger: &Path,
    progress: bool,
) -> anyhow::Result<Value> {
    struct Bar(indicatif::ProgressBar);
    impl Hooks for Bar {
        fn event(&self, kind: &str, data: Value) {
            if kind == "progress" {
                if let Some(total) = data["steps"].as_u64() {
                    self.0.set_length(total);
                }
                if let Some(s) = data["step"].as_u64() {
                    self.0.set_position(s);
                }
                self.0.set_message(format!(
                    "ε={:.3} loss {:.4}",
                    data["epsilon"].as_f64().unwrap_or(0.0),
                    data["loss"].as_f64().unwrap_or(f64::NAN)
                ));
            }
        }
        fn cancelled(&self) -> bool {
            false
        }
    }
    let bar = if progress {
        indicatif::ProgressBar::new(job.max_steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    match run(job, work, ledger, &Bar(bar.clone()))? {
        Outcome::Succeeded(r) => {
            bar.finish_and_clear();
            Ok(r)
        }
        Outcome::Cancelled(s) => bail!("cancelled after {s} steps"),
    }
}
