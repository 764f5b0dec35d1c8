//! Rate limits: token buckets behind the [`RateLimiter`] trait, in-process ([`MemoryLimiter`],
//! the default) or shared by every hub instance through Redis ([`RedisLimiter`]).
//!
//! Both backends run the same integer arithmetic: a bucket holds `burst × 60 000` units, a
//! request costs 60 000, and each millisecond refills `per_minute` units, so no rounding ever
//! leaks tokens. Time comes from the hub's clock. If Redis fails, requests are let through and
//! the failure is logged and counted (login brute force is throttled in SQL, not here).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::config::BucketConfig;

/// Units per token (one per millisecond of a minute).
const UNIT: i64 = 60_000;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A token was taken.
    Allowed,
    /// The bucket is empty; a token will be there in `retry_after_ms`.
    Limited {
        /// Wait before retrying.
        retry_after_ms: u64,
    },
}

/// A backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Redis is unreachable, refused the command or answered something unexpected.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis: no answer in time")]
    Timeout,
}

/// A boxed future (the trait is used as `dyn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Takes one token from the bucket `key` under `rule`.
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Takes a token if there is one.
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: BucketConfig,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Decision, LimitError>>;
}

/// The pure bucket step shared by the memory backend (and mirrored by the Lua script).
/// Returns (new units, decision).
pub fn step(units: Option<(i64, i64)>, rule: BucketConfig, now_ms: i64) -> ((i64, i64), Decision) {
    let cap = i64::from(rule.burst) * UNIT;
    let per_ms = i64::from(rule.per_minute.max(1));
    let (mut units, updated) = units.unwrap_or((cap, now_ms));
    let elapsed = (now_ms - updated).max(0);
    units = units.saturating_add(elapsed.saturating_mul(per_ms)).min(cap);
    if units >= UNIT {
        ((units - UNIT, now_ms), Decision::Allowed)
    } else {
        let wait = (UNIT - units + per_ms - 1) / per_ms;
        ((units, now_ms), Decision::Limited { retry_after_ms: u64::try_from(wait).unwrap_or(1) })
    }
}

/// Buckets in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    buckets: Mutex<HashMap<String, (i64, i64)>>,
}

/// Above this many buckets, full ones are dropped (a full bucket equals no bucket).
const MEMORY_MAX_BUCKETS: usize = 100_000;

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RateLimiter for MemoryLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: BucketConfig,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Decision, LimitError>> {
        // A poisoned lock only means another thread panicked mid-update; the map is still a
        // valid set of buckets.
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MEMORY_MAX_BUCKETS {
            let horizon = now_ms - 60_000 * 60;
            map.retain(|_, (_, updated)| *updated > horizon);
        }
        let (next, decision) = step(map.get(key).copied(), rule, now_ms);
        map.insert(key.to_string(), next);
        Box::pin(std::future::ready(Ok(decision)))
    }
}

const LUA_BUCKET: &str = r"
local cap = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local unit = 60000
local b = redis.call('HMGET', KEYS[1], 'u', 't')
local units = tonumber(b[1])
local updated = tonumber(b[2])
if units == nil or updated == nil then
  units = cap
  updated = now
end
local elapsed = now - updated
if elapsed < 0 then elapsed = 0 end
units = math.min(cap, units + elapsed * per_ms)
local allowed = 0
local wait = 0
if units >= unit then
  units = units - unit
  allowed = 1
else
  wait = math.floor((unit - units + per_ms - 1) / per_ms)
end
redis.call('HSET', KEYS[1], 'u', units, 't', now)
redis.call('PEXPIRE', KEYS[1], math.floor((cap - units) / per_ms) + 1000)
return {allowed, wait}
";

/// Buckets in Redis, shared by every hub instance using the same server and prefix.
///
/// One multiplexed connection through the `redis` crate's [`ConnectionManager`], which
/// reconnects by itself after an error; each check is one `EVALSHA` of [`LUA_BUCKET`] (loaded
/// on first use), so the read-modify-write of a bucket is atomic across instances.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("RedisLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// How long one Redis round trip may take before the check fails (and the request passes).
const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl RedisLimiter {
    /// Connects to `url` (`redis://[:password@]host[:port][/db]`); keys are
    /// `<prefix><bucket key>`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| LimitError::Timeout)??;
        Ok(RedisLimiter { conn, script: redis::Script::new(LUA_BUCKET), prefix: prefix.into() })
    }
}

impl RateLimiter for RedisLimiter {
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: BucketConfig,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Decision, LimitError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let cap = i64::from(rule.burst) * UNIT;
            let per_ms = i64::from(rule.per_minute.max(1));
            let mut invocation = self.script.key(format!("{}{key}", self.prefix));
            invocation.arg(cap).arg(per_ms).arg(now_ms);
            let (allowed, wait): (i64, i64) =
                tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut conn))
                    .await
                    .map_err(|_| LimitError::Timeout)??;
            Ok(match allowed {
                1 => Decision::Allowed,
                _ => Decision::Limited { retry_after_ms: u64::try_from(wait).unwrap_or(1) },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seq: &[(i64, Decision)], rule: BucketConfig) {
        let mut state = None;
        for (i, (t, expect)) in seq.iter().enumerate() {
            let (next, d) = step(state, rule, *t);
            assert_eq!(d, *expect, "step {i} at {t} ms");
            state = Some(next);
        }
    }

    #[test]
    fn bucket_arithmetic() {
        use Decision::*;
        let rule = BucketConfig { burst: 2, per_minute: 60 };
        check(
            &[
                (0, Allowed),
                (0, Allowed),
                (0, Limited { retry_after_ms: 1000 }),
                (400, Limited { retry_after_ms: 600 }),
                (1000, Allowed),
                (1000, Limited { retry_after_ms: 1000 }),
                (10_000, Allowed),
                (10_000, Allowed),
                (10_000, Limited { retry_after_ms: 1000 }),
            ],
            rule,
        );
        // Slow refill: 1 per minute, no rounding loss over many small steps.
        let rule = BucketConfig { burst: 1, per_minute: 1 };
        let mut state = None;
        let (s, d) = step(state, rule, 0);
        assert_eq!(d, Allowed);
        state = Some(s);
        for t in (1..60_000).step_by(7) {
            let (s, d) = step(state, rule, t);
            assert!(matches!(d, Limited { .. }), "{t}");
            state = Some(s);
        }
        assert_eq!(step(state, rule, 60_000).1, Allowed);
    }
}
