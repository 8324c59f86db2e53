//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and the `/admin/*` API behind its own
//! bearer token (`admin.token_env`): `POST /admin/reload` (keys, policies, model versions), `GET /admin/models`,
//! `POST /admin/models/refresh` (model versions only: what a publisher calls),
//! `POST /admin/models/<name>/rollback[?to=<version>]`, `GET /admin/policies`, `GET /admin/keys`,
//! `GET /admin/limits/<key id>`, `GET /admin/mcp/pins`,
//! `POST /admin/mcp/approve?server=<name>[&tool=<tool>]` (approve changed MCP tool definitions).
//! Separate from the public
//! listener (default `127.0.0.1:9090`) so that probes and scrapes never compete with, or are
//! exposed to, API traffic; nothing here is routed on the public listener.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use sha2::{Digest, Sha256};

use crate::guard::Guard;
use crate::keys::KeyStore;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::upstream::Pool;

/// What the `/admin/*` API controls.
pub struct Control {
    /// The bearer token (`None`: the API is disabled).
    pub token: Option<String>,
    /// Where the token comes from, for the error message.
    pub token_env: String,
    /// API keys.
    pub keys: Arc<KeyStore>,
    /// Limits.
    pub limiter: Arc<Limiter>,
    /// Policies.
    pub guard: Option<Arc<Guard>>,
    /// LoRA adapters.
    pub adapters: Option<Arc<crate::adapters::Adapters>>,
    /// MCP servers (tool-definition pins).
    pub mcp: Option<Arc<crate::mcp::Mcp>>,
    /// The audit trail (approvals are recorded).
    pub audit: Option<crate::audit::AuditLog>,
}

/// The admin application.
pub struct AdminApp {
    pools: Vec<Arc<Pool>>,
    metrics: Arc<Metrics>,
    policy: Option<(String, u32)>,
    control: Option<Control>,
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
            control: None,
        }
    }

    /// Enable the `/admin/*` API.
    pub fn with_control(mut self, c: Control) -> Self {
        self.control = Some(c);
        self
    }

    async fn control(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        auth: Option<&str>,
    ) -> Response<Vec<u8>> {
        use serde_json::json;
        let Some(c) = &self.control else {
            return json(StatusCode::NOT_FOUND, &json!({"error": "not found"}));
        };
        let Some(token) = &c.token else {
            return json(
                StatusCode::FORBIDDEN,
                &json!({"error": format!("the admin API is disabled: set {} to a secret token and restart", c.token_env)}),
            );
        };
        let given = auth.and_then(crate::keys::bearer).unwrap_or("");
        let same: bool = Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes());
        if !same {
            return json(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "missing or wrong admin token (Authorization: Bearer <token>)"}),
            );
        }
        match (method.as_str(), path) {
            ("POST", "/admin/reload") => {
                let (keys, guard) = (c.keys.clone(), c.guard.clone());
                // loading policies and model sessions blocks: off the admin runtime's threads
                let Some((keys, swapped, models)) = off_runtime(move || {
                    let keys = keys.reload();
                    let swapped = guard.as_ref().map_or(0, |g| g.reload_changed());
                    // New model versions: loaded and verified here, then swapped atomically.
                    let models: Vec<_> = guard
                        .as_ref()
                        .and_then(|g| g.models.as_ref())
                        .map(|m| m.refresh())
                        .unwrap_or_default()
                        .iter()
                        .map(swap_json)
                        .collect();
                    (keys, swapped, models)
                })
                .await
                else {
                    return json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": "the reload failed"}),
                    );
                };
                match keys {
                    Ok(n) => json(
                        StatusCode::OK,
                        &json!({"keys": n, "policies_swapped": swapped, "models": models}),
                    ),
                    Err(e) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &json!({"error": e.to_string(), "kept": "the previous keys stay in use", "policies_swapped": swapped, "models": models}),
                    ),
                }
            }
            ("GET", "/admin/policies") => json(
                StatusCode::OK,
                &json!({"policies": c.guard.as_ref().map(|g| g.loaded()).unwrap_or_default().into_iter().map(|(slot, name, version, path)| json!({"slot": slot, "name": name, "version": version, "file": path})).collect::<Vec<_>>(),
                        "models": c.guard.as_ref().and_then(|g| g.models.as_ref()).map(|m| m.listing()).unwrap_or_default(),
                        "adapters": c.adapters.as_ref().map(|a| a.listing()).unwrap_or(json!({}))}),
            ),
            ("POST", "/admin/models/refresh") => {
                let models = c.guard.as_ref().and_then(|g| g.models.clone());
                if models.is_none() && c.adapters.is_none() {
                    return json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "no model registry: no policy uses a model and no `adapters:` section"}),
                    );
                }
                let adapters = c.adapters.clone();
                let Some((reports, adapters)) = off_runtime(move || {
                    (
                        models.map(|m| m.refresh()).unwrap_or_default(),
                        adapters.map(|a| a.refresh()).unwrap_or_default(),
                    )
                })
                .await
                else {
                    return json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": "the refresh failed"}),
                    );
                };
                let adapters: Vec<_> = adapters
                    .into_iter()
                    .map(|(name, version, r)| json!({"adapter": name, "version": version, "result": match r { Ok(()) => "live".to_string(), Err(e) => e }}))
                    .collect();
                json(
                    StatusCode::OK,
                    &json!({"models": reports.iter().map(swap_json).collect::<Vec<_>>(), "adapters": adapters}),
                )
            }
            ("POST", p) if p.starts_with("/admin/models/") && p.ends_with("/rollback") => {
                let name = &p["/admin/models/".len()..p.len() - "/rollback".len()];
                let Some(models) = c.guard.as_ref().and_then(|g| g.models.clone()) else {
                    return json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "no policy uses a model (no `classifiers:` section)"}),
                    );
                };
                let to = query.and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("to="))
                        .map(str::to_string)
                });
                let name = name.to_string();
                let Some(result) = off_runtime(move || models.rollback(&name, to.as_deref())).await
                else {
                    return json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": "the rollback failed"}),
                    );
                };
                match result {
                    Ok(r) => json(StatusCode::OK, &swap_json(&r)),
                    Err(e @ filters::classify::ModelError::NotFound(_)) => {
                        json(StatusCode::NOT_FOUND, &json!({"error": e.to_string()}))
                    }
                    Err(e) => json(StatusCode::CONFLICT, &json!({"error": e.to_string()})),
                }
            }
            ("GET", "/admin/models") => json(
                StatusCode::OK,
                &json!({"models": c.guard.as_ref().and_then(|g| g.models.as_ref()).map(|m| m.listing()).unwrap_or_default(),
                        "adapters": c.adapters.as_ref().map(|a| a.listing()).unwrap_or(json!({}))}),
            ),
            ("GET", "/admin/keys") => json(
                StatusCode::OK,
                &json!({"file": c.keys.path(), "keys": c.keys.all().iter().map(|k| json!({
                    "id": k.id, "tenant": k.tenant, "policy": k.policy, "revoked": k.revoked,
                    "expires": k.expires.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    "limits": serde_json::to_value(&k.limits).unwrap_or_default(),
                })).collect::<Vec<_>>()}),
            ),
            ("GET", p) if p.starts_with("/admin/limits/") => {
                let id = &p["/admin/limits/".len()..];
                match c.keys.by_id(id) {
                    Some(k) => json(
                        StatusCode::OK,
                        &serde_json::to_value(c.limiter.key_state(&k)).unwrap_or_default(),
                    ),
                    None => json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": format!("no key with id `{id}`")}),
                    ),
                }
            }
            ("GET", "/admin/mcp/pins") => match &c.mcp {
                Some(m) => json(StatusCode::OK, &m.pins.listing()),
                None => json(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "no MCP servers (no `mcp:` section)"}),
                ),
            },
            ("POST", "/admin/mcp/approve") => {
                let Some(m) = &c.mcp else {
                    return json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "no MCP servers (no `mcp:` section)"}),
                    );
                };
                let param = |k: &str| {
                    query.and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                            .map(percent_decode)
                    })
                };
                let Some(server) = param("server").filter(|s| !s.is_empty()) else {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": "name the server: POST /admin/mcp/approve?server=<name>[&tool=<tool>]"}),
                    );
                };
                let tool = param("tool").filter(|t| !t.is_empty());
                let digest = param("digest").filter(|d| !d.is_empty());
                match m.pins.approve(&server, tool.as_deref(), digest.as_deref()) {
                    Err(crate::mcp::ApproveError::UnknownServer) => json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": format!("no pinned tools for MCP server `{server}`")}),
                    ),
                    Err(crate::mcp::ApproveError::DigestMismatch { tool, pending }) => json(
                        StatusCode::CONFLICT,
                        &json!({"error": format!("the pending definition of `{tool}` is not the one `digest` names (it changed again): read it with GET /admin/mcp/pins and approve its digest"), "tool": tool, "pending": pending}),
                    ),
                    Ok(approved) => {
                        for t in &approved {
                            self.metrics
                                .mcp_tool_changes
                                .with_label_values(&[server.as_str(), "approved"])
                                .inc();
                            tracing::info!(server = %server, tool = %t, "MCP tool definition approved");
                            if let Some(a) = &c.audit {
                                a.record(crate::audit::Record {
                                    time: crate::audit::now_rfc3339(),
                                    event: Some("mcp_tool_approved".into()),
                                    route: "admin".into(),
                                    limit: "pass".into(),
                                    mcp: Some(crate::audit::McpCall {
                                        server: server.clone(),
                                        method: "approve".into(),
                                        tool: Some(t.clone()),
                                        decision: "approved".into(),
                                        reason: None,
                                    }),
                                    ..crate::audit::Record::default()
                                })
                                .await;
                            }
                        }
                        m.pins.flush().await;
                        json(
                            StatusCode::OK,
                            &json!({"server": server, "approved": approved}),
                        )
                    }
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &json!({"error": "not found", "routes": ["POST /admin/reload", "GET /admin/policies", "GET /admin/models", "POST /admin/models/refresh", "POST /admin/models/<name>/rollback?to=<version>", "GET /admin/keys", "GET /admin/limits/<key id>", "GET /admin/mcp/pins", "POST /admin/mcp/approve?server=<name>[&tool=<tool>][&digest=<pending digest>]"]}),
            ),
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

/// Run blocking work (loading sessions, hashing files) on tokio's blocking pool; `None` if it
/// panicked.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// A swap attempt as the admin API reports it.
fn swap_json(r: &filters::classify::SwapReport) -> serde_json::Value {
    serde_json::json!({
        "model": r.name, "from": r.from, "to": r.to,
        "load_ms": r.load.as_secs_f64() * 1e3,
        "swap_us": r.swap.as_secs_f64() * 1e6,
        "rollback": r.rollback,
        "refused": r.refusal.map(|k| k.as_str()),
        "result": match &r.result { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
    })
}

/// A query value with its `%XX` escapes and `+` decoded (an invalid escape is kept as written).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", v.to_string().into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (method, path, query, auth) = {
            let req = session.req_header();
            (
                req.method.clone(),
                req.uri.path().to_string(),
                req.uri.query().map(str::to_string),
                req.headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            )
        };
        if path.starts_with("/admin/") {
            if method == http::Method::POST {
                // drain a body if any (there is none to read for these routes)
                let _ = session.read_request_body().await;
            }
            return self
                .control(&method, &path, query.as_deref(), auth.as_deref())
                .await;
        }
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
