//! Model bundles on disk: `models/<name>/<version>/manifest.json` and the files it lists.
//!
//! The manifest names every file of the bundle with its SHA-256; [`Bundle::open`] refuses a
//! bundle whose files do not match, lists files the manifest does not name, or names files
//! outside the bundle folder. Signatures live beside the manifest in `model.sig` (OpenSSF
//! model_signing, checked by [`signing::Trust`] before the bundle is opened): a verified
//! bundle is opened with [`Bundle::open_attested`], which takes the digests the signature
//! check computed instead of hashing every file twice. The manifest's own `signature` member
//! is a leftover of format 1 and must be absent or null.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelError;

/// The manifest format this build reads.
pub const FORMAT: u32 = 1;

/// `manifest.json` as written by `models/build/build_guard.py` (and [`write_manifest`]).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version ([`FORMAT`]).
    pub format: u32,
    /// Bundle name (the folder under the registry root).
    pub name: String,
    /// Version (the folder under the name).
    pub version: String,
    /// When the bundle was made (RFC 3339).
    pub created: String,
    /// The encoder and how to cut text for it.
    pub encoder: EncoderSpec,
    /// Heads reading the encoder's `features`.
    #[serde(default)]
    pub heads: Vec<HeadSpec>,
    /// The entity head reading the encoder's per-token `tokens` output (person names, street
    /// addresses), if the bundle has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<EntitySpec>,
    /// Every file of the bundle but the manifest: relative path → lowercase hex SHA-256.
    pub files: BTreeMap<String, String>,
    /// Unused (must be absent or null): the signature is the `model.sig` file beside the
    /// manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<serde_json::Value>,
}

/// The encoder of a bundle.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// ONNX file (inputs `input_ids`, `attention_mask`; outputs named in `outputs`).
    pub file: String,
    /// `tokenizer.json` of the Hugging Face `tokenizers` library.
    pub tokenizer: String,
    /// Width of the sentence embedding.
    pub dim: usize,
    /// Width of the head features.
    pub features: usize,
    /// Longest window in tokens, special tokens included.
    pub max_tokens: usize,
    /// Tokens shared by consecutive windows of a long text.
    pub window_overlap: usize,
    /// Output names: `embedding` (L2-normalised sentence embedding) and `features`.
    pub outputs: EncoderOutputs,
    /// Width of each token's state in the `tokens` output (needed with an entity head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_dim: Option<usize>,
}

/// Output names of the encoder graph.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncoderOutputs {
    /// Sentence embedding output (`[batch, dim]`).
    pub embedding: String,
    /// Head features output (`[batch, features]`).
    pub features: String,
    /// Per-token states output (`[batch, seq, token_dim]`), read by the entity head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
}

/// The entity head: a per-token BIO tagger on the encoder's `tokens` output.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    /// Safetensors file holding the head (default `heads.safetensors`).
    #[serde(default = "default_heads_file")]
    pub file: String,
    /// Tensor name prefix, as for [`HeadSpec::tensors`].
    pub tensors: String,
    /// `mlp` or `linear`.
    pub kind: String,
    /// The output units' labels: `O`, then `B-<TYPE>` / `I-<TYPE>` pairs; the types are finding
    /// types in upper case (`PERSON`, `ADDRESS`).
    pub labels: Vec<String>,
    /// A token is part of an entity when `1 - p(O)` reaches this (softmax over the outputs).
    pub threshold: f64,
    /// Tokens on each side whose hidden units the output layer reads besides the token's own
    /// (0: each token alone; needs an `mlp` head when above 0).
    #[serde(default)]
    pub context: usize,
    /// How the threshold was chosen.
    #[serde(default)]
    pub calibration: Option<String>,
}

/// One classifier head.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Head name (`injection`, `toxicity`).
    pub name: String,
    /// Safetensors file holding the head (default `heads.safetensors`).
    #[serde(default = "default_heads_file")]
    pub file: String,
    /// Tensor name prefix: layers are `<tensors>.<i>.weight` / `.bias`, ReLU between.
    pub tensors: String,
    /// `mlp` (linear layers with ReLU between) or `linear` (one layer).
    pub kind: String,
    /// `sigmoid`: the score is the sigmoid of the single output.
    pub activation: String,
    /// Decision threshold on the logit (the calibrated operating point).
    pub threshold_logit: f64,
    /// How the threshold was chosen.
    #[serde(default)]
    pub calibration: Option<String>,
    /// More calibrated operating points by name (`strict`: a lower threshold, more recall for
    /// more false positives); a policy picks one with `classifiers.operating_point`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub operating_points: std::collections::BTreeMap<String, f64>,
}

fn default_heads_file() -> String {
    "heads.safetensors".to_string()
}

/// An opened, verified bundle: its manifest, folder and manifest digest.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle folder.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// SHA-256 of `manifest.json` (identifies the bundle: it pins every file).
    pub digest: String,
}

impl Bundle {
    /// Read `dir/manifest.json` and check every listed file's SHA-256.
    pub fn open(dir: &Path) -> Result<Bundle, ModelError> {
        Bundle::open_attested(dir, &signing::Attestation::default())
    }

    /// Like [`Bundle::open`], with the digests a signature check computed (`att.resources`):
    /// every listed file, and the manifest itself, must be covered by the signature with the
    /// same digest, so nothing is hashed twice. An attestation without resources (an unsigned
    /// bundle) falls back to hashing.
    pub fn open_attested(dir: &Path, att: &signing::Attestation) -> Result<Bundle, ModelError> {
        let mpath = dir.join("manifest.json");
        let raw = std::fs::read(&mpath).map_err(|e| ModelError::io(&mpath, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&raw).map_err(|e| ModelError::Manifest {
                path: mpath.clone(),
                message: e.to_string(),
            })?;
        let bad = |message: String| ModelError::Manifest {
            path: mpath.clone(),
            message,
        };
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "manifest format {} is not supported (this gateway reads format {FORMAT})",
                manifest.format
            )));
        }
        if manifest.signature.as_ref().is_some_and(|s| !s.is_null()) {
            return Err(bad(format!(
                "the manifest's `signature` member is not read: sign the bundle folder into \
                 {} beside the manifest (`trainer-sidecar sign`) and drop the member",
                signing::DEFAULT_SIGNATURE
            )));
        }
        for name in manifest.files.keys() {
            if !is_plain_relative(name) {
                return Err(bad(format!(
                    "file `{name}` is not a plain path inside the bundle"
                )));
            }
        }
        let mut needed = vec![
            manifest.encoder.file.clone(),
            manifest.encoder.tokenizer.clone(),
        ];
        needed.extend(manifest.heads.iter().map(|h| h.file.clone()));
        needed.extend(manifest.entities.iter().map(|h| h.file.clone()));
        if manifest.entities.is_some()
            && (manifest.encoder.outputs.tokens.is_none() || manifest.encoder.token_dim.is_none())
        {
            return Err(bad(
                "`entities` needs the encoder's `outputs.tokens` and `token_dim`".into(),
            ));
        }
        for n in &needed {
            if !manifest.files.contains_key(n) {
                return Err(bad(format!(
                    "`{n}` is used but not listed under `files` (every file must have a digest)"
                )));
            }
        }
        let digest = hex::encode(Sha256::digest(&raw));
        if !att.resources.is_empty() && att.digest("manifest.json").as_deref() != Some(&digest) {
            return Err(bad(
                "the manifest read is not the one the signature covers (changed since?)".into(),
            ));
        }
        for (name, want) in &manifest.files {
            let path = dir.join(name);
            let got = if att.resources.is_empty() {
                sha256_file(&path)?
            } else {
                att.digest(name).ok_or_else(|| {
                    bad(format!(
                        "`{name}` is listed but not covered by the signature"
                    ))
                })?
            };
            if !got.eq_ignore_ascii_case(want) {
                return Err(ModelError::Digest {
                    path,
                    expected: want.clone(),
                    actual: got,
                });
            }
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            digest,
        })
    }

    /// Path of a file of the bundle.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn is_plain_relative(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Recompute `files` for every file in `dir` (but the manifest) and write `manifest.json`
/// atomically. For tools and tests that make or edit bundles.
pub fn write_manifest(dir: &Path, manifest: &mut Manifest) -> Result<(), ModelError> {
    manifest.files.clear();
    let rd = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "manifest.json"
            || name == signing::DEFAULT_SIGNATURE
            || name.starts_with('.')
            || !entry.path().is_file()
        {
            continue;
        }
        let digest = sha256_file(&entry.path())?;
        manifest.files.insert(name, digest);
    }
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| ModelError::Manifest {
        path: dir.join("manifest.json"),
        message: e.to_string(),
    })?;
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, json).map_err(|e| ModelError::io(&tmp, e))?;
    let dest = dir.join("manifest.json");
    std::fs::rename(&tmp, &dest).map_err(|e| ModelError::io(&dest, e))
}

/// Versions of a bundle name under `root/name`, oldest first. A version is a folder with a
/// `manifest.json` whose name is made of digits and dots (`1`, `2`, `1.10`); they compare
/// numerically part by part. Folders starting with `.` (bundles being written) are skipped.
pub fn versions(root: &Path, name: &str) -> Result<Vec<String>, ModelError> {
    versions_with(root, name, "manifest.json")
}

/// The version after the newest of `root/name` (`1` when there is none), by its major part:
/// what a publisher names its next folder.
pub fn next_version(root: &Path, name: &str, marker: &str) -> String {
    versions_with(root, name, marker)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.split('.').next().and_then(|m| m.parse::<u64>().ok()))
        .max()
        .map_or(1, |m| m + 1)
        .to_string()
}

/// [`versions`] of folders holding `marker` instead of `manifest.json` (LoRA adapters:
/// `adapter_config.json`).
pub fn versions_with(root: &Path, name: &str, marker: &str) -> Result<Vec<String>, ModelError> {
    let dir = root.join(name);
    let rd = std::fs::read_dir(&dir).map_err(|e| ModelError::io(&dir, e))?;
    let mut out: Vec<(Vec<u64>, String)> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| ModelError::io(&dir, e))?;
        let v = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = version_key(&v) else {
            continue;
        };
        if entry.path().join(marker).is_file() {
            out.push((key, v));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// A version folder name as numbers to compare part by part (`1.10` > `1.9`); `None` for a
/// name that is not a version (`latest`, `.2.tmp`).
pub fn version_key(v: &str) -> Option<Vec<u64>> {
    if v.is_empty() || v.starts_with('.') {
        return None;
    }
    v.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            name: "m".into(),
            version: "1".into(),
            created: "2026-11-23T00:00:00Z".into(),
            encoder: EncoderSpec {
                file: "encoder.onnx".into(),
                tokenizer: "tokenizer.json".into(),
                dim: 4,
                features: 8,
                max_tokens: 16,
                window_overlap: 2,
                outputs: EncoderOutputs {
                    embedding: "embedding".into(),
                    features: "features".into(),
                    tokens: None,
                },
                token_dim: None,
            },
            heads: vec![],
            entities: None,
            files: BTreeMap::new(),
            signature: None,
        }
    }

    #[test]
    fn digests_are_checked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("encoder.onnx"), b"onnx").unwrap();
        std::fs::write(d.path().join("tokenizer.json"), b"{}").unwrap();
        let mut m = manifest();
        write_manifest(d.path(), &mut m).unwrap();
        let b = Bundle::open(d.path()).unwrap();
        assert_eq!(b.manifest.files.len(), 2);
        // One changed byte is caught and named.
        std::fs::write(d.path().join("encoder.onnx"), b"onnX").unwrap();
        let e = Bundle::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("encoder.onnx") && e.contains("SHA-256"), "{e}");
    }

    #[test]
    fn unlisted_and_escaping_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("encoder.onnx"), b"onnx").unwrap();
        let mut m = manifest();
        m.files.insert(
            "encoder.onnx".into(),
            sha256_file(&d.path().join("encoder.onnx")).unwrap(),
        );
        std::fs::write(
            d.path().join("manifest.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        let e = Bundle::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("not listed"),
            "{e}"
        );
        m.files.insert("../x".into(), "00".into());
        std::fs::write(
            d.path().join("manifest.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        let e = Bundle::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a plain path"), "{e}");
    }

    #[test]
    fn signed_bundles_are_not_silently_accepted() {
        let d = tempfile::tempdir().unwrap();
        let mut m = manifest();
        m.signature = Some(serde_json::json!({"sig": "x"}));
        std::fs::write(
            d.path().join("manifest.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        let e = Bundle::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("model.sig"), "{e}");
    }

    #[test]
    fn an_attested_bundle_uses_the_signed_digests() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("encoder.onnx"), b"onnx").unwrap();
        std::fs::write(d.path().join("tokenizer.json"), b"{}").unwrap();
        write_manifest(d.path(), &mut manifest()).unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (private, pubp) = signing::keygen_to(keys.path()).unwrap();
        let key = signing::read_private_key(&private).unwrap();
        signing::sign(d.path(), &key, None, None).unwrap();
        let trust = signing::Trust {
            keys: vec![signing::TrustedKey::load(&pubp).unwrap()],
            ..signing::Trust::default()
        };
        let att = trust.check("m", d.path()).unwrap();
        let b = Bundle::open_attested(d.path(), &att).unwrap();
        assert_eq!(b.manifest.files.len(), 2, "model.sig is not a bundle file");
        // a manifest digest the signature does not cover is refused without hashing
        let mut forged = att.clone();
        forged.resources.retain(|r| r.name != "tokenizer.json");
        let e = Bundle::open_attested(d.path(), &forged)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not covered by the signature"), "{e}");
    }

    #[test]
    fn the_next_version_follows_the_newest_folder_with_the_marker() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(next_version(d.path(), "a", "adapter_config.json"), "1");
        for v in ["1", "2", ".3.tmp"] {
            let p = d.path().join("a").join(v);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("adapter_config.json"), b"{}").unwrap();
        }
        assert_eq!(next_version(d.path(), "a", "adapter_config.json"), "3");
        // folders without the marker do not count (an adapter has no manifest.json)
        assert_eq!(next_version(d.path(), "a", "manifest.json"), "1");
    }

    #[test]
    fn versions_sort_numerically_and_skip_partial_ones() {
        let d = tempfile::tempdir().unwrap();
        for v in ["1", "2", "10", "1.5", ".3.tmp", "latest"] {
            let p = d.path().join("m").join(v);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("manifest.json"), b"{}").unwrap();
        }
        std::fs::create_dir_all(d.path().join("m/11")).unwrap(); // no manifest yet
        assert_eq!(versions(d.path(), "m").unwrap(), ["1", "1.5", "2", "10"]);
    }
}
