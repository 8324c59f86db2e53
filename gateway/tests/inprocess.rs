//! Request-path logic through `gateway::harness`: the gateway `server::build` makes, driven over
//! in-memory connections (from any client address), with mock-tgi as the backend where one is
//! needed. No process, no port for the gateway, no log scraping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{MockTgi, dead_addr};
use gateway::harness::{Harness, Request};
use serde_json::json;

const EMAIL: &str = "jane.doe@example.com";

/// A keys file: one entry per (id, key, the entry's other fields).
fn keys(entries: &[(&str, &str, &str)]) -> String {
    let mut out = "keys:\n".to_string();
    for (id, key, rest) in entries {
        let sha = gateway::keys::hash_hex(key);
        out.push_str(&format!("  - {{id: {id}, sha256: {sha}, {rest}}}\n"));
    }
    out
}

/// A policy that does `action` with e-mail addresses in prompts.
fn email_policy(name: &str, action: &str) -> String {
    format!("name: {name}\nversion: 1\ninput:\n  email: {action}\n")
}

/// A harness over `config` and one upstream at `backend`, with `files` (keys file, policies)
/// written beside the config first so its relative paths resolve.
fn harness(
    dir: &tempfile::TempDir,
    files: &[(&str, &str)],
    config: &str,
    backend: SocketAddr,
) -> Harness {
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let yaml = format!(
        "{config}\nupstreams: {{tgi: {{backends: ['{backend}'], health_check: {{enabled: false}}}}}}\n"
    );
    Harness::from_yaml(&dir.path().join("gateway.yaml"), &yaml).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_in_each_clients_shape_without_a_backend() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(
        &dir,
        &[
            ("keys.yaml", &keys(&[("k", "good", "tenant: t")])),
            ("policy.yaml", &email_policy("p", "placeholder")),
        ],
        "policy: policy.yaml\nauth: {keys_file: keys.yaml}",
        dead_addr(),
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
        &[],
        "rate_limits: {per_ip: {rate: 1/m, burst: 3}}",
        dead_addr(),
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
    let h = harness(
        &dir,
        &[
            (
                "keys.yaml",
                &keys(&[(
                    "small",
                    "small-key",
                    "tenant: t, limits: {tokens_per_minute: 300}",
                )]),
            ),
            ("policy.yaml", &email_policy("p", "placeholder")),
        ],
        "policy: policy.yaml\nauth: {keys_file: keys.yaml}",
        mock.addr,
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
    let h = harness(
        &dir,
        &[
            (
                "keys.yaml",
                &keys(&[
                    ("a", "acme-key", "tenant: acme"),
                    ("b", "acme-strict-key", "tenant: acme, policy: strict"),
                ]),
            ),
            ("base.yaml", &email_policy("base", "redact")),
            ("strict.yaml", &email_policy("strict", "block")),
            ("pseudo.yaml", &email_policy("pseudo", "pseudonymize")),
        ],
        "policy: base.yaml\nauth: {keys_file: keys.yaml, anonymous_routes: [generate]}\n\
         guard:\n  policies: {strict: strict.yaml, pseudo: pseudo.yaml}\n  tenant_policies: {acme: pseudo}",
        mock.addr,
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
