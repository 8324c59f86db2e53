//! Jobs: a queue of training jobs run one at a time (by default) on a worker thread, each in a
//! folder of its own that survives the process.
//!
//! `<dir>/jobs/<id>/` holds `spec.json` (the checked spec, paths resolved), `status.json`
//! (state, progress, ε, outputs; rewritten atomically on every change), `events.jsonl` (every
//! event, the SSE stream's history), `log` (the same events as text), `checkpoints/` and
//! `outputs/` (adapter or head, `report.json`, `training.svg`). The ledger is `<dir>/ledger.json`
//! unless a spec names another.
//!
//! After a restart (a deploy, or `kill -9`), jobs that were `running` go back to the front of
//! the queue and resume from their last checkpoint ([`crate::finetune`]); queued jobs stay
//! queued.

pub mod spec;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::finetune::{self, Hooks, Outcome};
use crate::ledger::Ledger;
use spec::JobSpec;

/// A job's state. `queued → running → succeeded | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the worker.
    Queued,
    /// Training.
    Running,
    /// Done; outputs written.
    Succeeded,
    /// Stopped by an error (`error` says which).
    Failed,
    /// Stopped by `DELETE /v1/jobs/{id}`.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Every state, for metrics.
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The name used in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// What a job produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    /// The PEFT adapter folder (LoRA jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<PathBuf>,
    /// The classifier head (classifier jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<PathBuf>,
    /// The model bundle a classifier job assembled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// `report.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// The signature of the adapter or bundle (`model.sig`, OpenSSF model_signing v1.0), when
    /// the sidecar has a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<PathBuf>,
    /// Where the signed adapter was published (`serve --adapters-dir`), as
    /// `<dir>/<job name>/<version>`. A bundle is published where its spec says (`bundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PathBuf>,
    /// The loss and ε plot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plot: Option<PathBuf>,
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    /// Job id.
    pub id: String,
    /// `lora` or `classifier_head`.
    pub kind: String,
    /// The spec's name.
    pub name: String,
    /// Where it is.
    pub state: JobState,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds, when it started (last).
    pub started: Option<u64>,
    /// Unix seconds, when it ended.
    pub finished: Option<u64>,
    /// Noisy steps taken (the ledger's count).
    pub step: u64,
    /// Steps planned.
    pub steps: Option<u64>,
    /// The last step's mean example loss.
    pub loss: Option<f64>,
    /// ε spent so far.
    pub epsilon_spent: f64,
    /// ε the job may spend.
    pub target_epsilon: Option<f64>,
    /// Seconds to the end at the current pace.
    pub eta_seconds: Option<f64>,
    /// Training throughput of the last step.
    pub steps_per_second: Option<f64>,
    /// Tokens per second of the last step (LoRA jobs).
    pub tokens_per_second: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// A cancel was asked for and the job is stopping.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Times it was resumed after a restart.
    #[serde(default)]
    pub resumed: u32,
    /// What it produced.
    pub outputs: Outputs,
}

/// One event of a job's stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// 1, 2, … within the job (the SSE `id`).
    pub seq: u64,
    /// `queued`, `started`, `progress`, `checkpoint`, `log`, `resumed`, or the terminal state.
    pub event: String,
    /// Unix seconds.
    pub time: u64,
    /// The event's data.
    pub data: Value,
}

struct Entry {
    status: JobStatus,
    spec: JobSpec,
    events: Vec<Event>,
    tx: tokio::sync::broadcast::Sender<Event>,
    cancel: Arc<AtomicBool>,
}

struct Inner {
    jobs: BTreeMap<String, Entry>,
    queue: VecDeque<String>,
    stop: bool,
}

/// Why a job could not be submitted or changed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job.
    #[error("no job `{0}`")]
    NotFound(String),
    /// The job has already ended.
    #[error("job `{0}` has already ended ({1})")]
    Ended(String, &'static str),
    /// The job folder could not be written.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The dataset's lifetime budget cannot cover the job.
    #[error("{0}")]
    OverBudget(String),
}

/// The job queue and its worker.
pub struct Jobs {
    root: PathBuf,
    ledger: PathBuf,
    inner: Mutex<Inner>,
    wake: Condvar,
    /// Signs what jobs produce, when set (`serve --signing-key`).
    signer: std::sync::OnceLock<Signer>,
    /// Where finished models go and whom to tell (`serve --adapters-dir`, `--gateway-admin`).
    publish: std::sync::OnceLock<Publish>,
}

/// The key jobs sign with, and its certificate chain in certificate mode.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The private key.
    pub key: signing::SigningKey,
    /// Certificate mode: the key's certificate and the intermediates to include (PEM files).
    pub certificate: Option<(PathBuf, Vec<PathBuf>)>,
}

/// How a sidecar publishes what its jobs make.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// Registry folder for LoRA adapters (`<dir>/<job name>/<version>/`).
    pub adapters_dir: Option<PathBuf>,
    /// A gateway's admin listener (`http://127.0.0.1:9090`) to notify after each publication
    /// (`POST /admin/models/refresh`), and its admin token. The gateway's watcher would notice
    /// too; the call makes the swap immediate and reports its outcome in the job's events.
    pub gateway: Option<(String, String)>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("root", &self.root).finish()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Copy a folder tree (an adapter: a few files).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// `POST <admin>/admin/models/refresh` with the admin token: what the gateway swapped.
fn notify_gateway(admin: &str, token: &str) -> Result<Value, String> {
    let url = format!("{}/admin/models/refresh", admin.trim_end_matches('/'));
    let resp = reqwest::blocking::Client::new()
        .post(&url)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{url}: {status} {body}"))
    }
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl Jobs {
    /// Open (or create) the job folders under `dir` and queue what a previous process left
    /// unfinished. Call [`Jobs::spawn_workers`] to start running them.
    pub fn open(dir: &Path) -> Result<Arc<Jobs>, JobError> {
        let root = dir.join("jobs");
        std::fs::create_dir_all(&root).map_err(|e| JobError::Io(root.clone(), e))?;
        let mut jobs = BTreeMap::new();
        let mut queue = VecDeque::new();
        let mut resumed = Vec::new();
        let entries = std::fs::read_dir(&root).map_err(|e| JobError::Io(root.clone(), e))?;
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("status.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        for id in ids {
            let folder = root.join(&id);
            let read = |f: &str| std::fs::read(folder.join(f)).ok();
            let (Some(st), Some(sp)) = (read("status.json"), read("spec.json")) else {
                continue;
            };
            let (Ok(mut status), Ok(spec)) = (
                serde_json::from_slice::<JobStatus>(&st),
                serde_json::from_slice::<JobSpec>(&sp),
            ) else {
                continue;
            };
            let events: Vec<Event> = read("events.jsonl")
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                })
                .unwrap_or_default();
            match status.state {
                JobState::Running => {
                    // interrupted: resume first, in the order they started
                    status.state = JobState::Queued;
                    status.resumed += 1;
                    resumed.push(id.clone());
                }
                JobState::Queued => queue.push_back(id.clone()),
                _ => {}
            }
            let (tx, _) = tokio::sync::broadcast::channel(256);
            jobs.insert(
                id,
                Entry {
                    status,
                    spec,
                    events,
                    tx,
                    cancel: Arc::new(AtomicBool::new(false)),
                },
            );
        }
        for id in resumed.into_iter().rev() {
            queue.push_front(id);
        }
        let this = Arc::new(Jobs {
            ledger: dir.join("ledger.json"),
            root,
            inner: Mutex::new(Inner {
                jobs,
                queue,
                stop: false,
            }),
            wake: Condvar::new(),
            signer: std::sync::OnceLock::new(),
            publish: std::sync::OnceLock::new(),
        });
        let interrupted: Vec<String> = this
            .lock()
            .jobs
            .iter()
            .filter(|(_, e)| e.status.resumed > 0 && e.status.state == JobState::Queued)
            .map(|(id, _)| id.clone())
            .collect();
        for id in interrupted {
            this.emit(
                &id,
                "resumed",
                json!({"message": "the sidecar restarted; the job resumes from its last checkpoint"}),
            );
        }
        Ok(this)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ledger jobs account in unless their spec names another.
    pub fn ledger_path(&self) -> &Path {
        &self.ledger
    }

    fn folder(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Start `n` worker threads.
    pub fn spawn_workers(self: &Arc<Self>, n: usize) -> std::io::Result<()> {
        for i in 0..n.max(1) {
            let me = Arc::clone(self);
            std::thread::Builder::new()
                .name(format!("job-worker-{i}"))
                .spawn(move || me.work())?;
        }
        Ok(())
    }

    /// Stop the workers after their current job (tests).
    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// Refuse a job the dataset's budget cannot cover (409), before it is queued. The run
    /// itself reserves its ε when it starts, so two queued jobs may still race for the last
    /// of a budget; the second then fails with the same message.
    pub fn check_budget(&self, spec: &JobSpec) -> Result<(), JobError> {
        let Some(target) = spec.target_epsilon() else {
            return Ok(());
        };
        let ledger_path = match spec {
            JobSpec::Lora(j) => j.ledger.clone().unwrap_or_else(|| self.ledger.clone()),
            JobSpec::ClassifierHead(j) => j.ledger.clone().unwrap_or_else(|| self.ledger.clone()),
        };
        let ledger = Ledger::open(&ledger_path)?;
        let digest = filters::classify::bundle::sha256_file(spec.train_data()).map_err(|e| {
            JobError::Io(
                spec.train_data().to_path_buf(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let snap = ledger.snapshot()?;
        let account = snap.datasets.get(&digest);
        let budget = spec.dataset_budget().or(account.and_then(|a| a.budget));
        if let Some(b) = budget {
            let (spent, spent_delta) = account.map(|a| a.spent()).unwrap_or((0.0, 0.0));
            if spent + target > b.epsilon * (1.0 + 1e-12) {
                let name = account
                    .map(|a| a.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| {
                        spec.train_data()
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    });
                return Err(JobError::OverBudget(format!(
                    "refused: dataset {} ({name}) has spent ε={spent:.4} (δ={spent_delta:.2e}) of \
                     its lifetime budget ε={:.4}; {:.4} is left and this job targets ε={target}",
                    digest.chars().take(12).collect::<String>(),
                    b.epsilon,
                    (b.epsilon - spent).max(0.0),
                )));
            }
        }
        Ok(())
    }

    /// Queue a checked spec; its id.
    pub fn submit(&self, spec: JobSpec) -> Result<JobStatus, JobError> {
        let id = format!("{}-{:06x}", now(), rand::random::<u32>() & 0xff_ffff);
        let folder = self.folder(&id);
        std::fs::create_dir_all(&folder).map_err(|e| JobError::Io(folder.clone(), e))?;
        let spec_json = serde_json::to_vec_pretty(&spec).unwrap_or_default();
        write_atomic(&folder.join("spec.json"), &spec_json)
            .map_err(|e| JobError::Io(folder.clone(), e))?;
        let steps = match &spec {
            JobSpec::Lora(j) => Some(j.max_steps),
            JobSpec::ClassifierHead(_) => None,
        };
        let status = JobStatus {
            id: id.clone(),
            kind: spec.kind().into(),
            name: spec.name(),
            state: JobState::Queued,
            created: now(),
            started: None,
            finished: None,
            step: 0,
            steps,
            loss: None,
            epsilon_spent: 0.0,
            target_epsilon: spec.target_epsilon(),
            eta_seconds: None,
            steps_per_second: None,
            tokens_per_second: None,
            error: None,
            cancel_requested: false,
            resumed: 0,
            outputs: Outputs::default(),
        };
        let (tx, _) = tokio::sync::broadcast::channel(256);
        {
            let mut inner = self.lock();
            inner.jobs.insert(
                id.clone(),
                Entry {
                    status: status.clone(),
                    spec,
                    events: Vec::new(),
                    tx,
                    cancel: Arc::new(AtomicBool::new(false)),
                },
            );
            inner.queue.push_back(id.clone());
        }
        self.persist(&id);
        self.emit(&id, "queued", json!({"id": id}));
        self.wake.notify_one();
        Ok(status)
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobStatus> {
        self.lock()
            .jobs
            .values()
            .map(|e| e.status.clone())
            .collect()
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<JobStatus> {
        self.lock().jobs.get(id).map(|e| e.status.clone())
    }

    /// The folder a job's artifacts are in.
    pub fn outputs_dir(&self, id: &str) -> Option<PathBuf> {
        self.lock()
            .jobs
            .contains_key(id)
            .then(|| self.folder(id).join("outputs"))
    }

    /// The events so far (from `after`, exclusive) and a receiver for the ones to come.
    pub fn subscribe(
        &self,
        id: &str,
        after: u64,
    ) -> Option<(Vec<Event>, tokio::sync::broadcast::Receiver<Event>, bool)> {
        let inner = self.lock();
        let e = inner.jobs.get(id)?;
        let past = e
            .events
            .iter()
            .filter(|ev| ev.seq > after)
            .cloned()
            .collect();
        Some((past, e.tx.subscribe(), e.status.state.is_terminal()))
    }

    /// Cancel: a queued job ends now; a running one stops at its next step (after a
    /// checkpoint).
    pub fn cancel(&self, id: &str) -> Result<JobStatus, JobError> {
        let queued = {
            let mut inner = self.lock();
            let e = inner
                .jobs
                .get_mut(id)
                .ok_or_else(|| JobError::NotFound(id.to_string()))?;
            if e.status.state.is_terminal() {
                return Err(JobError::Ended(id.to_string(), e.status.state.name()));
            }
            e.cancel.store(true, Ordering::SeqCst);
            e.status.cancel_requested = true;
            let queued = e.status.state == JobState::Queued;
            if queued {
                e.status.state = JobState::Cancelled;
                e.status.finished = Some(now());
                inner.queue.retain(|q| q != id);
            }
            queued
        };
        self.persist(id);
        if queued {
            self.emit(id, "cancelled", json!({"step": 0}));
        } else {
            self.emit(
                id,
                "log",
                json!({"message": "cancel requested; stopping after this step"}),
            );
        }
        self.get(id)
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Append an event (and update the status it carries).
    fn emit(&self, id: &str, kind: &str, data: Value) {
        let line = {
            let mut inner = self.lock();
            let Some(e) = inner.jobs.get_mut(id) else {
                return;
            };
            if kind == "progress" {
                let s = &mut e.status;
                s.step = data["step"].as_u64().unwrap_or(s.step);
                s.steps = data["steps"].as_u64().or(s.steps);
                s.loss = data["loss"].as_f64().or(s.loss);
                s.epsilon_spent = data["epsilon"].as_f64().unwrap_or(s.epsilon_spent);
                s.eta_seconds = data["eta_seconds"].as_f64();
                s.steps_per_second = data["steps_per_second"].as_f64();
                s.tokens_per_second = data["tokens_per_second"].as_f64();
            }
            let ev = Event {
                seq: e.events.last().map_or(1, |l| l.seq + 1),
                event: kind.to_string(),
                time: now(),
                data,
            };
            e.events.push(ev.clone());
            let _ = e.tx.send(ev.clone());
            ev
        };
        let folder = self.folder(id);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(folder.join("events.jsonl"))
        {
            let _ = writeln!(f, "{}", serde_json::to_string(&line).unwrap_or_default());
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(folder.join("log"))
        {
            let _ = writeln!(f, "{} {} {}", line.time, line.event, line.data);
        }
        if kind == "progress" || kind == "checkpoint" {
            self.persist(id);
        }
    }

    fn persist(&self, id: &str) {
        let status = self.lock().jobs.get(id).map(|e| e.status.clone());
        if let Some(s) = status
            && let Ok(bytes) = serde_json::to_vec_pretty(&s)
        {
            let _ = write_atomic(&self.folder(id).join("status.json"), &bytes);
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut JobStatus)) {
        if let Some(e) = self.lock().jobs.get_mut(id) {
            f(&mut e.status);
        }
        self.persist(id);
    }

    fn next(&self) -> Option<(String, JobSpec, Arc<AtomicBool>)> {
        let mut inner = self.lock();
        loop {
            if inner.stop {
                return None;
            }
            if let Some(id) = inner.queue.pop_front() {
                let Some(e) = inner.jobs.get_mut(&id) else {
                    continue;
                };
                if e.status.state != JobState::Queued {
                    continue;
                }
                e.status.state = JobState::Running;
                e.status.started = Some(now());
                return Some((id, e.spec.clone(), e.cancel.clone()));
            }
            inner = self.wake.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Sign every job's outputs from now on with `key` (OpenSSF model_signing v1.0, key mode,
    /// the job's privacy provenance in the signed predicate). Set once: `false` when a key
    /// was set already (that one stays).
    pub fn set_signing_key(&self, key: signing::SigningKey) -> bool {
        self.set_signer(Signer {
            key,
            certificate: None,
        })
    }

    /// Sign with `signer` (key or certificate mode). Set once: `false` when set already.
    pub fn set_signer(&self, signer: Signer) -> bool {
        self.signer.set(signer).is_ok()
    }

    /// Publish finished models as `publish` says. Set once: `false` when set already.
    pub fn set_publish(&self, publish: Publish) -> bool {
        self.publish.set(publish).is_ok()
    }

    /// Publish what a finished, signed job made: a staged bundle is renamed into its registry
    /// folder (`<root>/<name>/.<v>.tmp` → `<v>`); an adapter is copied into
    /// `<adapters_dir>/<job name>/<next version>` through a hidden folder and a rename. Then
    /// the gateway is told. A gateway never sees a version before its signature.
    fn publish_outputs(
        &self,
        id: &str,
        spec: &JobSpec,
        outputs: &mut Outputs,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let publish = self.publish.get().cloned().unwrap_or_default();
        let mut done = None;
        if let Some(staged) = outputs.bundle.clone()
            && let Some(v) = staged
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_suffix(".tmp"))
        {
            let dest = staged.with_file_name(v);
            std::fs::rename(&staged, &dest)
                .with_context(|| format!("publishing {}", dest.display()))?;
            if outputs.signature.is_some() {
                outputs.signature = Some(dest.join(signing::DEFAULT_SIGNATURE));
            }
            outputs.bundle = Some(dest.clone());
            done = Some(dest);
        }
        if let (Some(root), Some(adapter)) = (&publish.adapters_dir, outputs.adapter.clone()) {
            let name = spec.name();
            anyhow::ensure!(
                name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "the job name `{name}` cannot name a published adapter (a letter or digit, then \
                 letters, digits, `-`, `_`, `.`)"
            );
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let next = filters::classify::bundle::next_version(root, &name, "adapter_config.json");
            let tmp = dir.join(format!(".{next}.tmp"));
            let _ = std::fs::remove_dir_all(&tmp);
            copy_tree(&adapter, &tmp)?;
            let dest = dir.join(&next);
            std::fs::rename(&tmp, &dest)
                .with_context(|| format!("publishing {}", dest.display()))?;
            outputs.published = Some(dest.clone());
            done = Some(dest);
        }
        let Some(dest) = done else {
            return Ok(());
        };
        let notified = match &publish.gateway {
            Some((url, token)) => notify_gateway(url, token),
            None => Ok(Value::Null),
        };
        self.emit(
            id,
            "published",
            match notified {
                Ok(v) => json!({"path": dest, "gateway": v}),
                Err(e) => json!({"path": dest, "gateway_error": e}),
            },
        );
        Ok(())
    }

    /// Sign the adapter or bundle a finished job made, with what the report says of its
    /// privacy, data and origin as provenance.
    fn sign_outputs(&self, id: &str, report: &Value, outputs: &mut Outputs) -> anyhow::Result<()> {
        let Some(signer) = self.signer.get() else {
            return Ok(());
        };
        let Some(dir) = outputs.adapter.clone().or_else(|| outputs.bundle.clone()) else {
            return Ok(());
        };
        let provenance = json!({
            "job": id,
            "kind": report["kind"],
            "base_model": report["base_model"],
            "dataset": report["dataset"],
            "data_guard": report["data_guard"],
            "privacy": report["privacy"],
            "code_version": env!("CARGO_PKG_VERSION"),
            "signed_at": now(),
        });
        match &signer.certificate {
            Some((cert, chain)) => signing::sign_with_certificate(
                &dir,
                &signer.key,
                cert,
                chain,
                None,
                Some(provenance),
            ),
            None => signing::sign(&dir, &signer.key, None, Some(provenance)),
        }
        .map_err(|e| anyhow::anyhow!("signing {}: {e}", dir.display()))?;
        outputs.signature = Some(dir.join(signing::DEFAULT_SIGNATURE));
        Ok(())
    }

    fn work(self: Arc<Self>) {
        while let Some((id, spec, cancel)) = self.next() {
            self.persist(&id);
            self.emit(
                &id,
                "started",
                json!({"kind": spec.kind(), "name": spec.name()}),
            );
            let hooks = JobHooks {
                jobs: &self,
                id: &id,
                cancel: &cancel,
            };
            let folder = self.folder(&id);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run(&spec, &folder, &hooks)
            }));
            let result = match result {
                Ok(r) => r,
                Err(p) => Err(anyhow::anyhow!(
                    "the job panicked: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
            };
            // a sidecar with a key publishes nothing unsigned: a failed signature fails the job
            let result = match result {
                Ok((Outcome::Succeeded(report), mut outputs)) => self
                    .sign_outputs(&id, &report, &mut outputs)
                    .and_then(|()| self.publish_outputs(&id, &spec, &mut outputs))
                    .map(|()| (Outcome::Succeeded(report), outputs)),
                other => other,
            };
            match result {
                Ok((Outcome::Succeeded(report), outputs)) => {
                    let eps = report["privacy"]["epsilon"].as_f64();
                    self.update(&id, |s| {
                        s.state = JobState::Succeeded;
                        s.finished = Some(now());
                        s.outputs = outputs;
                        s.eta_seconds = Some(0.0);
                        if let Some(e) = eps {
                            s.epsilon_spent = e;
                        }
                    });
                    self.emit(
                        &id,
                        "succeeded",
                        json!({"epsilon": eps, "outputs": self.get(&id).map(|s| s.outputs)}),
                    );
                }
                Ok((Outcome::Cancelled(step), _)) => {
                    self.update(&id, |s| {
                        s.state = JobState::Cancelled;
                        s.finished = Some(now());
                    });
                    self.emit(&id, "cancelled", json!({"step": step}));
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    self.update(&id, |s| {
                        s.state = JobState::Failed;
                        s.finished = Some(now());
                        s.error = Some(msg.clone());
                    });
                    self.emit(&id, "failed", json!({"error": msg}));
                }
            }
            crate::runtime::release_free_memory();
        }
    }

    fn run(
        &self,
        spec: &JobSpec,
        folder: &Path,
        hooks: &JobHooks<'_>,
    ) -> anyhow::Result<(Outcome, Outputs)> {
        match spec {
            JobSpec::Lora(job) => {
                let ledger = job.ledger.clone().unwrap_or_else(|| self.ledger.clone());
                let outcome = finetune::run(job, folder, &ledger, hooks)?;
                let out = folder.join("outputs");
                let outputs = match &outcome {
                    Outcome::Succeeded(_) => Outputs {
                        adapter: Some(out.join("adapter")),
                        report: Some(out.join("report.json")),
                        plot: Some(out.join("training.svg")),
                        ..Outputs::default()
                    },
                    Outcome::Cancelled(_) => Outputs::default(),
                };
                Ok((outcome, outputs))
            }
            JobSpec::ClassifierHead(job) => {
                let mut job = job.clone();
                // signed first, published after (`publish_outputs`)
                job.stage_only = true;
                let out = folder.join("outputs");
                if job.output.dir.is_relative() {
                    job.output.dir = out.join(&job.output.dir);
                }
                if job.ledger.is_none() {
                    job.ledger = Some(self.ledger.clone());
                }
                let report = crate::train::run_job_with(&job, hooks)?;
                let value = serde_json::to_value(&report)?;
                let outputs = Outputs {
                    head: value["outputs"]["head"].as_str().map(PathBuf::from),
                    bundle: value["outputs"]["bundle"].as_str().map(PathBuf::from),
                    report: value["outputs"]["report"].as_str().map(PathBuf::from),
                    plot: value["outputs"]["plot"].as_str().map(PathBuf::from),
                    adapter: None,
                    signature: None,
                    published: None,
                };
                if hooks.cancelled() {
                    return Ok((Outcome::Cancelled(report.history.len() as u64), outputs));
                }
                Ok((Outcome::Succeeded(value), outputs))
            }
        }
    }
}

/// The hooks a running job reports through.
struct JobHooks<'a> {
    jobs: &'a Jobs,
    id: &'a str,
    cancel: &'a AtomicBool,
}

impl Hooks for JobHooks<'_> {
    fn event(&self, kind: &str, data: Value) {
        self.jobs.emit(self.id, kind, data);
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}
