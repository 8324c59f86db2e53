//! `adapters:`: the LoRA adapter registry (signed adapters the sidecar publishes), which
//! adapters each route, tenant or key may use, and the canary splits. The runtime types are
//! `crate::adapters`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Check;
use super::guard::{TrustSection, check_trust};
use crate::adapters::{AdapterSettings, Choice, Rule};
use crate::routes::Route;

/// `adapters:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptersSection {
    /// Folder of published adapters, `<name>/<version>/` (PEFT files and `model.sig`),
    /// relative to this file: the trainer sidecar's `--adapters-dir`.
    pub dir: PathBuf,
    /// Who may publish adapters (as `models.trust`): an adapter is live only with a valid
    /// signature from one of these keys.
    #[serde(default)]
    pub trust: TrustSection,
    /// `model` values that mean the base model on OpenAI-compatible routes (default: `tgi`,
    /// what TGI expects). Any other `model` must be an adapter the caller may use.
    #[serde(default = "default_base_models")]
    pub base_models: Vec<String>,
    /// The rule for callers no other rule names (default: no adapter).
    #[serde(default)]
    pub default: Option<RuleSection>,
    /// Rules per route label (`chat_completions`, `generate`, ...).
    #[serde(default)]
    pub routes: BTreeMap<String, RuleSection>,
    /// Rules per tenant.
    #[serde(default)]
    pub tenants: BTreeMap<String, RuleSection>,
    /// Rules per API key id (the most specific).
    #[serde(default)]
    pub keys: BTreeMap<String, RuleSection>,
    /// Notice new versions by watching `dir` (also on `POST /admin/models/refresh`).
    #[serde(default = "yes")]
    pub watch: bool,
}

/// Which adapters a caller may use, and the split for requests that name none.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Adapters a request may name.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Weights for requests that name no adapter: `{base: 95, support-v2: 5}` (`base`: no
    /// adapter). Default: all to the base model.
    #[serde(default)]
    pub split: BTreeMap<String, u32>,
    /// Keep each key on one choice of the split (by a hash of its id) instead of drawing per
    /// request.
    #[serde(default)]
    pub sticky: bool,
}

fn default_base_models() -> Vec<String> {
    vec!["tgi".to_string()]
}

fn yes() -> bool {
    true
}

fn adapter_name_ok(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn check_rule(cx: &mut Check<'_>, at: &str, r: &RuleSection) -> Rule {
    for (i, a) in r.allow.iter().enumerate() {
        if !adapter_name_ok(a) {
            cx.err(
                &format!("{at}.allow[{i}]"),
                "an adapter name: a letter or digit, then letters, digits, `-`, `_`, `.` (64 at most)",
            );
        }
    }
    let mut split = Vec::new();
    for (name, w) in &r.split {
        if name != "base" && !adapter_name_ok(name) {
            cx.err(
                &format!("{at}.split.{name}"),
                "`base` or an adapter name (letters, digits, `-`, `_`, `.`)",
            );
        }
        split.push((
            if name == "base" {
                Choice::Base
            } else {
                Choice::Adapter(name.clone())
            },
            *w,
        ));
    }
    if split.is_empty() {
        split.push((Choice::Base, 100));
    } else if split.iter().all(|(_, w)| *w == 0) {
        cx.err(&format!("{at}.split"), "the weights add up to 0");
    }
    Rule {
        allow: r.allow.iter().cloned().collect::<BTreeSet<_>>(),
        split,
        sticky: r.sticky,
    }
}

/// `adapters:` checked.
pub(super) fn check(cx: &mut Check<'_>) -> Option<AdapterSettings> {
    let a = cx.file().adapters.as_ref()?;
    let base = cx.base();
    let dir = base.join(&a.dir);
    if !dir.is_dir() {
        cx.err(
            "adapters.dir",
            format!(
                "{} is not a folder (create it; the trainer sidecar publishes into it with --adapters-dir)",
                dir.display()
            ),
        );
    }
    let trust = check_trust(cx, &base, &a.trust, "adapters");
    if a.base_models.is_empty() {
        cx.err(
            "adapters.base_models",
            "name at least one base model (`tgi` for TGI; the served model's name for vLLM)",
        );
    }
    let default = a
        .default
        .as_ref()
        .map(|r| check_rule(cx, "adapters.default", r))
        .unwrap_or_default();
    let mut routes = HashMap::new();
    for (label, r) in &a.routes {
        let rule = check_rule(cx, &format!("adapters.routes.{label}"), r);
        match Route::by_label(label) {
            Some(route) => {
                routes.insert(route, rule);
            }
            None => cx.err(
                &format!("adapters.routes.{label}"),
                format!("no route `{label}` (routes: {})", super::route_labels()),
            ),
        }
    }
    let tenants = a
        .tenants
        .iter()
        .map(|(t, r)| {
            (
                t.clone(),
                check_rule(cx, &format!("adapters.tenants.{t}"), r),
            )
        })
        .collect();
    let keys = a
        .keys
        .iter()
        .map(|(k, r)| (k.clone(), check_rule(cx, &format!("adapters.keys.{k}"), r)))
        .collect();
    Some(AdapterSettings {
        dir,
        trust,
        base_models: a.base_models.iter().cloned().collect(),
        default,
        routes,
        tenants,
        keys,
        watch: a.watch,
    })
}
