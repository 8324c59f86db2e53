//! Gateway configuration: the YAML file `gateway serve --config FILE` reads.
//!
//! Two stages, as in TensorZero: [`FileConfig`] mirrors the file (serde, `deny_unknown_fields`,
//! defaults from named constants) and [`GatewayConfig::load`] validates it into runtime types,
//! reporting every problem with file, line and column.
//!
//! One file per section, each with its file types and its `check` (problems pushed to a shared
//! [`Check`], runtime values returned): `server.rs` (`server`, `admin`, `limits`, `log`),
//! `upstreams.rs`, `access.rs` (`auth`, `rate_limits`), `audit.rs`, `guard.rs` (`policy`,
//! `guard`, `models`). Settings a component reads at run time are that component's types
//! (`upstream::settings`, `telemetry::LogSection`, `models::ModelsSettings`,
//! `limits::LimitsConfig`, `audit::AuditConfig`, `connections::ConnectionLimits`): this module
//! depends on the components and never the reverse (a test keeps it so).
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

mod access;
mod adapters;
mod audit;
mod guard;
mod mcp;
mod server;
mod upstreams;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filters::yaml::{Loaded, YamlError, load_yaml};
use schemars::JsonSchema;
use serde::Deserialize;

pub use access::{AuthSection, RateLimitsSection, RateSection, RedisSection};
pub use adapters::{AdaptersSection, RuleSection};
pub use audit::AuditSection;
pub use guard::{GuardRuntime, GuardSection, ModelsSection};
pub use mcp::{McpSection, McpServerSection};
pub use server::{
    AdminSection, DEFAULT_ADMIN_LISTEN, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_SHUTDOWN_GRACE, LimitsSection, MAX_MAX_BODY_BYTES,
    ServerSection, ServerTls,
};

use crate::audit::AuditConfig;
use crate::connections::ConnectionLimits;
use crate::limits::LimitsConfig;
use crate::models::ModelsSettings;
use crate::routes::Route;
use crate::telemetry::LogSection;
use crate::upstream::UpstreamSection;

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
    /// Signed LoRA adapters, who may use them, canary splits.
    #[serde(default)]
    pub adapters: Option<AdaptersSection>,
    /// MCP servers exposed at `/mcp/<name>`.
    #[serde(default)]
    pub mcp: Option<McpSection>,
    /// Named upstream pools.
    pub upstreams: BTreeMap<String, UpstreamSection>,
    /// The pool requests go to; required when there is more than one.
    #[serde(default)]
    pub default_upstream: Option<String>,
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
    pub connections: ConnectionLimits,
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
    pub anonymous_routes: Vec<Route>,
    /// Limits.
    pub limits: LimitsConfig,
    /// Audit trail.
    pub audit: Option<AuditConfig>,
    /// Env var of the admin token.
    pub admin_token_env: String,
    /// Shared limits.
    pub redis: Option<RedisSection>,
    /// TLS on the public listener (paths resolved).
    pub tls: Option<ServerTls>,
    /// The model registry.
    pub models: Option<ModelsSettings>,
    /// LoRA adapters.
    pub adapters: Option<crate::adapters::AdapterSettings>,
    /// MCP servers.
    pub mcp: Option<crate::mcp::McpSettings>,
}

/// Why a configuration cannot be used: every problem found, each located in its file.
pub type ConfigError = filters::yaml::YamlErrors;

impl GatewayConfig {
    /// Read, parse and validate a configuration file (and the policy it names).
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let loaded: Loaded<FileConfig> = load_yaml(path)?;
        validate(loaded)
    }
}

/// What the section checks share: the file (for locations and relative paths) and every
/// problem found so far.
pub(crate) struct Check<'a> {
    loaded: &'a Loaded<FileConfig>,
    errors: Vec<YamlError>,
}

impl<'a> Check<'a> {
    /// The file as parsed.
    fn file(&self) -> &'a FileConfig {
        &self.loaded.value
    }

    /// A problem at a dotted path of the file (located to its line and column).
    fn err(&mut self, path: &str, message: impl Into<String>) {
        let e = self.loaded.error_at(path, message);
        self.errors.push(e);
    }

    /// Problems located in another file (a policy).
    fn push_all(&mut self, errors: impl IntoIterator<Item = YamlError>) {
        self.errors.extend(errors);
    }

    /// The config file's folder: relative paths in the file are relative to it.
    fn base(&self) -> PathBuf {
        self.loaded
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// Whether `p` is a file we can stat.
fn readable(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false)
}

/// The route labels, for messages.
fn route_labels() -> String {
    Route::all()
        .map(|r| r.label())
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate(loaded: Loaded<FileConfig>) -> Result<GatewayConfig, ConfigError> {
    let mut cx = Check {
        loaded: &loaded,
        errors: Vec::new(),
    };
    let server = server::check(&mut cx);
    let upstreams = upstreams::check(&mut cx);
    let guard = guard::check(&mut cx);
    let access = access::check(&mut cx);
    let audit = audit::check(&mut cx);
    let adapters = adapters::check(&mut cx);
    let mcp = mcp::check(&mut cx);
    if !cx.errors.is_empty() {
        return Err(ConfigError { errors: cx.errors });
    }
    let c = loaded.value;
    Ok(GatewayConfig {
        source: loaded.file,
        listen: c.server.listen,
        admin_listen: c.admin.listen,
        threads: server.threads,
        shutdown_grace: c.server.shutdown_grace,
        connections: server.connections,
        max_body_bytes: c.limits.max_body_bytes,
        body_read_timeout: c.limits.body_read_timeout,
        policy: guard.policy,
        guard: guard.guard,
        log: c.log,
        upstreams: upstreams.upstreams,
        default_upstream: upstreams.default_upstream,
        keys_file: access.keys_file,
        anonymous_routes: access.anonymous_routes,
        limits: access.limits,
        audit,
        admin_token_env: c.admin.token_env,
        redis: c.rate_limits.redis,
        tls: server.tls,
        models: guard.models,
        adapters,
        mcp,
    })
}

/// The JSON Schema of the configuration file.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(FileConfig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Balance;
    use crate::upstream::settings::DEFAULT_READ_TIMEOUT;
    use upstreams::check_backend_addr;

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
    fn mcp_servers_are_checked_and_stdio_paths_made_absolute() {
        let up = "upstreams:\n  tgi:\n    backends: [h:1]\n";
        let c = parse(&format!(
            "{up}mcp:\n  servers:\n    a: {{url: http://127.0.0.1:1/mcp}}\n    b: {{command: ./srv, args: [x]}}\n    c: {{command: npx}}\n"
        ))
        .unwrap();
        let m = c.mcp.unwrap();
        assert_eq!(m.servers["a"].url, "http://127.0.0.1:1/mcp");
        assert!(
            parse(&format!(
                "{up}mcp:\n  servers:\n    a: {{url: https://mcp.example/mcp}}\n"
            ))
            .is_ok()
        );
        let b = m.servers["b"].stdio.as_ref().unwrap();
        // run from the config's folder, a relative program named absolutely
        assert!(Path::new(&b.command).is_absolute(), "{}", b.command);
        assert!(b.cwd.as_ref().is_some_and(|d| d.is_absolute()));
        assert_eq!(m.servers["c"].stdio.as_ref().unwrap().command, "npx");
        for bad in [
            "mcp:\n  servers: {}\n",
            "mcp:\n  servers:\n    a: {url: https://x/mcp, ca_file: /nonexistent/ca.pem}\n",
            "mcp:\n  servers:\n    a: {url: http://x/mcp, ca_file: gw.yaml}\n",
            "mcp:\n  servers:\n    a: {url: ftp://x/mcp}\n",
            "mcp:\n  servers:\n    a: {}\n",
            "mcp:\n  servers:\n    'a/b': {url: http://x/mcp}\n",
            "mcp:\n  servers:\n    a: {url: http://x/mcp, command: y}\n",
            "mcp:\n  servers:\n    a: {url: http://x/mcp, nope: 1}\n",
            "mcp:\n  servers:\n    a: {url: http://x/mcp}\n  max_message_bytes: 10\n",
        ] {
            assert!(parse(&format!("{up}{bad}")).is_err(), "{bad}");
        }
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

    /// Config depends on the components, never the reverse: a component owns its settings
    /// type and the loader fills it. Only the composition roots (the CLI and `server.rs`) may
    /// name this module.
    #[test]
    fn components_never_depend_on_the_config() {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        // the composition roots: the CLI, the server assembly, and the harness that builds
        // a gateway from a config the way the server does
        let allowed = [
            src.join("main.rs"),
            src.join("server.rs"),
            src.join("harness.rs"),
            src.join("lib.rs"),
        ];
        let mut offenders = Vec::new();
        for f in &files {
            if f.starts_with(src.join("config")) || allowed.contains(f) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.contains("crate::config") || line.contains("super::config") {
                    offenders.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(files.len() > 20, "walked {}", src.display());
        assert!(
            offenders.is_empty(),
            "components must not depend on the config (move the settings type into the component):\n{}",
            offenders.join("\n")
        );
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
