//! Certificate mode: the signing key comes with an X.509 chain (leaf first) in the bundle's
//! `verificationMaterial.x509CertificateChain`, as `model_signing sign certificate` writes it,
//! and a verifier trusts CA roots instead of keys. What `model_signing verify certificate`
//! checks, checked the same way:
//!
//! - a path from the leaf through the bundle's certificates to a trusted root: each link's
//!   issuer name matches, the issuer is a CA (basic constraints) and its key made the child's
//!   ECDSA P-256 / SHA-256 signature;
//! - every certificate of the path valid at the leaf's `notBefore` (the moment of signing, as
//!   model_signing sets its store's time: a signature outlives its certificate);
//! - the leaf may sign: key usage `digitalSignature`, or extended key usage `codeSigning`.
//!
//! Only P-256 keys and ECDSA-with-SHA-256 certificate signatures are read; anything else is
//! refused by name. Works offline: no revocation lists, no OCSP, no transparency log.

use std::path::Path;

use p256::ecdsa::DerSignature;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey;
use x509_cert::Certificate;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use crate::{SignError, VerifyingKey};

/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
/// id-kp-codeSigning (RFC 5280).
const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
/// Longest path looked for (leaf, intermediates, root).
const MAX_DEPTH: usize = 8;

/// Read every certificate of a PEM file (one or several).
pub fn read_certificates(path: &Path) -> Result<Vec<Certificate>, SignError> {
    let bytes = std::fs::read(path).map_err(|source| SignError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = Certificate::load_pem_chain(&bytes).map_err(|e| SignError::Key {
        path: path.to_path_buf(),
        message: format!("not PEM X.509 certificates ({e})"),
    })?;
    if certs.is_empty() {
        return Err(SignError::Key {
            path: path.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// DER of a certificate.
pub fn der(cert: &Certificate) -> Result<Vec<u8>, SignError> {
    cert.to_der()
        .map_err(|e| SignError::Malformed(format!("certificate: {e}")))
}

/// A certificate's subject, for messages.
pub fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

/// The P-256 public key a certificate certifies.
pub fn public_key(cert: &Certificate) -> Result<VerifyingKey, SignError> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| SignError::Malformed(format!("certificate key: {e}")))?;
    VerifyingKey::from_public_key_der(&spki).map_err(|_| {
        SignError::Malformed(format!(
            "the certificate of {} does not hold an ECDSA P-256 key (the only kind read)",
            subject(cert)
        ))
    })
}

fn extension<T: AssociatedOid + for<'a> Decode<'a>>(cert: &Certificate) -> Option<T> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == T::OID)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}

fn is_ca(cert: &Certificate) -> bool {
    extension::<BasicConstraints>(cert).is_some_and(|b| b.ca)
}

fn valid_at(cert: &Certificate, t: std::time::Duration) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_before.to_unix_duration() <= t && t <= v.not_after.to_unix_duration()
}

/// Whether `issuer`'s key made `child`'s signature.
fn signed_by(child: &Certificate, issuer: &Certificate) -> bool {
    if child.signature_algorithm.oid.to_string() != ECDSA_SHA256 {
        return false;
    }
    let (Ok(key), Ok(tbs), Some(sig)) = (
        public_key(issuer),
        child.tbs_certificate.to_der(),
        child.signature.as_bytes(),
    ) else {
        return false;
    };
    DerSignature::try_from(sig).is_ok_and(|s| key.verify(&tbs, &s).is_ok())
}

/// What a verified chain says.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The leaf's key: the one that must have made the model signature.
    pub key: VerifyingKey,
    /// The leaf's subject.
    pub leaf: String,
    /// The trusted root the path ends at.
    pub root: String,
}

/// Check the bundle's chain (`chain[0]` the leaf) against trusted `roots`; the leaf's key.
pub fn verify_chain(chain: &[Certificate], roots: &[Certificate]) -> Result<Chain, SignError> {
    let Some(leaf) = chain.first() else {
        return Err(SignError::Malformed(
            "the certificate chain is empty".into(),
        ));
    };
    let untrusted = |m: String| SignError::WrongKey(m);
    let at = leaf.tbs_certificate.validity.not_before.to_unix_duration();
    let root_ders: Vec<Vec<u8>> = roots.iter().filter_map(|r| r.to_der().ok()).collect();
    let mut current = leaf;
    let mut path = vec![leaf];
    let root = loop {
        if !valid_at(current, at) {
            return Err(untrusted(format!(
                "{} was not valid when the leaf certificate was issued",
                subject(current)
            )));
        }
        if current.to_der().is_ok_and(|d| root_ders.contains(&d)) {
            break current;
        }
        if path.len() > MAX_DEPTH {
            return Err(untrusted(format!(
                "no trusted root within {MAX_DEPTH} certificates"
            )));
        }
        let issuer = roots
            .iter()
            .chain(chain.iter().skip(1))
            .find(|c| {
                c.tbs_certificate.subject == current.tbs_certificate.issuer
                    && is_ca(c)
                    && signed_by(current, c)
            })
            .ok_or_else(|| {
                untrusted(format!(
                    "the certificate of {} was not issued by a trusted CA (or an intermediate \
                     in the signature that leads to one)",
                    subject(current)
                ))
            })?;
        current = issuer;
        path.push(issuer);
    };
    let usage = extension::<KeyUsage>(leaf).is_some_and(|k| k.digital_signature())
        || extension::<ExtendedKeyUsage>(leaf)
            .is_some_and(|e| e.0.iter().any(|o| o.to_string() == CODE_SIGNING));
    if !usage {
        return Err(untrusted(format!(
            "the certificate of {} may not sign (no digitalSignature key usage, no codeSigning \
             extended key usage)",
            subject(leaf)
        )));
    }
    Ok(Chain {
        key: public_key(leaf)?,
        leaf: subject(leaf),
        root: subject(root),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<Certificate> {
        read_certificates(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn chains_to_a_trusted_root_or_not() {
        let (root, inter, leaf) = (
            fixture("root.pem"),
            fixture("intermediate.pem"),
            fixture("leaf.pem"),
        );
        let chain = [leaf[0].clone(), inter[0].clone()];
        let c = verify_chain(&chain, &root).unwrap();
        assert!(c.leaf.contains("trainer-sidecar"), "{}", c.leaf);
        assert!(c.root.contains("Test Root"), "{}", c.root);
        // the intermediate trusted directly also ends a path (it is in the store)
        assert!(verify_chain(&chain, &inter).is_ok());
        // without the intermediate, nothing links the leaf to the root
        let e = verify_chain(&chain[..1], &root).unwrap_err().to_string();
        assert!(e.contains("not issued by a trusted CA"), "{e}");
        // another root
        let e = verify_chain(&chain, &fixture("other-root.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not issued by a trusted CA"), "{e}");
        // a leaf that may not sign
        let nouse = [fixture("nousage.pem")[0].clone(), inter[0].clone()];
        let e = verify_chain(&nouse, &root).unwrap_err().to_string();
        assert!(e.contains("may not sign"), "{e}");
        // a leaf acting as a CA for another certificate: not a CA (basic constraints)
        let forged = [
            fixture("byleaf.pem")[0].clone(),
            leaf[0].clone(),
            inter[0].clone(),
        ];
        let e = verify_chain(&forged, &root).unwrap_err().to_string();
        assert!(e.contains("issued-by-a-leaf"), "{e}");
    }
}
