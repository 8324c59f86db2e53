//! `mock-tgi`: a faithful stand-in for a Text Generation Inference server.
//!
//! Routes (TGI's OpenAPI document): `POST /`, `/generate`, `/generate_stream`, `/tokenize`,
//! `/chat_tokenize`, `/invocations`, `/v1/chat/completions`, `/v1/completions`;
//! `GET /info`, `/health`, `/metrics`, `/v1/models`. The families TGI does not speak but the
//! gateway fronts (vLLM and hosted APIs do): `POST /v1/responses`, `/v1/embeddings` (OpenAI) and
//! `/v1/messages` (Anthropic), in [`families`]. Test routes: `GET|DELETE /_mock/requests`,
//! `POST /_mock/health`, `GET /_mock/stats`.
//!
//! Behaviour:
//! - **echo mode** answers with the prompt (chat: the messages' texts joined by `\n`), so a test
//!   sees exactly what reached the backend; **script mode** answers from a YAML file.
//! - Answers are paced: `ttft` before the first token, then `tokens_per_second`.
//! - TGI's validation (empty input, token budgets, stop sequences) answers 422 like TGI.
//! - The `x-mock-fault` header injects a status, a delay, a mid-stream drop or a generation error
//!   for one request (see [`fault`]).

pub mod api;
pub mod families;
pub mod fault;
pub mod generate;
pub mod record;
pub mod routes;
pub mod script;
pub mod sse;
pub mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use generate::Limits;
pub use script::Script;

/// How the mock chooses its answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Answer with the prompt.
    Echo,
    /// Answer from a script.
    Script(Script),
}

/// Settings of one mock server.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Echo or script.
    pub mode: Mode,
    /// Token rate for streamed and non-streamed answers; 0 means no delay.
    pub tokens_per_second: f64,
    /// Time to first token.
    pub ttft: Duration,
    /// The `model_id` reported by `/info` and in OpenAI responses.
    pub model_id: String,
    /// How many requests the recorder keeps.
    pub record_limit: usize,
    /// TGI's validation limits.
    pub limits: Limits,
    /// Requests above this many in flight get TGI's 429 "Model is overloaded".
    pub max_concurrent_requests: usize,
    /// Compress answers with gzip when the request accepts it, as hosted APIs (and proxies in
    /// front of servers) do. TGI itself never compresses: off by default.
    pub compress: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            mode: Mode::Echo,
            tokens_per_second: 0.0,
            ttft: Duration::ZERO,
            model_id: "portcullis/mock-tgi".to_string(),
            record_limit: 1000,
            limits: Limits {
                max_input_tokens: 1_000_000,
                max_total_tokens: 1_048_576,
                max_stop_sequences: 4,
            },
            max_concurrent_requests: 4096,
            compress: false,
        }
    }
}

/// Counters the mock keeps (exposed on `/metrics` and `/_mock/stats`).
#[derive(Debug, Default)]
pub struct Stats {
    /// API requests received (health and metrics excluded).
    pub requests: AtomicU64,
    /// Requests answered with a generation or tokenization.
    pub successes: AtomicU64,
    /// Requests answered with an error status.
    pub failures: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Prompt tokens of the requests answered with a generation.
    pub input_tokens: AtomicU64,
    /// `/health` calls.
    pub health_checks: AtomicU64,
    /// API requests in flight.
    pub in_flight: AtomicUsize,
    /// Streams currently open.
    pub active_streams: AtomicUsize,
    /// Streams started.
    pub streams_started: AtomicU64,
    /// Streams that sent their last event.
    pub streams_completed: AtomicU64,
    /// Streams that ended before their last event (client gone, or a drop fault).
    pub streams_cancelled: AtomicU64,
    /// Connections cut by a `drop_after` fault.
    pub connections_dropped: AtomicU64,
}

/// The shared state of one mock server.
#[derive(Debug)]
pub struct Mock {
    /// Settings.
    pub config: MockConfig,
    /// Recorded requests.
    pub recorder: record::Recorder,
    /// What `/health` answers.
    pub healthy: AtomicBool,
    /// Counters.
    pub stats: Stats,
    /// Start time (Unix seconds), reported as the model's `created`.
    pub started_unix: u64,
}

impl Mock {
    /// A new mock with the given settings.
    pub fn new(config: MockConfig) -> Arc<Mock> {
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Arc::new(Mock {
            recorder: record::Recorder::new(config.record_limit),
            config,
            healthy: AtomicBool::new(true),
            stats: Stats::default(),
            started_unix,
        })
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let text = String::from_utf8_lossy(body).into_owned();
        self.recorder.push(record::Recorded {
            seq: 0,
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            json: serde_json::from_slice(body).ok(),
            body: text,
        });
    }
}

/// The mock's router. Request bodies up to 64 MiB are accepted (TGI's own limit is a setting;
/// the gateway in front enforces the one users see).
pub fn router(mock: Arc<Mock>) -> Router {
    Router::new()
        .route("/", post(routes::compat_generate))
        .route("/generate", post(routes::generate))
        .route("/generate_stream", post(routes::generate_stream))
        .route("/tokenize", post(routes::tokenize))
        .route("/chat_tokenize", post(routes::chat_tokenize))
        .route("/invocations", post(routes::invocations))
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/responses", post(families::responses))
        .route("/v1/embeddings", post(families::embeddings))
        .route("/v1/messages", post(families::messages))
        .route("/info", get(routes::info))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/v1/models", get(routes::models))
        .route(
            "/_mock/requests",
            get(routes::list_requests).delete(routes::clear_requests),
        )
        .route("/_mock/health", post(routes::set_health))
        .route("/_mock/stats", get(routes::stats))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(mock.clone(), compress))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(mock)
}

/// gzip an answer when the mock is set to honour `Accept-Encoding: gzip`, or when the request's
/// fault header forces it (`gzip=1`). The whole answer is compressed at once: a stream loses
/// its pacing, which is fine for the tests that use this.
async fn compress(
    axum::extract::State(mock): axum::extract::State<Arc<Mock>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::io::Write as _;
    let h = req.headers();
    let accepts = h
        .get(axum::http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let forced = h
        .get(fault::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| fault::Fault::parse(v).ok())
        .is_some_and(|f| f.gzip);
    let resp = next.run(req).await;
    if !(forced || (mock.config.compress && accepts)) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if enc.write_all(&bytes).is_err() {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let Ok(zipped) = enc.finish() else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_ENCODING,
        axum::http::HeaderValue::from_static("gzip"),
    );
    axum::response::Response::from_parts(parts, axum::body::Body::from(zipped))
}

/// Serve the mock on an already-bound listener until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, mock: Arc<Mock>) -> std::io::Result<()> {
    axum::serve(listener, router(mock)).await
}
