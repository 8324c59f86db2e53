//! Upstream pools: backends, load balancing, health and circuit breaking.
//!
//! We keep our own small pool instead of `pingora-load-balancing`'s `LoadBalancer` because LLM
//! requests need least-connections (one request can stream for a minute while another takes
//! 50 ms) and a per-backend circuit breaker, which that crate does not offer; its
//! `HttpHealthCheck` still does the probing (see [`health`]).

pub mod breaker;
pub mod health;
pub mod settings;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use breaker::{Breaker, BreakerState, Pass};

use pingora::prelude::HttpPeer;

use crate::metrics::Metrics;
pub use settings::{Balance, UpstreamSection, UpstreamTls};

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    /// Position in its pool.
    pub index: usize,
    /// `host:port` as configured (metrics label, logs).
    pub label: String,
    /// The resolved address.
    pub addr: SocketAddr,
    healthy: AtomicBool,
    active: AtomicUsize,
    /// The backend's circuit breaker.
    pub breaker: Breaker,
    gauges: BackendGauges,
}

/// Metric handles of one backend, resolved once.
#[derive(Debug)]
struct BackendGauges {
    healthy: prometheus::IntGauge,
    circuit: prometheus::IntGauge,
    in_flight: prometheus::IntGauge,
}

impl Backend {
    /// Whether the last health checks passed.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Requests in flight on this backend.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// A named group of interchangeable backends.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name in the config.
    pub name: String,
    /// Its backends.
    pub backends: Vec<Arc<Backend>>,
    /// Its settings (timeouts, retries, checks).
    pub settings: UpstreamSection,
    /// TLS to the backends, when configured.
    pub tls: Option<PoolTls>,
    /// The credential sent to the backends, when configured.
    pub credential: Option<Credential>,
    /// The serving model's tokenizer, when configured (token quotas count with it).
    pub tokenizer: Option<Arc<tokenizers::Tokenizer>>,
    next: AtomicUsize,
    checked: AtomicBool,
    metrics: Arc<Metrics>,
}

/// A header the gateway adds to every request to a pool's backends. `Debug` hides the value.
#[derive(Clone)]
pub struct Credential {
    /// Header name.
    pub name: http::HeaderName,
    /// Its value (marked sensitive).
    pub value: http::HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential {{ {}: <hidden> }}", self.name)
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A backend host name did not resolve.
    #[error("upstream `{pool}`: cannot resolve backend `{backend}`: {reason}")]
    Resolve {
        /// Pool name.
        pool: String,
        /// Backend as configured.
        backend: String,
        /// The resolver's answer.
        reason: String,
    },
    /// The pool's credential could not be read.
    #[error("upstream `{pool}`: auth: {reason}")]
    Auth {
        /// Pool name.
        pool: String,
        /// What failed.
        reason: String,
    },
    /// The pool's tokenizer could not be loaded.
    #[error("upstream `{pool}`: tokenizer: {reason}")]
    Tokenizer {
        /// Pool name.
        pool: String,
        /// What failed.
        reason: String,
    },
    /// TLS files of the pool could not be loaded.
    #[error("upstream `{pool}`: TLS: {reason}")]
    Tls {
        /// Pool name.
        pool: String,
        /// What failed.
        reason: String,
    },
}

/// A backend reserved for one attempt. Dropping it releases the slot; report the outcome with
/// [`Lease::succeeded`] or [`Lease::failed`] first, or the attempt counts as abandoned.
#[derive(Debug)]
pub struct Lease {
    backend: Arc<Backend>,
    pool: Arc<Pool>,
    pass: Pass,
    reported: bool,
}

impl Lease {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// The attempt got a good answer.
    pub fn succeeded(&mut self) {
        if self.reported {
            return;
        }
        self.reported = true;
        if self.backend.breaker.on_success(self.pass) {
            tracing::info!(upstream = %self.pool.name, backend = %self.backend.label, "circuit closed: backend answered the probe");
        }
        self.pool.publish_breaker(&self.backend);
    }

    /// The attempt failed because of the backend (connect error, timeout, broken response, 5xx).
    pub fn failed(&mut self, outcome: &'static str) {
        if self.reported {
            return;
        }
        self.reported = true;
        self.pool
            .metrics
            .upstream_failures
            .with_label_values(&[&self.pool.name, &self.backend.label, outcome])
            .inc();
        if self.backend.breaker.on_failure(self.pass, Instant::now()) {
            tracing::warn!(
                upstream = %self.pool.name,
                backend = %self.backend.label,
                reason = outcome,
                open_for = %humantime::format_duration(self.pool.settings.circuit_breaker.open_for),
                "circuit opened: backend refused until the next probe"
            );
        }
        self.pool.publish_breaker(&self.backend);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
        self.backend.gauges.in_flight.dec();
        if !self.reported {
            self.backend.breaker.on_abandon(self.pass);
        }
    }
}

/// TLS material of a pool, loaded once.
#[derive(Clone)]
pub struct PoolTls {
    /// SNI and name to verify (`None`: the backend's host).
    pub sni: Option<String>,
    /// Verify certificate and host name.
    pub verify: bool,
    /// Trusted CAs.
    pub ca: Option<Arc<Box<[pingora::tls::x509::X509]>>>,
    /// Client certificate and key.
    pub client: Option<Arc<pingora::utils::tls::CertKey>>,
}

impl std::fmt::Debug for PoolTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

impl PoolTls {
    fn load(name: &str, t: &UpstreamTls) -> Result<PoolTls, PoolError> {
        use pingora::tls::pkey::PKey;
        use pingora::tls::x509::X509;
        let err = |what: &str, e: String| PoolError::Tls {
            pool: name.to_string(),
            reason: format!("{what}: {e}"),
        };
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| err(&p.display().to_string(), e.to_string()))
        };
        let ca = match &t.ca {
            Some(p) => {
                let certs = X509::stack_from_pem(&read(p)?)
                    .map_err(|e| err(&p.display().to_string(), e.to_string()))?;
                Some(Arc::new(certs.into_boxed_slice()))
            }
            None => None,
        };
        let client = match (&t.client_cert, &t.client_key) {
            (Some(c), Some(k)) => {
                let certs = X509::stack_from_pem(&read(c)?)
                    .map_err(|e| err(&c.display().to_string(), e.to_string()))?;
                let key = PKey::private_key_from_pem(&read(k)?)
                    .map_err(|e| err(&k.display().to_string(), e.to_string()))?;
                Some(Arc::new(pingora::utils::tls::CertKey::new(certs, key)))
            }
            _ => None,
        };
        Ok(PoolTls {
            sni: t.sni.clone(),
            verify: t.verify,
            ca,
            client,
        })
    }

    /// Set up `peer` for TLS to the backend `host`.
    pub fn apply(&self, peer: &mut HttpPeer, host: &str) {
        peer.sni = self.sni.clone().unwrap_or_else(|| host.to_string());
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client.clone();
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
pub fn host_of(label: &str) -> &str {
    let h = label.rsplit_once(':').map_or(label, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']')
}

impl Pool {
    /// Build a pool, resolving backend addresses now.
    pub fn new(
        name: &str,
        settings: &UpstreamSection,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Pool>, PoolError> {
        let mut backends = Vec::with_capacity(settings.backends.len());
        for (index, label) in settings.backends.iter().enumerate() {
            let addr = label
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut it| it.next().ok_or_else(|| "no address".to_string()))
                .map_err(|reason| PoolError::Resolve {
                    pool: name.to_string(),
                    backend: label.clone(),
                    reason,
                })?;
            let cb = &settings.circuit_breaker;
            let labels = [name, label.as_str()];
            let gauges = BackendGauges {
                healthy: metrics.upstream_healthy.with_label_values(&labels),
                circuit: metrics.upstream_circuit.with_label_values(&labels),
                in_flight: metrics.upstream_in_flight.with_label_values(&labels),
            };
            backends.push(Arc::new(Backend {
                index,
                label: label.clone(),
                addr,
                // Optimistic until the first check: traffic flows from the first millisecond;
                // `/readyz` still waits for a completed round of checks.
                healthy: AtomicBool::new(true),
                active: AtomicUsize::new(0),
                breaker: if cb.enabled {
                    Breaker::new(cb.failure_threshold, cb.open_for)
                } else {
                    Breaker::disabled()
                },
                gauges,
            }));
        }
        let pool = Arc::new(Pool {
            name: name.to_string(),
            backends,
            settings: settings.clone(),
            tls: match &settings.tls {
                Some(t) => Some(PoolTls::load(name, t)?),
                None => None,
            },
            credential: match &settings.auth {
                Some(a) => {
                    let (name_, value) = a.resolve().map_err(|reason| PoolError::Auth {
                        pool: name.to_string(),
                        reason,
                    })?;
                    Some(Credential { name: name_, value })
                }
                None => None,
            },
            tokenizer: match &settings.tokenizer {
                Some(path) => Some(Arc::new(tokenizers::Tokenizer::from_file(path).map_err(
                    |e| PoolError::Tokenizer {
                        pool: name.to_string(),
                        reason: format!("{}: {e}", path.display()),
                    },
                )?)),
                None => None,
            },
            next: AtomicUsize::new(0),
            checked: AtomicBool::new(!settings.health_check.enabled),
            metrics,
        });
        for b in &pool.backends {
            pool.publish_health(b);
            pool.publish_breaker(b);
            b.gauges.in_flight.set(0);
        }
        Ok(pool)
    }

    /// Reserve a backend for an attempt, skipping unhealthy ones and open circuits. Backends in
    /// `tried` are used only when no other one is available. `None`: nothing can take it.
    pub fn select(self: &Arc<Self>, tried: &[usize]) -> Option<Lease> {
        let now = Instant::now();
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        // Retries do not advance the rotation: each request's first attempt keeps its turn.
        let start = if tried.is_empty() {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            self.next.load(Ordering::Relaxed)
        } % n;
        for allow_tried in [false, true] {
            let eligible =
                |b: &&Arc<Backend>| b.is_healthy() && (allow_tried || !tried.contains(&b.index));
            // Rotation from `start` spreads ties (and is the whole of round robin).
            let mut order: Vec<&Arc<Backend>> = (0..n)
                .map(|i| &self.backends[(start + i) % n])
                .filter(eligible)
                .collect();
            if self.settings.balance == Balance::LeastConnections {
                // stable sort keeps the rotation among equals
                order.sort_by_key(|b| b.active());
            }
            for b in order {
                if let Some(pass) = b.breaker.try_acquire(now) {
                    b.active.fetch_add(1, Ordering::Relaxed);
                    b.gauges.in_flight.inc();
                    if pass == Pass::Probe {
                        tracing::info!(upstream = %self.name, backend = %b.label, "circuit half-open: sending one probe request");
                        self.publish_breaker(b);
                    }
                    return Some(Lease {
                        backend: b.clone(),
                        pool: self.clone(),
                        pass,
                        reported: false,
                    });
                }
            }
        }
        None
    }

    /// Record a health check result: `healthy` flips the backend in or out.
    pub(crate) fn set_health(&self, b: &Backend, healthy: bool) {
        let was = b.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(upstream = %self.name, backend = %b.label, "backend healthy again: back in rotation");
            } else {
                tracing::warn!(upstream = %self.name, backend = %b.label, "backend failed its health checks: out of rotation");
            }
        }
        self.publish_health(b);
    }

    pub(crate) fn mark_checked(&self) {
        self.checked.store(true, Ordering::Relaxed);
    }

    /// Ready: health checks ran at least once and at least one backend can take requests.
    pub fn is_ready(&self) -> bool {
        let now = Instant::now();
        self.checked.load(Ordering::Relaxed)
            && self
                .backends
                .iter()
                .any(|b| b.is_healthy() && b.breaker.would_allow(now))
    }

    /// A JSON summary for `/readyz` and the admin API.
    pub fn summary(&self) -> serde_json::Value {
        let now = Instant::now();
        serde_json::json!({
            "name": self.name,
            "ready": self.is_ready(),
            "health_checked": self.checked.load(Ordering::Relaxed),
            "backends": self.backends.iter().map(|b| serde_json::json!({
                "backend": b.label,
                "healthy": b.is_healthy(),
                "circuit": match b.breaker.state(now) {
                    BreakerState::Closed => "closed",
                    BreakerState::Open => "open",
                    BreakerState::HalfOpen => "half_open",
                },
                "in_flight": b.active(),
            })).collect::<Vec<_>>(),
        })
    }

    fn publish_health(&self, b: &Backend) {
        b.gauges.healthy.set(i64::from(b.is_healthy()));
    }

    fn publish_breaker(&self, b: &Backend) {
        b.gauges
            .circuit
            .set(b.breaker.state(Instant::now()).as_gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::settings::{BreakerSection, HealthCheckSection, TimeoutsSection};
    use super::*;
    use std::time::Duration;

    #[test]
    fn hosts_of_backend_labels() {
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(host_of("[::1]:443"), "::1");
    }

    fn pool(n: usize, balance: Balance, breaker_threshold: u32) -> Arc<Pool> {
        let settings = UpstreamSection {
            backends: (0..n).map(|i| format!("127.0.0.1:{}", 3000 + i)).collect(),
            balance,
            timeouts: TimeoutsSection::default(),
            retries: 1,
            retry_on_timeout: false,
            health_check: HealthCheckSection::default(),
            circuit_breaker: BreakerSection {
                enabled: breaker_threshold > 0,
                failure_threshold: breaker_threshold,
                open_for: Duration::from_secs(60),
            },
            tls: None,
            auth: None,
            max_total_tokens: None,
            tokenizer: None,
        };
        Pool::new("p", &settings, Arc::new(Metrics::new().unwrap())).unwrap()
    }

    #[test]
    fn round_robin_cycles() {
        let p = pool(3, Balance::RoundRobin, 0);
        let picks: Vec<usize> = (0..6)
            .map(|_| {
                let mut l = p.select(&[]).unwrap();
                l.succeeded();
                l.backend().index
            })
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_prefers_idle_backends() {
        let p = pool(3, Balance::LeastConnections, 0);
        let a = p.select(&[]).unwrap();
        let b = p.select(&[]).unwrap();
        let busy = [a.backend().index, b.backend().index];
        let c = p.select(&[]).unwrap();
        assert!(!busy.contains(&c.backend().index), "picked a busy backend");
        drop(a);
        // backend of `a` is idle again; the other two are busy
        let d = p.select(&[]).unwrap();
        assert_eq!(d.backend().index, busy[0]);
    }

    #[test]
    fn skips_unhealthy_and_open_circuits() {
        let p = pool(3, Balance::RoundRobin, 1);
        p.set_health(&p.backends[0], false);
        let mut l = p.select(&[]).unwrap();
        assert_ne!(l.backend().index, 0);
        let opened = l.backend().index;
        l.failed("connect_error");
        drop(l);
        for _ in 0..10 {
            let l = p.select(&[]).unwrap();
            assert!(l.backend().index != 0 && l.backend().index != opened);
        }
    }

    #[test]
    fn retries_avoid_tried_backends_until_none_is_left() {
        let p = pool(2, Balance::RoundRobin, 0);
        let first = p.select(&[]).unwrap().backend().index;
        let second = p.select(&[first]).unwrap().backend().index;
        assert_ne!(first, second);
        // everything tried: a tried backend is better than no backend
        assert!(p.select(&[0, 1]).is_some());
    }

    #[test]
    fn none_when_everything_is_down() {
        let p = pool(2, Balance::RoundRobin, 0);
        for b in &p.backends.clone() {
            p.set_health(b, false);
        }
        assert!(p.select(&[]).is_none());
        assert!(!p.is_ready());
    }

    #[test]
    fn in_flight_counts_follow_leases() {
        let p = pool(1, Balance::LeastConnections, 0);
        let a = p.select(&[]).unwrap();
        let b = p.select(&[]).unwrap();
        assert_eq!(p.backends[0].active(), 2);
        drop(a);
        drop(b);
        assert_eq!(p.backends[0].active(), 0);
    }
}
