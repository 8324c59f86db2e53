//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Separate from the public listener
//! (default `127.0.0.1:9090`) so that probes and scrapes never compete with, or are exposed to,
//! API traffic.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::upstream::Pool;

/// The admin application.
pub struct AdminApp {
    pools: Vec<Arc<Pool>>,
    metrics: Arc<Metrics>,
    policy: Option<(String, u32)>,
}

impl AdminApp {
    /// An admin app reporting on these pools and this registry.
    pub fn new(
        pools: Vec<Arc<Pool>>,
        metrics: Arc<Metrics>,
        policy: Option<(String, u32)>,
    ) -> Self {
        AdminApp {
            pools,
            metrics,
            policy,
        }
    }

    /// Whether every pool can take traffic.
    pub fn ready(&self) -> bool {
        self.pools.iter().all(|p| p.is_ready())
    }

    fn readyz(&self) -> (StatusCode, serde_json::Value) {
        let ready = self.ready();
        let body = serde_json::json!({
            "ready": ready,
            "policy": self.policy.as_ref().map(|(n, v)| serde_json::json!({"name": n, "version": v})),
            "upstreams": self.pools.iter().map(|p| p.summary()).collect::<Vec<_>>(),
        });
        (
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            body,
        )
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let len = r.body().len();
    let h = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, len.into());
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", v.to_string().into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (method, path) = {
            let req = session.req_header();
            (req.method.clone(), req.uri.path().to_string())
        };
        if method != http::Method::GET && method != http::Method::HEAD {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": format!("{method} is not allowed on the admin listener")}),
            );
        }
        match path.as_str() {
            "/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let (status, body) = self.readyz();
                json(status, &body)
            }
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.encode(),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not found", "routes": ["/healthz", "/readyz", "/metrics"]}),
            ),
        }
    }
}
