//! Backend failures: errors pass through untouched; the gateway's own failures come in the
//! route's shape with `x-portcullis-error-source: gateway`; broken streams end with an error
//! event in the stream's own format.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{Value, json};

fn gen_body() -> String {
    json!({"inputs": "Hello big world", "parameters": {"max_new_tokens": 10}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_pass_through_as_they_were() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    for (status, path) in [
        (500, "/generate"),
        (424, "/generate"),
        (429, "/v1/chat/completions"),
        (503, "/generate"),
        (422, "/generate_stream"),
    ] {
        let fault = format!("status={status}");
        let body = if path.starts_with("/v1") {
            json!({"messages": [{"role": "user", "content": "hi"}]}).to_string()
        } else {
            gen_body()
        };
        let direct = post_json(
            &c,
            mock.url(path),
            body.clone(),
            &[("x-mock-fault", fault.as_str())],
        )
        .await;
        let (ds, dbody) = (direct.status(), direct.text().await.unwrap());
        let via = post_json(&c, gw.url(path), body, &[("x-mock-fault", fault.as_str())]).await;
        assert_eq!(via.status(), ds, "{path} {status}");
        assert_eq!(
            via.headers()["x-portcullis-error-source"],
            "backend",
            "{path} {status}"
        );
        assert_eq!(
            via.text().await.unwrap(),
            dbody,
            "{path} {status}: body changed"
        );
    }
    // a backend error does not open the circuit for client-caused statuses, and 5xx are counted
    let m = gw.settled_metrics().await;
    assert!(
        metric_value(
            &m,
            &format!(
                "portcullis_upstream_failures_total{{backend=\"{}\",reason=\"http_5xx\",upstream=\"tgi\"}}",
                mock.addr
            )
        ) >= 2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_with_504_from_the_gateway() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::start(&upstream_yaml(
        &[mock.addr],
        "    timeouts: {read: 300ms}\n",
    ))
    .await;
    let c = client();
    let r = post_json(
        &c,
        gw.url("/generate"),
        gen_body(),
        &[("x-mock-fault", "delay_ms=2000")],
    )
    .await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "upstream_timeout", "{v}");
    let r = post_json(
        &c,
        gw.url("/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "hi"}]}).to_string(),
        &[("x-mock-fault", "delay_ms=2000")],
    )
    .await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert_eq!(v["error"]["type"], "server_error");
    // a slow-but-in-time backend is fine
    let r = post_json(
        &c,
        gw.url("/generate"),
        gen_body(),
        &[("x-mock-fault", "delay_ms=100")],
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_way_ends_with_an_error_event_in_its_own_format() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    // After a broken upstream the gateway closes the client connection (pingora does not reuse
    // a connection whose request failed): use a fresh connection per request.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let c = fresh();

    // TGI: tokens, then `data:{"error","error_type"}`, and a clean end of the HTTP response
    let r = post_json(
        &c,
        gw.url("/generate_stream"),
        gen_body(),
        &[("x-mock-fault", "drop_after=2")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("the gateway ends the stream cleanly");
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "{text}");
    for e in &events[..2] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v["token"].is_object(), "{e}");
    }
    let last: Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(last["error_type"], "upstream_error", "{last}");
    assert!(last["error"].as_str().unwrap().contains("backend"));

    // OpenAI: chunks, then `data: {"error":{...}}`
    let body =
        json!({"messages": [{"role": "user", "content": "Hello big world"}], "stream": true})
            .to_string();
    let r = post_json(
        &c,
        gw.url("/v1/chat/completions"),
        body,
        &[("x-mock-fault", "drop_after=1")],
    )
    .await;
    let text = r.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.len(), 2, "{text}");
    let v: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(v["object"], "chat.completion.chunk");
    let last: Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!text.contains("[DONE]"));

    // a backend's own mid-stream generation error passes through as the backend sent it
    let r = post_json(
        &c,
        gw.url("/generate_stream"),
        gen_body(),
        &[("x-mock-fault", "error_after=1")],
    )
    .await;
    let events = sse_data(&r.text().await.unwrap());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error_type"], "generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_answer_cut_mid_body_is_not_passed_off_as_complete() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = post_json(
        &c,
        gw.url("/generate"),
        gen_body(),
        &[("x-mock-fault", "drop_after=1")],
    )
    .await;
    if r.status() == 200 {
        // the header was already forwarded: the client must see the body fail, not end cleanly
        assert!(
            r.text().await.is_err(),
            "a truncated body must surface as an error"
        );
    } else {
        // cut before anything was forwarded: retried, then refused by the gateway
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    }
    // and the gateway keeps serving
    let r = post_json(&c, gw.url("/generate"), gen_body(), &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_without_health_checks_is_502_after_retries() {
    let dead = dead_addr();
    let cfg = format!(
        "upstreams:\n  tgi:\n    backends: [{dead}]\n    retries: 2\n    health_check: {{enabled: false}}\n    circuit_breaker: {{enabled: false}}\n"
    );
    let gw = Gateway::start(&cfg).await;
    let c = client();
    let r = post_json(&c, gw.url("/generate"), gen_body(), &[]).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "upstream_connect_error");
    let m = gw.settled_metrics().await;
    // 1 attempt + 2 retries
    assert_eq!(
        metric_value(
            &m,
            &format!(
                "portcullis_upstream_failures_total{{backend=\"{dead}\",reason=\"connect_error\",upstream=\"tgi\"}}"
            )
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "portcullis_upstream_retries_total{upstream=\"tgi\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_with_health_checks_is_503_no_healthy_upstream() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    mock.stop();
    // the next health check takes it out of rotation
    wait_until("backend marked unhealthy", || async {
        c.get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    let r = post_json(&c, gw.url("/generate"), gen_body(), &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_type"],
        "no_healthy_upstream"
    );
    let r = post_json(
        &c,
        gw.url("/v1/completions"),
        json!({"prompt": "x"}).to_string(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "no_healthy_upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_stream_cancels_the_backend_stream() {
    let mock = MockTgi::paced(5.0).await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let r = post_json(
        &c,
        gw.url("/generate_stream"),
        json!({"inputs": "a b c d e f g h i j k l m n o p"}).to_string(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    drop(r);
    let cancelled = || {
        mock.mock
            .stats
            .streams_cancelled
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    wait_until("backend stream cancelled after the client left", || async {
        cancelled() > 0
    })
    .await;
    // the gateway is fine, and no failure was blamed on the backend
    let r = post_json(&c, gw.url("/generate"), gen_body(), &[]).await;
    assert_eq!(r.status(), 200);
    let m = gw.settled_metrics().await;
    assert!(!m.contains("portcullis_upstream_failures_total{"), "{m}");
}
