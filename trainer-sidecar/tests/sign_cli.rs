//! `trainer-sidecar keygen / sign / verify`: exit codes and JSON (the signing itself is tested in
//! the `signing` crate, against the reference tool too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer-sidecar"))
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keygen_sign_verify_and_a_tampered_model_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("keys");
    let model = d.path().join("adapter");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("adapter_config.json"), b"{\"r\": 16}").unwrap();
    std::fs::write(model.join("adapter_model.safetensors"), vec![1u8; 1000]).unwrap();
    let prov = d.path().join("provenance.json");
    std::fs::write(
        &prov,
        br#"{"epsilon": 7.98, "delta": 1e-5, "accountant": "rdp"}"#,
    )
    .unwrap();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();

    let (ok, v, e) = run(&["keygen", "--out", &p(&keys)]);
    assert!(ok, "{e}");
    let private = v["private_key"].as_str().unwrap().to_string();
    let public = v["public_key"].as_str().unwrap().to_string();
    // keys are never overwritten
    let (ok, _, e) = run(&["keygen", "--out", &p(&keys)]);
    assert!(!ok && e.contains("private.pem"), "{e}");

    let (ok, _, e) = run(&[
        "sign",
        &p(&model),
        "--private-key",
        &private,
        "--provenance",
        &p(&prov),
    ]);
    assert!(ok, "{e}");
    let (ok, v, e) = run(&["verify", &p(&model), "--public-key", &public]);
    assert!(ok, "{e}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"].as_array().unwrap().len(), 2);
    assert_eq!(v["provenance"]["epsilon"], 7.98);

    std::fs::write(model.join("adapter_config.json"), b"{\"r\": 64}").unwrap();
    let (ok, _, e) = run(&["verify", &p(&model), "--public-key", &public]);
    assert!(!ok);
    assert!(e.contains("adapter_config.json changed"), "{e}");
    // a key that is not a key
    let (ok, _, e) = run(&["verify", &p(&model), "--public-key", &p(&prov)]);
    assert!(!ok && e.contains("not a PEM ECDSA P-256 public key"), "{e}");
}

#[test]
fn certificate_mode_from_the_cli() {
    let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../signing/tests/fixtures");
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("w.bin"), vec![5u8; 100]).unwrap();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (ok, _, e) = run(&[
        "sign",
        &p(&model),
        "--private-key",
        &p(&fx.join("leaf-key.pem")),
        "--certificate",
        &p(&fx.join("leaf.pem")),
        "--chain",
        &p(&fx.join("intermediate.pem")),
    ]);
    assert!(ok, "{e}");
    let (ok, v, e) = run(&["verify", &p(&model), "--roots", &p(&fx.join("root.pem"))]);
    assert!(ok, "{e}");
    assert!(
        v["signer"]["certificate"]
            .as_str()
            .is_some_and(|s| s.contains("trainer-sidecar")),
        "{v}"
    );
    let (ok, _, e) = run(&[
        "verify",
        &p(&model),
        "--roots",
        &p(&fx.join("other-root.pem")),
    ]);
    assert!(!ok && e.contains("trusted CA"), "{e}");
}
