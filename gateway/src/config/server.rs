//! `server:`, `admin:`, `limits:` and `log:`: the listeners, the process, client connections
//! and request bodies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Check;
use crate::connections::ConnectionLimits;

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

/// Default grace period for in-flight requests on SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

/// `server:`, `admin:`, `limits:`, `log:` checked, TLS paths resolved.
pub(super) struct Checked {
    pub threads: usize,
    pub connections: ConnectionLimits,
    pub tls: Option<ServerTls>,
}

pub(super) fn check(cx: &mut Check<'_>) -> Checked {
    let c = cx.file();
    if c.server.listen == c.admin.listen {
        cx.err(
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
        cx.err(
            "server.threads",
            format!("threads must be between 1 and 256, got {t}"),
        );
    }
    if c.server.header_read_timeout.is_zero() {
        cx.err("server.header_read_timeout", "must be more than 0");
    }
    if c.server.keepalive_timeout.as_secs() == 0 {
        cx.err(
            "server.keepalive_timeout",
            "must be at least 1s (keep-alive timeouts are whole seconds)",
        );
    }
    if c.server.max_connections == 0 {
        cx.err("server.max_connections", "must be at least 1");
    }
    if c.server.max_connections_per_ip == 0
        || c.server.max_connections_per_ip > c.server.max_connections
    {
        cx.err(
            "server.max_connections_per_ip",
            format!(
                "must be between 1 and max_connections ({})",
                c.server.max_connections
            ),
        );
    }
    if c.limits.max_body_bytes == 0 || c.limits.max_body_bytes > MAX_MAX_BODY_BYTES {
        cx.err(
            "limits.max_body_bytes",
            format!(
                "max_body_bytes must be between 1 and {MAX_MAX_BODY_BYTES}, got {}",
                c.limits.max_body_bytes
            ),
        );
    }
    if c.limits.body_read_timeout.is_zero() {
        cx.err("limits.body_read_timeout", "must be greater than zero");
    }
    if c.log.level.trim().is_empty() {
        cx.err("log.level", "log level must not be empty (e.g. `info`)");
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        cx.err(
            "log.level",
            format!("invalid log filter `{}`: {e}", c.log.level),
        );
    }
    let base = cx.base();
    let tls = c.server.tls.as_ref().map(|t| ServerTls {
        cert: base.join(&t.cert),
        key: base.join(&t.key),
        client_ca: t.client_ca.as_ref().map(|p| base.join(p)),
    });
    if let Some(t) = &tls {
        for (field, p) in [
            ("cert", Some(&t.cert)),
            ("key", Some(&t.key)),
            ("client_ca", t.client_ca.as_ref()),
        ] {
            if let Some(p) = p
                && !super::readable(p)
            {
                cx.err(
                    &format!("server.tls.{field}"),
                    format!("cannot read {}", p.display()),
                );
            }
        }
    }
    Checked {
        threads: c
            .server
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        connections: ConnectionLimits {
            header_read_timeout: c.server.header_read_timeout,
            keepalive_timeout: c.server.keepalive_timeout,
            max_total: c.server.max_connections,
            max_per_ip: c.server.max_connections_per_ip,
        },
        tls,
    }
}
