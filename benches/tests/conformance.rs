//! mock-tgi, run as a real process, answers every route with payloads that validate against
//! TGI's own OpenAPI schemas, and its test features (faults, recorder, script mode, health
//! switch) behave as documented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-tgi"))
        .args(["--listen", "127.0.0.1:0", "--quiet"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("mock-tgi listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Proc { child, base }
}

/// TGI's OpenAPI 3.0 schemas as JSON Schema: `nullable` becomes a `null` alternative.
fn openapi() -> Value {
    fn convert(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (_, x) in m.iter_mut() {
                    convert(x);
                }
                if m.remove("nullable") == Some(Value::Bool(true)) {
                    if let Some(Value::String(t)) = m.get("type").cloned() {
                        m.insert("type".into(), json!([t, "null"]));
                    } else {
                        let inner = Value::Object(std::mem::take(m));
                        m.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(convert),
            _ => {}
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/tgi-openapi.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    convert(&mut doc["components"]);
    doc
}

fn assert_schema(doc: &Value, name: &str, instance: &Value) {
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"].clone(),
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not validate:\n{}\ninstance: {instance}",
        errors.join("\n")
    );
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn post(
    base: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut rb = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().unwrap()
}

fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data:")
                .unwrap_or_else(|| panic!("TGI frames events as `data:...`: {e:?}"))
                .to_string()
        })
        .collect()
}

#[test]
fn every_route_validates_against_tgis_openapi_schemas() {
    let doc = openapi();
    let m = start(&[]);
    let b = &m.base;
    let gen_req = json!({"inputs": "What is Deep Learning?", "parameters": {"max_new_tokens": 20, "details": true, "decoder_input_details": true, "seed": 7}});
    let chat = json!({"model": "tgi", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}], "max_tokens": 10});

    let r = post(b, "/generate", &gen_req, &[]);
    assert_eq!(r.status(), 200);
    assert_schema(&doc, "GenerateResponse", &r.json().unwrap());

    let r = post(b, "/", &gen_req, &[]);
    let v: Value = r.json().unwrap();
    assert!(v.is_array(), "compat route answers a list");
    assert_schema(&doc, "GenerateResponse", &v[0]);

    for path in ["/generate_stream", "/"] {
        let mut req = gen_req.clone();
        req["stream"] = json!(true);
        let r = post(b, path, &req, &[]);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let evs = events(&r.text().unwrap());
        assert!(evs.len() > 2);
        for e in &evs {
            assert_schema(&doc, "StreamResponse", &serde_json::from_str(e).unwrap());
        }
        let last: Value = serde_json::from_str(evs.last().unwrap()).unwrap();
        assert_eq!(last["generated_text"], "What is Deep Learning?");
        assert_eq!(last["details"]["finish_reason"], "eos_token");
        assert!(
            !evs.iter().any(|e| e == "[DONE]"),
            "TGI's native stream has no [DONE]"
        );
    }

    let r = post(b, "/tokenize", &json!({"inputs": "Hello, world"}), &[]);
    assert_schema(&doc, "TokenizeResponse", &r.json().unwrap());
    let r = post(b, "/chat_tokenize", &chat, &[]);
    assert_schema(&doc, "ChatTokenizeResponse", &r.json().unwrap());

    let r = post(b, "/v1/chat/completions", &chat, &[]);
    assert_schema(&doc, "ChatCompletion", &r.json().unwrap());
    let mut s = chat.clone();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let evs = events(&post(b, "/v1/chat/completions", &s, &[]).text().unwrap());
    assert_eq!(evs.last().unwrap(), "[DONE]");
    for e in &evs[..evs.len() - 1] {
        assert_schema(
            &doc,
            "ChatCompletionChunk",
            &serde_json::from_str(e).unwrap(),
        );
    }
    let usage: Value = serde_json::from_str(&evs[evs.len() - 2]).unwrap();
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let compl = json!({"prompt": "Once upon a time", "max_tokens": 3});
    let r = post(b, "/v1/completions", &compl, &[]);
    let v: Value = r.json().unwrap();
    assert_schema(&doc, "CompletionFinal", &v);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let mut s = compl.clone();
    s["stream"] = json!(true);
    let evs = events(&post(b, "/v1/completions", &s, &[]).text().unwrap());
    assert_eq!(evs.last().unwrap(), "[DONE]");
    for e in &evs[..evs.len() - 1] {
        assert_schema(&doc, "Chunk", &serde_json::from_str(e).unwrap());
    }

    let r = post(b, "/invocations", &chat, &[]);
    assert_schema(&doc, "ChatCompletion", &r.json().unwrap());
    let r = post(b, "/invocations", &json!({"inputs": "Hi"}), &[]);
    assert_schema(&doc, "GenerateResponse", &r.json::<Value>().unwrap()[0]);

    let c = client();
    assert_schema(
        &doc,
        "Info",
        &c.get(format!("{b}/info")).send().unwrap().json().unwrap(),
    );
    assert_schema(
        &doc,
        "ModelInfo",
        &c.get(format!("{b}/v1/models"))
            .send()
            .unwrap()
            .json()
            .unwrap(),
    );
    let r = c.get(format!("{b}/health")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{b}/metrics")).send().unwrap();
    assert!(r.text().unwrap().contains("tgi_request_count"));

    // validation errors: 422 with TGI's ErrorResponse
    for body in [
        json!({"inputs": ""}),
        json!({"inputs": "x", "parameters": {"max_new_tokens": 0}}),
        json!({"inputs": "x", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}),
    ] {
        let r = post(b, "/generate", &body, &[]);
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().unwrap();
        assert_schema(&doc, "ErrorResponse", &v);
        assert_eq!(v["error_type"], "validation");
    }
}

#[test]
fn faults_are_chosen_per_request() {
    let doc = openapi();
    let m = start(&[]);
    let b = &m.base;
    let req = json!({"inputs": "one two three four"});
    let r = post(b, "/generate", &req, &[("x-mock-fault", "status=503")]);
    assert_eq!(r.status(), 503);
    assert_schema(&doc, "ErrorResponse", &r.json().unwrap());

    let t = std::time::Instant::now();
    let r = post(b, "/generate", &req, &[("x-mock-fault", "delay_ms=300")]);
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // drop_after=2: two events, then the connection is cut (no clean end of the body)
    let r = post(
        b,
        "/generate_stream",
        &req,
        &[("x-mock-fault", "drop_after=2")],
    );
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    let cut = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break false,
            Ok(_) => {
                if let Some(d) = line.strip_prefix("data:") {
                    got.push(d.trim().to_string());
                }
            }
            Err(_) => break true,
        }
    };
    assert!(cut, "the stream ended cleanly");
    assert_eq!(got.len(), 2);

    // error_after=1: one token, then TGI's generation error event
    let evs = events(
        &post(
            b,
            "/generate_stream",
            &req,
            &[("x-mock-fault", "error_after=1")],
        )
        .text()
        .unwrap(),
    );
    assert_eq!(evs.len(), 2);
    let last: Value = serde_json::from_str(&evs[1]).unwrap();
    assert_schema(&doc, "ErrorResponse", &last);
    assert_eq!(last["error_type"], "generation");

    // a typo in the header is refused loudly
    let r = post(b, "/generate", &req, &[("x-mock-fault", "stauts=500")]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("stauts"));

    // pacing: ttft and tokens per second per request (4 tokens + EOS at 20 tok/s after 200 ms)
    let t = std::time::Instant::now();
    let r = post(
        b,
        "/generate_stream",
        &req,
        &[("x-mock-fault", "ttft_ms=200;tps=20")],
    );
    r.text().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(200 + 4 * 50),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn recorder_health_switch_and_script_mode() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo-script.yaml");
    let m = start(&["--script", script, "--record", "2"]);
    let b = &m.base;
    let c = client();
    let r = post(
        b,
        "/generate",
        &json!({"inputs": "How is the WEATHER?"}),
        &[("x-request-id", "r1")],
    );
    assert_eq!(
        r.json::<Value>().unwrap()["generated_text"],
        "It is always sunny in the mock world."
    );
    let r = post(
        b,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hello"}]}),
        &[("x-request-id", "r2")],
    );
    let v: Value = r.json().unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("I am mock-tgi in script mode")
    );
    post(
        b,
        "/tokenize",
        &json!({"inputs": "x"}),
        &[("x-request-id", "r3")],
    );

    let get_json =
        |path: &str| -> Value { c.get(format!("{b}{path}")).send().unwrap().json().unwrap() };
    // keeps the last 2, filterable by request id
    assert_eq!(get_json("/_mock/requests").as_array().unwrap().len(), 2);
    let one = get_json("/_mock/requests?request_id=r2");
    assert_eq!(one[0]["path"], "/v1/chat/completions");
    assert_eq!(one[0]["json"]["messages"][0]["content"], "hello");
    assert_eq!(
        c.delete(format!("{b}/_mock/requests"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(get_json("/_mock/requests").as_array().unwrap().is_empty());

    for healthy in [false, true] {
        c.post(format!("{b}/_mock/health"))
            .json(&json!({"healthy": healthy}))
            .send()
            .unwrap();
        let status = c.get(format!("{b}/health")).send().unwrap().status();
        assert_eq!(status, if healthy { 200 } else { 503 });
    }
    let stats = get_json("/_mock/stats");
    assert_eq!(stats["requests"], 3);
}

#[test]
fn malformed_requests_are_refused_like_tgi() {
    let m = start(&[]);
    let c = client();
    let raw = |body: &str, json: bool| {
        let mut rb = c
            .post(format!("{}/generate", m.base))
            .body(body.to_string());
        if json {
            rb = rb.header("content-type", "application/json");
        }
        rb.send().unwrap().status()
    };
    assert_eq!(
        raw("{\"inputs\":\"x\"}", false),
        415,
        "no JSON content type"
    );
    assert_eq!(raw("{", true), 400, "malformed JSON");
    assert_eq!(raw("{\"input\":\"x\"}", true), 422, "wrong shape");
    assert_eq!(
        c.get(format!("{}/nope", m.base)).send().unwrap().status(),
        404
    );
}
