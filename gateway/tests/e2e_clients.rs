//! End to end with real client libraries: the `openai` Python SDK and huggingface_hub's
//! `InferenceClient`, from the project's venv, against the real gateway and mock-tgi.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::*;

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
    let gw = Gateway::in_front_of(&mock).await;
    let script_path = repo_root().join("gateway/tests/clients").join(script);
    let url = format!("http://{}", gw.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&script_path)
            .env("GATEWAY_URL", url)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk() {
    run_client("openai_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_inference_client() {
    run_client("hf_client.py").await;
}
