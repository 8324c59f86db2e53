//! `audit:`: the audit trail's folder, rotation, retention and signing key. The runtime type
//! is `crate::audit::AuditConfig`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Check;
use crate::audit::{AuditConfig, AuditKey};

/// `audit:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Folder of the audit files (relative to this config file).
    pub dir: PathBuf,
    /// Rotate a file after this many bytes.
    #[serde(default = "default_audit_bytes")]
    pub max_file_bytes: u64,
    /// Rotate a file after this long (`1h`, `1d`).
    #[serde(default = "default_audit_age", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_file_age: Duration,
    /// Records queued for the writer before `on_full` applies.
    #[serde(default = "default_audit_capacity")]
    pub channel_capacity: usize,
    /// `drop` (count and go on) or `block` (the request waits for the writer).
    #[serde(default = "default_on_full")]
    pub on_full: crate::audit::OnFull,
    /// A file holding the key (at least 16 bytes) that signs `audit.head` and the checkpoints
    /// (HMAC-SHA256), relative to this config file; created with a random key (mode 0600) when
    /// missing. Keep it outside the audit folder, readable by the gateway only: whoever can
    /// write the folder without it cannot rewrite the chain.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Or an environment variable holding that key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// A checkpoint (record number, hash, MAC) in `audit.checkpoints` and the log every this
    /// many records (0: none).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Retention: keep at most this many files (the oldest are deleted after a rotation).
    #[serde(default)]
    pub max_files: Option<usize>,
    /// Retention: delete files last written longer ago than this (`30d`).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Duration>,
}

fn default_checkpoint_every() -> u64 {
    1000
}

/// The audit key file's bytes; a missing file is created with 32 random bytes (hex), readable
/// by this user only, so a fresh install signs its trail from the first record.
fn read_or_create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key = hex::encode(bytes);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(key.as_bytes())?;
            tracing::info!(path = %path.display(), "audit: created a new signing key");
            Ok(key.into_bytes())
        }
        other => other,
    }
}

fn default_audit_bytes() -> u64 {
    64 << 20
}

fn default_audit_age() -> Duration {
    Duration::from_secs(86_400)
}

fn default_audit_capacity() -> usize {
    8192
}

fn default_on_full() -> crate::audit::OnFull {
    crate::audit::OnFull::Drop
}

pub(super) fn check(cx: &mut Check<'_>) -> Option<AuditConfig> {
    let a = cx.file().audit.as_ref()?;
    let base = cx.base();
    let dir = base.join(&a.dir);
    let key = match (&a.key_file, &a.key_env) {
        (Some(_), Some(_)) => {
            cx.err("audit", "give `key_file` or `key_env`, not both");
            None
        }
        (Some(f), None) => {
            let f = base.join(f);
            let inside = match (f.canonicalize(), dir.canonicalize()) {
                (Ok(k), Ok(d)) => k.starts_with(d),
                _ => f.starts_with(&dir),
            };
            if inside {
                cx.err(
                    "audit.key_file",
                    "the key must live outside the audit folder: whoever can write the folder could otherwise re-sign it",
                );
                None
            } else {
                match read_or_create_key(&f) {
                    Ok(b) => match AuditKey::new(&b) {
                        Ok(k) => Some(k),
                        Err(e) => {
                            cx.err("audit.key_file", e);
                            None
                        }
                    },
                    Err(e) => {
                        cx.err(
                            "audit.key_file",
                            format!("cannot read {}: {e}", f.display()),
                        );
                        None
                    }
                }
            }
        }
        (None, Some(env)) => match std::env::var(env) {
            Ok(v) => match AuditKey::new(v.as_bytes()) {
                Ok(k) => Some(k),
                Err(e) => {
                    cx.err("audit.key_env", e);
                    None
                }
            },
            Err(_) => {
                cx.err(
                    "audit.key_env",
                    format!("the environment variable `{env}` is not set"),
                );
                None
            }
        },
        (None, None) => None,
    };
    if a.max_files == Some(0) {
        cx.err("audit.max_files", "must be at least 1 (or left out)");
    }
    if a.max_age.is_some_and(|d| d.is_zero()) {
        cx.err("audit.max_age", "must be more than 0 (or left out)");
    }
    if a.max_file_bytes < 4096 || a.channel_capacity == 0 || a.max_file_age.is_zero() {
        cx.err(
            "audit",
            "max_file_bytes must be at least 4096, channel_capacity and max_file_age more than 0",
        );
    }
    Some(AuditConfig {
        dir,
        max_file_bytes: a.max_file_bytes.max(4096),
        max_file_age: a.max_file_age,
        channel_capacity: a.channel_capacity.max(1),
        on_full: a.on_full,
        key,
        checkpoint_every: a.checkpoint_every,
        max_files: a.max_files,
        max_age: a.max_age,
    })
}
