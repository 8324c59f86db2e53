//! Limits shared through a real `redis-server` (the Debian package `scripts/setup.sh`
//! installs), started here on a free port: two gateway processes share one limit; Redis killed
//! mid-test makes a fail-open gateway limit on its own and a fail-closed one answer 503.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use benches::redis::RedisServer;

use common::*;
use serde_json::{Value, json};

fn start_redis() -> RedisServer {
    RedisServer::start().expect("redis-server")
}

fn add_key(file: &Path, id: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "keys",
        "add",
        "--file",
        file.to_str().unwrap(),
        "--id",
        id,
        "--tenant",
        "acme",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(gateway_bin()).args(&args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn gateway(mock: &MockTgi, keys: &Path, redis: &str, on_error: &str) -> Gateway {
    let yaml = upstream_yaml(
        &[mock.addr],
        &format!(
            "auth:\n  keys_file: {}\nrate_limits:\n  key_tokens_per_minute: 1000\n  redis:\n    url: {redis}\n    timeout: 200ms\n    on_error: {on_error}\n",
            keys.display()
        ),
    );
    Gateway::start(&yaml).await
}

async fn generate(c: &reqwest::Client, gw: &Gateway, key: &str, max: u64) -> reqwest::Response {
    post_json(
        c,
        gw.url("/generate"),
        json!({"inputs": "hi", "parameters": {"max_new_tokens": max}}).to_string(),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await
}

#[tokio::test]
async fn two_gateways_share_one_limit() {
    let redis = start_redis();
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("keys.yaml");
    let rated = add_key(&kf, "rated", &["--rate", "3/h", "--burst", "3"]);
    let tokens = add_key(&kf, "tokens", &[]);
    let a = gateway(&mock, &kf, &redis.url(), "open").await;
    let b = gateway(&mock, &kf, &redis.url(), "open").await;
    let c = client();
    // three requests in all pass, whichever replica takes them; the fourth is refused by both
    let mut statuses = Vec::new();
    for gw in [&a, &b, &a, &b, &a] {
        statuses.push(generate(&c, gw, &rated, 5).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let r = generate(&c, &b, &rated, 5).await;
    assert_eq!(r.headers()["x-portcullis-limit"], "key_rate");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 100
    );
    // token quota (1000 per minute) shared too: 600 reserved on a, 600 more refused on b
    let slow = MockTgi::start(benches::mock::MockConfig {
        ttft: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let a2 = gateway(&slow, &kf, &redis.url(), "open").await;
    let c2 = c.clone();
    let url = a2.url("/generate");
    let tk = tokens.clone();
    let first = tokio::spawn(async move {
        post_json(
            &c2,
            url,
            json!({"inputs": "hi", "parameters": {"max_new_tokens": 600}}).to_string(),
            &[("authorization", &format!("Bearer {tk}"))],
        )
        .await
        .status()
        .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // the first is in flight, reserved
    let r = generate(&c, &b, &tokens, 600).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-portcullis-limit"], "key_tokens_minute");
    assert_eq!(first.await.unwrap(), 200);
    // once the first answer gave back its unused tokens, b can reserve again
    wait_until("tokens given back in redis", || {
        let (c, b, t) = (c.clone(), &b, tokens.clone());
        async move { generate(&c, b, &t, 600).await.status() == 200 }
    })
    .await;
    let m = a.settled_metrics().await;
    assert_eq!(metric_value(&m, "portcullis_limit_store_errors_total"), 0.0);
}

#[tokio::test]
async fn an_overshoot_the_backend_reports_is_charged_in_redis_too() {
    // The upstream claims a budget of 30 tokens per sequence, but the backend fills far more
    // (a misconfigured `max_total_tokens`): the reservation is short, and what the backend
    // counted past it is charged after the answer, even as a debt.
    let redis = start_redis();
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("keys.yaml");
    let key = add_key(&kf, "over", &[]);
    let yaml = upstream_yaml(
        &[mock.addr],
        &format!(
            "    max_total_tokens: 30\nauth:\n  keys_file: {}\nrate_limits:\n  key_tokens_per_day: 1000\n  redis:\n    url: {}\n    timeout: 200ms\n    on_error: closed\n",
            kf.display(),
            redis.url()
        ),
    );
    let gw = Gateway::start(&yaml).await;
    let c = client();
    let body = json!({"inputs": "a!".repeat(200), "parameters": {"details": true}}).to_string();
    let reserved = body.len() as f64; // max(30, body bytes)
    let r = post_json(
        &c,
        gw.url("/generate"),
        body,
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let used = v["details"]["generated_tokens"].as_f64().unwrap() + 400.0;
    assert!(used > reserved + 100.0, "the backend overshot: {used}");
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let bucket = "portcullis:tokens:day:key:over";
    let mut level = 0.0;
    for _ in 0..50 {
        let l: Option<String> = redis::cmd("HGET")
            .arg(bucket)
            .arg("l")
            .query_async(&mut conn)
            .await
            .unwrap();
        level = l.unwrap().parse::<f64>().unwrap();
        if level < 1000.0 - reserved - 100.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a day bucket refills 0.7 tokens per minute: the level is about 1000 - used (the
    // prompt counted from the headers or bounded by the body), not 1000 - reserved
    let charged = 1000.0 - level;
    assert!(
        charged > used - 2.0 && charged < used + (reserved - 400.0) + 2.0,
        "bucket at {level}; used {used}, reserved {reserved}"
    );
}

#[tokio::test]
async fn redis_down_fails_open_or_closed_as_configured() {
    let mut redis = start_redis();
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("keys.yaml");
    let key = add_key(&kf, "k", &["--rate", "100/s", "--burst", "100"]);
    let open = gateway(&mock, &kf, &redis.url(), "open").await;
    let closed = gateway(&mock, &kf, &redis.url(), "closed").await;
    let c = client();
    assert_eq!(generate(&c, &open, &key, 5).await.status(), 200);
    assert_eq!(generate(&c, &closed, &key, 5).await.status(), 200);
    redis.kill();
    // fail open: served, limited in process, counted
    for _ in 0..3 {
        assert_eq!(generate(&c, &open, &key, 5).await.status(), 200);
    }
    assert!(open.metric("portcullis_limit_store_errors_total").await >= 1.0);
    assert!(open.logs().contains("shared limit store (redis) failed"));
    // fail closed: 503 from the gateway, saying why
    let r = generate(&c, &closed, &key, 5).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "limiter_unavailable");
    assert!(v["error"].as_str().unwrap().contains("redis"));
}
