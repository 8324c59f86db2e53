//! Every TGI and OpenAI route passes through the gateway unchanged, streaming included; bodies
//! are checked (size, JSON) before the backend is called.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    stream: bool,
}

fn cases() -> Vec<Case> {
    let chat = json!({"model": "tgi", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Deep Learning?"}], "max_tokens": 20});
    let mut chat_stream = chat.clone();
    chat_stream["stream"] = json!(true);
    chat_stream["stream_options"] = json!({"include_usage": true});
    let gen_req = json!({"inputs": "What is Deep Learning?", "parameters": {"max_new_tokens": 20, "details": true, "decoder_input_details": true, "stop": ["Learning"]}});
    let compl = json!({"prompt": "Once upon a time", "max_tokens": 3});
    let mut compl_stream = compl.clone();
    compl_stream["stream"] = json!(true);
    vec![
        Case {
            method: "POST",
            path: "/generate",
            body: Some(gen_req.clone()),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/generate_stream",
            body: Some(gen_req.clone()),
            stream: true,
        },
        Case {
            method: "POST",
            path: "/",
            body: Some(json!({"inputs": "Hi there", "parameters": {"max_new_tokens": 5}})),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/",
            body: Some(json!({"inputs": "Hi there", "stream": true})),
            stream: true,
        },
        Case {
            method: "POST",
            path: "/tokenize",
            body: Some(json!({"inputs": "Hello, world"})),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/chat_tokenize",
            body: Some(chat.clone()),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/invocations",
            body: Some(chat.clone()),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/v1/chat/completions",
            body: Some(chat),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/v1/chat/completions",
            body: Some(chat_stream),
            stream: true,
        },
        Case {
            method: "POST",
            path: "/v1/completions",
            body: Some(compl),
            stream: false,
        },
        Case {
            method: "POST",
            path: "/v1/completions",
            body: Some(compl_stream),
            stream: true,
        },
        Case {
            method: "GET",
            path: "/info",
            body: None,
            stream: false,
        },
        Case {
            method: "GET",
            path: "/health",
            body: None,
            stream: false,
        },
        Case {
            method: "GET",
            path: "/v1/models",
            body: None,
            stream: false,
        },
        Case {
            method: "GET",
            path: "/metrics",
            body: None,
            stream: false,
        },
    ]
}

async fn send(
    c: &reqwest::Client,
    base: &str,
    case: &Case,
    rid: &str,
) -> (u16, String, String, reqwest::header::HeaderMap) {
    let url = format!("{base}{}", case.path);
    let mut rb = match case.method {
        "GET" => c.get(url),
        _ => c.post(url),
    };
    rb = rb.header("x-request-id", rid);
    if let Some(b) = &case.body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let headers = r.headers().clone();
    (status, ct, r.text().await.unwrap(), headers)
}

fn comparable(body: &str, stream: bool) -> Value {
    if stream {
        Value::Array(
            sse_data(body)
                .into_iter()
                .map(|d| {
                    serde_json::from_str(&d)
                        .map(normalize)
                        .unwrap_or(Value::String(d))
                })
                .collect(),
        )
    } else {
        serde_json::from_str(body)
            .map(normalize)
            .unwrap_or(Value::String(body.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_exactly_like_the_backend() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let direct_base = format!("http://{}", mock.addr);
    let gw_base = format!("http://{}", gw.addr);
    for (i, case) in cases().iter().enumerate() {
        let rid = format!("pass-{i}");
        let (ds, dct, dbody, _) = send(&c, &direct_base, case, &format!("direct-{i}")).await;
        let (gs, gct, gbody, gh) = send(&c, &gw_base, case, &rid).await;
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(ds, 200, "{what}: direct call failed: {dbody}");
        assert_eq!(gs, ds, "{what}: status differs");
        assert_eq!(gct, dct, "{what}: content-type differs");
        if case.path == "/metrics" {
            // the backend's own counters move between the two calls
            assert!(gbody.contains("tgi_request_count"), "{what}: {gbody}");
        } else {
            assert_eq!(
                comparable(&gbody, case.stream),
                comparable(&dbody, case.stream),
                "{what}: body differs"
            );
        }
        assert_eq!(
            gh["x-request-id"],
            rid.as_str(),
            "{what}: request id not returned"
        );
        if let Some(b) = &case.body {
            let seen = mock.requests_with_id(&rid);
            assert_eq!(
                seen.len(),
                1,
                "{what}: backend saw {} requests with our id",
                seen.len()
            );
            assert_eq!(
                seen[0].body,
                b.to_string(),
                "{what}: body reached the backend modified"
            );
            assert_eq!(seen[0].path, case.path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_propagated_or_minted() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let body = json!({"inputs": "x"}).to_string();
    // a client id is kept and reaches the backend
    let r = post_json(
        &c,
        gw.url("/generate"),
        body.clone(),
        &[("x-request-id", "client-id-1")],
    )
    .await;
    assert_eq!(r.headers()["x-request-id"], "client-id-1");
    assert_eq!(mock.requests_with_id("client-id-1").len(), 1);
    // a malformed one is replaced by a fresh id, which the backend sees too
    let r = post_json(
        &c,
        gw.url("/generate"),
        body,
        &[("x-request-id", "has spaces and <tags>")],
    )
    .await;
    let minted = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(minted, "has spaces and <tags>");
    assert_eq!(minted.len(), 36, "expected a UUID, got {minted}");
    assert_eq!(mock.requests_with_id(&minted).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_up_to_the_limit_reach_the_backend_unchanged() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    // just under the 2 MB default, far over pingora's 64 KiB replay buffer
    let text = "lorem ipsum ".repeat(166_000);
    let body = json!({"inputs": text, "parameters": {"max_new_tokens": 3}}).to_string();
    assert!(body.len() < 2_000_000 && body.len() > 1_900_000);
    let r = post_json(
        &c,
        gw.url("/generate"),
        body.clone(),
        &[("x-request-id", "big-1")],
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = mock.requests_with_id("big-1");
    assert_eq!(seen[0].body.len(), body.len());
    assert_eq!(seen[0].body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_in_the_route_shape_without_calling_the_backend() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::start(&upstream_yaml(
        &[mock.addr],
        "limits:\n  max_body_bytes: 100000\n",
    ))
    .await;
    let c = client();
    let big = json!({"inputs": "a".repeat(100_001)}).to_string();
    let before = mock.api_requests();

    let r = post_json(&c, gw.url("/generate"), big.clone(), &[]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "request_too_large");
    assert!(v["error"].as_str().unwrap().contains("100000"));

    let r = post_json(&c, gw.url("/v1/chat/completions"), big, &[]).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // no Content-Length to go by: counted while reading
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..30).map(|_| Ok(vec![b' '; 5000])).collect();
    let r = post_json(
        &c,
        gw.url("/generate"),
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        &[],
    )
    .await;
    assert_eq!(r.status(), 413);
    assert_eq!(mock.api_requests(), before, "the backend was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_422_before_the_backend_is_called() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let before = mock.api_requests();
    for (path, body) in [
        ("/generate", "{\"inputs\": "),
        ("/generate_stream", "not json"),
        ("/", "{\"a\":1}}"),
        ("/generate", ""),
    ] {
        let r = post_json(&c, gw.url(path), body, &[]).await;
        assert_eq!(r.status(), 422, "{path} {body:?}");
        assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_type"], "invalid_json", "{v}");
        assert!(v["error"].is_string());
    }
    let r = post_json(&c, gw.url("/v1/chat/completions"), "{\"messages\": [", &[]).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json");
    assert_eq!(mock.api_requests(), before, "the backend was called");
    // The error names the position, never the content.
    let secret = "{\"inputs\": \"my password is hunter2\" oops}";
    let r = post_json(&c, gw.url("/generate"), secret, &[]).await;
    assert!(!r.text().await.unwrap().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let body = json!({"inputs": "chunked hello", "parameters": {"max_new_tokens": 5}}).to_string();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(7).map(|p| Ok(p.to_vec())).collect();
    let r = post_json(
        &c,
        gw.url("/generate"),
        reqwest::Body::wrap_stream(futures::stream::iter(parts)),
        &[("x-request-id", "chunked-1")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["generated_text"],
        "chunked hello"
    );
    let seen = &mock.requests_with_id("chunked-1")[0];
    assert_eq!(seen.body, body);
    // forwarded with a Content-Length, not chunked
    assert!(
        seen.headers
            .iter()
            .any(|(k, v)| k == "content-length" && *v == body.len().to_string())
    );

    // larger than the replay window without a length: 411 telling the client what to do
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 5000])).collect();
    let r = post_json(
        &c,
        gw.url("/generate"),
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        &[],
    )
    .await;
    assert_eq!(r.status(), 411);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Content-Length"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_are_refused_by_the_gateway() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let r = c.get(gw.url("/admin/secrets")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    assert_eq!(r.json::<Value>().await.unwrap()["error_type"], "not_found");
    let r = c.get(gw.url("/v1/files")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = c.get(gw.url("/generate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // Anthropic's clients get Anthropic's error shape
    let r = c.get(gw.url("/v1/messages/batches")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error"))
    );
    // the admin routes are not on the public listener
    assert_eq!(
        c.get(gw.url("/healthz")).send().await.unwrap().status(),
        404
    );
    assert_eq!(mock.api_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_forwarded_as_they_arrive_not_buffered() {
    // 6 tokens at 4 tokens/s: the backend needs ~1.5 s to finish.
    let mock = MockTgi::paced(4.0).await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    for (path, body) in [
        (
            "/generate_stream",
            json!({"inputs": "one two three four five"}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "one two three four five"}], "stream": true}),
        ),
    ] {
        let completed_before = mock
            .mock
            .stats
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst);
        let r = post_json(&c, gw.url(path), body.to_string(), &[]).await;
        assert_eq!(r.status(), 200);
        let mut stream = r.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("first chunk in time")
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&first).starts_with("data:"),
            "{first:?}"
        );
        // The client holds the first token while the backend is still generating.
        let active = mock
            .mock
            .stats
            .active_streams
            .load(std::sync::atomic::Ordering::SeqCst);
        let completed = mock
            .mock
            .stats
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(active, 1, "{path}: backend stream not running any more");
        assert_eq!(
            completed, completed_before,
            "{path}: backend had finished before the client saw a token"
        );
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.extend_from_slice(&chunk.unwrap());
        }
        assert!(!rest.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_the_gateway() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    // curl sends `Expect: 100-continue` for large bodies and waits up to 1 s for the go-ahead.
    let body =
        serde_json::json!({"inputs": "z ".repeat(600_000), "parameters": {"max_new_tokens": 2}})
            .to_string();
    let path = gw.dir().join("big.json");
    std::fs::write(&path, &body).unwrap();
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "-H",
            "x-request-id: expect-1",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "5",
            "--data-binary",
        ])
        .arg(format!("@{}", path.display()))
        .arg(gw.url("/generate"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "curl waited for a 100 Continue that never came"
    );
    let seen = &mock.requests_with_id("expect-1")[0];
    assert_eq!(seen.body.len(), body.len());
    assert!(
        !seen.headers.iter().any(|(k, _)| k == "expect"),
        "Expect forwarded to the backend"
    );
}
