//! LoRA adapters: which ones are live (published, and signed by a trusted key), which ones a
//! caller may use, and which one a request gets.
//!
//! - **Live**: `adapters.dir/<name>/<version>/` folders (PEFT adapters with their `model.sig`,
//!   as the trainer sidecar publishes them). For each name, the newest version that passes the
//!   trust check is live; a version that does not is refused (metric, log line, audit record)
//!   and the previous one stays live. The backend loads adapters itself (TGI at launch with
//!   `LORA_ADAPTERS`, vLLM with `--lora-modules` or its load endpoint); the gateway decides
//!   which names may reach it.
//! - **Rules** (`adapters.default`, `.routes`, `.tenants`, `.keys`; the most specific wins:
//!   key, tenant, route, default): `allow` lists the adapters a caller may ask for by name;
//!   `split` the weights a request that names none is routed with (canary: `base: 95`,
//!   `support-v2: 5`), `sticky` keeps one key on one choice.
//! - **The request** names an adapter in its family's member ([`AdapterMember`]: TGI
//!   `parameters.adapter_id`, OpenAI-compatible `model`). A name that is not allowed, or not
//!   live, is refused with 400 `adapter_not_allowed` (TGI would silently serve the base model).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use filters::classify::bundle::version_key;
use filters::protocol::{AdapterMember, Protocol};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::{AuditLog, ModelEvent};
use crate::keys::Caller;
use crate::metrics::Metrics;
use crate::routes::Route;

/// What a request that names no adapter gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The base model.
    Base,
    /// This adapter.
    Adapter(String),
}

/// One rule: what may be asked for, and the split for requests that ask for nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Adapters a request may name (the split's adapters are allowed too).
    pub allow: BTreeSet<String>,
    /// Weighted choices for requests that name none (weights need not sum to 100).
    pub split: Vec<(Choice, u32)>,
    /// One key always gets the same choice (by a hash of its id); else each request draws.
    pub sticky: bool,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            allow: BTreeSet::new(),
            split: vec![(Choice::Base, 100)],
            sticky: false,
        }
    }
}

impl Rule {
    /// Whether a request may name `adapter`.
    pub fn allows(&self, adapter: &str) -> bool {
        self.allow.contains(adapter)
            || self
                .split
                .iter()
                .any(|(c, w)| *w > 0 && *c == Choice::Adapter(adapter.to_string()))
    }

    /// Every adapter this rule lets a caller use.
    pub fn usable(&self) -> BTreeSet<String> {
        let mut out = self.allow.clone();
        for (c, w) in &self.split {
            if let (Choice::Adapter(a), true) = (c, *w > 0) {
                out.insert(a.clone());
            }
        }
        out
    }

    /// The split's choice for a draw in `0..total`.
    fn pick(&self, draw: u64) -> &Choice {
        let total: u64 = self.split.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return &Choice::Base;
        }
        let mut at = draw % total;
        for (c, w) in &self.split {
            let w = u64::from(*w);
            if at < w {
                return c;
            }
            at -= w;
        }
        &Choice::Base
    }
}

/// `adapters:` as the gateway runs it (paths resolved, keys loaded).
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    /// Registry folder: `<name>/<version>/`.
    pub dir: PathBuf,
    /// Who may publish adapters.
    pub trust: signing::Trust,
    /// `model` values that mean the base model (OpenAI-compatible families).
    pub base_models: BTreeSet<String>,
    /// The rule for callers no other rule names.
    pub default: Rule,
    /// Per route.
    pub routes: HashMap<Route, Rule>,
    /// Per tenant.
    pub tenants: HashMap<String, Rule>,
    /// Per API key id.
    pub keys: HashMap<String, Rule>,
    /// Watch `dir` for new versions.
    pub watch: bool,
}

/// A live adapter version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Live {
    /// Version folder name.
    pub version: String,
    /// The folder.
    pub dir: PathBuf,
    /// The trusted key that signed it.
    pub signer: Option<String>,
    /// The signed ε.
    pub epsilon: Option<f64>,
    /// The signed provenance.
    pub provenance: Option<Value>,
}

/// Why a request's adapter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// What [`Adapters::route`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The adapter the backend applies (`None`: the base model).
    pub adapter: Option<String>,
    /// Whether the body was changed (the split chose an adapter).
    pub changed: bool,
}

/// The live adapters and the rules.
pub struct Adapters {
    settings: AdapterSettings,
    live: ArcSwap<BTreeMap<String, Live>>,
    metrics: Arc<Metrics>,
    audit: Option<AuditLog>,
    refresh_lock: parking_lot::Mutex<()>,
    _watcher: parking_lot::Mutex<Option<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters")
            .field("dir", &self.settings.dir)
            .finish()
    }
}

/// A name a message may show: a plain identifier, else a placeholder (a client's string is
/// not echoed).
fn shown(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
    {
        format!("`{name}`")
    } else {
        "the requested adapter".to_string()
    }
}

impl Adapters {
    /// Verify what is published and watch the folder.
    pub fn start(
        settings: AdapterSettings,
        metrics: Arc<Metrics>,
        audit: Option<AuditLog>,
    ) -> Arc<Adapters> {
        let a = Arc::new(Adapters {
            live: ArcSwap::from_pointee(BTreeMap::new()),
            settings,
            metrics,
            audit,
            refresh_lock: parking_lot::Mutex::new(()),
            _watcher: parking_lot::Mutex::new(None),
        });
        a.refresh();
        if a.settings.watch {
            match crate::watch::spawn(
                "adapter-swap",
                std::slice::from_ref(&a.settings.dir),
                Duration::from_millis(300),
                Arc::downgrade(&a),
                |a: &Adapters| {
                    a.refresh();
                },
            ) {
                Ok(w) => *a._watcher.lock() = Some(w),
                Err(e) => {
                    tracing::warn!(dir = %a.settings.dir.display(), error = %e, "adapter publication by watching is off (POST /admin/models/refresh still works)")
                }
            }
        }
        a
    }

    /// The live adapters.
    pub fn live(&self) -> Arc<BTreeMap<String, Live>> {
        self.live.load_full()
    }

    /// Look for new versions: for each name, the newest version newer than the live one that
    /// passes the trust check goes live. Blocking. Returns `(name, version, result)` per
    /// version tried.
    pub fn refresh(&self) -> Vec<(String, String, Result<(), String>)> {
        let _one = self.refresh_lock.lock();
        let current = self.live.load_full();
        let mut next = (*current).clone();
        // a version whose folder went away is no longer live (an older one may take over)
        next.retain(|_, l| l.dir.is_dir());
        let mut reports = Vec::new();
        let names: Vec<String> = std::fs::read_dir(&self.settings.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        for name in names {
            let Ok(versions) = filters::classify::bundle::versions_with(
                &self.settings.dir,
                &name,
                "adapter_config.json",
            ) else {
                continue;
            };
            let floor = next.get(&name).and_then(|l| version_key(&l.version));
            for v in versions.iter().rev() {
                if floor
                    .as_ref()
                    .is_some_and(|f| version_key(v).as_ref() <= Some(f))
                {
                    break;
                }
                let dir = self.settings.dir.join(&name).join(v);
                match self.settings.trust.check(&name, &dir) {
                    Ok(att) => {
                        tracing::info!(adapter = %name, version = %v, "adapter version live");
                        let live = Live {
                            version: v.clone(),
                            dir,
                            signer: att.signer.clone(),
                            epsilon: att.epsilon(),
                            provenance: att.provenance.clone(),
                        };
                        if let Some(a) = &self.audit {
                            a.model_event(
                                "adapter_live",
                                ModelEvent {
                                    name: name.clone(),
                                    from: current.get(&name).map(|l| l.version.clone()),
                                    version: v.clone(),
                                    signer: live.signer.clone(),
                                    epsilon: live.epsilon,
                                    ..ModelEvent::default()
                                },
                            );
                        }
                        next.insert(name.clone(), live);
                        reports.push((name.clone(), v.clone(), Ok(())));
                        break;
                    }
                    Err(r) => {
                        tracing::error!(adapter = %name, version = %v, refusal = r.kind.as_str(), error = %r.message, "adapter version refused by the trust check");
                        self.metrics
                            .model_refusals
                            .with_label_values(&[&name, r.kind.as_str()])
                            .inc();
                        if let Some(a) = &self.audit {
                            a.model_event(
                                "adapter_refused",
                                ModelEvent {
                                    name: name.clone(),
                                    version: v.clone(),
                                    reason: Some(r.kind.as_str().into()),
                                    message: Some(r.message.clone()),
                                    ..ModelEvent::default()
                                },
                            );
                        }
                        reports.push((name.clone(), v.clone(), Err(r.to_string())));
                    }
                }
            }
        }
        self.live.store(Arc::new(next));
        reports
    }

    /// The rule for this caller on this route: key, tenant, route, default.
    pub fn rule(&self, route: Route, caller: &Caller) -> &Rule {
        let s = &self.settings;
        caller
            .key
            .as_ref()
            .and_then(|k| s.keys.get(&k.id))
            .or_else(|| s.tenants.get(&*caller.tenant))
            .or_else(|| s.routes.get(&route))
            .unwrap_or(&s.default)
    }

    /// Decide the adapter of a request and write it into `body`. `Err`: refuse (400).
    pub fn route(
        &self,
        proto: &dyn Protocol,
        route: Route,
        caller: &Caller,
        body: &mut Value,
    ) -> Result<Routed, Refused> {
        let Some(member) = proto.adapter_member() else {
            return Ok(Routed {
                adapter: None,
                changed: false,
            });
        };
        let rule = self.rule(route, caller);
        let asked = member
            .read(body)
            .map_err(|path| Refused(format!("`{path}` must be a string naming an adapter")))?;
        let asked = match (member, asked) {
            (AdapterMember::Model, Some(m)) if self.settings.base_models.contains(m) => None,
            (_, a) => a.map(str::to_string),
        };
        let live = self.live.load();
        if let Some(a) = asked {
            if !rule.allows(&a) {
                return Err(Refused(format!(
                    "{} is not an adapter this caller may use here{}",
                    shown(&a),
                    match member {
                        AdapterMember::Model => format!(
                            " (`model` must be a base model: {}, or an allowed adapter)",
                            self.settings
                                .base_models
                                .iter()
                                .map(|m| format!("`{m}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        AdapterMember::AdapterId => String::new(),
                    }
                )));
            }
            if !live.contains_key(&a) {
                return Err(Refused(format!(
                    "adapter {} is allowed but not live: no published version has a valid signature from a trusted key",
                    shown(&a)
                )));
            }
            self.count(Some(&a));
            return Ok(Routed {
                adapter: Some(a),
                changed: false,
            });
        }
        let draw = match (rule.sticky, caller.key.as_ref()) {
            (true, Some(k)) => {
                let h = Sha256::digest(k.id.as_bytes());
                u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]))
            }
            _ => rand::random::<u64>(),
        };
        let chosen = match rule.pick(draw) {
            Choice::Adapter(a) if live.contains_key(a) => Some(a.clone()),
            Choice::Adapter(a) => {
                // a canary whose version was refused (or not published yet): the base model
                // serves, and the metric says so
                self.metrics
                    .adapter_requests
                    .with_label_values(&[a, "not_live"])
                    .inc();
                None
            }
            Choice::Base => None,
        };
        let changed = match &chosen {
            Some(a) => member.write(body, Some(a)),
            None => false,
        };
        if chosen.is_some() && !changed {
            return Err(Refused(format!(
                "the request has no place for `{}`",
                member.path()
            )));
        }
        self.count(chosen.as_deref());
        Ok(Routed {
            adapter: chosen,
            changed,
        })
    }

    fn count(&self, adapter: Option<&str>) {
        self.metrics
            .adapter_requests
            .with_label_values(&[adapter.unwrap_or("base"), "routed"])
            .inc();
    }

    /// The adapters this caller may use on this route that are live.
    pub fn usable(&self, route: Route, caller: &Caller) -> Vec<String> {
        let live = self.live.load();
        self.rule(route, caller)
            .usable()
            .into_iter()
            .filter(|a| live.contains_key(a))
            .collect()
    }

    /// Rewrite a `/v1/models` answer: base models stay, adapters the caller may not use go,
    /// live adapters it may use are added. TGI answers with one model object: it becomes the
    /// OpenAI list (`{"object": "list", "data": [...]}`) the SDKs read.
    pub fn filter_listing(&self, route: Route, caller: &Caller, answer: &mut Value) {
        let usable = self.usable(route, caller);
        if answer.get("data").is_none() && answer.get("id").is_some() {
            let one = answer.take();
            *answer = serde_json::json!({"object": "list", "data": [one]});
        }
        let Some(data) = answer.get_mut("data").and_then(Value::as_array_mut) else {
            return;
        };
        let parent = data
            .iter()
            .find_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string));
        let live = self.live.load();
        data.retain(|m| {
            let id = m.get("id").and_then(Value::as_str).unwrap_or_default();
            !live.contains_key(id) && !self.is_adapter_entry(m) || usable.iter().any(|u| u == id)
        });
        for a in usable {
            if !data
                .iter()
                .any(|m| m.get("id").and_then(Value::as_str) == Some(&a))
            {
                data.push(serde_json::json!({
                    "id": a,
                    "object": "model",
                    "owned_by": "portcullis",
                    "parent": parent,
                }));
            }
        }
    }

    fn is_adapter_entry(&self, m: &Value) -> bool {
        // vLLM lists adapters with a `parent` (the base model)
        m.get("parent").is_some_and(|p| !p.is_null())
    }

    /// What `/admin/models` shows under `adapters`.
    pub fn listing(&self) -> Value {
        serde_json::to_value(&*self.live.load_full()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(root: &std::path::Path, name: &str, v: &str, key: Option<&signing::SigningKey>) {
        let d = root.join(name).join(v);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("adapter_config.json"), b"{\"peft_type\":\"LORA\"}").unwrap();
        std::fs::write(d.join("adapter_model.safetensors"), vec![1u8; 64]).unwrap();
        if let Some(k) = key {
            signing::sign(&d, k, None, None).unwrap();
        }
    }

    #[test]
    fn a_new_version_goes_live_only_when_it_verifies() {
        let keys = tempfile::tempdir().unwrap();
        let (private, public) = signing::keygen_to(keys.path()).unwrap();
        let key = signing::read_private_key(&private).unwrap();
        let reg = tempfile::tempdir().unwrap();
        adapter(reg.path(), "a", "1", Some(&key));
        let a = Adapters::start(
            AdapterSettings {
                dir: reg.path().to_path_buf(),
                trust: signing::Trust {
                    keys: vec![signing::TrustedKey::load(&public).unwrap()],
                    ..signing::Trust::default()
                },
                base_models: BTreeSet::from(["tgi".to_string()]),
                default: Rule::default(),
                routes: HashMap::new(),
                tenants: HashMap::new(),
                keys: HashMap::new(),
                watch: false,
            },
            Arc::new(Metrics::new().unwrap()),
            None,
        );
        assert_eq!(a.live()["a"].version, "1");
        // tampered after signing: refused, version 1 stays live
        adapter(reg.path(), "a", "2", Some(&key));
        std::fs::write(reg.path().join("a/2/adapter_model.safetensors"), b"x").unwrap();
        let r = a.refresh();
        assert!(
            r[0].2.as_ref().is_err_and(|e| e.contains("tampered")),
            "{r:?}"
        );
        assert_eq!(a.live()["a"].version, "1");
        // a good version 3 goes live; nothing older is looked at again
        adapter(reg.path(), "a", "3", Some(&key));
        let r = a.refresh();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(a.live()["a"].version, "3");
        assert!(a.refresh().is_empty());
        // a removed adapter is no longer live
        std::fs::remove_dir_all(reg.path().join("a/3")).unwrap();
        a.refresh();
        assert_eq!(a.live()["a"].version, "1", "the newest that still verifies");
    }

    #[test]
    fn splits_follow_their_weights() {
        let rule = Rule {
            allow: BTreeSet::new(),
            split: vec![(Choice::Base, 95), (Choice::Adapter("new".into()), 5)],
            sticky: false,
        };
        let picks = (0..10_000u64)
            .filter(|d| *rule.pick(*d) == Choice::Adapter("new".into()))
            .count();
        assert_eq!(picks, 500);
        assert!(rule.allows("new") && !rule.allows("other"));
    }
}
