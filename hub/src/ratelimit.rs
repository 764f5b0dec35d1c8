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
    /// Redis is unreachable or the connection failed.
    #[error("redis: {0}")]
    Io(#[from] std::io::Error),
    /// Redis answered with an error.
    #[error("redis error reply: {0}")]
    Server(String),
    /// Redis answered something this client does not expect.
    #[error("redis protocol: {0}")]
    Protocol(String),
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
/// Speaks RESP2 itself over one TCP connection (reconnected after any error): the `redis`
/// crate pulls a BSL-licensed hash crate that our licence policy refuses, and the limiter
/// needs exactly two commands (`AUTH`/`SELECT` at connect, `EVAL` per check).
pub struct RedisLimiter {
    target: RedisTarget,
    conn: tokio::sync::Mutex<Option<tokio::io::BufStream<tokio::net::TcpStream>>>,
    prefix: String,
}

#[derive(Clone)]
struct RedisTarget {
    addr: String,
    password: Option<String>,
    db: u32,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("addr", &self.target.addr)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A RESP reply (only what the limiter needs).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// Bounds on what a server may send us.
const RESP_MAX_LINE: usize = 4096;
const RESP_MAX_BULK: usize = 64 * 1024;
const RESP_MAX_ARRAY: usize = 64;

fn parse_redis_url(url: &str) -> Result<RedisTarget, LimitError> {
    let bad = |m: &str| LimitError::Protocol(format!("redis_url: {m}"));
    let rest = url.strip_prefix("redis://").ok_or_else(|| bad("only redis:// is supported"))?;
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (hostport, db) = match hostpart.split_once('/') {
        Some((h, d)) if !d.is_empty() => {
            (h, d.parse::<u32>().map_err(|_| bad("database must be a number"))?)
        }
        Some((h, _)) => (h, 0),
        None => (hostpart, 0),
    };
    if hostport.is_empty() {
        return Err(bad("no host"));
    }
    let addr = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    let password = auth
        .map(|a| a.split_once(':').map(|(_, p)| p).unwrap_or(a).to_string())
        .filter(|p| !p.is_empty());
    Ok(RedisTarget { addr, password, db })
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, LimitError> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut buf = Vec::new();
    let n = (&mut *r).take(RESP_MAX_LINE as u64).read_until(b'\n', &mut buf).await?;
    if n == 0 || !buf.ends_with(b"\r\n") {
        return Err(LimitError::Protocol("truncated or overlong line".into()));
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| LimitError::Protocol("non-UTF-8 line".into()))
}

fn read_reply<'a, R: tokio::io::AsyncBufRead + Unpin + Send>(
    r: &'a mut R,
    depth: u8,
) -> BoxFuture<'a, Result<Reply, LimitError>> {
    Box::pin(async move {
        use tokio::io::AsyncReadExt;
        let line = read_line(r).await?;
        // `get` rather than slicing: a first byte that starts a multi-byte character is an
        // error, never a panic.
        let (Some(tag), Some(rest)) = (line.get(..1), line.get(1..)) else {
            return Err(LimitError::Protocol("malformed reply line".into()));
        };
        let num = || {
            rest.parse::<i64>().map_err(|_| LimitError::Protocol(format!("bad number {rest:?}")))
        };
        match tag {
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => Err(LimitError::Server(rest.to_string())),
            ":" => Ok(Reply::Int(num()?)),
            "$" => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > RESP_MAX_BULK {
                    return Err(LimitError::Protocol("bulk reply too large".into()));
                }
                let mut data = vec![0u8; n + 2];
                r.read_exact(&mut data).await?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > RESP_MAX_ARRAY || depth > 4 {
                    return Err(LimitError::Protocol("array reply too large or deep".into()));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(read_reply(r, depth + 1).await?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(LimitError::Protocol(format!("unknown reply type {tag:?}"))),
        }
    })
}

fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn command(
    conn: &mut tokio::io::BufStream<tokio::net::TcpStream>,
    args: &[&[u8]],
) -> Result<Reply, LimitError> {
    use tokio::io::AsyncWriteExt;
    conn.write_all(&encode_command(args)).await?;
    conn.flush().await?;
    read_reply(conn, 0).await
}

impl RedisLimiter {
    /// Connects to `url` (`redis://[:password@]host[:port][/db]`); keys are
    /// `<prefix><bucket key>`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        let target = parse_redis_url(url)?;
        let limiter =
            RedisLimiter { target, conn: tokio::sync::Mutex::new(None), prefix: prefix.into() };
        let conn = limiter.open().await?;
        *limiter.conn.lock().await = Some(conn);
        Ok(limiter)
    }

    async fn open(&self) -> Result<tokio::io::BufStream<tokio::net::TcpStream>, LimitError> {
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::TcpStream::connect(&self.target.addr),
        )
        .await
        .map_err(|_| LimitError::Protocol("connect timed out".into()))??;
        stream.set_nodelay(true)?;
        let mut conn = tokio::io::BufStream::new(stream);
        if let Some(p) = &self.target.password {
            command(&mut conn, &[b"AUTH", p.as_bytes()]).await?;
        }
        if self.target.db != 0 {
            command(&mut conn, &[b"SELECT", self.target.db.to_string().as_bytes()]).await?;
        }
        Ok(conn)
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
            let mut guard = self.conn.lock().await;
            let conn = match guard.as_mut() {
                Some(c) => c,
                None => guard.insert(self.open().await?),
            };
            let full_key = format!("{}{key}", self.prefix);
            let cap = (i64::from(rule.burst) * UNIT).to_string();
            let per_ms = i64::from(rule.per_minute.max(1)).to_string();
            let now = now_ms.to_string();
            let args: [&[u8]; 7] = [
                b"EVAL",
                LUA_BUCKET.as_bytes(),
                b"1",
                full_key.as_bytes(),
                cap.as_bytes(),
                per_ms.as_bytes(),
                now.as_bytes(),
            ];
            let reply =
                tokio::time::timeout(std::time::Duration::from_secs(2), command(conn, &args))
                    .await
                    .unwrap_or_else(|_| Err(LimitError::Protocol("redis timed out".into())));
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    // The stream may be mid-reply: start over on the next check.
                    *guard = None;
                    return Err(e);
                }
            };
            match reply {
                Reply::Array(items) => match items.as_slice() {
                    [Reply::Int(1), Reply::Int(_)] => Ok(Decision::Allowed),
                    [Reply::Int(0), Reply::Int(wait)] => {
                        Ok(Decision::Limited { retry_after_ms: u64::try_from(*wait).unwrap_or(1) })
                    }
                    _ => Err(LimitError::Protocol("unexpected EVAL reply".into())),
                },
                _ => Err(LimitError::Protocol("unexpected EVAL reply".into())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let t = parse_redis_url("redis://127.0.0.1:6379").unwrap();
        assert_eq!((t.addr.as_str(), t.password.as_deref(), t.db), ("127.0.0.1:6379", None, 0));
        let t = parse_redis_url("redis://:pw@cache/3").unwrap();
        assert_eq!((t.addr.as_str(), t.password.as_deref(), t.db), ("cache:6379", Some("pw"), 3));
        assert!(parse_redis_url("rediss://cache").is_err());
        assert!(parse_redis_url("redis:///1").is_err());
    }

    #[tokio::test]
    async fn resp_replies_are_bounded() {
        async fn parse(bytes: &[u8]) -> Result<Reply, LimitError> {
            let mut r = tokio::io::BufReader::new(bytes);
            read_reply(&mut r, 0).await
        }
        assert_eq!(
            parse(b"*2\r\n:1\r\n:0\r\n").await.unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Int(0)])
        );
        assert_eq!(parse(b"$3\r\nabc\r\n").await.unwrap(), Reply::Bulk(Some(b"abc".to_vec())));
        assert!(matches!(parse(b"-ERR nope\r\n").await, Err(LimitError::Server(_))));
        assert!(parse(b"*100000\r\n").await.is_err());
        assert!(parse(b"$99999999\r\n").await.is_err());
        assert!(parse(b":12").await.is_err());
        assert!(parse(b"?\r\n").await.is_err());
        assert!(parse(b"").await.is_err());
        assert!(parse("é1\r\n".as_bytes()).await.is_err());
        assert!(parse(b"\r\n").await.is_err());
    }

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
