//! The trainer binary must find libtorch by itself: no LD_LIBRARY_PATH, empty environment.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::process::Command;

#[test]
fn binary_runs_with_an_empty_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer-sidecar"))
        .arg("info")
        .env_clear()
        .output()
        .expect("spawn trainer-sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "trainer-sidecar info failed without LD_LIBRARY_PATH: {stderr}"
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(info["smoke_test_sum"], 10.0, "unexpected output: {info}");
    assert!(info["default_device"].is_string());
    // main() tunes glibc's allocator before libtorch allocates (runtime::tune_allocator).
    assert_eq!(
        info["allocator_tuned"],
        cfg!(all(target_os = "linux", target_env = "gnu")),
        "unexpected output: {info}"
    );
}

#[test]
fn test_binaries_run_with_an_empty_environment() {
    // Cargo puts libtorch's directory on LD_LIBRARY_PATH when it runs tests, which would hide a
    // missing rpath. Re-run this very test binary with nothing in its environment.
    if std::env::var_os("PORTCULLIS_RPATH_CHILD").is_some() {
        let info = trainer_sidecar::runtime::probe().expect("probe");
        assert_eq!(info.smoke_test_sum, 10.0);
        return;
    }
    let out = Command::new(std::env::current_exe().expect("current test binary"))
        .args([
            "--exact",
            "test_binaries_run_with_an_empty_environment",
            "--nocapture",
        ])
        .env_clear()
        .env("PORTCULLIS_RPATH_CHILD", "1")
        .output()
        .expect("re-run the test binary");
    assert!(
        out.status.success(),
        "test binary failed without LD_LIBRARY_PATH:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
