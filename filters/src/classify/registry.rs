//! The file model registry: bundles under one root folder, by name, loaded on first use and
//! swapped atomically when a newer version appears.
//!
//! A swap loads and verifies the new version completely (digests, sessions, heads), computes
//! the topic example embeddings the old one had cached, and only then replaces the pointer
//! (`arc-swap`). Requests hold an `Arc` of the bundle they started with, so they finish on
//! it; the old sessions stop when the last of them drops it. A version that fails to load is
//! reported and the current one stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::bundle::versions;
use super::{BatchObserver, Classifier, EncoderOptions, ModelError};

/// One bundle name (optionally pinned to a version) and the bundle currently serving it.
#[derive(Debug)]
pub struct ModelSlot {
    /// Bundle name.
    pub name: String,
    /// The version the policy pinned, if any (pinned slots never swap).
    pub pinned: Option<String>,
    current: ArcSwap<Classifier>,
    loaded_at: Mutex<SystemTime>,
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
}

/// A slot's key: bundle name and pinned version.
type SlotKey = (String, Option<String>);

/// Bundles under a root folder.
pub struct ModelRegistry {
    root: PathBuf,
    opts: EncoderOptions,
    runtime: Option<PathBuf>,
    observer: Option<BatchObserver>,
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
    /// A registry over `root` (nothing is loaded until [`ModelRegistry::get`]).
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
            slots: Mutex::new(BTreeMap::new()),
            refresh_lock: Mutex::new(()),
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn newest(&self, name: &str) -> Result<String, ModelError> {
        versions(&self.root, name)
            .map_err(|_| {
                ModelError::NotFound(format!(
                    "{name} (no folder {})",
                    self.root.join(name).display()
                ))
            })?
            .pop()
            .ok_or_else(|| {
                ModelError::NotFound(format!(
                    "{name} (no version with a manifest.json under {})",
                    self.root.join(name).display()
                ))
            })
    }

    fn load(&self, name: &str, version: &str) -> Result<Classifier, ModelError> {
        let dir = self.root.join(name).join(version);
        let c = Classifier::load(
            &dir,
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

    /// The slot for `name` (newest version, following swaps) or `name` pinned to `version`;
    /// loads the bundle the first time. Blocking (loads sessions).
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelSlot>, ModelError> {
        let key = (name.to_string(), version.map(str::to_string));
        if let Some(s) = self.slots.lock().get(&key) {
            return Ok(s.clone());
        }
        let v = match version {
            Some(v) => v.to_string(),
            None => self.newest(name)?,
        };
        let c = self.load(name, &v)?;
        let mut slots = self.slots.lock();
        let slot = slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ModelSlot {
                    name: name.to_string(),
                    pinned: version.map(str::to_string),
                    current: ArcSwap::from_pointee(c),
                    loaded_at: Mutex::new(SystemTime::now()),
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

    /// Look for newer versions of every unpinned slot and swap them in. Blocking; run it off
    /// the request path. Returns one report per attempted swap.
    pub fn refresh(&self) -> Vec<SwapReport> {
        let _one_at_a_time = self.refresh_lock.lock();
        let mut reports = Vec::new();
        for slot in self.slots() {
            if slot.pinned.is_some() {
                continue;
            }
            let cur = slot.current();
            let from = cur.bundle.manifest.version.clone();
            let to = match self.newest(&slot.name) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(model = %slot.name, error = %e, "model refresh: no usable version; keeping the current one");
                    continue;
                }
            };
            // Same version folder and same manifest: nothing to do.
            let unchanged = to == from
                && super::bundle::sha256_file(&cur.bundle.path("manifest.json"))
                    .is_ok_and(|d| d == cur.bundle.digest);
            if unchanged {
                continue;
            }
            let t0 = Instant::now();
            let loaded = self.load(&slot.name, &to).and_then(|c| {
                // Warm the topic examples the old bundle serves, so the first request after
                // the swap does not pay for them.
                let examples = cur.cached_examples();
                if !examples.is_empty() {
                    c.example_embeddings(&examples)?;
                }
                Ok(c)
            });
            let load = t0.elapsed();
            let (swap, result) = match loaded {
                Ok(c) => {
                    let t1 = Instant::now();
                    slot.current.store(Arc::new(c));
                    *slot.loaded_at.lock() = SystemTime::now();
                    let swap = t1.elapsed();
                    tracing::info!(model = %slot.name, from = %from, to = %to, load_ms = load.as_millis() as u64, "model swapped");
                    (swap, Ok(()))
                }
                Err(e) => {
                    tracing::error!(model = %slot.name, version = %to, error = %e, "new model version refused; keeping the current one");
                    (Duration::ZERO, Err(e.to_string()))
                }
            };
            reports.push(SwapReport {
                name: slot.name.clone(),
                from,
                to,
                load,
                swap,
                result,
            });
        }
        reports
    }
}
