//! Gateway configuration: the YAML file `gateway serve --config FILE` reads.
//!
//! Two stages, as in TensorZero: [`FileConfig`] mirrors the file (serde, `deny_unknown_fields`,
//! defaults from named constants) and [`GatewayConfig::load`] validates it into runtime types,
//! reporting every problem with file, line and column.
//!
//! ```yaml
//! server:
//!   listen: 0.0.0.0:8080
//! admin:
//!   listen: 127.0.0.1:9090
//! limits:
//!   max_body_bytes: 2000000
//! policy: ../policies/default.yaml      # relative to this file
//! upstreams:
//!   tgi:
//!     backends: [127.0.0.1:3000]
//!     balance: round_robin                # or least_connections
//!     timeouts: {connect: 2s, read: 60s, write: 30s, idle: 60s}
//!     retries: 1                          # extra attempts, only before the first response byte
//!     health_check: {path: /health, interval: 2s, timeout: 1s}
//!     circuit_breaker: {failure_threshold: 5, open_for: 10s}
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Arc;

use filters::yaml::{Loaded, YamlError, load_yaml};
use schemars::JsonSchema;
use serde::Deserialize;

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin listener (loopback only).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default request body limit: TGI's own default payload limit (2 MB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2_000_000;
/// Largest body limit accepted: bodies are buffered in memory to be checked before forwarding.
pub const MAX_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Default limit on the silence while a client sends its body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
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
/// Default grace period for in-flight requests on SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------------------------
// The file as written

/// The configuration file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The public listener and process settings.
    #[serde(default)]
    pub server: ServerSection,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default)]
    pub admin: AdminSection,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The default policy file, relative to this config file (named `default` below).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// More policies, and which requests get them.
    #[serde(default)]
    pub guard: GuardSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// API keys and which routes may be called without one.
    #[serde(default)]
    pub auth: AuthSection,
    /// Request-rate, token-quota and concurrency limits.
    #[serde(default)]
    pub rate_limits: RateLimitsSection,
    /// The tamper-evident audit trail.
    #[serde(default)]
    pub audit: Option<AuditSection>,
    /// The model registry that policies' `classifiers:` sections load bundles from.
    #[serde(default)]
    pub models: Option<ModelsSection>,
    /// Named upstream pools.
    pub upstreams: BTreeMap<String, UpstreamSection>,
    /// The pool requests go to; required when there is more than one.
    #[serde(default)]
    pub default_upstream: Option<String>,
}

fn default_batch_wait() -> Duration {
    Duration::from_millis(1)
}
fn default_max_batch() -> usize {
    16
}
fn default_model_queue() -> usize {
    4096
}
fn default_max_request_windows() -> usize {
    256
}
fn default_max_windows() -> usize {
    16
}
/// `models:` the file model registry and the encoder session pool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    /// Folder of bundles `<name>/<version>/manifest.json`, relative to this file.
    pub dir: PathBuf,
    /// The ONNX Runtime library (default: `ORT_DYLIB_PATH`, else the one the gateway was built
    /// against by `scripts/setup.sh`).
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// Encoder sessions, one thread each (default: the number of cores).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Most text windows per session run (1 to 256).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest a batch waits for more windows once it has one, when no session is idle.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub batch_wait: Duration,
    /// Most windows waiting; beyond it requests get the policy's `on_timeout` at once.
    #[serde(default = "default_model_queue")]
    pub queue: usize,
    /// Most windows per text (a longer text keeps its first and last windows).
    #[serde(default = "default_max_windows")]
    pub max_windows: usize,
    /// Most windows one tenant may have waiting (default: a quarter of `queue`): a tenant
    /// flooding the classifiers fails its own requests, and the others keep their turns.
    #[serde(default)]
    pub queue_per_tenant: Option<usize>,
    /// Most windows one request may need, all its texts together (default 256); a longer
    /// request is refused (413 `prompt_too_long`) when its policy fails closed.
    #[serde(default = "default_max_request_windows")]
    pub max_request_windows: usize,
    /// Swap in new bundle versions when they appear in `dir` (also on `POST /admin/reload`).
    #[serde(default = "default_true")]
    pub watch: bool,
}

/// The model registry, resolved.
#[derive(Debug, Clone)]
pub struct ModelsRuntime {
    /// Bundle folder.
    pub dir: PathBuf,
    /// ONNX Runtime library, if set.
    pub onnxruntime: Option<PathBuf>,
    /// Pool settings.
    pub encoder: filters::classify::EncoderOptions,
    /// Watch for new versions.
    pub watch: bool,
}

/// `server:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address of the public listener.
    #[serde(default = "default_listen")]
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Worker threads of the proxy (default: the number of cores).
    #[serde(default)]
    pub threads: Option<usize>,
    /// How long in-flight requests may finish after SIGTERM (SIGINT stops at once).
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_grace: Duration,
    /// Terminate TLS on the public listener (paths relative to this config file).
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// A new connection (or an idle keep-alive one that started a request) must send its
    /// whole request header within this long; a client that trickles bytes (slowloris) is
    /// disconnected.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept open between requests.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub keepalive_timeout: Duration,
    /// Open client connections at most; more are answered 503 and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections per client IP at most; more are answered 503 and closed.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_connections() -> usize {
    16_384
}
fn default_max_connections_per_ip() -> usize {
    1024
}

/// `server.tls:`
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA (PEM) that client certificates must chain to; set, clients without one are refused.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
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

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            threads: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            tls: None,
            header_read_timeout: default_header_read_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
        }
    }
}

/// `admin:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener. Keep it on loopback or a private network.
    #[serde(default = "default_admin_listen")]
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token of the `/admin/*` API (reload, keys,
    /// limits). Unset or empty: that API answers 403 and says how to enable it.
    #[serde(default = "default_admin_token_env")]
    pub token_env: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: default_admin_listen(),
            token_env: default_admin_token_env(),
        }
    }
}

fn default_admin_token_env() -> String {
    "PORTCULLIS_ADMIN_TOKEN".to_string()
}

/// `auth:`
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The keys file (relative to this config file), managed with `gateway keys`. When set,
    /// every route needs `Authorization: Bearer <key>` unless listed in `anonymous_routes`.
    /// When unset, the gateway is open and says so at start.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Route labels (`health`, `info`, `generate`, ...) callable without a key.
    #[serde(default)]
    pub anonymous_routes: Vec<String>,
}

/// A request-rate bucket.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    /// Refill rate: `N/s`, `N/m` or `N/h`.
    pub rate: String,
    /// Bucket size: requests allowed at once (default: one second's worth, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// `rate_limits:` (each limit is optional; API keys may override the per-key ones).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSection {
    /// Request rate per API key.
    #[serde(default)]
    pub per_key: Option<RateSection>,
    /// Request rate per tenant.
    #[serde(default)]
    pub per_tenant: Option<RateSection>,
    /// Request rate per client IP (anonymous requests too).
    #[serde(default)]
    pub per_ip: Option<RateSection>,
    /// LLM tokens (prompt + generated) per key per minute.
    #[serde(default)]
    pub key_tokens_per_minute: Option<u64>,
    /// LLM tokens per key per day.
    #[serde(default)]
    pub key_tokens_per_day: Option<u64>,
    /// LLM tokens per tenant per minute.
    #[serde(default)]
    pub tenant_tokens_per_minute: Option<u64>,
    /// LLM tokens per tenant per day.
    #[serde(default)]
    pub tenant_tokens_per_day: Option<u64>,
    /// Requests in flight per key.
    #[serde(default)]
    pub concurrency_per_key: Option<u32>,
    /// For a key with a token quota, a request that names no maximum of generated tokens
    /// (`max_new_tokens`, `max_tokens`, ...) gets this one written in and reserved (unless its
    /// upstream sets `max_total_tokens`).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Share request-rate and token-quota buckets with other replicas through Redis
    /// (concurrency limits stay per replica). Unset: limits are in process.
    #[serde(default)]
    pub redis: Option<RedisSection>,
}

/// `rate_limits.redis:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key the gateway writes.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// Longest wait for one check; past it the check counts as failed.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// When Redis fails: `open` (this replica limits on its own) or `closed` (503).
    #[serde(default = "default_redis_on_error")]
    pub on_error: crate::limits::redis::OnError,
}

fn default_redis_prefix() -> String {
    "portcullis:".to_string()
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_redis_on_error() -> crate::limits::redis::OnError {
    crate::limits::redis::OnError::Open
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        RateLimitsSection {
            per_key: None,
            per_tenant: None,
            per_ip: None,
            key_tokens_per_minute: None,
            key_tokens_per_day: None,
            tenant_tokens_per_minute: None,
            tenant_tokens_per_day: None,
            concurrency_per_key: None,
            default_max_tokens: default_max_tokens(),
            redis: None,
        }
    }
}

fn default_max_tokens() -> u32 {
    1024
}

/// `audit:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Folder of the audit files (relative to this config file).
    pub dir: PathBuf,
    /// Rotate a file after this many bytes.
    #[serde(default = "default_audit_bytes")]
    pub max_file_bytes: u64,
    /// Rotate a file after this long (`1h`, `1d`).
    #[serde(default = "default_audit_age", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_file_age: Duration,
    /// Records queued for the writer before `on_full` applies.
    #[serde(default = "default_audit_capacity")]
    pub channel_capacity: usize,
    /// `drop` (count and go on) or `block` (the request waits for the writer).
    #[serde(default = "default_on_full")]
    pub on_full: crate::audit::OnFull,
    /// A file holding the key (at least 16 bytes) that signs `audit.head` and the checkpoints
    /// (HMAC-SHA256), relative to this config file; created with a random key (mode 0600) when
    /// missing. Keep it outside the audit folder, readable by the gateway only: whoever can
    /// write the folder without it cannot rewrite the chain.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Or an environment variable holding that key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// A checkpoint (record number, hash, MAC) in `audit.checkpoints` and the log every this
    /// many records (0: none).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Retention: keep at most this many files (the oldest are deleted after a rotation).
    #[serde(default)]
    pub max_files: Option<usize>,
    /// Retention: delete files last written longer ago than this (`30d`).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Duration>,
}

fn default_checkpoint_every() -> u64 {
    1000
}

/// The audit key file's bytes; a missing file is created with 32 random bytes (hex), readable
/// by this user only, so a fresh install signs its trail from the first record.
fn read_or_create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key = hex::encode(bytes);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(key.as_bytes())?;
            tracing::info!(path = %path.display(), "audit: created a new signing key");
            Ok(key.into_bytes())
        }
        other => other,
    }
}

fn default_audit_bytes() -> u64 {
    64 << 20
}
fn default_audit_age() -> Duration {
    Duration::from_secs(86_400)
}
fn default_audit_capacity() -> usize {
    8192
}
fn default_on_full() -> crate::audit::OnFull {
    crate::audit::OnFull::Drop
}

/// `limits:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Longest silence accepted while a client sends its request body (408 after that).
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub body_read_timeout: Duration,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `log:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Output format.
    #[serde(default)]
    pub format: LogFormat,
    /// Filter in `tracing` syntax (`info`, `gateway=debug,pingora=warn`); `RUST_LOG` overrides.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

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

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8080)))
}
fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090)))
}
fn default_shutdown_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_body_read_timeout() -> Duration {
    DEFAULT_BODY_READ_TIMEOUT
}
fn default_log_level() -> String {
    "info".to_string()
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

// ------------------------------------------------------------------------------------------------
// Validated runtime configuration

/// A validated configuration, ready to serve.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The file it was read from.
    pub source: PathBuf,
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Proxy worker threads.
    pub threads: usize,
    /// Grace period on SIGTERM.
    pub shutdown_grace: Duration,
    /// Client connection limits and deadlines.
    pub connections: crate::connections::ConnectionLimits,
    /// Body limit in bytes.
    pub max_body_bytes: usize,
    /// Body read timeout.
    pub body_read_timeout: Duration,
    /// The loaded default policy, with the file it came from.
    pub policy: Option<(PathBuf, Arc<filters::Policy>)>,
    /// Every policy by name (`default` first), and how requests are mapped to them.
    pub guard: GuardRuntime,
    /// Logging.
    pub log: LogSection,
    /// Pools by name.
    pub upstreams: BTreeMap<String, UpstreamSection>,
    /// The pool requests go to.
    pub default_upstream: String,
    /// The keys file, resolved.
    pub keys_file: Option<PathBuf>,
    /// Routes callable without a key.
    pub anonymous_routes: Vec<crate::routes::Route>,
    /// Limits.
    pub limits: crate::limits::LimitsConfig,
    /// Audit trail.
    pub audit: Option<crate::audit::AuditConfig>,
    /// Env var of the admin token.
    pub admin_token_env: String,
    /// Shared limits.
    pub redis: Option<RedisSection>,
    /// TLS on the public listener (paths resolved).
    pub tls: Option<ServerTls>,
    /// The model registry.
    pub models: Option<ModelsRuntime>,
}

/// Why a configuration cannot be used: every problem found, each located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems, in file order where known.
    pub errors: Vec<YamlError>,
}

impl From<YamlError> for ConfigError {
    fn from(e: YamlError) -> Self {
        ConfigError { errors: vec![e] }
    }
}

impl GatewayConfig {
    /// Read, parse and validate a configuration file (and the policy it names).
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let loaded: Loaded<FileConfig> = load_yaml(path)?;
        validate(loaded)
    }
}

fn validate(loaded: Loaded<FileConfig>) -> Result<GatewayConfig, ConfigError> {
    let c = &loaded.value;
    let mut errors = Vec::new();
    let mut err = |path: &str, msg: String| errors.push(loaded.error_at(path, msg));

    if c.server.listen == c.admin.listen {
        err(
            "server.listen",
            format!(
                "the public listener must differ from the admin one ({})",
                c.admin.listen
            ),
        );
    }
    if let Some(t) = c.server.threads
        && (t == 0 || t > 256)
    {
        err(
            "server.threads",
            format!("threads must be between 1 and 256, got {t}"),
        );
    }
    if c.server.header_read_timeout.is_zero() {
        err("server.header_read_timeout", "must be more than 0".into());
    }
    if c.server.keepalive_timeout.as_secs() == 0 {
        err(
            "server.keepalive_timeout",
            "must be at least 1s (keep-alive timeouts are whole seconds)".into(),
        );
    }
    if c.server.max_connections == 0 {
        err("server.max_connections", "must be at least 1".into());
    }
    if c.server.max_connections_per_ip == 0
        || c.server.max_connections_per_ip > c.server.max_connections
    {
        err(
            "server.max_connections_per_ip",
            format!(
                "must be between 1 and max_connections ({})",
                c.server.max_connections
            ),
        );
    }
    if c.limits.max_body_bytes == 0 || c.limits.max_body_bytes > MAX_MAX_BODY_BYTES {
        err(
            "limits.max_body_bytes",
            format!(
                "max_body_bytes must be between 1 and {MAX_MAX_BODY_BYTES}, got {}",
                c.limits.max_body_bytes
            ),
        );
    }
    if c.limits.body_read_timeout.is_zero() {
        err(
            "limits.body_read_timeout",
            "must be greater than zero".into(),
        );
    }
    if c.log.level.trim().is_empty() {
        err(
            "log.level",
            "log level must not be empty (e.g. `info`)".into(),
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        err(
            "log.level",
            format!("invalid log filter `{}`: {e}", c.log.level),
        );
    }

    if c.upstreams.is_empty() {
        err("upstreams", "at least one upstream pool is required".into());
    }
    for (name, u) in &c.upstreams {
        let base = format!("upstreams.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            err(
                &base,
                format!("upstream name `{name}` must use only letters, digits, `-` and `_`"),
            );
        }
        if u.max_total_tokens == Some(0) {
            err(
                &format!("{base}.max_total_tokens"),
                "must be at least 1 (or left out)".into(),
            );
        }
        if u.backends.is_empty() {
            err(
                &format!("{base}.backends"),
                "at least one backend is required".into(),
            );
        }
        for (i, b) in u.backends.iter().enumerate() {
            let p = format!("{base}.backends[{i}]");
            if let Err(m) = check_backend_addr(b) {
                err(&p, m);
            }
            if u.backends[..i].contains(b) {
                err(&p, format!("backend `{b}` is listed twice"));
            }
        }
        for (field, d) in [
            ("connect", u.timeouts.connect),
            ("read", u.timeouts.read),
            ("write", u.timeouts.write),
            ("idle", u.timeouts.idle),
        ] {
            if d.is_zero() {
                err(
                    &format!("{base}.timeouts.{field}"),
                    "timeouts must be greater than zero".into(),
                );
            }
        }
        if u.retries > 10 {
            err(
                &format!("{base}.retries"),
                format!("at most 10 retries, got {}", u.retries),
            );
        }
        let h = &u.health_check;
        if h.enabled {
            if !h.path.starts_with('/') {
                err(
                    &format!("{base}.health_check.path"),
                    format!("path `{}` must start with `/`", h.path),
                );
            }
            if h.interval.is_zero() {
                err(
                    &format!("{base}.health_check.interval"),
                    "interval must be greater than zero".into(),
                );
            }
            if h.timeout.is_zero() || h.timeout > h.interval {
                err(
                    &format!("{base}.health_check.timeout"),
                    format!(
                        "timeout must be greater than zero and at most the interval ({})",
                        humantime::format_duration(h.interval)
                    ),
                );
            }
            if h.unhealthy_after == 0 {
                err(
                    &format!("{base}.health_check.unhealthy_after"),
                    "must be at least 1".into(),
                );
            }
            if h.healthy_after == 0 {
                err(
                    &format!("{base}.health_check.healthy_after"),
                    "must be at least 1".into(),
                );
            }
        }
        let b = &u.circuit_breaker;
        if b.enabled {
            if b.failure_threshold == 0 {
                err(
                    &format!("{base}.circuit_breaker.failure_threshold"),
                    "must be at least 1".into(),
                );
            }
            if b.open_for.is_zero() {
                err(
                    &format!("{base}.circuit_breaker.open_for"),
                    "must be greater than zero".into(),
                );
            }
        }
    }

    let default_upstream = match (&c.default_upstream, c.upstreams.len()) {
        (Some(d), _) if c.upstreams.contains_key(d) => Some(d.clone()),
        (Some(d), _) => {
            let known: Vec<_> = c.upstreams.keys().map(String::as_str).collect();
            err(
                "default_upstream",
                format!("no upstream named `{d}` (defined: {})", known.join(", ")),
            );
            None
        }
        (None, 1) => c.upstreams.keys().next().cloned(),
        (None, 0) => None,
        (None, _) => {
            err(
                "default_upstream",
                "several upstreams are defined: set `default_upstream` to one of them".into(),
            );
            None
        }
    };

    let resolve = |p: &Path| match loaded.file.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    };
    let mut policies: Vec<(String, PathBuf, Arc<filters::Policy>)> = Vec::new();
    let mut load_policy = |name: &str, at: &str, p: &Path, errors: &mut Vec<YamlError>| {
        let resolved = resolve(p);
        match filters::Policy::load(&resolved) {
            Ok(policy) => policies.push((name.to_string(), resolved, Arc::new(policy))),
            Err(e) => {
                // The policy's own error (its file, its line), plus where the config named it.
                errors.push(loaded.error_at(at, format!("cannot use policy `{}`", p.display())));
                errors.push(e);
            }
        }
    };
    if let Some(p) = &c.policy {
        load_policy("default", "policy", p, &mut errors);
    }
    for (name, p) in &c.guard.policies {
        if name == "default" {
            errors.push(loaded.error_at(
                &format!("guard.policies.{name}"),
                "`default` is the policy named by the top-level `policy` key; pick another name",
            ));
            continue;
        }
        load_policy(name, &format!("guard.policies.{name}"), p, &mut errors);
    }
    let known = |n: &str| n == "default" && c.policy.is_some() || c.guard.policies.contains_key(n);
    let mut routes = HashMap::new();
    for (label, name) in &c.guard.routes {
        match crate::routes::Route::by_label(label) {
            None => errors.push(loaded.error_at(
                &format!("guard.routes.{label}"),
                format!(
                    "no route `{label}` (routes: {})",
                    crate::routes::Route::all()
                        .map(|r| r.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(r) if known(name) => {
                routes.insert(r, name.clone());
            }
            Some(_) => errors.push(loaded.error_at(
                &format!("guard.routes.{label}"),
                format!("no policy named `{name}` (define it under `guard.policies`)"),
            )),
        }
    }
    if let Some(old) = &c.guard.tenants {
        errors.push(loaded.error_at("guard.tenants", tenants_moved(old)));
    }
    let mut tenant_policies = HashMap::new();
    for (tenant, name) in &c.guard.tenant_policies {
        if known(name) {
            tenant_policies.insert(tenant.clone(), name.clone());
        } else {
            errors.push(loaded.error_at(
                &format!("guard.tenant_policies.{tenant}"),
                format!("no policy named `{name}` (define it under `guard.policies`)"),
            ));
        }
    }
    if c.guard.max_response_bytes < 1024 {
        errors.push(loaded.error_at(
            "guard.max_response_bytes",
            format!(
                "{} is too small (at least 1024)",
                c.guard.max_response_bytes
            ),
        ));
    }
    let policy = policies
        .iter()
        .find(|p| p.0 == "default")
        .map(|(_, path, p)| (path.clone(), p.clone()));
    let guard = GuardRuntime {
        policies,
        routes,
        tenant_policies,
        pseudonym_key_env: c.guard.pseudonym_key_env.clone(),
        max_response_bytes: c.guard.max_response_bytes,
        hot_reload: c.guard.hot_reload,
    };

    let base = loaded
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let keys_file = c.auth.keys_file.as_ref().map(|p| base.join(p));
    if let Some(k) = &keys_file
        && let Err(e) = crate::keys::KeysFile::read(k)
    {
        errors.push(loaded.error_at("auth.keys_file", e.to_string()));
    }
    let mut anonymous_routes = Vec::new();
    for (i, label) in c.auth.anonymous_routes.iter().enumerate() {
        match crate::routes::Route::by_label(label) {
            Some(r) => anonymous_routes.push(r),
            None => errors.push(loaded.error_at(
                &format!("auth.anonymous_routes[{i}]"),
                format!(
                    "no route `{label}`; routes are {}",
                    crate::routes::Route::all()
                        .map(|r| r.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    let rl = &c.rate_limits;
    let mut rate = |field: &str, r: &Option<RateSection>| -> Option<crate::limits::RateSpec> {
        let r = r.as_ref()?;
        match crate::keys::parse_rate(&r.rate) {
            Ok(per_second) if r.burst != Some(0) => Some(crate::limits::RateSpec {
                per_second,
                burst: r.burst.unwrap_or_else(|| per_second.ceil().max(1.0) as u32),
            }),
            Ok(_) => {
                errors.push(loaded.error_at(
                    &format!("rate_limits.{field}.burst"),
                    "burst must be at least 1",
                ));
                None
            }
            Err(e) => {
                errors.push(loaded.error_at(&format!("rate_limits.{field}.rate"), e));
                None
            }
        }
    };
    let limits = crate::limits::LimitsConfig {
        per_key: rate("per_key", &rl.per_key),
        per_tenant: rate("per_tenant", &rl.per_tenant),
        per_ip: rate("per_ip", &rl.per_ip),
        key_tokens_per_minute: rl.key_tokens_per_minute,
        key_tokens_per_day: rl.key_tokens_per_day,
        tenant_tokens_per_minute: rl.tenant_tokens_per_minute,
        tenant_tokens_per_day: rl.tenant_tokens_per_day,
        concurrency_per_key: rl.concurrency_per_key,
        default_max_tokens: rl.default_max_tokens,
    };
    for (field, v) in [
        ("key_tokens_per_minute", rl.key_tokens_per_minute),
        ("key_tokens_per_day", rl.key_tokens_per_day),
        ("tenant_tokens_per_minute", rl.tenant_tokens_per_minute),
        ("tenant_tokens_per_day", rl.tenant_tokens_per_day),
        ("concurrency_per_key", rl.concurrency_per_key.map(u64::from)),
    ] {
        if v == Some(0) {
            errors.push(loaded.error_at(
                &format!("rate_limits.{field}"),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
    }
    let readable = |p: &Path| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false);
    let server_tls = c.server.tls.as_ref().map(|t| ServerTls {
        cert: base.join(&t.cert),
        key: base.join(&t.key),
        client_ca: t.client_ca.as_ref().map(|p| base.join(p)),
    });
    if let Some(t) = &server_tls {
        for (field, p) in [
            ("cert", Some(&t.cert)),
            ("key", Some(&t.key)),
            ("client_ca", t.client_ca.as_ref()),
        ] {
            if let Some(p) = p
                && !readable(p)
            {
                errors.push(loaded.error_at(
                    &format!("server.tls.{field}"),
                    format!("cannot read {}", p.display()),
                ));
            }
        }
    }
    for (name, u) in &c.upstreams {
        if let Some(a) = &u.auth
            && let Err(e) = a.resolve()
        {
            errors.push(loaded.error_at(&format!("upstreams.{name}.auth"), e));
        }
    }
    let mut tokenizers = BTreeMap::new();
    for (name, u) in &c.upstreams {
        if let Some(t) = &u.tokenizer {
            let path = base.join(t);
            match tokenizers::Tokenizer::from_file(&path) {
                Ok(_) => {
                    tokenizers.insert(name.clone(), path);
                }
                Err(e) => errors.push(loaded.error_at(
                    &format!("upstreams.{name}.tokenizer"),
                    format!("cannot load {}: {e}", path.display()),
                )),
            }
        }
    }
    let mut upstream_tls = BTreeMap::new();
    for (name, u) in &c.upstreams {
        if let Some(t) = &u.tls {
            let t = UpstreamTls {
                ca: t.ca.as_ref().map(|p| base.join(p)),
                client_cert: t.client_cert.as_ref().map(|p| base.join(p)),
                client_key: t.client_key.as_ref().map(|p| base.join(p)),
                ..t.clone()
            };
            if t.client_cert.is_some() != t.client_key.is_some() {
                errors.push(loaded.error_at(
                    &format!("upstreams.{name}.tls"),
                    "client_cert and client_key go together",
                ));
            }
            for (field, p) in [
                ("ca", &t.ca),
                ("client_cert", &t.client_cert),
                ("client_key", &t.client_key),
            ] {
                if let Some(p) = p
                    && !readable(p)
                {
                    errors.push(loaded.error_at(
                        &format!("upstreams.{name}.tls.{field}"),
                        format!("cannot read {}", p.display()),
                    ));
                }
            }
            upstream_tls.insert(name.clone(), t);
        }
    }
    if let Some(r) = &rl.redis {
        if let Err(e) = redis::Client::open(r.url.as_str()) {
            errors.push(loaded.error_at("rate_limits.redis.url", format!("`{}`: {e}", r.url)));
        }
        if r.timeout.is_zero() {
            errors.push(loaded.error_at("rate_limits.redis.timeout", "must be more than 0"));
        }
    }
    let audit = c.audit.as_ref().map(|a| {
        let dir = base.join(&a.dir);
        let key = match (&a.key_file, &a.key_env) {
            (Some(_), Some(_)) => {
                errors.push(loaded.error_at("audit", "give `key_file` or `key_env`, not both"));
                None
            }
            (Some(f), None) => {
                let f = base.join(f);
                let inside = match (f.canonicalize(), dir.canonicalize()) {
                    (Ok(k), Ok(d)) => k.starts_with(d),
                    _ => f.starts_with(&dir),
                };
                if inside {
                    errors.push(loaded.error_at(
                        "audit.key_file",
                        "the key must live outside the audit folder: whoever can write the folder could otherwise re-sign it",
                    ));
                    None
                } else {
                    match read_or_create_key(&f) {
                        Ok(b) => match crate::audit::AuditKey::new(&b) {
                            Ok(k) => Some(k),
                            Err(e) => {
                                errors.push(loaded.error_at("audit.key_file", e));
                                None
                            }
                        },
                        Err(e) => {
                            errors.push(loaded.error_at(
                                "audit.key_file",
                                format!("cannot read {}: {e}", f.display()),
                            ));
                            None
                        }
                    }
                }
            }
            (None, Some(env)) => match std::env::var(env) {
                Ok(v) => match crate::audit::AuditKey::new(v.as_bytes()) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        errors.push(loaded.error_at("audit.key_env", e));
                        None
                    }
                },
                Err(_) => {
                    errors.push(loaded.error_at(
                        "audit.key_env",
                        format!("the environment variable `{env}` is not set"),
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        if a.max_files == Some(0) {
            errors.push(loaded.error_at("audit.max_files", "must be at least 1 (or left out)"));
        }
        if a.max_age.is_some_and(|d| d.is_zero()) {
            errors.push(loaded.error_at("audit.max_age", "must be more than 0 (or left out)"));
        }
        crate::audit::AuditConfig {
            dir,
            max_file_bytes: a.max_file_bytes.max(4096),
            max_file_age: a.max_file_age,
            channel_capacity: a.channel_capacity.max(1),
            on_full: a.on_full,
            key,
            checkpoint_every: a.checkpoint_every,
            max_files: a.max_files,
            max_age: a.max_age,
        }
    });
    if let Some(a) = &c.audit
        && (a.max_file_bytes < 4096 || a.channel_capacity == 0 || a.max_file_age.is_zero())
    {
        errors.push(loaded.error_at(
            "audit",
            "max_file_bytes must be at least 4096, channel_capacity and max_file_age more than 0",
        ));
    }
    let models = match &c.models {
        Some(m) => {
            let dir = base.join(&m.dir);
            if !dir.is_dir() {
                errors.push(loaded.error_at(
                    "models.dir",
                    format!(
                        "{} is not a folder (scripts/setup.sh builds models/)",
                        dir.display()
                    ),
                ));
            }
            if !(1..=256).contains(&m.max_batch) || m.queue == 0 || m.max_windows < 2 {
                errors.push(loaded.error_at(
                    "models",
                    "max_batch must be 1 to 256, queue at least 1, max_windows at least 2",
                ));
            }
            if m.workers == Some(0) {
                errors.push(loaded.error_at("models.workers", "must be at least 1"));
            }
            if m.queue_per_tenant.is_some_and(|q| q == 0 || q > m.queue) {
                errors.push(loaded.error_at(
                    "models.queue_per_tenant",
                    format!("must be between 1 and queue ({})", m.queue),
                ));
            }
            if m.max_request_windows < m.max_windows {
                errors.push(loaded.error_at(
                    "models.max_request_windows",
                    format!(
                        "must be at least max_windows ({}): one text may need that many",
                        m.max_windows
                    ),
                ));
            }
            let onnxruntime = m.onnxruntime.as_ref().map(|p| base.join(p));
            if let Some(p) = &onnxruntime
                && !p.is_file()
            {
                errors.push(loaded.error_at(
                    "models.onnxruntime",
                    format!("{} does not exist", p.display()),
                ));
            }
            let defaults = filters::classify::EncoderOptions::default();
            Some(ModelsRuntime {
                dir,
                onnxruntime,
                encoder: filters::classify::EncoderOptions {
                    workers: m.workers.unwrap_or(defaults.workers),
                    intra_threads: 1,
                    max_batch: m.max_batch,
                    batch_wait: m.batch_wait,
                    queue: m.queue,
                    queue_per_tenant: m.queue_per_tenant.unwrap_or((m.queue / 4).max(1)),
                    max_request_windows: m.max_request_windows,
                    max_windows: m.max_windows,
                    long_texts: filters::classify::LongTexts::Refuse,
                    keep_features: false,
                },
                watch: m.watch,
            })
        }
        None => None,
    };
    // Every policy that names a model needs the registry, and the bundle must be there.
    for (name, _, p) in &guard.policies {
        let Some(plan) = &p.classifiers else {
            continue;
        };
        let at = if name == "default" {
            "policy".to_string()
        } else {
            format!("guard.policies.{name}")
        };
        match &models {
            None => errors.push(loaded.error_at(
                &at,
                format!(
                    "policy `{}` uses the model `{}` (classifiers:), but this config has no `models:` section naming the bundle folder",
                    p.name, plan.model
                ),
            )),
            Some(m) if m.dir.is_dir() => {
                let found = match &plan.version {
                    Some(v) => m.dir.join(&plan.model).join(v).join("manifest.json").is_file(),
                    None => filters::classify::bundle::versions(&m.dir, &plan.model)
                        .is_ok_and(|v| !v.is_empty()),
                };
                if !found {
                    errors.push(loaded.error_at(
                        &at,
                        format!(
                            "policy `{}` uses the model `{}{}`, which is not in {}",
                            p.name,
                            plan.model,
                            plan.version.as_ref().map(|v| format!("@{v}")).unwrap_or_default(),
                            m.dir.display()
                        ),
                    ));
                }
            }
            Some(_) => {}
        }
    }

    if !errors.is_empty() {
        return Err(ConfigError { errors });
    }
    let c = loaded.value;
    Ok(GatewayConfig {
        source: loaded.file,
        listen: c.server.listen,
        admin_listen: c.admin.listen,
        threads: c
            .server
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        shutdown_grace: c.server.shutdown_grace,
        connections: crate::connections::ConnectionLimits {
            header_read_timeout: c.server.header_read_timeout,
            keepalive_timeout: c.server.keepalive_timeout,
            max_total: c.server.max_connections,
            max_per_ip: c.server.max_connections_per_ip,
        },
        max_body_bytes: c.limits.max_body_bytes,
        body_read_timeout: c.limits.body_read_timeout,
        policy,
        guard,
        log: c.log,
        upstreams: {
            let mut u = c.upstreams;
            for (name, t) in upstream_tls {
                if let Some(s) = u.get_mut(&name) {
                    s.tls = Some(t);
                }
            }
            for (name, t) in tokenizers {
                if let Some(s) = u.get_mut(&name) {
                    s.tokenizer = Some(t);
                }
            }
            u
        },
        default_upstream: default_upstream.unwrap_or_default(),
        keys_file,
        anonymous_routes,
        limits,
        audit,
        admin_token_env: c.admin.token_env,
        redis: c.rate_limits.redis,
        tls: server_tls,
        models,
    })
}

/// A backend address must be `host:port` with a non-zero port (IPv6 in brackets).
fn check_backend_addr(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err(format!(
            "backend `{s}` must be `host:port`, without a scheme"
        ));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("backend `{s}` must be `host:port`"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("backend `{s}` has an invalid port `{port}`"))?;
    if port == 0 {
        return Err(format!("backend `{s}` must not use port 0"));
    }
    if host.is_empty() {
        return Err(format!("backend `{s}` has an empty host"));
    }
    if host.starts_with('[') != host.ends_with(']') {
        return Err(format!(
            "backend `{s}`: IPv6 addresses go in brackets, e.g. `[::1]:3000`"
        ));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "backend `{s}`: IPv6 addresses go in brackets, e.g. `[::1]:3000`"
        ));
    }
    Ok(())
}

fn default_pseudonym_key_env() -> String {
    "PORTCULLIS_PSEUDONYM_KEY".to_string()
}
fn default_max_response_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_true() -> bool {
    true
}

/// Policies beyond the default, how requests map to them, and guard settings.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// More policy files by name, relative to this config file.
    #[serde(default)]
    pub policies: BTreeMap<String, PathBuf>,
    /// Route label (`chat_completions`, `generate`, ...) → policy name.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Tenant (as the keys file names it) → policy name. A key's own `policy` wins over its
    /// tenant's, which wins over the route's.
    #[serde(default)]
    pub tenant_policies: BTreeMap<String, String>,
    /// Removed: API keys live only in the keys file (`auth.keys_file`). Still read so that an
    /// old config is refused with the keys-file entries to write instead.
    #[serde(default)]
    #[schemars(skip)]
    pub tenants: Option<BTreeMap<String, serde_yaml::Value>>,
    /// Environment variable holding the pseudonymisation master key. When unset, a random key
    /// is made at start (pseudonyms then change across restarts; a warning says so).
    #[serde(default = "default_pseudonym_key_env")]
    pub pseudonym_key_env: String,
    /// Largest non-streamed answer buffered for output filtering (bytes).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Reload policy files when they change.
    #[serde(default = "default_true")]
    pub hot_reload: bool,
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection {
            policies: BTreeMap::new(),
            routes: BTreeMap::new(),
            tenant_policies: BTreeMap::new(),
            tenants: None,
            pseudonym_key_env: default_pseudonym_key_env(),
            max_response_bytes: default_max_response_bytes(),
            hot_reload: true,
        }
    }
}

/// The error for a config that still has `guard.tenants`: what to write instead, with the
/// key hashes it held (hashes, never keys: the config never had the keys themselves).
fn tenants_moved(old: &BTreeMap<String, serde_yaml::Value>) -> String {
    let mut keys = String::new();
    let mut policies = String::new();
    for (tenant, t) in old {
        let hashes = t
            .get("api_keys_sha256")
            .and_then(serde_yaml::Value::as_sequence)
            .map(|v| {
                v.iter()
                    .filter_map(serde_yaml::Value::as_str)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for (i, h) in hashes.iter().enumerate() {
            keys.push_str(&format!(
                "\n  - {{id: {tenant}-{}, sha256: {h}, tenant: {tenant}}}",
                i + 1
            ));
        }
        if let Some(p) = t.get("policy").and_then(serde_yaml::Value::as_str) {
            policies.push_str(&format!("\n    {tenant}: {p}"));
        }
    }
    let mut msg = "was removed: the keys file is the gateway's only authenticator (see README, \
                   \"Migrating from guard.tenants\"). Move each key hash to the keys file \
                   (`auth.keys_file`)"
        .to_string();
    if !keys.is_empty() {
        msg.push_str(&format!(":\nkeys:{keys}"));
    }
    if !policies.is_empty() {
        msg.push_str(&format!(
            "\nand each tenant's policy to the config:\nguard:\n  tenant_policies:{policies}"
        ));
    }
    msg
}

/// Validated guard settings.
#[derive(Debug, Clone)]
pub struct GuardRuntime {
    /// Policies by name, compiled.
    pub policies: Vec<(String, PathBuf, Arc<filters::Policy>)>,
    /// Route → policy name.
    pub routes: HashMap<crate::routes::Route, String>,
    /// Tenant → policy name.
    pub tenant_policies: HashMap<String, String>,
    /// Where the pseudonym key comes from.
    pub pseudonym_key_env: String,
    /// Largest buffered answer.
    pub max_response_bytes: usize,
    /// Watch files.
    pub hot_reload: bool,
}

/// The JSON Schema of the configuration file.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(FileConfig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<GatewayConfig, ConfigError> {
        let loaded = filters::yaml::parse_yaml::<FileConfig>(Path::new("gw.yaml"), src)?;
        validate(loaded)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("upstreams:\n  tgi:\n    backends: [127.0.0.1:3000]\n").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.default_upstream, "tgi");
        let u = &c.upstreams["tgi"];
        assert_eq!(u.balance, Balance::RoundRobin);
        assert_eq!(u.timeouts.read, DEFAULT_READ_TIMEOUT);
        assert!(u.health_check.enabled);
    }

    #[test]
    fn durations_are_human() {
        let c = parse(
            "upstreams:\n  tgi:\n    backends: [h:1]\n    timeouts: {connect: 250ms, read: 2m}\n",
        )
        .unwrap();
        assert_eq!(
            c.upstreams["tgi"].timeouts.connect,
            Duration::from_millis(250)
        );
        assert_eq!(c.upstreams["tgi"].timeouts.read, Duration::from_secs(120));
    }

    #[test]
    fn guard_tenants_is_refused_with_the_keys_file_entries_to_write() {
        let h = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let e = parse(&format!(
            "upstreams:\n  tgi:\n    backends: [h:1]\nguard:\n  tenants:\n    acme:\n      policy: default\n      api_keys_sha256: [{h}]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("gw.yaml:5:"), "located: {e}");
        assert!(e.contains("guard.tenants"), "{e}");
        assert!(
            e.contains(&format!("{{id: acme-1, sha256: {h}, tenant: acme}}")),
            "{e}"
        );
        assert!(e.contains("tenant_policies:\n    acme: default"), "{e}");
        // and the replacement is checked
        let e = parse(
            "upstreams:\n  tgi:\n    backends: [h:1]\nguard:\n  tenant_policies:\n    acme: nope\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("guard.tenant_policies.acme") && e.contains("no policy named `nope`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_name_their_line() {
        let e = parse("upstreams:\n  tgi:\n    backends: [h:1]\n    retires: 3\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("gw.yaml:4:"), "{s}");
        assert!(s.contains("unknown field `retires`"), "{s}");
    }

    #[test]
    fn semantic_errors_are_all_reported_with_lines() {
        let src = "\
server:
  listen: 127.0.0.1:9090
upstreams:
  a:
    backends: []
  b:
    backends:
      - http://x:1
      - h:0
    health_check: {timeout: 5s, interval: 1s}
default_upstream: c
";
        let e = parse(src).unwrap_err();
        let lines: Vec<_> = e
            .errors
            .iter()
            .map(|e| (e.line, e.path.clone().unwrap_or_default()))
            .collect();
        assert!(lines.contains(&(Some(2), "server.listen".into())), "{e}");
        assert!(
            lines.contains(&(Some(5), "upstreams.a.backends".into())),
            "{e}"
        );
        assert!(
            lines.contains(&(Some(8), "upstreams.b.backends[0]".into())),
            "{e}"
        );
        assert!(
            lines.contains(&(Some(9), "upstreams.b.backends[1]".into())),
            "{e}"
        );
        assert!(
            lines.contains(&(Some(10), "upstreams.b.health_check.timeout".into())),
            "{e}"
        );
        assert!(
            lines.contains(&(Some(11), "default_upstream".into())),
            "{e}"
        );
    }

    #[test]
    fn several_upstreams_need_a_default() {
        let e = parse("upstreams:\n  a: {backends: [h:1]}\n  b: {backends: [h:2]}\n").unwrap_err();
        assert!(e.to_string().contains("default_upstream"), "{e}");
    }

    #[test]
    fn backend_addresses() {
        assert!(check_backend_addr("127.0.0.1:3000").is_ok());
        assert!(check_backend_addr("tgi.internal:80").is_ok());
        assert!(check_backend_addr("[::1]:3000").is_ok());
        assert!(check_backend_addr("::1:3000").is_err());
        assert!(check_backend_addr("localhost").is_err());
        assert!(check_backend_addr("h:99999").is_err());
        assert!(check_backend_addr(":80").is_err());
    }
}
