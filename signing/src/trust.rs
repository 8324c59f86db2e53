//! Who may publish a model: the trusted keys (for every model, or per model name), whether an
//! unsigned model may load, and rules on the signed provenance (most ε, a data guard). The
//! gateway asks [`Trust::check`] before it loads any bundle or lets any adapter be routed; a
//! refusal says which of five things went wrong ([`RefusalKind`]), for the metric label, the
//! log line and the audit record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{DEFAULT_SIGNATURE, Resource, SignError, VerifyingKey, key_hint, read_public_key};

/// A public key the gateway trusts, with the label it is reported under (its file).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// Where the key came from (shown in listings and refusals).
    pub label: String,
    /// The key.
    pub key: VerifyingKey,
    /// Its hint (hex SHA-256 of its PEM), as signatures name it.
    pub hint: String,
}

impl TrustedKey {
    /// Read a SubjectPublicKeyInfo PEM P-256 key.
    pub fn load(path: &Path) -> Result<TrustedKey, SignError> {
        let key = read_public_key(path)?;
        Ok(TrustedKey {
            label: path.display().to_string(),
            hint: key_hint(&key)?,
            key,
        })
    }
}

/// CA root certificates trusted for certificate-mode signatures, with their label (file).
#[derive(Debug, Clone)]
pub struct TrustedRoots {
    /// Where they came from.
    pub label: String,
    /// The certificates.
    pub certs: Vec<x509_cert::Certificate>,
}

impl TrustedRoots {
    /// Read a PEM file of one or more CA certificates.
    pub fn load(path: &Path) -> Result<TrustedRoots, SignError> {
        Ok(TrustedRoots {
            label: path.display().to_string(),
            certs: crate::x509::read_certificates(path)?,
        })
    }
}

/// What the gateway accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Keys trusted for every model without an entry in `per_model`.
    pub keys: Vec<TrustedKey>,
    /// CA roots: certificate-mode signatures whose chain leads to one of them are trusted for
    /// every model without an entry in `per_model`.
    pub roots: Vec<TrustedRoots>,
    /// Keys trusted for one model name (instead of `keys`).
    pub per_model: BTreeMap<String, Vec<TrustedKey>>,
    /// Load models without a signature (a present signature must still verify).
    pub allow_unsigned: bool,
    /// Refuse models whose signed ε is above this (or that carry no signed ε).
    pub max_epsilon: Option<f64>,
    /// Refuse models whose provenance names no data guard (or a disabled one).
    pub require_data_guard: bool,
    /// Do not look at signatures at all (local tools reading bundles they were handed, such
    /// as `gateway check`); never the gateway's setting.
    pub ignore_signatures: bool,
}

/// Why a model was refused, as a closed set (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No signature, and unsigned models are refused.
    Unsigned,
    /// Signed, but not by a key trusted for this model.
    Untrusted,
    /// Signed by a trusted key, but the signature or the files do not match.
    Tampered,
    /// The signature file cannot be read as a model_signing bundle.
    Malformed,
    /// Authentic, but its provenance breaks a rule (ε, data guard).
    Policy,
}

impl RefusalKind {
    /// The label: `unsigned`, `untrusted`, `tampered`, `malformed`, `policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Unsigned => "unsigned",
            RefusalKind::Untrusted => "untrusted",
            RefusalKind::Tampered => "tampered",
            RefusalKind::Malformed => "malformed",
            RefusalKind::Policy => "policy",
        }
    }
}

/// A refused model: the kind and a message naming files and keys, never contents.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} ({}): {message}", kind.as_str(), self.dir.display())]
pub struct Refusal {
    /// Which check failed.
    pub kind: RefusalKind,
    /// The model folder.
    pub dir: PathBuf,
    /// What is wrong and what to do.
    pub message: String,
}

/// What a model that passed [`Trust::check`] is known to be.
#[derive(Debug, Clone, Default)]
pub struct Attestation {
    /// The trusted key that signed it (`None`: unsigned, allowed by `allow_unsigned`).
    pub signer: Option<String>,
    /// Every file and its digest, as verified (empty when unsigned).
    pub resources: Vec<Resource>,
    /// The signer's provenance (`predicate.portcullis`).
    pub provenance: Option<Value>,
}

impl Attestation {
    /// The signed ε (`privacy.epsilon`, or a top-level `epsilon`).
    pub fn epsilon(&self) -> Option<f64> {
        epsilon(self.provenance.as_ref())
    }

    /// The verified digest of a file, hex.
    pub fn digest(&self, name: &str) -> Option<String> {
        self.resources
            .iter()
            .find(|r| r.name == name)
            .map(|r| hex::encode(r.sha256))
    }
}

fn epsilon(p: Option<&Value>) -> Option<f64> {
    let p = p?;
    p.pointer("/privacy/epsilon")
        .or_else(|| p.get("epsilon"))
        .and_then(Value::as_f64)
}

fn data_guard(p: Option<&Value>) -> Option<String> {
    let g = p?.get("data_guard")?;
    let policy = g.get("policy").and_then(Value::as_str)?;
    (!policy.starts_with("disabled")).then(|| policy.to_string())
}

impl Trust {
    /// Trust nothing, allow everything unsigned: for tools that read bundles they made.
    pub fn unsigned_allowed() -> Trust {
        Trust {
            allow_unsigned: true,
            ..Trust::default()
        }
    }

    /// Do not look at signatures (see [`Trust::ignore_signatures`]).
    pub fn signatures_ignored() -> Trust {
        Trust {
            allow_unsigned: true,
            ignore_signatures: true,
            ..Trust::default()
        }
    }

    /// The keys trusted for `name`.
    pub fn keys_for(&self, name: &str) -> &[TrustedKey] {
        self.per_model.get(name).unwrap_or(&self.keys)
    }

    /// Check the model `name` in `dir` against its `model.sig`: signed by a key trusted for
    /// `name`, every file as signed, provenance within the rules. Hashes every file once.
    pub fn check(&self, name: &str, dir: &Path) -> Result<Attestation, Refusal> {
        let refuse = |kind, message: String| Refusal {
            kind,
            dir: dir.to_path_buf(),
            message,
        };
        let sig = dir.join(DEFAULT_SIGNATURE);
        let att = if self.ignore_signatures {
            Attestation::default()
        } else if !sig.exists() {
            if !self.allow_unsigned {
                return Err(refuse(
                    RefusalKind::Unsigned,
                    format!(
                        "no {DEFAULT_SIGNATURE}: the model is not signed (sign it with \
                         `trainer-sidecar sign` or `model_signing sign key`, or set \
                         models.trust.unsigned: allow)"
                    ),
                ));
            }
            Attestation::default()
        } else {
            self.verify(name, dir, &sig)
                .map_err(|(k, m)| refuse(k, m))?
        };
        if let Some(max) = self.max_epsilon {
            match att.epsilon() {
                None => {
                    return Err(refuse(
                        RefusalKind::Policy,
                        format!(
                            "the signature carries no ε (models.trust.max_epsilon is {max}: \
                             only models trained with differential privacy load)"
                        ),
                    ));
                }
                Some(e) if e.is_nan() || e > max => {
                    return Err(refuse(
                        RefusalKind::Policy,
                        format!("signed ε = {e} is above models.trust.max_epsilon = {max}"),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.require_data_guard && data_guard(att.provenance.as_ref()).is_none() {
            return Err(refuse(
                RefusalKind::Policy,
                "the signed provenance names no data guard (models.trust.require_data_guard)"
                    .into(),
            ));
        }
        Ok(att)
    }

    fn verify_certificate(
        &self,
        name: &str,
        dir: &Path,
        sig: &Path,
    ) -> Result<Attestation, (RefusalKind, String)> {
        if self.per_model.contains_key(name) || self.roots.is_empty() {
            return Err((
                RefusalKind::Untrusted,
                format!(
                    "signed in certificate mode, and no CA root is trusted for model `{name}` \
                     ({})",
                    if self.per_model.contains_key(name) {
                        "it has its own keys under trust.models"
                    } else {
                        "trust.roots is empty"
                    }
                ),
            ));
        }
        let roots: Vec<x509_cert::Certificate> =
            self.roots.iter().flat_map(|r| r.certs.clone()).collect();
        match crate::verify_certificate(dir, &roots, Some(sig)) {
            Ok(v) => Ok(Attestation {
                signer: Some(format!("{} (CA: {})", v.signer, v.root)),
                resources: v.verified.resources,
                provenance: v.verified.provenance,
            }),
            // a chain to no trusted root, or a leaf that may not sign
            Err(SignError::WrongKey(m)) => Err((RefusalKind::Untrusted, m)),
            Err(SignError::Mismatch(m) | SignError::Model(m)) => Err((RefusalKind::Tampered, m)),
            Err(e) => Err((RefusalKind::Malformed, e.to_string())),
        }
    }

    fn verify(
        &self,
        name: &str,
        dir: &Path,
        sig: &Path,
    ) -> Result<Attestation, (RefusalKind, String)> {
        let bundle: Option<Value> = std::fs::read(sig)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let chain = match bundle.as_ref().map(crate::certificate_chain) {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err((RefusalKind::Malformed, e.to_string())),
            None => None,
        };
        if chain.is_some() {
            return self.verify_certificate(name, dir, sig);
        }
        let keys = self.keys_for(name);
        if keys.is_empty() {
            return Err((
                RefusalKind::Untrusted,
                format!(
                    "no key is trusted for model `{name}` (models.trust.keys{})",
                    if self.per_model.contains_key(name) {
                        format!(" or models.trust.models.{name}")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        let hint = bundle.as_ref().and_then(|v| {
            v.pointer("/verificationMaterial/publicKey/hint")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
        });
        let candidates: Vec<&TrustedKey> = match &hint {
            Some(h) => {
                let named: Vec<_> = keys.iter().filter(|k| &k.hint == h).collect();
                if named.is_empty() {
                    return Err((
                        RefusalKind::Untrusted,
                        format!(
                            "signed by a key not trusted for model `{name}` (key hint {}…)",
                            &h[..h.len().min(16)]
                        ),
                    ));
                }
                named
            }
            None => keys.iter().collect(),
        };
        let mut last = None;
        for k in candidates {
            match crate::verify(dir, &k.key, Some(sig)) {
                Ok(v) => {
                    return Ok(Attestation {
                        signer: Some(k.label.clone()),
                        resources: v.resources,
                        provenance: v.provenance,
                    });
                }
                Err(SignError::WrongKey(m)) => last = Some(m),
                Err(SignError::Mismatch(m)) => return Err((RefusalKind::Tampered, m)),
                Err(SignError::Model(m)) => return Err((RefusalKind::Tampered, m)),
                Err(
                    e @ (SignError::Malformed(_) | SignError::Io { .. } | SignError::Key { .. }),
                ) => {
                    return Err((RefusalKind::Malformed, e.to_string()));
                }
            }
        }
        Err(match hint {
            // it names a trusted key, and that key did not make it: forged or edited
            Some(_) => (
                RefusalKind::Tampered,
                "the signature does not verify under the trusted key it names".into(),
            ),
            None => (
                RefusalKind::Untrusted,
                format!(
                    "not signed by any key trusted for model `{name}` ({})",
                    last.unwrap_or_default()
                ),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningKey, keygen_to, read_private_key, sign};
    use serde_json::json;

    fn setup() -> (tempfile::TempDir, SigningKey, TrustedKey) {
        let d = tempfile::tempdir().unwrap();
        let (private, public) = keygen_to(&d.path().join("keys")).unwrap();
        let m = d.path().join("m");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("manifest.json"), b"{}").unwrap();
        std::fs::write(m.join("w.bin"), vec![1u8; 1000]).unwrap();
        (
            d,
            read_private_key(&private).unwrap(),
            TrustedKey::load(&public).unwrap(),
        )
    }

    fn trust(k: &TrustedKey) -> Trust {
        Trust {
            keys: vec![k.clone()],
            ..Trust::default()
        }
    }

    #[test]
    fn each_way_of_failing_has_its_kind() {
        let (d, key, tk) = setup();
        let m = d.path().join("m");
        let t = trust(&tk);
        assert_eq!(t.check("m", &m).unwrap_err().kind, RefusalKind::Unsigned);
        assert!(Trust::unsigned_allowed().check("m", &m).is_ok());
        sign(&m, &key, None, Some(json!({"privacy": {"epsilon": 3.0}}))).unwrap();
        let a = t.check("m", &m).unwrap();
        assert_eq!(a.epsilon(), Some(3.0));
        assert_eq!(a.signer.as_deref(), Some(tk.label.as_str()));
        assert!(a.digest("w.bin").is_some());
        // a present signature must verify even when unsigned models are allowed
        let other = tempfile::tempdir().unwrap();
        let (_, opub) = keygen_to(other.path()).unwrap();
        let stranger = Trust {
            allow_unsigned: true,
            ..trust(&TrustedKey::load(&opub).unwrap())
        };
        assert_eq!(
            stranger.check("m", &m).unwrap_err().kind,
            RefusalKind::Untrusted
        );
        // per-model keys replace the global ones
        let mut scoped = trust(&tk);
        scoped
            .per_model
            .insert("m".into(), vec![TrustedKey::load(&opub).unwrap()]);
        assert_eq!(
            scoped.check("m", &m).unwrap_err().kind,
            RefusalKind::Untrusted
        );
        assert!(scoped.check("other", &m).is_ok());
        // tampered
        std::fs::write(m.join("w.bin"), vec![2u8; 1000]).unwrap();
        let e = t.check("m", &m).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Tampered, "{e}");
        assert!(e.to_string().contains("w.bin changed"), "{e}");
        std::fs::write(m.join("w.bin"), vec![1u8; 1000]).unwrap();
        std::fs::write(m.join("model.sig"), b"not json").unwrap();
        assert_eq!(t.check("m", &m).unwrap_err().kind, RefusalKind::Malformed);
    }

    #[test]
    fn provenance_rules() {
        let (d, key, tk) = setup();
        let m = d.path().join("m");
        let rules = |max: Option<f64>, guard: bool| Trust {
            max_epsilon: max,
            require_data_guard: guard,
            ..trust(&tk)
        };
        sign(&m, &key, None, Some(json!({"privacy": {"epsilon": 8.0}}))).unwrap();
        assert!(rules(Some(8.0), false).check("m", &m).is_ok());
        let e = rules(Some(4.0), false).check("m", &m).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Policy);
        assert!(e.message.contains("ε = 8"), "{e}");
        assert_eq!(
            rules(None, true).check("m", &m).unwrap_err().kind,
            RefusalKind::Policy
        );
        sign(
            &m,
            &key,
            None,
            Some(json!({"data_guard": {"policy": "disabled: the data was trained on as it is"}})),
        )
        .unwrap();
        assert_eq!(
            rules(Some(8.0), false).check("m", &m).unwrap_err().kind,
            RefusalKind::Policy,
            "no ε signed means no DP"
        );
        assert_eq!(
            rules(None, true).check("m", &m).unwrap_err().kind,
            RefusalKind::Policy
        );
        sign(
            &m,
            &key,
            None,
            Some(
                json!({"data_guard": {"policy": "training-data v1"}, "privacy": {"epsilon": 1.0}}),
            ),
        )
        .unwrap();
        assert!(rules(Some(2.0), true).check("m", &m).is_ok());
        // an unsigned model cannot meet a rule, even when unsigned models load
        std::fs::remove_file(m.join("model.sig")).unwrap();
        let t = Trust {
            allow_unsigned: true,
            ..rules(Some(8.0), false)
        };
        assert_eq!(t.check("m", &m).unwrap_err().kind, RefusalKind::Policy);
    }

    #[test]
    fn certificate_mode_trusts_roots_not_keys() {
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("w.bin"), vec![3u8; 100]).unwrap();
        let leaf_key = read_private_key(&fx.join("leaf-key.pem")).unwrap();
        crate::sign_with_certificate(
            &m,
            &leaf_key,
            &fx.join("leaf.pem"),
            &[fx.join("intermediate.pem")],
            None,
            Some(json!({"privacy": {"epsilon": 2.0}})),
        )
        .unwrap();
        let roots = |f: &str| Trust {
            roots: vec![TrustedRoots::load(&fx.join(f)).unwrap()],
            ..Trust::default()
        };
        let a = roots("root.pem").check("m", &m).unwrap();
        assert!(
            a.signer
                .as_deref()
                .is_some_and(|s| s.contains("trainer-sidecar"))
        );
        assert_eq!(a.epsilon(), Some(2.0));
        let e = roots("other-root.pem").check("m", &m).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Untrusted, "{e}");
        // keys alone do not trust a certificate-mode signature
        let (_, _, tk) = setup();
        assert_eq!(
            trust(&tk).check("m", &m).unwrap_err().kind,
            RefusalKind::Untrusted
        );
        // per-model keys take the model out of the roots' reach
        let mut scoped = roots("root.pem");
        scoped.per_model.insert("m".into(), vec![tk]);
        assert_eq!(
            scoped.check("m", &m).unwrap_err().kind,
            RefusalKind::Untrusted
        );
        // a changed file
        std::fs::write(m.join("w.bin"), vec![4u8; 100]).unwrap();
        assert_eq!(
            roots("root.pem").check("m", &m).unwrap_err().kind,
            RefusalKind::Tampered
        );
        // a certificate whose key is not the signing key is refused at signing
        assert!(
            crate::sign_with_certificate(&m, &leaf_key, &fx.join("nousage.pem"), &[], None, None)
                .is_err()
        );
    }
}
