//! Assembling and running the pingora server: the proxy service on the public listener, the
//! admin service, and the health-check background service.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context;
use pingora::proxy::HttpProxy;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::audit::AuditLog;
use crate::config::GatewayConfig;
use crate::connections::{ConnectionLimits, ConnectionMetrics, Hygiene};
use crate::guard::{Guard, GuardMetrics, GuardSettings};
use crate::keys::KeyStore;
use crate::limits::redis::RedisLimiter;
use crate::limits::{Limiter, Limits};
use crate::metrics::Metrics;
use crate::proxy::access::Access;
use crate::proxy::{Gateway, ProxySettings};
use crate::upstream::Pool;
use crate::upstream::health::HealthChecker;

/// Everything built from a config, before the server starts (`harness::Harness` serves it
/// over in-memory connections).
pub struct Built {
    /// The proxy.
    pub gateway: Gateway,
    /// The admin app.
    pub admin: AdminApp,
    /// The pools (shared by proxy, admin and health checks).
    pub pools: Vec<Arc<Pool>>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The guard (policies, hot reload), when a policy is configured.
    pub guard: Option<Arc<Guard>>,
}

/// Build the proxy, admin app and pools from a validated config.
pub fn build(config: &GatewayConfig) -> anyhow::Result<Built> {
    let metrics = Arc::new(Metrics::new().context("building the metrics registry")?);
    let mut pools = HashMap::new();
    for (name, section) in &config.upstreams {
        pools.insert(name.clone(), Pool::new(name, section, metrics.clone())?);
    }
    let default_pool = pools
        .get(&config.default_upstream)
        .cloned()
        .with_context(|| {
            format!(
                "default upstream `{}` is not defined",
                config.default_upstream
            )
        })?;
    let policy = config
        .policy
        .as_ref()
        .map(|(_, p)| (p.name.clone(), p.version));
    let audit = match &config.audit {
        Some(a) => {
            if a.key.is_none() {
                tracing::warn!(
                    "audit: no key_file or key_env: the chain head is not signed, so whoever can write {} could rewrite the trail consistently",
                    a.dir.display()
                );
            }
            Some(
                AuditLog::start(a.clone(), metrics.audit_dropped.clone())
                    .with_context(|| format!("starting the audit trail in {}", a.dir.display()))?,
            )
        }
        None => None,
    };
    let models = config
        .models
        .as_ref()
        .map(|m| crate::models::Models::start(m, metrics.clone(), audit.clone()));
    let guard = if config.guard.policies.is_empty() {
        None
    } else {
        let g = &config.guard;
        let master_key = match std::env::var(&g.pseudonym_key_env) {
            Ok(k) if !k.is_empty() => k.into_bytes(),
            _ => {
                tracing::warn!(
                    env = %g.pseudonym_key_env,
                    "no pseudonymisation key set: using a random one, so pseudonyms change when the gateway restarts"
                );
                let mut k = uuid::Uuid::new_v4().as_bytes().to_vec();
                k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                k
            }
        };
        Some(
            Guard::new(
                GuardSettings {
                    policies: g.policies.clone(),
                    routes: g.routes.clone(),
                    tenant_policies: g.tenant_policies.clone(),
                    master_key,
                    max_response_bytes: g.max_response_bytes,
                    hot_reload: g.hot_reload,
                    models: models.clone(),
                    scan_cache: (g.scan_cache_bytes_per_tenant > 0).then(|| {
                        Arc::new(crate::scan_cache::ScanCache::new(
                            g.scan_cache_bytes_per_tenant,
                            &metrics,
                        ))
                    }),
                },
                GuardMetrics {
                    findings: metrics.guard_findings.clone(),
                    decisions: metrics.guard_decisions.clone(),
                    seconds: metrics.guard_seconds.clone(),
                    reloads: metrics.policy_reloads.clone(),
                    info: metrics.policy_info.clone(),
                },
            )
            .map_err(|e| anyhow::anyhow!("loading the models the policies use: {e}"))?,
        )
    };
    let keys = match &config.keys_file {
        Some(path) => Arc::new(
            KeyStore::load(path)
                .with_context(|| format!("loading keys from {}", path.display()))?,
        ),
        None => {
            tracing::warn!(
                "no auth.keys_file configured: the gateway accepts requests without an API key"
            );
            Arc::new(KeyStore::empty())
        }
    };
    let access = Access {
        keys: keys.clone(),
        required: config.keys_file.is_some(),
        anonymous: config.anonymous_routes.clone(),
        limits: Arc::new(Limits::new(
            Limiter::new(config.limits.clone()),
            match &config.redis {
                Some(r) => Some(
                    RedisLimiter::new(&r.url, &r.prefix, r.timeout, r.on_error)
                        .with_context(|| format!("rate_limits.redis.url `{}`", r.url))?,
                ),
                None => None,
            },
            metrics.limit_store_errors.clone(),
        )),
        audit,
        flood_log: Default::default(),
    };
    let adapters = config.adapters.as_ref().map(|a| {
        crate::adapters::Adapters::start(a.clone(), metrics.clone(), access.audit.clone())
    });
    let mcp = match &config.mcp {
        Some(m) => Some(Arc::new(
            crate::mcp::Mcp::new(m.clone()).context("starting the MCP gateway")?,
        )),
        None => None,
    };
    let pool_list: Vec<_> = pools.values().cloned().collect();
    let gateway = Gateway::new(
        default_pool,
        metrics.clone(),
        ProxySettings {
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.body_read_timeout,
            adapters: adapters.clone(),
            // monitoring's own sessions when it has them, else the shared ones
            monitor_concurrency: config.models.as_ref().map_or(1, |m| {
                match m.encoder.background_sessions {
                    0 => m.encoder.workers,
                    n => n,
                }
            }),
            monitor_share: config.models.as_ref().map_or(0.0, |m| m.monitor_share),
            mcp: mcp.clone(),
        },
        guard.clone(),
        access.clone(),
    );
    let admin_token = std::env::var(&config.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let admin = AdminApp::new(pool_list.clone(), metrics.clone(), policy).with_control(
        crate::admin::Control {
            token: admin_token,
            token_env: config.admin_token_env.clone(),
            keys,
            limiter: access.limits.local().clone(),
            guard: guard.clone(),
            adapters,
            mcp,
            audit: access.audit.clone(),
        },
    );
    Ok(Built {
        gateway,
        admin,
        pools: pool_list,
        metrics,
        guard,
    })
}

/// What the public listener serves: the proxy inside our connection loop (caps and deadlines
/// pingora leaves open).
pub type ProxyApp = Hygiene<HttpProxy<Gateway>>;

/// The public listener's app, as `run` serves it and `harness::Harness` drives it.
pub fn proxy_app(
    conf: &Arc<ServerConf>,
    gateway: Gateway,
    limits: ConnectionLimits,
    metrics: &Metrics,
) -> ProxyApp {
    Hygiene::new(
        pingora::proxy::http_proxy(conf, gateway),
        limits,
        ConnectionMetrics {
            open: metrics.connections_open.clone(),
            refused: metrics.connections_refused.clone(),
        },
    )
}

fn check_bindable(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("cannot listen on {addr} ({what}): is another process using it?"))
}

/// Run the gateway until SIGINT (immediate) or SIGTERM (graceful: in-flight requests get
/// `server.shutdown_grace` to finish).
pub fn run(config: GatewayConfig) -> anyhow::Result<()> {
    check_bindable(config.listen, "public listener")?;
    check_bindable(config.admin_listen, "admin listener")?;
    let built = build(&config)?;

    let grace = config.shutdown_grace.as_secs().max(1);
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace),
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let app = proxy_app(
        &server.configuration,
        built.gateway,
        config.connections,
        &built.metrics,
    );
    let mut proxy = Service::new("portcullis proxy".to_string(), app);
    match &config.tls {
        None => proxy.add_tcp(&config.listen.to_string()),
        Some(t) => {
            let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
            let mut settings =
                pingora::listeners::tls::TlsSettings::intermediate(&path(&t.cert), &path(&t.key))
                    .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?;
            if let Some(ca) = &t.client_ca {
                use pingora::tls::ssl::SslVerifyMode;
                settings
                    .set_ca_file(ca)
                    .with_context(|| format!("server.tls.client_ca {}", ca.display()))?;
                settings.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
            }
            // HTTP/1.1 only, as on the plain listener: the request path reads bodies through
            // pingora's HTTP/1 retry buffer (see proxy/body.rs)
            proxy.add_tls_with_settings(&config.listen.to_string(), None, settings);
        }
    }

    let mut admin = Service::new("portcullis admin".to_string(), built.admin);
    admin.add_tcp(&config.admin_listen.to_string());
    admin.threads = Some(1);

    let mut health = background_service("health checks", HealthChecker::new(built.pools.clone()));
    health.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(health);

    tracing::info!(
        listen = %config.listen,
        admin = %config.admin_listen,
        threads = config.threads,
        upstreams = ?built.pools.iter().map(|p| format!("{}={:?}", p.name, p.settings.backends)).collect::<Vec<_>>(),
        policy = ?config.policy.as_ref().map(|(path, p)| format!("{} v{} ({})", p.name, p.version, path.display())),
        "portcullis gateway starting"
    );
    server.run(pingora::server::RunArgs::default());
    tracing::info!("portcullis gateway stopped");
    Ok(())
}
