//! Upstream pools: round robin, least connections, retries on another backend, circuit
//! breakers and active health checks, against several real mock backends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn body() -> String {
    json!({"inputs": "ping", "parameters": {"max_new_tokens": 2}}).to_string()
}

async fn post(c: &reqwest::Client, gw: &Gateway, extra: Option<(&str, &str)>) -> reqwest::Response {
    let mut rb = c
        .post(gw.url("/generate"))
        .header("content-type", "application/json")
        .body(body());
    if let Some((k, v)) = extra {
        rb = rb.header(k, v);
    }
    rb.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let (a, b, c3) = (
        MockTgi::echo().await,
        MockTgi::echo().await,
        MockTgi::echo().await,
    );
    let gw = Gateway::start(&upstream_yaml(
        &[a.addr, b.addr, c3.addr],
        "    balance: round_robin\n",
    ))
    .await;
    let c = client();
    for _ in 0..30 {
        assert_eq!(post(&c, &gw, None).await.status(), 200);
    }
    assert_eq!(
        (a.api_requests(), b.api_requests(), c3.api_requests()),
        (10, 10, 10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_busy_backend() {
    let (a, b) = (MockTgi::echo().await, MockTgi::echo().await);
    let gw = Gateway::start(&upstream_yaml(
        &[a.addr, b.addr],
        "    balance: least_connections\n",
    ))
    .await;
    let c = client();
    // One long request occupies a backend...
    let slow = {
        let c = c.clone();
        let url = gw.url("/generate");
        tokio::spawn(async move {
            post_json(&c, url, body(), &[("x-mock-fault", "delay_ms=1500")])
                .await
                .status()
        })
    };
    wait_until("the slow request reached a backend", || async {
        a.api_requests() + b.api_requests() > 0
    })
    .await;
    let busy_is_a = a.api_requests() == 1;
    // ...so every short request goes to the other one. (Each short request settles before the
    // next: its backend lease is given back in the logging phase, just after the client has the
    // answer, and a next request sent in between would find both backends at one connection.)
    for _ in 0..10 {
        assert_eq!(post(&c, &gw, None).await.status(), 200);
        wait_until("the short request settled", || async {
            gw.metric("portcullis_in_flight_requests").await <= 1.0
        })
        .await;
    }
    let (busy, idle) = if busy_is_a { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        busy.api_requests(),
        1,
        "least-connections sent work to the busy backend"
    );
    assert_eq!(idle.api_requests(), 10);
    assert_eq!(slow.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_retried_on_a_live_one() {
    let live = MockTgi::echo().await;
    let dead = dead_addr();
    let cfg = format!(
        "upstreams:\n  tgi:\n    backends: [{dead}, {}]\n    retries: 1\n    health_check: {{enabled: false}}\n    circuit_breaker: {{enabled: false}}\n",
        live.addr
    );
    let gw = Gateway::start(&cfg).await;
    let c = client();
    for _ in 0..6 {
        let r = post(&c, &gw, None).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    assert_eq!(live.api_requests(), 6);
    let m = gw.settled_metrics().await;
    // round robin sent every other first attempt to the dead backend
    assert_eq!(
        metric_value(&m, "portcullis_upstream_retries_total{upstream=\"tgi\"}"),
        3.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_consecutive_failures_and_probes_later() {
    let live = MockTgi::echo().await;
    let dead = dead_addr();
    let cfg = format!(
        "upstreams:\n  tgi:\n    backends: [{dead}, {}]\n    retries: 0\n    health_check: {{enabled: false}}\n    circuit_breaker: {{failure_threshold: 2, open_for: 700ms}}\n",
        live.addr
    );
    let gw = Gateway::start(&cfg).await;
    let c = client();
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(post(&c, &gw, None).await.status().as_u16());
    }
    // Round robin alternates: the dead backend fails twice, then its circuit is open.
    assert_eq!(codes.iter().filter(|&&s| s == 502).count(), 2, "{codes:?}");
    let circuit =
        format!("portcullis_upstream_circuit_state{{backend=\"{dead}\",upstream=\"tgi\"}}");
    assert_eq!(gw.metric(&circuit).await, 2.0, "circuit not open");
    // After open_for, one probe goes to the dead backend, fails, and the circuit reopens.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(post(&c, &gw, None).await.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|&&s| s == 502).count(), 1, "{codes:?}");
    assert_eq!(gw.metric(&circuit).await, 2.0);
    let failures = format!(
        "portcullis_upstream_failures_total{{backend=\"{dead}\",reason=\"connect_error\",upstream=\"tgi\"}}"
    );
    assert_eq!(gw.metric(&failures).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_backend_closes_its_circuit_after_a_good_probe() {
    let a = MockTgi::echo().await;
    let cfg = format!(
        "upstreams:\n  tgi:\n    backends: [{}]\n    retries: 0\n    health_check: {{enabled: false}}\n    circuit_breaker: {{failure_threshold: 2, open_for: 300ms}}\n",
        a.addr
    );
    let gw = Gateway::start(&cfg).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(
            post(&c, &gw, Some(("x-mock-fault", "status=503")))
                .await
                .status(),
            503
        );
    }
    // open: refused by the gateway without calling the backend
    let before = a.api_requests();
    let r = post(&c, &gw, None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-portcullis-error-source"], "gateway");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_type"],
        "no_healthy_upstream"
    );
    assert_eq!(a.api_requests(), before);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // the probe succeeds; the circuit closes
    assert_eq!(post(&c, &gw, None).await.status(), 200);
    assert_eq!(post(&c, &gw, None).await.status(), 200);
    let circuit = format!(
        "portcullis_upstream_circuit_state{{backend=\"{}\",upstream=\"tgi\"}}",
        a.addr
    );
    // a success is recorded just after the client got the answer
    gw.settled_metrics().await;
    assert_eq!(gw.metric(&circuit).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_backend_out_and_put_it_back() {
    let (a, b) = (MockTgi::echo().await, MockTgi::echo().await);
    let gw = Gateway::start(&upstream_yaml(&[a.addr, b.addr], "")).await;
    let c = client();
    let healthy_a = format!(
        "portcullis_upstream_healthy{{backend=\"{}\",upstream=\"tgi\"}}",
        a.addr
    );
    a.set_healthy(false);
    wait_until("a marked unhealthy", || async {
        gw.metric(&healthy_a).await == 0.0
    })
    .await;
    let before = a.api_requests();
    for _ in 0..8 {
        assert_eq!(post(&c, &gw, None).await.status(), 200);
    }
    assert_eq!(
        a.api_requests(),
        before,
        "traffic went to an unhealthy backend"
    );
    // readyz still 200: b can serve; it reports a as unhealthy
    let r: Value = get_json(&c, gw.admin_url("/readyz")).await;
    assert_eq!(r["ready"], true);
    let backends = r["upstreams"][0]["backends"].as_array().unwrap();
    assert!(
        backends
            .iter()
            .any(|x| x["backend"] == a.addr.to_string() && x["healthy"] == false),
        "{r}"
    );
    a.set_healthy(true);
    wait_until("a healthy again", || async {
        gw.metric(&healthy_a).await == 1.0
    })
    .await;
    for _ in 0..8 {
        assert_eq!(post(&c, &gw, None).await.status(), 200);
    }
    assert!(
        a.api_requests() > before,
        "a recovered backend got no traffic"
    );
}
