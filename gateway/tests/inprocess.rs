//! Request-path logic through `gateway::harness`: the gateway `server::build` makes, driven over
//! in-memory connections (from any client address), with mock-tgi as the backend where one is
//! needed. No process, no port for the gateway, no log scraping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use common::{MockTgi, dead_addr, repo_root};
use gateway::harness::{Harness, Request};
use serde_json::json;

const EMAIL: &str = "jane.doe@example.com";

fn hash(key: &str) -> String {
    gateway::keys::hash_hex(key)
}

/// A harness over `yaml` (written to a temp folder with a copy of the default policy's word
/// lists, so relative policy paths resolve).
fn harness(dir: &tempfile::TempDir, yaml: &str) -> Harness {
    let lex = dir.path().join("lexicons/toxicity");
    std::fs::create_dir_all(&lex).unwrap();
    for f in std::fs::read_dir(repo_root().join("policies/lexicons/toxicity")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, lex.join(f.file_name().unwrap())).unwrap();
    }
    Harness::from_yaml(&dir.path().join("gateway.yaml"), yaml).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_in_each_clients_shape_without_a_backend() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.yaml"),
        format!(
            "keys:\n  - {{id: k, sha256: {}, tenant: t}}\n",
            hash("good")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "name: p\nversion: 1\ninput:\n  email: placeholder\n",
    )
    .unwrap();
    let h = harness(
        &dir,
        &format!(
            "policy: policy.yaml\nauth: {{keys_file: keys.yaml}}\nupstreams: {{tgi: {{backends: ['{}'], health_check: {{enabled: false}}}}}}\n",
            dead_addr()
        ),
    );
    // OpenAI shape
    let r = h
        .send(Request::post("/v1/chat/completions").json("{}"))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-portcullis-error-source"), Some("gateway"));
    let v = r.json().unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing API key"),
        "{v}"
    );
    // Anthropic shape
    let r = h
        .send(Request::post("/v1/messages").bearer("wrong").json("{}"))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let v = r.json().unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    // TGI shape, unknown route
    let r = h.send(Request::get("/nope")).await.unwrap();
    assert_eq!(r.status, 404);
    // a valid key with a body the gateway cannot read: 422, and the backend is never tried
    let r = h
        .send(
            Request::post("/v1/chat/completions")
                .bearer("good")
                .json(r#"{"model":"m","messages":"not a list"}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    let m = h.metrics_text();
    assert!(
        m.contains(r#"portcullis_auth_failures_total{reason="missing"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"portcullis_auth_failures_total{reason="unknown"} 1"#),
        "{m}"
    );
}

/// The per-IP rate is per address and comes before routing and authentication: an address
/// that floods unknown paths is cut off, another address is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limits_hold_each_address_before_routing() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(
        &dir,
        &format!(
            "rate_limits: {{per_ip: {{rate: 1/m, burst: 3}}}}\nupstreams: {{tgi: {{backends: ['{}'], health_check: {{enabled: false}}}}}}\n",
            dead_addr()
        ),
    );
    let a = ip("203.0.113.7");
    for _ in 0..3 {
        let r = h.send(Request::get("/nope").from(a)).await.unwrap();
        assert_eq!(r.status, 404);
    }
    let r = h.send(Request::get("/nope").from(a)).await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-portcullis-limit"), Some("ip_rate"));
    assert!(r.header("retry-after").is_some());
    // the limit is per address (v6 too), and refuses before the route is even looked up
    let r = h
        .send(Request::get("/nope").from(ip("2001:db8::1")))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = h
        .send(Request::post("/generate").from(a).json("{}"))
        .await
        .unwrap();
    assert_eq!(r.status, 429);
}

/// Authentication, limits and the token reservation come before any rule or model work: a key
/// out of quota is refused without its prompt being evaluated, and the backend never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_out_of_quota_costs_no_guard_work() {
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.yaml"),
        format!(
            "keys:\n  - {{id: small, sha256: {}, tenant: t, limits: {{tokens_per_minute: 300}}}}\n",
            hash("small-key")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "name: p\nversion: 1\ninput:\n  email: placeholder\n",
    )
    .unwrap();
    let h = harness(
        &dir,
        &format!(
            "policy: policy.yaml\nauth: {{keys_file: keys.yaml}}\nupstreams: {{tgi: {{backends: ['{}'], health_check: {{enabled: false}}}}}}\n",
            mock.addr
        ),
    );
    let body = json!({"inputs": format!("mail {EMAIL}"), "parameters": {"max_new_tokens": 100}})
        .to_string();
    let r = h
        .send(
            Request::post("/generate")
                .bearer("small-key")
                .json(body.clone()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json().unwrap()["generated_text"],
        format!("mail {EMAIL}"),
        "restored in the answer"
    );
    let decisions = |h: &Harness| {
        h.metrics_text()
            .lines()
            .filter(|l| {
                l.starts_with("portcullis_guard_decisions_total{")
                    && l.contains("direction=\"input\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(decisions(&h), 1.0);
    // the next request's bound (its bytes + 300 generated) is past what is left this minute
    let big = json!({"inputs": format!("mail {EMAIL}"), "parameters": {"max_new_tokens": 300}})
        .to_string();
    let r = h
        .send(Request::post("/generate").bearer("small-key").json(big))
        .await
        .unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("x-portcullis-limit"), Some("key_tokens_minute"));
    assert_eq!(decisions(&h), 1.0, "the refused prompt was never evaluated");
    assert_eq!(mock.api_requests(), 1, "nor forwarded");
}

/// One identity: the key store resolves the caller once; its key's policy, its tenant's
/// policy and the route's are chosen from it, and a key the store does not know is nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_selects_the_policy() {
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.yaml"),
        format!(
            "keys:\n  - {{id: a, sha256: {}, tenant: acme}}\n  - {{id: b, sha256: {}, tenant: acme, policy: strict}}\n",
            hash("acme-key"),
            hash("acme-strict-key")
        ),
    )
    .unwrap();
    for (name, action) in [
        ("base", "redact"),
        ("strict", "block"),
        ("pseudo", "pseudonymize"),
    ] {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            format!("name: {name}\nversion: 1\ninput:\n  email: {action}\n"),
        )
        .unwrap();
    }
    let h = harness(
        &dir,
        &format!(
            "policy: base.yaml\nauth: {{keys_file: keys.yaml, anonymous_routes: [generate]}}\nguard:\n  policies: {{strict: strict.yaml, pseudo: pseudo.yaml}}\n  tenant_policies: {{acme: pseudo}}\nupstreams: {{tgi: {{backends: ['{}'], health_check: {{enabled: false}}}}}}\n",
            mock.addr
        ),
    );
    let body =
        json!({"inputs": format!("to {EMAIL}"), "parameters": {"max_new_tokens": 20}}).to_string();
    let send = |key: Option<&str>| {
        let mut req = Request::post("/generate").json(body.clone());
        if let Some(k) = key {
            req = req.bearer(k);
        }
        h.send(req)
    };
    let text = |r: gateway::harness::Response| {
        r.json().unwrap()["generated_text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(text(send(None).await.unwrap()), "to [EMAIL]");
    assert_eq!(text(send(Some("guessed")).await.unwrap()), "to [EMAIL]");
    let t = text(send(Some("acme-key")).await.unwrap());
    assert!(t.starts_with("to [EMAIL:"), "the tenant's policy: {t}");
    assert_eq!(send(Some("acme-strict-key")).await.unwrap().status, 403);
}
