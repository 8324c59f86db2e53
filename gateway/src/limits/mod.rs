//! Limits: who may call how often and how much. One facade, [`Limits`], is what the request
//! path asks; behind it:
//!
//! * [`local`]: the in-process limiter (request-rate buckets per IP, key and tenant with
//!   `governor`; LLM-token quota buckets; requests in flight per key). Always present: it is
//!   the limiter of a single replica, and the fallback when Redis fails open.
//! * [`redis`]: the same buckets shared by every replica through one Lua script in Redis.
//!
//! The facade decides, once, where each check goes (Redis when configured and reachable, else
//! in process when `on_error: open`, else [`Decision::Unavailable`]), counts and logs store
//! failures, and settles reservations (in the background for Redis, so an answer is never held
//! for it). Concurrency limits stay per replica.
//!
//! ```text
//! admit_ip(ip)            per-IP rate, before routing and authentication
//! admit(key)              key and tenant rates, in-flight slot
//! reserve(key, n)         LLM tokens from the key's and tenant's quotas, all or nothing
//! settle(reservation, u)  give back what the answer did not use, charge an overshoot
//! ```

pub mod local;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;

pub use local::*;

use self::redis::{BucketOp, OnError, Outcome, RedisLimiter, StoreError};
use crate::keys::ApiKey;

/// What a limit check decided.
#[derive(Debug)]
pub enum Decision<T> {
    /// Passed; what it grants.
    Granted(T),
    /// A limit refused (429).
    Refused(Refusal),
    /// The shared store failed and the config says fail closed (503).
    Unavailable,
}

/// The request path's limits: in process, and in Redis when configured.
pub struct Limits {
    local: Arc<Limiter>,
    store: Option<Arc<RedisLimiter>>,
    store_errors: prometheus::IntCounter,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("local", &self.local)
            .field("store", &self.store.as_ref().map(|s| s.prefix.as_str()))
            .finish()
    }
}

impl Limits {
    /// Limits over `local`, shared through `store` when given; `store_errors` counts the
    /// store's failures (`portcullis_limit_store_errors_total`).
    pub fn new(
        local: Limiter,
        store: Option<Arc<RedisLimiter>>,
        store_errors: prometheus::IntCounter,
    ) -> Limits {
        Limits {
            local: Arc::new(local),
            store,
            store_errors,
        }
    }

    /// The in-process limiter (its configuration, key states for the admin API).
    pub fn local(&self) -> &Arc<Limiter> {
        &self.local
    }

    /// The configured limits.
    pub fn config(&self) -> &LimitsConfig {
        self.local.config()
    }

    /// Whether requests need a per-IP check.
    pub fn limits_ips(&self) -> bool {
        self.local.config().per_ip.is_some()
    }

    /// Whether the key has a token quota (no reservation needed otherwise).
    pub fn has_token_quota(&self, key: &ApiKey) -> bool {
        self.local.has_token_quota(key)
    }

    /// The per-IP request rate.
    pub async fn admit_ip(&self, ip: Option<IpAddr>) -> Decision<Option<Headroom>> {
        match &self.store {
            None => self.local.admit_ip(ip).into(),
            Some(store) => {
                let ops = self.local.ip_ops(&store.prefix, ip);
                match self.rates(store, &ops).await {
                    Ok(d) => d,
                    Err(()) => self.fallback(store, || self.local.admit_ip(ip).into()),
                }
            }
        }
    }

    /// The key's and tenant's request rates and the key's in-flight slot.
    pub async fn admit(&self, key: Option<&ApiKey>) -> Decision<Admission> {
        let Some(store) = &self.store else {
            return self.local.admit(key, None).into();
        };
        let ops = self.local.rate_ops(&store.prefix, key, None);
        let headroom = match self.rates(store, &ops).await {
            Ok(Decision::Granted(h)) => h,
            Ok(Decision::Refused(r)) => return Decision::Refused(r),
            Ok(Decision::Unavailable) => return Decision::Unavailable,
            Err(()) => return self.fallback(store, || self.local.admit(key, None).into()),
        };
        match self.local.admit_concurrency(key) {
            Ok(slot) => Decision::Granted(Admission {
                headroom,
                tokens: None,
                slot,
            }),
            Err(r) => Decision::Refused(r),
        }
    }

    /// Take `n` LLM tokens from the key's and its tenant's quotas, all or nothing.
    pub async fn reserve(&self, key: &ApiKey, n: u64) -> Decision<Reservation> {
        let Some(store) = &self.store else {
            return self.local.reserve_tokens(key, n).into();
        };
        let ops = self.local.token_ops(&store.prefix, key, n);
        let buckets: Vec<BucketOp> = ops.iter().map(|o| o.op.clone()).collect();
        match store.apply(&buckets).await {
            Ok(Outcome::Taken { .. }) => Decision::Granted(Reservation {
                reserved: n,
                buckets,
                shared: true,
            }),
            Ok(Outcome::Refused {
                index,
                remaining,
                wait_ms,
            }) => match ops.get(index) {
                Some(o) => Decision::Refused(o.refusal(remaining, wait_ms)),
                None => self.store_failed(store, &StoreError::Shape, || {
                    self.local.reserve_tokens(key, n).into()
                }),
            },
            Err(e) => self.store_failed(store, &e, || self.local.reserve_tokens(key, n).into()),
        }
    }

    /// The answer used `used` tokens of reservation `r`: give back the rest, or charge what
    /// the backend counted past it (a debt the refill pays off). For Redis this runs in the
    /// background: the answer is not held for it.
    pub fn settle(&self, r: &Reservation, used: u64) {
        if used == r.reserved {
            return;
        }
        let store = match &self.store {
            Some(s) if r.shared => s.clone(),
            _ => return self.local.reconcile(r, used),
        };
        let delta = r.reserved as f64 - used as f64;
        let ops: Vec<BucketOp> = r
            .buckets
            .iter()
            .map(|b| BucketOp {
                cost: -delta,
                ..b.clone()
            })
            .collect();
        let errors = self.store_errors.clone();
        tokio::spawn(async move {
            let done = if delta < 0.0 {
                store.charge(&ops).await
            } else {
                store.apply(&ops).await
            };
            if let Err(e) = done {
                errors.inc();
                tracing::warn!(error = %e, "shared limit store (redis) failed to settle a token reservation");
            }
        });
    }

    /// Request-rate buckets in Redis. `Err(())`: the store failed (counted and logged).
    async fn rates(
        &self,
        store: &RedisLimiter,
        ops: &[RateOp],
    ) -> Result<Decision<Option<Headroom>>, ()> {
        if ops.is_empty() {
            return Ok(Decision::Granted(None));
        }
        let buckets: Vec<BucketOp> = ops.iter().map(|o| o.op.clone()).collect();
        match store.apply(&buckets).await {
            Ok(Outcome::Taken {
                tightest,
                remaining,
            }) => Ok(Decision::Granted(
                ops.get(tightest).map(|o| o.headroom(remaining)),
            )),
            Ok(Outcome::Refused { index, wait_ms, .. }) => match ops.get(index) {
                Some(o) => Ok(Decision::Refused(o.refusal(wait_ms))),
                None => {
                    self.store_error(store, &StoreError::Shape);
                    Err(())
                }
            },
            Err(e) => {
                self.store_error(store, &e);
                Err(())
            }
        }
    }

    /// After a store failure: the in-process answer when failing open, else unavailable.
    fn fallback<T>(
        &self,
        store: &RedisLimiter,
        local: impl FnOnce() -> Decision<T>,
    ) -> Decision<T> {
        match store.on_error {
            OnError::Open => local(),
            OnError::Closed => Decision::Unavailable,
        }
    }

    fn store_failed<T>(
        &self,
        store: &RedisLimiter,
        e: &StoreError,
        local: impl FnOnce() -> Decision<T>,
    ) -> Decision<T> {
        self.store_error(store, e);
        self.fallback(store, local)
    }

    fn store_error(&self, store: &RedisLimiter, e: &StoreError) {
        self.store_errors.inc();
        tracing::warn!(
            error = %e,
            on_error = ?store.on_error,
            "shared limit store (redis) failed: {}",
            match store.on_error {
                OnError::Open => "this replica limits on its own until it is back",
                OnError::Closed => "refusing requests until it is back",
            }
        );
    }
}

impl<T> From<Result<T, Refusal>> for Decision<T> {
    fn from(r: Result<T, Refusal>) -> Self {
        match r {
            Ok(t) => Decision::Granted(t),
            Err(r) => Decision::Refused(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyLimits;

    fn key(limits: KeyLimits) -> ApiKey {
        ApiKey {
            id: "k".into(),
            tenant: "t".into(),
            policy: None,
            limits,
            expires: None,
            revoked: false,
        }
    }

    fn limits(store: Option<Arc<RedisLimiter>>) -> (Limits, prometheus::IntCounter) {
        let errors = prometheus::IntCounter::new("e", "e").unwrap();
        let cfg = LimitsConfig::default();
        (
            Limits::new(Limiter::new(cfg), store, errors.clone()),
            errors,
        )
    }

    fn quota() -> KeyLimits {
        KeyLimits {
            tokens_per_minute: Some(100),
            rate: Some("1/s".into()),
            burst: Some(1),
            ..KeyLimits::default()
        }
    }

    #[tokio::test]
    async fn in_process_reserve_settle_and_refuse() {
        let (l, _) = limits(None);
        let k = key(quota());
        let Decision::Granted(r) = l.reserve(&k, 80).await else {
            panic!("80 of 100 passes");
        };
        assert!(matches!(l.reserve(&k, 30).await, Decision::Refused(_)));
        l.settle(&r, 10); // 70 back
        assert!(matches!(l.reserve(&k, 30).await, Decision::Granted(_)));
        assert!(matches!(l.admit(Some(&k)).await, Decision::Granted(_)));
        let Decision::Refused(r) = l.admit(Some(&k)).await else {
            panic!("the second request in a second is over 1/s");
        };
        assert_eq!(r.limit, "key_rate");
    }

    /// Redis on a port nothing listens on: open falls back to the process, closed refuses;
    /// both count the failure.
    #[tokio::test]
    async fn a_dead_store_fails_as_configured() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}/0");
        let timeout = std::time::Duration::from_millis(200);
        let k = key(quota());
        let open = RedisLimiter::new(&url, "t:", timeout, OnError::Open).unwrap();
        let (l, errors) = limits(Some(open));
        assert!(matches!(l.reserve(&k, 50).await, Decision::Granted(r) if !r.shared));
        assert!(errors.get() >= 1);
        let closed = RedisLimiter::new(&url, "t:", timeout, OnError::Closed).unwrap();
        let (l, errors) = limits(Some(closed));
        assert!(matches!(l.reserve(&k, 50).await, Decision::Unavailable));
        assert!(matches!(l.admit(Some(&k)).await, Decision::Unavailable));
        assert!(errors.get() >= 2);
    }
}
