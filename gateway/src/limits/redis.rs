//! Limits shared by several gateway replicas through Redis.
//!
//! One Lua script does every check: it refills and takes from one or more token buckets
//! atomically (all or nothing) in a single round trip, so request-rate buckets (cost 1),
//! token-quota reservations (cost n) and reconciliations (negative cost: a refund, capped at
//! the bucket's size; or a forced charge of what the backend counted past the reservation,
//! which may leave a bucket in debt) are all the same call. Buckets are Redis hashes `{l: level, t: ms}` with
//! a TTL of twice their refill time, so idle keys disappear. Time comes from Redis (`TIME`),
//! so replicas with skewed clocks still agree.
//!
//! When Redis cannot be reached (or answers slower than `timeout`), the caller falls back to
//! its in-process limiter (`on_error: open`) or refuses with 503 (`closed`); the
//! `portcullis_limit_store_errors_total` counter and a log line say so. Connection attempts
//! are spaced by one second so a dead Redis costs one timeout per second, not per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// What happens when Redis is unreachable.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Each replica limits on its own (in-process buckets) until Redis is back.
    Open,
    /// Refuse requests (503) until Redis is back.
    Closed,
}

/// One bucket of a check: its Redis key, size, refill per millisecond, and what to take.
#[derive(Debug, Clone)]
pub struct BucketOp {
    /// Redis key (prefix included).
    pub key: String,
    /// Bucket size.
    pub cap: f64,
    /// Refill per millisecond.
    pub per_ms: f64,
    /// Taken (negative: given back).
    pub cost: f64,
}

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Every bucket had room; the smallest level left (after taking) and its bucket's index.
    Taken {
        /// Index of the tightest bucket.
        tightest: usize,
        /// Its level after taking.
        remaining: f64,
    },
    /// Bucket `index` did not have room: its level and the wait until it would.
    Refused {
        /// Index of the refusing bucket.
        index: usize,
        /// Its level.
        remaining: f64,
        /// Milliseconds until it could pass.
        wait_ms: u64,
    },
}

const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local levels = {}
for i = 1, n do
  local cap = tonumber(ARGV[(i - 1) * 3 + 1])
  local rate = tonumber(ARGV[(i - 1) * 3 + 2])
  local cost = tonumber(ARGV[(i - 1) * 3 + 3])
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = tonumber(v[1])
  local last = tonumber(v[2])
  if level == nil then level = cap; last = now end
  level = math.min(cap, level + math.max(0, now - last) * rate)
  if cost > 0 and level < cost and ARGV[n * 3 + 1] ~= 'force' then
    local wait = -1
    if cost <= cap then wait = math.ceil((cost - level) / rate) end
    return {0, i - 1, tostring(level), wait}
  end
  levels[i] = level
end
local tight, tight_frac, tight_level = 0, 2, 0
for i = 1, n do
  local cap = tonumber(ARGV[(i - 1) * 3 + 1])
  local rate = tonumber(ARGV[(i - 1) * 3 + 2])
  local cost = tonumber(ARGV[(i - 1) * 3 + 3])
  local level = math.min(cap, levels[i] - cost)
  redis.call('HSET', KEYS[i], 'l', tostring(level), 't', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap / rate * 2) + 1000)
  if level / cap < tight_frac then tight, tight_frac, tight_level = i - 1, level / cap, level end
end
return {1, tight, tostring(tight_level), 0}
"#;

/// The Redis-backed limiter.
pub struct RedisLimiter {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    last_attempt: Mutex<Option<Instant>>,
    script: redis::Script,
    /// Key prefix.
    pub prefix: String,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Fail open or closed.
    pub on_error: OnError,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("on_error", &self.on_error)
            .finish()
    }
}

/// Why a shared check did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Waiting between connection attempts.
    #[error("redis is unreachable (next connection attempt within a second)")]
    Backoff,
    /// The script's answer had an unexpected shape.
    #[error("unexpected answer from the limit script")]
    Shape,
}

impl RedisLimiter {
    /// A limiter on `url` (`redis://host:port/db`); connects on first use.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        on_error: OnError,
    ) -> Result<Arc<RedisLimiter>, StoreError> {
        Ok(Arc::new(RedisLimiter {
            client: redis::Client::open(url)?,
            conn: OnceCell::new(),
            last_attempt: Mutex::new(None),
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_string(),
            timeout,
            on_error,
        }))
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        {
            let mut last = self.last_attempt.lock();
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Err(StoreError::Backoff);
            }
            *last = Some(Instant::now());
        }
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.timeout))??;
        let _ = self.conn.set(c.clone());
        Ok(c)
    }

    /// Run the bucket script on `ops`, all or nothing, in one round trip.
    pub async fn apply(&self, ops: &[BucketOp]) -> Result<Outcome, StoreError> {
        self.run(ops, "check").await
    }

    /// Take `ops`' costs even where a bucket has too little left (its level goes negative:
    /// a debt the refill pays off before the next request passes). For usage the backend
    /// reported after the fact.
    pub async fn charge(&self, ops: &[BucketOp]) -> Result<Outcome, StoreError> {
        self.run(ops, "force").await
    }

    async fn run(&self, ops: &[BucketOp], mode: &str) -> Result<Outcome, StoreError> {
        let mut conn = self.connection().await?;
        let mut inv = self.script.prepare_invoke();
        for op in ops {
            inv.key(&op.key).arg(op.cap).arg(op.per_ms).arg(op.cost);
        }
        inv.arg(mode);
        let fut = inv.invoke_async::<(i64, i64, String, i64)>(&mut conn);
        let (ok, idx, level, wait) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        let idx = usize::try_from(idx).map_err(|_| StoreError::Shape)?;
        let remaining: f64 = level.parse().map_err(|_| StoreError::Shape)?;
        Ok(if ok == 1 {
            Outcome::Taken {
                tightest: idx,
                remaining,
            }
        } else {
            Outcome::Refused {
                index: idx,
                remaining,
                wait_ms: u64::try_from(wait).unwrap_or(u64::MAX),
            }
        })
    }
}
