//! Prometheus metrics of the gateway, served on the admin listener's `/metrics`.
//!
//! Labels are bounded: route labels come from [`crate::routes::Route::label`], backends from the
//! config, error codes from [`crate::error::ErrorKind::code`]. Request content never becomes a
//! label.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds) from sub-millisecond proxy overhead to two-minute generations.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry the admin listener encodes.
    pub registry: Registry,
    /// `portcullis_requests_total{route,status,source}`; `source` is `backend` for answers the
    /// backend produced and `gateway` for answers the gateway produced itself.
    pub requests: IntCounterVec,
    /// `portcullis_request_duration_seconds{route}`: first request byte to last response byte.
    pub request_duration: HistogramVec,
    /// `portcullis_upstream_duration_seconds{route}`: first upstream attempt to the end of the
    /// backend's response.
    pub upstream_duration: HistogramVec,
    /// `portcullis_upstream_first_byte_seconds{route}`: attempt start to response header
    /// (time to first token, for generation routes).
    pub upstream_first_byte: HistogramVec,
    /// `portcullis_request_body_bytes_total{route}`
    pub request_bytes: IntCounterVec,
    /// `portcullis_response_body_bytes_total{route}`
    pub response_bytes: IntCounterVec,
    /// `portcullis_in_flight_requests`
    pub in_flight: IntGauge,
    /// `portcullis_gateway_errors_total{route,code}`: answers the gateway produced itself.
    pub gateway_errors: IntCounterVec,
    /// `portcullis_upstream_healthy{upstream,backend}`: 1 in rotation, 0 out.
    pub upstream_healthy: IntGaugeVec,
    /// `portcullis_upstream_circuit_state{upstream,backend}`: 0 closed, 1 half-open, 2 open.
    pub upstream_circuit: IntGaugeVec,
    /// `portcullis_upstream_in_flight{upstream,backend}`
    pub upstream_in_flight: IntGaugeVec,
    /// `portcullis_upstream_failures_total{upstream,backend,reason}`
    pub upstream_failures: IntCounterVec,
    /// `portcullis_upstream_retries_total{upstream}`
    pub upstream_retries: IntCounterVec,
    /// `portcullis_policy_info{policy,version}` = 1 for each loaded policy.
    pub policy_info: IntGaugeVec,
    /// `portcullis_guard_findings_total{direction,type,action}` (never values).
    pub guard_findings: IntCounterVec,
    /// `portcullis_guard_decisions_total{direction,policy,action}`: one per prompt or answer.
    pub guard_decisions: IntCounterVec,
    /// `portcullis_guard_seconds{direction}`: time spent evaluating a whole prompt or answer.
    pub guard_seconds: HistogramVec,
    /// `portcullis_guard_restores_total{type,how}`: placeholders met in answers, and whether
    /// the original went back (`restore`) or the output policy replaced it (`redact`,
    /// `pseudonymize`, `block`).
    pub guard_restores: IntCounterVec,
    /// `portcullis_policy_reloads_total{policy,result}`: hot reloads, `ok` or `error`.
    pub policy_reloads: IntCounterVec,
    /// `portcullis_auth_failures_total{reason}`: requests refused for their key.
    pub auth_failures: IntCounterVec,
    /// `portcullis_limit_refusals_total{limit}`: requests refused by a limit.
    pub limit_refusals: IntCounterVec,
    /// `portcullis_llm_tokens_total{tenant,kind}`: prompt/generated tokens by tenant.
    pub llm_tokens: IntCounterVec,
    /// `portcullis_audit_dropped_total`: audit records dropped because the writer fell behind.
    pub audit_dropped: IntCounter,
    /// `portcullis_connections_open`: client connections open.
    pub connections_open: IntGauge,
    /// `portcullis_connections_refused_total{reason}`: connections refused or cut
    /// (`max_connections`, `max_connections_per_ip`, `header_timeout`).
    pub connections_refused: IntCounterVec,
    /// `portcullis_limit_store_errors_total`: failed calls to the shared (Redis) limit store.
    pub limit_store_errors: IntCounter,
    /// `portcullis_classifier_seconds{model}`: classification time per request (queue included).
    pub classifier_seconds: HistogramVec,
    /// `portcullis_classifier_requests_total{model,outcome}`: `ok`, `timeout`, `error`, `overloaded`,
    /// `too_long`, `cached` (every text scored on an earlier turn), `skipped` (monitor-only,
    /// every session busy monitoring), `over_budget` (monitor-only, `models.monitor_share` spent);
    /// the entity tagging of a request counts as `entities_ok` or `entities_failed`.
    pub classifier_requests: IntCounterVec,
    /// `portcullis_scan_cache_total{kind,result}`: texts looked up in the scan-once cache,
    /// `kind` `rules` (input rule findings), `classifier` (model scores) or `entities` (the
    /// entity head's spans), `result` `hit` or `miss` (scanned or classified, then remembered).
    pub scan_cache: IntCounterVec,
    /// `portcullis_scan_cache_bytes`: what the scan-once cache holds, all tenants together.
    pub scan_cache_bytes: prometheus::IntGauge,
    /// `portcullis_classifier_batch_windows`: text windows per encoder session run.
    pub classifier_batch: Histogram,
    /// `portcullis_classifier_batch_seconds`: time of one encoder session run.
    pub classifier_batch_seconds: Histogram,
    /// `portcullis_model_info{model,version,digest}` = 1 for each bundle serving.
    pub model_info: IntGaugeVec,
    /// `portcullis_model_swaps_total{model,result}`: hot swaps, `ok` or `error`.
    pub model_swaps: IntCounterVec,
    /// `portcullis_model_swap_load_seconds{model}`: time the last swap spent loading (requests kept flowing).
    pub model_swap_load: prometheus::GaugeVec,
    /// `portcullis_model_refusals_total{model,reason}`: versions the trust check refused
    /// (`unsigned`, `untrusted`, `tampered`, `malformed`, `policy`).
    pub model_refusals: IntCounterVec,
    /// `portcullis_adapter_requests_total{adapter,outcome}`: requests routed to an adapter
    /// (`base` for none), `routed`; or a split's choice that was not live (`not_live`: the
    /// base model served).
    pub adapter_requests: IntCounterVec,
    /// `portcullis_mcp_calls_total{server,method,tool,outcome}`: JSON-RPC requests a client
    /// sent to an MCP server, by outcome (`forwarded`, `refused`, `withheld`: the answer was
    /// replaced by the gateway's error, `marked`, `upstream_error`). `tool` is the tool's
    /// name when the server listed it (else `other`), `-` for other methods; `method` is one
    /// of MCP's methods or `other`.
    pub mcp_calls: IntCounterVec,
    /// `portcullis_mcp_tools_hidden_total{server,reason}`: tools removed from `tools/list`
    /// answers (`not_allowed`, `finding`, `changed`).
    pub mcp_tools_hidden: IntCounterVec,
    /// `portcullis_mcp_tool_changes_total{server,action}`: tool definitions seen changed since
    /// they were pinned (`block`, `flag`), and approvals (`approved`).
    pub mcp_tool_changes: IntCounterVec,
}

/// The series of one route (see [`Metrics::for_route`]).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    /// `portcullis_request_duration_seconds{route}`
    pub request_duration: Histogram,
    /// `portcullis_upstream_duration_seconds{route}`
    pub upstream_duration: Histogram,
    /// `portcullis_upstream_first_byte_seconds{route}`
    pub upstream_first_byte: Histogram,
    /// `portcullis_request_body_bytes_total{route}`
    pub request_bytes: IntCounter,
    /// `portcullis_response_body_bytes_total{route}`
    pub response_bytes: IntCounter,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: T,
) -> prometheus::Result<T> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// A fresh registry with every metric registered. Fails only if a metric definition is
    /// invalid (a programming error the unit tests catch).
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let hist = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                &["route"],
            )
        };
        let cv = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let gv = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        Ok(Metrics {
            requests: reg(
                &r,
                cv(
                    "portcullis_requests_total",
                    "Requests by route, status and who produced the answer",
                    &["route", "status", "source"],
                )?,
            )?,
            request_duration: reg(
                &r,
                hist(
                    "portcullis_request_duration_seconds",
                    "Total request latency seen by the gateway",
                )?,
            )?,
            upstream_duration: reg(
                &r,
                hist(
                    "portcullis_upstream_duration_seconds",
                    "From the first upstream attempt to the end of the backend's response",
                )?,
            )?,
            upstream_first_byte: reg(
                &r,
                hist(
                    "portcullis_upstream_first_byte_seconds",
                    "From the upstream attempt to the backend's response header",
                )?,
            )?,
            request_bytes: reg(
                &r,
                cv(
                    "portcullis_request_body_bytes_total",
                    "Request body bytes received",
                    &["route"],
                )?,
            )?,
            response_bytes: reg(
                &r,
                cv(
                    "portcullis_response_body_bytes_total",
                    "Response body bytes sent",
                    &["route"],
                )?,
            )?,
            in_flight: reg(
                &r,
                IntGauge::new("portcullis_in_flight_requests", "Requests being served")?,
            )?,
            gateway_errors: reg(
                &r,
                cv(
                    "portcullis_gateway_errors_total",
                    "Error answers the gateway produced itself",
                    &["route", "code"],
                )?,
            )?,
            upstream_healthy: reg(
                &r,
                gv(
                    "portcullis_upstream_healthy",
                    "1 when the backend passes its health checks",
                    &["upstream", "backend"],
                )?,
            )?,
            upstream_circuit: reg(
                &r,
                gv(
                    "portcullis_upstream_circuit_state",
                    "Circuit breaker: 0 closed, 1 half-open, 2 open",
                    &["upstream", "backend"],
                )?,
            )?,
            upstream_in_flight: reg(
                &r,
                gv(
                    "portcullis_upstream_in_flight",
                    "Requests in flight per backend",
                    &["upstream", "backend"],
                )?,
            )?,
            upstream_failures: reg(
                &r,
                cv(
                    "portcullis_upstream_failures_total",
                    "Failed upstream attempts by reason",
                    &["upstream", "backend", "reason"],
                )?,
            )?,
            upstream_retries: reg(
                &r,
                cv(
                    "portcullis_upstream_retries_total",
                    "Attempts retried on another backend",
                    &["upstream"],
                )?,
            )?,
            policy_info: reg(
                &r,
                gv(
                    "portcullis_policy_info",
                    "Loaded policies (1 per policy name and version in force)",
                    &["policy", "version"],
                )?,
            )?,
            guard_findings: reg(
                &r,
                cv(
                    "portcullis_guard_findings_total",
                    "Guardrail findings by direction, finding type and action taken",
                    &["direction", "type", "action"],
                )?,
            )?,
            guard_restores: reg(
                &r,
                cv(
                    "portcullis_guard_restores_total",
                    "Placeholders met in answers, by finding type and what became of them",
                    &["type", "how"],
                )?,
            )?,
            guard_decisions: reg(
                &r,
                cv(
                    "portcullis_guard_decisions_total",
                    "Prompts and answers by direction, policy and the most severe action taken",
                    &["direction", "policy", "action"],
                )?,
            )?,
            guard_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "portcullis_guard_seconds",
                        "Time spent evaluating a whole prompt or answer",
                    )
                    .buckets(vec![
                        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                        0.005, 0.01, 0.025, 0.05, 0.1,
                    ]),
                    &["direction"],
                )?,
            )?,
            policy_reloads: reg(
                &r,
                cv(
                    "portcullis_policy_reloads_total",
                    "Policy hot reloads by policy and result (ok, error)",
                    &["policy", "result"],
                )?,
            )?,
            auth_failures: reg(
                &r,
                cv(
                    "portcullis_auth_failures_total",
                    "Requests refused for their API key (missing, unknown, expired, revoked)",
                    &["reason"],
                )?,
            )?,
            limit_refusals: reg(
                &r,
                cv(
                    "portcullis_limit_refusals_total",
                    "Requests the gateway refused with 429, by limit",
                    &["limit"],
                )?,
            )?,
            llm_tokens: reg(
                &r,
                cv(
                    "portcullis_llm_tokens_total",
                    "LLM tokens by tenant and kind (prompt, generated)",
                    &["tenant", "kind"],
                )?,
            )?,
            audit_dropped: reg(
                &r,
                IntCounter::new(
                    "portcullis_audit_dropped_total",
                    "Audit records dropped because the writer fell behind (audit.on_full: drop)",
                )?,
            )?,
            connections_open: reg(
                &r,
                IntGauge::new("portcullis_connections_open", "Client connections open")?,
            )?,
            connections_refused: reg(
                &r,
                cv(
                    "portcullis_connections_refused_total",
                    "Client connections refused at a cap or cut at the header deadline",
                    &["reason"],
                )?,
            )?,
            limit_store_errors: reg(
                &r,
                IntCounter::new(
                    "portcullis_limit_store_errors_total",
                    "Calls to the shared limit store (redis) that failed or timed out",
                )?,
            )?,
            classifier_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "portcullis_classifier_seconds",
                        "Model classification time per request, queueing included",
                    )
                    .buckets(vec![
                        0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2,
                        0.5,
                    ]),
                    &["model"],
                )?,
            )?,
            classifier_requests: reg(
                &r,
                cv(
                    "portcullis_classifier_requests_total",
                    "Requests classified, by model and outcome (ok, timeout, error, overloaded, too_long; cached, every text scored on an earlier turn (scan-once cache); monitor-only classifications not run: skipped, every session busy monitoring; over_budget, monitoring used its CPU share, models.monitor_share)",
                    &["model", "outcome"],
                )?,
            )?,
            scan_cache: reg(
                &r,
                cv(
                    "portcullis_scan_cache_total",
                    "Texts looked up in the scan-once cache, by kind (rules: input rule findings, classifier: model scores, entities: entity spans) and result (hit, miss)",
                    &["kind", "result"],
                )?,
            )?,
            scan_cache_bytes: reg(
                &r,
                prometheus::IntGauge::new(
                    "portcullis_scan_cache_bytes",
                    "Bytes the scan-once cache holds, all tenants together",
                )?,
            )?,
            classifier_batch: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "portcullis_classifier_batch_windows",
                        "Text windows per encoder session run (micro-batching)",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
                )?,
            )?,
            classifier_batch_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "portcullis_classifier_batch_seconds",
                        "Time of one encoder session run",
                    )
                    .buckets(vec![
                        0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                    ]),
                )?,
            )?,
            model_info: reg(
                &r,
                gv(
                    "portcullis_model_info",
                    "Model bundles serving (1 per bundle name, version and manifest digest)",
                    &["model", "version", "digest"],
                )?,
            )?,
            model_swaps: reg(
                &r,
                cv(
                    "portcullis_model_swaps_total",
                    "Model bundle hot swaps by model and result (ok, error)",
                    &["model", "result"],
                )?,
            )?,
            model_swap_load: reg(
                &r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "portcullis_model_swap_load_seconds",
                        "Time the last hot swap spent loading and verifying the new bundle",
                    ),
                    &["model"],
                )?,
            )?,
            model_refusals: reg(
                &r,
                cv(
                    "portcullis_model_refusals_total",
                    "Model versions refused before loading, by model and reason (unsigned, untrusted, tampered, malformed, policy)",
                    &["model", "reason"],
                )?,
            )?,
            adapter_requests: reg(
                &r,
                cv(
                    "portcullis_adapter_requests_total",
                    "Requests by the LoRA adapter they were routed to (base: none) and outcome (routed, not_live)",
                    &["adapter", "outcome"],
                )?,
            )?,
            mcp_calls: reg(
                &r,
                cv(
                    "portcullis_mcp_calls_total",
                    "JSON-RPC requests to MCP servers by server, method, tool and outcome (forwarded, refused, withheld, marked, upstream_error)",
                    &["server", "method", "tool", "outcome"],
                )?,
            )?,
            mcp_tools_hidden: reg(
                &r,
                cv(
                    "portcullis_mcp_tools_hidden_total",
                    "Tools removed from MCP tools/list answers by server and reason (not_allowed, finding, changed)",
                    &["server", "reason"],
                )?,
            )?,
            mcp_tool_changes: reg(
                &r,
                cv(
                    "portcullis_mcp_tool_changes_total",
                    "MCP tool definitions that changed after they were pinned, by server and what the policy did (block, flag), and approvals (approved)",
                    &["server", "action"],
                )?,
            )?,
            registry: r,
        })
    }

    /// Handles of the per-route series, resolved once so the request path does not hash labels.
    pub fn for_route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            request_duration: self.request_duration.with_label_values(&[route]),
            upstream_duration: self.upstream_duration.with_label_values(&[route]),
            upstream_first_byte: self.upstream_first_byte.with_label_values(&[route]),
            request_bytes: self.request_bytes.with_label_values(&[route]),
            response_bytes: self.response_bytes.with_label_values(&[route]),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_encodes() {
        let m = Metrics::new().unwrap();
        m.requests
            .with_label_values(&["generate", "200", "backend"])
            .inc();
        m.request_duration
            .with_label_values(&["generate"])
            .observe(0.01);
        m.upstream_healthy
            .with_label_values(&["tgi", "127.0.0.1:3000"])
            .set(1);
        m.in_flight.inc();
        let text = String::from_utf8(m.encode()).unwrap();
        for name in [
            "portcullis_requests_total",
            "portcullis_request_duration_seconds_bucket",
            "portcullis_upstream_healthy",
            "portcullis_in_flight_requests",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        m.upstream_duration.with_label_values(&["x"]);
        m.upstream_first_byte.with_label_values(&["x"]);
        m.request_bytes.with_label_values(&["x"]);
        m.response_bytes.with_label_values(&["x"]);
        m.gateway_errors.with_label_values(&["x", "y"]);
        m.upstream_circuit.with_label_values(&["x", "y"]);
        m.upstream_in_flight.with_label_values(&["x", "y"]);
        m.upstream_failures.with_label_values(&["x", "y", "z"]);
        m.upstream_retries.with_label_values(&["x"]);
        m.policy_info.with_label_values(&["x", "1"]);
        m.auth_failures.with_label_values(&["missing"]);
        m.limit_refusals.with_label_values(&["key_rate"]);
        m.llm_tokens.with_label_values(&["t", "prompt"]);
        m.classifier_seconds.with_label_values(&["guard"]);
        m.classifier_requests.with_label_values(&["guard", "ok"]);
        m.scan_cache.with_label_values(&["rules", "hit"]);
        m.model_info.with_label_values(&["guard", "1", "abc"]);
        m.model_swaps.with_label_values(&["guard", "ok"]);
        m.model_swap_load.with_label_values(&["guard"]);
        m.connections_refused.with_label_values(&["header_timeout"]);
        // families with at least one series: the 21 above, the 3 access counters, the audit
        // drop counter, the open-connections gauge, the two (label-less) classifier batch
        // histograms and the scan cache's size
        m.limit_store_errors.inc();
        assert_eq!(m.registry.gather().len(), 30);
    }
}
