//! The gateway's request path: one [`ProxyHttp`] implementation, phase by phase.
//!
//! ```text
//! request_filter       request id; route (404/405); API key (401); request-rate and
//!                      concurrency limits (429); body read whole with a size limit (413),
//!                      JSON checked (422); policy selected (tenant > route > default) and the
//!                      prompt fields evaluated: block (400/403 naming the rule) or rewrite;
//!                      LLM tokens reserved against the key's and tenant's quotas (429)
//! upstream_peer        a backend from the pool: healthy, circuit closed, least loaded (503 if none)
//! upstream_request_filter  x-request-id; Content-Length of the body we forward
//! request_body_filter  substitutes the buffered body (see `body.rs`)
//! response_filter      time to first byte; x-request-id; x-portcullis-error-source on errors
//! response_body_filter streams: each event rewritten as it arrives (hold-back only where an
//!                      entity may be split; a block ends the stream with an error event);
//!                      whole JSON answers: buffered, rewritten, placeholders restored
//! fail_to_connect /
//! error_while_proxy    backend failure -> circuit breaker; retry on another backend only before
//!                      the first response byte
//! fail_to_proxy        the gateway's own error in the route's shape, or a final error event
//!                      when a stream was already under way
//! logging              metrics, circuit breaker success, token quota reconciled with the
//!                      answer's real count, one access log line, one audit record
//! ```

pub mod access;
pub mod body;
mod mcp;
pub mod monitor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource};

use filters::protocol::{
    AnswerCx, AnswerStream, Dialect, InspectError, Kind, Protocol, Role, parse_strict,
};
use filters::sse::Step;
use filters::{Action, Applied, Direction, Policy, Pseudonymizer, Vault};

use crate::error::{ERROR_SOURCE_HEADER, ErrorKind, GatewayError, REQUEST_ID_HEADER};
use crate::guard::{self, Guard};
use crate::keys::Caller;
use crate::limits::Admission;
use crate::metrics::{Metrics, RouteMetrics};
use crate::routes::{Route, RouteError};
use crate::upstream::{Lease, Pool};
use access::{Access, UsageMeter};
use monitor::{MonitorBudget, ToScore};

/// Settings of the request path that do not belong to a pool.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest silence accepted while reading a request body.
    pub body_read_timeout: Duration,
    /// LoRA adapters (rules, live versions), when configured.
    pub adapters: Option<Arc<crate::adapters::Adapters>>,
    /// Most monitor-only classifications running after their requests were forwarded (the
    /// encoder sessions, `models.workers`): beyond it a request is not monitored (counted as
    /// `skipped`) rather than queued, so the ones that run finish within their time budget.
    pub monitor_concurrency: usize,
    /// The share of the sessions' time monitoring may use (`models.monitor_share`).
    pub monitor_share: f64,
    /// MCP servers served at `/mcp/<name>`, when configured.
    pub mcp: Option<Arc<crate::mcp::Mcp>>,
}

/// The gateway proxy. Cheap to share: everything inside is behind `Arc`s.
pub struct Gateway {
    default_pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    /// Per-route series, indexed by `Route::index()`; the last one is for unmatched requests.
    route_metrics: Vec<RouteMetrics>,
    settings: ProxySettings,
    guard: Option<Arc<Guard>>,
    access: Access,
    /// Permits for monitor-only classifications in flight (`ProxySettings::monitor_concurrency`).
    monitor_slots: Arc<tokio::sync::Semaphore>,
    /// What is left of monitoring's CPU share.
    monitor_budget: Arc<MonitorBudget>,
}

impl Gateway {
    /// A gateway forwarding to `default_pool`, applying `guard`'s policies when given, and
    /// `access`'s keys, limits and audit trail.
    pub fn new(
        default_pool: Arc<Pool>,
        metrics: Arc<Metrics>,
        settings: ProxySettings,
        guard: Option<Arc<Guard>>,
        access: Access,
    ) -> Self {
        let route_metrics = Route::all()
            .map(|r| r.label())
            .chain(std::iter::once(UNMATCHED))
            .map(|label| metrics.for_route(label))
            .collect();
        Gateway {
            default_pool,
            metrics,
            route_metrics,
            monitor_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.monitor_concurrency.max(1),
            )),
            monitor_budget: Arc::new(MonitorBudget::new(
                settings.monitor_share,
                settings.monitor_concurrency.max(1),
            )),
            settings,
            guard,
            access,
        }
    }
}

/// What happens to the answer of a guarded request.
enum Output {
    /// Passed through untouched.
    Off,
    /// An event stream, rewritten event by event.
    Stream(Box<AnswerStream>),
    /// A whole JSON answer, buffered until its end.
    Whole(Vec<u8>),
    /// A policy ended the stream; the next body chunk closes the connection.
    Closing,
    /// Done (blocked or over the buffer limit): drop whatever else comes.
    Done,
}

/// A request's guardrail state: its policy snapshot, vault and pseudonymizer.
struct ReqGuard {
    policy: Arc<Policy>,
    tenant: String,
    pseudo: Pseudonymizer,
    vault: Vault,
    findings: Vec<Applied>,
    output: Output,
    output_started: Option<Instant>,
}

/// Per-request state, created by [`ProxyHttp::new_ctx`] and dropped when the request ends.
pub struct RequestCtx {
    started: Instant,
    request_id: String,
    route: Option<Route>,
    /// The error shape of the request's clients.
    dialect: Dialect,
    /// The request's API family, once its body is read.
    proto: Option<&'static dyn Protocol>,
    method: http::Method,
    body: Bytes,
    /// The body, parsed (when the guard or a token quota needed it).
    json: Option<serde_json::Value>,
    body_buffered: bool,
    pool: Option<Arc<Pool>>,
    lease: Option<Lease>,
    tried: Vec<usize>,
    attempts: u32,
    attempt_started: Option<Instant>,
    upstream_started: Option<Instant>,
    upstream_ended: Option<Instant>,
    first_byte: Option<Duration>,
    upstream_status: Option<u16>,
    response_started: bool,
    streaming: bool,
    /// Why the gateway failed, decided where the failure was seen (answered in fail_to_proxy).
    failure: Option<GatewayError>,
    /// The error the gateway answered, for metrics and the log line.
    gateway_error: Option<ErrorKind>,
    bytes_out: u64,
    in_flight: Option<InFlight>,
    guard: Option<ReqGuard>,
    /// The stream was ended by a policy: fail_to_proxy must not add another error event.
    policy_closed: bool,
    /// Who is calling (resolved once, in `check_access`; anonymous until then).
    caller: Caller,
    /// What the limiter granted (in-flight slot, token reservation, headroom).
    admission: Admission,
    /// The limit that refused the request, if one did.
    refused_by: Option<&'static str>,
    /// Most prompt tokens the forwarded body can make (see `reserve_tokens`).
    prompt_bound: u64,
    /// Most tokens the request lets the backend generate, all sequences together, when known.
    max_generated: Option<u64>,
    /// The model bundle that classified the prompt, and how long it took.
    model: Option<(String, Duration)>,
    /// The denied topic (or `off-topic`) the classifiers found.
    model_topic: Option<String>,
    /// The LoRA adapter the request was routed to.
    adapter: Option<String>,
    /// A monitor-only classification still running (its findings join the audit record).
    monitor: Option<tokio::task::JoinHandle<Vec<Applied>>>,
    /// The entity tagging pass's scores of this request's texts and the digest of the bundle
    /// that made them: the classifiers that follow take them instead of running a second pass
    /// (with or without the scan-once cache).
    tagged_scores: Option<TaggedScores>,
    /// A `/v1/models` answer being buffered, to list only what the caller may use.
    listing: Option<Vec<u8>>,
    /// The answer's token counts.
    usage: UsageMeter,
    /// Tokens settled against the quotas (once).
    tokens: Option<crate::audit::TokenCounts>,
    /// An MCP request's audit records, one per JSON-RPC call (written in `logging` instead of
    /// the request's own).
    mcp_records: Vec<crate::audit::Record>,
}

/// Keeps `portcullis_in_flight_requests` right whatever path the request ends on.
struct InFlight(Arc<Metrics>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Accept a client's request id if it is short and plain; otherwise mint one.
fn request_id_from(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// Map a pingora error to what the gateway tells the client. `None`: the client is gone.
fn classify(e: &Error) -> Option<ErrorKind> {
    use ErrorType::*;
    if *e.esource() == ErrorSource::Downstream {
        return match e.etype() {
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => None,
            _ => Some(ErrorKind::Internal),
        };
    }
    Some(match e.etype() {
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | BindError
        | SocketError | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert
        | HandshakeError | TLSWantX509Lookup | ConnectProxyFailure => ErrorKind::UpstreamConnect,
        ReadTimedout | WriteTimedout => ErrorKind::UpstreamTimeout,
        InternalError | UnknownError => {
            if *e.esource() == ErrorSource::Upstream {
                ErrorKind::UpstreamProtocol
            } else {
                ErrorKind::Internal
            }
        }
        _ => {
            if *e.esource() == ErrorSource::Internal {
                ErrorKind::Internal
            } else {
                ErrorKind::UpstreamProtocol
            }
        }
    })
}

/// The failure reason label of an upstream error.
fn failure_reason(kind: ErrorKind, response_started: bool) -> &'static str {
    match kind {
        ErrorKind::UpstreamConnect => "connect_error",
        ErrorKind::UpstreamTimeout => "timeout",
        _ if response_started => "broken_response",
        _ => "connection_error",
    }
}

fn client_message(kind: ErrorKind, pool: &str) -> String {
    match kind {
        ErrorKind::UpstreamConnect => {
            format!("the gateway could not connect to any backend of upstream `{pool}`")
        }
        ErrorKind::UpstreamTimeout => {
            format!("the backend of upstream `{pool}` did not answer in time")
        }
        ErrorKind::UpstreamProtocol => format!(
            "the backend of upstream `{pool}` closed the connection or sent an invalid response"
        ),
        ErrorKind::NoHealthyUpstream => format!("no healthy backend in upstream `{pool}`"),
        _ => "internal gateway error".to_string(),
    }
}

impl Gateway {
    /// Answer the request with a gateway error in the route's shape.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
        close: bool,
    ) -> pingora::Result<()> {
        self.respond_with(session, ctx, err, close, &[]).await
    }

    /// [`Gateway::respond`] with extra headers (`Retry-After`, `x-ratelimit-*`, ...).
    async fn respond_with(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
        close: bool,
        extra: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        let body = err.body(ctx.dialect);
        let mut h = ResponseHeader::build(err.kind.status(), Some(6 + extra.len()))?;
        h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        h.insert_header(ERROR_SOURCE_HEADER, "gateway")?;
        h.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        for (k, v) in extra {
            h.insert_header(*k, v.as_str())?;
        }
        if err.kind == ErrorKind::MethodNotAllowed
            && let Some(r) = ctx.route
        {
            h.insert_header(http::header::ALLOW, r.method().as_str())?;
        }
        if close {
            // The request body was not (fully) read: the connection cannot be reused.
            session.set_keepalive(None);
        }
        self.metrics
            .gateway_errors
            .with_label_values(&[route_label(ctx), err.kind.code()])
            .inc();
        ctx.gateway_error = Some(err.kind);
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }
}

/// Route label of requests that match no route.
impl Gateway {
    /// Count findings and the decision of one prompt or answer.
    fn record(
        &self,
        dir: Direction,
        policy: &str,
        findings: &[Applied],
        action: Action,
        took: Duration,
    ) {
        let m = &self.metrics;
        for f in findings {
            m.guard_findings
                .with_label_values(&[dir.name(), f.ty, f.action.name()])
                .inc();
        }
        m.guard_decisions
            .with_label_values(&[dir.name(), policy, action.name()])
            .inc();
        m.guard_seconds
            .with_label_values(&[dir.name()])
            .observe(took.as_secs_f64());
    }

    /// Run the policy's classifiers on the prompt texts under its time budget. Returns the
    /// findings, and the error to answer with if the policy fails closed.
    async fn classify(
        &self,
        g: &Guard,
        plan: &filters::policy::ClassifierPlan,
        policy: &Policy,
        texts: Vec<String>,
        roles: Vec<Role>,
        ctx: &mut RequestCtx,
    ) -> (Vec<Applied>, Option<GatewayError>) {
        let slot = g.models.as_ref().and_then(|m| m.slot(plan));
        let Some(slot) = slot else {
            // Cannot happen after a successful load; fail as the policy says.
            return (
                vec![plan.unavailable()],
                Some(self.classifier_down(policy, plan, "no model loaded")),
            );
        };
        // The request keeps this bundle to the end, whatever a hot swap does meanwhile.
        let model = slot.current();
        let cache = g.scan_cache.as_deref();
        // the guard selected the policy for this tenant (`Selected::tenant`)
        let tenant = ctx.caller.tenant.to_string();
        let tenant = tenant.as_str();
        let c = classify_texts(
            &self.metrics,
            &model,
            plan,
            ToScore::new(cache, tenant, &model, texts, roles)
                .with_tagged(ctx.tagged_scores.as_ref(), &model),
            (cache, tenant),
            lane_of(&ctx.caller),
            &ctx.request_id,
        )
        .await;
        ctx.model = Some((model.id(), c.took));
        ctx.model_topic = c.topic;
        let Some((outcome, why)) = c.failed else {
            return (c.findings, None);
        };
        let err = if outcome == "too_long" {
            GatewayError::new(
                ErrorKind::PromptTooLong,
                format!(
                    "{why}; policy `{}` v{} fails closed (classifiers.on_timeout: block), and no part of a prompt goes unscored",
                    policy.name, policy.version
                ),
            )
        } else {
            self.classifier_down(policy, plan, &why)
        };
        (c.findings, Some(err))
    }

    /// Person names and street addresses in the request's texts, by the entity head of the
    /// policy's bundle, under the classifiers' time budget, keyed by text (see [`WithEntities`]).
    /// `Ok(None)`: the policy acts on neither type, or its bundle has no entity head. `Err`: the
    /// tagging failed and the policy fails closed (`classifiers.on_timeout: block`); a policy
    /// that fails open goes on with the rules alone and records `classifier_unavailable`.
    async fn tag_entities(
        &self,
        g: &Guard,
        policy: &Policy,
        read: filters::protocol::ReadFn<'_>,
        prose_only: bool,
        body: &serde_json::Value,
        ctx: &RequestCtx,
    ) -> Result<Option<EntitySpans>, (Applied, GatewayError)> {
        let Some(plan) = policy.classifiers.as_ref() else {
            return Ok(None);
        };
        let Some(model) = current_model(g, plan) else {
            return Ok(None);
        };
        if !policy.input.wants_entities(filters::finding::ENTITY_TYPES) {
            return Ok(None);
        }
        // A bundle swapped in without the head (the policy's load refuses one): names would
        // go through untagged, so this fails as a tagging failure does.
        if model.entities.is_none() {
            return self.tagging_failed(policy, plan, &model, ctx, "the bundle has no entity head");
        }
        if !model.untagged(&policy.input.entity_types()).is_empty() {
            return self.tagging_failed(
                policy,
                plan,
                &model,
                ctx,
                "the bundle's entity head does not tag every type the policy acts on",
            );
        }
        // A body the reader refuses is refused by the rules pass that follows.
        let texts = if prose_only {
            filters::protocol::prose_texts_read(read, body, policy)
        } else {
            filters::protocol::unit_texts_read(read, body, policy)
        };
        let Ok(units) = texts else {
            return Ok(None);
        };
        let mut texts: Vec<String> = units
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| !t.trim().is_empty())
            .collect();
        texts.sort_unstable();
        texts.dedup();
        if texts.is_empty() {
            return Ok(Some(EntitySpans::default()));
        }
        // Texts tagged for this tenant by this bundle before (a conversation's history) are
        // not tagged again.
        let tenant = ctx.caller.tenant.to_string();
        let (known, keys) = match g.scan_cache.as_deref() {
            Some(c) => c.entities(&tenant, &model.bundle.digest, &texts),
            None => (vec![None; texts.len()], Vec::new()),
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| known[i].is_none()).collect();
        let mut tagged = EntitySpans {
            spans: texts
                .iter()
                .zip(known)
                .filter_map(|(t, k)| Some((t.clone(), k?)))
                .collect(),
            scores: None,
        };
        if missing.is_empty() {
            return Ok(Some(tagged));
        }
        let refs: Vec<&str> = missing.iter().map(|&i| texts[i].as_str()).collect();
        let label = plan.model.as_str();
        let t0 = Instant::now();
        let result =
            tokio::time::timeout(plan.timeout, model.tag_for(lane_of(&ctx.caller), &refs)).await;
        self.metrics
            .classifier_seconds
            .with_label_values(&[label])
            .observe(t0.elapsed().as_secs_f64());
        let why = match result {
            Ok(Ok(spans)) => {
                self.metrics
                    .classifier_requests
                    .with_label_values(&[label, "entities_ok"])
                    .inc();
                let mut fresh = HashMap::new();
                for (&i, (s, scores)) in missing.iter().zip(spans) {
                    if let (Some(c), Some(key)) = (g.scan_cache.as_deref(), keys.get(i)) {
                        c.remember_entities(&tenant, *key, &s);
                        // The pass scored the text too: the classifiers that follow (a
                        // message that is one text) find its scores and run no second pass.
                        if plan.scores_anything() {
                            c.remember_text_scores(
                                &tenant,
                                &model.bundle.digest,
                                &texts[i],
                                &scores,
                            );
                        }
                    }
                    tagged.spans.insert(texts[i].clone(), s);
                    // ... and without a cache (or past its eviction), this request's
                    // classifiers take them from here
                    if plan.scores_anything() {
                        fresh.insert(texts[i].clone(), scores);
                    }
                }
                if !fresh.is_empty() {
                    tagged.scores = Some((model.bundle.digest.clone(), fresh));
                }
                return Ok(Some(tagged));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no entity tags within {:?}", plan.timeout),
        };
        self.tagging_failed(policy, plan, &model, ctx, &why)
    }

    /// Entity tagging failed (`why`): counted and logged; `Err` when the policy fails closed.
    fn tagging_failed(
        &self,
        policy: &Policy,
        plan: &filters::policy::ClassifierPlan,
        model: &filters::classify::Classifier,
        ctx: &RequestCtx,
        why: &str,
    ) -> Result<Option<EntitySpans>, (Applied, GatewayError)> {
        self.metrics
            .classifier_requests
            .with_label_values(&[plan.model.as_str(), "entities_failed"])
            .inc();
        tracing::warn!(request_id = %ctx.request_id, model = %model.id(), error = %why, on_timeout = ?plan.on_timeout, "entity tagging did not finish");
        let unavailable = plan.unavailable();
        if unavailable.action == Action::Block {
            return Err((unavailable, self.classifier_down(policy, plan, why)));
        }
        Ok(None)
    }

    /// A monitor-only plan (nothing it finds changes the request): classify after the request
    /// is forwarded, on a task of its own. Its findings are counted when it ends and join the
    /// request's audit record (see `logging`); the client waits for none of it.
    fn classify_later(
        &self,
        g: &Guard,
        plan: &filters::policy::ClassifierPlan,
        texts: Vec<String>,
        roles: Vec<Role>,
        tenant: &str,
        ctx: &RequestCtx,
    ) -> Monitor {
        let Some(model) = current_model(g, plan) else {
            return Monitor::Not;
        };
        let cache = g.scan_cache.clone();
        let mut scoring = ToScore::new(cache.as_deref(), tenant, &model, texts, roles)
            .with_tagged(ctx.tagged_scores.as_ref(), &model);
        scoring.background = true;
        let label = plan.model.as_str();
        if scoring.missing().is_empty() {
            // every text scored before (an earlier turn of the conversation): decide now
            let v = decide_cached(&self.metrics, &model, plan, scoring, tenant);
            return Monitor::Known(v.findings);
        }
        // Monitoring has used its CPU share: skip this one (a sample, not a backlog).
        if !self.monitor_budget.admit() {
            self.metrics
                .classifier_requests
                .with_label_values(&[label, "over_budget"])
                .inc();
            return Monitor::Not;
        }
        // Sessions busy with monitoring already: skip this one rather than queue it (a queue
        // longer than the sessions can drain would time every classification out).
        let Ok(permit) = self.monitor_slots.clone().try_acquire_owned() else {
            self.metrics
                .classifier_requests
                .with_label_values(&[label, "skipped"])
                .inc();
            return Monitor::Not;
        };
        let (metrics, plan, budget) = (
            self.metrics.clone(),
            plan.clone(),
            self.monitor_budget.clone(),
        );
        // a lane of its own in the fair queue: monitoring takes turns with the tenant's
        // blocking work and holds at most its own share of the queue, so a burst of it can
        // never crowd out a classification a request waits for
        let lane = format!("{}#monitor", lane_of(&ctx.caller));
        let (request_id, tenant) = (ctx.request_id.clone(), tenant.to_string());
        Monitor::Running(tokio::spawn(async move {
            let c = classify_texts(
                &metrics,
                &model,
                &plan,
                scoring,
                (cache.as_deref(), &tenant),
                &lane,
                &request_id,
            )
            .await;
            budget.spend(c.took);
            drop(permit);
            for f in &c.findings {
                metrics
                    .guard_findings
                    .with_label_values(&[Direction::Input.name(), f.ty, f.action.name()])
                    .inc();
            }
            c.findings
        }))
    }

    fn classifier_down(
        &self,
        policy: &Policy,
        plan: &filters::policy::ClassifierPlan,
        why: &str,
    ) -> GatewayError {
        GatewayError::new(
            ErrorKind::ClassifierUnavailable,
            format!(
                "the gateway could not classify the prompt ({why}) and policy `{}` v{} fails closed (classifiers.on_timeout: block) for model `{}`",
                policy.name, policy.version, plan.model
            ),
        )
    }

    fn blocked_error(
        policy: &Policy,
        f: &Applied,
        dir: Direction,
        topic: Option<&str>,
    ) -> GatewayError {
        let kind = if policy.settings.block_status == 400 {
            ErrorKind::PolicyBadRequest
        } else {
            ErrorKind::PolicyForbidden
        };
        let place = match dir {
            Direction::Input => "the prompt",
            Direction::Output => "the answer",
        };
        let what = match f.ty {
            "injection_classifier" | "toxicity_classifier" => format!(
                "the {} classifier scored {place} {:.3}",
                f.ty.trim_end_matches("_classifier"),
                f.score
            ),
            "indirect_injection_classifier" => format!(
                "the injection classifier scored content supplied in {place} (a tool result, document or tool definition) {:.3}",
                f.score
            ),
            "denied_topic" => format!(
                "{place} is about the denied topic `{}`",
                topic.unwrap_or("?")
            ),
            "off_topic" => format!("{place} is about none of the allowed topics"),
            _ => format!("rule `{}` ({}) matched in {place}", f.rule, f.ty),
        };
        GatewayError::new(
            kind,
            format!(
                "blocked by policy `{}` v{}: {what}",
                policy.name, policy.version
            ),
        )
    }

    /// Pick the request's LoRA adapter (`adapters:`): a name the caller may not use, or one
    /// that is not live, is refused (400) before any guard work; a request naming none gets
    /// the split's choice written into its body. `Ok(true)`: answered.
    async fn route_adapter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let (Some(adapters), Some(route), Some(proto)) =
            (self.settings.adapters.as_ref(), ctx.route, ctx.proto)
        else {
            return Ok(false);
        };
        let Some(body) = ctx.json.as_mut() else {
            return Ok(false);
        };
        match adapters.route(proto, route, &ctx.caller, body) {
            Ok(routed) => {
                if routed.changed {
                    match serde_json::to_vec(body) {
                        Ok(b) => ctx.body = Bytes::from(b),
                        Err(_) => {
                            let e = GatewayError::new(
                                ErrorKind::Internal,
                                "the gateway could not write the request's adapter",
                            );
                            self.respond(session, ctx, e, false).await?;
                            return Ok(true);
                        }
                    }
                }
                ctx.adapter = routed.adapter;
                Ok(false)
            }
            Err(crate::adapters::Refused(message)) => {
                let e = GatewayError::new(ErrorKind::AdapterNotAllowed, message);
                self.respond(session, ctx, e, false).await?;
                Ok(true)
            }
        }
    }

    /// The input side. `Ok(true)`: the request was answered (blocked or refused).
    async fn guard_input(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        g: Arc<Guard>,
    ) -> pingora::Result<bool> {
        let (Some(route), Some(proto)) = (ctx.route, ctx.proto) else {
            return Ok(false);
        };
        let Some(sel) = g.select(route, &ctx.caller) else {
            return Ok(false);
        };
        let mut rg = ReqGuard {
            pseudo: g.pseudonymizer(&sel.tenant),
            policy: sel.policy,
            tenant: sel.tenant,
            vault: Vault::default(),
            findings: Vec::new(),
            output: Output::Off,
            output_started: None,
        };
        let policy = rg.policy.clone();
        if !policy.input.is_active() && policy.classifiers.is_none() {
            ctx.guard = Some(rg);
            return Ok(false);
        }
        let t0 = Instant::now();
        let Some(mut body) = ctx.json.take() else {
            ctx.guard = Some(rg);
            return Ok(false);
        };
        // Person names and addresses come from the model: tagged before the rules run, so
        // their rewrite lands in the same pass as the rules' (see `WithEntities`).
        let read = |b: &serde_json::Value, r: &mut filters::protocol::Reader| proto.read(b, r);
        let mut entities = match self
            .tag_entities(&g, &policy, &read, false, &body, ctx)
            .await
        {
            Ok(e) => e,
            Err((finding, err)) => {
                self.record(
                    Direction::Input,
                    &policy.name,
                    std::slice::from_ref(&finding),
                    Action::Block,
                    t0.elapsed(),
                );
                rg.findings = vec![finding];
                ctx.guard = Some(rg);
                ctx.json = Some(body);
                self.respond(session, ctx, err, false).await?;
                return Ok(true);
            }
        };
        ctx.tagged_scores = entities.as_mut().and_then(|e| e.scores.take());
        // (the memo borrows are not `Send`: they end before the next await)
        let inspected = {
            let memo = g
                .scan_cache
                .as_deref()
                .map(|cache| crate::scan_cache::TenantMemo {
                    cache,
                    tenant: &rg.tenant,
                });
            let inner = memo.as_ref().map(|m| m as &dyn filters::protocol::ScanMemo);
            let tagged = entities.as_ref().map(|spans| WithEntities { inner, spans });
            filters::protocol::inspect_with(
                proto,
                &mut body,
                &policy,
                &mut rg.vault,
                &rg.pseudo,
                policy.classifiers.is_some(),
                match &tagged {
                    Some(t) => Some(t as &dyn filters::protocol::ScanMemo),
                    None => inner,
                },
            )
        };
        let mut outcome = match inspected {
            Ok(o) => o,
            Err(InspectError::Shape(e)) => {
                let err = GatewayError::new(
                    ErrorKind::UnreadableRequest,
                    format!(
                        "the gateway cannot inspect `{}` ({}), and policy `{}` v{} refuses what it cannot read (settings.unknown_fields: refuse)",
                        e.path, e.reason, policy.name, policy.version
                    ),
                );
                ctx.guard = Some(rg);
                ctx.json = Some(body);
                self.respond(session, ctx, err, false).await?;
                return Ok(true);
            }
        };
        // The model classifiers, only when the rules let the prompt through (a block by a
        // rule costs no model time).
        let mut model_error = None;
        if outcome.blocked.is_none()
            && let Some(plan) = policy.classifiers.as_ref()
            && plan.scores_anything()
        {
            let (roles, texts): (Vec<Role>, Vec<String>) = std::mem::take(&mut outcome.texts)
                .into_iter()
                .filter(|t| plan.scores(t.role))
                .map(|t| (t.role, t.text))
                .unzip();
            if !texts.is_empty() && plan.monitor_only() {
                match self.classify_later(&g, plan, texts, roles, &rg.tenant, ctx) {
                    Monitor::Known(findings) => outcome.findings.extend(findings),
                    Monitor::Running(task) => ctx.monitor = Some(task),
                    Monitor::Not => {}
                }
            } else if !texts.is_empty() {
                let (findings, verdict_error) =
                    self.classify(&g, plan, &policy, texts, roles, ctx).await;
                if let Some(b) = findings.iter().find(|f| f.action == Action::Block) {
                    outcome.blocked = Some(b.clone());
                }
                outcome.findings.extend(findings);
                model_error = verdict_error;
            }
        }
        let action = outcome
            .findings
            .iter()
            .map(|f| f.action)
            .max()
            .unwrap_or(Action::Allow);
        self.record(
            Direction::Input,
            &policy.name,
            &outcome.findings,
            action,
            t0.elapsed(),
        );
        rg.findings = outcome.findings;
        if let Some(b) = outcome.blocked {
            let e = match model_error {
                Some(e) if b.ty == "classifier_unavailable" => e,
                _ => Self::blocked_error(&policy, &b, Direction::Input, ctx.model_topic.as_deref()),
            };
            ctx.guard = Some(rg);
            self.respond(session, ctx, e, false).await?;
            return Ok(true);
        }
        if outcome.changed {
            match serde_json::to_vec(&body) {
                Ok(b) => ctx.body = Bytes::from(b),
                Err(_) => {
                    let e = GatewayError::new(
                        ErrorKind::Internal,
                        "the gateway could not write the rewritten request",
                    );
                    ctx.guard = Some(rg);
                    self.respond(session, ctx, e, false).await?;
                    return Ok(true);
                }
            }
        }
        ctx.json = Some(body);
        ctx.guard = Some(rg);
        Ok(false)
    }

    /// The output side, called for every body chunk of a guarded request.
    fn guard_output(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let dialect = ctx.dialect;
        let proto = ctx.proto;
        let Some(rg) = ctx.guard.as_mut() else {
            return Ok(());
        };
        let output = std::mem::replace(&mut rg.output, Output::Off);
        rg.output = match output {
            Output::Off => Output::Off,
            Output::Done => {
                *body = None;
                Output::Done
            }
            Output::Closing => {
                *body = None;
                ctx.policy_closed = true;
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "stream ended by a guardrail policy",
                ));
            }
            Output::Stream(mut rw) => {
                let mut out = Vec::new();
                let mut step = match body.take() {
                    Some(b) => rw.feed(&b, &mut rg.vault, &rg.pseudo),
                    None => Step::Send(Vec::new()),
                };
                if end && let Step::Send(sent) = step {
                    out.extend(sent);
                    step = rw.finish(&mut rg.vault, &rg.pseudo);
                }
                let ended = |out: &mut Vec<u8>, e: GatewayError, rw: &AnswerStream| {
                    out.extend_from_slice(&e.stream_event(proto, dialect, Some(rw.state())));
                    e
                };
                let next = match step {
                    Step::Send(b) => {
                        out.extend(b);
                        Output::Stream(rw)
                    }
                    Step::Blocked(b, f) => {
                        out.extend(b);
                        let e = Self::blocked_error(&rg.policy, &f, Direction::Output, None);
                        let e = ended(&mut out, e, &rw);
                        session.set_keepalive(None);
                        let found: Vec<Applied> = rw.findings().cloned().collect();
                        self.finish_output(rg, Action::Block, found);
                        ctx.gateway_error = Some(e.kind);
                        self.metrics
                            .gateway_errors
                            .with_label_values(&[route_label_of(ctx.route), e.kind.code()])
                            .inc();
                        if end { Output::Done } else { Output::Closing }
                    }
                    Step::Unreadable(b, why) => {
                        out.extend(b);
                        let e = ended(
                            &mut out,
                            GatewayError::new(ErrorKind::UnreadableAnswer, why),
                            &rw,
                        );
                        tracing::error!(request_id = %ctx.request_id, "{why}");
                        session.set_keepalive(None);
                        let found: Vec<Applied> = rw.findings().cloned().collect();
                        self.finish_output(rg, Action::Block, found);
                        ctx.gateway_error = Some(e.kind);
                        self.metrics
                            .gateway_errors
                            .with_label_values(&[route_label_of(ctx.route), e.kind.code()])
                            .inc();
                        if end { Output::Done } else { Output::Closing }
                    }
                };
                if end && let Output::Stream(rw) = &next {
                    let found: Vec<Applied> = rw.findings().cloned().collect();
                    let action = found
                        .iter()
                        .map(|f| f.action)
                        .max()
                        .unwrap_or(Action::Allow);
                    self.finish_output(rg, action, found);
                }
                *body = Some(Bytes::from(out));
                next
            }
            Output::Whole(mut buf) => {
                if let Some(b) = body.take() {
                    buf.extend_from_slice(&b);
                }
                let limit = self
                    .guard
                    .as_ref()
                    .map_or(usize::MAX, |g| g.max_response_bytes);
                if buf.len() > limit {
                    tracing::error!(request_id = %ctx.request_id, limit, "answer larger than guard.max_response_bytes: cannot filter it, closing");
                    ctx.policy_closed = true;
                    return Err(Error::explain(
                        ErrorType::InternalError,
                        "answer too large to filter",
                    ));
                }
                if !end {
                    Output::Whole(buf)
                } else {
                    let (out, action, found, error) = filter_whole(proto, rg, &buf, dialect);
                    if let Some(e) = error {
                        ctx.gateway_error = Some(e);
                    }
                    self.finish_output(rg, action, found);
                    *body = Some(Bytes::from(out));
                    Output::Done
                }
            }
        };
        Ok(())
    }

    /// Count an answer's findings and decision, and keep its findings for the log line.
    fn finish_output(&self, rg: &mut ReqGuard, action: Action, found: Vec<Applied>) {
        if rg.policy.output.is_active() {
            let took = rg.output_started.map_or(Duration::ZERO, |t| t.elapsed());
            self.record(Direction::Output, &rg.policy.name, &found, action, took);
        }
        for o in rg.vault.outcomes() {
            self.metrics
                .guard_restores
                .with_label_values(&[o.ty, o.how])
                .inc_by(u64::from(o.count));
        }
        rg.findings.extend(found);
    }
}

/// Filter a whole answer: its family's text fields, or, when it is not JSON, the whole body
/// as text. A block keeps the family's shape where it has a "filtered" answer (OpenAI's empty
/// content with `finish_reason: "content_filter"`), else becomes the gateway's error body (the
/// status was already sent with the backend's headers). Returns the bytes, the action, the
/// findings and the error kind answered, if any.
fn filter_whole(
    proto: Option<&'static dyn Protocol>,
    rg: &mut ReqGuard,
    buf: &[u8],
    dialect: Dialect,
) -> (Vec<u8>, Action, Vec<Applied>, Option<ErrorKind>) {
    let policy = rg.policy.clone();
    let mut found = Vec::new();
    let blocked = |f: &Applied, mut v: Option<serde_json::Value>| {
        let e = Gateway::blocked_error(&policy, f, Direction::Output, None);
        let shaped = match (v.as_mut(), proto) {
            (Some(v), Some(p)) => p
                .blocked_answer(v, &e.info())
                .then(|| serde_json::to_vec(v).ok())
                .flatten(),
            _ => None,
        };
        (shaped.unwrap_or_else(|| e.body(dialect).to_vec()), e.kind)
    };
    match (serde_json::from_slice::<serde_json::Value>(buf), proto) {
        (Ok(mut v), Some(p)) => {
            let r = {
                let mut cx = AnswerCx::new(&policy, &mut rg.vault, &rg.pseudo);
                let r = p.answer(&mut v, &mut cx);
                found.extend(std::mem::take(&mut cx.findings));
                r
            };
            let action = found
                .iter()
                .map(|f| f.action)
                .max()
                .unwrap_or(Action::Allow);
            match r {
                Ok(()) => match serde_json::to_vec(&v) {
                    Ok(b) => (b, action, found, None),
                    Err(_) => {
                        let e = GatewayError::new(
                            ErrorKind::Internal,
                            "the gateway could not write the filtered answer",
                        );
                        (e.body(dialect).to_vec(), action, found, Some(e.kind))
                    }
                },
                Err(filters::stream::Blocked(f)) => {
                    found.push(f.clone());
                    let original = serde_json::from_slice(buf).ok();
                    let (b, kind) = blocked(&f, original);
                    (b, Action::Block, found, Some(kind))
                }
            }
        }
        _ => {
            // not JSON (or no family): the whole body is what the client reads
            let Ok(text) = std::str::from_utf8(buf) else {
                let e = GatewayError::new(
                    ErrorKind::UnreadableAnswer,
                    "the backend's answer is neither JSON nor UTF-8 text, so the gateway cannot filter it",
                );
                return (e.body(dialect).to_vec(), Action::Block, found, Some(e.kind));
            };
            let mut s = text.to_string();
            let r = filters::protocol::answer::filter_text(
                &policy,
                &mut s,
                Kind::Other,
                &mut rg.vault,
                &rg.pseudo,
                &mut found,
            );
            let action = found
                .iter()
                .map(|f| f.action)
                .max()
                .unwrap_or(Action::Allow);
            match r {
                Ok(()) => (s.into_bytes(), action, found, None),
                Err(filters::stream::Blocked(f)) => {
                    found.push(f.clone());
                    let (b, kind) = blocked(&f, None);
                    (b, Action::Block, found, Some(kind))
                }
            }
        }
    }
}

/// The client's API key header: `Authorization`, or Anthropic's `x-api-key` (read as a bearer
/// key so both clients authenticate the same way).
pub(crate) fn client_auth(session: &Session) -> Option<std::borrow::Cow<'_, str>> {
    let h = &session.req_header().headers;
    if let Some(a) = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(std::borrow::Cow::Borrowed(a));
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| std::borrow::Cow::Owned(format!("Bearer {}", k.trim())))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones proxies must not forward.
pub fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Client headers never forwarded to a backend: the client's own credentials for the gateway
/// (`Authorization`, Anthropic's `x-api-key`), its cookies, and hop-by-hop headers.
fn strip_client_headers(req: &mut RequestHeader) {
    let named: Vec<String> = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let drop: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            is_hop_by_hop(k) && *k != http::header::TRANSFER_ENCODING
                || matches!(k.as_str(), "authorization" | "x-api-key" | "cookie")
                || named.iter().any(|n| n == k.as_str())
        })
        .cloned()
        .collect();
    for k in drop {
        req.remove_header(&k);
    }
}

/// The classifier lane of requests without an API key (one lane: without keys there is no
/// tenant to tell apart).
fn lane_of_unkeyed() -> &'static str {
    "-"
}

/// The caller's lane of the fair classifier queue: a flood from one tenant waits its turns.
fn lane_of(caller: &Caller) -> &str {
    match caller.key {
        Some(_) => &caller.tenant,
        None => lane_of_unkeyed(),
    }
}

/// What one classification gave: findings (with `classifier_unavailable` when it failed),
/// the outcome and reason of a failure, the time, the denied topic.
struct Classified {
    findings: Vec<Applied>,
    failed: Option<(&'static str, String)>,
    took: Duration,
    topic: Option<String>,
}

/// What became of a monitor-only classification.
enum Monitor {
    /// Decided at once: the scan-once cache knew every text.
    Known(Vec<Applied>),
    /// Running after the request was forwarded.
    Running(tokio::task::JoinHandle<Vec<Applied>>),
    /// Not monitored (no model, over the CPU share, sessions busy).
    Not,
}

/// The bundle serving `plan` now (the request keeps it whatever a hot swap does meanwhile).
fn current_model(
    g: &Guard,
    plan: &filters::policy::ClassifierPlan,
) -> Option<Arc<filters::classify::Classifier>> {
    g.models
        .as_ref()
        .and_then(|m| m.slot(plan))
        .map(|s| s.current())
}

/// The entity head's spans of each text of a request.
/// What the entity tagging pass found in a request's texts, keyed by text (see
/// `Gateway::tag_entities`).
#[derive(Default)]
pub(crate) struct EntitySpans {
    /// Each text's spans (remembered ones included).
    spans: HashMap<String, Vec<filters::classify::EntitySpan>>,
    /// The scores the same pass made of the texts it tagged.
    scores: Option<TaggedScores>,
}

/// Scores an entity tagging pass made, by text, and the digest of the bundle that made them.
pub(crate) type TaggedScores = (String, HashMap<String, filters::classify::TextScores>);

/// The rules' findings of a text (remembered by the scan-once cache, `inner`, when there is
/// one) plus the entity head's spans of that text (remembered by the same cache under the
/// bundle's digest, see `Gateway::tag_entities`).
struct WithEntities<'a> {
    inner: Option<&'a dyn filters::protocol::ScanMemo>,
    spans: &'a EntitySpans,
}

impl filters::protocol::ScanMemo for WithEntities<'_> {
    fn findings(
        &self,
        policy: &Policy,
        text: &str,
        scan: &mut dyn FnMut(&str) -> Vec<Applied>,
    ) -> Vec<Applied> {
        let mut found = match self.inner {
            Some(m) => m.findings(policy, text, scan),
            None => scan(text),
        };
        if let Some(spans) = self.spans.spans.get(text) {
            policy.input.add_entities(&mut found, spans);
        }
        found
    }
}

/// The verdict on texts the scan-once cache knew every score of (an earlier turn of the
/// conversation), counted as a `cached` classification.
fn decide_cached(
    metrics: &Metrics,
    model: &filters::classify::Classifier,
    plan: &filters::policy::ClassifierPlan,
    s: ToScore,
    tenant: &str,
) -> filters::policy::ModelVerdict {
    metrics
        .classifier_requests
        .with_label_values(&[plan.model.as_str(), "cached"])
        .inc();
    let (scores, roles) = s.complete(Vec::new(), None, tenant);
    plan.decide(model, &scores, &roles)
}

/// Classify the texts of `s` the cache does not know with `model` under the plan's time
/// budget (remembering their scores for `cache.1`, the tenant), counting the outcome.
async fn classify_texts(
    metrics: &Metrics,
    model: &filters::classify::Classifier,
    plan: &filters::policy::ClassifierPlan,
    s: ToScore,
    cache: (Option<&crate::scan_cache::ScanCache>, &str),
    lane: &str,
    request_id: &str,
) -> Classified {
    let label = plan.model.as_str();
    let t0 = Instant::now();
    let refs = s.missing();
    if refs.is_empty() {
        let v = decide_cached(metrics, model, plan, s, cache.1);
        return Classified {
            findings: v.findings,
            failed: None,
            took: t0.elapsed(),
            topic: v.topic,
        };
    }
    let run = async {
        if s.background {
            model.classify_background(lane, &refs).await
        } else {
            model.classify_for(lane, &refs).await
        }
    };
    let result = tokio::time::timeout(plan.timeout, run).await;
    let took = t0.elapsed();
    metrics
        .classifier_seconds
        .with_label_values(&[label])
        .observe(took.as_secs_f64());
    let (outcome, why) = match result {
        Ok(Ok(fresh)) => {
            metrics
                .classifier_requests
                .with_label_values(&[label, "ok"])
                .inc();
            let (scores, roles) = s.complete(fresh, cache.0, cache.1);
            let v = plan.decide(model, &scores, &roles);
            return Classified {
                findings: v.findings,
                failed: None,
                took,
                topic: v.topic,
            };
        }
        Ok(Err(
            e @ (filters::classify::ModelError::Overloaded
            | filters::classify::ModelError::TenantOverloaded),
        )) => ("overloaded", e.to_string()),
        Ok(Err(
            e @ (filters::classify::ModelError::TooLong { .. }
            | filters::classify::ModelError::RequestTooLong { .. }),
        )) => ("too_long", e.to_string()),
        Ok(Err(e)) => ("error", e.to_string()),
        Err(_) => ("timeout", format!("no answer within {:?}", plan.timeout)),
    };
    metrics
        .classifier_requests
        .with_label_values(&[label, outcome])
        .inc();
    tracing::warn!(request_id = %request_id, model = %model.id(), outcome, error = %why, on_timeout = ?plan.on_timeout, "prompt classification did not finish");
    Classified {
        findings: vec![plan.unavailable()],
        failed: Some((outcome, why)),
        took,
        topic: None,
    }
}

fn route_label_of(route: Option<Route>) -> &'static str {
    route.map_or(UNMATCHED, Route::label)
}

const UNMATCHED: &str = "unmatched";

fn route_label(ctx: &RequestCtx) -> &'static str {
    ctx.route.map_or(UNMATCHED, Route::label)
}

impl Gateway {
    fn route_metrics(&self, ctx: &RequestCtx) -> &RouteMetrics {
        let i = ctx.route.map_or(Route::COUNT, Route::index);
        &self.route_metrics[i.min(self.route_metrics.len() - 1)]
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// Called once the request header is parsed, with the connection's user context: the
    /// connection loop (`connections::Hygiene`) waits for this to stop its header deadline.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Some(seen) = prev.downcast_ref::<crate::connections::HeaderSeen>() {
            seen.fire();
        }
    }

    fn new_ctx(&self) -> RequestCtx {
        self.metrics.in_flight.inc();
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            route: None,
            dialect: Dialect::Tgi,
            proto: None,
            method: http::Method::GET,
            body: Bytes::new(),
            json: None,
            body_buffered: false,
            pool: None,
            lease: None,
            tried: Vec::new(),
            attempts: 0,
            attempt_started: None,
            upstream_started: None,
            upstream_ended: None,
            first_byte: None,
            upstream_status: None,
            response_started: false,
            streaming: false,
            failure: None,
            gateway_error: None,
            bytes_out: 0,
            in_flight: Some(InFlight(self.metrics.clone())),
            guard: None,
            policy_closed: false,
            caller: Caller::anonymous(),
            admission: Admission::default(),
            refused_by: None,
            prompt_bound: 0,
            max_generated: None,
            model: None,
            model_topic: None,
            adapter: None,
            monitor: None,
            tagged_scores: None,
            listing: None,
            usage: UsageMeter::default(),
            tokens: None,
            mcp_records: Vec::new(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.request_id = request_id_from(session);
        ctx.method = session.req_header().method.clone();
        ctx.dialect = Dialect::for_path(session.req_header().uri.path());
        if self.check_ip(session, ctx).await? {
            return Ok(true);
        }
        let req = session.req_header();
        let path = req.uri.path();
        let route = match Route::classify(&req.method, path) {
            Ok(r) => r,
            Err(rejected) => {
                // Only the error paths need an owned copy of the path.
                ctx.dialect = Dialect::for_path(path);
                let e = match rejected {
                    RouteError::NotFound => {
                        GatewayError::new(ErrorKind::NotFound, "no such route on this gateway")
                    }
                    RouteError::MethodNotAllowed { allowed } => {
                        // remember the route only for the Allow header
                        ctx.route = Route::classify(&allowed, path).ok();
                        GatewayError::new(
                            ErrorKind::MethodNotAllowed,
                            format!(
                                "method {} is not allowed on {path}; use {allowed}",
                                req.method
                            ),
                        )
                    }
                };
                self.respond(session, ctx, e, true).await?;
                return Ok(true);
            }
        };
        ctx.route = Some(route);
        ctx.dialect = route.dialect();
        if route != Route::Mcp {
            ctx.pool = Some(self.default_pool.clone());
        }
        if self.check_access(session, ctx, route).await? {
            return Ok(true);
        }
        if route == Route::Mcp {
            return self.mcp(session, ctx).await;
        }

        if route.has_json_body() {
            if let Some(enc) = session
                .req_header()
                .headers
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
            {
                let shown = if enc.len() <= 24
                    && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    format!("`{enc}`")
                } else {
                    "a content encoding".to_string()
                };
                let e = GatewayError::new(
                    ErrorKind::UnsupportedEncoding,
                    format!(
                        "the request body is compressed ({shown}); the gateway reads every prompt, so send it uncompressed"
                    ),
                );
                self.respond(session, ctx, e, true).await?;
                return Ok(true);
            }
            let limit = self.settings.max_body_bytes;
            match body::read_whole(session, limit, self.settings.body_read_timeout).await {
                Ok(b) => ctx.body = b,
                Err(body::BodyError::TooLarge { limit }) => {
                    let e = GatewayError::new(
                        ErrorKind::BodyTooLarge,
                        format!("request body is larger than the gateway's limit of {limit} bytes"),
                    );
                    self.respond(session, ctx, e, true).await?;
                    return Ok(true);
                }
                Err(body::BodyError::ChunkedTooLarge) => {
                    let e = GatewayError::new(
                        ErrorKind::LengthRequired,
                        format!(
                            "chunked request bodies larger than {} bytes are not supported; send a Content-Length header",
                            body::REPLAY_WINDOW
                        ),
                    );
                    self.respond(session, ctx, e, true).await?;
                    return Ok(true);
                }
                Err(body::BodyError::Timeout) => {
                    let e = GatewayError::new(
                        ErrorKind::RequestTimeout,
                        "the request body did not arrive in time",
                    );
                    self.respond(session, ctx, e, true).await?;
                    return Ok(true);
                }
                Err(body::BodyError::NotReplayable) => {
                    let e = GatewayError::new(
                        ErrorKind::Internal,
                        "the gateway could not buffer the request body",
                    );
                    self.respond(session, ctx, e, true).await?;
                    return Ok(true);
                }
                Err(body::BodyError::Read(e)) => return Err(e),
            }
            self.route_metrics(ctx)
                .request_bytes
                .inc_by(ctx.body.len() as u64);
            if ctx.body.is_empty() {
                let e = GatewayError::new(
                    ErrorKind::InvalidJson,
                    "request body is empty; expected a JSON object",
                );
                self.respond(session, ctx, e, false).await?;
                return Ok(true);
            }
            // Parsed once, strictly (duplicate members refused), when a policy reads it or the
            // family depends on it; otherwise only checked.
            let parse = self.guard.is_some()
                || route == Route::Invocations
                || self.settings.adapters.is_some();
            let checked = if parse {
                parse_strict(&ctx.body)
                    .map(|v| ctx.json = Some(v))
                    .map_err(|e| e.to_string())
            } else {
                serde_json::from_slice::<serde::de::IgnoredAny>(&ctx.body)
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            if let Err(err) = checked {
                // The parser's message has a position or a member name, never the content.
                let e = GatewayError::new(
                    ErrorKind::InvalidJson,
                    format!("request body is not valid JSON: {err}"),
                );
                self.respond(session, ctx, e, false).await?;
                return Ok(true);
            }
            ctx.proto = route.protocol(ctx.json.as_ref().unwrap_or(&serde_json::Value::Null));
            if let Some(p) = ctx.proto {
                ctx.dialect = p.dialect();
                ctx.usage = UsageMeter::new(p.usage());
            }
            ctx.body_buffered = true;
            // quotas before any rule or model work: a key out of tokens costs no classifier time
            if self.reserve_tokens(session, ctx).await? {
                return Ok(true);
            }
            if self.route_adapter(session, ctx).await? {
                return Ok(true);
            }
            if let Some(g) = &self.guard
                && self.guard_input(session, ctx, g.clone()).await?
            {
                return Ok(true);
            }
            if self.top_up_tokens(session, ctx).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let pool = match &ctx.pool {
            Some(p) => p.clone(),
            None => {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "no upstream pool for this request",
                ));
            }
        };
        // Release the previous attempt's backend before choosing the next one.
        if let Some(prev) = ctx.lease.take() {
            ctx.tried.push(prev.backend().index);
        }
        let Some(lease) = pool.select(&ctx.tried) else {
            ctx.failure = Some(GatewayError::new(
                ErrorKind::NoHealthyUpstream,
                client_message(ErrorKind::NoHealthyUpstream, &pool.name),
            ));
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "no healthy backend (all unhealthy or circuits open)",
            ));
        };
        ctx.attempts += 1;
        if ctx.attempts > 1 {
            self.metrics
                .upstream_retries
                .with_label_values(&[&pool.name])
                .inc();
        }
        let now = Instant::now();
        ctx.attempt_started = Some(now);
        ctx.upstream_started.get_or_insert(now);
        let t = &pool.settings.timeouts;
        let mut peer = HttpPeer::new(lease.backend().addr, pool.tls.is_some(), String::new());
        if let Some(tls) = &pool.tls {
            tls.apply(&mut peer, crate::upstream::host_of(&lease.backend().label));
        }
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(t.idle);
        ctx.lease = Some(lease);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let kind = classify(&e).unwrap_or(ErrorKind::UpstreamConnect);
        if let Some(lease) = ctx.lease.as_mut() {
            lease.failed(failure_reason(kind, false));
        }
        // Nothing reached the backend: always safe to try another one.
        let retries = ctx.pool.as_ref().map_or(0, |p| p.settings.retries);
        e.set_retry(ctx.attempts <= retries);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_request.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        // The client's credentials for the gateway, its cookies and hop-by-hop headers stay
        // here; the pool's own credential (if any) goes instead.
        strip_client_headers(upstream_request);
        if let Some(c) = ctx.pool.as_ref().and_then(|p| p.credential.as_ref()) {
            upstream_request.insert_header(c.name.clone(), c.value.clone())?;
        }
        // Answers must come back readable: the output rules and token counts read them.
        upstream_request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        if ctx.body_buffered {
            // We forward exactly the bytes we hold (rewritten by guardrails), at once: the
            // client's `Expect: 100-continue` was answered by the gateway.
            upstream_request.remove_header(&http::header::EXPECT);
            upstream_request.remove_header(&http::header::TRANSFER_ENCODING);
            upstream_request
                .insert_header(http::header::CONTENT_LENGTH, ctx.body.len().to_string())?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if ctx.body_buffered {
            // Pingora replays its retry buffer here; we send our full copy instead.
            *body = Some(if end_of_stream {
                ctx.body.clone()
            } else {
                Bytes::new()
            });
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.response_started = true;
        ctx.first_byte = ctx.attempt_started.map(|t| t.elapsed());
        let status = upstream_response.status.as_u16();
        ctx.upstream_status = Some(status);
        if matches!(status, 500 | 502 | 503 | 504) {
            // Count it against the backend before the client sees it, so the next request
            // already meets the circuit this answer may have opened.
            if let Some(lease) = ctx.lease.as_mut() {
                lease.failed("http_5xx");
            }
        }
        ctx.streaming = upstream_response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        upstream_response.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        // TGI reports token counts in headers (`x-prompt-tokens`, `x-generated-tokens`):
        // exact counts for quota reconciliation, even without `details`
        let count = |name: &str| {
            upstream_response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(n) = count("x-generated-tokens") {
            ctx.usage.generated = Some(n);
        }
        if let Some(n) = count("x-prompt-tokens") {
            ctx.usage.prompt = Some(n);
        }
        if let Some(h) = ctx.admission.headroom {
            upstream_response.insert_header("x-ratelimit-limit", h.size.to_string())?;
            upstream_response.insert_header("x-ratelimit-remaining", h.remaining.to_string())?;
            upstream_response.insert_header("x-ratelimit-reset", h.reset.to_string())?;
        }
        if status >= 400 {
            upstream_response.insert_header(ERROR_SOURCE_HEADER, "backend")?;
        }
        // `/v1/models` lists only the adapters this caller may use
        if ctx.route == Some(Route::Models)
            && self.settings.adapters.is_some()
            && status == 200
            && !ctx.streaming
        {
            upstream_response.remove_header(&http::header::CONTENT_LENGTH);
            upstream_response.remove_header(&http::header::CONTENT_ENCODING);
            ctx.listing = Some(Vec::new());
        }
        // The gateway asked for `identity`; an answer compressed anyway cannot be filtered or
        // counted, so it never reaches the client.
        if ctx.proto.is_some()
            && (200..300).contains(&status)
            && let Some(enc) = upstream_response
                .headers
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
        {
            let shown =
                if enc.len() <= 24 && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    enc.to_string()
                } else {
                    "an unknown encoding".to_string()
                };
            ctx.failure = Some(GatewayError::new(
                ErrorKind::UnreadableAnswer,
                format!(
                    "the backend of upstream `{}` compressed its answer ({shown}) although the gateway asked for `Accept-Encoding: identity`; a compressed answer cannot be filtered, so it is refused",
                    ctx.pool.as_ref().map_or("default", |p| p.name.as_str())
                ),
            ));
            return Err(Error::explain(
                ErrorType::InternalError,
                "compressed answer from the backend",
            ));
        }
        if let Some(rg) = ctx.guard.as_mut()
            && status == 200
            && let Some(proto) = ctx.proto
            && (rg.policy.output.is_active() || !rg.vault.is_empty())
        {
            // a JSON answer is filtered field by field; any other answer (plain text from a
            // backend that ignores the API) as one text: nothing passes unread
            rg.output = if ctx.streaming {
                Output::Stream(Box::new(AnswerStream::new(proto, rg.policy.clone())))
            } else {
                Output::Whole(Vec::new())
            };
            if !matches!(rg.output, Output::Off) {
                // the body changes length: send it chunked
                upstream_response.remove_header(&http::header::CONTENT_LENGTH);
                upstream_response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                rg.output_started = Some(Instant::now());
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<Duration>> {
        if end_of_stream {
            ctx.upstream_ended = Some(Instant::now());
        }
        if let Some(b) = body.as_ref()
            && ctx.proto.is_some()
        {
            ctx.usage.feed(b);
        }
        if end_of_stream {
            self.settle_tokens(ctx);
        }
        if ctx.guard.is_some() {
            self.guard_output(session, body, end_of_stream, ctx)?;
        }
        if let Some(buf) = ctx.listing.as_mut() {
            if let Some(b) = body.take() {
                buf.extend_from_slice(&b);
            }
            if end_of_stream {
                let raw = std::mem::take(buf);
                let out = match (
                    serde_json::from_slice::<serde_json::Value>(&raw),
                    &self.settings.adapters,
                    ctx.route,
                ) {
                    (Ok(mut v), Some(a), Some(route)) => {
                        a.filter_listing(route, &ctx.caller, &mut v);
                        serde_json::to_vec(&v).unwrap_or_default()
                    }
                    // not a listing the gateway can read: nothing of it goes out
                    _ => b"{\"object\":\"list\",\"data\":[]}".to_vec(),
                };
                *body = Some(Bytes::from(out));
            }
        }
        if let Some(b) = body {
            ctx.bytes_out += b.len() as u64;
        }
        Ok(None)
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        _session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        let kind = classify(&e);
        if upstream_fault && let (Some(lease), Some(kind)) = (ctx.lease.as_mut(), kind) {
            lease.failed(failure_reason(kind, ctx.response_started));
        }
        let retries = ctx.pool.as_ref().map_or(0, |p| p.settings.retries);
        let retry_timeouts = ctx
            .pool
            .as_ref()
            .is_some_and(|p| p.settings.retry_on_timeout);
        // Only before the first response byte: after that the client has seen part of an answer.
        let may_retry = upstream_fault
            && !ctx.response_started
            && ctx.attempts <= retries
            && (kind != Some(ErrorKind::UpstreamTimeout) || retry_timeouts);
        e.set_retry(may_retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let no_reuse = FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
        if ctx.policy_closed {
            // the stream already carries the policy's error event
            return FailToProxy {
                error_code: session.response_written().map_or(0, |h| h.status.as_u16()),
                can_reuse_downstream: false,
            };
        }
        let pool_name = ctx
            .pool
            .as_ref()
            .map_or("default", |p| p.name.as_str())
            .to_string();
        let err = match ctx.failure.take() {
            Some(err) => err,
            None => match classify(e) {
                None => return no_reuse, // the client is gone
                Some(kind) => GatewayError::new(kind, client_message(kind, &pool_name)),
            },
        };
        if let Some(sent) = session.response_written() {
            let code = sent.status.as_u16();
            // Headers (and maybe tokens) already reached the client. A stream gets a final error
            // event in its own format; any other body can only be cut short.
            if ctx.streaming && !err.kind.is_client_error() {
                let st = match ctx.guard.as_ref().map(|g| &g.output) {
                    Some(Output::Stream(rw)) => Some(rw.state()),
                    _ => None,
                };
                let event = err.stream_event(ctx.proto, ctx.dialect, st);
                ctx.gateway_error = Some(err.kind);
                self.metrics
                    .gateway_errors
                    .with_label_values(&[route_label(ctx), err.kind.code()])
                    .inc();
                if let Err(we) = session.write_response_body(Some(event), true).await {
                    tracing::debug!(request_id = %ctx.request_id, error = %we, "could not send the final error event");
                }
            }
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        let status = err.kind.status().as_u16();
        if let Err(we) = self.respond(session, ctx, err, true).await {
            tracing::debug!(request_id = %ctx.request_id, error = %we, "could not send the error response");
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let route = route_label(ctx);
        let status = session.response_written().map_or(0, |h| h.status.as_u16());
        // The last attempt answered in full: a success for its backend (failures were reported
        // where they were seen; a client that left tells nothing about the backend).
        if let Some(mut lease) = ctx.lease.take()
            && ctx.upstream_status.is_some()
            && e.is_none()
        {
            lease.succeeded();
        }
        let source = if ctx.gateway_error.is_some() {
            "gateway"
        } else {
            "backend"
        };
        self.metrics
            .requests
            .with_label_values(&[route, &status.to_string(), source])
            .inc();
        let rm = self.route_metrics(ctx);
        let total = ctx.started.elapsed();
        rm.request_duration.observe(total.as_secs_f64());
        let upstream = ctx.upstream_started.map(|s| {
            ctx.upstream_ended
                .unwrap_or_else(Instant::now)
                .duration_since(s)
        });
        if let Some(u) = upstream {
            rm.upstream_duration.observe(u.as_secs_f64());
        }
        if let Some(fb) = ctx.first_byte {
            rm.upstream_first_byte.observe(fb.as_secs_f64());
        }
        rm.response_bytes.inc_by(ctx.bytes_out);
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        // A refusal before anyone was identified (no key, unknown route, per-IP limit) is
        // what a flood is made of: counted in the audit trail, logged once a second at most.
        let flood = ctx.caller.key.is_none()
            && ctx.gateway_error.is_some()
            && (matches!(status, 401 | 404 | 405)
                || ctx.refused_by.is_some_and(|l| l.starts_with("ip")));
        let suppressed = if flood {
            self.access.flood_log.sample()
        } else {
            Some(0)
        };
        if let Some(suppressed) = suppressed {
            tracing::info!(
                target: "portcullis::access",
                request_id = %ctx.request_id,
                method = %ctx.method,
                route,
                status,
                source,
                upstream = ctx.pool.as_ref().map_or("", |p| p.name.as_str()),
                attempts = ctx.attempts,
                duration_ms = ms(total),
                upstream_ms = upstream.map(ms),
                first_byte_ms = ctx.first_byte.map(ms),
                request_bytes = ctx.body.len(),
                response_bytes = ctx.bytes_out,
                streamed = ctx.streaming,
                policy = ctx.guard.as_ref().map(|g| g.policy.name.as_str()),
                tenant = ctx.guard.as_ref().map(|g| g.tenant.as_str()).or(ctx.caller.key.as_ref().map(|k| k.tenant.as_str())),
                findings = ctx.guard.as_ref().map(|g| guard::summary(&g.findings)).filter(|s| !s.is_empty()),
                error = ctx.gateway_error.map(ErrorKind::code),
                cause = e.map(|e| e.etype().as_str()),
                key = ctx.caller.key_id(),
                limit = ctx.refused_by,
                model = ctx.model.as_ref().map(|(m, _)| m.as_str()),
                classify_ms = ctx.model.as_ref().map(|(_, d)| ms(*d)),
                suppressed = (suppressed > 0).then_some(suppressed),
                "request"
            );
        }
        let tokens = self.settle_tokens(ctx);
        let monitor = ctx.monitor.take();
        if let Some(audit) = &self.access.audit {
            if flood {
                audit.refused(route, status);
            } else if !ctx.mcp_records.is_empty() {
                // one record per JSON-RPC call of an MCP request
                let base = self.audit_record(ctx, status, source, total, None);
                let records: Vec<crate::audit::Record> = std::mem::take(&mut ctx.mcp_records)
                    .into_iter()
                    .map(|r| crate::audit::Record {
                        findings: r.findings,
                        mcp: r.mcp,
                        ..base.clone()
                    })
                    .collect();
                let audit = audit.clone();
                let write = async move |mut records: Vec<crate::audit::Record>,
                                        late: Vec<Applied>| {
                    // a monitor-only classification's findings join the first call's record
                    if let Some(first) = records.first_mut() {
                        access::count_into(&mut first.findings, &late);
                    }
                    for r in records {
                        audit.record(r).await;
                    }
                };
                match monitor {
                    Some(pending) => {
                        tokio::spawn(async move {
                            let late = pending.await.unwrap_or_default();
                            write(records, late).await;
                        });
                    }
                    None => write(records, Vec::new()).await,
                }
            } else {
                let mut record = self.audit_record(ctx, status, source, total, tokens);
                match monitor {
                    // the classification finishes on its own task, then the record is written:
                    // the connection does not wait for it
                    Some(pending) => {
                        let audit = audit.clone();
                        tokio::spawn(async move {
                            if let Ok(found) = pending.await {
                                access::count_into(&mut record.findings, &found);
                            }
                            audit.record(record).await;
                        });
                    }
                    None => audit.record(record).await,
                }
            }
        }
        ctx.admission = Admission::default();
        ctx.in_flight.take();
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // The access log line above carries the error; pingora's own line would repeat it.
        true
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        format!(
            "{} {} request_id={}",
            session.req_header().method,
            session.req_header().uri.path(),
            ctx.request_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_connect_timeout_and_client_errors() {
        assert_eq!(
            classify(&Error::new_up(ErrorType::ConnectRefused)),
            Some(ErrorKind::UpstreamConnect)
        );
        assert_eq!(
            classify(&Error::new_up(ErrorType::ReadTimedout)),
            Some(ErrorKind::UpstreamTimeout)
        );
        assert_eq!(
            classify(&Error::new_up(ErrorType::ConnectionClosed)),
            Some(ErrorKind::UpstreamProtocol)
        );
        assert_eq!(classify(&Error::new_down(ErrorType::WriteError)), None);
        assert_eq!(
            classify(&Error::new_in(ErrorType::InternalError)),
            Some(ErrorKind::Internal)
        );
    }

    #[test]
    fn failure_reasons() {
        assert_eq!(
            failure_reason(ErrorKind::UpstreamConnect, false),
            "connect_error"
        );
        assert_eq!(
            failure_reason(ErrorKind::UpstreamProtocol, true),
            "broken_response"
        );
        assert_eq!(
            failure_reason(ErrorKind::UpstreamProtocol, false),
            "connection_error"
        );
    }
}
