//! The mock's HTTP handlers: TGI's routes, plus `/_mock/*` inspection and control routes.

// Handlers return `Result<_, Response>` so an early error is just `?`-free `return Err(resp)`;
// the large `Err` is the response itself, built once per failed request.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{self, ChatRequest, CompletionRequest, GenerateRequest};
use super::fault::{self, Fault};
use super::generate::{self, GenToken, Plan};
use super::sse::{self, Pacing};
use super::tokens;
use super::{Mock, Mode};

/// The version string the mock reports, matching the OpenAPI document it implements.
pub const TGI_VERSION: &str = "3.3.6-dev0";

type Mk = State<Arc<Mock>>;

// ----------------------------------------------------------------------------------------------
// Errors in TGI's shape

/// A TGI `ErrorResponse`: `{"error": ..., "error_type": ...}`.
pub fn tgi_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": message, "error_type": error_type}).to_string(),
    )
        .into_response()
}

/// The same error as a one-event SSE body, as TGI answers errors on `/generate_stream`.
fn tgi_stream_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let ev = sse::frame(&json!({"error": message, "error_type": error_type}).to_string());
    (status, sse_headers(), Body::from(ev)).into_response()
}

fn error_type_for(status: u16) -> &'static str {
    match status {
        400 | 415 | 422 => "validation",
        424 => "generation",
        429 => "overloaded",
        503 => "unhealthy",
        _ => "internal",
    }
}

fn sse_headers() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ]
}

// ----------------------------------------------------------------------------------------------
// Per-request prelude: record, faults, concurrency, body parsing

/// What every API handler does first. Holds the in-flight slot until dropped.
pub(crate) struct Begun {
    pub(crate) fault: Fault,
    _slot: Slot,
}

struct Slot(Arc<Mock>);
impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn begin(
    mock: &Arc<Mock>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    streaming_route: bool,
) -> Result<Begun, Response> {
    mock.record(method, uri, headers, body);
    mock.stats.requests.fetch_add(1, Ordering::Relaxed);
    let fault = match headers.get(fault::HEADER) {
        None => Fault::default(),
        Some(v) => match v
            .to_str()
            .map_err(|e| e.to_string())
            .and_then(|s| Fault::parse(s).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(msg) => {
                return Err(tgi_error(
                    StatusCode::BAD_REQUEST,
                    "mock_fault",
                    &format!("bad {} header: {msg}", fault::HEADER),
                ));
            }
        },
    };
    let now = mock.stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    let slot = Slot(mock.clone());
    if now > mock.config.max_concurrent_requests {
        mock.stats.failures.fetch_add(1, Ordering::Relaxed);
        return Err(tgi_error(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "Model is overloaded",
        ));
    }
    if let Some(d) = fault.delay {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = fault.status {
        mock.stats.failures.fetch_add(1, Ordering::Relaxed);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let msg = format!("mock-tgi: injected status {code}");
        return Err(if streaming_route {
            tgi_stream_error(status, error_type_for(code), &msg)
        } else {
            tgi_error(status, error_type_for(code), &msg)
        });
    }
    Ok(Begun { fault, _slot: slot })
}

/// Parse a JSON body the way TGI's axum extractor does: 415 without a JSON content type, 400 for
/// malformed JSON, 422 for JSON of the wrong shape; errors in TGI's shape.
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(tgi_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "validation",
            "Expected request with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => tgi_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                &format!("Failed to deserialize the JSON body into the target type: {e}"),
            ),
            _ => tgi_error(
                StatusCode::BAD_REQUEST,
                "validation",
                &format!("Failed to parse the request body as JSON: {e}"),
            ),
        }
    })
}

fn invalid(e: generate::Invalid) -> Response {
    tgi_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        &e.to_string(),
    )
}

impl Mock {
    fn pacing(&self, fault: &Fault) -> Pacing {
        let tps = fault
            .tokens_per_second
            .unwrap_or(self.config.tokens_per_second);
        Pacing {
            ttft: fault.ttft.unwrap_or(self.config.ttft),
            per_token: if tps > 0.0 {
                Duration::from_secs_f64(1.0 / tps)
            } else {
                Duration::ZERO
            },
            drop_after: fault.drop_after,
        }
    }

    fn answer_for(&self, prompt: &str) -> String {
        match &self.config.mode {
            Mode::Echo => prompt.to_string(),
            Mode::Script(s) => s.reply(prompt).to_string(),
        }
    }

    pub(crate) fn plan(
        &self,
        prompt: &str,
        echo_text: &str,
        max_new: Option<u32>,
        stop: &[String],
    ) -> Result<Plan, generate::Invalid> {
        let answer = self.answer_for(echo_text);
        generate::plan(prompt, &answer, max_new, stop, self.config.limits)
    }

    fn count_success(&self, plan: &Plan) {
        self.stats.successes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .generated_tokens
            .fetch_add(plan.generated_tokens() as u64, Ordering::Relaxed);
        self.stats
            .input_tokens
            .fetch_add(plan.input_length as u64, Ordering::Relaxed);
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token_json(t: &GenToken) -> Value {
    json!({"id": t.id, "text": t.text, "logprob": t.logprob, "special": t.special})
}

/// A non-streamed JSON answer, generated at the configured pace, possibly cut by `drop_after`.
async fn json_answer(mock: &Arc<Mock>, fault: &Fault, plan: &Plan, body: Value) -> Response {
    let mut r = json_answer_bare(mock, fault, plan, body).await;
    compute_headers(r.headers_mut(), plan);
    r
}

/// A JSON answer without TGI's token-count headers (other APIs do not send them).
pub(crate) async fn json_answer_bare(
    mock: &Arc<Mock>,
    fault: &Fault,
    plan: &Plan,
    body: Value,
) -> Response {
    let pacing = mock.pacing(fault);
    let gen_time = pacing.ttft + pacing.per_token * (plan.generated_tokens() as u32);
    if !gen_time.is_zero() {
        tokio::time::sleep(gen_time).await;
    }
    mock.count_success(plan);
    let bytes = Bytes::from(body.to_string());
    let mut resp = if fault.drop_after.is_some() {
        // Send half of the body, then abort the connection.
        mock.stats
            .connections_dropped
            .fetch_add(1, Ordering::Relaxed);
        let half = bytes.slice(..bytes.len() / 2);
        let cut = futures::stream::once(async move {
            // Let the server flush the first half before the connection is cut.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "mock-tgi: connection dropped by x-mock-fault drop_after",
            ))
        });
        let parts =
            futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) }).chain(cut);
        Response::new(Body::from_stream(parts))
    } else {
        Response::new(Body::from(bytes))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn compute_headers(h: &mut HeaderMap, plan: &Plan) {
    h.insert("x-compute-type", HeaderValue::from_static("mock"));
    h.insert(
        "x-prompt-tokens",
        HeaderValue::from(plan.input_length as u64),
    );
    h.insert(
        "x-generated-tokens",
        HeaderValue::from(plan.generated_tokens() as u64),
    );
}

fn sse_response(mock: &Arc<Mock>, begun: Begun, plan: &Plan, events: Vec<Bytes>) -> Response {
    let mut r = sse_response_bare(mock, begun, plan, events);
    compute_headers(r.headers_mut(), plan);
    r
}

/// An event stream without TGI's token-count headers.
pub(crate) fn sse_response_bare(
    mock: &Arc<Mock>,
    begun: Begun,
    plan: &Plan,
    events: Vec<Bytes>,
) -> Response {
    mock.count_success(plan);
    let pacing = mock.pacing(&begun.fault);
    // The stream keeps the request's in-flight slot until its last event.
    let stream = sse::paced(mock.clone(), events, pacing, begun._slot);
    (sse_headers(), Body::from_stream(stream)).into_response()
}

// ----------------------------------------------------------------------------------------------
// TGI-native routes

fn generate_body(plan: &Plan, req: &GenerateRequest) -> Value {
    let p = &req.parameters;
    let text = if p.return_full_text.unwrap_or(false) {
        format!("{}{}", req.inputs, plan.text)
    } else {
        plan.text.clone()
    };
    if !p.details.unwrap_or(false) {
        return json!({ "generated_text": text });
    }
    let prefill: Vec<Value> = if p.decoder_input_details.unwrap_or(false) {
        tokens::tokenize(&req.inputs)
            .iter()
            .map(|t| json!({"id": t.id, "text": t.text, "logprob": null}))
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "generated_text": text,
        "details": {
            "finish_reason": plan.finish.tgi(),
            "generated_tokens": plan.generated_tokens(),
            "seed": p.seed,
            "prefill": prefill,
            "tokens": plan.tokens.iter().map(token_json).collect::<Vec<_>>(),
            "top_tokens": [],
        }
    })
}

/// The `/generate_stream` events for a plan: one per token; the last carries `generated_text`
/// and `details`. With `error_after`, a generation error replaces the rest.
fn generate_stream_events(plan: &Plan, req: &GenerateRequest, fault: &Fault) -> Vec<Bytes> {
    let n = plan.tokens.len();
    let full_text = if req.parameters.return_full_text.unwrap_or(false) {
        format!("{}{}", req.inputs, plan.text)
    } else {
        plan.text.clone()
    };
    let mut out = Vec::with_capacity(n + 1);
    for (i, t) in plan.tokens.iter().enumerate() {
        if fault.error_after == Some(i) {
            out.push(sse::frame(
                &json!({"error": "mock-tgi: injected generation error", "error_type": "generation"})
                    .to_string(),
            ));
            return out;
        }
        let last = i + 1 == n;
        let ev = json!({
            "index": i + 1,
            "token": token_json(t),
            "top_tokens": [],
            "generated_text": if last { Value::String(full_text.clone()) } else { Value::Null },
            "details": if last {
                json!({
                    "finish_reason": plan.finish.tgi(),
                    "generated_tokens": plan.generated_tokens(),
                    "input_length": plan.input_length,
                    "seed": req.parameters.seed,
                })
            } else { Value::Null },
        });
        out.push(sse::frame(&ev.to_string()));
    }
    out
}

async fn tgi_generate(
    mock: Arc<Mock>,
    headers: HeaderMap,
    body: Bytes,
    begun: Begun,
    stream: bool,
    compat: bool,
) -> Response {
    let req: GenerateRequest = match parse_json(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let stop = req.parameters.stop.clone().unwrap_or_default();
    let plan = match mock.plan(
        &req.inputs,
        &req.inputs,
        req.parameters.max_new_tokens,
        &stop,
    ) {
        Ok(p) => p,
        Err(e) => {
            return if stream {
                tgi_stream_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    &e.to_string(),
                )
            } else {
                invalid(e)
            };
        }
    };
    if stream {
        let events = generate_stream_events(&plan, &req, &begun.fault);
        sse_response(&mock, begun, &plan, events)
    } else {
        let mut body = generate_body(&plan, &req);
        if compat {
            // The compat route `/` answers a list with one GenerateResponse.
            body = Value::Array(vec![body]);
        }
        json_answer(&mock, &begun.fault, &plan, body).await
    }
}

/// `POST /generate`
pub async fn generate(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match begin(&mock, &method, &uri, &headers, &body, false).await {
        Ok(b) => tgi_generate(mock, headers, body, b, false, false).await,
        Err(r) => r,
    }
}

/// `POST /generate_stream`
pub async fn generate_stream(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match begin(&mock, &method, &uri, &headers, &body, true).await {
        Ok(b) => tgi_generate(mock, headers, body, b, true, false).await,
        Err(r) => r,
    }
}

/// `POST /` (TGI's compat route: `stream` in the body chooses JSON or SSE).
pub async fn compat_generate(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wants_stream = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(false);
    match begin(&mock, &method, &uri, &headers, &body, wants_stream).await {
        Ok(b) => tgi_generate(mock, headers, body, b, wants_stream, true).await,
        Err(r) => r,
    }
}

/// `POST /tokenize`
pub async fn tokenize(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _b = match begin(&mock, &method, &uri, &headers, &body, false).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req: GenerateRequest = match parse_json(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    mock.stats.successes.fetch_add(1, Ordering::Relaxed);
    axum::Json(simple_tokens(&req.inputs)).into_response()
}

fn simple_tokens(text: &str) -> Vec<Value> {
    tokens::tokenize(text)
        .into_iter()
        .map(|t| json!({"id": t.id, "text": t.text, "start": t.start, "stop": t.stop}))
        .collect()
}

/// `POST /chat_tokenize`
pub async fn chat_tokenize(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _b = match begin(&mock, &method, &uri, &headers, &body, false).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req: ChatRequest = match parse_json(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let templated = api::chat_template(&req);
    mock.stats.successes.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({"tokenize_response": simple_tokens(&templated), "templated_text": templated}))
        .into_response()
}

/// `GET /info`
pub async fn info(State(mock): Mk) -> Response {
    let c = &mock.config;
    axum::Json(json!({
        "model_id": c.model_id,
        "model_sha": null,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": c.max_concurrent_requests,
        "max_best_of": 2,
        "max_stop_sequences": c.limits.max_stop_sequences,
        "max_input_tokens": c.limits.max_input_tokens,
        "max_total_tokens": c.limits.max_total_tokens,
        "validation_workers": 2,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": TGI_VERSION,
        "sha": null,
        "docker_label": null,
    }))
    .into_response()
}

/// `GET /health`: 200 with an empty body, or 503 when switched unhealthy.
pub async fn health(State(mock): Mk) -> Response {
    mock.stats.health_checks.fetch_add(1, Ordering::Relaxed);
    if mock.healthy.load(Ordering::Relaxed) {
        StatusCode::OK.into_response()
    } else {
        tgi_error(StatusCode::SERVICE_UNAVAILABLE, "healthcheck", "unhealthy")
    }
}

/// `GET /metrics` (Prometheus text, TGI's metric names where they exist).
pub async fn metrics(State(mock): Mk) -> Response {
    let s = &mock.stats;
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let text = format!(
        "# HELP tgi_request_count Total number of requests\n# TYPE tgi_request_count counter\ntgi_request_count {}\n\
         # HELP tgi_request_success Number of successful requests\n# TYPE tgi_request_success counter\ntgi_request_success {}\n\
         # HELP tgi_request_failure Number of failed requests\n# TYPE tgi_request_failure counter\ntgi_request_failure {}\n\
         # HELP tgi_request_generated_tokens Generated tokens\n# TYPE tgi_request_generated_tokens counter\ntgi_request_generated_tokens {}\n\
         # HELP mock_input_tokens_total Prompt tokens of the generations answered\n# TYPE mock_input_tokens_total counter\nmock_input_tokens_total {}\n\
         # HELP mock_streams_started_total Streams started\n# TYPE mock_streams_started_total counter\nmock_streams_started_total {}\n\
         # HELP mock_streams_completed_total Streams that sent their last event\n# TYPE mock_streams_completed_total counter\nmock_streams_completed_total {}\n\
         # HELP mock_streams_cancelled_total Streams that ended before their last event\n# TYPE mock_streams_cancelled_total counter\nmock_streams_cancelled_total {}\n\
         # HELP mock_connections_dropped_total Connections cut by a drop_after fault\n# TYPE mock_connections_dropped_total counter\nmock_connections_dropped_total {}\n",
        l(&s.requests),
        l(&s.successes),
        l(&s.failures),
        l(&s.generated_tokens),
        l(&s.input_tokens),
        l(&s.streams_started),
        l(&s.streams_completed),
        l(&s.streams_cancelled),
        l(&s.connections_dropped),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/models`
pub async fn models(State(mock): Mk) -> Response {
    axum::Json(json!({
        "id": mock.config.model_id,
        "object": "model",
        "created": mock.started_unix,
        "owned_by": mock.config.model_id,
    }))
    .into_response()
}

// ----------------------------------------------------------------------------------------------
// OpenAI-compatible routes

pub(crate) fn usage(plan: &Plan, prompt_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": plan.generated_tokens(),
        "total_tokens": prompt_tokens + plan.generated_tokens(),
    })
}

pub(crate) fn visible(t: &GenToken) -> &str {
    if t.special { "" } else { t.text.as_str() }
}

/// What a chat answer carries besides (or instead of) content, chosen by the `x-mock-answer`
/// header: `reasoning` (vLLM's `reasoning_content`, then the content), `refusal` (the text in
/// `refusal`, no content). A request whose `tool_choice` forces a tool gets a tool call whose
/// arguments are `{"text": <echo>}`.
pub const ANSWER_HEADER: &str = "x-mock-answer";

#[derive(Clone, Copy, PartialEq)]
enum ChatShape {
    Content,
    Reasoning,
    Refusal,
}

fn chat_shape(headers: &HeaderMap) -> ChatShape {
    match headers.get(ANSWER_HEADER).and_then(|v| v.to_str().ok()) {
        Some("reasoning") => ChatShape::Reasoning,
        Some("refusal") => ChatShape::Refusal,
        _ => ChatShape::Content,
    }
}

async fn chat(mock: Arc<Mock>, headers: HeaderMap, body: Bytes, begun: Begun) -> Response {
    let req: ChatRequest = match parse_json(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let prompt = api::chat_template(&req);
    let echo = api::chat_echo_text(&req);
    let tool = req.forced_tool();
    // a forced tool call answers with the echo as the call's arguments
    let answer_text = match &tool {
        Some(_) => json!({"text": echo}).to_string(),
        None => echo,
    };
    let stop = req.stop.clone().unwrap_or_default();
    let plan = match mock.plan(&prompt, &answer_text, req.max_tokens, &stop) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let shape = chat_shape(&headers);
    let created = now_unix();
    let model = &mock.config.model_id;
    let fp = format!("{TGI_VERSION}-native");
    let finish = if tool.is_some() {
        "tool_calls"
    } else {
        plan.finish.openai()
    };
    if !req.stream {
        let message = match (&tool, shape) {
            (Some(name), _) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "0", "type": "function", "function": {"description": null, "name": name, "arguments": plan.text}}]}),
            (None, ChatShape::Reasoning) => {
                json!({"role": "assistant", "content": plan.text, "reasoning_content": plan.text})
            }
            (None, ChatShape::Refusal) => {
                json!({"role": "assistant", "content": null, "refusal": plan.text})
            }
            (None, ChatShape::Content) => json!({"role": "assistant", "content": plan.text}),
        };
        let body = json!({
            "object": "chat.completion",
            "id": "",
            "created": created,
            "model": model,
            "system_fingerprint": fp,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish,
            }],
            "usage": usage(&plan, plan.input_length),
        });
        return json_answer(&mock, &begun.fault, &plan, body).await;
    }
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let n = plan.tokens.len();
    let mut events = Vec::with_capacity(2 * n + 3);
    let chunk = |delta: Value, finish: Value| {
        sse::frame(
            &json!({
                "object": "chat.completion.chunk",
                "id": "",
                "created": created,
                "model": model,
                "system_fingerprint": fp,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                "usage": null,
            })
            .to_string(),
        )
    };
    if let Some(name) = &tool {
        events.push(chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "0", "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
    }
    if shape == ChatShape::Reasoning && tool.is_none() {
        for t in &plan.tokens {
            events.push(chunk(
                json!({"role": "assistant", "reasoning_content": visible(t)}),
                Value::Null,
            ));
        }
    }
    for (i, t) in plan.tokens.iter().enumerate() {
        if begun.fault.error_after == Some(i) {
            events.push(sse::frame(
                &json!({"error": "mock-tgi: injected generation error", "error_type": "generation"})
                    .to_string(),
            ));
            return sse_response(&mock, begun, &plan, events);
        }
        let last = i + 1 == n;
        let delta = match (&tool, shape) {
            (Some(_), _) => {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": visible(t)}}]})
            }
            (None, ChatShape::Refusal) => json!({"role": "assistant", "refusal": visible(t)}),
            _ => json!({"role": "assistant", "content": visible(t)}),
        };
        events.push(chunk(
            delta,
            if last {
                Value::from(finish)
            } else {
                Value::Null
            },
        ));
    }
    if include_usage {
        let chunk = json!({
            "object": "chat.completion.chunk",
            "id": "",
            "created": created,
            "model": model,
            "system_fingerprint": fp,
            "choices": [],
            "usage": usage(&plan, plan.input_length),
        });
        events.push(sse::frame(&chunk.to_string()));
    }
    events.push(sse::frame("[DONE]"));
    sse_response(&mock, begun, &plan, events)
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stream = wants_stream(&body);
    match begin(&mock, &method, &uri, &headers, &body, stream).await {
        Ok(b) => chat(mock, headers, body, b).await,
        Err(r) => r,
    }
}

pub(crate) fn wants_stream(body: &Bytes) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(false)
}

async fn completion(mock: Arc<Mock>, headers: HeaderMap, body: Bytes, begun: Begun) -> Response {
    let req: CompletionRequest = match parse_json(&headers, &body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let prompt = req.prompt.first().to_string();
    let stop = req.stop.clone().unwrap_or_default();
    let plan = match mock.plan(&prompt, &prompt, req.max_tokens, &stop) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let created = now_unix();
    let model = &mock.config.model_id;
    let fp = format!("{TGI_VERSION}-native");
    if !req.stream {
        let body = json!({
            "object": "text_completion",
            "id": "",
            "created": created,
            "model": model,
            "system_fingerprint": fp,
            "choices": [{
                "index": 0,
                "text": plan.text,
                "logprobs": null,
                "finish_reason": plan.finish.openai(),
            }],
            "usage": usage(&plan, plan.input_length),
        });
        return json_answer(&mock, &begun.fault, &plan, body).await;
    }
    let n = plan.tokens.len();
    let mut events = Vec::with_capacity(n + 1);
    for (i, t) in plan.tokens.iter().enumerate() {
        if begun.fault.error_after == Some(i) {
            events.push(sse::frame(
                &json!({"error": "mock-tgi: injected generation error", "error_type": "generation"})
                    .to_string(),
            ));
            return sse_response(&mock, begun, &plan, events);
        }
        let last = i + 1 == n;
        let chunk = json!({
            "object": "text_completion",
            "id": "",
            "created": created,
            "model": model,
            "system_fingerprint": fp,
            "choices": [{
                "index": 0,
                "text": visible(t),
                "logprobs": null,
                "finish_reason": if last { plan.finish.openai() } else { "" },
            }],
        });
        events.push(sse::frame(&chunk.to_string()));
    }
    events.push(sse::frame("[DONE]"));
    sse_response(&mock, begun, &plan, events)
}

/// `POST /v1/completions`
pub async fn completions(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stream = wants_stream(&body);
    match begin(&mock, &method, &uri, &headers, &body, stream).await {
        Ok(b) => completion(mock, headers, body, b).await,
        Err(r) => r,
    }
}

/// `POST /invocations` (SageMaker): dispatched on the body's shape like TGI does.
pub async fn invocations(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v: Option<Value> = serde_json::from_slice(&body).ok();
    let stream = v
        .as_ref()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(false);
    let begun = match begin(&mock, &method, &uri, &headers, &body, stream).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // TGI tries a generate request (a string `inputs`), then chat, then completion; other
    // members are ignored
    match v {
        Some(v) if v.get("inputs").is_some_and(Value::is_string) => {
            tgi_generate(mock, headers, body, begun, stream, true).await
        }
        Some(v) if v.get("messages").is_some() => chat(mock, headers, body, begun).await,
        Some(v) if v.get("prompt").is_some() => completion(mock, headers, body, begun).await,
        Some(_) => tgi_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Failed to deserialize the JSON body into the target type: expected `inputs`, `messages` or `prompt`",
        ),
        None => parse_json::<Value>(&headers, &body)
            .err()
            .unwrap_or_else(|| {
                tgi_error(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    "Failed to parse the request body as JSON",
                )
            }),
    }
}

// ----------------------------------------------------------------------------------------------
// Inspection and control routes

/// Query of `GET /_mock/requests`.
#[derive(Debug, Deserialize)]
pub struct RequestsQuery {
    /// Only requests with this `x-request-id`.
    pub request_id: Option<String>,
}

/// `GET /_mock/requests[?request_id=...]`: the last recorded requests, oldest first.
pub async fn list_requests(State(mock): Mk, Query(q): Query<RequestsQuery>) -> Response {
    axum::Json(mock.recorder.list(q.request_id.as_deref())).into_response()
}

/// `DELETE /_mock/requests`: forget recorded requests.
pub async fn clear_requests(State(mock): Mk) -> Response {
    mock.recorder.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// Body of `POST /_mock/health`.
#[derive(Debug, Deserialize)]
pub struct HealthSwitch {
    /// Whether `/health` should answer 200.
    pub healthy: bool,
}

/// `POST /_mock/health {"healthy": false}`: make `/health` fail (or succeed again).
pub async fn set_health(State(mock): Mk, axum::Json(h): axum::Json<HealthSwitch>) -> Response {
    mock.healthy.store(h.healthy, Ordering::Relaxed);
    axum::Json(json!({"healthy": h.healthy})).into_response()
}

/// `GET /_mock/stats`: counters for tests (streams started, completed, cancelled, dropped).
pub async fn stats(State(mock): Mk) -> Response {
    let s = &mock.stats;
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    axum::Json(json!({
        "requests": l(&s.requests),
        "successes": l(&s.successes),
        "failures": l(&s.failures),
        "health_checks": l(&s.health_checks),
        "in_flight": s.in_flight.load(Ordering::Relaxed),
        "active_streams": s.active_streams.load(Ordering::Relaxed),
        "streams_started": l(&s.streams_started),
        "streams_completed": l(&s.streams_completed),
        "streams_cancelled": l(&s.streams_cancelled),
        "connections_dropped": l(&s.connections_dropped),
    }))
    .into_response()
}

/// Any other path: TGI (axum) answers 404 with an empty body.
pub async fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

#[cfg(test)]
mod tests {
    use super::generate::Finish;

    #[test]
    fn finish_reasons_map_like_tgi() {
        assert_eq!(Finish::EosToken.openai(), "stop");
        assert_eq!(Finish::StopSequence.openai(), "stop");
        assert_eq!(Finish::Length.tgi(), "length");
    }
}
