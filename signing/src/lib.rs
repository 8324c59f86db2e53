//! Model signatures in the OpenSSF `model_signing` v1.0 format, key mode (what
//! `model_signing sign key` / `verify key` from PyPI `model-signing` 1.1 write and read), so a
//! model the trainer sidecar signs verifies with the standard tool and the other way round.
//!
//! ```text
//! model dir ──walk (skip the signature, .git*; no symlinks)──► [{name, sha256}] sorted by name
//!   payload  = in-toto Statement v1 { subject: [{name: <dir name>, digest: {sha256: H}}],
//!              predicateType: https://model_signing/signature/v1.0,
//!              predicate: {serialization, resources, portcullis: <provenance>} }
//!              H = SHA-256 over the resources' raw 32-byte digests, in listed order
//!   signed   = DSSE PAE("application/vnd.in-toto+json", payload), ECDSA P-256 / SHA-256, DER
//!   model.sig = Sigstore bundle v0.3 { verificationMaterial.publicKey.hint = hex SHA-256 of
//!              the public key's PEM, dsseEnvelope {payload (b64), payloadType, signatures} }
//! ```
//!
//! Provenance (ε, δ, accountant, data guard, digests, job id, ...) rides in the predicate under
//! `portcullis`: v1.0 verifiers ignore fields they do not know, and [`verify`] returns it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::DerSignature;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
pub use p256::ecdsa::{SigningKey, VerifyingKey};

pub mod trust;
pub mod x509;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
pub use trust::{Attestation, Refusal, RefusalKind, Trust, TrustedKey, TrustedRoots};

/// The signature file's default name (`model_signing`'s).
pub const DEFAULT_SIGNATURE: &str = "model.sig";
/// The DSSE payload type.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The model_signing v1.0 predicate type.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The Sigstore bundle media type model_signing writes.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Paths ignored besides the signature file (model_signing's defaults).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];
/// The predicate member our provenance goes under.
pub const PROVENANCE_KEY: &str = "portcullis";

/// Why signing or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key that is not a P-256 key in PEM (PKCS#8 private, SubjectPublicKeyInfo public).
    #[error("{path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model folder cannot be signed as is.
    #[error("{0}")]
    Model(String),
    /// The signature file is not a bundle this verifier reads.
    #[error("the signature is malformed: {0}")]
    Malformed(String),
    /// The signature was not made with this key (or names another key).
    #[error("verification failed: {0}")]
    WrongKey(String),
    /// The files do not match the signature, or the statement contradicts itself.
    #[error("verification failed: {0}")]
    Mismatch(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SignError + '_ {
    move |source| SignError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of the model and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The path relative to the model folder, `/`-separated.
    pub name: String,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// A new key pair: the private key as PKCS#8 PEM, the public one as SubjectPublicKeyInfo PEM.
pub fn keygen() -> Result<(String, String), SignError> {
    let key = loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        // a random 32-byte string is a valid scalar but for ~2^-128 of them
        if let Ok(k) = SigningKey::from_bytes(&bytes.into()) {
            break k;
        }
    };
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| SignError::Model(format!("cannot encode the private key: {e}")))?;
    let public = public_pem(key.verifying_key())?;
    Ok((private.to_string(), public))
}

/// Write a key pair to `dir` (`private.pem` readable by the owner only, `public.pem`).
pub fn keygen_to(dir: &Path) -> Result<(PathBuf, PathBuf), SignError> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (private, public) = keygen()?;
    let pk = dir.join("private.pem");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(&pk)
        .and_then(|mut f| f.write_all(private.as_bytes()))
        .map_err(io(&pk))?;
    let pubk = dir.join("public.pem");
    std::fs::write(&pubk, public).map_err(io(&pubk))?;
    Ok((pk, pubk))
}

fn public_pem(key: &VerifyingKey) -> Result<String, SignError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| SignError::Model(format!("cannot encode the public key: {e}")))
}

/// Read a PKCS#8 PEM P-256 private key.
pub fn read_private_key(path: &Path) -> Result<SigningKey, SignError> {
    let pem = std::fs::read_to_string(path).map_err(io(path))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| SignError::Key {
        path: path.to_path_buf(),
        message: format!("not a PKCS#8 PEM ECDSA P-256 private key ({e})"),
    })
}

/// Read a SubjectPublicKeyInfo PEM P-256 public key.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, SignError> {
    let pem = std::fs::read_to_string(path).map_err(io(path))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| SignError::Key {
        path: path.to_path_buf(),
        message: format!("not a PEM ECDSA P-256 public key ({e})"),
    })
}

/// The key's hint in a bundle: hex SHA-256 of its PEM text.
pub fn key_hint(key: &VerifyingKey) -> Result<String, SignError> {
    Ok(hex::encode(Sha256::digest(public_pem(key)?.as_bytes())))
}

/// Every file of `dir` but the ignored ones, with its digest, sorted by name. Symlinks are
/// refused (model_signing's `allow_symlinks: false`).
pub fn manifest(dir: &Path, ignore: &[String]) -> Result<Vec<Resource>, SignError> {
    fn walk(
        root: &Path,
        dir: &Path,
        ignore: &[String],
        out: &mut Vec<Resource>,
    ) -> Result<(), SignError> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let rel = path.strip_prefix(root).map_err(|_| {
                SignError::Model(format!("{} is outside the model", path.display()))
            })?;
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if ignore
                .iter()
                .any(|i| name == *i || name.starts_with(&format!("{i}/")))
            {
                continue;
            }
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_symlink() {
                return Err(SignError::Model(format!(
                    "{}: symbolic links are not signed (allow_symlinks: false)",
                    path.display()
                )));
            }
            if kind.is_dir() {
                walk(root, &path, ignore, out)?;
            } else {
                out.push(Resource {
                    name,
                    sha256: file_sha256(&path)?,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, ignore, &mut out)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn file_sha256(path: &Path) -> Result<[u8; 32], SignError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok(h.finalize().into())
}

/// The DSSE pre-authentication encoding of a payload.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn ignore_paths(signature_name: &str) -> Vec<String> {
    std::iter::once(signature_name.to_string())
        .chain(GIT_PATHS.iter().map(|s| s.to_string()))
        .collect()
}

fn model_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".to_string())
}

/// Sign the model in `dir`: the signature goes to `signature` (default `dir/model.sig`, which
/// is left out of the manifest), `provenance` into the predicate. Returns the bundle written.
pub fn sign(
    dir: &Path,
    key: &SigningKey,
    signature: Option<&Path>,
    provenance: Option<Value>,
) -> Result<Value, SignError> {
    let material = json!({
        "publicKey": {"hint": key_hint(key.verifying_key())?},
        "tlogEntries": [],
    });
    sign_with(dir, key, signature, provenance, material)
}

/// Sign in certificate mode (`model_signing sign certificate`): `chain` is the signing
/// certificate (whose key must be `key`'s) then the intermediates, as PEM files.
pub fn sign_with_certificate(
    dir: &Path,
    key: &SigningKey,
    certificate: &Path,
    chain: &[PathBuf],
    signature: Option<&Path>,
    provenance: Option<Value>,
) -> Result<Value, SignError> {
    let leaf = x509::read_certificates(certificate)?;
    if x509::public_key(&leaf[0])? != *key.verifying_key() {
        return Err(SignError::Key {
            path: certificate.to_path_buf(),
            message: "the certificate's key is not the private key's pair".into(),
        });
    }
    let mut certs = vec![leaf[0].clone()];
    for p in chain {
        certs.extend(x509::read_certificates(p)?);
    }
    let raw: Vec<Value> = certs
        .iter()
        .map(|c| x509::der(c).map(|d| json!({"rawBytes": B64.encode(d)})))
        .collect::<Result<_, _>>()?;
    let material = json!({
        "x509CertificateChain": {"certificates": raw},
        "tlogEntries": [],
    });
    sign_with(dir, key, signature, provenance, material)
}

fn sign_with(
    dir: &Path,
    key: &SigningKey,
    signature: Option<&Path>,
    provenance: Option<Value>,
    material: Value,
) -> Result<Value, SignError> {
    let sig_path = signature.map_or_else(|| dir.join(DEFAULT_SIGNATURE), Path::to_path_buf);
    let sig_name = sig_path
        .strip_prefix(dir)
        .ok()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|| DEFAULT_SIGNATURE.to_string());
    let ignore = ignore_paths(&sig_name);
    let resources = manifest(dir, &ignore)?;
    if resources.is_empty() {
        return Err(SignError::Model(format!(
            "{}: no files to sign",
            dir.display()
        )));
    }
    let mut root = Sha256::new();
    for r in &resources {
        root.update(r.sha256);
    }
    let mut predicate = json!({
        "serialization": {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": false,
            "ignore_paths": ignore,
        },
        "resources": resources.iter().map(|r| json!({
            "name": r.name,
            "algorithm": "sha256",
            "digest": hex::encode(r.sha256),
        })).collect::<Vec<_>>(),
    });
    if let (Some(p), Some(obj)) = (provenance, predicate.as_object_mut()) {
        obj.insert(PROVENANCE_KEY.to_string(), p);
    }
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name(dir), "digest": {"sha256": hex::encode(root.finalize())}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    });
    let payload = serde_json::to_vec(&statement)
        .map_err(|e| SignError::Model(format!("cannot write the statement: {e}")))?;
    let sig: DerSignature = key.sign(&pae(PAYLOAD_TYPE, &payload));
    let bundle = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": B64.encode(&payload),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(sig.as_bytes()), "keyid": ""}],
        },
    });
    let text = serde_json::to_string(&bundle)
        .map_err(|e| SignError::Model(format!("cannot write the bundle: {e}")))?;
    // a new file renamed over the old one: a reader never sees half a signature, and a
    // signature hard-linked from another copy of the model is not rewritten through the link
    let tmp = sig_path.with_extension("sig.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &sig_path).map_err(io(&sig_path))?;
    Ok(bundle)
}

/// What a good signature says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The model's name in the statement (informative).
    pub model_name: String,
    /// The files and digests it covers.
    pub resources: Vec<Resource>,
    /// Our provenance, when the signer wrote one.
    pub provenance: Option<Value>,
}

/// Verify the model in `dir` against its signature (default `dir/model.sig`) and `key`: the
/// key's hint, the ECDSA signature over the DSSE encoding, the statement's root digest, and
/// every file (none changed, added or removed).
pub fn verify(
    dir: &Path,
    key: &VerifyingKey,
    signature: Option<&Path>,
) -> Result<Verified, SignError> {
    let sig_path = signature.map_or_else(|| dir.join(DEFAULT_SIGNATURE), Path::to_path_buf);
    let text = std::fs::read_to_string(&sig_path).map_err(io(&sig_path))?;
    let bundle: Value =
        serde_json::from_str(&text).map_err(|e| SignError::Malformed(e.to_string()))?;
    if let Some(hint) = bundle
        .pointer("/verificationMaterial/publicKey/hint")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        && hint != key_hint(key)?
    {
        return Err(SignError::WrongKey(
            "the signature names another public key (its hint is not this key's)".into(),
        ));
    }
    verify_bundle(dir, &bundle, key, &sig_path)
}

/// What a good certificate-mode signature says.
#[derive(Debug, Clone)]
pub struct VerifiedCertificate {
    /// As in key mode.
    pub verified: Verified,
    /// The signing certificate's subject.
    pub signer: String,
    /// The trusted root its chain ends at.
    pub root: String,
}

/// Verify a certificate-mode signature (`model_signing verify certificate`): the chain in the
/// signature leads to one of `roots` (see [`x509`]), then as [`verify`] with the leaf's key.
pub fn verify_certificate(
    dir: &Path,
    roots: &[x509_cert::Certificate],
    signature: Option<&Path>,
) -> Result<VerifiedCertificate, SignError> {
    let sig_path = signature.map_or_else(|| dir.join(DEFAULT_SIGNATURE), Path::to_path_buf);
    let text = std::fs::read_to_string(&sig_path).map_err(io(&sig_path))?;
    let bundle: Value =
        serde_json::from_str(&text).map_err(|e| SignError::Malformed(e.to_string()))?;
    let chain = certificate_chain(&bundle)?.ok_or_else(|| {
        SignError::WrongKey(
            "the signature has no certificate chain (it was made in key mode)".into(),
        )
    })?;
    let c = x509::verify_chain(&chain, roots)?;
    Ok(VerifiedCertificate {
        // the chain is trusted from here: a signature that does not verify was altered
        verified: verify_bundle(dir, &bundle, &c.key, &sig_path).map_err(|e| match e {
            SignError::WrongKey(m) => {
                SignError::Mismatch(format!("{m} (the signing certificate's)"))
            }
            e => e,
        })?,
        signer: c.leaf,
        root: c.root,
    })
}

/// The bundle's certificate chain, leaf first (`None`: a key-mode signature).
pub fn certificate_chain(bundle: &Value) -> Result<Option<Vec<x509_cert::Certificate>>, SignError> {
    use x509_cert::der::Decode;
    let Some(certs) = bundle.pointer("/verificationMaterial/x509CertificateChain/certificates")
    else {
        return Ok(None);
    };
    let certs = certs
        .as_array()
        .ok_or_else(|| SignError::Malformed("x509CertificateChain.certificates".into()))?;
    certs
        .iter()
        .map(|c| {
            let der = B64
                .decode(c["rawBytes"].as_str().unwrap_or_default())
                .map_err(|e| SignError::Malformed(format!("certificate: {e}")))?;
            x509_cert::Certificate::from_der(&der)
                .map_err(|e| SignError::Malformed(format!("certificate: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The envelope signed by `key`, the statement, and the files against it.
fn verify_bundle(
    dir: &Path,
    bundle: &Value,
    key: &VerifyingKey,
    sig_path: &Path,
) -> Result<Verified, SignError> {
    let field = |v: &Value, path: &str| -> Result<Value, SignError> {
        v.pointer(path)
            .cloned()
            .ok_or_else(|| SignError::Malformed(format!("no `{path}`")))
    };
    let env = field(bundle, "/dsseEnvelope")?;
    let payload_type = field(&env, "/payloadType")?;
    if payload_type != PAYLOAD_TYPE {
        return Err(SignError::Malformed(format!(
            "payload type {payload_type}, not {PAYLOAD_TYPE}"
        )));
    }
    let payload = B64
        .decode(field(&env, "/payload")?.as_str().unwrap_or_default())
        .map_err(|e| SignError::Malformed(format!("payload: {e}")))?;
    let sig = B64
        .decode(
            field(&env, "/signatures/0/sig")?
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| SignError::Malformed(format!("signature: {e}")))?;
    let sig = DerSignature::try_from(sig.as_slice())
        .map_err(|e| SignError::Malformed(format!("signature: {e}")))?;
    key.verify(&pae(PAYLOAD_TYPE, &payload), &sig)
        .map_err(|_| SignError::WrongKey("the signature was not made with this key".into()))?;
    // the payload is authentic from here on
    let st: Value = serde_json::from_slice(&payload)
        .map_err(|e| SignError::Malformed(format!("statement: {e}")))?;
    if st["_type"] != STATEMENT_TYPE || st["predicateType"] != PREDICATE_TYPE {
        return Err(SignError::Malformed(format!(
            "statement type {} / predicate type {}: expected {STATEMENT_TYPE} / {PREDICATE_TYPE}",
            st["_type"], st["predicateType"]
        )));
    }
    let subjects = st["subject"].as_array().cloned().unwrap_or_default();
    let [subject] = subjects.as_slice() else {
        return Err(SignError::Malformed("expected exactly one subject".into()));
    };
    let pred = &st["predicate"];
    let ser = &pred["serialization"];
    if ser["method"] != "files" || ser["hash_type"] != "sha256" {
        return Err(SignError::Malformed(format!(
            "serialization {ser}: only `files` with sha256 is read"
        )));
    }
    let mut signed = BTreeMap::new();
    let mut root = Sha256::new();
    for r in pred["resources"].as_array().cloned().unwrap_or_default() {
        let (Some(name), Some(digest)) = (r["name"].as_str(), r["digest"].as_str()) else {
            return Err(SignError::Malformed(format!("resource {r}")));
        };
        if r["algorithm"] != "sha256" {
            return Err(SignError::Malformed(format!("resource {name}: not sha256")));
        }
        let mut d = [0u8; 32];
        hex::decode_to_slice(digest, &mut d)
            .map_err(|_| SignError::Malformed(format!("resource {name}: digest")))?;
        root.update(d);
        signed.insert(name.to_string(), d);
    }
    if subject["digest"]["sha256"].as_str() != Some(&hex::encode(root.finalize())) {
        return Err(SignError::Mismatch(
            "the statement's root digest does not match its resources".into(),
        ));
    }
    // the files now, ignoring what the signer ignored (and always the signature itself)
    let mut ignore: Vec<String> = ser["ignore_paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(rel) = sig_path.strip_prefix(dir) {
        ignore.push(rel.to_string_lossy().replace('\\', "/"));
    }
    ignore.extend(GIT_PATHS.iter().map(|s| s.to_string()));
    let actual = manifest(dir, &ignore)?;
    let mut problems = Vec::new();
    for r in &actual {
        match signed.get(&r.name) {
            None => problems.push(format!("{} is not in the signature", r.name)),
            Some(d) if *d != r.sha256 => problems.push(format!("{} changed", r.name)),
            Some(_) => {}
        }
    }
    for name in signed.keys() {
        if !actual.iter().any(|r| &r.name == name) {
            problems.push(format!("{name} is missing"));
        }
    }
    if !problems.is_empty() {
        return Err(SignError::Mismatch(problems.join("; ")));
    }
    Ok(Verified {
        model_name: subject["name"].as_str().unwrap_or_default().to_string(),
        resources: actual,
        provenance: pred.get(PROVENANCE_KEY).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), b"{\"a\":1}").unwrap();
        std::fs::create_dir_all(d.path().join("weights")).unwrap();
        std::fs::write(d.path().join("weights/w.bin"), vec![7u8; 4096]).unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), b"ref").unwrap();
        d
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn sign_then_verify_and_every_tamper_fails() {
        let (private, public) = keygen().unwrap();
        let key = SigningKey::from_pkcs8_pem(&private).unwrap();
        let pubk = VerifyingKey::from_public_key_pem(&public).unwrap();
        let m = model();
        sign(m.path(), &key, None, Some(json!({"epsilon": 2.0}))).unwrap();
        let v = verify(m.path(), &pubk, None).unwrap();
        assert_eq!(
            v.resources.len(),
            2,
            "config.json and weights/w.bin, not .git"
        );
        assert_eq!(v.provenance, Some(json!({"epsilon": 2.0})));
        // another key
        let (_, other) = keygen().unwrap();
        let other = VerifyingKey::from_public_key_pem(&other).unwrap();
        assert!(matches!(
            verify(m.path(), &other, None),
            Err(SignError::WrongKey(_))
        ));
        // a changed, an added and a removed file
        std::fs::write(m.path().join("config.json"), b"{\"a\":2}").unwrap();
        let e = verify(m.path(), &pubk, None).unwrap_err().to_string();
        assert!(e.contains("config.json changed"), "{e}");
        std::fs::write(m.path().join("config.json"), b"{\"a\":1}").unwrap();
        std::fs::write(m.path().join("extra.py"), b"evil").unwrap();
        let e = verify(m.path(), &pubk, None).unwrap_err().to_string();
        assert!(e.contains("extra.py is not in the signature"), "{e}");
        std::fs::remove_file(m.path().join("extra.py")).unwrap();
        std::fs::remove_file(m.path().join("weights/w.bin")).unwrap();
        let e = verify(m.path(), &pubk, None).unwrap_err().to_string();
        assert!(e.contains("weights/w.bin is missing"), "{e}");
    }

    #[test]
    fn a_payload_edited_after_signing_fails() {
        let (private, public) = keygen().unwrap();
        let key = SigningKey::from_pkcs8_pem(&private).unwrap();
        let pubk = VerifyingKey::from_public_key_pem(&public).unwrap();
        let m = model();
        let mut b = sign(m.path(), &key, None, Some(json!({"epsilon": 2.0}))).unwrap();
        let payload = B64
            .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let forged = String::from_utf8(payload)
            .unwrap()
            .replace("\"epsilon\":2.0", "\"epsilon\":0.5");
        b["dsseEnvelope"]["payload"] = json!(B64.encode(forged));
        std::fs::write(m.path().join(DEFAULT_SIGNATURE), b.to_string()).unwrap();
        assert!(matches!(
            verify(m.path(), &pubk, None),
            Err(SignError::WrongKey(_))
        ));
    }
}
