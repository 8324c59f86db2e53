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

/// An adapter folder `<root>/<name>/<v>` (PEFT's two files), signed with `key` if given.
fn adapter(root: &std::path::Path, name: &str, v: &str, key: Option<&signing::SigningKey>) {
    let d = root.join(name).join(v);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("adapter_config.json"),
        json!({"peft_type": "LORA", "r": 8, "lora_alpha": 16}).to_string(),
    )
    .unwrap();
    std::fs::write(d.join("adapter_model.safetensors"), vec![7u8; 256]).unwrap();
    if let Some(k) = key {
        signing::sign(&d, k, None, Some(json!({"privacy": {"epsilon": 3.0}}))).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_are_allowlisted_split_and_live_only_when_signed() {
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("adapters");
    let key = common::model_signing_key();
    adapter(&reg, "support", "1", Some(&key));
    adapter(&reg, "legal", "1", None); // unsigned: never live
    adapter(&reg, "canary", "1", Some(&key));
    let stranger = tempfile::tempdir().unwrap();
    let (other, _) = signing::keygen_to(stranger.path()).unwrap();
    adapter(
        &reg,
        "canary",
        "2",
        Some(&signing::read_private_key(&other).unwrap()),
    );
    let h = harness(
        &dir,
        &[(
            "keys.yaml",
            &keys(&[
                ("k1", "one", "tenant: t"),
                ("k2", "two", "tenant: t2"),
                ("k3", "three", "tenant: t3"),
            ]),
        )],
        &format!(
            "auth: {{keys_file: keys.yaml}}\nadapters:\n  dir: adapters\n  trust: {{keys: [{}]}}\n  \
             routes: {{generate: {{allow: [support, legal]}}}}\n  keys:\n    k2: {{split: {{base: 0, canary: 1}}}}\n    \
             k3: {{split: {{base: 1, canary: 1}}, sticky: true}}\n  tenants: {{t: {{allow: [support]}}}}\n",
            common::model_public_key().display()
        ),
        mock.addr,
    );
    let gen_ = |key: &str, body: serde_json::Value| {
        Request::post("/generate")
            .bearer(key)
            .json(body.to_string())
    };
    let sent = |r: &gateway::harness::Response| -> serde_json::Value {
        let id = r.header("x-request-id").unwrap();
        let rec = mock.requests_with_id(id);
        rec.last()
            .expect("the backend saw it")
            .json
            .clone()
            .unwrap()
    };
    // named and allowed: passes as it is (tenant t's rule: support only)
    let r = h
        .send(gen_(
            "one",
            json!({"inputs": "hi", "parameters": {"adapter_id": "support", "max_new_tokens": 2}}),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sent(&r)["parameters"]["adapter_id"], "support");
    // not allowed for this caller, and TGI would have served the base model silently
    for name in ["legal", "canary", "../../etc", ""] {
        let r = h
            .send(gen_(
                "one",
                json!({"inputs": "hi", "parameters": {"adapter_id": name}}),
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_eq!(r.json().unwrap()["error_type"], "adapter_not_allowed");
        assert_eq!(r.header("x-portcullis-error-source"), Some("gateway"));
    }
    // the same refusal through SageMaker's `/invocations`, which dispatches on the body
    let r = h
        .send(
            Request::post("/invocations")
                .bearer("one")
                .json(json!({"inputs": "hi", "parameters": {"adapter_id": "legal"}}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = h
        .send(Request::post("/invocations").bearer("one").json(
            json!({"model": "canary", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // a member given twice (a parser keeping the first would see another adapter)
    let r = h
        .send(
            gen_("one", json!({})).json(
                r#"{"inputs":"hi","parameters":{"adapter_id":"support","adapter_id":"legal"}}"#,
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    // not a string
    let r = h
        .send(gen_(
            "one",
            json!({"inputs": "hi", "parameters": {"adapter_id": 3}}),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    // none named: the base model (no member written)
    let r = h
        .send(gen_(
            "one",
            json!({"inputs": "hi", "parameters": {"max_new_tokens": 2}}),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(sent(&r)["parameters"].get("adapter_id").is_none());
    // k2: the split routes everything to canary version 1 (version 2 is a stranger's: refused)
    for _ in 0..3 {
        let r = h
            .send(gen_(
                "two",
                json!({"inputs": "hi", "parameters": {"max_new_tokens": 2}}),
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(sent(&r)["parameters"]["adapter_id"], "canary");
    }
    // the same on OpenAI routes, through `model` (TGI maps it to adapter_id)
    let r = h
        .send(
            Request::post("/v1/chat/completions").bearer("two").json(
                json!({"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
                    .to_string(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sent(&r)["model"], "canary");
    let r = h
        .send(Request::post("/v1/chat/completions").bearer("one").json(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "a `model` that is neither base nor allowed");
    assert_eq!(r.json().unwrap()["error"]["code"], "adapter_not_allowed");
    // k3: sticky 50/50: one key, one choice, every time
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let r = h
            .send(gen_(
                "three",
                json!({"inputs": "hi", "parameters": {"max_new_tokens": 2}}),
            ))
            .await
            .unwrap();
        seen.insert(sent(&r)["parameters"]["adapter_id"].to_string());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // /v1/models lists only what the caller may use
    let r = h
        .send(Request::get("/v1/models").bearer("two"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let ids: Vec<String> = r.json().unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"canary".to_string()), "{ids:?}");
    assert!(!ids.contains(&"support".to_string()), "{ids:?}");
    // the refusals are counted by reason
    let m = h.metrics_text();
    for series in [
        "portcullis_model_refusals_total{model=\"legal\",reason=\"unsigned\"} 1",
        "portcullis_model_refusals_total{model=\"canary\",reason=\"untrusted\"} 1",
        "portcullis_adapter_requests_total{adapter=\"canary\",outcome=\"routed\"}",
    ] {
        assert!(m.contains(series), "{series} missing:\n{m}");
    }
}
