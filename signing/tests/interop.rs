//! Interop with the reference tool, PyPI `model-signing` 1.1.1 (installed in `.venv` by
//! `scripts/setup.sh`): it accepts our signatures and we accept its, in key mode; a changed,
//! added or removed file fails both; a signature from another key fails both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `model_signing ARGS`; Ok when it exits 0, Err(its output) otherwise.
fn tool(args: &[&str]) -> Result<(), String> {
    let bin = root().join(".venv/bin/model_signing");
    let out = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", bin.display()));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The reference tool's `verify key` of `model` against `sig` and `public`.
fn tool_verifies(model: &Path, sig: &Path, public: &Path) -> Result<(), String> {
    tool(&[
        "verify",
        "key",
        s(model),
        "--signature",
        s(sig),
        "--public_key",
        s(public),
    ])
}

fn model(dir: &Path) {
    std::fs::create_dir_all(dir.join("weights")).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"hidden_size": 8}"#).unwrap();
    std::fs::write(dir.join("weights/model.safetensors"), vec![3u8; 100_000]).unwrap();
    std::fs::write(dir.join("README.md"), b"a tiny model").unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_reference_tool_and_we_accept_each_others_signatures() {
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("keys");
    let (private, public) = signing::keygen_to(&keys).unwrap();
    let m = d.path().join("tiny-model");
    model(&m);
    let ours = d.path().join("ours.sig");
    let theirs = d.path().join("theirs.sig");

    // ours, verified by the tool (the provenance field is ignored by it)
    let key = signing::read_private_key(&private).unwrap();
    signing::sign(
        &m,
        &key,
        Some(&ours),
        Some(serde_json::json!({"epsilon": 8.0, "delta": 1e-5})),
    )
    .unwrap();
    tool_verifies(&m, &ours, &public).expect("model_signing accepts our signature");

    // theirs, verified by us
    tool(&[
        "sign",
        "key",
        s(&m),
        "--private_key",
        s(&private),
        "--signature",
        s(&theirs),
    ])
    .expect("model_signing signs");
    let pubk = signing::read_public_key(&public).unwrap();
    let v = signing::verify(&m, &pubk, Some(&theirs)).expect("we accept theirs");
    assert_eq!(v.resources.len(), 3);
    assert_eq!(v.provenance, None);
    let v = signing::verify(&m, &pubk, Some(&ours)).unwrap();
    assert_eq!(v.provenance.unwrap()["epsilon"], 8.0);

    // a signature from another key fails both
    let other = d.path().join("other");
    let (_, other_pub) = signing::keygen_to(&other).unwrap();
    let other_key = signing::read_public_key(&other_pub).unwrap();
    for sig in [&ours, &theirs] {
        assert!(signing::verify(&m, &other_key, Some(sig)).is_err());
        assert!(tool_verifies(&m, sig, &other_pub).is_err());
    }

    // a changed, an added and a removed file fail both, for both signatures
    let changed = |f: &dyn Fn(&Path)| {
        f(&m);
        for sig in [&ours, &theirs] {
            assert!(signing::verify(&m, &pubk, Some(sig)).is_err(), "we refuse");
            assert!(tool_verifies(&m, sig, &public).is_err(), "the tool refuses");
        }
        std::fs::remove_dir_all(&m).unwrap();
        model(&m);
    };
    changed(&|m| std::fs::write(m.join("config.json"), br#"{"hidden_size": 9}"#).unwrap());
    changed(&|m| std::fs::write(m.join("extra.py"), b"import os").unwrap());
    changed(&|m| std::fs::remove_file(m.join("README.md")).unwrap());
    // and back as signed, both pass again
    assert!(signing::verify(&m, &pubk, Some(&theirs)).is_ok());
}

/// The reference tool's `verify certificate` of `model` against `sig`, trusting `root`.
fn tool_verifies_certificate(model: &Path, sig: &Path, root: &Path) -> Result<(), String> {
    tool(&[
        "verify",
        "certificate",
        s(model),
        "--signature",
        s(sig),
        "--certificate_chain",
        s(root),
    ])
}

#[test]
fn certificate_mode_interoperates_both_ways() {
    let fx = root().join("signing/tests/fixtures");
    let (root_ca, inter, leaf, leaf_key) = (
        fx.join("root.pem"),
        fx.join("intermediate.pem"),
        fx.join("leaf.pem"),
        fx.join("leaf-key.pem"),
    );
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("tiny-model");
    model(&m);
    let ours = d.path().join("ours.sig");
    let theirs = d.path().join("theirs.sig");
    let key = signing::read_private_key(&leaf_key).unwrap();
    signing::sign_with_certificate(
        &m,
        &key,
        &leaf,
        std::slice::from_ref(&inter),
        Some(&ours),
        Some(serde_json::json!({"privacy": {"epsilon": 1.5}})),
    )
    .unwrap();
    tool_verifies_certificate(&m, &ours, &root_ca)
        .expect("model_signing accepts our certificate-mode signature");
    tool(&[
        "sign",
        "certificate",
        s(&m),
        "--private_key",
        s(&leaf_key),
        "--signing_certificate",
        s(&leaf),
        "--certificate_chain",
        s(&inter),
        "--signature",
        s(&theirs),
    ])
    .expect("model_signing signs with a certificate");
    let roots = signing::x509::read_certificates(&root_ca).unwrap();
    let v = signing::verify_certificate(&m, &roots, Some(&theirs)).expect("we accept theirs");
    assert!(v.signer.contains("trainer-sidecar"), "{}", v.signer);
    let v = signing::verify_certificate(&m, &roots, Some(&ours)).unwrap();
    assert_eq!(v.verified.provenance.unwrap()["privacy"]["epsilon"], 1.5);
    // another root: both refuse both
    let other = fx.join("other-root.pem");
    let other_roots = signing::x509::read_certificates(&other).unwrap();
    for sig in [&ours, &theirs] {
        assert!(signing::verify_certificate(&m, &other_roots, Some(sig)).is_err());
        assert!(tool_verifies_certificate(&m, sig, &other).is_err());
    }
    // a changed file: both refuse both
    std::fs::write(m.join("config.json"), br#"{"hidden_size": 9}"#).unwrap();
    for sig in [&ours, &theirs] {
        assert!(signing::verify_certificate(&m, &roots, Some(sig)).is_err());
        assert!(tool_verifies_certificate(&m, sig, &root_ca).is_err());
    }
}
