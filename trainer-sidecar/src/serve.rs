//! `trainer-sidecar serve`: the job API (axum), on its own port, behind a bearer token.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/jobs` | submit a spec (JSON, or YAML with a YAML content type): 201 with the job; 422 listing every problem with its path; 409 when the dataset's privacy budget cannot cover it |
//! | `GET /v1/jobs` | every job |
//! | `GET /v1/jobs/{id}` | one job: `state`, `step`, `loss`, `epsilon_spent`, `eta_seconds`, `outputs` |
//! | `GET /v1/jobs/{id}/events` | its events as SSE (`queued`, `started`, `progress`, `checkpoint`, `log`, `resumed`, then `succeeded`, `failed` or `cancelled`); the history first, then live; `Last-Event-ID` resumes |
//! | `DELETE /v1/jobs/{id}` | cancel (a running job checkpoints and stops) |
//! | `GET /v1/jobs/{id}/artifacts/{path}` | a file of its outputs (`report.json`, `training.svg`, `adapter/adapter_config.json`, …) |
//! | `GET /metrics` | Prometheus: jobs by state, steps/s, tokens/s, ε spent per dataset |
//! | `GET /healthz` | liveness, no token |
//!
//! Errors are `{"error": {"message", "type", "problems"?}}`. The token comes from
//! `PORTCULLIS_SIDECAR_TOKEN` and is compared in constant time; relative paths in specs are
//! resolved against the sidecar's working directory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, Registry, TextEncoder};
use serde_json::json;

use crate::jobs::spec::{self, SpecError};
use crate::jobs::{Event, JobError, JobState, Jobs};
use crate::ledger::Ledger;

/// Shared state of the server.
#[derive(Clone)]
pub struct App {
    jobs: Arc<Jobs>,
    token: Arc<Vec<u8>>,
    base: Arc<PathBuf>,
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind}})),
    )
        .into_response()
}

/// Constant-time equality of two byte strings (length leaks, content does not).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes);
    match given {
        Some(t) if same(t, &app.token) => next.run(req).await,
        Some(_) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        ),
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send `Authorization: Bearer <PORTCULLIS_SIDECAR_TOKEN>`",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// The router (tests mount it on an ephemeral port).
pub fn router(jobs: Arc<Jobs>, token: String, base: PathBuf) -> Router {
    let app = App {
        jobs,
        token: Arc::new(token.into_bytes()),
        base: Arc::new(base),
    };
    let protected = Router::new()
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/artifacts/{*path}", get(artifact))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(app)
}

/// Serve until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "trainer-sidecar listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router).await
}

async fn list(State(app): State<App>) -> Response {
    Json(json!({"jobs": app.jobs.list()})).into_response()
}

async fn submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let yaml = ctype.contains("yaml");
    if !yaml && !ctype.contains("json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the spec as application/json or application/yaml",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_spec",
            "the body is not UTF-8",
        );
    };
    let base = app.base.as_ref().clone();
    let parsed = tokio::task::spawn_blocking({
        let text = text.to_string();
        move || spec::parse(&text, yaml, &base)
    })
    .await;
    let job = match parsed {
        Ok(Ok(job)) => job,
        Ok(Err(SpecError(problems))) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": {
                    "message": format!("the job spec has {} problem(s)", problems.len()),
                    "type": "invalid_spec",
                    "problems": problems,
                }})),
            )
                .into_response();
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let jobs = app.jobs.clone();
    let checked = tokio::task::spawn_blocking(move || {
        jobs.check_budget(&job)?;
        jobs.submit(job)
    })
    .await;
    match checked {
        Ok(Ok(status)) => {
            let mut r = (StatusCode::CREATED, Json(status.clone())).into_response();
            if let Ok(loc) = HeaderValue::from_str(&format!("/v1/jobs/{}", status.id)) {
                r.headers_mut().insert(header::LOCATION, loc);
            }
            r
        }
        Ok(Err(e @ JobError::OverBudget(_))) => {
            error(StatusCode::CONFLICT, "privacy_budget", e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn show(State(app): State<App>, UrlPath(id): UrlPath<String>) -> Response {
    match app.jobs.get(&id) {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no job `{id}`")),
    }
}

async fn cancel(State(app): State<App>, UrlPath(id): UrlPath<String>) -> Response {
    match app.jobs.cancel(&id) {
        Ok(s) => (StatusCode::ACCEPTED, Json(s)).into_response(),
        Err(e @ JobError::NotFound(_)) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        Err(e @ JobError::Ended(..)) => error(StatusCode::CONFLICT, "job_ended", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn sse_event(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.event.clone())
        .data(json!({"time": e.time, "data": e.data}).to_string())
}

fn terminal(e: &Event) -> bool {
    matches!(e.event.as_str(), "succeeded" | "failed" | "cancelled")
}

async fn events(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let Some((past, rx, ended)) = app.jobs.subscribe(&id, after) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no job `{id}`"));
    };
    let done = ended || past.iter().any(terminal);
    let last = past.last().map_or(after, |e| e.seq);
    let stream = event_stream(past, rx, done, last);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The history, then live events until a terminal one.
fn event_stream(
    past: Vec<Event>,
    rx: tokio::sync::broadcast::Receiver<Event>,
    done: bool,
    last: u64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let history = futures::stream::iter(past.into_iter().map(|e| Ok(sse_event(&e))));
    let live = futures::stream::unfold((rx, done, last), |(mut rx, done, last)| async move {
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(e) if e.seq <= last => continue,
                Ok(e) => {
                    let end = terminal(&e);
                    return Some((Ok(sse_event(&e)), (rx, end, e.seq)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = SseEvent::default().event("lagged").data(
                        json!({"missed": n, "hint": "reconnect with Last-Event-ID"}).to_string(),
                    );
                    return Some((Ok(note), (rx, false, last)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures::StreamExt::chain(history, live)
}

async fn artifact(
    State(app): State<App>,
    UrlPath((id, path)): UrlPath<(String, String)>,
) -> Response {
    let Some(root) = app.jobs.outputs_dir(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no job `{id}`"));
    };
    let rel = Path::new(&path);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "a path inside the outputs only",
        );
    }
    let file = root.join(rel);
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let ctype = match file.extension().and_then(|e| e.to_str()) {
                Some("json") => "application/json",
                Some("svg") => "image/svg+xml",
                Some("md" | "txt") => "text/plain; charset=utf-8",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, ctype)], bytes).into_response()
        }
        Err(_) if file.is_dir() => {
            let names: Vec<String> = std::fs::read_dir(&file)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            Json(json!({"files": names})).into_response()
        }
        Err(_) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job `{id}` has no output `{path}`"),
        ),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let jobs = app.jobs.clone();
    let text = tokio::task::spawn_blocking(move || render_metrics(&jobs)).await;
    match text {
        Ok(Ok(t)) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], t).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn render_metrics(jobs: &Jobs) -> Result<String, String> {
    let reg = Registry::new();
    let e = |e: prometheus::Error| e.to_string();
    let states = IntGaugeVec::new(
        Opts::new("portcullis_sidecar_jobs", "Jobs by state"),
        &["state"],
    )
    .map_err(e)?;
    let steps = GaugeVec::new(
        Opts::new(
            "portcullis_sidecar_steps_per_second",
            "Training steps per second of each running job (last step)",
        ),
        &["job", "kind"],
    )
    .map_err(e)?;
    let tokens = GaugeVec::new(
        Opts::new(
            "portcullis_sidecar_tokens_per_second",
            "Tokens per second of each running LoRA job (last step)",
        ),
        &["job"],
    )
    .map_err(e)?;
    let epsilon = GaugeVec::new(
        Opts::new(
            "portcullis_sidecar_epsilon_spent",
            "ε spent (or reserved by running jobs) per dataset, from the ledger",
        ),
        &["dataset", "name"],
    )
    .map_err(e)?;
    reg.register(Box::new(states.clone())).map_err(e)?;
    reg.register(Box::new(steps.clone())).map_err(e)?;
    reg.register(Box::new(tokens.clone())).map_err(e)?;
    reg.register(Box::new(epsilon.clone())).map_err(e)?;
    let all = jobs.list();
    for s in JobState::ALL {
        states
            .with_label_values(&[s.name()])
            .set(all.iter().filter(|j| j.state == s).count() as i64);
    }
    for j in all.iter().filter(|j| j.state == JobState::Running) {
        if let Some(v) = j.steps_per_second {
            steps.with_label_values(&[&j.id, &j.kind]).set(v);
        }
        if let Some(v) = j.tokens_per_second {
            tokens.with_label_values(&[&j.id]).set(v);
        }
    }
    if let Ok(ledger) = Ledger::open(jobs.ledger_path())
        && let Ok(snap) = ledger.snapshot()
    {
        for (digest, account) in &snap.datasets {
            let short: String = digest.chars().take(12).collect();
            epsilon
                .with_label_values(&[&short, &account.name])
                .set(account.spent().0);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .map_err(e)?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_in_full() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
