//! The settings of an upstream pool, as the config file writes them (`upstreams.<name>:`).
//! The pool owns them; the config loader (`config/upstreams.rs`) checks them and resolves
//! their paths.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Default connect timeout to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default read timeout: the longest silence accepted from a backend, including the time to
/// first token of a long prompt.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Default write timeout to a backend.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default idle time of a pooled upstream connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default number of extra attempts on another backend.
pub const DEFAULT_RETRIES: u32 = 1;

/// Default health check path (TGI's).
pub const DEFAULT_HEALTH_PATH: &str = "/health";

/// Default health check interval.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Default health check timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Default consecutive failed checks before a backend is taken out.
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 2;

/// Default consecutive passed checks before a backend is put back.
pub const DEFAULT_HEALTHY_AFTER: u32 = 1;

/// Default consecutive failures that open a backend's circuit.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;

/// Default time a circuit stays open before one probe request is let through.
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);

/// Load-balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each backend in turn.
    #[default]
    RoundRobin,
    /// The backend with the fewest requests in flight (LLM requests vary widely in length).
    LeastConnections,
}

/// One entry of `upstreams:`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Backends as `host:port`.
    pub backends: Vec<String>,
    /// Load-balancing algorithm.
    #[serde(default)]
    pub balance: Balance,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    /// Extra attempts on another backend when connecting fails or the connection breaks before
    /// the first response byte (the request body is buffered, so this is always safe).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Also retry when a backend times out before answering (off: a slow backend is usually a
    /// busy one, and retrying doubles the wait).
    #[serde(default)]
    pub retry_on_timeout: bool,
    /// Active health checks.
    #[serde(default)]
    pub health_check: HealthCheckSection,
    /// Per-backend circuit breaker.
    #[serde(default)]
    pub circuit_breaker: BreakerSection,
    /// TLS (and mutual TLS) to the backends; unset: plain HTTP.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// A credential the gateway sends to the backends (a hosted OpenAI- or Anthropic-compatible
    /// API). Clients' own `Authorization`, `x-api-key`, cookies and hop-by-hop headers are
    /// never forwarded, with or without it.
    #[serde(default)]
    pub auth: Option<UpstreamAuth>,
    /// The backends' token budget per sequence, prompt included (TGI's `--max-total-tokens`,
    /// vLLM's `max_model_len`). A request that names no maximum may generate up to this minus
    /// its prompt, and a key with a token quota reserves that much. Unset: the gateway writes
    /// `limits.default_max_tokens` into such requests (for keys with a token quota), so the
    /// backend cannot generate more than was reserved.
    #[serde(default)]
    pub max_total_tokens: Option<u64>,
    /// The serving model's `tokenizer.json` (relative to this config file): token quotas then
    /// reserve the prompt's token count (of the whole request body, JSON framing included)
    /// instead of its byte count. What the backend counts beyond is charged after the answer.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

/// `upstreams.<name>.auth:`: where the backend credential comes from (an environment variable,
/// so it is never written in the config).
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuth {
    /// Send `Authorization: Bearer <value of this environment variable>`.
    #[serde(default)]
    pub bearer_env: Option<String>,
    /// Send this header instead (`x-api-key` for Anthropic's API) ...
    #[serde(default)]
    pub header: Option<String>,
    /// ... with the value of this environment variable.
    #[serde(default)]
    pub value_env: Option<String>,
}

impl UpstreamAuth {
    /// The header to send and its value, read from the environment.
    pub fn resolve(&self) -> Result<(http::HeaderName, http::HeaderValue), String> {
        let (name, env) = match (&self.bearer_env, &self.header, &self.value_env) {
            (Some(env), None, None) => (http::header::AUTHORIZATION, env),
            (None, Some(h), Some(env)) => {
                let name = http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("`{h}` is not a header name"))?;
                if crate::proxy::is_hop_by_hop(&name) {
                    return Err(format!(
                        "`{h}` is a hop-by-hop header; it would not reach the backend"
                    ));
                }
                (name, env)
            }
            _ => {
                return Err(
                    "give either `bearer_env`, or both `header` and `value_env`".to_string()
                );
            }
        };
        let value = std::env::var(env)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("the environment variable `{env}` is not set"))?;
        let value = if name == http::header::AUTHORIZATION {
            format!("Bearer {}", value.trim())
        } else {
            value.trim().to_string()
        };
        let mut v = http::HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of `{env}` is not a valid header value"))?;
        v.set_sensitive(true);
        Ok((name, v))
    }
}

/// `upstreams.<name>.tls:`: TLS to the backends.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Server name sent (SNI) and checked in the backend's certificate (default: the backend's
    /// host).
    #[serde(default)]
    pub sni: Option<String>,
    /// CA bundle (PEM) to trust instead of the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Verify the backend's certificate and name (turn off only for tests).
    #[serde(default = "yes")]
    pub verify: bool,
}

/// `timeouts:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    /// TCP connect.
    #[serde(default = "d_connect", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect: Duration,
    /// Longest wait for the next byte of the response (the first one included).
    #[serde(default = "d_read", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub read: Duration,
    /// Longest wait to write to the backend.
    #[serde(default = "d_write", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub write: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(default = "d_idle", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle: Duration,
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        TimeoutsSection {
            connect: DEFAULT_CONNECT_TIMEOUT,
            read: DEFAULT_READ_TIMEOUT,
            write: DEFAULT_WRITE_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// `health_check:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Run active health checks.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Path of a `GET` that answers 200 when the backend is healthy.
    #[serde(default = "d_health_path")]
    pub path: String,
    /// Time between checks.
    #[serde(default = "d_health_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Timeout of one check.
    #[serde(default = "d_health_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Consecutive failed checks before the backend is taken out.
    #[serde(default = "d_unhealthy_after")]
    pub unhealthy_after: u32,
    /// Consecutive passed checks before the backend is put back.
    #[serde(default = "d_healthy_after")]
    pub healthy_after: u32,
}

impl Default for HealthCheckSection {
    fn default() -> Self {
        HealthCheckSection {
            enabled: true,
            path: d_health_path(),
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
            healthy_after: DEFAULT_HEALTHY_AFTER,
        }
    }
}

/// `circuit_breaker:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    /// Use the breaker.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive failures (connect errors, timeouts, broken streams, 500/502/503/504) that
    /// open the circuit.
    #[serde(default = "d_breaker_failures")]
    pub failure_threshold: u32,
    /// How long an open circuit refuses requests before letting one probe through.
    #[serde(default = "d_breaker_open_for", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub open_for: Duration,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            enabled: true,
            failure_threshold: DEFAULT_BREAKER_FAILURES,
            open_for: DEFAULT_BREAKER_OPEN_FOR,
        }
    }
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn yes() -> bool {
    true
}

fn d_connect() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn d_read() -> Duration {
    DEFAULT_READ_TIMEOUT
}

fn d_write() -> Duration {
    DEFAULT_WRITE_TIMEOUT
}

fn d_idle() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}

fn d_health_path() -> String {
    DEFAULT_HEALTH_PATH.to_string()
}

fn d_health_interval() -> Duration {
    DEFAULT_HEALTH_INTERVAL
}

fn d_health_timeout() -> Duration {
    DEFAULT_HEALTH_TIMEOUT
}

fn d_unhealthy_after() -> u32 {
    DEFAULT_UNHEALTHY_AFTER
}

fn d_healthy_after() -> u32 {
    DEFAULT_HEALTHY_AFTER
}

fn d_breaker_failures() -> u32 {
    DEFAULT_BREAKER_FAILURES
}

fn d_breaker_open_for() -> Duration {
    DEFAULT_BREAKER_OPEN_FOR
}
