//! Who may call and how much, end to end: the real gateway binary with a keys file made by
//! `gateway keys add`, limits, the admin API and the audit trail, in front of the mock backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(gateway_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn add_key(file: &Path, id: &str, tenant: &str, extra: &[&str]) -> String {
    let f = file.to_str().unwrap();
    let mut args = vec![
        "keys", "add", "--file", f, "--id", id, "--tenant", tenant, "--quiet",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = cli(&args);
    assert!(ok, "keys add: {err}");
    out.trim().to_string()
}

struct Setup {
    gw: Gateway,
    keys: PathBuf,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(mock: &MockTgi, keys: &[(&str, &[&str])], extra: &str) -> (Setup, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("keys.yaml");
    let made: Vec<String> = keys
        .iter()
        .map(|(id, x)| add_key(&kf, id, "acme", x))
        .collect();
    let audit = dir.path().join("audit");
    // the key that signs the chain lives next to the folder, not in it
    std::fs::write(
        dir.path().join("audit.key"),
        "access-e2e-audit-key-0123456789",
    )
    .unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "name: access-e2e\nversion: 3\ninput:\n  email: placeholder\n",
    )
    .unwrap();
    // leading lines indented by four spaces belong to the upstream
    let upstream: String = extra
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{l}\n"))
        .collect();
    let extra = &extra[upstream.len()..];
    let yaml = upstream_yaml(
        &[mock.addr],
        &format!(
            "{upstream}policy: {}\nauth:\n  keys_file: {}\n  anonymous_routes: [health]\naudit:\n  dir: {}\n  on_full: block\n  key_file: {}\n  checkpoint_every: 2\n{extra}",
            policy.display(),
            kf.display(),
            audit.display(),
            dir.path().join("audit.key").display()
        ),
    );
    let gw = Gateway::start_env(&yaml, true, &[("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    (
        Setup {
            gw,
            keys: kf,
            audit,
            _dir: dir,
        },
        made,
    )
}

fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}

/// `GET` an `/admin/*` route with the admin token.
async fn admin_get(c: &reqwest::Client, s: &Setup, path: &str) -> Value {
    c.get(s.gw.admin_url(path))
        .header("authorization", bearer(ADMIN_TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn generate(
    c: &reqwest::Client,
    s: &Setup,
    key: Option<&str>,
    max: u64,
) -> reqwest::Response {
    let auth = key.map(bearer);
    let mut h: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        h.push(("authorization", a));
    }
    post_json(
        c,
        s.gw.url("/generate"),
        json!({"inputs": "hello there", "parameters": {"max_new_tokens": max}}).to_string(),
        &h,
    )
    .await
}

#[tokio::test]
async fn keys_are_required_checked_and_revocable() {
    let mock = MockTgi::echo().await;
    let (s, keys) = setup(
        &mock,
        &[
            ("alice", &[]),
            ("old", &["--expires", "2020-01-01T00:00:00Z"]),
        ],
        "",
    )
    .await;
    let c = client();
    // the keys file holds hashes only
    let text = std::fs::read_to_string(&s.keys).unwrap();
    assert!(!text.contains(&keys[0]));

    // missing key: 401 in the TGI shape, said to come from the gateway
    let r = generate(&c, &s, None, 5).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "invalid_api_key");
    assert!(v["error"].as_str().unwrap().contains("missing API key"));
    // wrong key on an OpenAI route: the OpenAI shape
    let r = post_json(
        &c,
        s.gw.url("/v1/chat/completions"),
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        &[("authorization", "Bearer pk-nope")],
    )
    .await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // expired key
    let r = generate(&c, &s, Some(&keys[1]), 5).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired"));
    // good key
    let r = generate(&c, &s, Some(&keys[0]), 5).await;
    assert_eq!(r.status(), 200);
    // anonymous route
    let r = c.get(s.gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // no request without a valid key reached the backend
    assert_eq!(mock.api_requests(), 1);

    // revoke, reload through the admin API (token required), refused
    let (ok, _, err) = cli(&[
        "keys",
        "revoke",
        "--file",
        s.keys.to_str().unwrap(),
        "--id",
        "alice",
    ]);
    assert!(ok, "{err}");
    let r = c
        .post(s.gw.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin API needs its token");
    let r = c
        .post(s.gw.admin_url("/admin/reload"))
        .header("authorization", bearer(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["keys"], 2);
    let r = generate(&c, &s, Some(&keys[0]), 5).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("revoked"));
    // the admin API is not on the public listener
    let r = c
        .post(s.gw.url("/admin/reload"))
        .header("authorization", bearer(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // listings: ids, never hashes
    let v: Value = admin_get(&c, &s, "/admin/keys").await;
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    assert!(!v.to_string().contains("sha256"));
    let v: Value = admin_get(&c, &s, "/admin/policies").await;
    assert_eq!(v["policies"][0]["name"], "access-e2e");
    assert_eq!(v["policies"][0]["version"], 3);
    let m = s.gw.settled_metrics().await;
    assert_eq!(
        metric_value(&m, "portcullis_auth_failures_total{reason=\"missing\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "portcullis_auth_failures_total{reason=\"revoked\"}"),
        1.0
    );
}

#[tokio::test]
async fn limits_refuse_with_429_and_the_rate_limit_headers() {
    let mock = MockTgi::echo().await;
    let (s, keys) = setup(
        &mock,
        &[
            ("rated", &["--rate", "2/h", "--burst", "2"]),
            ("quota", &[]),
        ],
        "rate_limits:\n  key_tokens_per_minute: 300\n",
    )
    .await;
    let c = client();
    // request rate: two pass (with headers), the third is refused until the bucket refills
    for i in 0..2 {
        let r = generate(&c, &s, Some(&keys[0]), 5).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "2");
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            (1 - i).to_string().as_str()
        );
    }
    let r = post_json(
        &c,
        s.gw.url("/v1/chat/completions"),
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
            .to_string(),
        &[("authorization", &bearer(&keys[0]))],
    )
    .await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(h["x-portcullis-error-source"], "gateway");
    assert_eq!(h["x-portcullis-limit"], "key_rate");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry > 1000,
        "2/h refills one request every 1800 s: {retry}"
    );
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway refused")
    );

    // token quota (300 per minute): a request reserving more than the whole quota is refused
    let r = generate(&c, &s, Some(&keys[1]), 400).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-portcullis-limit"], "key_tokens_minute");
    assert!(r.text().await.unwrap().contains("whole quota"));
    // about 260 reserved (body bytes + 200), about 35 used and the rest given back: the next
    // one fits again
    for _ in 0..3 {
        let r = generate(&c, &s, Some(&keys[1]), 200).await;
        assert_eq!(
            r.status(),
            200,
            "reconciliation returned the unused reservation"
        );
    }
    let st: Value = admin_get(&c, &s, "/admin/limits/quota").await;
    let left = st["tokens_minute_remaining"].as_u64().unwrap();
    assert!(left < 300 && left > 200, "{st}");
    assert_eq!(st["in_flight"], 0);
    let m = s.gw.settled_metrics().await;
    assert_eq!(
        metric_value(&m, "portcullis_limit_refusals_total{limit=\"key_rate\"}"),
        1.0
    );
    assert!(
        metric_value(
            &m,
            "portcullis_llm_tokens_total{kind=\"generated\",tenant=\"acme\"}"
        ) > 0.0
    );
}

#[tokio::test]
async fn a_thousand_concurrent_requests_never_exceed_the_quota() {
    // a slow backend keeps every admitted request in flight until all have been decided, so
    // nothing is given back early: admitted × reservation must fit in the quota
    let mock = MockTgi::start(benches::mock::MockConfig {
        ttft: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let (s, keys) = setup(
        &mock,
        &[("hot", &[])],
        "rate_limits:\n  key_tokens_per_day: 10000\n",
    )
    .await;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // each request reserves its prompt bound (one token per body byte) + 30
    let body = json!({"inputs": "hello there", "parameters": {"max_new_tokens": 30}}).to_string();
    let per = body.len() as u64 + 30;
    let auth = bearer(&keys[0]);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (c, url, body, auth) =
                (c.clone(), s.gw.url("/generate"), body.clone(), auth.clone());
            tokio::spawn(async move {
                c.post(url)
                    .header("content-type", "application/json")
                    .header("authorization", auth)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut ok = 0u64;
    let mut refused = 0u64;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + refused, 1000);
    assert!(ok * per <= 10_000, "{ok} admitted × {per} > 10000");
    assert!(
        ok >= 10_000 / per - 5,
        "the quota was used: {ok} admitted × {per}"
    );
    assert_eq!(
        mock.api_requests() as u64,
        ok,
        "refused requests never reached the backend"
    );
}

/// A request an abusive client might send: short tokens that beat a bytes/3 estimate, no
/// maximum (the backend would fill its budget), several sequences, streams, e-mails the input
/// policy turns into longer placeholders, and bounds in shapes that backends coerce.
fn abusive_body(rng: &mut u64) -> (&'static str, Value) {
    let mut next = |n: u64| {
        // xorshift64: deterministic, no dependency
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    let text = {
        // mostly one-token-per-byte text, where a bytes/3 estimate is 3x short
        let unit = ["a!", "a!", "a!", "é ", "a@b.co ", "hello "][next(6) as usize];
        unit.repeat(1 + next(1500) as usize)
    };
    let max = match next(8) {
        0 => Value::Null,
        1 => json!(1 + next(300)),
        2 => json!("100"), // coerced by pydantic backends: refused
        _ => json!(1 + next(4)),
    };
    let stream = next(2) == 0;
    match next(3) {
        0 => {
            let mut params = json!({"details": next(2) == 0});
            if !max.is_null() || next(2) == 0 {
                params["max_new_tokens"] = max;
            }
            if next(4) == 0 {
                params["best_of"] = json!(2);
                params["do_sample"] = json!(true);
            }
            let route = if stream {
                "/generate_stream"
            } else {
                "/generate"
            };
            (route, json!({"inputs": text, "parameters": params}))
        }
        1 => {
            let mut b = json!({"model": "m", "stream": stream, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": text},
            ]});
            if !max.is_null() {
                b["max_tokens"] = max;
            }
            if next(4) == 0 {
                b["n"] = json!(1 + next(3));
            }
            ("/v1/chat/completions", b)
        }
        _ => {
            let mut b = json!({"model": "m", "stream": stream, "prompt": text});
            if !max.is_null() {
                b["max_tokens"] = max;
            }
            ("/v1/completions", b)
        }
    }
}

#[tokio::test]
async fn admitted_usage_never_exceeds_the_quota_whatever_the_bodies() {
    // Property: for random bodies sent concurrently, the tokens the backend counts (prompt +
    // generated, by its own counters) for the admitted requests never exceed the quota. A slow
    // backend keeps them all in flight, so nothing is given back before all are decided.
    let mock = MockTgi::start(benches::mock::MockConfig {
        ttft: Duration::from_millis(1000),
        ..Default::default()
    })
    .await;
    const QUOTA: u64 = 30_000;
    let ids: Vec<String> = (0..3).map(|i| format!("wave{i}")).collect();
    let key_specs: Vec<(&str, &[&str])> = ids.iter().map(|i| (i.as_str(), &[][..])).collect();
    let (s, keys) = setup(
        &mock,
        &key_specs,
        &format!("rate_limits:\n  key_tokens_per_day: {QUOTA}\n"),
    )
    .await;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let backend_usage = || {
        let st = &mock.mock.stats;
        st.input_tokens.load(std::sync::atomic::Ordering::Relaxed)
            + st.generated_tokens
                .load(std::sync::atomic::Ordering::Relaxed)
    };
    for (wave, key) in keys.iter().enumerate() {
        let before = backend_usage();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (wave as u64 + 1);
        let auth = bearer(key);
        let tasks: Vec<_> = (0..150)
            .map(|_| {
                let (route, body) = abusive_body(&mut rng);
                let coerced = body.to_string().contains("\"100\"");
                let (c, url, auth) = (c.clone(), s.gw.url(route), auth.clone());
                tokio::spawn(async move {
                    let r = c
                        .post(url)
                        .header("content-type", "application/json")
                        .header("authorization", auth)
                        .body(body.to_string())
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let _ = r.bytes().await; // read streams to their end
                    (status, coerced)
                })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                (422, true) => {}
                (200, false) => ok += 1,
                (429, false) => refused += 1,
                // the backend refusing (prompt + max over its budget) uses nothing
                (422, false) => {}
                other => panic!("wave {wave}: unexpected {other:?}"),
            }
        }
        let used = backend_usage() - before;
        eprintln!("wave {wave}: {ok} admitted, {refused} refused, {used} tokens used of {QUOTA}");
        assert!(
            used <= QUOTA,
            "wave {wave}: the backend counted {used} tokens for {ok} admitted requests; quota {QUOTA}"
        );
        assert!(
            ok > 0 && refused > 0,
            "wave {wave}: the quota must bind ({ok} admitted, {refused} refused)"
        );
    }
}

#[tokio::test]
async fn the_audit_trail_chains_records_without_values_and_catches_edits() {
    let mock = MockTgi::echo().await;
    let (s, keys) = setup(&mock, &[("auditor", &[])], "").await;
    let c = client();
    let email = "jane.doe.audit@example.com";
    for i in 0..5 {
        let r = post_json(
            &c,
            s.gw.url("/generate"),
            json!({"inputs": format!("write to {email} please"), "parameters": {"max_new_tokens": 20}}).to_string(),
            &[("authorization", &bearer(&keys[0])), ("x-request-id", &format!("audit-{i}"))],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(
            r.text().await.unwrap().contains(email),
            "placeholder restored"
        );
    }
    // unidentified refusals are counted, not written one by one
    for _ in 0..3 {
        let r = generate(&c, &s, None, 5).await;
        assert_eq!(r.status(), 401);
    }
    s.gw.settled_metrics().await;
    let mut text = String::new();
    wait_until("genesis, five records and the refusals", || {
        text = audit_text(&s.audit);
        let done = text.contains("\"event\":\"refusals\"");
        async move { done }
    })
    .await;
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs[0]["event"], "genesis");
    assert_eq!(recs[0]["prev"], "0".repeat(64));
    let recs = &recs[1..];
    assert_eq!(recs[0]["key_id"], "auditor");
    assert_eq!(recs[0]["tenant"], "acme");
    assert_eq!(recs[0]["policy"], "access-e2e");
    assert_eq!(recs[0]["policy_version"], 3);
    assert_eq!(
        recs[0]["findings"],
        json!([{"type": "email", "action": "placeholder", "count": 1}])
    );
    assert!(recs[0]["tokens"]["generated"].as_u64().unwrap() > 0);
    assert_eq!(
        recs[0]["tokens"]["reported"], true,
        "TGI's x-generated-tokens header"
    );
    assert_eq!(recs[0]["limit"], "pass");
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[5]["event"], "refusals");
    assert_eq!(recs[5]["count"], 3);
    assert_eq!(
        recs[5]["refused"],
        json!([{"route": "generate", "status": 401, "count": 3}])
    );
    // nothing the gateway wrote holds the value or a key
    let metrics = s.gw.metrics().await;
    for (what, t) in [
        ("audit", &text),
        ("log", &s.gw.logs()),
        ("metrics", &metrics),
    ] {
        assert!(!t.contains(email), "{what} leaks the e-mail");
        assert!(!t.contains(&keys[0]), "{what} leaks the API key");
    }
    // verify with the key: whole, then edited
    let dir = s.audit.to_str().unwrap();
    let key = s.audit.with_file_name("audit.key");
    let key = key.to_str().unwrap();
    let (ok, out, _) = cli(&["audit", "verify", dir, "--key-file", key]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records"], 7);
    assert_eq!(v["authenticated"], true);
    assert_eq!(v["checkpoints"], 3);
    let file = std::fs::read_dir(&s.audit)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let edited =
        std::fs::read_to_string(&file)
            .unwrap()
            .replacen("\"status\":200", "\"status\":500", 1);
    std::fs::write(&file, edited).unwrap();
    let (ok, out, _) = cli(&["audit", "verify", dir, "--key-file", key]);
    assert!(!ok, "an edit must fail verification");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["first_error"]["line"], 2);
    let reason = v["first_error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("rewritten"),
        "the checkpoint at 2: {reason}"
    );
}

#[tokio::test]
async fn an_unidentified_flood_costs_counters_not_records_or_log_lines() {
    let mock = MockTgi::echo().await;
    let (s, keys) = setup(&mock, &[("tenant-a", &[])], "").await;
    let c = reqwest::Client::new();
    let before = s.gw.logs().lines().count();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let (c, gw_url) = (
            c.clone(),
            s.gw.url(if i % 2 == 0 { "/generate" } else { "/nope" }),
        );
        tasks.push(tokio::spawn(async move {
            c.post(gw_url)
                .header("content-type", "application/json")
                .header("authorization", "Bearer pk-not-a-key")
                .body("{}")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
        if tasks.len() >= 64 {
            for t in tasks.drain(..) {
                assert!(matches!(t.await.unwrap(), 401 | 404));
            }
        }
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), 401 | 404));
    }
    // an identified request in the middle of it is written in full
    let r = generate(&c, &s, Some(&keys[0]), 5).await;
    assert_eq!(r.status(), 200);
    let secs = started.elapsed().as_secs() + 1;
    let mut text = String::new();
    wait_until("the refusals record", || {
        text = audit_text(&s.audit);
        let n: u64 = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["event"] == "refusals")
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        async move { n == 2000 }
    })
    .await;
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        recs.len() <= 2 + 1 + secs as usize,
        "genesis, the identified request and a refusals record per 5 s: {} records",
        recs.len()
    );
    assert!(recs.iter().any(|r| r["key_id"] == "tenant-a"));
    let logged = s.gw.logs().lines().count() - before;
    assert!(
        logged <= 2 * secs as usize + 5,
        "{logged} log lines in {secs} s for 2000 refusals"
    );
    let (ok, out, _) = cli(&["audit", "verify", s.audit.to_str().unwrap()]);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn the_per_ip_limit_comes_before_routing_and_authentication() {
    let mock = MockTgi::echo().await;
    let (s, _keys) = setup(
        &mock,
        &[("someone", &[])],
        "rate_limits:\n  per_ip: {rate: 1/h, burst: 3}\n",
    )
    .await;
    let c = client();
    let mut statuses = Vec::new();
    for path in ["/nope", "/generate", "/v1/nope", "/nope", "/generate"] {
        let r = post_json(&c, s.gw.url(path), "{}", &[]).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["x-portcullis-limit"], "ip_rate");
        }
    }
    // three unknown-path or unauthenticated requests spend the burst; then even an unknown
    // path is refused by the limit, not routed
    assert_eq!(statuses, [404, 401, 404, 429, 429]);
}

#[tokio::test]
async fn with_the_serving_models_tokenizer_the_prompt_reserves_its_tokens_not_its_bytes() {
    let mock = MockTgi::echo().await;
    let prose = "Please summarise the quarterly report for the board meeting. ".repeat(10);
    let body = json!({"inputs": prose, "parameters": {"max_new_tokens": 10}}).to_string();
    assert!(body.len() > 600);
    // a quota smaller than the body's bytes, larger than its tokens
    for (tokenizer, status) in [(false, 429), (true, 200)] {
        let extra = if tokenizer {
            format!(
                "    tokenizer: {}\nrate_limits:\n  key_tokens_per_day: 400\n",
                repo_root().join("models/guard/1/tokenizer.json").display()
            )
        } else {
            "rate_limits:\n  key_tokens_per_day: 400\n".to_string()
        };
        let (s, keys) = setup(&mock, &[("k", &[])], &extra).await;
        let r = post_json(
            &client(),
            s.gw.url("/generate"),
            body.clone(),
            &[("authorization", &bearer(&keys[0]))],
        )
        .await;
        assert_eq!(r.status(), status, "tokenizer: {tokenizer}");
    }
}
