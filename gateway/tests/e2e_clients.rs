//! End to end with real client libraries: the `openai` and `anthropic` Python SDKs and
//! huggingface_hub's `InferenceClient`, from the project's venv, against the real gateway (an
//! API key, a policy that placeholders personal data, redacts secrets and blocks injections)
//! in front of mock-tgi in echo mode.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::*;

const POLICY: &str = "name: e2e-clients\nversion: 1\ninput:\n  pii: placeholder\n  secrets: redact\n  injection: block\noutput:\n  secrets: redact\n";

fn python() -> std::path::PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `scripts/setup.sh` (or any `make` target) to create the venv",
        p.display()
    );
    p
}

async fn run_client(script: &str) {
    let mock = MockTgi::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let keys = dir.path().join("keys.yaml");
    let out = Command::new(gateway_bin())
        .args(["keys", "add", "--file"])
        .arg(&keys)
        .args(["--id", "sdk", "--tenant", "e2e"])
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
    let script_path = repo_root().join("gateway/tests/clients").join(script);
    let url = format!("http://{}", gw.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&script_path)
            .env("GATEWAY_URL", url)
            .env("API_KEY", key)
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // nothing the clients sent reached the backend with a raw secret
    for r in mock.mock.recorder.list(None) {
        assert!(
            !r.body.contains("AKIAQ7LMZ2XABCDEFGHI"),
            "a secret reached the backend on {}: {}",
            r.path,
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk() {
    run_client("openai_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_python_sdk() {
    run_client("anthropic_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_inference_client() {
    run_client("hf_client.py").await;
}
