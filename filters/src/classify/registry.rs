//! The file model registry: bundles under one root folder, by name, loaded on first use and
//! swapped atomically when a newer version appears.
//!
//! Trust comes first: a version is loaded only after [`signing::Trust::check`] accepts its
//! `model.sig` (a trusted key, every file as signed, provenance within the rules); the digests
//! that check computed are the ones the bundle is opened with. A swap then loads the new
//! version completely (sessions, heads), computes the topic example embeddings the old one had
//! cached, and only then replaces the pointer (`arc-swap`). Requests hold an `Arc` of the
//! bundle they started with, so they finish on it; the old sessions stop when the last of them
//! drops it. A version that is refused or fails to load is reported and the next older one
//! newer than the current is tried; failing all, the current one stays.
//!
//! A rollback swaps an older version in and *holds* the slot: versions that were on disk at
//! that moment are not swapped in again; the next version published after it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::bundle::{version_key, versions};
use super::{BatchObserver, Classifier, EncoderOptions, ModelError};

/// Called for every version refused by the trust check: name, version, why.
pub type RefusalHook = Arc<dyn Fn(&str, &str, &signing::Refusal) + Send + Sync>;

/// One bundle name (optionally pinned to a version) and the bundle currently serving it.
#[derive(Debug)]
pub struct ModelSlot {
    /// Bundle name.
    pub name: String,
    /// The version the policy pinned, if any (pinned slots never swap).
    pub pinned: Option<String>,
    current: ArcSwap<Classifier>,
    loaded_at: Mutex<SystemTime>,
    /// After a rollback: the newest version on disk then (only newer ones swap in).
    held: Mutex<Option<String>>,
}

impl ModelSlot {
    /// The bundle serving now. Hold the `Arc` for the whole request.
    pub fn current(&self) -> Arc<Classifier> {
        self.current.load_full()
    }

    /// When the current bundle was swapped in.
    pub fn loaded_at(&self) -> SystemTime {
        *self.loaded_at.lock()
    }

    /// Set by a rollback: versions up to this one are not swapped in by a refresh.
    pub fn held(&self) -> Option<String> {
        self.held.lock().clone()
    }

    fn swap(&self, c: Classifier) -> Duration {
        let t = Instant::now();
        self.current.store(Arc::new(c));
        *self.loaded_at.lock() = SystemTime::now();
        t.elapsed()
    }
}

/// What a refresh did for one slot.
#[derive(Debug, Clone)]
pub struct SwapReport {
    /// Bundle name.
    pub name: String,
    /// Version before.
    pub from: String,
    /// Version tried.
    pub to: String,
    /// Time to load, verify and warm the new version (requests kept flowing meanwhile).
    pub load: Duration,
    /// Time the pointer swap itself took.
    pub swap: Duration,
    /// `Err(message)` when the new version was refused.
    pub result: Result<(), String>,
    /// Set when the trust check refused it (`unsigned`, `untrusted`, `tampered`, ...).
    pub refusal: Option<signing::RefusalKind>,
    /// Set for a rollback.
    pub rollback: bool,
}

/// A slot's key: bundle name and pinned version.
type SlotKey = (String, Option<String>);

/// Bundles under a root folder.
pub struct ModelRegistry {
    root: PathBuf,
    opts: EncoderOptions,
    runtime: Option<PathBuf>,
    observer: Option<BatchObserver>,
    trust: signing::Trust,
    on_refusal: Option<RefusalHook>,
    slots: Mutex<BTreeMap<SlotKey, Arc<ModelSlot>>>,
    refresh_lock: Mutex<()>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("root", &self.root)
            .finish()
    }
}

impl ModelRegistry {
    /// A registry over `root` (nothing is loaded until [`ModelRegistry::get`]). It trusts
    /// no key and refuses unsigned bundles until [`ModelRegistry::with_trust`] says otherwise.
    pub fn new(
        root: &Path,
        opts: EncoderOptions,
        runtime: Option<PathBuf>,
        observer: Option<BatchObserver>,
    ) -> ModelRegistry {
        ModelRegistry {
            root: root.to_path_buf(),
            opts,
            runtime,
            observer,
            trust: signing::Trust::default(),
            on_refusal: None,
            slots: Mutex::new(BTreeMap::new()),
            refresh_lock: Mutex::new(()),
        }
    }

    /// Who may publish models here.
    pub fn with_trust(mut self, trust: signing::Trust) -> ModelRegistry {
        self.trust = trust;
        self
    }

    /// Be told of every version the trust check refuses.
    pub fn on_refusal(mut self, hook: RefusalHook) -> ModelRegistry {
        self.on_refusal = Some(hook);
        self
    }

    /// The trust settings.
    pub fn trust(&self) -> &signing::Trust {
        &self.trust
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Versions of `name` on disk, oldest first (at least one).
    pub fn versions(&self, name: &str) -> Result<Vec<String>, ModelError> {
        let v = versions(&self.root, name).map_err(|_| {
            ModelError::NotFound(format!(
                "{name} (no folder {})",
                self.root.join(name).display()
            ))
        })?;
        if v.is_empty() {
            return Err(ModelError::NotFound(format!(
                "{name} (no version with a manifest.json under {})",
                self.root.join(name).display()
            )));
        }
        Ok(v)
    }

    fn load(&self, name: &str, version: &str) -> Result<Classifier, ModelError> {
        let dir = self.root.join(name).join(version);
        let attestation = self.trust.check(name, &dir).map_err(|r| {
            tracing::error!(model = %name, version = %version, refusal = r.kind.as_str(), error = %r.message, "model version refused by the trust check");
            if let Some(hook) = &self.on_refusal {
                hook(name, version, &r);
            }
            ModelError::Refused(r)
        })?;
        let c = Classifier::load_attested(
            &dir,
            attestation,
            &self.opts,
            self.runtime.as_deref(),
            self.observer.clone(),
        )?;
        if c.bundle.manifest.name != name || c.bundle.manifest.version != version {
            return Err(ModelError::Manifest {
                path: dir.join("manifest.json"),
                message: format!(
                    "the manifest says {}@{}, but the bundle sits at {name}/{version}",
                    c.bundle.manifest.name, c.bundle.manifest.version
                ),
            });
        }
        Ok(c)
    }

    /// The slot for `name` (newest version that passes the trust check and loads, following
    /// swaps) or `name` pinned to `version`; loads the bundle the first time. Blocking (loads
    /// sessions).
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelSlot>, ModelError> {
        let key = (name.to_string(), version.map(str::to_string));
        if let Some(s) = self.slots.lock().get(&key) {
            return Ok(s.clone());
        }
        let c = match version {
            Some(v) => self.load(name, v)?,
            None => {
                let mut errors: Vec<(String, ModelError)> = Vec::new();
                let mut found = None;
                for v in self.versions(name)?.iter().rev() {
                    match self.load(name, v) {
                        Ok(c) => {
                            found = Some(c);
                            break;
                        }
                        Err(e) => errors.push((v.clone(), e)),
                    }
                }
                let listed = |errors: &[(String, ModelError)]| {
                    errors
                        .iter()
                        .map(|(v, e)| format!("{name}/{v}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                match found {
                    Some(c) => {
                        if !errors.is_empty() {
                            tracing::warn!(model = %name, version = %c.bundle.manifest.version, skipped = %listed(&errors), "serving an older version: newer ones were refused");
                        }
                        c
                    }
                    None if errors.len() == 1 => {
                        return Err(errors.remove(0).1);
                    }
                    None => {
                        return Err(ModelError::Invalid(format!(
                            "no version of model `{name}` can be used: {}",
                            listed(&errors)
                        )));
                    }
                }
            }
        };
        let mut slots = self.slots.lock();
        let slot = slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ModelSlot {
                    name: name.to_string(),
                    pinned: version.map(str::to_string),
                    current: ArcSwap::from_pointee(c),
                    loaded_at: Mutex::new(SystemTime::now()),
                    held: Mutex::new(None),
                })
            })
            .clone();
        Ok(slot)
    }

    /// The slot of `name` (pinned to `version`) if it is loaded; never loads, so the request
    /// path can call it.
    pub fn loaded(&self, name: &str, version: Option<&str>) -> Option<Arc<ModelSlot>> {
        self.slots
            .lock()
            .iter()
            .find(|((n, v), _)| n == name && v.as_deref() == version)
            .map(|(_, s)| s.clone())
    }

    /// Every loaded slot.
    pub fn slots(&self) -> Vec<Arc<ModelSlot>> {
        self.slots.lock().values().cloned().collect()
    }

    /// Look for newer versions of every unpinned slot and swap the newest that passes the
    /// trust check and loads. Blocking; run it off the request path. Returns one report per
    /// version tried.
    pub fn refresh(&self) -> Vec<SwapReport> {
        let _one_at_a_time = self.refresh_lock.lock();
        let mut reports = Vec::new();
        for slot in self.slots() {
            if slot.pinned.is_some() {
                continue;
            }
            let cur = slot.current();
            let from = cur.bundle.manifest.version.clone();
            let on_disk = match self.versions(&slot.name) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(model = %slot.name, error = %e, "model refresh: no usable version; keeping the current one");
                    continue;
                }
            };
            let floor = [Some(from.clone()), slot.held()]
                .into_iter()
                .flatten()
                .filter_map(|v| version_key(&v))
                .max()
                .unwrap_or_default();
            // The current version rewritten in place is checked again, like a new one.
            let rewritten = version_key(&from) == Some(floor.clone())
                && on_disk.contains(&from)
                && super::bundle::sha256_file(&cur.bundle.path("manifest.json"))
                    .is_ok_and(|d| d != cur.bundle.digest);
            let candidates: Vec<String> = on_disk
                .into_iter()
                .rev()
                .filter(|v| version_key(v).is_some_and(|k| k > floor) || (rewritten && *v == from))
                .collect();
            for to in candidates {
                let report = self.try_swap(&slot, &cur, &from, &to, false);
                let ok = report.result.is_ok();
                reports.push(report);
                if ok {
                    *slot.held.lock() = None;
                    break;
                }
            }
        }
        reports
    }

    /// Swap `to` into `slot` if it passes the trust check and loads.
    fn try_swap(
        &self,
        slot: &ModelSlot,
        cur: &Classifier,
        from: &str,
        to: &str,
        rollback: bool,
    ) -> SwapReport {
        let t0 = Instant::now();
        let loaded = self.load(&slot.name, to).and_then(|c| {
            // Warm the topic examples the old bundle serves, so the first request after
            // the swap does not pay for them.
            let examples = cur.cached_examples();
            if !examples.is_empty() {
                c.example_embeddings(&examples)?;
            }
            Ok(c)
        });
        let load = t0.elapsed();
        let mut refusal = None;
        let (swap, result) = match loaded {
            Ok(c) => {
                let swap = slot.swap(c);
                tracing::info!(model = %slot.name, from = %from, to = %to, rollback, load_ms = load.as_millis() as u64, "model swapped");
                (swap, Ok(()))
            }
            Err(e) => {
                if let ModelError::Refused(r) = &e {
                    refusal = Some(r.kind);
                } else {
                    tracing::error!(model = %slot.name, version = %to, error = %e, "new model version failed to load; keeping the current one");
                }
                (Duration::ZERO, Err(e.to_string()))
            }
        };
        SwapReport {
            name: slot.name.clone(),
            from: from.to_string(),
            to: to.to_string(),
            load,
            swap,
            result,
            refusal,
            rollback,
        }
    }

    /// Serve an older version of the unpinned model `name`: `to`, or the newest version older
    /// than the current one that passes the trust check. The slot is then held: a refresh
    /// swaps in only versions newer than every version on disk now.
    pub fn rollback(&self, name: &str, to: Option<&str>) -> Result<SwapReport, ModelError> {
        let _one_at_a_time = self.refresh_lock.lock();
        let slot = self.loaded(name, None).ok_or_else(|| {
            ModelError::NotFound(format!(
                "{name} (not loaded: no policy uses it, or it is pinned to a version)"
            ))
        })?;
        let cur = slot.current();
        let from = cur.bundle.manifest.version.clone();
        let on_disk = self.versions(name)?;
        let newest = on_disk.last().cloned().unwrap_or_default();
        let targets: Vec<String> = match to {
            Some(v) if v == from => {
                return Err(ModelError::Invalid(format!(
                    "{name} is serving version {from} already"
                )));
            }
            Some(v) if !on_disk.iter().any(|d| d == v) => {
                return Err(ModelError::NotFound(format!(
                    "{name}/{v} (versions on disk: {})",
                    on_disk.join(", ")
                )));
            }
            Some(v) => vec![v.to_string()],
            None => {
                let cur_key = version_key(&from).unwrap_or_default();
                on_disk
                    .into_iter()
                    .rev()
                    .filter(|v| version_key(v).is_some_and(|k| k < cur_key))
                    .collect()
            }
        };
        if targets.is_empty() {
            return Err(ModelError::Invalid(format!(
                "{name} has no version older than {from} to roll back to"
            )));
        }
        let mut errors = Vec::new();
        for v in targets {
            let r = self.try_swap(&slot, &cur, &from, &v, true);
            if r.result.is_ok() {
                *slot.held.lock() = Some(newest);
                return Ok(r);
            }
            errors.push(format!("{v}: {}", r.result.err().unwrap_or_default()));
        }
        Err(ModelError::Invalid(format!(
            "{name}: no older version could be loaded ({}); {from} keeps serving",
            errors.join("; ")
        )))
    }
}
