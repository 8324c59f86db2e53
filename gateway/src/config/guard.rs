//! `policy:`, `guard:` and `models:`: the policies (compiled here, so their own located errors
//! are reported with the config's), how requests map to them, and the model registry the
//! policies' `classifiers:` load from. The runtime types belong to `crate::guard` and
//! `crate::models`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Check;
use crate::models::ModelsSettings;
use crate::routes::Route;

/// Policies beyond the default, how requests map to them, and guard settings.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// More policy files by name, relative to this config file.
    #[serde(default)]
    pub policies: BTreeMap<String, PathBuf>,
    /// Route label (`chat_completions`, `generate`, ...) → policy name.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Tenant (as the keys file names it) → policy name. A key's own `policy` wins over its
    /// tenant's, which wins over the route's.
    #[serde(default)]
    pub tenant_policies: BTreeMap<String, String>,
    /// Removed: API keys live only in the keys file (`auth.keys_file`). Still read so that an
    /// old config is refused with the keys-file entries to write instead.
    #[serde(default)]
    #[schemars(skip)]
    pub tenants: Option<BTreeMap<String, serde_yaml::Value>>,
    /// Environment variable holding the pseudonymisation master key. When unset, a random key
    /// is made at start (pseudonyms then change across restarts; a warning says so).
    #[serde(default = "default_pseudonym_key_env")]
    pub pseudonym_key_env: String,
    /// Largest non-streamed answer buffered for output filtering (bytes).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Reload policy files when they change.
    #[serde(default = "default_true")]
    pub hot_reload: bool,
    /// Scan once per conversation: per tenant, the bytes of remembered input-rule findings
    /// and classifier scores of texts already seen (keyed by their SHA-256 and the policy or
    /// bundle), so a conversation's unchanged history is not scanned again every turn.
    /// `0` turns the cache off.
    #[serde(default = "default_scan_cache_bytes")]
    pub scan_cache_bytes_per_tenant: usize,
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection {
            policies: BTreeMap::new(),
            routes: BTreeMap::new(),
            tenant_policies: BTreeMap::new(),
            tenants: None,
            pseudonym_key_env: default_pseudonym_key_env(),
            max_response_bytes: default_max_response_bytes(),
            hot_reload: true,
            scan_cache_bytes_per_tenant: default_scan_cache_bytes(),
        }
    }
}

/// The error for a config that still has `guard.tenants`: what to write instead, with the
/// key hashes it held (hashes, never keys: the config never had the keys themselves).
fn tenants_moved(old: &BTreeMap<String, serde_yaml::Value>) -> String {
    let mut keys = String::new();
    let mut policies = String::new();
    for (tenant, t) in old {
        let hashes = t
            .get("api_keys_sha256")
            .and_then(serde_yaml::Value::as_sequence)
            .map(|v| {
                v.iter()
                    .filter_map(serde_yaml::Value::as_str)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for (i, h) in hashes.iter().enumerate() {
            keys.push_str(&format!(
                "\n  - {{id: {tenant}-{}, sha256: {h}, tenant: {tenant}}}",
                i + 1
            ));
        }
        if let Some(p) = t.get("policy").and_then(serde_yaml::Value::as_str) {
            policies.push_str(&format!("\n    {tenant}: {p}"));
        }
    }
    let mut msg = "was removed: the keys file is the gateway's only authenticator (see README, \
                   \"Migrating from guard.tenants\"). Move each key hash to the keys file \
                   (`auth.keys_file`)"
        .to_string();
    if !keys.is_empty() {
        msg.push_str(&format!(":\nkeys:{keys}"));
    }
    if !policies.is_empty() {
        msg.push_str(&format!(
            "\nand each tenant's policy to the config:\nguard:\n  tenant_policies:{policies}"
        ));
    }
    msg.push_str(
        "\nWith a keys file every route needs a key: list the routes callers without one may \
         still use under `auth.anonymous_routes` (they get the route's or the default policy).",
    );
    msg
}

/// Validated guard settings.
#[derive(Debug, Clone)]
pub struct GuardRuntime {
    /// Policies by name, compiled.
    pub policies: Vec<(String, PathBuf, Arc<filters::Policy>)>,
    /// Route → policy name.
    pub routes: HashMap<crate::routes::Route, String>,
    /// Tenant → policy name.
    pub tenant_policies: HashMap<String, String>,
    /// Where the pseudonym key comes from.
    pub pseudonym_key_env: String,
    /// Largest buffered answer.
    pub max_response_bytes: usize,
    /// Watch files.
    pub hot_reload: bool,
    /// Scan-once cache bytes per tenant (0: off).
    pub scan_cache_bytes_per_tenant: usize,
}

fn default_pseudonym_key_env() -> String {
    "PORTCULLIS_PSEUDONYM_KEY".to_string()
}

fn default_max_response_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_scan_cache_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_monitor_share() -> f64 {
    0.5
}

fn default_monitor_sessions() -> usize {
    1
}

fn default_true() -> bool {
    true
}

/// `models:` the file model registry and the encoder session pool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    /// Folder of bundles `<name>/<version>/manifest.json`, relative to this file.
    pub dir: PathBuf,
    /// The ONNX Runtime library (default: `ORT_DYLIB_PATH`, else the one the gateway was built
    /// against by `scripts/setup.sh`).
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// Encoder sessions, one thread each (default: the number of cores).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Most text windows per session run (1 to 256).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest a batch waits for more windows once it has one, when no session is idle and
    /// waiting lately found some (a lone caller on a busy-free pool does not wait).
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub batch_wait: Duration,
    /// Most windows waiting; beyond it requests get the policy's `on_timeout` at once.
    #[serde(default = "default_model_queue")]
    pub queue: usize,
    /// Most windows per text (a longer text keeps its first and last windows).
    #[serde(default = "default_max_windows")]
    pub max_windows: usize,
    /// Most windows one tenant may have waiting (default: a quarter of `queue`): a tenant
    /// flooding the classifiers fails its own requests, and the others keep their turns.
    #[serde(default)]
    pub queue_per_tenant: Option<usize>,
    /// Most encoder sessions one tenant's batches may occupy at once (default: `workers - 1`,
    /// at least 1). Below `workers`, one tenant's flood always leaves a session free, so the
    /// other tenants' windows start at once; set it to `workers` to let a lone tenant use
    /// every session (more throughput for one tenant, no reserve for the others).
    #[serde(default)]
    pub sessions_per_tenant: Option<usize>,
    /// Most windows one request may need, all its texts together (default 256); a longer
    /// request is refused (413 `prompt_too_long`) when its policy fails closed.
    #[serde(default = "default_max_request_windows")]
    pub max_request_windows: usize,
    /// Swap in new bundle versions when they appear in `dir` (also on `POST /admin/reload`).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Who may publish models: a bundle loads only with a valid `model.sig` from a trusted key.
    #[serde(default)]
    pub trust: TrustSection,
    /// The share of its sessions' time (0 to 1) that monitor-only classification may use
    /// (default 0.5). Monitoring runs after the request is forwarded, on its own sessions
    /// (`monitor_sessions`, else the shared ones); its time is counted against
    /// `monitor_share × sessions` seconds per second, and a request that finds the share
    /// spent is not monitored (`portcullis_classifier_requests_total{outcome="over_budget"}`):
    /// a bound on the CPU monitoring costs. At low traffic every request is monitored; under
    /// a flood, a sample. `1` monitors as much as the sessions can; `0` never monitors.
    #[serde(default = "default_monitor_share")]
    pub monitor_share: f64,
    /// Encoder sessions of their own for monitor-only classification, their threads at idle
    /// priority (Linux `SCHED_IDLE`): monitoring then runs only on CPU time the proxy and
    /// the blocking classifications do not want (default 1). `0`: monitoring shares the
    /// sessions above, at normal priority.
    #[serde(default = "default_monitor_sessions")]
    pub monitor_sessions: usize,
}

/// `models.trust`: the keys whose signatures (OpenSSF model_signing, `model.sig` in the
/// bundle folder) the gateway accepts, and rules on the signed provenance. Checked before any
/// bundle loads or swaps in; a refused version never serves.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// Public keys (PEM, ECDSA P-256) trusted to sign every model, relative to this file.
    /// `scripts/setup.sh` makes one and signs the bundles it builds with it
    /// (`.deps/model-signing/public.pem`).
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// CA root certificates (PEM, ECDSA P-256), relative to this file: certificate-mode
    /// signatures (`model_signing sign certificate`, `trainer-sidecar sign --certificate`)
    /// whose chain leads to one of them are trusted for every model not under `models`.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// Per model name, the keys trusted for it instead of `keys` and `roots`.
    #[serde(default)]
    pub models: BTreeMap<String, Vec<PathBuf>>,
    /// `refuse` (default): a bundle without `model.sig` never loads; `allow`: it loads
    /// (a signature that is there must still verify).
    #[serde(default)]
    pub unsigned: Unsigned,
    /// Refuse models whose signed ε is above this, or that carry no signed ε.
    #[serde(default)]
    pub max_epsilon: Option<f64>,
    /// Refuse models whose signed provenance names no data guard (or a disabled one).
    #[serde(default)]
    pub require_data_guard: bool,
}

/// Whether unsigned bundles load.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unsigned {
    /// Never.
    #[default]
    Refuse,
    /// Yes (for development only).
    Allow,
}

fn default_batch_wait() -> Duration {
    Duration::from_millis(1)
}

fn default_max_batch() -> usize {
    16
}

fn default_model_queue() -> usize {
    4096
}

fn default_max_request_windows() -> usize {
    256
}

fn default_max_windows() -> usize {
    16
}

/// `policy:`, `guard:` and `models:` checked.
pub(super) struct Checked {
    pub policy: Option<(PathBuf, Arc<filters::Policy>)>,
    pub guard: GuardRuntime,
    pub models: Option<ModelsSettings>,
}

pub(super) fn check(cx: &mut Check<'_>) -> Checked {
    let c = cx.file();
    let base = cx.base();
    let mut policies: Vec<(String, PathBuf, Arc<filters::Policy>)> = Vec::new();
    let mut load_policy = |cx: &mut Check<'_>, name: &str, at: &str, p: &Path| {
        let resolved = base.join(p);
        match filters::Policy::load(&resolved) {
            Ok(policy) => policies.push((name.to_string(), resolved, Arc::new(policy))),
            Err(e) => {
                // The policy's own errors (its file, its lines), after where the config named it.
                cx.err(at, format!("cannot use policy `{}`", p.display()));
                cx.push_all(e.errors);
            }
        }
    };
    if let Some(p) = &c.policy {
        load_policy(cx, "default", "policy", p);
    }
    for (name, p) in &c.guard.policies {
        if name == "default" {
            cx.err(
                &format!("guard.policies.{name}"),
                "`default` is the policy named by the top-level `policy` key; pick another name",
            );
            continue;
        }
        load_policy(cx, name, &format!("guard.policies.{name}"), p);
    }
    let known = |n: &str| n == "default" && c.policy.is_some() || c.guard.policies.contains_key(n);
    let mut routes = HashMap::new();
    for (label, name) in &c.guard.routes {
        match Route::by_label(label) {
            None => cx.err(
                &format!("guard.routes.{label}"),
                format!("no route `{label}` (routes: {})", super::route_labels()),
            ),
            Some(r) if known(name) => {
                routes.insert(r, name.clone());
            }
            Some(_) => cx.err(
                &format!("guard.routes.{label}"),
                format!("no policy named `{name}` (define it under `guard.policies`)"),
            ),
        }
    }
    if let Some(old) = &c.guard.tenants {
        cx.err("guard.tenants", tenants_moved(old));
    }
    let mut tenant_policies = HashMap::new();
    for (tenant, name) in &c.guard.tenant_policies {
        if tenant == crate::keys::Caller::ANONYMOUS_TENANT {
            cx.err(
                &format!("guard.tenant_policies.{tenant}"),
                "`default` is the tenant of requests without a key, which get the route's policy or the default one (`policy:`), never a tenant's",
            );
        } else if known(name) {
            tenant_policies.insert(tenant.clone(), name.clone());
        } else {
            cx.err(
                &format!("guard.tenant_policies.{tenant}"),
                format!("no policy named `{name}` (define it under `guard.policies`)"),
            );
        }
    }
    if c.guard.max_response_bytes < 1024 {
        cx.err(
            "guard.max_response_bytes",
            format!(
                "{} is too small (at least 1024)",
                c.guard.max_response_bytes
            ),
        );
    }
    let policy = policies
        .iter()
        .find(|p| p.0 == "default")
        .map(|(_, path, p)| (path.clone(), p.clone()));
    let guard = GuardRuntime {
        policies,
        routes,
        tenant_policies,
        pseudonym_key_env: c.guard.pseudonym_key_env.clone(),
        max_response_bytes: c.guard.max_response_bytes,
        hot_reload: c.guard.hot_reload,
        scan_cache_bytes_per_tenant: c.guard.scan_cache_bytes_per_tenant,
    };
    let models = c.models.as_ref().map(|m| check_models(cx, m));
    // Every policy that names a model needs the registry, and the bundle must be there.
    for (name, _, p) in &guard.policies {
        let Some(plan) = &p.classifiers else {
            continue;
        };
        let at = if name == "default" {
            "policy".to_string()
        } else {
            format!("guard.policies.{name}")
        };
        match &models {
            None => cx.err(
                &at,
                format!(
                    "policy `{}` uses the model `{}` (classifiers:), but this config has no `models:` section naming the bundle folder",
                    p.name, plan.model
                ),
            ),
            Some(m) if m.dir.is_dir() => {
                let found = match &plan.version {
                    Some(v) => m.dir.join(&plan.model).join(v).join("manifest.json").is_file(),
                    None => filters::classify::bundle::versions(&m.dir, &plan.model)
                        .is_ok_and(|v| !v.is_empty()),
                };
                if !found {
                    cx.err(
                        &at,
                        format!(
                            "policy `{}` uses the model `{}{}`, which is not in {}",
                            p.name,
                            plan.model,
                            plan.version.as_ref().map(|v| format!("@{v}")).unwrap_or_default(),
                            m.dir.display()
                        ),
                    );
                }
            }
            Some(_) => {}
        }
    }
    Checked {
        policy,
        guard,
        models,
    }
}

fn check_models(cx: &mut Check<'_>, m: &ModelsSection) -> ModelsSettings {
    let base = cx.base();
    let dir = base.join(&m.dir);
    if !dir.is_dir() {
        cx.err(
            "models.dir",
            format!(
                "{} is not a folder (scripts/setup.sh builds models/)",
                dir.display()
            ),
        );
    }
    if !(1..=256).contains(&m.max_batch) || m.queue == 0 || m.max_windows < 2 {
        cx.err(
            "models",
            "max_batch must be 1 to 256, queue at least 1, max_windows at least 2",
        );
    }
    if m.workers == Some(0) {
        cx.err("models.workers", "must be at least 1");
    }
    if m.queue_per_tenant.is_some_and(|q| q == 0 || q > m.queue) {
        cx.err(
            "models.queue_per_tenant",
            format!("must be between 1 and queue ({})", m.queue),
        );
    }
    let workers = m
        .workers
        .unwrap_or(filters::classify::EncoderOptions::default().workers);
    if m.sessions_per_tenant
        .is_some_and(|n| n == 0 || n > workers.max(1))
    {
        cx.err(
            "models.sessions_per_tenant",
            format!("must be between 1 and workers ({workers})"),
        );
    }
    if m.monitor_sessions > 64 {
        cx.err(
            "models.monitor_sessions",
            format!("{} is more than 64", m.monitor_sessions),
        );
    }
    if !(0.0..=1.0).contains(&m.monitor_share) {
        cx.err(
            "models.monitor_share",
            format!("{} is not a share (0 to 1)", m.monitor_share),
        );
    }
    if m.max_request_windows < m.max_windows {
        cx.err(
            "models.max_request_windows",
            format!(
                "must be at least max_windows ({}): one text may need that many",
                m.max_windows
            ),
        );
    }
    let onnxruntime = m.onnxruntime.as_ref().map(|p| base.join(p));
    if let Some(p) = &onnxruntime
        && !p.is_file()
    {
        cx.err(
            "models.onnxruntime",
            format!("{} does not exist", p.display()),
        );
    }
    let trust = check_trust(cx, &base, &m.trust, "models");
    let defaults = filters::classify::EncoderOptions::default();
    ModelsSettings {
        dir,
        onnxruntime,
        trust,
        encoder: filters::classify::EncoderOptions {
            workers: m.workers.unwrap_or(defaults.workers),
            intra_threads: 1,
            max_batch: m.max_batch,
            batch_wait: m.batch_wait,
            queue: m.queue,
            queue_per_tenant: m.queue_per_tenant.unwrap_or((m.queue / 4).max(1)),
            sessions_per_tenant: m
                .sessions_per_tenant
                .unwrap_or(workers.saturating_sub(1).max(1)),
            max_request_windows: m.max_request_windows,
            max_windows: m.max_windows,
            long_texts: filters::classify::LongTexts::Refuse,
            keep_features: false,
            idle_priority: false,
            background_sessions: m.monitor_sessions,
        },
        watch: m.watch,
        monitor_share: m.monitor_share,
    }
}

/// `<at>.trust` checked into the trust settings (`at`: `models` or `adapters`).
pub(super) fn check_trust(
    cx: &mut Check<'_>,
    base: &Path,
    t: &TrustSection,
    at: &str,
) -> signing::Trust {
    let load = |cx: &mut Check<'_>, at: String, p: &PathBuf| {
        let path = base.join(p);
        match signing::TrustedKey::load(&path) {
            Ok(k) => Some(k),
            Err(e) => {
                let hint = if path.ends_with(".deps/model-signing/public.pem") {
                    " (scripts/setup.sh makes this key: run `make test` or scripts/setup.sh)"
                } else {
                    ""
                };
                cx.err(&at, format!("{e}{hint}"));
                None
            }
        }
    };
    let keys: Vec<_> = t
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, p)| load(cx, format!("{at}.trust.keys[{i}]"), p))
        .collect();
    let mut roots = Vec::new();
    for (i, p) in t.roots.iter().enumerate() {
        match signing::TrustedRoots::load(&base.join(p)) {
            Ok(r) => roots.push(r),
            Err(e) => cx.err(&format!("{at}.trust.roots[{i}]"), e.to_string()),
        }
    }
    let mut per_model = BTreeMap::new();
    for (name, paths) in &t.models {
        let ks: Vec<_> = paths
            .iter()
            .enumerate()
            .filter_map(|(i, p)| load(cx, format!("{at}.trust.models.{name}[{i}]"), p))
            .collect();
        if paths.is_empty() {
            cx.err(
                &format!("{at}.trust.models.{name}"),
                "lists no key: nothing could load this model (remove the entry to use models.trust.keys)",
            );
        }
        per_model.insert(name.clone(), ks);
    }
    if t.keys.is_empty()
        && t.roots.is_empty()
        && t.models.is_empty()
        && t.unsigned == Unsigned::Refuse
    {
        cx.err(
            at,
            format!(
                "no trusted signing key or CA root ({at}.trust.keys, {at}.trust.roots) and \
                 unsigned {at} are refused, so \
                 nothing could load: add the public key they are signed with (scripts/setup.sh \
                 signs what it builds, and `make run`'s sidecar signs what it trains, with \
                 .deps/model-signing/private.pem), or set {at}.trust.unsigned: allow for \
                 development"
            ),
        );
    }
    if let Some(e) = t.max_epsilon
        && !(e.is_finite() && e > 0.0)
    {
        cx.err(
            &format!("{at}.trust.max_epsilon"),
            "must be a positive number",
        );
    }
    signing::Trust {
        keys,
        roots,
        per_model,
        allow_unsigned: t.unsigned == Unsigned::Allow,
        max_epsilon: t.max_epsilon,
        require_data_guard: t.require_data_guard,
        ignore_signatures: false,
    }
}
