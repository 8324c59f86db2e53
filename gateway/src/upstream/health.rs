//! Active health checks: a background service that probes every backend on an interval with
//! pingora's `HttpHealthCheck` and flips backends in and out of rotation after
//! `unhealthy_after` consecutive failures / `healthy_after` consecutive passes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::Backend as LbBackend;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Backend, Pool};

/// Probes every pool's backends until shutdown.
pub struct HealthChecker {
    pools: Vec<Arc<Pool>>,
}

impl HealthChecker {
    /// A checker for the pools that have checks enabled.
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        HealthChecker {
            pools: pools
                .into_iter()
                .filter(|p| p.settings.health_check.enabled)
                .collect(),
        }
    }
}

struct Probe {
    backend: Arc<Backend>,
    check: HttpHealthCheck,
    target: LbBackend,
    passes: u32,
    failures: u32,
}

fn build_probe(pool: &Pool, backend: &Arc<Backend>) -> Option<Probe> {
    let h = &pool.settings.health_check;
    let mut check = HttpHealthCheck::new(&backend.label, pool.tls.is_some());
    if let Some(tls) = &pool.tls {
        tls.apply(
            &mut check.peer_template,
            crate::upstream::host_of(&backend.label),
        );
    }
    let mut req = pingora::http::RequestHeader::build("GET", h.path.as_bytes(), None).ok()?;
    req.insert_header("Host", backend.label.as_str()).ok()?;
    req.insert_header("User-Agent", "portcullis-health-check")
        .ok()?;
    check.req = req;
    check.peer_template.options.connection_timeout = Some(h.timeout);
    check.peer_template.options.read_timeout = Some(h.timeout);
    check.peer_template.options.write_timeout = Some(h.timeout);
    let target = LbBackend::new(&backend.addr.to_string()).ok()?;
    Some(Probe {
        backend: backend.clone(),
        check,
        target,
        passes: 0,
        failures: 0,
    })
}

async fn run_pool(pool: Arc<Pool>, mut shutdown: ShutdownWatch) {
    let h = pool.settings.health_check.clone();
    let mut probes: Vec<Probe> = pool
        .backends
        .iter()
        .filter_map(|b| {
            let p = build_probe(&pool, b);
            if p.is_none() {
                tracing::error!(upstream = %pool.name, backend = %b.label, "cannot build a health check for this backend; it is never checked");
            }
            p
        })
        .collect();
    let mut tick = tokio::time::interval(h.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let results = futures::future::join_all(probes.iter().map(|p| async {
            // The check has its own connect/read timeouts; this bounds anything else.
            tokio::time::timeout(
                h.timeout + Duration::from_millis(100),
                p.check.check(&p.target),
            )
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        }))
        .await;
        for (p, result) in probes.iter_mut().zip(results) {
            match result {
                Ok(()) => {
                    p.failures = 0;
                    p.passes = p.passes.saturating_add(1);
                    if !p.backend.is_healthy() && p.passes >= h.healthy_after {
                        pool.set_health(&p.backend, true);
                    }
                }
                Err(e) => {
                    p.passes = 0;
                    p.failures = p.failures.saturating_add(1);
                    tracing::debug!(upstream = %pool.name, backend = %p.backend.label, error = %e, "health check failed");
                    if p.backend.is_healthy() && p.failures >= h.unhealthy_after {
                        pool.set_health(&p.backend, false);
                    }
                }
            }
        }
        pool.mark_checked();
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tasks: Vec<_> = self
            .pools
            .iter()
            .map(|p| tokio::spawn(run_pool(p.clone(), shutdown.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
