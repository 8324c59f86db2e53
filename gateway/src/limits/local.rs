//! In-process limits: request rate per key, per tenant and per client IP (`governor` token
//! buckets), LLM-token quotas per key and per tenant per minute and per day (reserve before
//! forwarding, reconcile with the real count after), and requests in flight per key.
//!
//! Token quotas are buckets that refill continuously (`per_minute` tokens over a minute, and
//! `per_day` over a day). Reservation takes every bucket involved under one lock, so concurrent
//! requests can never take a key or tenant past its quota; reconciliation gives back what the
//! answer did not use (or takes the overshoot, as a debt, when the backend counted more than
//! the bound).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use serde::Serialize;

use crate::keys::ApiKey;
use crate::limits::redis::BucketOp;

/// A request-rate bucket: `per_second` refill, `burst` size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    /// Requests per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// Validated limits of the gateway (from the config's `limits:`; keys may override per-key ones).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    /// Per API key.
    pub per_key: Option<RateSpec>,
    /// Per tenant.
    pub per_tenant: Option<RateSpec>,
    /// Per client IP.
    pub per_ip: Option<RateSpec>,
    /// LLM tokens per key per minute.
    pub key_tokens_per_minute: Option<u64>,
    /// LLM tokens per key per day.
    pub key_tokens_per_day: Option<u64>,
    /// LLM tokens per tenant per minute.
    pub tenant_tokens_per_minute: Option<u64>,
    /// LLM tokens per tenant per day.
    pub tenant_tokens_per_day: Option<u64>,
    /// Requests in flight per key.
    pub concurrency_per_key: Option<u32>,
    /// For a key with a token quota, a request that names no maximum of generated tokens
    /// (`max_new_tokens`, `max_tokens`, ...) gets this one written in and reserved (unless its
    /// upstream sets `max_total_tokens`).
    pub default_max_tokens: u32,
}

/// Who a bucket belongs to, for a refusal's message: built from the bucket's name (its id
/// is the name's tail from `id_at`) only when a refusal is written, never on the passing path.
fn who(label: &str, key: &str, id_at: usize) -> String {
    let id = key.get(id_at..).unwrap_or("");
    match label.split('_').next() {
        Some("ip") => "this client address".to_string(),
        Some("key") => format!("API key `{id}`"),
        _ => format!("tenant `{id}`"),
    }
}

/// A request-rate bucket, with what a refusal says.
#[derive(Debug, Clone)]
pub struct RateOp {
    /// The bucket.
    pub op: BucketOp,
    /// Refusal label.
    pub label: &'static str,
    /// Where the id starts in the bucket's name.
    id_at: usize,
    /// The spec.
    pub spec: RateSpec,
}

impl RateOp {
    /// The refusal when this bucket is empty for `wait_ms`.
    pub fn refusal(&self, wait_ms: u64) -> Refusal {
        let retry_after = wait_ms.div_ceil(1000).max(1);
        Refusal {
            limit: self.label,
            size: u64::from(self.spec.burst),
            remaining: 0,
            retry_after,
            message: format!(
                "the gateway refused the request: {} is over its request rate ({:.3}/s, burst {}); retry in {retry_after} s",
                who(self.label, &self.op.key, self.id_at),
                self.spec.per_second,
                self.spec.burst
            ),
        }
    }

    /// The headroom after taking, with `remaining` left.
    pub fn headroom(&self, remaining: f64) -> Headroom {
        let remaining = remaining.max(0.0).floor() as u64;
        Headroom {
            size: u64::from(self.spec.burst),
            remaining,
            reset: ((f64::from(self.spec.burst) - remaining as f64) / self.spec.per_second).ceil()
                as u64,
        }
    }
}

/// A token bucket, with what a refusal says.
#[derive(Debug, Clone)]
pub struct TokenOp {
    /// The bucket.
    pub op: BucketOp,
    /// Refusal label.
    pub label: &'static str,
    /// Where the id starts in the bucket's name.
    id_at: usize,
    /// `minute` or `day`.
    pub window: &'static str,
}

impl TokenOp {
    /// The refusal when the bucket holds `level` and `wait_ms` (< 0: never) is the wait.
    pub fn refusal(&self, level: f64, wait_ms: u64) -> Refusal {
        let n = self.op.cost as u64;
        let cap = self.op.cap as u64;
        let what = who(self.label, &self.op.key, self.id_at);
        let remaining = level.max(0.0) as u64;
        if n > cap {
            return Refusal {
                limit: self.label,
                size: cap,
                remaining,
                retry_after: 0,
                message: format!(
                    "the gateway refused the request: it needs {n} tokens (its prompt's bytes + max tokens), more than {what}'s whole quota of {cap} tokens per {}; lower max_tokens",
                    self.window
                ),
            };
        }
        let retry_after = wait_ms.div_ceil(1000).max(1);
        Refusal {
            limit: self.label,
            size: cap,
            remaining,
            retry_after,
            message: format!(
                "the gateway refused the request: {what} has {remaining} of its {cap} tokens per {} left and this request reserves {n}; retry in {retry_after} s",
                self.window
            ),
        }
    }
}

/// Why a request was refused, with what the 429 headers say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// Which limit: `key_rate`, `tenant_rate`, `ip_rate`, `key_tokens_minute`, ...
    pub limit: &'static str,
    /// The limit's size (`x-ratelimit-limit`).
    pub size: u64,
    /// What is left (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// Seconds until the request could pass (`Retry-After`, `x-ratelimit-reset`).
    pub retry_after: u64,
    /// A sentence for the client.
    pub message: String,
}

/// The tightest limit a passed request saw, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Headroom {
    /// Limit size.
    pub size: u64,
    /// Left after this request.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
/// Rate limiters by bucket name (`rate:key:<id>`, ...), with the spec each was made for.
/// Request-rate limiters by bucket name, with when each was last used.
type RateMap = HashMap<String, (RateSpec, Arc<Direct>, Instant)>;

/// How often the maps are swept for entries that hold nothing (a bucket that has refilled).
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// A continuously refilling token bucket (the in-process twin of the Redis script's).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    cap: f64,
    level: f64,
    per_ms: f64,
    last: Instant,
}

impl Bucket {
    /// The bucket for `op`, refilled to `now`; a bucket whose size changed (keys reloaded)
    /// restarts full at the new size.
    fn at<'m>(map: &'m mut HashMap<String, Bucket>, op: &BucketOp, now: Instant) -> &'m mut Bucket {
        let b = map.entry(op.key.clone()).or_insert(Bucket {
            cap: op.cap,
            level: op.cap,
            per_ms: op.per_ms,
            last: now,
        });
        if b.cap != op.cap || b.per_ms != op.per_ms {
            *b = Bucket {
                cap: op.cap,
                level: op.cap,
                per_ms: op.per_ms,
                last: now,
            };
        }
        let dt = now.saturating_duration_since(b.last).as_secs_f64() * 1000.0;
        b.level = (b.level + dt * b.per_ms).min(b.cap);
        b.last = now;
        b
    }

    fn wait_ms(&self, n: f64) -> u64 {
        ((n - self.level).max(0.0) / self.per_ms).ceil() as u64
    }
}

/// Tokens taken from buckets, to reconcile when the answer's real count is known.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// Tokens reserved.
    pub reserved: u64,
    /// The buckets they were taken from.
    pub buckets: Vec<BucketOp>,
    /// Whether the buckets are in the shared store (else in process).
    pub shared: bool,
}

/// Holds a key's in-flight slot; dropping it frees the slot.
#[derive(Debug)]
pub struct InFlightSlot(Arc<AtomicU32>);

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a passed request carries to its end.
#[derive(Debug, Default)]
pub struct Admission {
    /// For the `x-ratelimit-*` headers.
    pub headroom: Option<Headroom>,
    /// Tokens to reconcile.
    pub tokens: Option<Reservation>,
    /// The key's in-flight slot.
    pub slot: Option<InFlightSlot>,
}

/// The in-process limiter.
pub struct Limiter {
    cfg: LimitsConfig,
    rates: Mutex<RateMap>,
    tokens: Mutex<HashMap<String, Bucket>>,
    in_flight: Mutex<HashMap<String, Arc<AtomicU32>>>,
    clock: DefaultClock,
    pruned: Mutex<Instant>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("cfg", &self.cfg).finish()
    }
}

/// The state of one key's limits, for the admin API.
#[derive(Debug, Serialize)]
pub struct KeyState {
    /// Key id.
    pub key: String,
    /// Tenant.
    pub tenant: String,
    /// Requests in flight / allowed.
    pub in_flight: u32,
    /// Concurrency limit.
    pub concurrency: Option<u32>,
    /// The key's request rate (per second) and burst, if limited.
    pub rate: Option<(f64, u32)>,
    /// Tokens left this minute / day for the key.
    pub tokens_minute_remaining: Option<u64>,
    /// Tokens left today.
    pub tokens_day_remaining: Option<u64>,
}

impl Limiter {
    /// A limiter with these limits.
    pub fn new(cfg: LimitsConfig) -> Limiter {
        Limiter {
            cfg,
            rates: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
            pruned: Mutex::new(Instant::now()),
        }
    }

    /// Drop what holds no state any more, at most every [`PRUNE_EVERY`]: request-rate
    /// limiters idle long enough to have refilled their whole burst, token buckets back at
    /// their size, in-flight counters at zero. A flood from many addresses (or keys) leaves
    /// the maps as they were once it stops.
    pub fn prune(&self) {
        let now = Instant::now();
        {
            let mut last = self.pruned.lock();
            if now.duration_since(*last) < PRUNE_EVERY {
                return;
            }
            *last = now;
        }
        self.sweep(now);
    }

    fn sweep(&self, now: Instant) {
        self.rates.lock().retain(|_, (spec, _, used)| {
            let refill = f64::from(spec.burst.max(1)) / spec.per_second.max(1e-9);
            now.duration_since(*used).as_secs_f64() <= refill
        });
        self.tokens.lock().retain(|_, b| {
            let elapsed = now.duration_since(b.last).as_secs_f64() * 1000.0;
            b.level + elapsed * b.per_ms < b.cap
        });
        self.in_flight
            .lock()
            .retain(|_, c| c.load(Ordering::Acquire) > 0 || Arc::strong_count(c) > 1);
    }

    /// Entries held in the maps (request-rate limiters, token buckets, in-flight counters).
    pub fn entries(&self) -> (usize, usize, usize) {
        (
            self.rates.lock().len(),
            self.tokens.lock().len(),
            self.in_flight.lock().len(),
        )
    }

    /// The configured limits.
    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    /// The key's effective request rate (its own, else the config's per-key one).
    fn key_rate(&self, key: &ApiKey) -> Option<RateSpec> {
        match (&key.limits.rate, self.cfg.per_key) {
            (Some(r), base) => crate::keys::parse_rate(r).ok().map(|per_second| RateSpec {
                per_second,
                burst: key
                    .limits
                    .burst
                    .or(base.map(|b| b.burst))
                    .unwrap_or_else(|| per_second.ceil().max(1.0) as u32),
            }),
            (None, base) => base,
        }
    }

    fn limiter(&self, name: &str, spec: RateSpec) -> Arc<Direct> {
        let now = Instant::now();
        let mut m = self.rates.lock();
        if let Some((s, l, used)) = m.get_mut(name)
            && *s == spec
        {
            *used = now;
            return l.clone();
        }
        let period = Duration::from_secs_f64(1.0 / spec.per_second.max(1e-9));
        let burst = NonZeroU32::new(spec.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let l =
            Arc::new(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>());
        m.insert(name.to_string(), (spec, l.clone(), now));
        drop(m);
        self.prune();
        l
    }

    /// The per-IP request rate alone: checked first, before routing and authentication, so
    /// a flood is refused before it costs anything else.
    pub fn admit_ip(&self, ip: Option<IpAddr>) -> Result<Option<Headroom>, Refusal> {
        self.check_rates(self.ip_ops("", ip))
    }

    /// Take one request from each rate bucket, stopping at the first that refuses; the
    /// tightest headroom left.
    fn check_rates(&self, ops: Vec<RateOp>) -> Result<Option<Headroom>, Refusal> {
        let mut headroom = None;
        for o in ops {
            match self.limiter(&o.op.key, o.spec).check() {
                Ok(snap) => tighten(
                    &mut headroom,
                    o.headroom(f64::from(snap.remaining_burst_capacity())),
                ),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    return Err(o.refusal(wait.as_millis() as u64));
                }
            }
        }
        Ok(headroom)
    }

    /// The per-IP bucket, named under `prefix` (none when no per-IP limit is configured).
    pub fn ip_ops(&self, prefix: &str, ip: Option<IpAddr>) -> Vec<RateOp> {
        let (Some(spec), Some(ip)) = (self.cfg.per_ip, ip) else {
            return Vec::new();
        };
        let key = format!("{prefix}rate:ip:{ip}");
        vec![RateOp {
            id_at: prefix.len() + "rate:ip:".len(),
            op: BucketOp {
                key,
                cap: f64::from(spec.burst),
                per_ms: spec.per_second / 1000.0,
                cost: 1.0,
            },
            label: "ip_rate",
            spec,
        }]
    }

    /// Request-rate (per key and tenant; per IP when `ip` is given) and concurrency checks,
    /// before the body is read.
    pub fn admit(&self, key: Option<&ApiKey>, ip: Option<IpAddr>) -> Result<Admission, Refusal> {
        let headroom = self.check_rates(self.rate_ops("", key, ip))?;
        let slot = self.admit_concurrency(key)?;
        Ok(Admission {
            headroom,
            tokens: None,
            slot,
        })
    }

    /// The request-rate buckets of a request (cost 1 each), named under `prefix`: what
    /// [`Limiter::admit`] checks in process, and what the shared limiter sends to Redis.
    pub fn rate_ops(&self, prefix: &str, key: Option<&ApiKey>, ip: Option<IpAddr>) -> Vec<RateOp> {
        let mut v = self.ip_ops(prefix, ip);
        let mut push = |scope: &str, id: &dyn std::fmt::Display, spec: RateSpec, label| {
            let key = format!("{prefix}rate:{scope}:{id}");
            v.push(RateOp {
                id_at: prefix.len() + "rate:".len() + scope.len() + 1,
                op: BucketOp {
                    key,
                    cap: f64::from(spec.burst),
                    per_ms: spec.per_second / 1000.0,
                    cost: 1.0,
                },
                label,
                spec,
            });
        };
        if let Some(k) = key {
            if let Some(spec) = self.key_rate(k) {
                push("key", &k.id, spec, "key_rate");
            }
            if let Some(spec) = self.cfg.per_tenant {
                push("tenant", &k.tenant, spec, "tenant_rate");
            }
        }
        v
    }

    /// The token buckets a reservation of `n` tokens takes from (key and tenant, minute and
    /// day), named under `prefix`: in process and in Redis alike.
    pub fn token_ops(&self, prefix: &str, k: &ApiKey, n: u64) -> Vec<TokenOp> {
        let (km, kd) = self.key_quota(k);
        let (tm, td) = (
            self.cfg.tenant_tokens_per_minute,
            self.cfg.tenant_tokens_per_day,
        );
        let mut v = Vec::new();
        for (q, window, secs, scope, id, label) in [
            (km, "minute", 60.0, "key", &k.id, "key_tokens_minute"),
            (kd, "day", 86_400.0, "key", &k.id, "key_tokens_day"),
            (
                tm,
                "minute",
                60.0,
                "tenant",
                &k.tenant,
                "tenant_tokens_minute",
            ),
            (
                td,
                "day",
                86_400.0,
                "tenant",
                &k.tenant,
                "tenant_tokens_day",
            ),
        ] {
            if let Some(q) = q {
                let key = format!("{prefix}tokens:{window}:{scope}:{id}");
                v.push(TokenOp {
                    id_at: key.len() - id.len(),
                    op: BucketOp {
                        key,
                        cap: q as f64,
                        per_ms: q as f64 / (secs * 1000.0),
                        cost: n as f64,
                    },
                    label,
                    window,
                });
            }
        }
        v
    }

    /// The key's in-flight slot (always per replica).
    pub fn admit_concurrency(&self, key: Option<&ApiKey>) -> Result<Option<InFlightSlot>, Refusal> {
        let Some(k) = key else {
            return Ok(None);
        };
        let Some(max) = k.limits.concurrency.or(self.cfg.concurrency_per_key) else {
            return Ok(None);
        };
        let c = self
            .in_flight
            .lock()
            .entry(k.id.clone())
            .or_default()
            .clone();
        let now = c.fetch_add(1, Ordering::AcqRel);
        let slot = InFlightSlot(c); // dropped (and the count taken back) on refusal too
        if now >= max {
            return Err(Refusal {
                limit: "key_concurrency",
                size: u64::from(max),
                remaining: 0,
                retry_after: 1,
                message: format!(
                    "the gateway refused the request: API key `{}` already has {max} requests in flight",
                    k.id
                ),
            });
        }
        Ok(Some(slot))
    }

    fn key_quota(&self, k: &ApiKey) -> (Option<u64>, Option<u64>) {
        (
            k.limits
                .tokens_per_minute
                .or(self.cfg.key_tokens_per_minute),
            k.limits.tokens_per_day.or(self.cfg.key_tokens_per_day),
        )
    }

    /// Whether any token quota applies to this key.
    pub fn has_token_quota(&self, k: &ApiKey) -> bool {
        !self.token_ops("", k, 0).is_empty()
    }

    /// Reserve `n` LLM tokens for the key and its tenant, all or nothing.
    pub fn reserve_tokens(&self, k: &ApiKey, n: u64) -> Result<Reservation, Refusal> {
        let now = Instant::now();
        let ops = self.token_ops("", k, n);
        let mut map = self.tokens.lock();
        // check everything first, then take: all or nothing
        for o in &ops {
            let b = Bucket::at(&mut map, &o.op, now);
            if b.level < o.op.cost {
                return Err(o.refusal(b.level, b.wait_ms(o.op.cost)));
            }
        }
        for o in &ops {
            Bucket::at(&mut map, &o.op, now).level -= o.op.cost;
        }
        drop(map);
        self.prune();
        Ok(Reservation {
            reserved: n,
            buckets: ops.into_iter().map(|o| o.op).collect(),
            shared: false,
        })
    }

    /// The answer used `actual` tokens: give back the rest (or take the overshoot).
    pub fn reconcile(&self, r: &Reservation, actual: u64) {
        let delta = r.reserved as f64 - actual as f64;
        if delta == 0.0 || r.shared {
            return;
        }
        let now = Instant::now();
        let mut map = self.tokens.lock();
        for op in &r.buckets {
            let b = Bucket::at(&mut map, op, now);
            b.level = (b.level + delta).min(b.cap);
        }
    }

    /// One key's state (admin API).
    pub fn key_state(&self, k: &ApiKey) -> KeyState {
        let now = Instant::now();
        let in_flight = self
            .in_flight
            .lock()
            .get(&k.id)
            .map_or(0, |c| c.load(Ordering::Acquire));
        let mut map = self.tokens.lock();
        let mut left = |label: &str| {
            self.token_ops("", k, 0)
                .into_iter()
                .find(|o| o.label == label)
                .map(|o| Bucket::at(&mut map, &o.op, now).level.max(0.0) as u64)
        };
        KeyState {
            key: k.id.clone(),
            tenant: k.tenant.clone(),
            in_flight,
            concurrency: k.limits.concurrency.or(self.cfg.concurrency_per_key),
            rate: self.key_rate(k).map(|r| (r.per_second, r.burst)),
            tokens_minute_remaining: left("key_tokens_minute"),
            tokens_day_remaining: left("key_tokens_day"),
        }
    }
}

/// Keep the tighter of two headrooms (the one with less left, relative to its size).
pub fn tighten(h: &mut Option<Headroom>, new: Headroom) {
    let tighter = h.is_none_or(|old| {
        (new.remaining as f64 / new.size.max(1) as f64)
            < (old.remaining as f64 / old.size.max(1) as f64)
    });
    if tighter {
        *h = Some(new);
    }
}

/// Most tokens `bytes` bytes of text can make: one per byte (byte-level BPE and SentencePiece
/// with byte fallback never make more), so a reservation from it is never short.
pub fn token_bound(bytes: usize) -> u64 {
    bytes as u64
}

/// Tokens of `bytes` by the serving model's tokenizer (no special tokens added: the JSON
/// framing counted along stands for the chat template's markers); text that is not UTF-8, or a
/// tokenizer error, falls back to [`token_bound`].
pub fn token_count(tokenizer: &tokenizers::Tokenizer, bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| tokenizer.encode_fast(text, false).ok())
        .map_or_else(|| token_bound(bytes.len()), |e| e.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyLimits;

    fn key(id: &str, tenant: &str, limits: KeyLimits) -> ApiKey {
        ApiKey {
            id: id.into(),
            tenant: tenant.into(),
            policy: None,
            limits,
            expires: None,
            revoked: false,
        }
    }

    #[test]
    fn key_rate_refuses_past_the_burst() {
        let l = Limiter::new(LimitsConfig::default());
        let k = key(
            "a",
            "t",
            KeyLimits {
                rate: Some("1/h".into()),
                burst: Some(3),
                ..KeyLimits::default()
            },
        );
        for _ in 0..3 {
            l.admit(Some(&k), None).unwrap();
        }
        let r = l.admit(Some(&k), None).unwrap_err();
        assert_eq!(r.limit, "key_rate");
        assert!(r.retry_after > 1000, "{r:?}");
        assert!(r.message.contains("gateway refused"));
        assert!(r.message.contains("API key `a`"), "{}", r.message);
    }

    #[test]
    fn concurrency_slots_come_back() {
        let l = Limiter::new(LimitsConfig {
            concurrency_per_key: Some(2),
            ..LimitsConfig::default()
        });
        let k = key("a", "t", KeyLimits::default());
        let a = l.admit(Some(&k), None).unwrap();
        let b = l.admit(Some(&k), None).unwrap();
        assert_eq!(
            l.admit(Some(&k), None).unwrap_err().limit,
            "key_concurrency"
        );
        drop(a);
        let _c = l.admit(Some(&k), None).unwrap();
        drop(b);
        assert_eq!(l.key_state(&k).in_flight, 1);
    }

    #[test]
    fn maps_forget_what_holds_no_state() {
        let l = Limiter::new(LimitsConfig {
            per_ip: Some(RateSpec {
                per_second: 10.0,
                burst: 5,
            }),
            key_tokens_per_minute: Some(600),
            ..LimitsConfig::default()
        });
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            l.admit_ip(Some(ip)).unwrap();
        }
        let a = key("a", "t", KeyLimits::default());
        let r = l.reserve_tokens(&a, 100).unwrap();
        assert_eq!(l.entries().0, 1000);
        // not yet refilled: nothing is forgotten (the limits would reset)
        l.sweep(Instant::now());
        assert_eq!(l.entries().0, 1000);
        assert_eq!(l.entries().1, 1);
        // 5 tokens at 10/s refill in 0.5 s; 100 of 600/min in 10 s
        l.sweep(Instant::now() + Duration::from_secs(11));
        assert_eq!(l.entries(), (0, 0, 0));
        l.reconcile(&r, 10); // a late reconciliation recreates its bucket, full
        assert_eq!(l.entries().1, 1);
    }

    #[test]
    fn token_quota_reserve_and_reconcile() {
        let l = Limiter::new(LimitsConfig {
            key_tokens_per_day: Some(1000),
            tenant_tokens_per_day: Some(1500),
            ..LimitsConfig::default()
        });
        let a = key("a", "t", KeyLimits::default());
        let b = key("b", "t", KeyLimits::default());
        let r1 = l.reserve_tokens(&a, 800).unwrap();
        assert_eq!(
            l.reserve_tokens(&a, 300).unwrap_err().limit,
            "key_tokens_day"
        );
        l.reconcile(&r1, 100); // 700 back
        let _r2 = l.reserve_tokens(&a, 300).unwrap();
        // the tenant has 1500 - 100 - 300 = 1100 left; b takes 1000 of it
        assert_eq!(
            l.reserve_tokens(&b, 1001).unwrap_err().limit,
            "key_tokens_day"
        );
        let _r3 = l.reserve_tokens(&b, 1000).unwrap();
        // a still has 600 of its own, but the tenant only 100
        assert_eq!(
            l.reserve_tokens(&a, 200).unwrap_err().limit,
            "tenant_tokens_day"
        );
        let lb = Limiter::new(LimitsConfig {
            tenant_tokens_per_day: Some(1500),
            ..LimitsConfig::default()
        });
        lb.reserve_tokens(&a, 1000).unwrap();
        let e = lb.reserve_tokens(&b, 600).unwrap_err();
        assert_eq!(e.limit, "tenant_tokens_day");
        assert!(
            e.message
                .contains("tenant `t` has 500 of its 1500 tokens per day"),
            "{}",
            e.message
        );
        let big = lb.reserve_tokens(&b, 5000).unwrap_err();
        assert!(big.message.contains("whole quota"), "{}", big.message);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_quota() {
        let l = Arc::new(Limiter::new(LimitsConfig {
            key_tokens_per_day: Some(10_000),
            ..LimitsConfig::default()
        }));
        let k = Arc::new(key("a", "t", KeyLimits::default()));
        let ok = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, k, ok) = (l.clone(), k.clone(), ok.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if l.reserve_tokens(&k, 37).is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 10_000 / 37 = 270.27: the day bucket refills 0.116 tokens/s, far too slow to matter
        let n = ok.load(Ordering::Relaxed);
        assert!((270..=271).contains(&n), "{n}");
    }
}
