//! The planted-field test: for every route of every API family, bodies generated from the API's
//! own schema (the `openai` and `anthropic` SDKs' request types, TGI's OpenAPI document) get an
//! injection phrase and a secret planted in every free string field; each must be blocked,
//! redacted or refused, never forwarded unchanged into a field that reaches the model. See
//! `clients/planted_fields.py` for how bodies are generated and what counts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_string_field_that_reaches_the_model_is_guarded() {
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "name: planted\nversion: 1\ninput:\n  injection: block\n  secrets: redact\n",
    )
    .unwrap();
    let keys = dir.path().join("keys.yaml");
    let out = Command::new(gateway_bin())
        .args(["keys", "add", "--file"])
        .arg(&keys)
        .args(["--id", "planter", "--tenant", "t"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let gw = Gateway::start(&upstream_yaml(
        &[mock.addr],
        &format!(
            "policy: {}\nauth:\n  keys_file: {}\n",
            policy.display(),
            keys.display()
        ),
    ))
    .await;
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup.sh first (make test does)"
    );
    let script = repo_root().join("gateway/tests/clients/planted_fields.py");
    let (url, mock_url) = (
        format!("http://{}", gw.addr),
        format!("http://{}", mock.addr),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(&script)
            .env("GATEWAY_URL", url)
            .env("MOCK_URL", mock_url)
            .env("API_KEY", key)
            .env("REPO_ROOT", repo_root())
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "planted fields leaked\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
