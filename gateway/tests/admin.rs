//! The admin listener: liveness, readiness and Prometheus metrics, apart from the public one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_metrics() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();

    let r = c.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");

    let r = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["upstreams"][0]["name"], "tgi");
    assert_eq!(v["upstreams"][0]["backends"][0]["circuit"], "closed");

    // traffic of several kinds
    let gen_body = json!({"inputs": "hello there"}).to_string();
    for _ in 0..3 {
        let r = post_json(&c, gw.url("/generate"), gen_body.clone(), &[]).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let r = post_json(&c, gw.url("/generate_stream"), gen_body.clone(), &[]).await;
    r.bytes().await.unwrap();
    post_json(&c, gw.url("/generate"), "{", &[]).await;

    let m = gw.settled_metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "portcullis_requests_total{route=\"generate\",source=\"backend\",status=\"200\"}"
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_requests_total{route=\"generate_stream\",source=\"backend\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_requests_total{route=\"generate\",source=\"gateway\",status=\"422\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_gateway_errors_total{code=\"invalid_json\",route=\"generate\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_request_duration_seconds_count{route=\"generate\"}"
        ),
        4.0
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_upstream_duration_seconds_count{route=\"generate\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_upstream_first_byte_seconds_count{route=\"generate_stream\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "portcullis_request_body_bytes_total{route=\"generate\"}"
        ),
        (3 * gen_body.len() + 1) as f64
    );
    assert!(
        metric_value(
            &m,
            "portcullis_response_body_bytes_total{route=\"generate_stream\"}"
        ) > 100.0
    );
    assert_eq!(metric_value(&m, "portcullis_in_flight_requests"), 0.0);
    assert_eq!(
        metric_value(
            &m,
            &format!(
                "portcullis_upstream_healthy{{backend=\"{}\",upstream=\"tgi\"}}",
                mock.addr
            )
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            &format!(
                "portcullis_upstream_circuit_state{{backend=\"{}\",upstream=\"tgi\"}}",
                mock.addr
            )
        ),
        0.0
    );
    assert_eq!(
        metric_value(
            &m,
            &format!(
                "portcullis_upstream_in_flight{{backend=\"{}\",upstream=\"tgi\"}}",
                mock.addr
            )
        ),
        0.0
    );

    // nothing else on the admin listener, and it is read-only
    assert_eq!(
        c.get(gw.admin_url("/generate"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.post(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_streams_while_they_run() {
    let mock = MockTgi::paced(5.0).await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let r = post_json(
        &c,
        gw.url("/generate_stream"),
        json!({"inputs": "a b c d e"}).to_string(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(gw.metric("portcullis_in_flight_requests").await, 1.0);
    assert_eq!(
        gw.metric(&format!(
            "portcullis_upstream_in_flight{{backend=\"{}\",upstream=\"tgi\"}}",
            mock.addr
        ))
        .await,
        1.0
    );
    r.bytes().await.unwrap();
    // logging runs just after the last byte
    wait_until("in-flight back to 0", || async {
        gw.metric("portcullis_in_flight_requests").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_in_use_is_reported() {
    let mock = MockTgi::echo().await;
    let policy = repo_root().join("policies/default.yaml");
    let gw = Gateway::start(&format!(
        "policy: {}\n{}{}",
        policy.display(),
        models_yaml(&repo_root().join("models")),
        upstream_yaml(&[mock.addr], "")
    ))
    .await;
    let v: Value = client()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["policy"]["name"], "default");
    assert_eq!(
        gw.metric("portcullis_policy_info{policy=\"default\",version=\"5\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_are_json_lines_without_bodies() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::in_front_of(&mock).await;
    let c = client();
    let secret = "my card is 4111 1111 1111 1111";
    let r = post_json(
        &c,
        gw.url("/generate"),
        json!({"inputs": secret}).to_string(),
        &[("x-request-id", "log-1")],
    )
    .await;
    r.bytes().await.unwrap();
    // lines are written out in batches every 50 ms
    let marker = "\"request_id\":\"log-1\"";
    wait_until("the access log line", || async {
        gw.logs().contains(marker)
    })
    .await;
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(marker))
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "generate");
    assert_eq!(v["source"], "backend");
    assert!(v["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(
        !logs.contains("4111"),
        "request content leaked into the logs"
    );
}
