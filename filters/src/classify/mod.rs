//! Model-based classification: one encoder pass per text window serves every head
//! (prompt injection, toxicity) and the topic rails (cosine against example sentences).
//!
//! - [`bundle`]: `models/<name>/<version>/` on disk, digests checked before use.
//! - [`encoder`]: tokenizer, overlapping windows, ONNX Runtime session pool, micro-batching.
//! - [`heads`]: small MLP heads read from safetensors.
//! - [`registry`]: named bundles, swapped atomically when a new version appears.
//!
//! The policy side (which heads, thresholds, topics, time budget) is [`crate::policy`]'s
//! `classifiers:` section; the gateway awaits [`Classifier::classify`] under that budget.

pub mod bundle;
pub mod encoder;
pub mod entities;
pub mod fair;
pub mod heads;
pub mod registry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub use bundle::{Bundle, Manifest};
pub use encoder::{BatchObserver, Encoder, EncoderOptions, LongTexts, WindowOut, Windows};
pub use entities::{EntitySpan, Tag, TokenHead};
pub use heads::{Head, logit, sigmoid};
pub use registry::{ModelRegistry, ModelSlot, SwapReport};

/// Why a model could not be loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// A text needs more windows than the encoder scores per text.
    #[error(
        "a prompt text needs {windows} classifier windows, more than the {max} the gateway scores per text (models.max_windows)"
    )]
    TooLong {
        /// Windows the text needs.
        windows: usize,
        /// The limit.
        max: usize,
    },
    /// A request's texts need more windows together than the encoder scores per request.
    #[error(
        "the prompt needs {windows} classifier windows in all, more than the {max} the gateway scores per request (models.max_request_windows)"
    )]
    RequestTooLong {
        /// Windows the request needs.
        windows: usize,
        /// The limit.
        max: usize,
    },
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The manifest is malformed or inconsistent.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file does not match its manifest digest.
    #[error("{path}: SHA-256 is {actual}, the manifest says {expected}; refusing the bundle")]
    Digest {
        /// The file.
        path: PathBuf,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// ONNX Runtime could not be loaded.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A session could not be created.
    #[error("{path}: cannot load the encoder: {message}")]
    Session {
        /// The ONNX file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The tokenizer file is unusable.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A head is unusable.
    #[error("head `{head}`: {message}")]
    Head {
        /// Head name.
        head: String,
        /// What is wrong.
        message: String,
    },
    /// Text could not be tokenised.
    #[error("cannot tokenise the text: {0}")]
    Tokenize(String),
    /// A session run failed.
    #[error("encoder run failed: {0}")]
    Inference(String),
    /// The queue of windows is full.
    #[error("the classifier queue is full")]
    Overloaded,
    /// This tenant holds its whole share of the queue already.
    #[error("this tenant's share of the classifier queue is full")]
    TenantOverloaded,
    /// No bundle of that name (or version) in the registry.
    #[error("no model bundle `{0}`")]
    NotFound(String),
    /// The bundle's signature or provenance is not trusted (`models.trust`).
    #[error("refused: {0}")]
    Refused(#[from] signing::Refusal),
    /// A registry operation that makes no sense here (rollback of a pinned model, ...).
    #[error("{0}")]
    Invalid(String),
}

impl ModelError {
    fn io(path: &Path, e: std::io::Error) -> ModelError {
        ModelError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Scores of one text: the highest logit of each head over the text's windows, and every
/// window's embedding (for the topic rails).
#[derive(Debug, Clone)]
pub struct TextScores {
    /// `(head name, highest logit)`, in the bundle's head order.
    pub logits: Vec<(String, f32)>,
    /// One L2-normalised embedding per window.
    pub embeddings: Vec<Vec<f32>>,
}

impl TextScores {
    /// The highest logit of a head.
    pub fn logit(&self, head: &str) -> Option<f32> {
        self.logits.iter().find(|(h, _)| h == head).map(|(_, l)| *l)
    }
}

/// A loaded bundle: encoder pool and heads, plus a cache of topic example embeddings.
#[derive(Debug)]
pub struct Classifier {
    /// The verified bundle.
    pub bundle: Bundle,
    /// Who signed it and the signed provenance (empty for an unsigned bundle).
    pub attestation: signing::Attestation,
    /// Heads, in manifest order.
    pub heads: Arc<Vec<Head>>,
    /// The entity head (person names, street addresses), if the bundle has one.
    pub entities: Option<Arc<TokenHead>>,
    encoder: Encoder,
    /// The idle-priority pool for work nobody waits for (`EncoderOptions::background_sessions`).
    background: Option<Encoder>,
    examples: Mutex<HashMap<String, Arc<Vec<f32>>>>,
}

impl Classifier {
    /// Verify and load the bundle in `dir`, and start its session pool.
    pub fn load(
        dir: &Path,
        opts: &EncoderOptions,
        runtime: Option<&Path>,
        observer: Option<BatchObserver>,
    ) -> Result<Classifier, ModelError> {
        Classifier::load_attested(
            dir,
            signing::Attestation::default(),
            opts,
            runtime,
            observer,
        )
    }

    /// [`Classifier::load`] for a bundle whose signature [`signing::Trust::check`] verified:
    /// its digests are taken from the attestation.
    pub fn load_attested(
        dir: &Path,
        attestation: signing::Attestation,
        opts: &EncoderOptions,
        runtime: Option<&Path>,
        observer: Option<BatchObserver>,
    ) -> Result<Classifier, ModelError> {
        let bundle = Bundle::open_attested(dir, &attestation)?;
        let features = bundle.manifest.encoder.features;
        let heads = bundle
            .manifest
            .heads
            .iter()
            .map(|h| Head::load(h, &bundle.path(&h.file), features))
            .collect::<Result<Vec<_>, _>>()?;
        let heads = Arc::new(heads);
        let entities = match (&bundle.manifest.entities, bundle.manifest.encoder.token_dim) {
            (Some(spec), Some(dim)) => Some(Arc::new(TokenHead::load(
                spec,
                &bundle.path(&spec.file),
                dim,
            )?)),
            _ => None,
        };
        let encoder = Encoder::start(
            &bundle,
            heads.clone(),
            entities.clone(),
            opts,
            runtime,
            observer.clone(),
        )?;
        let background = match opts.background_sessions {
            0 => None,
            n => Some(Encoder::start(
                &bundle,
                heads.clone(),
                entities.clone(),
                &EncoderOptions {
                    workers: n,
                    sessions_per_tenant: n,
                    idle_priority: true,
                    background_sessions: 0,
                    ..opts.clone()
                },
                runtime,
                observer,
            )?),
        };
        Ok(Classifier {
            bundle,
            attestation,
            heads,
            entities,
            encoder,
            background,
            examples: Mutex::new(HashMap::new()),
        })
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!(
            "{}@{}",
            self.bundle.manifest.name, self.bundle.manifest.version
        )
    }

    /// The encoder (windows, direct submission).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Queue every window of every text at once, so they share batches.
    /// Every text's windows, queued together in `lane` (all or none), within the request's
    /// window cap.
    fn submit_all(&self, lane: &str, texts: &[&str]) -> Result<Vec<Pending>, ModelError> {
        self.submit_to(&self.encoder, lane, texts)
    }

    fn submit_to(
        &self,
        encoder: &Encoder,
        lane: &str,
        texts: &[&str],
    ) -> Result<Vec<Pending>, ModelError> {
        let windows = texts
            .iter()
            .map(|t| encoder.windows(t))
            .collect::<Result<Vec<_>, _>>()?;
        let total: usize = windows.iter().map(Vec::len).sum();
        let max = encoder.max_request_windows();
        if total > max {
            return Err(ModelError::RequestTooLong {
                windows: total,
                max,
            });
        }
        let counts: Vec<usize> = windows.iter().map(Vec::len).collect();
        let mut rxs = encoder
            .submit(lane, windows.into_iter().flatten().collect())?
            .into_iter();
        Ok(counts
            .into_iter()
            .map(|n| rxs.by_ref().take(n).collect())
            .collect())
    }

    /// Classify texts together (their windows share batches). Cancel-safe: dropping the
    /// future lets the workers skip windows not yet run.
    pub async fn classify(&self, texts: &[&str]) -> Result<Vec<TextScores>, ModelError> {
        self.classify_for("", texts).await
    }

    /// [`Classifier::classify`] in a tenant's lane of the fair queue: tenants take turns, and
    /// one tenant's backlog fails only that tenant's requests.
    pub async fn classify_for(
        &self,
        lane: &str,
        texts: &[&str],
    ) -> Result<Vec<TextScores>, ModelError> {
        let queued = self.submit_for(lane, texts)?;
        self.scores(queued).await
    }

    /// [`Classifier::classify_for`] on the idle-priority sessions
    /// (`EncoderOptions::background_sessions`) when the bundle has them, else on the others:
    /// for work nobody waits for, which then takes only CPU time nothing else wants.
    pub async fn classify_background(
        &self,
        lane: &str,
        texts: &[&str],
    ) -> Result<Vec<TextScores>, ModelError> {
        let encoder = self.background.as_ref().unwrap_or(&self.encoder);
        let queued = Queued(self.submit_to(encoder, lane, texts)?);
        self.scores(queued).await
    }

    /// Person names and street addresses in each text, by the bundle's entity head (empty
    /// lists without one: see [`Classifier::has_entities`]). Texts share batches like
    /// [`Classifier::classify_for`]'s, in the tenant's lane; cancel-safe.
    pub async fn entities_for(
        &self,
        lane: &str,
        texts: &[&str],
    ) -> Result<Vec<Vec<EntitySpan>>, ModelError> {
        Ok(self
            .tag_for(lane, texts)
            .await?
            .into_iter()
            .map(|(spans, _)| spans)
            .collect())
    }

    /// [`Classifier::entities_for`] with each text's [`TextScores`] from the same encoder pass
    /// (every head's logit, every window's embedding): a caller that also scores the texts
    /// needs no second pass. Without an entity head, the spans are empty and the scores come
    /// from a plain classification.
    pub async fn tag_for(
        &self,
        lane: &str,
        texts: &[&str],
    ) -> Result<Vec<(Vec<EntitySpan>, TextScores)>, ModelError> {
        let Some(head) = &self.entities else {
            let scores = self.classify_for(lane, texts).await?;
            return Ok(scores.into_iter().map(|s| (Vec::new(), s)).collect());
        };
        let (cut, pending) = self.submit_entities(lane, texts)?;
        let mut out = Vec::with_capacity(texts.len());
        for ((text, w), rxs) in texts.iter().zip(&cut).zip(pending) {
            let mut windows = Vec::with_capacity(rxs.len());
            for rx in rxs {
                windows.push(rx.await.map_err(|_| stopped())??);
            }
            let spans = spans_of(head, text, w, &windows);
            out.push((spans, self.combine(windows)));
        }
        Ok(out)
    }

    /// [`Classifier::entities_for`] for threads outside an async runtime (`gateway check`,
    /// the trainer's data guard, benchmarks).
    pub fn entities_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<EntitySpan>>, ModelError> {
        let Some(head) = &self.entities else {
            return Ok(vec![Vec::new(); texts.len()]);
        };
        let (cut, pending) = self.submit_entities("", texts)?;
        let mut out = Vec::with_capacity(texts.len());
        for ((text, w), rxs) in texts.iter().zip(&cut).zip(pending) {
            let mut windows = Vec::with_capacity(rxs.len());
            for rx in rxs {
                windows.push(rx.blocking_recv().map_err(|_| stopped())??);
            }
            out.push(spans_of(head, text, w, &windows));
        }
        Ok(out)
    }

    fn submit_entities(
        &self,
        lane: &str,
        texts: &[&str],
    ) -> Result<(Vec<Windows>, Vec<Pending>), ModelError> {
        let mut cut = texts
            .iter()
            .map(|t| self.encoder.windows_with_offsets(t))
            .collect::<Result<Vec<_>, _>>()?;
        let total: usize = cut.iter().map(|w| w.ids.len()).sum();
        let max = self.encoder.max_request_windows();
        if total > max {
            return Err(ModelError::RequestTooLong {
                windows: total,
                max,
            });
        }
        let counts: Vec<usize> = cut.iter().map(|w| w.ids.len()).collect();
        let ids = cut
            .iter_mut()
            .flat_map(|w| std::mem::take(&mut w.ids))
            .collect();
        let mut rxs = self.encoder.submit_tagged(lane, ids, true)?.into_iter();
        let pending = counts
            .into_iter()
            .map(|n| rxs.by_ref().take(n).collect())
            .collect();
        Ok((cut, pending))
    }

    /// Whether the bundle has an entity head (person names, street addresses).
    pub fn has_entities(&self) -> bool {
        self.entities.is_some()
    }

    /// Of `wanted`, the entity types this bundle's entity head does not tag (all of them when
    /// it has none): a policy that acts on one of them cannot be served by this bundle.
    pub fn untagged(&self, wanted: &[&'static str]) -> Vec<&'static str> {
        let tagged = self.entities.as_ref().map_or(&[][..], |h| h.types());
        wanted
            .iter()
            .copied()
            .filter(|t| !tagged.contains(t))
            .collect()
    }

    /// Whether the bundle has idle-priority sessions for background work.
    pub fn has_background(&self) -> bool {
        self.background.is_some()
    }

    /// The synchronous half of [`Classifier::classify_for`]: tokenize the texts into windows
    /// and queue them in `lane` (the CPU work a caller may want to bound per tenant); the
    /// scores come from [`Classifier::scores`].
    pub fn submit_for(&self, lane: &str, texts: &[&str]) -> Result<Queued, ModelError> {
        Ok(Queued(self.submit_all(lane, texts)?))
    }

    /// Await the scores of texts queued by [`Classifier::submit_for`]. Cancel-safe: dropping
    /// the future lets the workers skip windows not yet run.
    pub async fn scores(&self, queued: Queued) -> Result<Vec<TextScores>, ModelError> {
        let mut out = Vec::with_capacity(queued.0.len());
        for rxs in queued.0 {
            let mut windows = Vec::with_capacity(rxs.len());
            for rx in rxs {
                windows.push(rx.await.map_err(|_| stopped())??);
            }
            out.push(self.combine(windows));
        }
        Ok(out)
    }

    /// [`Classifier::classify`] for threads outside an async runtime (tools, benchmarks).
    pub fn classify_blocking(&self, texts: &[&str]) -> Result<Vec<TextScores>, ModelError> {
        let mut out = Vec::with_capacity(texts.len());
        for rxs in self.submit_all("", texts)? {
            let mut windows = Vec::with_capacity(rxs.len());
            for rx in rxs {
                windows.push(rx.blocking_recv().map_err(|_| stopped())??);
            }
            out.push(self.combine(windows));
        }
        Ok(out)
    }

    fn combine(&self, windows: Vec<WindowOut>) -> TextScores {
        let logits = self
            .heads
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let best = windows
                    .iter()
                    .filter_map(|w| w.logits.get(i).copied())
                    .fold(f32::NEG_INFINITY, f32::max);
                (h.name.clone(), best)
            })
            .collect();
        TextScores {
            logits,
            embeddings: windows.into_iter().map(|w| w.embedding).collect(),
        }
    }

    /// Head features of each text (the mean over its windows), for training heads. Needs a
    /// classifier loaded with `EncoderOptions::keep_features`. Blocking.
    pub fn features_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut out = Vec::with_capacity(texts.len());
        for rxs in self.submit_all("", texts)? {
            let n = rxs.len().max(1) as f32;
            let mut mean: Vec<f32> = Vec::new();
            for rx in rxs {
                let w = rx.blocking_recv().map_err(|_| stopped())??;
                if w.features.is_empty() {
                    return Err(ModelError::Inference(
                        "the encoder was started without keep_features".into(),
                    ));
                }
                if mean.is_empty() {
                    mean = vec![0.0; w.features.len()];
                }
                for (m, f) in mean.iter_mut().zip(&w.features) {
                    *m += f / n;
                }
            }
            out.push(mean);
        }
        Ok(out)
    }

    /// Embeddings of topic example sentences, computed once per bundle and cached. Blocking:
    /// call it off the request path (policy load, model swap).
    pub fn example_embeddings(
        &self,
        examples: &[String],
    ) -> Result<Vec<Arc<Vec<f32>>>, ModelError> {
        let missing: Vec<&str> = {
            let cache = self.examples.lock();
            examples
                .iter()
                .filter(|e| !cache.contains_key(e.as_str()))
                .map(String::as_str)
                .collect()
        };
        if !missing.is_empty() {
            let scored = self.classify_blocking(&missing)?;
            let mut cache = self.examples.lock();
            for (text, s) in missing.iter().zip(scored) {
                // An example is one sentence; a long one is the mean of its windows.
                let mut e = vec![0f32; self.encoder.dim()];
                for w in &s.embeddings {
                    for (a, b) in e.iter_mut().zip(w) {
                        *a += b;
                    }
                }
                normalize(&mut e);
                cache.insert((*text).to_string(), Arc::new(e));
            }
        }
        let cache = self.examples.lock();
        examples
            .iter()
            .map(|e| {
                cache
                    .get(e.as_str())
                    .cloned()
                    .ok_or_else(|| ModelError::Runtime(format!("no embedding for example `{e}`")))
            })
            .collect()
    }

    /// Every example sentence cached so far (to warm a replacement bundle before a swap).
    pub fn cached_examples(&self) -> Vec<String> {
        self.examples.lock().keys().cloned().collect()
    }

    /// The cached embedding of an example, if computed.
    pub fn example(&self, text: &str) -> Option<Arc<Vec<f32>>> {
        self.examples.lock().get(text).cloned()
    }
}

/// A text's entity spans from its windows' tags: where windows overlap, the likelier tag of a
/// token counts.
fn spans_of(head: &TokenHead, text: &str, w: &Windows, windows: &[WindowOut]) -> Vec<EntitySpan> {
    let mut tags = vec![Tag::default(); w.offsets.len()];
    for (start, out) in w.starts.iter().zip(windows) {
        for (i, t) in out.tags.iter().enumerate() {
            if let Some(slot) = tags.get_mut(start + i)
                && t.p > slot.p
            {
                *slot = *t;
            }
        }
    }
    head.decode(text, &w.offsets, &tags)
}

/// The answers still to come for one text's windows.
type Pending = Vec<tokio::sync::oneshot::Receiver<Result<WindowOut, ModelError>>>;

/// Texts whose windows are queued ([`Classifier::submit_for`]), one entry per text.
#[derive(Debug)]
pub struct Queued(Vec<Pending>);

fn stopped() -> ModelError {
    ModelError::Runtime("an encoder worker stopped".into())
}

/// Scale to unit length (no-op on a zero vector).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        for x in v {
            *x /= n;
        }
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
