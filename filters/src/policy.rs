//! Policy files: what the gateway does with what the detectors find.
//!
//! A policy is a YAML file (`policies/*.yaml`, schema in `policies/schema.json`). `input` and
//! `output` map finding types (`email`) or families (`pii`, `secrets`, `injection`, `toxicity`,
//! `unsafe_output`) to actions; a type's own entry wins over its family's; anything not listed
//! is `allow` (not even looked for). [`Policy::load`] validates the file and compiles one
//! [`Engine`] per direction holding only the detectors the policy uses.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::actions::{Pseudonymizer, RestoreRule, Vault, replacement};
use crate::classify::{Classifier, TextScores, cosine};
use crate::detectors::{self, DetectorConfig};
use crate::engine::Engine;
use crate::finding::{Action, CLASSIFIER_TYPES, Direction, Finding, Group, TYPES, type_info};
use crate::protocol::{Role, UnknownFields};
use crate::yaml::{Loaded, YamlError, parse_yaml};

/// Rules of one direction: finding type or family name → action.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Rules(pub BTreeMap<String, Action>);

impl JsonSchema for Rules {
    fn schema_name() -> Cow<'static, str> {
        "Rules".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let action = generator.subschema_for::<Action>().to_value();
        let mut props = serde_json::Map::new();
        for g in Group::ALL {
            let mut s = action.clone();
            if let Some(o) = s.as_object_mut() {
                o.insert(
                    "description".into(),
                    format!(
                        "Action for every `{}` type not listed on its own.",
                        g.name()
                    )
                    .into(),
                );
            }
            props.insert(g.name().to_string(), s);
        }
        for t in TYPES {
            let mut s = action.clone();
            if let Some(o) = s.as_object_mut() {
                o.insert(
                    "description".into(),
                    format!("{} (family `{}`).", t.about, t.group.name()).into(),
                );
            }
            props.insert(t.name.to_string(), s);
        }
        let v = serde_json::json!({
            "type": "object",
            "description": "Finding type or family → action. A type's own entry wins over its family's; unlisted types are `allow`.",
            "properties": props,
            "additionalProperties": false,
        });
        Schema::try_from(v).unwrap_or_default()
    }
}

fn default_languages() -> Vec<String> {
    vec!["en".to_string()]
}
fn default_lexicon_dir() -> PathBuf {
    PathBuf::from("lexicons/toxicity")
}
fn default_hold_back() -> usize {
    128
}
fn default_block_status() -> u16 {
    403
}
fn default_max_decode() -> usize {
    4096
}

/// Detector and enforcement settings.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A unique string placed in the system prompt; its appearance in an answer is a
    /// `canary_leak` finding.
    #[serde(default)]
    pub canary: Option<String>,
    /// Hosts that markdown/HTML links and images in answers may point at: `example.com` (that
    /// host) or `*.example.com` (it and its subdomains). Others are `exfil_image`/`exfil_link`.
    #[serde(default)]
    pub allowed_link_hosts: Vec<String>,
    /// Toxicity word lists to load, by language (files `<lexicon_dir>/<lang>.txt`).
    #[serde(default = "default_languages")]
    pub toxicity_languages: Vec<String>,
    /// Folder of the word lists, relative to the policy file.
    #[serde(default = "default_lexicon_dir")]
    #[schemars(with = "String")]
    pub lexicon_dir: PathBuf,
    /// Most bytes of a streamed answer held back to catch an entity split across tokens
    /// (16 to 4096). Only text that may still be part of an entity is held.
    #[serde(default = "default_hold_back")]
    pub stream_hold_back_bytes: usize,
    /// HTTP status of a blocked request: 400 or 403.
    #[serde(default = "default_block_status")]
    pub block_status: u16,
    /// Largest base64/hex segment decoded and rescanned for injections.
    #[serde(default = "default_max_decode")]
    pub max_decode_bytes: usize,
    /// A request field that may reach the model but that the gateway does not understand (an
    /// unknown member, content-part type, or a non-string where text belongs): `refuse` (422
    /// naming the field) or `allow` (forwarded, every string inside it scanned as untrusted text).
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// Placeholders in answers: `policy` puts the original back only where the output rules
    /// let that type through (a type they redact is redacted, one they block stops the
    /// answer); `always` puts every original back.
    #[serde(default)]
    pub restore: RestoreMode,
}

/// How placeholders are put back into answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// The output policy applies to restored values.
    #[default]
    Policy,
    /// Every original goes back, whatever the output policy says about its type.
    Always,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            canary: None,
            allowed_link_hosts: Vec::new(),
            toxicity_languages: default_languages(),
            lexicon_dir: default_lexicon_dir(),
            stream_hold_back_bytes: default_hold_back(),
            block_status: default_block_status(),
            max_decode_bytes: default_max_decode(),
            unknown_fields: UnknownFields::default(),
            restore: RestoreMode::default(),
        }
    }
}

/// A policy file as written.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Name the gateway refers to the policy by (letters, digits, `-`, `_`).
    pub name: String,
    /// Version, recorded with every decision the policy makes.
    pub version: u32,
    /// What the policy is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Rules for prompts.
    #[serde(default)]
    pub input: Rules,
    /// Rules for answers (`placeholder` is input-only).
    #[serde(default)]
    pub output: Rules,
    /// Detector settings.
    #[serde(default)]
    pub settings: Settings,
    /// Model classifiers on prompts: which bundle, thresholds, topics, time budget. Their
    /// findings (`injection_classifier`, `toxicity_classifier`, `denied_topic`, `off_topic`)
    /// take their actions from `input` like any other type.
    #[serde(default)]
    pub classifiers: Option<ClassifiersSection>,
    /// Agents' tool traffic through the gateway's `/mcp/<server>` routes: which tools are
    /// offered, what a changed tool definition does, what a finding in a server's text does,
    /// calls per minute. Absent: every tool, changed definitions blocked until approved,
    /// blocking findings in tool results refused.
    #[serde(default)]
    pub mcp: McpSection,
}

/// The `mcp:` section of a policy. Tool patterns are `server.tool` (the server's name in the
/// gateway config, the tool's name as the server lists it), `*` standing for any characters.
/// The input rules (`input:`) apply to MCP traffic both ways: tool-call arguments on their way
/// to a server, and every text a server sends back (tool results, resource contents, prompt
/// messages, the server's own requests), the latter also scored by the injection classifier as
/// supplied text (`tool` role).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// Tools offered in `tools/list` and callable (`github.*`, `fs.read_file`). Default `["*"]`.
    #[serde(default = "all_tools")]
    pub allow_tools: Vec<String>,
    /// Tools never offered nor callable, even when `allow_tools` matches them.
    #[serde(default)]
    pub deny_tools: Vec<String>,
    /// A tool whose definition (name, description, schemas, annotations) changed since the
    /// gateway first saw it (a rug-pull): `block` (hidden from `tools/list` and its calls
    /// refused until an admin approves the new definition with `POST /admin/mcp/approve`),
    /// `flag` (offered, with a `mcp_tool_changed` finding in the audit trail and metrics), or
    /// `off` (no pinning).
    #[serde(default)]
    pub pinning: Pinning,
    /// A blocking finding in text a server sends (a prompt injection in a tool result):
    /// `block` answers the call with a JSON-RPC error saying why; `mark` lets the text through
    /// behind a warning that it is untrusted data (a first text block for tool results, the
    /// finding types under `_meta["portcullis/flagged"]`). Tool definitions with a blocking
    /// finding are always withheld from `tools/list` (tool poisoning).
    #[serde(default)]
    pub untrusted_text: UntrustedText,
    /// Most `tools/call` requests per minute per API key and tool (0: no limit).
    #[serde(default)]
    pub calls_per_minute: u32,
}

fn all_tools() -> Vec<String> {
    vec!["*".to_string()]
}

impl Default for McpSection {
    fn default() -> Self {
        McpSection {
            allow_tools: all_tools(),
            deny_tools: Vec::new(),
            pinning: Pinning::default(),
            untrusted_text: UntrustedText::default(),
            calls_per_minute: 0,
        }
    }
}

impl McpSection {
    /// Whether the policy offers `tool` of `server`.
    pub fn allows(&self, server: &str, tool: &str) -> bool {
        let name = format!("{server}.{tool}");
        let hit = |pats: &[String]| pats.iter().any(|p| crate::protocol::mcp::glob(p, &name));
        hit(&self.allow_tools) && !hit(&self.deny_tools)
    }
}

/// What a changed tool definition does (see [`McpSection::pinning`]).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pinning {
    /// Hidden and refused until approved.
    #[default]
    Block,
    /// Offered, and recorded.
    Flag,
    /// Not pinned.
    Off,
}

/// What a blocking finding in a server's text does (see [`McpSection::untrusted_text`]).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UntrustedText {
    /// The call is answered with a JSON-RPC error.
    #[default]
    Block,
    /// The text goes through behind a warning.
    Mark,
}

fn default_classifier_timeout() -> Duration {
    Duration::from_millis(100)
}
fn default_topic_threshold() -> f32 {
    0.55
}

/// What to do when the classifiers do not answer in time (or fail).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Let the request through and record a `classifier_unavailable` finding.
    #[default]
    Allow,
    /// Refuse the request (503, `classifier_unavailable`, the gateway failed).
    Block,
}

/// The `classifiers:` section of a policy.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassifiersSection {
    /// Model bundle name in the gateway's model registry (`models/<name>/<version>/`).
    pub model: String,
    /// Pin one version; by default the newest version serves, and newer ones are swapped in.
    #[serde(default)]
    pub version: Option<String>,
    /// Time budget for all classifiers of one request (`50ms`, `0.2s`), 1 ms to 10 s.
    #[serde(default = "default_classifier_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// When the budget is spent or the model fails: `allow` (and record) or `block` (503).
    #[serde(default)]
    pub on_timeout: FailMode,
    /// Probability thresholds by head (`injection: 0.9`) overriding the bundle's calibrated
    /// operating points (each bundle's model card says how those were chosen).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Topic rails: cosine similarity of the prompt's embedding to example sentences.
    #[serde(default)]
    pub topics: TopicRails,
    /// Roles whose texts the classifiers do not score (`[system]` leaves the application's
    /// system prompt out). By default every text the backend renders is scored: `system`,
    /// `developer`, `user`, `assistant`, `tool` (tool results), `tool_definition`, `unknown`.
    #[serde(default)]
    pub skip_roles: Vec<Role>,
    /// Roles whose texts are *supplied* content (the second channel): text the model is given
    /// to read, not text the user typed. Their injection score goes to the
    /// `indirect_injection_classifier` rule, with the bundle's indirect-injection head and
    /// threshold; every other role's goes to `injection_classifier`. Default: `tool` (tool
    /// results), `tool_definition` (tool descriptions and schemas) and `document` (attached
    /// documents and search results). A role in `skip_roles` is not scored at all.
    #[serde(default = "default_supplied_roles")]
    pub supplied_roles: Vec<Role>,
    /// A named operating point of the bundle's heads (`strict`: the injection heads' threshold
    /// with more recall for more false positives; each bundle's model card gives the figures).
    /// Heads without that point keep their default threshold; `thresholds` overrides both.
    #[serde(default)]
    pub operating_point: Option<String>,
}

fn default_supplied_roles() -> Vec<Role> {
    vec![Role::Tool, Role::ToolDefinition, Role::Document]
}

/// Which channel a text arrives by: the injection heads have an operating point for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Text the user (or the application) typed.
    Typed,
    /// Text supplied for processing: tool results, documents, retrieved content.
    Supplied,
    /// Every text, whatever its role (the heads that are not about injection).
    Any,
}

/// Allowed and denied topics, each a few example sentences.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicRails {
    /// Cosine similarity (0 to 1) at which a prompt is on a topic. Default 0.55.
    #[serde(default = "default_topic_threshold")]
    pub threshold: f32,
    /// Topic name → example sentences; a prompt this close to one is `denied_topic`.
    #[serde(default)]
    pub denied: BTreeMap<String, Vec<String>>,
    /// Topic name → example sentences; when any are listed, every window of every user turn
    /// (of the last `user_turns`) must be close to one of them, or the request is `off_topic`.
    #[serde(default)]
    pub allowed: BTreeMap<String, Vec<String>>,
    /// How many of the latest user turns must be on an allowed topic (default: all of them).
    #[serde(default)]
    pub user_turns: Option<usize>,
}

impl Default for TopicRails {
    fn default() -> TopicRails {
        TopicRails {
            threshold: default_topic_threshold(),
            denied: BTreeMap::new(),
            allowed: BTreeMap::new(),
            user_turns: None,
        }
    }
}

/// Compiled `classifiers:` section: what to ask of the model and what to do with the scores.
#[derive(Debug, Clone)]
pub struct ClassifierPlan {
    /// Bundle name.
    pub model: String,
    /// Pinned version.
    pub version: Option<String>,
    /// Time budget per request.
    pub timeout: Duration,
    /// Fail open or closed.
    pub on_timeout: FailMode,
    /// Heads in use.
    pub heads: Vec<HeadRule>,
    /// Topic rails.
    pub topics: TopicRails,
    /// Action for `denied_topic` (allow when unused).
    pub denied_action: Action,
    /// Action for `off_topic` (allow when unused).
    pub off_topic_action: Action,
    /// Roles not scored.
    pub skip_roles: Vec<Role>,
    /// Roles whose texts are supplied content ([`Channel::Supplied`]).
    pub supplied_roles: Vec<Role>,
    /// The bundle's named operating point the heads use, when one is named.
    pub operating_point: Option<String>,
}

/// One head a policy uses, and what its score leads to.
#[derive(Debug, Clone)]
pub struct HeadRule {
    /// Head name in the bundle (`injection`).
    pub head: &'static str,
    /// Finding type (`injection_classifier`).
    pub ty: &'static str,
    /// Rule id reported with the finding (`model.injection`).
    pub rule: &'static str,
    /// Action when the head fires.
    pub action: Action,
    /// Probability threshold from the policy, overriding the bundle's calibrated one.
    pub threshold: Option<f64>,
    /// The texts the rule scores.
    pub channel: Channel,
    /// The head used (with its threshold) when the bundle lacks `head`: bundles made before
    /// the indirect-injection head score supplied texts with the injection head.
    pub fallback: Option<&'static str>,
}

impl HeadRule {
    /// The bundle's head this rule uses: its own, or its fallback.
    pub fn head_in<'m>(&self, model: &'m Classifier) -> Option<&'m crate::classify::Head> {
        model
            .heads
            .iter()
            .find(|h| h.name == self.head)
            .or_else(|| {
                self.fallback
                    .and_then(|f| model.heads.iter().find(|h| h.name == f))
            })
    }
}

/// One head a policy can use.
struct HeadKind {
    head: &'static str,
    ty: &'static str,
    rule: &'static str,
    channel: Channel,
    fallback: Option<&'static str>,
    /// Finding types whose action this one takes when the policy gives it none.
    inherits: &'static [&'static str],
}

/// The heads policies can use.
const HEADS: [HeadKind; 3] = [
    HeadKind {
        head: "injection",
        ty: "injection_classifier",
        rule: "model.injection",
        channel: Channel::Typed,
        fallback: None,
        inherits: &[],
    },
    // Indirect injection in supplied texts: the same question at another operating point. A
    // policy that blocks `injection_classifier` and says nothing of this one blocks both.
    HeadKind {
        head: "indirect_injection",
        ty: "indirect_injection_classifier",
        rule: "model.injection.indirect",
        channel: Channel::Supplied,
        fallback: Some("injection"),
        inherits: &["injection_classifier"],
    },
    HeadKind {
        head: "toxicity",
        ty: "toxicity_classifier",
        rule: "model.toxicity",
        channel: Channel::Any,
        fallback: None,
        inherits: &[],
    },
];

/// What the classifiers decided about a request's prompt texts.
#[derive(Debug, Clone, Default)]
pub struct ModelVerdict {
    /// Findings with their actions (span 0..0: they concern the whole prompt).
    pub findings: Vec<Applied>,
    /// The denied topic that matched, or `off-topic`, for the error message.
    pub topic: Option<String>,
    /// Probability per head and best similarity per topic rail, for logs and `check`.
    pub scores: Vec<(String, f64)>,
}

impl ClassifierPlan {
    /// Whether nothing the classifiers find can change or stop a request: every head, topic
    /// rail and the time budget only record (`monitor`, `allow`, `on_timeout: allow`). Such a
    /// plan is run after the request is forwarded, off the client's critical path.
    pub fn monitor_only(&self) -> bool {
        self.heads.iter().all(|h| h.action <= Action::Monitor)
            && self.denied_action <= Action::Monitor
            && self.off_topic_action <= Action::Monitor
            && self.on_timeout == FailMode::Allow
    }

    /// Every topic example sentence (to embed when the policy or the model loads).
    pub fn examples(&self) -> Vec<String> {
        self.topics
            .denied
            .values()
            .chain(self.topics.allowed.values())
            .flatten()
            .cloned()
            .collect()
    }

    /// Whether the plan scores texts at all (heads or topics in use): a plan used only for the
    /// entity head's tags (`person`, `address`) runs no sequence classification.
    pub fn scores_anything(&self) -> bool {
        !self.heads.is_empty()
            || self.denied_action != Action::Allow
            || self.off_topic_action != Action::Allow
    }

    /// Whether the classifiers score texts of `role`.
    pub fn scores(&self, role: Role) -> bool {
        !self.skip_roles.contains(&role)
    }

    /// The channel a text of `role` arrives by.
    pub fn channel(&self, role: Role) -> Channel {
        if self.supplied_roles.contains(&role) {
            Channel::Supplied
        } else {
            Channel::Typed
        }
    }

    /// Turn scores into findings. `texts` are the scores of every scored text of a request and
    /// `roles` who wrote each: a head fires when any text's best window reaches its threshold,
    /// a denied topic when any window is close to it; `off_topic` when any window of the user
    /// turns checked is close to no allowed topic.
    pub fn decide(&self, model: &Classifier, texts: &[TextScores], roles: &[Role]) -> ModelVerdict {
        let mut v = ModelVerdict::default();
        let finding = |ty: &'static str, rule: &'static str, action: Action, score: f64| Applied {
            ty,
            start: 0,
            end: 0,
            rule,
            action,
            score: score as f32,
        };
        let roles = || roles.iter().copied().chain(std::iter::repeat(Role::User));
        for r in &self.heads {
            let Some(h) = r.head_in(model) else {
                continue;
            };
            let mut scored = false;
            let best = texts
                .iter()
                .zip(roles())
                .filter(|(_, role)| r.channel == Channel::Any || self.channel(*role) == r.channel)
                .filter_map(|(t, _)| t.logit(&h.name))
                .inspect(|_| scored = true)
                .fold(f32::NEG_INFINITY, f32::max);
            if !scored {
                continue;
            }
            let threshold = r.threshold.map_or_else(
                || h.threshold_at(self.operating_point.as_deref()),
                crate::classify::logit,
            );
            let p = crate::classify::sigmoid(f64::from(best));
            v.scores.push((r.head.to_string(), p));
            if f64::from(best) >= threshold {
                v.findings.push(finding(r.ty, r.rule, r.action, p));
            }
        }
        let windows: Vec<&Vec<f32>> = texts.iter().flat_map(|t| &t.embeddings).collect();
        let similarity = |examples: &[String]| -> f32 {
            examples
                .iter()
                .filter_map(|e| model.example(e))
                .flat_map(|e| windows.iter().map(move |w| cosine(w, &e)))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        if self.denied_action != Action::Allow {
            let mut best: Option<(&String, f32)> = None;
            for (name, ex) in &self.topics.denied {
                let s = similarity(ex);
                v.scores.push((format!("denied:{name}"), f64::from(s)));
                if s >= self.topics.threshold && best.is_none_or(|(_, b)| s > b) {
                    best = Some((name, s));
                }
            }
            if let Some((name, s)) = best {
                v.topic = Some(name.clone());
                v.findings.push(finding(
                    "denied_topic",
                    "model.topic.denied",
                    self.denied_action,
                    f64::from(s),
                ));
            }
        }
        if self.off_topic_action != Action::Allow && !self.topics.allowed.is_empty() {
            // the user turns to check: the last `user_turns`, or all; every window of each
            let mut turns: Vec<&TextScores> = texts
                .iter()
                .zip(roles())
                .filter(|(_, r)| *r == Role::User)
                .map(|(t, _)| t)
                .collect();
            if let Some(n) = self.topics.user_turns {
                let skip = turns.len().saturating_sub(n);
                turns.drain(..skip);
            }
            let examples: Vec<Arc<Vec<f32>>> = self
                .topics
                .allowed
                .values()
                .flatten()
                .filter_map(|e| model.example(e))
                .collect();
            let worst = turns
                .iter()
                .flat_map(|t| &t.embeddings)
                .map(|w| {
                    examples
                        .iter()
                        .map(|e| cosine(w, e))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .fold(f32::INFINITY, f32::min);
            if worst.is_finite() {
                v.scores.push(("allowed".into(), f64::from(worst)));
                if worst < self.topics.threshold {
                    v.topic.get_or_insert_with(|| "off-topic".into());
                    v.findings.push(finding(
                        "off_topic",
                        "model.topic.off",
                        self.off_topic_action,
                        f64::from(worst),
                    ));
                }
            }
        }
        v
    }

    /// The finding recorded when the classifiers did not answer.
    pub fn unavailable(&self) -> Applied {
        Applied {
            ty: "classifier_unavailable",
            start: 0,
            end: 0,
            rule: "model.unavailable",
            action: match self.on_timeout {
                FailMode::Allow => Action::Monitor,
                FailMode::Block => Action::Block,
            },
            score: 1.0,
        }
    }
}

/// A finding with the action the policy gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// Finding type.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Start byte in the scanned text.
    pub start: usize,
    /// End byte.
    pub end: usize,
    /// Rule id.
    pub rule: &'static str,
    /// Action taken.
    pub action: Action,
    /// Confidence.
    #[serde(skip)]
    pub score: f32,
}

impl Applied {
    /// The finding reported when a placeholder of a type the output policy blocks was about
    /// to be put back into an answer.
    pub fn restore_blocked(ty: &'static str) -> Applied {
        Applied {
            ty,
            start: 0,
            end: 0,
            rule: "restore.output_policy",
            action: Action::Block,
            score: 1.0,
        }
    }
}

/// What the policy decided about a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The most severe action taken (`allow` when nothing was found).
    pub action: Action,
    /// Every finding, in text order.
    pub findings: Vec<Applied>,
    /// The rewritten text, when an action changed it.
    pub text: Option<String>,
}

impl Decision {
    /// The finding that blocked, if the decision is `block`.
    pub fn blocking(&self) -> Option<&Applied> {
        self.findings.iter().find(|f| f.action == Action::Block)
    }
}

/// One direction of a compiled policy.
#[derive(Debug)]
pub struct Side {
    engine: Engine,
    actions: HashMap<&'static str, Action>,
    /// Built on first use: only the output side of a streamed answer needs it.
    hold: std::sync::OnceLock<crate::hold::Hold>,
}

impl Side {
    fn new(rules: &Rules, cfg: &DetectorConfig) -> Result<Side, String> {
        let mut actions = HashMap::new();
        for t in TYPES {
            // The model's findings are decided by the `classifiers:` plan, not the rule engine.
            if CLASSIFIER_TYPES.contains(&t.name) {
                continue;
            }
            let a = rules
                .0
                .get(t.name)
                .or_else(|| rules.0.get(t.group.name()))
                .copied()
                .unwrap_or(Action::Allow);
            if a != Action::Allow {
                actions.insert(t.name, a);
            }
        }
        let engine = Engine::new(detectors::builtin(cfg), &|t| actions.contains_key(t))
            .map_err(|e| e.to_string())?;
        Ok(Side {
            engine,
            actions,
            hold: std::sync::OnceLock::new(),
        })
    }

    /// What a stream of this side's text must hold back: the patterns of the types whose
    /// action rewrites or stops the text (monitored types change nothing, so they never hold
    /// text back).
    pub fn hold(&self) -> &crate::hold::Hold {
        self.hold.get_or_init(|| {
            self.engine.hold(&|t| {
                let a = self.action(t);
                a.rewrites() || a == Action::Block
            })
        })
    }

    /// The action for a finding type.
    pub fn action(&self, ty: &str) -> Action {
        self.actions.get(ty).copied().unwrap_or(Action::Allow)
    }

    /// Whether this side does anything at all.
    pub fn is_active(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Whether this side can change or stop text (not only monitor).
    pub fn enforces(&self) -> bool {
        self.actions.values().any(|a| *a > Action::Monitor)
    }

    /// Findings with their actions, in text order.
    pub fn findings(&self, text: &str) -> Vec<Applied> {
        let mut found = self.engine.scan(text);
        drop_generic_overlaps(&mut found);
        found
            .into_iter()
            .filter_map(|f| {
                let action = self.action(f.ty);
                (action != Action::Allow).then_some(Applied {
                    ty: f.ty,
                    start: f.start,
                    end: f.end,
                    rule: f.rule,
                    action,
                    score: f.score,
                })
            })
            .collect()
    }

    /// Whether this side acts on a type only a model's entity head finds (`person`,
    /// `address`), so the gateway must tag the texts before applying the rules.
    pub fn wants_entities(&self, types: &[&'static str]) -> bool {
        types.iter().any(|t| self.action(t) != Action::Allow)
    }

    /// The entity types (of `crate::finding::ENTITY_TYPES`) this side acts on, explicitly or
    /// through its `pii` group.
    pub fn entity_types(&self) -> Vec<&'static str> {
        crate::finding::ENTITY_TYPES
            .iter()
            .copied()
            .filter(|t| self.action(t) != Action::Allow)
            .collect()
    }

    /// Add the entity head's spans of a text to the rules' findings of the same text, with this
    /// side's actions (spans of types it allows are dropped), in text order. Where a span and a
    /// rule's finding overlap, the rewrite keeps the stronger, then the longer
    /// ([`select_rewrites`]).
    pub fn add_entities(&self, found: &mut Vec<Applied>, spans: &[crate::classify::EntitySpan]) {
        let before = found.len();
        found.extend(spans.iter().filter_map(|s| {
            let action = self.action(s.ty);
            (action != Action::Allow && s.start < s.end).then_some(Applied {
                ty: s.ty,
                start: s.start,
                end: s.end,
                rule: "model.entities",
                action,
                score: s.score,
            })
        }));
        if found.len() > before {
            found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        }
    }

    /// Scan and apply.
    pub fn evaluate(&self, text: &str, vault: &mut Vault, pseudo: &Pseudonymizer) -> Decision {
        self.evaluate_with(text, &[], vault, pseudo)
    }

    /// [`Side::evaluate`] with the entity head's spans of `text` ([`Side::add_entities`]).
    pub fn evaluate_with(
        &self,
        text: &str,
        entities: &[crate::classify::EntitySpan],
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Decision {
        self.evaluate_as(text, Role::User, entities, vault, pseudo)
    }

    /// [`Side::evaluate_with`] for text written by `role` (a type of
    /// [`crate::finding::SUPPLIED_ONLY`] counts only in supplied text).
    pub fn evaluate_as(
        &self,
        text: &str,
        role: Role,
        entities: &[crate::classify::EntitySpan],
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Decision {
        let mut findings = self.findings(text);
        findings.retain(|f| crate::finding::counts_in(f.ty, role));
        self.add_entities(&mut findings, entities);
        let action = findings
            .iter()
            .map(|f| f.action)
            .max()
            .unwrap_or(Action::Allow);
        let text = if action == Action::Block || !findings.iter().any(|f| f.action.rewrites()) {
            None
        } else {
            Some(rewrite(text, &findings, vault, pseudo))
        };
        Decision {
            action,
            findings,
            text,
        }
    }
}

/// Validate the `classifiers:` section against the input rules and compile it; every problem
/// goes to `errs` (`None` when there was one).
fn compile_classifiers(
    loaded: &Loaded<PolicyFile>,
    c: &ClassifiersSection,
    rules: &Rules,
    errs: &mut Vec<YamlError>,
) -> Option<ClassifierPlan> {
    let before = errs.len();
    let plain = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
    };
    if !plain(&c.model) || c.model.starts_with('.') {
        errs.push(loaded.error_at(
            "classifiers.model",
            format!(
                "`{}` is not a bundle name (letters, digits, `-`, `_`, `.`)",
                c.model
            ),
        ));
    }
    if let Some(v) = &c.version
        && (!plain(v) || v.starts_with('.'))
    {
        errs.push(loaded.error_at("classifiers.version", format!("`{v}` is not a version")));
    }
    if c.timeout < Duration::from_millis(1) || c.timeout > Duration::from_secs(10) {
        errs.push(loaded.error_at(
            "classifiers.timeout",
            format!("{:?} is out of range 1ms..=10s", c.timeout),
        ));
    }
    if let Some(p) = &c.operating_point
        && !plain(p)
    {
        errs.push(loaded.error_at(
            "classifiers.operating_point",
            format!("`{p}` is not an operating point name"),
        ));
    }
    for (h, p) in &c.thresholds {
        if !(*p > 0.0 && *p < 1.0) {
            errs.push(loaded.error_at(
                &format!("classifiers.thresholds.{h}"),
                format!("{p} must be a probability strictly between 0 and 1"),
            ));
        }
    }
    let action = |ty: &'static str| -> Result<Action, YamlError> {
        let group = type_info(ty).map(|t| t.group.name()).unwrap_or("");
        let (key, a) = match rules.0.get(ty) {
            Some(a) => (ty, *a),
            None => (group, rules.0.get(group).copied().unwrap_or(Action::Allow)),
        };
        if matches!(a, Action::Allow | Action::Monitor | Action::Block) {
            Ok(a)
        } else {
            Err(loaded.error_at(
                &format!("input.{key}"),
                format!(
                    "`{ty}` scores the whole prompt and cannot `{a}` a span of it; give `input.{ty}` `block` or `monitor`"
                ),
            ))
        }
    };
    let mut heads = Vec::new();
    for k in &HEADS {
        // a type the policy names takes its own action; one it does not name takes the action
        // of the type it inherits from (when that one is named), else its group's
        let ty = if rules.0.contains_key(k.ty) {
            k.ty
        } else {
            k.inherits
                .iter()
                .copied()
                .find(|t| rules.0.contains_key(*t))
                .unwrap_or(k.ty)
        };
        let a = action(ty).unwrap_or_else(|e| {
            errs.push(e);
            Action::Allow
        });
        if a != Action::Allow {
            heads.push(HeadRule {
                head: k.head,
                ty: k.ty,
                rule: k.rule,
                action: a,
                threshold: c.thresholds.get(k.head).copied(),
                channel: k.channel,
                fallback: k.fallback,
            });
        }
    }
    for h in c.thresholds.keys() {
        if !heads.iter().any(|r| r.head == h) {
            let known: Vec<&str> = HEADS.iter().map(|k| k.head).collect();
            errs.push(loaded.error_at(
                &format!("classifiers.thresholds.{h}"),
                format!(
                    "no rule uses the `{h}` head (known heads: {}; give `input.{h}_classifier` an action)",
                    known.join(", ")
                ),
            ));
        }
    }

    let t = &c.topics;
    if !(t.threshold > 0.0 && t.threshold <= 1.0) {
        errs.push(loaded.error_at(
            "classifiers.topics.threshold",
            format!("{} must be a cosine similarity in (0, 1]", t.threshold),
        ));
    }
    for (kind, topics) in [("denied", &t.denied), ("allowed", &t.allowed)] {
        for (name, ex) in topics {
            if ex.is_empty() || ex.iter().any(|e| e.trim().is_empty()) {
                errs.push(loaded.error_at(
                    &format!("classifiers.topics.{kind}.{name}"),
                    "a topic needs at least one non-empty example sentence",
                ));
            }
        }
    }
    let mut action_or_report = |ty| {
        action(ty).unwrap_or_else(|e| {
            errs.push(e);
            Action::Allow
        })
    };
    let denied_action = action_or_report("denied_topic");
    let off_topic_action = action_or_report("off_topic");
    for (list, ty, a) in [
        (&t.denied, "denied_topic", denied_action),
        (&t.allowed, "off_topic", off_topic_action),
    ] {
        let kind = if ty == "denied_topic" {
            "denied"
        } else {
            "allowed"
        };
        if !list.is_empty() && a == Action::Allow {
            errs.push(loaded.error_at(
                &format!("classifiers.topics.{kind}"),
                format!("topics are listed but no input rule gives `{ty}` an action (add `input.{ty}: block`)"),
            ));
        }
        if list.is_empty() && a != Action::Allow && rules.0.contains_key(ty) {
            errs.push(loaded.error_at(
                &format!("input.{ty}"),
                format!("`{ty}` has an action but `classifiers.topics.{kind}` lists no topics"),
            ));
        }
    }
    let denied_action = if t.denied.is_empty() {
        Action::Allow
    } else {
        denied_action
    };
    let off_topic_action = if t.allowed.is_empty() {
        Action::Allow
    } else {
        off_topic_action
    };
    if errs.len() > before {
        return None;
    }
    let tags_entities = crate::finding::ENTITY_TYPES.iter().any(|t| {
        rules
            .0
            .get(*t)
            .or_else(|| rules.0.get(Group::Pii.name()))
            .is_some_and(|a| *a != Action::Allow)
    });
    if heads.is_empty()
        && denied_action == Action::Allow
        && off_topic_action == Action::Allow
        && !tags_entities
    {
        errs.push(loaded.error_at(
            "classifiers",
            "the section does nothing: give `input.injection_classifier`, `input.toxicity_classifier`, `input.person` or `input.address` an action, or list topics",
        ));
        return None;
    }
    Some(ClassifierPlan {
        model: c.model.clone(),
        version: c.version.clone(),
        timeout: c.timeout,
        on_timeout: c.on_timeout,
        heads,
        topics: t.clone(),
        denied_action,
        off_topic_action,
        skip_roles: c.skip_roles.clone(),
        supplied_roles: c.supplied_roles.clone(),
        operating_point: c.operating_point.clone(),
    })
}

/// A generic-secret finding says less than a provider-specific one at the same place.
fn drop_generic_overlaps(found: &mut Vec<Finding>) {
    let specific: Vec<(usize, usize)> = found
        .iter()
        .filter(|f| {
            f.ty != "generic_secret" && type_info(f.ty).is_some_and(|t| t.group == Group::Secrets)
        })
        .map(|f| (f.start, f.end))
        .collect();
    if specific.is_empty() {
        return;
    }
    found.retain(|f| {
        f.ty != "generic_secret" || !specific.iter().any(|&(s, e)| f.start < e && s < f.end)
    });
}

/// Non-overlapping rewrites: when rewriting findings overlap, the more severe action wins,
/// then the longer span.
pub fn select_rewrites(findings: &[Applied]) -> Vec<&Applied> {
    let mut chosen: Vec<&Applied> = Vec::new();
    for f in findings.iter().filter(|f| f.action.rewrites()) {
        match chosen.last() {
            Some(last) if f.start < last.end => {
                if (f.action, f.end - f.start) > (last.action, last.end - last.start) {
                    chosen.pop();
                    chosen.push(f);
                }
            }
            _ => chosen.push(f),
        }
    }
    chosen
}

/// Apply the rewriting findings to `text`.
pub fn rewrite(
    text: &str,
    findings: &[Applied],
    vault: &mut Vault,
    pseudo: &Pseudonymizer,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in select_rewrites(findings) {
        if f.start < at || f.end > text.len() {
            continue;
        }
        let value = &text[f.start..f.end];
        if let Some(r) = replacement(f.action, f.ty, value, vault, pseudo) {
            out.push_str(&text[at..f.start]);
            out.push_str(&r);
            at = f.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

/// Why a policy file cannot be used: every problem found, each located in the file.
pub type PolicyError = crate::yaml::YamlErrors;

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// What it is for.
    pub description: Option<String>,
    /// Settings as written.
    pub settings: Settings,
    /// Rules for prompts.
    pub input: Side,
    /// Rules for answers.
    pub output: Side,
    /// Model classifiers on prompts, when the policy has a `classifiers:` section.
    pub classifiers: Option<ClassifierPlan>,
    /// Agents' tool traffic (`/mcp/<server>`).
    pub mcp: McpSection,
    /// The file it came from.
    pub source: PathBuf,
    /// This compilation's number, unique in the process (a reload makes a new one, even of an
    /// unchanged file): what caches of this policy's results key on, so a changed policy never
    /// reuses a finding the old one made.
    pub id: u64,
}

/// The next [`Policy::id`].
static POLICY_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Policy {
    /// Load, validate and compile a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let src = std::fs::read_to_string(path).map_err(|e| YamlError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            path: None,
            message: format!("cannot read the policy: {e}"),
        })?;
        Policy::parse(path, &src)
    }

    /// Validate and compile policy text (`path` names it in errors and anchors `lexicon_dir`).
    /// Every problem is reported, each located (file, line, column, dotted path).
    pub fn parse(path: &Path, src: &str) -> Result<Policy, PolicyError> {
        let loaded: Loaded<PolicyFile> = parse_yaml(path, src)?;
        let p = &loaded.value;
        let mut errs: Vec<YamlError> = Vec::new();
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(loaded.error_at(
                "name",
                format!(
                    "policy name `{}` must be non-empty and use only letters, digits, `-` and `_`",
                    p.name
                ),
            ));
        }
        for (dir, rules) in [("input", &p.input), ("output", &p.output)] {
            for (key, action) in &rules.0 {
                let known = type_info(key).is_some() || Group::ALL.iter().any(|g| g.name() == key);
                if !known {
                    errs.push(loaded.error_at(
                        &format!("{dir}.{key}"),
                        format!(
                            "unknown finding type or family `{key}`; known families: {}; known types: {}",
                            Group::ALL.map(Group::name).join(", "),
                            TYPES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if CLASSIFIER_TYPES.contains(&key.as_str()) && dir == "output" {
                    errs.push(loaded.error_at(
                        &format!("{dir}.{key}"),
                        format!(
                            "`{key}` comes from the model classifiers, which score prompts only"
                        ),
                    ));
                }
                if crate::finding::ENTITY_TYPES.contains(&key.as_str()) && *action != Action::Allow
                {
                    if dir == "output" {
                        errs.push(loaded.error_at(
                            &format!("{dir}.{key}"),
                            format!(
                                "`{key}` is found by the model's entity head, which tags prompts only (a placeholder is restored in the answer; set `input.{key}`)"
                            ),
                        ));
                    } else if p.classifiers.is_none() {
                        errs.push(loaded.error_at(
                            &format!("{dir}.{key}"),
                            format!(
                                "`{key}` is found by the entity head of the `classifiers:` bundle, and this policy has no `classifiers:` section: add one (`classifiers: {{model: guard}}`) or set `{key}: allow`"
                            ),
                        ));
                    }
                }
                if key == "classifier_unavailable" {
                    errs.push(loaded.error_at(
                        &format!("{dir}.{key}"),
                        "`classifier_unavailable` takes its action from `classifiers.on_timeout`",
                    ));
                }
                if dir == "output" && *action == Action::Placeholder {
                    errs.push(loaded.error_at(
                        &format!("{dir}.{key}"),
                        "`placeholder` is for input only (placeholders are restored in the answer); use `redact` or `pseudonymize` for answers",
                    ));
                }
            }
        }
        let s = &p.settings;
        if !(16..=4096).contains(&s.stream_hold_back_bytes) {
            errs.push(loaded.error_at(
                "settings.stream_hold_back_bytes",
                format!("{} is out of range 16..=4096", s.stream_hold_back_bytes),
            ));
        }
        if s.block_status != 400 && s.block_status != 403 {
            errs.push(loaded.error_at(
                "settings.block_status",
                format!("{} must be 400 or 403", s.block_status),
            ));
        }
        if !(64..=1_048_576).contains(&s.max_decode_bytes) {
            errs.push(loaded.error_at(
                "settings.max_decode_bytes",
                format!("{} is out of range 64..=1048576", s.max_decode_bytes),
            ));
        }
        if s.canary.as_ref().is_some_and(|c| c.len() < 8) {
            errs.push(loaded.error_at(
                "settings.canary",
                "the canary must be at least 8 characters, or it will match ordinary text",
            ));
        }
        for (i, h) in s.allowed_link_hosts.iter().enumerate() {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if bare.is_empty() || bare.contains(['/', ':', '*', ' ']) {
                errs.push(loaded.error_at(
                    &format!("settings.allowed_link_hosts[{i}]"),
                    format!("`{h}` is not a host name (write `example.com` or `*.example.com`)"),
                ));
            }
        }
        // lexicons: only when some side uses toxicity
        let uses_tox = [&p.input, &p.output]
            .iter()
            .any(|r| r.0.get("toxicity").is_some_and(|a| *a != Action::Allow));
        let mut lexicons = Vec::new();
        if uses_tox {
            let base = path.parent().unwrap_or(Path::new("."));
            let dir = base.join(&s.lexicon_dir);
            for (i, lang) in s.toxicity_languages.iter().enumerate() {
                if lang.is_empty()
                    || !lang
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    errs.push(loaded.error_at(
                        &format!("settings.toxicity_languages[{i}]"),
                        format!("`{lang}` is not a language code"),
                    ));
                    continue; // and never read as a path
                }
                let file = dir.join(format!("{lang}.txt"));
                match read_lexicon(&file) {
                    Ok(words) => lexicons.push((lang.clone(), words)),
                    Err(e) => errs.push(loaded.error_at(
                        &format!("settings.toxicity_languages[{i}]"),
                        format!("cannot read the word list {}: {e}", file.display()),
                    )),
                }
            }
        }
        let cfg = DetectorConfig {
            canary: s.canary.clone(),
            allowed_link_hosts: s.allowed_link_hosts.clone(),
            lexicons,
            max_decode_bytes: s.max_decode_bytes,
        };
        let classifiers = match &p.classifiers {
            Some(c) => compile_classifiers(&loaded, c, &p.input, &mut errs),
            None => None,
        };
        for (list, pats) in [
            ("allow_tools", &p.mcp.allow_tools),
            ("deny_tools", &p.mcp.deny_tools),
        ] {
            for (i, pat) in pats.iter().enumerate() {
                let plain =
                    |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '/');
                if pat.is_empty() || !pat.chars().all(plain) || (pat != "*" && !pat.contains('.')) {
                    errs.push(loaded.error_at(
                        &format!("mcp.{list}[{i}]"),
                        format!(
                            "`{pat}` is not a tool pattern: write `server.tool` (the server's name in the gateway config, then the tool's), with `*` for any characters (`github.*`, `*.delete_*`, `*`)"
                        ),
                    ));
                }
            }
        }
        if !errs.is_empty() {
            return Err(PolicyError { errors: errs });
        }
        let input = Side::new(&p.input, &cfg).map_err(|e| loaded.error_at("input", e))?;
        let output = Side::new(&p.output, &cfg).map_err(|e| loaded.error_at("output", e))?;
        let p = loaded.value;
        Ok(Policy {
            name: p.name,
            version: p.version,
            description: p.description,
            settings: p.settings,
            input,
            output,
            classifiers,
            mcp: p.mcp,
            source: path.to_path_buf(),
            id: POLICY_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// How placeholders are put back into an answer under this policy (`json_escape` for text
    /// inside a JSON string, such as tool-call arguments).
    pub fn restore_rule<'a>(
        &'a self,
        pseudo: &'a Pseudonymizer,
        json_escape: bool,
    ) -> RestoreRule<'a> {
        RestoreRule {
            output: match self.settings.restore {
                RestoreMode::Policy => Some(&self.output),
                RestoreMode::Always => None,
            },
            json_escape,
            pseudo,
        }
    }

    /// The side for a direction.
    pub fn side(&self, d: Direction) -> &Side {
        match d {
            Direction::Input => &self.input,
            Direction::Output => &self.output,
        }
    }

    /// The JSON Schema of policy files.
    pub fn json_schema() -> serde_json::Value {
        let mut s = schemars::schema_for!(PolicyFile).to_value();
        if let Some(o) = s.as_object_mut() {
            o.insert(
                "title".into(),
                "Portcullis policy file (generated by `gateway policy-schema`; do not edit)".into(),
            );
        }
        s
    }
}

/// Read a word list: one entry per line, `#` comments and blank lines ignored.
pub fn read_lexicon(file: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(file)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Policy, PolicyError> {
        Policy::parse(Path::new("p.yaml"), s)
    }

    fn keys() -> (Vault, Pseudonymizer) {
        (Vault::default(), Pseudonymizer::new(b"test-key", "t"))
    }

    #[test]
    fn only_a_plan_that_records_everything_runs_off_the_critical_path() {
        let plan = |input: &str, extra: &str| {
            parse(&format!(
                "name: p\nversion: 1\ninput:\n{input}classifiers:\n  model: guard\n{extra}"
            ))
            .unwrap()
            .classifiers
            .unwrap()
        };
        assert!(plan("  injection_classifier: monitor\n", "").monitor_only());
        assert!(!plan("  injection_classifier: block\n", "").monitor_only());
        assert!(
            !plan("  injection_classifier: monitor\n", "  on_timeout: block\n").monitor_only(),
            "failing closed needs the answer before forwarding"
        );
        assert!(
            !plan(
                "  injection_classifier: monitor\n  denied_topic: block\n",
                "  topics:\n    denied:\n      politics: [Who should I vote for?]\n"
            )
            .monitor_only()
        );
        // the shipped policies: default records, strict blocks
        let shipped = |f: &str| {
            Policy::load(
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../policies")
                    .join(f),
            )
            .unwrap()
            .classifiers
            .unwrap()
            .monitor_only()
        };
        assert!(shipped("default.yaml"));
        assert!(!shipped("strict.yaml"));
    }

    #[test]
    fn family_rules_and_type_overrides() {
        let p =
            parse("name: a\nversion: 1\ninput:\n  pii: redact\n  email: placeholder\n").unwrap();
        assert_eq!(p.input.action("phone"), Action::Redact);
        assert_eq!(p.input.action("email"), Action::Placeholder);
        assert_eq!(p.input.action("aws_key"), Action::Allow);
        let (mut v, ps) = keys();
        let d = p
            .input
            .evaluate("mail a@b.io or call +14155550132", &mut v, &ps);
        assert_eq!(d.action, Action::Placeholder);
        assert_eq!(d.text.as_deref(), Some("mail <EMAIL_1> or call [PHONE]"));
        assert_eq!(v.restore("hi <EMAIL_1>"), "hi a@b.io");
    }

    #[test]
    fn block_wins_and_leaves_the_text() {
        let p = parse("name: a\nversion: 1\ninput:\n  pii: redact\n  secrets: block\n").unwrap();
        let (mut v, ps) = keys();
        let d = p
            .input
            .evaluate("a@b.io key AKIAQ7LMZ2XABCDEFGHI", &mut v, &ps);
        assert_eq!(d.action, Action::Block);
        assert_eq!(d.blocking().unwrap().rule, "secrets.aws_access_key");
        assert!(d.text.is_none());
    }

    #[test]
    fn errors_are_located() {
        let one = |src: &str| {
            let e = parse(src).unwrap_err();
            assert_eq!(e.errors.len(), 1, "{e}");
            e.errors.into_iter().next().unwrap()
        };
        let e = one("name: a\nversion: 1\ninput:\n  emial: redact\n");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("unknown finding type"), "{e}");
        let e = one("name: a\nversion: 1\noutput:\n  email: placeholder\n");
        assert!(e.message.contains("input only"), "{e}");
        let e = one("name: a\nversion: 1\ninput:\n  email: scrub\n");
        assert_eq!(e.line, Some(4), "{e}");
        let e = one("name: a\nversion: 1\nsettings:\n  block_status: 500\n");
        assert_eq!(e.line, Some(4), "{e}");
    }

    /// Like the gateway config: one pass reports every problem, each at its own line, so a
    /// policy author fixes them all at once.
    #[test]
    fn every_error_is_reported_with_its_line() {
        let src = "\
name: 'bad name'
version: 1
settings:
  block_status: 500
  stream_hold_back_bytes: 2
  canary: short
  allowed_link_hosts: [ok.example, 'http://x/']
input:
  emial: redact
  classifier_unavailable: block
output:
  email: placeholder
  injection_classifier: block
classifiers:
  model: '../up'
  timeout: 1h
  thresholds: {injection: 2.0}
";
        let e = parse(src).unwrap_err();
        let got: Vec<(Option<usize>, String)> = e
            .errors
            .iter()
            .map(|e| (e.line, e.path.clone().unwrap_or_default()))
            .collect();
        for (line, path) in [
            (1, "name"),
            (4, "settings.block_status"),
            (5, "settings.stream_hold_back_bytes"),
            (6, "settings.canary"),
            (7, "settings.allowed_link_hosts[1]"),
            (9, "input.emial"),
            (10, "input.classifier_unavailable"),
            (12, "output.email"),
            (13, "output.injection_classifier"),
            (15, "classifiers.model"),
            (16, "classifiers.timeout"),
            (17, "classifiers.thresholds.injection"),
        ] {
            assert!(
                got.contains(&(Some(line), path.to_string())),
                "missing {path} at line {line} in:\n{e}"
            );
        }
        assert_eq!(e.to_string().lines().count(), e.errors.len(), "{e}");
    }

    #[test]
    fn overlapping_rewrites_pick_the_stronger() {
        let mk = |s, e, a| Applied {
            ty: "email",
            start: s,
            end: e,
            rule: "r",
            action: a,
            score: 1.0,
        };
        let f = [
            mk(0, 5, Action::Redact),
            mk(2, 9, Action::Placeholder),
            mk(10, 12, Action::Redact),
        ];
        let chosen: Vec<_> = select_rewrites(&f)
            .into_iter()
            .map(|a| (a.start, a.end))
            .collect();
        assert_eq!(chosen, [(2, 9), (10, 12)]);
    }

    #[test]
    fn the_shipped_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(
            n >= 4,
            "expected the four shipped policies in {}",
            dir.display()
        );
    }

    #[test]
    fn the_checked_in_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/schema.json");
        let want = serde_json::to_string_pretty(&Policy::json_schema()).unwrap() + "\n";
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "policies/schema.json is stale: run `make schema`"
        );
    }

    #[test]
    fn names_and_addresses_need_a_classifiers_section_and_stay_on_the_input_side() {
        let e = parse("name: a\nversion: 1\ninput:\n  person: redact\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.yaml:4:3") && e.contains("no `classifiers:` section"),
            "{e}"
        );
        let e = parse(
            "name: a\nversion: 1\ninput:\n  email: redact\noutput:\n  address: redact\nclassifiers:\n  model: guard\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("output.address") && e.contains("tags prompts only"),
            "{e}"
        );
        // a `pii:` family action without a model leaves names untagged (rules only)
        let p = parse("name: a\nversion: 1\ninput:\n  pii: redact\n").unwrap();
        assert!(p.classifiers.is_none());
        // a classifiers section used only for the entity head is a use
        let p = parse(
            "name: a\nversion: 1\ninput:\n  person: placeholder\nclassifiers:\n  model: guard\n",
        )
        .unwrap();
        let plan = p.classifiers.as_ref().unwrap();
        assert!(!plan.scores_anything());
        assert!(p.input.wants_entities(crate::finding::ENTITY_TYPES));
        // `allow` opts out
        let p = parse(
            "name: a\nversion: 1\ninput:\n  pii: placeholder\n  person: allow\n  address: allow\n",
        )
        .unwrap();
        assert!(!p.input.wants_entities(crate::finding::ENTITY_TYPES));
        assert!(p.input.entity_types().is_empty());
        // the types a side acts on, named or through its group: what a bundle must tag
        let p = parse(
            "name: a\nversion: 1\ninput:\n  pii: placeholder\n  person: allow\nclassifiers:\n  model: guard\n",
        )
        .unwrap();
        assert_eq!(p.input.entity_types(), ["address"]);
    }
}
