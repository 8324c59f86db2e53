//! The encoder: tokenizer, token windows, and a pool of ONNX Runtime sessions fed by one
//! fair queue (tenants take turns, see [`super::fair`]) with micro-batching.
//!
//! Each worker thread owns one session (`Session::run` needs `&mut`) with one intra-op
//! thread, so the pool is sized to the cores and sessions never fight over them. A worker
//! takes a batch from one tenant's lane, the next in turn with fewer than
//! `sessions_per_tenant` batches running, and tops it up from that lane until it is full or
//! `batch_wait` has passed; when another worker is idle nothing is gained by waiting, so it
//! runs what it has, and a worker whose last wait found nothing takes only what is already
//! queued (one caller at a time on a one-session pool does not pay `batch_wait` per pass)
//! until windows queue up again. A quiet tenant's window thus runs in its own batch, not behind a noisy
//! tenant's fifteen. Windows whose caller has gone (time budget spent) are dropped before they
//! cost a run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::Tokenizer;
use tokio::sync::oneshot;

use super::ModelError;
use super::bundle::Bundle;
use super::entities::{Tag, TokenHead};
use super::fair::{FairQueue, Full, Pop};
use super::heads::Head;

/// How the encoder pool runs.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// Sessions (worker threads). Default: the number of cores.
    pub workers: usize,
    /// Intra-op threads per session. Default 1.
    pub intra_threads: usize,
    /// Most windows in one session run.
    pub max_batch: usize,
    /// Longest a collector waits for more windows after the first one.
    pub batch_wait: Duration,
    /// Most windows waiting in the queue; beyond it, classification fails fast.
    pub queue: usize,
    /// Most windows one tenant may have waiting (its share of `queue`); beyond it, that
    /// tenant's classification fails fast while others go on.
    pub queue_per_tenant: usize,
    /// Most sessions one tenant's batches may occupy at once. Below `workers`, a tenant's
    /// flood always leaves a session free for the others (their windows start at once); at
    /// `workers`, one tenant alone may use every session.
    pub sessions_per_tenant: usize,
    /// Most windows one request may need (all its texts together); a longer request is
    /// refused, like a text over `max_windows`.
    pub max_request_windows: usize,
    /// Most windows per text; what happens to a longer one is `long_texts`.
    pub max_windows: usize,
    /// A text over `max_windows` windows: refused (the gateway: no window is ever skipped
    /// unscored) or cut to its first and last windows (the trainer's features).
    pub long_texts: LongTexts,
    /// Return each window's head features too (the trainer embeds data with this).
    pub keep_features: bool,
    /// Run the sessions' threads at idle priority (Linux `SCHED_IDLE`): they get only the CPU
    /// time no other thread of the machine wants, so what they run never slows anything down.
    pub idle_priority: bool,
    /// Sessions of a second pool at idle priority, for work nobody waits for (the gateway's
    /// monitor-only classification: [`crate::classify::Classifier::classify_background`]);
    /// 0: none, that work shares the sessions above.
    pub background_sessions: usize,
}

impl Default for EncoderOptions {
    fn default() -> EncoderOptions {
        EncoderOptions {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            intra_threads: 1,
            max_batch: 16,
            batch_wait: Duration::from_millis(1),
            queue: 4096,
            queue_per_tenant: 1024,
            sessions_per_tenant: usize::MAX,
            max_request_windows: 256,
            max_windows: 16,
            long_texts: LongTexts::Refuse,
            keep_features: false,
            idle_priority: false,
            background_sessions: 0,
        }
    }
}

/// What to do with a text longer than `max_windows` windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LongTexts {
    /// Fail with [`ModelError::TooLong`]: no window is skipped silently.
    #[default]
    Refuse,
    /// Keep the first and last halves of the windows.
    KeepEnds,
}

/// Move the calling thread to Linux's `SCHED_IDLE` class: it runs only when no normal thread
/// wants the CPU. Lowering one's own priority needs no privilege.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_to_idle_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid, initialised sched_param that
    // outlives the call, and SCHED_IDLE takes priority 0.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_to_idle_priority() -> std::io::Result<()> {
    Err(std::io::Error::other("SCHED_IDLE is Linux only"))
}

/// Called after every session run with (windows in the batch, run time).
pub type BatchObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

/// ONNX Runtime is loaded once per process (one environment per process is all `ort` allows).
static RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where the ONNX Runtime library is looked for when no path is given: `ORT_DYLIB_PATH` at run
/// time, else the path this crate was built with (`.deps/libonnxruntime.so` of the checkout).
pub fn default_runtime_path() -> Option<PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .or_else(|| option_env!("ORT_DYLIB_PATH").map(PathBuf::from))
}

/// Load ONNX Runtime from `path` (or [`default_runtime_path`]). Idempotent; the first call's
/// library stays for the life of the process.
pub fn init_runtime(path: Option<&Path>) -> Result<ort::environment::Environment, ModelError> {
    let r = RUNTIME.get_or_init(|| {
        let p = path.map(Path::to_path_buf).or_else(default_runtime_path).ok_or_else(|| {
            "no ONNX Runtime library: set ORT_DYLIB_PATH or `models.onnxruntime` in the config"
                .to_string()
        })?;
        if !p.is_file() {
            return Err(format!(
                "ONNX Runtime library {} does not exist (run scripts/setup.sh, or set ORT_DYLIB_PATH)",
                p.display()
            ));
        }
        let b = ort::init_from(&p).map_err(|e| format!("cannot load {}: {e}", p.display()))?;
        b.with_name("portcullis")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", p.display()))
    });
    r.clone().map_err(ModelError::Runtime)
}

/// What one window produced.
#[derive(Debug, Clone)]
pub struct WindowOut {
    /// L2-normalised sentence embedding.
    pub embedding: Vec<f32>,
    /// One logit per head, in the bundle's head order.
    pub logits: Vec<f32>,
    /// The head features (the trainer's input); empty unless the bundle's heads are being
    /// trained (kept out of the request path's allocations otherwise).
    pub features: Vec<f32>,
    /// The entity head's tag of each token between `[CLS]` and `[SEP]`; empty unless asked
    /// for ([`Encoder::submit_tagged`]).
    pub tags: Vec<Tag>,
}

/// A text cut into windows, with what its entity tags need.
#[derive(Debug, Clone)]
pub struct Windows {
    /// `[CLS] … [SEP]` token ids of each window.
    pub ids: Vec<Vec<i64>>,
    /// Index of each window's first token among the text's tokens.
    pub starts: Vec<usize>,
    /// Byte offsets of every token of the text.
    pub offsets: Vec<(usize, usize)>,
}

struct Job {
    ids: Vec<i64>,
    tag: bool,
    reply: oneshot::Sender<Result<WindowOut, ModelError>>,
}

/// Tokenizer + session pool.
pub struct Encoder {
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    max_tokens: usize,
    overlap: usize,
    max_windows: usize,
    long_texts: LongTexts,
    max_request_windows: usize,
    queue: Arc<FairQueue<Job>>,
    dim: usize,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("max_tokens", &self.max_tokens)
            .field("workers", &self.workers.len())
            .finish()
    }
}

/// What a session run needs to know about the graph and the heads.
struct Graph {
    heads: Arc<Vec<Head>>,
    embedding: String,
    features: String,
    dim: usize,
    feat: usize,
    keep_features: bool,
    /// The `tokens` output and the entity head reading it.
    tokens: Option<(String, Arc<TokenHead>)>,
}

struct Shared {
    queue: Arc<FairQueue<Job>>,
    idle: AtomicUsize,
    opts: EncoderOptions,
    graph: Graph,
    observer: Option<BatchObserver>,
}

impl Encoder {
    /// Start the pool for a verified bundle.
    pub fn start(
        bundle: &Bundle,
        heads: Arc<Vec<Head>>,
        entities: Option<Arc<TokenHead>>,
        opts: &EncoderOptions,
        runtime: Option<&Path>,
        observer: Option<BatchObserver>,
    ) -> Result<Encoder, ModelError> {
        let env = init_runtime(runtime)?;
        let spec = &bundle.manifest.encoder;
        let tpath = bundle.path(&spec.tokenizer);
        let mut tokenizer = Tokenizer::from_file(&tpath).map_err(|e| ModelError::Tokenizer {
            path: tpath.clone(),
            message: e.to_string(),
        })?;
        // The file may carry its own truncation and padding (128, fixed): windows are ours.
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: tpath.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let special = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| ModelError::Tokenizer {
                    path: tpath.clone(),
                    message: format!("no `{t}` token"),
                })
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        if spec.max_tokens < 8 || spec.window_overlap >= spec.max_tokens - 2 {
            return Err(ModelError::Manifest {
                path: bundle.path("manifest.json"),
                message: format!(
                    "max_tokens {} and window_overlap {} leave no room for text",
                    spec.max_tokens, spec.window_overlap
                ),
            });
        }
        let opath = bundle.path(&spec.file);
        let workers_n = opts.workers.max(1);
        let mut sessions = Vec::with_capacity(workers_n);
        for _ in 0..workers_n {
            let s = Session::builder(&env)
                .and_then(|b| {
                    b.with_optimization_level(GraphOptimizationLevel::Level3)
                        .map_err(Into::into)
                })
                .and_then(|b| {
                    b.with_intra_threads(opts.intra_threads.max(1))
                        .map_err(Into::into)
                })
                .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(&opath))
                .map_err(|e| ModelError::Session {
                    path: opath.clone(),
                    message: e.to_string(),
                })?;
            let tokens = entities.as_ref().and(spec.outputs.tokens.as_ref());
            for want in [&spec.outputs.embedding, &spec.outputs.features]
                .into_iter()
                .chain(tokens)
            {
                if !s.outputs().iter().any(|o| o.name() == want.as_str()) {
                    return Err(ModelError::Session {
                        path: opath.clone(),
                        message: format!("the graph has no output named `{want}`"),
                    });
                }
            }
            sessions.push(s);
        }
        let graph = Graph {
            heads,
            embedding: spec.outputs.embedding.clone(),
            features: spec.outputs.features.clone(),
            dim: spec.dim,
            feat: spec.features,
            keep_features: opts.keep_features,
            tokens: match (&spec.outputs.tokens, entities) {
                (Some(name), Some(head)) => Some((name.clone(), head)),
                _ => None,
            },
        };
        // The first run of a session allocates its buffers and is several times slower than
        // the next ones: pay it here, before the bundle serves (or is swapped in), not in the
        // first request's time budget.
        for s in &mut sessions {
            let (reply, _rx) = oneshot::channel();
            // A full-width window, so the buffers are sized for the longest input.
            let mut ids = vec![i64::from(sep); spec.max_tokens];
            ids[0] = i64::from(cls);
            let job = Job {
                ids,
                tag: graph.tokens.is_some(),
                reply,
            };
            run_batch(&graph, s, std::slice::from_ref(&job)).map_err(|e| ModelError::Session {
                path: opath.clone(),
                message: format!("warm-up run failed: {e}"),
            })?;
        }
        let queue = Arc::new(FairQueue::new(
            opts.queue.max(1),
            opts.queue_per_tenant.max(1),
            opts.sessions_per_tenant.clamp(1, workers_n),
        ));
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            idle: AtomicUsize::new(0),
            opts: opts.clone(),
            graph,
            observer,
        });
        let mut workers = Vec::new();
        for (i, s) in sessions.into_iter().enumerate() {
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(if opts.idle_priority {
                    format!("encoder-idle-{i}")
                } else {
                    format!("encoder-{i}")
                })
                .spawn(move || worker(sh, s))
                .map_err(|e| ModelError::Runtime(format!("cannot start an encoder thread: {e}")))?;
            workers.push(h);
        }
        Ok(Encoder {
            tokenizer,
            cls,
            sep,
            max_tokens: spec.max_tokens,
            overlap: spec.window_overlap,
            max_windows: opts.max_windows.max(2),
            long_texts: opts.long_texts,
            max_request_windows: opts.max_request_windows.max(1),
            queue,
            dim: spec.dim,
            workers,
        })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Token windows of a text (`[CLS] … [SEP]`, at most `max_tokens`, overlapping by
    /// `window_overlap`). A text over `max_windows` windows is refused, or keeps its first and
    /// last halves under [`LongTexts::KeepEnds`].
    pub fn windows(&self, text: &str) -> Result<Vec<Vec<i64>>, ModelError> {
        Ok(self.windows_of(text, false)?.ids)
    }

    /// [`Encoder::windows`] with each window's first token and every token's byte offsets (what
    /// entity tags are mapped back to the text with).
    pub fn windows_with_offsets(&self, text: &str) -> Result<Windows, ModelError> {
        self.windows_of(text, true)
    }

    fn windows_of(&self, text: &str, offsets: bool) -> Result<Windows, ModelError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        let ids = enc.get_ids();
        let body = self.max_tokens - 2;
        let step = body - self.overlap;
        let mut starts = vec![0usize];
        while starts.last().is_some_and(|s| s + body < ids.len()) {
            let next = starts.last().map_or(0, |s| s + step);
            starts.push(next);
        }
        if starts.len() > self.max_windows {
            if self.long_texts == LongTexts::Refuse {
                return Err(ModelError::TooLong {
                    windows: starts.len(),
                    max: self.max_windows,
                });
            }
            let half = self.max_windows / 2;
            let tail = starts.split_off(starts.len() - (self.max_windows - half));
            starts.truncate(half);
            starts.extend(tail);
        }
        let windows = starts
            .iter()
            .map(|&s| {
                let end = (s + body).min(ids.len());
                let mut w = Vec::with_capacity(end - s + 2);
                w.push(i64::from(self.cls));
                w.extend(ids[s..end].iter().map(|&t| i64::from(t)));
                w.push(i64::from(self.sep));
                w
            })
            .collect();
        Ok(Windows {
            ids: windows,
            starts,
            offsets: if offsets {
                enc.get_offsets().to_vec()
            } else {
                Vec::new()
            },
        })
    }

    /// Most windows one request may need.
    pub fn max_request_windows(&self) -> usize {
        self.max_request_windows
    }

    /// Queue windows in `lane` (the tenant), all or none; each answer arrives on its
    /// receiver.
    pub fn submit(
        &self,
        lane: &str,
        windows: Vec<Vec<i64>>,
    ) -> Result<Vec<oneshot::Receiver<Result<WindowOut, ModelError>>>, ModelError> {
        self.submit_tagged(lane, windows, false)
    }

    /// [`Encoder::submit`]; with `tag`, each answer carries the entity head's token tags too
    /// (when the bundle has an entity head).
    pub fn submit_tagged(
        &self,
        lane: &str,
        windows: Vec<Vec<i64>>,
        tag: bool,
    ) -> Result<Vec<oneshot::Receiver<Result<WindowOut, ModelError>>>, ModelError> {
        let mut out = Vec::with_capacity(windows.len());
        let mut jobs = Vec::with_capacity(windows.len());
        for ids in windows {
            let (reply, rx) = oneshot::channel();
            jobs.push(Job { ids, tag, reply });
            out.push(rx);
        }
        match self.queue.push_all(lane, jobs) {
            Ok(()) => Ok(out),
            Err(Full::Lane) => Err(ModelError::TenantOverloaded),
            Err(Full::Queue) => Err(ModelError::Overloaded),
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // the workers finish what is queued, then stop
        self.queue.close();
    }
}

fn worker(sh: Arc<Shared>, mut session: Session) {
    if sh.opts.idle_priority
        && let Err(e) = lower_to_idle_priority()
    {
        tracing::warn!(error = %e, "encoder session thread: cannot lower its priority to SCHED_IDLE, it runs at normal priority");
    }
    let max = sh.opts.max_batch.max(1);
    // Whether waiting for company paid off last time: a lone caller (one request at a time,
    // no other worker idle: a one-core machine) would otherwise pay `batch_wait` on every
    // pass for windows that never come.
    let mut worth_waiting = true;
    loop {
        sh.idle.fetch_add(1, Ordering::SeqCst);
        let popped = sh.queue.pop_batch(max, None);
        sh.idle.fetch_sub(1, Ordering::SeqCst);
        let Pop::Item(mut batch) = popped else {
            return; // the encoder was dropped
        };
        // the lane's running slot comes back however the batch ends, a panic included (or
        // the tenant's lane would stay at its cap for good)
        let _slot = Finish(&sh.queue, batch.lane.clone());
        // Another worker is free: it will take what comes next, so do not wait for it. Wait
        // only while waiting finds windows or others are queued (load is up); otherwise take
        // what is queued now and run.
        if batch.items.len() < max && sh.idle.load(Ordering::SeqCst) == 0 {
            let taken = batch.items.len();
            let wait = if worth_waiting || !sh.queue.is_empty() {
                sh.opts.batch_wait
            } else {
                Duration::ZERO
            };
            sh.queue.top_up(&mut batch, max, Instant::now() + wait);
            worth_waiting = batch.items.len() > taken || !sh.queue.is_empty();
        }
        // windows whose caller has gone (time budget spent) cost no run
        batch.items.retain(|j| !j.reply.is_closed());
        if !batch.items.is_empty() {
            let t0 = Instant::now();
            let result = run_batch(&sh.graph, &mut session, &batch.items);
            if let Some(o) = &sh.observer {
                o(batch.items.len(), t0.elapsed());
            }
            match result {
                Ok(outs) => {
                    for (job, out) in batch.items.drain(..).zip(outs) {
                        let _ = job.reply.send(Ok(out));
                    }
                }
                Err(e) => {
                    for job in batch.items.drain(..) {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Gives a lane's running-batch slot back when dropped.
struct Finish<'a>(&'a FairQueue<Job>, Arc<str>);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish(&self.1);
    }
}

fn run_batch(
    sh: &Graph,
    session: &mut Session,
    batch: &[Job],
) -> Result<Vec<WindowOut>, ModelError> {
    let width = batch.iter().map(|j| j.ids.len()).max().unwrap_or(0);
    let n = batch.len();
    let mut ids = vec![0i64; n * width];
    let mut mask = vec![0i64; n * width];
    for (r, j) in batch.iter().enumerate() {
        ids[r * width..r * width + j.ids.len()].copy_from_slice(&j.ids);
        mask[r * width..r * width + j.ids.len()].fill(1);
    }
    let shape = [n as i64, width as i64];
    let err = |e: ort::Error| ModelError::Inference(e.to_string());
    let ids = Tensor::from_array((shape, ids)).map_err(err)?;
    let mask = Tensor::from_array((shape, mask)).map_err(err)?;
    let outputs = session
        .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
        .map_err(err)?;
    let (eshape, emb) = outputs[sh.embedding.as_str()]
        .try_extract_tensor::<f32>()
        .map_err(err)?;
    let (fshape, feats) = outputs[sh.features.as_str()]
        .try_extract_tensor::<f32>()
        .map_err(err)?;
    if eshape.len() != 2
        || eshape[0] as usize != n
        || eshape[1] as usize != sh.dim
        || fshape.len() != 2
        || fshape[1] as usize != sh.feat
    {
        return Err(ModelError::Inference(format!(
            "the encoder returned shapes {eshape:?} and {fshape:?}; expected [{n}, {}] and [{n}, {}]",
            sh.dim, sh.feat
        )));
    }
    // The token states only when a window asks for its entity tags.
    let tokens = match &sh.tokens {
        Some((name, head)) if batch.iter().any(|j| j.tag) => {
            let (tshape, toks) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(err)?;
            let d = head.dim();
            if tshape.len() != 3
                || tshape[0] as usize != n
                || tshape[1] as usize != width
                || tshape[2] as usize != d
            {
                return Err(ModelError::Inference(format!(
                    "the encoder returned token states of shape {tshape:?}; expected [{n}, {width}, {d}]"
                )));
            }
            Some((toks, head))
        }
        _ => None,
    };
    Ok((0..n)
        .map(|r| {
            let f = &feats[r * sh.feat..(r + 1) * sh.feat];
            let tags = match &tokens {
                Some((toks, head)) if batch[r].tag => {
                    let d = head.dim();
                    // the tokens between [CLS] and [SEP]
                    let inner = batch[r].ids.len().saturating_sub(2);
                    let at = (r * width + 1) * d;
                    head.tag_tokens(&toks[at..at + inner * d])
                }
                _ => Vec::new(),
            };
            WindowOut {
                embedding: emb[r * sh.dim..(r + 1) * sh.dim].to_vec(),
                logits: sh.heads.iter().map(|h| h.logit(f)).collect(),
                features: if sh.keep_features {
                    f.to_vec()
                } else {
                    Vec::new()
                },
                tags,
            }
        })
        .collect())
}
