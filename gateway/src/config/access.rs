//! `auth:` and `rate_limits:`: the keys file, anonymous routes, request rates, token quotas,
//! concurrency and the Redis store. The runtime types belong to `crate::limits`.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Check;
use crate::limits::{LimitsConfig, RateSpec};
use crate::routes::Route;

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

fn default_max_tokens() -> u32 {
    1024
}

/// `auth:` and `rate_limits:` checked.
pub(super) struct Checked {
    pub keys_file: Option<PathBuf>,
    pub anonymous_routes: Vec<Route>,
    pub limits: LimitsConfig,
}

pub(super) fn check(cx: &mut Check<'_>) -> Checked {
    let c = cx.file();
    let keys_file = c.auth.keys_file.as_ref().map(|p| cx.base().join(p));
    if let Some(k) = &keys_file
        && let Err(e) = crate::keys::KeysFile::read(k)
    {
        cx.err("auth.keys_file", e.to_string());
    }
    let mut anonymous_routes = Vec::new();
    for (i, label) in c.auth.anonymous_routes.iter().enumerate() {
        match Route::by_label(label) {
            Some(r) => anonymous_routes.push(r),
            None => cx.err(
                &format!("auth.anonymous_routes[{i}]"),
                format!("no route `{label}`; routes are {}", super::route_labels()),
            ),
        }
    }
    let rl = &c.rate_limits;
    let mut rate = |field: &str, r: &Option<RateSection>| -> Option<RateSpec> {
        let r = r.as_ref()?;
        match crate::keys::parse_rate(&r.rate) {
            Ok(per_second) if r.burst != Some(0) => Some(RateSpec {
                per_second,
                burst: r.burst.unwrap_or_else(|| per_second.ceil().max(1.0) as u32),
            }),
            Ok(_) => {
                cx.err(
                    &format!("rate_limits.{field}.burst"),
                    "burst must be at least 1",
                );
                None
            }
            Err(e) => {
                cx.err(&format!("rate_limits.{field}.rate"), e);
                None
            }
        }
    };
    let limits = LimitsConfig {
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
            cx.err(
                &format!("rate_limits.{field}"),
                "must be at least 1 (leave it out for no limit)",
            );
        }
    }
    if let Some(r) = &rl.redis {
        if let Err(e) = redis::Client::open(r.url.as_str()) {
            cx.err("rate_limits.redis.url", format!("`{}`: {e}", r.url));
        }
        if r.timeout.is_zero() {
            cx.err("rate_limits.redis.timeout", "must be more than 0");
        }
    }
    Checked {
        keys_file,
        anonymous_routes,
        limits,
    }
}
