//! The gateway's side of the model registry: loading the bundles policies name (only versions
//! whose signature a trusted key made: `models.trust`), warming their topic examples, swapping
//! new versions in (watcher and `POST /admin/reload`), rolling back, metrics and audit events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use filters::Policy;
use filters::classify::{BatchObserver, ModelRegistry, ModelSlot, SwapReport};
use filters::policy::ClassifierPlan;

use crate::audit::{AuditLog, ModelEvent};
use crate::metrics::Metrics;

/// The model registry's settings (from the config's `models:`, paths resolved).
#[derive(Debug, Clone)]
pub struct ModelsSettings {
    /// Bundle folder.
    pub dir: PathBuf,
    /// ONNX Runtime library, if set.
    pub onnxruntime: Option<PathBuf>,
    /// Pool settings.
    pub encoder: filters::classify::EncoderOptions,
    /// Watch for new versions.
    pub watch: bool,
    /// Who may publish models (keys, unsigned, provenance rules).
    pub trust: signing::Trust,
    /// Share of the sessions' time monitor-only classification may use (`models.monitor_share`).
    pub monitor_share: f64,
}

/// The registry with its metrics and watcher.
pub struct Models {
    /// The bundles.
    pub registry: Arc<ModelRegistry>,
    metrics: Arc<Metrics>,
    audit: Option<AuditLog>,
    _watcher: parking_lot::Mutex<Option<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("registry", &self.registry)
            .finish()
    }
}

impl Models {
    /// Open the registry (nothing is loaded until a policy asks) and watch its folder.
    pub fn start(
        cfg: &ModelsSettings,
        metrics: Arc<Metrics>,
        audit: Option<AuditLog>,
    ) -> Arc<Models> {
        let (batch, secs) = (
            metrics.classifier_batch.clone(),
            metrics.classifier_batch_seconds.clone(),
        );
        let observer: BatchObserver = Arc::new(move |n, took| {
            batch.observe(n as f64);
            secs.observe(took.as_secs_f64());
        });
        let (refusals, trail) = (metrics.model_refusals.clone(), audit.clone());
        let registry = Arc::new(
            ModelRegistry::new(
                &cfg.dir,
                cfg.encoder.clone(),
                cfg.onnxruntime.clone(),
                Some(observer),
            )
            .with_trust(cfg.trust.clone())
            .on_refusal(Arc::new(move |name, version, r| {
                refusals.with_label_values(&[name, r.kind.as_str()]).inc();
                if let Some(a) = &trail {
                    a.model_event(
                        "model_refused",
                        ModelEvent {
                            name: name.to_string(),
                            version: version.to_string(),
                            reason: Some(r.kind.as_str().to_string()),
                            message: Some(r.message.clone()),
                            ..ModelEvent::default()
                        },
                    );
                }
            })),
        );
        let models = Arc::new(Models {
            registry,
            metrics,
            audit,
            _watcher: parking_lot::Mutex::new(None),
        });
        if cfg.watch {
            match watch(&models, &cfg.dir) {
                Ok(w) => *models._watcher.lock() = Some(w),
                Err(e) => {
                    tracing::warn!(dir = %cfg.dir.display(), error = %e, "model hot swap by watching is off (POST /admin/reload still works)")
                }
            }
        }
        models
    }

    /// Load the bundle a policy names, check it has the heads the policy uses, and embed the
    /// policy's topic examples. Blocking; at start and on policy reload, never per request.
    pub fn prepare(&self, policy: &Policy) -> Result<(), String> {
        let Some(plan) = &policy.classifiers else {
            return Ok(());
        };
        let slot = self
            .registry
            .get(&plan.model, plan.version.as_deref())
            .map_err(|e| format!("policy `{}`: model `{}`: {e}", policy.name, plan.model))?;
        let model = slot.current();
        for rule in &plan.heads {
            if rule.head_in(&model).is_none() {
                let head = rule.head;
                return Err(format!(
                    "policy `{}` uses the `{head}` head, which bundle {} does not have (it has: {})",
                    policy.name,
                    model.id(),
                    model
                        .heads
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if let Some(point) = &plan.operating_point
            && !plan.heads.iter().any(|r| {
                r.head_in(&model)
                    .is_some_and(|h| h.operating_points.contains_key(point))
            })
        {
            return Err(format!(
                "policy `{}` asks for the operating point `{point}`, which none of the heads it uses in bundle {} has (they have: {})",
                policy.name,
                model.id(),
                model
                    .heads
                    .iter()
                    .flat_map(|h| h
                        .operating_points
                        .keys()
                        .map(move |p| format!("{}.{p}", h.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let untagged = model.untagged(&policy.input.entity_types());
        if !untagged.is_empty() {
            let what = if model.has_entities() {
                "has an entity head that does not tag them"
            } else {
                "has no entity head"
            };
            return Err(format!(
                "policy `{}` acts on {} (person names, addresses: found by a bundle's entity head), and bundle {} {what} (rebuild it with scripts/setup.sh, or set {} in the policy)",
                policy.name,
                untagged
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                model.id(),
                untagged
                    .iter()
                    .map(|t| format!("`{t}: allow`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        let examples = plan.examples();
        if !examples.is_empty() {
            model
                .example_embeddings(&examples)
                .map_err(|e| format!("policy `{}`: embedding topic examples: {e}", policy.name))?;
        }
        self.publish();
        Ok(())
    }

    /// The loaded slot of a plan (never loads: the request path must not block).
    pub fn slot(&self, plan: &ClassifierPlan) -> Option<Arc<ModelSlot>> {
        self.registry.loaded(&plan.model, plan.version.as_deref())
    }

    /// Swap in newer versions; blocking. Metrics, log lines and audit events for each attempt.
    pub fn refresh(&self) -> Vec<SwapReport> {
        let reports = self.registry.refresh();
        for r in &reports {
            self.count(r);
        }
        if !reports.is_empty() {
            self.publish();
        }
        reports
    }

    /// Roll `name` back to `to` or the previous version that verifies; blocking.
    pub fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<SwapReport, filters::classify::ModelError> {
        let r = self.registry.rollback(name, to)?;
        self.count(&r);
        self.publish();
        Ok(r)
    }

    fn count(&self, r: &SwapReport) {
        {
            let result = if r.result.is_ok() { "ok" } else { "error" };
            self.metrics
                .model_swaps
                .with_label_values(&[&r.name, result])
                .inc();
            if r.result.is_ok() {
                self.metrics
                    .model_swap_load
                    .with_label_values(&[&r.name])
                    .set(r.load.as_secs_f64());
                if let (Some(a), Some(slot)) = (&self.audit, self.registry.loaded(&r.name, None)) {
                    let c = slot.current();
                    a.model_event(
                        if r.rollback {
                            "model_rollback"
                        } else {
                            "model_swap"
                        },
                        ModelEvent {
                            name: r.name.clone(),
                            from: Some(r.from.clone()),
                            version: r.to.clone(),
                            digest: Some(c.bundle.digest.clone()),
                            signer: c.attestation.signer.clone(),
                            epsilon: c.attestation.epsilon(),
                            ..ModelEvent::default()
                        },
                    );
                }
            }
        }
    }

    /// Refresh `portcullis_model_info` from the slots.
    fn publish(&self) {
        self.metrics.model_info.reset();
        for s in self.registry.slots() {
            let c = s.current();
            let m = &c.bundle.manifest;
            self.metrics
                .model_info
                .with_label_values(&[&m.name, &m.version, &c.bundle.digest[..12]])
                .set(1);
        }
    }

    /// What `/admin/models` shows.
    pub fn listing(&self) -> Vec<serde_json::Value> {
        self.registry
            .slots()
            .iter()
            .map(|s| {
                let c = s.current();
                let m = &c.bundle.manifest;
                serde_json::json!({
                    "name": m.name,
                    "version": m.version,
                    "pinned": s.pinned,
                    "digest": format!("sha256:{}", c.bundle.digest),
                    "created": m.created,
                    "heads": c.heads.iter().map(|h| serde_json::json!({
                        "name": h.name,
                        "threshold": filters::classify::sigmoid(h.threshold_logit),
                    })).collect::<Vec<_>>(),
                    "loaded_at": s.loaded_at().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                    "dir": c.bundle.dir,
                    "held_after_rollback": s.held(),
                    "versions": self.registry.versions(&s.name).unwrap_or_default(),
                    "signed_by": c.attestation.signer,
                    "epsilon": c.attestation.epsilon(),
                    "provenance": c.attestation.provenance,
                })
            })
            .collect()
    }
}

fn watch(models: &Arc<Models>, dir: &Path) -> notify::Result<notify::RecommendedWatcher> {
    // A bundle is written as a hidden folder then renamed; wait for quiet.
    crate::watch::spawn(
        "model-swap",
        &[dir.to_path_buf()],
        Duration::from_millis(300),
        Arc::downgrade(models),
        |m: &Models| {
            m.refresh();
        },
    )
}
