//! Rate limits: the in-process and the Redis backends (against the real Redis), shared by two
//! limiters as two hub instances would share them, and 429 with `Retry-After` at the edge.

use tradecast_hub::config::BucketConfig;
use tradecast_hub::ratelimit::{Decision, MemoryLimiter, RateLimiter, RedisLimiter};

use crate::helpers::{Backend, TestHub, redis_url};
use crate::on_both;

on_both!(per_ip_and_per_account_limits, hub_with_redis_limits);

async fn exercise(a: &dyn RateLimiter, b: &dyn RateLimiter, key: &str) {
    let rule = BucketConfig { burst: 3, per_minute: 60 };
    let t0 = 1_000_000_000;
    // Three tokens, spent across both limiters when they share a store.
    assert_eq!(a.check(key, rule, t0).await.unwrap(), Decision::Allowed);
    assert_eq!(b.check(key, rule, t0).await.unwrap(), Decision::Allowed);
    assert_eq!(a.check(key, rule, t0).await.unwrap(), Decision::Allowed);
    assert_eq!(b.check(key, rule, t0).await.unwrap(), Decision::Limited { retry_after_ms: 1000 });
    assert_eq!(
        a.check(key, rule, t0 + 250).await.unwrap(),
        Decision::Limited { retry_after_ms: 750 }
    );
    assert_eq!(b.check(key, rule, t0 + 1000).await.unwrap(), Decision::Allowed);
    // Other keys are independent.
    assert_eq!(a.check(&format!("{key}-other"), rule, t0 + 1000).await.unwrap(), Decision::Allowed);
}

#[tokio::test]
async fn memory_backend() {
    let m = MemoryLimiter::new();
    exercise(&m, &m, "k").await;
}

#[tokio::test]
async fn redis_backend_is_shared_between_instances() {
    let prefix = format!("tc-test-{}:", tradecast_hub::ids::random_hex(6));
    let a =
        RedisLimiter::connect(&redis_url(), &prefix).await.expect("Redis at TRADECAST_TEST_REDIS");
    let b = RedisLimiter::connect(&redis_url(), &prefix).await.unwrap();
    exercise(&a, &b, "ip:127.0.0.1").await;
    // Keys expire by themselves once full again.
    let ttl: i64 = redis_cmd(&["PTTL", &format!("{prefix}ip:127.0.0.1")]).await;
    assert!(ttl > 0 && ttl <= 4000, "{ttl}");
}

async fn redis_cmd(args: &[&str]) -> i64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn redis_unreachable_is_an_error_not_a_hang() {
    let err = RedisLimiter::connect("redis://127.0.0.1:1", "x:")
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.to_string().contains("redis"), "{err}");
}

async fn per_ip_and_per_account_limits(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        c.rate_limits.per_ip = BucketConfig { burst: 8, per_minute: 60 };
        c.rate_limits.per_account = BucketConfig { burst: 3, per_minute: 60 };
    })
    .await;
    let owner = hub.owner().await; // login + /me: two IP tokens, one account token
    hub.get("/api/v1/me", Some(&owner.token)).await.ok(200);
    hub.get("/api/v1/me", Some(&owner.token)).await.ok(200);
    let r = hub.get("/api/v1/me", Some(&owner.token)).await;
    r.problem(429, "rate-limited");
    assert_eq!(r.headers["retry-after"], "1");
    // Unauthenticated routes count per IP only: 5 of 8 spent, three more pass, then 429.
    for _ in 0..3 {
        hub.get("/api/v1/auth/jwks.json", None).await.ok(200);
    }
    hub.get("/api/v1/auth/jwks.json", None).await.problem(429, "rate-limited");
    // /health and /metrics are outside /api and never limited.
    hub.get("/health", None).await.ok(200);
    hub.clock.advance_ms(10_000);
    hub.get("/api/v1/me", Some(&owner.token)).await.ok(200);
    hub.stop().await;
}

async fn hub_with_redis_limits(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        c.redis_url = Some(tradecast_hub::config::RedactedUrl::new(redis_url()));
        c.redis_key_prefix = format!("tc-test-{}:", tradecast_hub::ids::random_hex(6));
        c.rate_limits.per_ip = BucketConfig { burst: 2, per_minute: 1 };
    })
    .await;
    hub.get("/api/v1/auth/jwks.json", None).await.ok(200);
    hub.get("/api/v1/auth/jwks.json", None).await.ok(200);
    let r = hub.get("/api/v1/auth/jwks.json", None).await;
    r.problem(429, "rate-limited");
    assert_eq!(r.headers["retry-after"], "60");
    hub.stop().await;
}
