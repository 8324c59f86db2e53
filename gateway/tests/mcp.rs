//! The MCP gateway end to end: the official `mcp` Python SDK (2.3.0) as the client and as the
//! server (`clients/mcp_client.py`, `clients/mcp_server.py`: MCPServer, formerly FastMCP, over
//! Streamable HTTP), through the real gateway binary, and raw JSON-RPC for what the SDK never
//! sends (batches, malformed messages, another key's session, oversize bodies, a killed server).
//!
//! Attacks covered: a poisoned tool description, a rug-pull (a description that changes on the
//! second listing), an injection in a tool result and in a resource, an AWS key and an e-mail
//! address in tool arguments, a tool the policy denies, a flood of calls to one tool, a session
//! id presented by another key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

fn python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `scripts/setup.sh` (or any `make` target) to create the venv",
        p.display()
    );
    p
}

/// `clients/mcp_server.py` on a free port (killed on drop).
struct McpServer {
    child: Child,
    port: u16,
}

impl McpServer {
    async fn start(json_answers: bool) -> McpServer {
        Self::start_with(if json_answers { &["--json"] } else { &[] }).await
    }

    async fn start_with(args: &[&str]) -> McpServer {
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("gateway/tests/clients/mcp_server.py"))
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start mcp_server.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mcp_server.py did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        McpServer { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A keys file with `ids`, returning their secrets.
fn keys(dir: &std::path::Path, ids: &[&str]) -> (PathBuf, Vec<String>) {
    let file = dir.join("keys.yaml");
    let secrets = ids
        .iter()
        .map(|id| {
            let out = Command::new(gateway_bin())
                .args(["keys", "add", "--file"])
                .arg(&file)
                .args(["--id", id, "--tenant", "agents"])
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    (file, secrets)
}

/// The gateway with `policy`, the keys `ids`, an audit trail, and `servers` under `mcp:`.
async fn gateway(
    dir: &std::path::Path,
    policy: &std::path::Path,
    servers: &[(&str, String)],
    ids: &[&str],
    with_models: bool,
) -> (Gateway, Vec<String>) {
    let mock = dead_addr();
    let (keys_file, secrets) = keys(dir, ids);
    let list: String = servers
        .iter()
        .map(|(n, u)| {
            if u.starts_with('{') {
                format!("    {n}: {u}\n")
            } else {
                format!("    {n}: {{url: {u}, timeout: 10s}}\n")
            }
        })
        .collect();
    let gw = Gateway::start_env(
        &format!(
            "upstreams:\n  tgi:\n    backends: [{mock}]\n    health_check: {{enabled: false}}\npolicy: {}\nauth:\n  keys_file: {}\naudit:\n  dir: {}\n{}mcp:\n  servers:\n{list}  max_message_bytes: 65536\n  pins_file: {}\n",
            policy.display(),
            keys_file.display(),
            dir.join("audit").display(),
            if with_models {
                models_yaml(&repo_root().join("models"))
            } else {
                String::new()
            },
            dir.join("pins.json").display(),
        ),
        false,
        &[("PORTCULLIS_ADMIN_TOKEN", "admin-secret")],
    )
    .await;
    (gw, secrets)
}

/// Run the SDK client against `url`; its JSON report.
async fn sdk_client(url: String, key: &str, steps: &str) -> Value {
    sdk_client_mode(url, key, steps, "legacy").await
}

/// [`sdk_client`] in one of the client's protocol modes (`legacy`: the initialize handshake;
/// `auto`: the SDK's default, the 2026-07-28 protocol when the server speaks it).
async fn sdk_client_mode(url: String, key: &str, steps: &str, mode: &str) -> Value {
    let key = key.to_string();
    let steps = steps.to_string();
    let mode = mode.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(repo_root().join("gateway/tests/clients/mcp_client.py"))
            .arg(&url)
            .args([
                "--key",
                &key,
                "--steps",
                &steps,
                "--timeout",
                "20",
                "--mode",
                &mode,
            ])
            .output()
            .expect("run mcp_client.py")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcp_client.py failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn error_message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_through_the_default_policy() {
    let server = McpServer::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = repo_root().join("policies/default.yaml");
    let (gw, secrets) = gateway(
        dir.path(),
        &policy,
        &[("demo", server.url())],
        &["agent"],
        true,
    )
    .await;
    let r = sdk_client(gw.url("/mcp/demo"), &secrets[0], "all").await;

    // tool poisoning: `notes` carries an instruction override in its description
    let first = names(&r["tools_first"]);
    for t in [
        "add",
        "send_email",
        "fetch_page",
        "weather",
        "admin_reset",
        "slow",
    ] {
        assert!(first.contains(&t.to_string()), "{t} missing: {r}");
    }
    assert!(
        !first.contains(&"notes".to_string()),
        "poisoned tool offered: {r}"
    );
    let notes = error_message(&r["notes"]);
    assert!(notes.contains("tool poisoning"), "{r}");
    // the rug-pull: `weather` changed on the second listing, so it is withheld and refused
    assert!(
        !names(&r["tools_second"]).contains(&"weather".to_string()),
        "{r}"
    );
    assert!(
        error_message(&r["weather"]).contains("changed since it was approved"),
        "{r}"
    );
    // an ordinary call
    assert_eq!(r["add"]["text"], "5", "{r}");
    // credentials and personal data in arguments do not reach the server in clear
    let sent = r["send_email"]["text"].as_str().unwrap_or("");
    assert!(!sent.is_empty(), "{r}");
    assert!(!sent.contains("alice@example.com"), "{sent}");
    assert!(!sent.contains("AKIAQ7LMZ2XABCDEFGHI"), "{sent}");
    // an injection in a tool result and in a resource does not reach the client
    for step in ["fetch_page", "readme"] {
        let m = error_message(&r[step]);
        assert!(
            m.contains("withheld") && m.contains("instruction_override"),
            "{step}: {r}"
        );
        assert_eq!(r[step]["error"]["data"]["source"], "gateway", "{r}");
    }
    assert_eq!(r["greet"]["text"], "Say hello to Bob.", "{r}");

    // the audit trail: one record per call, the tool and the decision, never the values
    let audit = wait_for_audit(&dir.path().join("audit"), "\"tool\":\"send_email\"").await;
    assert!(audit.contains("\"decision\":\"withheld\""), "{audit}");
    assert!(audit.contains("\"decision\":\"tool_withheld\""), "{audit}");
    assert!(
        audit.contains("\"policy\":\"default\""),
        "records name the policy: {audit}"
    );
    assert!(
        audit.contains("\"decision\":\"changed_blocked\""),
        "{audit}"
    );
    for raw in [
        "alice@example.com",
        "AKIAQ7LMZ2XABCDEFGHI",
        "Ignore all previous",
    ] {
        assert!(!audit.contains(raw), "{raw} in the audit trail");
        assert!(!gw.logs().contains(raw), "{raw} in the log");
    }
    let m = gw.settled_metrics().await;
    assert!(
        metric_value(
            &m,
            "portcullis_mcp_calls_total{method=\"tools/call\",outcome=\"forwarded\",server=\"demo\",tool=\"add\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "portcullis_mcp_tools_hidden_total{reason=\"changed\",server=\"demo\"}"
        ) >= 1.0
    );
    assert!(
        metric_value(
            &m,
            "portcullis_mcp_tool_changes_total{action=\"block\",server=\"demo\"}"
        ) >= 1.0
    );

    // an admin approves the new definition: it is offered and callable again
    let c = client();
    let refused = c
        .post(gw.admin_url("/admin/mcp/approve?server=demo&tool=weather"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the approval needs the admin token");
    // the admin reads the pending definition and approves what was read (its digest)
    let pins: Value = c
        .get(gw.admin_url("/admin/mcp/pins"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pin = &pins["servers"]["demo"]["weather"];
    assert!(
        pin["pending_definition"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("whole conversation"),
        "{pins}"
    );
    let digest = pin["pending"].as_str().unwrap().to_string();
    let stale = c
        .post(gw.admin_url("/admin/mcp/approve?server=demo&tool=weather&digest=0000"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        409,
        "a digest that is not the pending one is refused"
    );
    let ok: Value = c
        .post(gw.admin_url(&format!(
            "/admin/mcp/approve?server=demo&tool=weather&digest={digest}"
        )))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["approved"], json!(["weather"]), "{ok}");
    let r = sdk_client(gw.url("/mcp/demo"), &secrets[0], "all").await;
    assert!(
        names(&r["tools_first"]).contains(&"weather".to_string()),
        "{r}"
    );
    assert_eq!(r["weather"]["text"], "Sunny in Paris", "{r}");
    // the SDK's default mode (the 2026-07-28 protocol: no session, `mcp-method`/`mcp-name`
    // headers the gateway writes from the body) goes through the same guard
    let r = sdk_client_mode(gw.url("/mcp/demo"), &secrets[0], "all", "auto").await;
    assert_eq!(r["protocol_version"], "2026-07-28", "{r}");
    assert!(
        !names(&r["tools_first"]).contains(&"notes".to_string()),
        "{r}"
    );
    assert_eq!(r["add"]["text"], "5", "{r}");
    assert!(error_message(&r["fetch_page"]).contains("withheld"), "{r}");
    let sent = r["send_email"]["text"].as_str().unwrap_or("");
    assert!(
        !sent.is_empty() && !sent.contains("alice@example.com"),
        "{r}"
    );
    // the pins survive in the pins file
    let pins = std::fs::read_to_string(dir.path().join("pins.json")).unwrap();
    assert!(pins.contains("\"weather\""), "{pins}");
}

/// The audit trail once it contains `needle` (the writer batches).
async fn wait_for_audit(dir: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = audit_text(dir);
        if t.contains(needle) || Instant::now() > deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A JSON-RPC POST to the gateway; (status, session id, body).
async fn rpc(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    sid: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut rb = c
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(body);
    if let Some(s) = sid {
        rb = rb.header("mcp-session-id", s);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else if text.starts_with('{') || text.starts_with('[') {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    } else {
        // an SSE answer: its messages
        Value::Array(
            sse_data(&text)
                .iter()
                .map(|d| serde_json::from_str(d).unwrap())
                .collect(),
        )
    };
    (status, sid, v)
}

/// A policy file with `text` in `dir`.
fn policy_file(dir: &std::path::Path, text: &str) -> PathBuf {
    let p = dir.join("policy.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A raw client's session: `initialize` with `capabilities`, then `initialized`.
async fn open_session(c: &reqwest::Client, url: &str, key: &str, capabilities: Value) -> String {
    let (s, sid, v) = rpc(c, url, key, None, &initialize(capabilities)).await;
    assert_eq!(s, 200, "{v}");
    let sid = sid.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (s, _, _) = rpc(c, url, key, Some(&sid), &initialized).await;
    assert_eq!(s, 202);
    sid
}

/// The SDK's server with SSE answers behind a gateway under the policy `policy`, and a raw
/// client's session opened with the sampling capability.
struct SseDemo {
    _server: McpServer,
    dir: tempfile::TempDir,
    _gw: Gateway,
    client: reqwest::Client,
    key: String,
    url: String,
    sid: String,
}

impl SseDemo {
    async fn start(policy: &str) -> SseDemo {
        let server = McpServer::start(false).await;
        let dir = tempfile::tempdir().unwrap();
        let p = policy_file(dir.path(), policy);
        let (gw, secrets) =
            gateway(dir.path(), &p, &[("demo", server.url())], &["agent"], false).await;
        let (client, url) = (client(), gw.url("/mcp/demo"));
        let sid = open_session(&client, &url, &secrets[0], json!({"sampling": {}})).await;
        SseDemo {
            _server: server,
            dir,
            _gw: gw,
            client,
            key: secrets[0].clone(),
            url,
            sid,
        }
    }
}

/// A raw client's `initialize` (id 1) with these capabilities.
fn initialize(capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "raw", "version": "1"}}})
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

const POLICY: &str = "name: mcp-test\nversion: 1\ninput:\n  pii: redact\n  secrets: redact\n  instruction_override: block\nmcp:\n  deny_tools: [\"demo.admin_*\"]\n  calls_per_minute: 3\n  pinning: flag\n  untrusted_text: mark\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_rpc_denied_tools_batches_limits_sessions_and_a_killed_server() {
    let mut server = McpServer::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), POLICY);
    let (gw, secrets) = gateway(
        dir.path(),
        &policy,
        &[
            ("demo", server.url()),
            ("gone", format!("http://{}/mcp", dead_addr())),
        ],
        &["agent", "other"],
        false,
    )
    .await;
    let (key, other) = (secrets[0].as_str(), secrets[1].as_str());
    let c = client();
    let url = gw.url("/mcp/demo");

    // no key: 401 in JSON-RPC's shape
    let r = c.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    // an unknown server
    let (s, _, v) = rpc(&c, &gw.url("/mcp/nope"), key, None, &json!({})).await;
    assert_eq!(s, 404, "{v}");
    assert!(error_message(&v).contains("/mcp/demo"), "{v}");

    let init = initialize(json!({}));
    let (s, sid, v) = rpc(&c, &url, key, None, &init).await;
    assert_eq!(s, 200, "{v}");
    let sid = sid.expect("a session id");
    let sid = Some(sid.as_str());
    let (s, _, _) = rpc(
        &c,
        &url,
        key,
        sid,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(s, 202);

    // another key cannot use this session
    let (s, _, v) = rpc(
        &c,
        &url,
        other,
        sid,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(s, 404, "{v}");

    // a denied tool is not listed, and its call is refused by the gateway
    let (s, _, v) = rpc(
        &c,
        &url,
        key,
        sid,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let listed: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"add") && !listed.contains(&"admin_reset"),
        "{listed:?}"
    );
    let (_, _, v) = rpc(&c, &url, key, sid, &call(3, "admin_reset", json!({}))).await;
    assert_eq!(v["id"], 3);
    assert_eq!(v["error"]["code"], -32060, "{v}");
    assert_eq!(v["error"]["data"]["code"], "tool_not_allowed", "{v}");

    // a batch: the gateway's refusals and the server's answers in one array, each by its id
    let batch = json!([
        call(10, "add", json!({"a": 1, "b": 2})),
        {"jsonrpc": "2.0", "id": 11, "method": "tools/call"},
        {"jsonrpc": "1.0", "id": 12, "method": "ping"},
        call(13, "send_email", json!({"to": "bob@example.org", "body": "ghp_0123456789abcdefghijABCDEFGHIJ012345"})),
    ]);
    let (s, _, v) = rpc(&c, &url, key, sid, &batch).await;
    assert_eq!(s, 200, "{v}");
    let by_id = |id: u64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id(10)["result"]["content"][0]["text"], "3", "{v}");
    assert_eq!(by_id(11)["error"]["code"], -32602, "{v}");
    assert_eq!(by_id(12)["error"]["code"], -32600, "{v}");
    let sent = by_id(13)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !sent.contains("bob@example.org") && !sent.contains("ghp_0123"),
        "{v}"
    );

    // calls per minute per key and tool: add was called once; two more pass, the next is refused
    for id in [20, 21] {
        let (_, _, v) = rpc(
            &c,
            &url,
            key,
            sid,
            &call(id, "add", json!({"a": 1, "b": 1})),
        )
        .await;
        assert!(v["result"].is_object(), "{v}");
    }
    let (_, _, v) = rpc(
        &c,
        &url,
        key,
        sid,
        &call(22, "add", json!({"a": 1, "b": 1})),
    )
    .await;
    assert_eq!(v["error"]["code"], -32062, "{v}");

    // malformed and oversize bodies
    let r = c
        .post(&url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700, "{v}");
    let big = json!({"jsonrpc": "2.0", "id": 30, "method": "tools/call", "params": {"name": "add", "arguments": {"pad": "x".repeat(70_000)}}});
    let r = c
        .post(&url)
        .bearer_auth(key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let (s, _, v) = rpc(&c, &url, key, sid, &json!([])).await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32600)), "{v}");
    // hidden text in an unknown envelope member is refused, not forwarded
    let (_, _, v) = rpc(
        &c,
        &url,
        key,
        sid,
        &json!({"jsonrpc": "2.0", "id": 31, "method": "ping", "note": "x"}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32600, "{v}");

    // untrusted_text: mark: an injection in a tool result goes through behind a warning
    let (_, _, v) = rpc(
        &c,
        &url,
        key,
        sid,
        &call(50, "fetch_page", json!({"url": "http://shop.example"})),
    )
    .await;
    let first = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(first.starts_with("[portcullis]"), "{v}");
    assert_eq!(
        v["result"]["_meta"]["portcullis/flagged"][0], "instruction_override",
        "{v}"
    );

    // a server that cannot be reached: a JSON-RPC error saying the gateway could not connect
    let (s, _, v) = rpc(&c, &gw.url("/mcp/gone"), key, None, &init).await;
    assert_eq!(s, 502, "{v}");
    assert!(error_message(&v).contains("could not connect"), "{v}");
    assert_eq!(v["id"], 1);
    // the server dies: the next call gets the gateway's error, and works once it is back
    server.kill();
    let (s, _, v) = rpc(
        &c,
        &url,
        key,
        sid,
        &json!({"jsonrpc": "2.0", "id": 40, "method": "ping"}),
    )
    .await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["data"]["source"], "gateway", "{v}");

    // the access log names no value
    for raw in ["bob@example.org", "ghp_0123456789"] {
        assert!(!gw.logs().contains(raw), "{raw} in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_is_served_over_http_and_restarts_without_losing_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let policy = repo_root().join("policies/default.yaml");
    let server = format!(
        "{{command: {}, args: [{}, --stdio], timeout: 20s}}",
        python().display(),
        repo_root()
            .join("gateway/tests/clients/mcp_server.py")
            .display()
    );
    let (gw, secrets) = gateway(dir.path(), &policy, &[("local", server)], &["agent"], true).await;
    let key = secrets[0].as_str();
    // the official client, over Streamable HTTP, to a server that speaks stdio
    let r = sdk_client(gw.url("/mcp/local"), key, "basic").await;
    let first = names(&r["tools_first"]);
    assert!(first.contains(&"add".to_string()), "{r}");
    assert!(
        !first.contains(&"notes".to_string()),
        "poisoned tool offered: {r}"
    );
    assert_eq!(r["add"]["text"], "5", "{r}");

    let c = client();
    let url = gw.url("/mcp/local");
    let init = initialize(json!({}));
    let (s, sid, v) = rpc(&c, &url, key, None, &init).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["result"]["serverInfo"].is_object(), "{v}");
    let sid_text = sid.expect("the gateway's session id");
    let sid = Some(sid_text.as_str());
    // the process dies while answering: a clear JSON-RPC error for that call...
    let (s, _, v) = rpc(&c, &url, key, sid, &call(2, "crash", json!({}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], 2, "{v}");
    assert!(error_message(&v).contains("exited"), "{v}");
    // ...and the next call, in the same session, works on the restarted process
    let (s, _, v) = rpc(
        &c,
        &url,
        key,
        sid,
        &call(3, "add", json!({"a": 2, "b": 40})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "42", "{v}");
    // a call its client cancels (from another POST) ends at once with a JSON-RPC error, and
    // the process stops working on it (it counts the cancellations it was told of)
    let slow = {
        let (c, url, key, sid) = (c.clone(), url.clone(), key.to_string(), sid_text.clone());
        tokio::spawn(async move {
            rpc(
                &c,
                &url,
                &key,
                Some(&sid),
                &call(6, "slow", json!({"seconds": 60})),
            )
            .await
        })
    };
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 6, "reason": "the user gave up"}});
    let deadline = Instant::now() + Duration::from_secs(15);
    while !slow.is_finished() {
        // the cancellation may overtake the call: a cancellation of an unknown id is ignored,
        // so it is sent again until the call ends
        assert!(Instant::now() < deadline, "the cancelled call did not end");
        let (s, _, _) = rpc(&c, &url, key, sid, &cancel).await;
        assert_eq!(s, 202);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _, v) = slow.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], 6, "{v}");
    assert_eq!(v["error"]["code"], -32800, "{v}");
    let (_, _, v) = rpc(&c, &url, key, sid, &call(7, "slow", json!({"seconds": 0}))).await;
    assert_eq!(
        v["result"]["content"][0]["text"], "done (1 cancelled before)",
        "{v}"
    );
    // a session the gateway never made is refused; GET offers no stream; DELETE ends it
    let (s, _, _) = rpc(
        &c,
        &url,
        key,
        Some("not-a-session"),
        &call(4, "add", json!({"a": 1, "b": 1})),
    )
    .await;
    assert_eq!(s, 404);
    let g = c.get(&url).bearer_auth(key).send().await.unwrap();
    assert_eq!(g.status(), 405);
    let d = c
        .delete(&url)
        .bearer_auth(key)
        .header("mcp-session-id", &sid_text)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    let (s, _, _) = rpc(&c, &url, key, sid, &call(5, "add", json!({"a": 1, "b": 1}))).await;
    assert_eq!(s, 404, "an ended session stays ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_names_in_tool_arguments_are_tagged_as_in_prompts() {
    let server = McpServer::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        dir.path(),
        "name: names\nversion: 1\ninput:\n  person: placeholder\n  address: placeholder\n  email: placeholder\nclassifiers:\n  model: guard\n  timeout: 2s\n  on_timeout: block\n",
    );
    let (gw, secrets) = gateway(
        dir.path(),
        &policy,
        &[("demo", server.url())],
        &["agent"],
        true,
    )
    .await;
    let (c, key, url) = (client(), secrets[0].as_str(), gw.url("/mcp/demo"));
    let init = initialize(json!({}));
    let (_, sid, _) = rpc(&c, &url, key, None, &init).await;
    let sid = sid.expect("a session id");
    let (s, _, v) = rpc(
        &c,
        &url,
        key,
        Some(&sid),
        &call(2, "send_email", json!({"to": "john.smith@example.com", "body": "Dear John Smith, your parcel goes to 221B Baker Street, London NW1 6XE."})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let sent = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!sent.is_empty(), "{v}");
    for raw in ["John Smith", "Baker Street", "john.smith@example.com"] {
        assert!(!sent.contains(raw), "{raw} reached the server: {sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_is_reached_with_its_own_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .output()
        .expect("openssl (Debian package openssl) makes the test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let server = McpServer::start_with(&[
        "--json",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let policy = policy_file(
        dir.path(),
        "name: tls\nversion: 1\ninput:\n  secrets: redact\n",
    );
    let url = format!("https://localhost:{}/mcp", server.port);
    let (gw, secrets) = gateway(
        dir.path(),
        &policy,
        &[
            (
                "secure",
                format!(
                    "{{url: \"{url}\", ca_file: {}, timeout: 10s}}",
                    cert.display()
                ),
            ),
            ("untrusted", format!("{{url: \"{url}\", timeout: 10s}}")),
        ],
        &["agent"],
        false,
    )
    .await;
    let (c, key) = (client(), secrets[0].as_str());
    let init = initialize(json!({}));
    let (s, sid, v) = rpc(&c, &gw.url("/mcp/secure"), key, None, &init).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["result"]["serverInfo"].is_object(), "{v}");
    let (_, _, v) = rpc(
        &c,
        &gw.url("/mcp/secure"),
        key,
        sid.as_deref(),
        &call(2, "add", json!({"a": 20, "b": 22})),
    )
    .await;
    assert_eq!(v["result"]["content"][0]["text"], "42", "{v}");
    // a certificate the gateway does not trust: the server is not reached
    let (s, _, v) = rpc(&c, &gw.url("/mcp/untrusted"), key, None, &init).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["data"]["source"], "gateway", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_request_carrying_an_injection_is_answered_by_the_gateway_not_relayed() {
    // SSE answers: the server's sampling request travels on the call's own stream
    let d = SseDemo::start("name: s\nversion: 1\ninput:\n  instruction_override: block\n").await;
    let (c, key, url, sid) = (&d.client, d.key.as_str(), &d.url, &d.sid);
    let (s, _, v) = rpc(
        c,
        url,
        key,
        Some(sid),
        &call(2, "summarize_page", json!({"url": "http://shop.example"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let msgs = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    // the client never saw the server's request...
    assert!(
        msgs.iter().all(|m| m.get("method").is_none()),
        "a server request reached the client: {v}"
    );
    // ...the server got the gateway's refusal as the answer to it, and the call still ends:
    // with the tool's own failure text, or withheld in turn when that text repeats what the
    // server asked (the SDK's exception quotes the request)
    let answer = msgs
        .iter()
        .find(|m| m["id"] == 2)
        .cloned()
        .unwrap_or(Value::Null);
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        text.starts_with("sampling failed") || answer["error"]["data"]["source"] == "gateway",
        "{v}"
    );
    assert!(!v.to_string().contains("Ignore all previous"), "{v}");
    let audit = wait_for_audit(&d.dir.path().join("audit"), "sampling/createMessage").await;
    assert!(
        audit.contains("\"method\":\"sampling/createMessage\""),
        "{audit}"
    );
    assert!(audit.contains("\"decision\":\"withheld\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_stream_is_read_like_its_answers() {
    // the session's GET stream carries what the server sends outside any call: notices, and
    // requests to the client
    let d = SseDemo::start(
        "name: g\nversion: 1\ninput:\n  instruction_override: block\nmcp:\n  untrusted_text: mark\n",
    )
    .await;
    let (c, key, url, sid) = (&d.client, d.key.as_str(), &d.url, &d.sid);
    let mut stream = c
        .get(url)
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = stream.chunk().await {
                seen.lock().push_str(&String::from_utf8_lossy(&chunk));
            }
        })
    };
    // the server registers the stream as the gateway relays its headers: give it a moment
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _, v) = rpc(c, url, key, Some(sid), &call(2, "announce", json!({}))).await;
    assert_eq!(s, 200, "{v}");
    // the plain notice reached the client on the stream; the one carrying an injection did
    // not (a notification cannot be marked: it is withheld), nor did the sampling request,
    // which the gateway answered itself (the tool reports the refusal)
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().contains("the index was rebuilt") {
        assert!(
            Instant::now() < deadline,
            "the notice did not arrive: {}",
            seen.lock()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = seen.lock().clone();
    let msgs: Vec<Value> = sse_data(&got)
        .iter()
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        msgs.iter().all(|m| m["method"] == "notifications/message"),
        "{got}"
    );
    assert_eq!(msgs.len(), 1, "{got}");
    assert!(!got.contains("Ignore all previous"), "{got}");
    let msgs = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    let answer = msgs
        .iter()
        .find(|m| m["id"] == 2)
        .cloned()
        .unwrap_or(Value::Null);
    // the tool's text (behind the gateway's mark when the refusal it quotes reads as an
    // injection) says the gateway refused, not that nobody answered
    let texts: Vec<&str> = answer["result"]["content"]
        .as_array()
        .map(|c| c.iter().filter_map(|b| b["text"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("sampling failed") && t.contains("the gateway withheld"))
            || answer["error"]["data"]["source"] == "gateway",
        "{v}"
    );
    let audit = wait_for_audit(&d.dir.path().join("audit"), "sampling/createMessage").await;
    assert!(audit.contains("\"decision\":\"withheld\""), "{audit}");
    reader.abort();
}
