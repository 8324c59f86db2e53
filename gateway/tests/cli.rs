//! `gateway validate` and `gateway schema`: precise, located errors and a machine-readable schema.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::*;

fn validate(yaml: &str) -> (bool, String, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(gateway_bin())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
        dir,
    )
}

#[test]
fn the_shipped_configs_are_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo_root().join("deploy")).unwrap() {
        let f = entry.unwrap().path();
        if f.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let out = Command::new(gateway_bin())
            .args(["validate", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn errors_name_file_line_and_problem_and_exit_non_zero() {
    let (ok, _, err, path, _d) =
        validate("upstreams:\n  tgi:\n    backends: [127.0.0.1:3000]\n    balance: fastest\n");
    assert!(!ok);
    let p = path.display().to_string();
    assert!(err.contains(&format!("{p}:4:")), "{err}");
    assert!(err.contains("unknown variant `fastest`"), "{err}");
    assert!(
        err.contains("round_robin"),
        "the message should list the valid values: {err}"
    );
}

#[test]
fn every_semantic_problem_is_listed() {
    let (ok, _, err, path, _d) = validate(
        "limits:\n  max_body_bytes: 0\nupstreams:\n  tgi:\n    backends: [localhost]\n    timeouts: {connect: 0s}\n",
    );
    assert!(!ok);
    let p = path.display().to_string();
    assert!(
        err.contains(&format!("{p}:2:")) && err.contains("max_body_bytes"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:5:")) && err.contains("host:port"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:6:")) && err.contains("timeouts.connect"),
        "{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn a_broken_policy_is_reported_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), "name: ok\nversion: one\n").unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        "policy: p.yaml\nupstreams:\n  tgi: {backends: [h:1]}\n",
    )
    .unwrap();
    let out = Command::new(gateway_bin())
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yaml:2:"), "{err}");
    assert!(err.contains(&format!("{}:1:", cfg.display())), "{err}");
}

#[test]
fn missing_files_and_bad_yaml() {
    let out = Command::new(gateway_bin())
        .args(["validate", "--config", "/nonexistent/gw.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read file"));
    let (ok, _, err, _, _d) = validate("upstreams: [\n");
    assert!(!ok);
    assert!(err.contains(":2:") || err.contains(":1:"), "{err}");
}

#[test]
fn serve_refuses_an_invalid_config_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(&cfg, "upstreams: {}\n").unwrap();
    let out = Command::new(gateway_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one upstream"));
}

#[test]
fn schema_is_json_schema_of_the_config() {
    let out = Command::new(gateway_bin()).arg("schema").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["properties"]["upstreams"].is_object(), "{v}");
    assert!(v["properties"]["server"].is_object());
}

#[test]
fn the_checked_in_config_schema_is_current() {
    let out = Command::new(gateway_bin()).arg("schema").output().unwrap();
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = repo_root().join("deploy/gateway-config.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "{} is out of date: run `make schema` and commit it",
        path.display()
    );
}

/// `gateway check --route`: a request body read the way its API family reads it.
#[test]
fn check_route_shows_what_reaches_the_model() {
    use std::io::Write;
    let run = |body: &str| {
        let mut child = Command::new(gateway_bin())
            .args(["check", "--policy"])
            .arg(repo_root().join("policies/default.yaml"))
            .args(["--route", "chat_completions"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run(
        r#"{"messages":[{"role":"user","content":[{"type":"text","text":"mail jane.doe@exa"},{"type":"text","text":"mple.com"}]}],"tools":[{"type":"function","function":{"name":"f","description":"look up"}}]}"#,
    );
    assert_eq!(v["family"], "openai.chat");
    assert_eq!(v["action"], "placeholder");
    let texts: Vec<&str> = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"mail jane.doe@example.com"), "{texts:?}");
    assert!(texts.contains(&"look up"), "{texts:?}");
    let fwd = v["body"]["messages"][0]["content"].to_string();
    assert!(fwd.contains("<EMAIL_1>") && !fwd.contains("jane"), "{fwd}");
    let v = run(r#"{"messages":[{"role":"user","content":"hi"}],"mystery":1}"#);
    assert_eq!(v["action"], "refuse");
    assert_eq!(v["refused"]["path"], "mystery");
}

#[test]
fn check_jsonl_takes_a_role_per_line_and_refuses_an_unknown_one() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "name: p\nversion: 1\ninput:\n  secrets: redact\n").unwrap();
    let run = |input: &str| {
        let mut child = Command::new(gateway_bin())
            .args(["check", "--jsonl", "--policy"])
            .arg(&policy)
            .env("PORTCULLIS_PSEUDONYM_KEY", "test")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = run(
        "{\"id\": 1, \"text\": \"hello\", \"role\": \"tool\"}\n{\"id\": 2, \"text\": \"hi\", \"role\": null}\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).lines().count(), 2);
    for bad in ["\"robot\"", "3"] {
        let out = run(&format!(
            "{{\"id\": 1, \"text\": \"hello\", \"role\": {bad}}}\n"
        ));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 1: `role`") && err.contains("tool_definition, document"),
            "{err}"
        );
    }
}
