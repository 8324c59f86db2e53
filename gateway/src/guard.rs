//! Guardrails in the request path: which policy a request gets, the prompt fields each route
//! carries, rewriting answers (whole or streamed), and hot reload of policy files.
//!
//! * Selection: the caller's key's policy > its tenant's (`guard.tenant_policies`) > the
//!   route's policy > `default`. The caller comes from the key store (`keys.rs`, the only
//!   authenticator), resolved once per request; the tenant also keys pseudonyms.
//! * Input and output: what each API family's fields mean is `filters::protocol`'s; the proxy
//!   applies the selected policy through it (`proxy/mod.rs`: `guard_input`, `guard_output`).
//! * Reload: a `notify` watcher on the policy folders; a changed file is recompiled and swapped
//!   in with `arc-swap` (requests in flight keep the policy they started with); an invalid file
//!   is rejected with its located error, the old policy stays, and
//!   `portcullis_policy_reloads_total{result="error"}` counts it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use filters::{Applied, Policy, Pseudonymizer};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};
use sha2::{Digest, Sha256};

use crate::keys::Caller;
use crate::routes::Route;

/// A policy slot that hot reload can swap.
#[derive(Debug)]
pub struct Slot {
    /// Name the config refers to it by.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    current: ArcSwap<Policy>,
    fingerprint: parking_lot::Mutex<[u8; 32]>,
}

impl Slot {
    /// The policy now.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }
}

/// Metrics of the guard.
#[derive(Clone)]
pub struct GuardMetrics {
    /// Findings by direction, type and action.
    pub findings: IntCounterVec,
    /// Requests/answers by direction, policy and the action decided.
    pub decisions: IntCounterVec,
    /// Time spent evaluating.
    pub seconds: HistogramVec,
    /// Reload attempts by policy and result.
    pub reloads: IntCounterVec,
    /// Loaded policies (name, version).
    pub info: IntGaugeVec,
}

/// Settings the guard is built from (validated by the config loader).
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// Policies by name (`default` included), already compiled.
    pub policies: Vec<(String, PathBuf, Arc<Policy>)>,
    /// Route → policy name.
    pub routes: HashMap<Route, String>,
    /// Tenant → policy name (a key's own policy wins over its tenant's).
    pub tenant_policies: HashMap<String, String>,
    /// Pseudonymisation master key.
    pub master_key: Vec<u8>,
    /// Largest whole answer buffered for rewriting.
    pub max_response_bytes: usize,
    /// Watch the files.
    pub hot_reload: bool,
    /// The model registry, when the config has `models:`.
    pub models: Option<Arc<crate::models::Models>>,
    /// The scan-once cache (`guard.scan_cache_bytes_per_tenant`), when on.
    pub scan_cache: Option<Arc<crate::scan_cache::ScanCache>>,
}

/// The guard: policies, selection, metrics.
pub struct Guard {
    slots: HashMap<String, Arc<Slot>>,
    routes: HashMap<Route, String>,
    tenant_policies: HashMap<String, String>,
    master_key: Vec<u8>,
    /// Largest whole answer buffered for rewriting.
    pub max_response_bytes: usize,
    /// Metrics.
    pub metrics: GuardMetrics,
    /// The model registry (policies with `classifiers:`).
    pub models: Option<Arc<crate::models::Models>>,
    /// The scan-once cache, when on.
    pub scan_cache: Option<Arc<crate::scan_cache::ScanCache>>,
    _watcher: parking_lot::Mutex<Option<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("policies", &self.slots.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The policy a request runs under.
pub struct Selected {
    /// The policy (a snapshot: a reload does not change it for this request).
    pub policy: Arc<Policy>,
    /// The tenant (`default` when the key is unknown or absent).
    pub tenant: String,
}

fn fingerprint(path: &Path, policy: Option<&Policy>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(std::fs::read(path).unwrap_or_default());
    if let Some(p) = policy {
        let dir = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&p.settings.lexicon_dir);
        for lang in &p.settings.toxicity_languages {
            h.update(std::fs::read(dir.join(format!("{lang}.txt"))).unwrap_or_default());
        }
    }
    h.finalize().into()
}

impl Guard {
    /// Build the guard, load the models its policies name, and (if enabled) start watching
    /// the policy files.
    pub fn new(s: GuardSettings, metrics: GuardMetrics) -> Result<Arc<Guard>, String> {
        let mut slots = HashMap::new();
        for (name, path, policy) in s.policies {
            if policy.classifiers.is_some() {
                match &s.models {
                    Some(m) => m.prepare(&policy)?,
                    None => {
                        return Err(format!(
                            "policy `{name}` has a `classifiers:` section but the config has no `models:`"
                        ));
                    }
                }
            }
            metrics
                .info
                .with_label_values(&[&name, &policy.version.to_string()])
                .set(1);
            let fp = fingerprint(&path, Some(&policy));
            slots.insert(
                name.clone(),
                Arc::new(Slot {
                    name,
                    path,
                    current: ArcSwap::new(policy),
                    fingerprint: parking_lot::Mutex::new(fp),
                }),
            );
        }
        let guard = Arc::new(Guard {
            slots,
            routes: s.routes,
            tenant_policies: s.tenant_policies,
            master_key: s.master_key,
            max_response_bytes: s.max_response_bytes,
            metrics,
            models: s.models,
            scan_cache: s.scan_cache,
            _watcher: parking_lot::Mutex::new(None),
        });
        if s.hot_reload {
            match watch(&guard) {
                Ok(w) => *guard._watcher.lock() = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "policy hot reload is off: cannot watch the policy files")
                }
            }
        }
        Ok(guard)
    }

    /// Every loaded policy: name, policy name inside the file, version, file.
    pub fn loaded(&self) -> Vec<(String, String, u32, PathBuf)> {
        let mut v: Vec<_> = self
            .slots
            .values()
            .map(|s| {
                let p = s.load();
                (s.name.clone(), p.name.clone(), p.version, s.path.clone())
            })
            .collect();
        v.sort();
        v
    }

    /// The slot of a policy.
    pub fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots.get(name)
    }

    /// The policy a caller's request runs under: its key's policy, else its tenant's
    /// (`guard.tenant_policies`), else the route's, else `default`. The caller was resolved
    /// once by the key store (the only authenticator); the guard never reads credentials.
    pub fn select(&self, route: Route, caller: &Caller) -> Option<Selected> {
        // a tenant's policy is for its keys: a caller without one never gets it
        let tenant_policy = caller
            .api_key()
            .and_then(|_| self.tenant_policies.get(&*caller.tenant))
            .map(String::as_str);
        let name = caller
            .api_key()
            .and_then(|k| k.policy.as_deref())
            .or(tenant_policy)
            .or_else(|| self.routes.get(&route).map(String::as_str))
            .unwrap_or("default");
        let slot = self.slots.get(name).or_else(|| self.slots.get("default"))?;
        Some(Selected {
            policy: slot.load(),
            tenant: caller.tenant.to_string(),
        })
    }

    /// The pseudonymizer of a tenant.
    pub fn pseudonymizer(&self, tenant: &str) -> Pseudonymizer {
        Pseudonymizer::new(&self.master_key, tenant)
    }

    /// Re-read every policy file whose content changed; returns how many were swapped in.
    pub fn reload_changed(&self) -> usize {
        let mut swapped = 0;
        for slot in self.slots.values() {
            let old = slot.load();
            let fp = fingerprint(&slot.path, Some(&old));
            if *slot.fingerprint.lock() == fp {
                continue;
            }
            let loaded = Policy::load(&slot.path)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    if p.classifiers.is_some() {
                        match &self.models {
                            Some(m) => m.prepare(&p)?,
                            None => {
                                return Err("the policy has a `classifiers:` section but the gateway config has no `models:`".to_string());
                            }
                        }
                    }
                    Ok(p)
                });
            match loaded {
                Ok(p) => {
                    let p = Arc::new(p);
                    *slot.fingerprint.lock() = fingerprint(&slot.path, Some(&p));
                    let _ = self
                        .metrics
                        .info
                        .remove_label_values(&[&slot.name, &old.version.to_string()]);
                    self.metrics
                        .info
                        .with_label_values(&[&slot.name, &p.version.to_string()])
                        .set(1);
                    self.metrics
                        .reloads
                        .with_label_values(&[&slot.name, "ok"])
                        .inc();
                    tracing::info!(policy = %slot.name, version = p.version, file = %slot.path.display(), "policy reloaded");
                    slot.current.store(p);
                    swapped += 1;
                }
                Err(e) => {
                    // remember the bad content so the same error is reported once
                    *slot.fingerprint.lock() = fp;
                    self.metrics
                        .reloads
                        .with_label_values(&[&slot.name, "error"])
                        .inc();
                    tracing::error!(policy = %slot.name, error = %e, "policy reload rejected; the previous version stays in force");
                }
            }
        }
        swapped
    }
}

fn watch(guard: &Arc<Guard>) -> notify::Result<notify::RecommendedWatcher> {
    let dirs: Vec<PathBuf> = guard
        .slots
        .values()
        .filter_map(|s| s.path.parent().map(Path::to_path_buf))
        .collect();
    crate::watch::spawn(
        "policy-reload",
        &dirs,
        Duration::from_millis(150),
        Arc::downgrade(guard),
        |g: &Guard| {
            g.reload_changed();
        },
    )
}

/// The one-line findings summary for the access log: `type:action` with counts, no values.
pub fn summary(findings: &[Applied]) -> String {
    let mut counts: Vec<((&str, &str), usize)> = Vec::new();
    for f in findings {
        let k = (f.ty, f.action.name());
        match counts.iter_mut().find(|(c, _)| *c == k) {
            Some((_, n)) => *n += 1,
            None => counts.push((k, 1)),
        }
    }
    counts
        .iter()
        .map(|((t, a), n)| format!("{t}:{a}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::Action;

    #[test]
    fn summary_counts_types_and_actions() {
        let f = |ty, action| Applied {
            ty,
            start: 0,
            end: 0,
            rule: "r",
            action,
            score: 1.0,
        };
        let found = [
            f("email", Action::Placeholder),
            f("email", Action::Placeholder),
            f("aws_key", Action::Redact),
        ];
        assert_eq!(summary(&found), "email:placeholder:2,aws_key:redact:1");
    }
}
