//! API keys: a YAML keys file holding SHA-256 hashes (never the keys), each with an id, a tenant,
//! an optional policy, optional limits and an optional expiry. `gateway keys add/list/revoke`
//! manages the file; the gateway loads it at start and on `POST /admin/reload`.
//!
//! ```yaml
//! keys:
//!   - id: ci-bot
//!     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!     tenant: acme
//!     policy: strict            # optional: wins over the tenant's and the route's policy
//!     limits:                   # optional: wins over the policy's per-key limits
//!       rate: 5/s
//!       burst: 10
//!       tokens_per_minute: 20000
//!       tokens_per_day: 1000000
//!       concurrency: 4
//!     expires: 2027-01-01T00:00:00Z
//!     created: 2026-11-23T10:00:00Z
//!     revoked: false
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rand::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The keys file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
}

/// One key, as stored.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Stable id, logged and audited instead of the key (`[A-Za-z0-9_.-]`, 1 to 64 bytes).
    pub id: String,
    /// SHA-256 of the key, 64 lower-case hex digits.
    pub sha256: String,
    /// The tenant the key belongs to (limits per tenant, pseudonym keys, tenant policy).
    pub tenant: String,
    /// Policy for this key's requests (a name the config knows); wins over tenant and route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Limits for this key; each field set here wins over the policy's per-key value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<KeyLimits>,
    /// When the key stops working (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// When the key was made (RFC 3339, UTC); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// A revoked key is refused (kept in the file so its id stays taken and auditable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

/// Per-key limits; unset fields fall back to the policy's `limits.per_key`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Request rate, `N/s`, `N/m` or `N/h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Requests allowed at once above the rate (bucket size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// LLM tokens (prompt + generated) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// LLM tokens (prompt + generated) per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// A loaded, valid key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its policy, if it names one.
    pub policy: Option<String>,
    /// Its own limits.
    pub limits: KeyLimits,
    /// Expiry.
    pub expires: Option<SystemTime>,
    /// Revoked.
    pub revoked: bool,
}

/// Who is calling: resolved once per request (by [`KeyStore::authenticate`], the gateway's
/// only authenticator) and read by every later phase (limits, policy selection, classifier
/// lane, pseudonyms, metrics, logs, audit).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key, when the request presented a valid one.
    pub key: Option<Arc<ApiKey>>,
    /// The key's tenant; [`Caller::ANONYMOUS_TENANT`] without a key.
    pub tenant: Arc<str>,
}

impl Caller {
    /// The tenant of requests without a key (pseudonyms, metrics, policy selection).
    pub const ANONYMOUS_TENANT: &'static str = "default";

    /// A caller without a key.
    pub fn anonymous() -> Caller {
        Caller {
            key: None,
            tenant: Arc::from(Caller::ANONYMOUS_TENANT),
        }
    }

    /// The caller a valid key makes.
    pub fn keyed(key: Arc<ApiKey>) -> Caller {
        Caller {
            tenant: Arc::from(key.tenant.as_str()),
            key: Some(key),
        }
    }

    /// The key, if any.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.key.as_deref()
    }

    /// The key's id, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.id.as_str())
    }
}

impl Default for Caller {
    fn default() -> Self {
        Caller::anonymous()
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a key we know.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl AuthError {
    /// What the client is told (never echoes the key).
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => {
                "missing API key: send `Authorization: Bearer <key>` (the gateway refused the request)"
            }
            AuthError::Unknown => "invalid API key (the gateway refused the request)",
            AuthError::Expired => "API key expired (the gateway refused the request)",
            AuthError::Revoked => "API key revoked (the gateway refused the request)",
        }
    }

    /// Metrics label.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Unknown => "unknown",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
        }
    }
}

/// Problems in a keys file.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Reading or writing failed.
    #[error("keys file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a valid keys file.
    #[error("keys file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, located where possible.
        message: String,
    },
}

/// Parse `N/s`, `N/m`, `N/h` (also `N/sec`, `N/min`, `N/hour`): requests per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("rate `{s}`: write it as N/s, N/m or N/h"))?;
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("rate `{s}`: `{}` is not a number", n.trim()))?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        u => return Err(format!("rate `{s}`: unknown unit `{u}` (use s, m or h)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("rate `{s}`: must be more than 0"));
    }
    Ok(n / per)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl KeysFile {
    /// Read a keys file (a missing file is an empty one: `keys add` creates it).
    pub fn read(path: &Path) -> Result<KeysFile, KeysError> {
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeysFile::default()),
            Err(source) => {
                return Err(KeysError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let f: KeysFile = if src.trim().is_empty() {
            KeysFile::default()
        } else {
            serde_yaml::from_str(&src).map_err(|e| KeysError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        f.check().map_err(|message| KeysError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(f)
    }

    /// Every problem, one per line.
    pub fn check(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        let mut ids = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("keys[{i}] (id `{}`)", k.id);
            if !valid_id(&k.id) {
                errs.push(format!("{at}: id must be 1 to 64 of A-Z a-z 0-9 _ . -"));
            }
            if !ids.insert(k.id.as_str()) {
                errs.push(format!("{at}: duplicate id"));
            }
            if k.sha256.len() != 64 || hex::decode(&k.sha256).is_err() {
                errs.push(format!(
                    "{at}: sha256 must be 64 hex digits (the SHA-256 of the key, never the key)"
                ));
            } else if !hashes.insert(k.sha256.to_ascii_lowercase()) {
                errs.push(format!("{at}: the same key hash appears twice"));
            }
            if k.tenant.is_empty() {
                errs.push(format!("{at}: tenant must not be empty"));
            } else if k.tenant == Caller::ANONYMOUS_TENANT {
                errs.push(format!(
                    "{at}: tenant `{}` is reserved for requests without a key (their pseudonyms, metrics and policy); pick another name",
                    Caller::ANONYMOUS_TENANT
                ));
            }
            if let Some(e) = &k.expires
                && humantime::parse_rfc3339(e).is_err()
            {
                errs.push(format!(
                    "{at}: expires `{e}` is not RFC 3339 (like 2027-01-01T00:00:00Z)"
                ));
            }
            if let Some(l) = &k.limits {
                if let Some(r) = &l.rate
                    && let Err(e) = parse_rate(r)
                {
                    errs.push(format!("{at}: limits.{e}"));
                }
                if l.burst == Some(0) || l.concurrency == Some(0) {
                    errs.push(format!(
                        "{at}: limits.burst and limits.concurrency must be at least 1"
                    ));
                }
                if l.burst.is_some() && l.rate.is_none() {
                    errs.push(format!("{at}: limits.burst needs limits.rate"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    /// Write atomically (temp file, fsync, rename), readable by the owner only.
    pub fn write(&self, path: &Path) -> Result<(), KeysError> {
        use std::io::Write;
        let io = |source| KeysError::Io {
            path: path.to_path_buf(),
            source,
        };
        let yaml = serde_yaml::to_string(self).map_err(|e| KeysError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(
                b"# API keys: SHA-256 hashes only. Manage with `gateway keys add/list/revoke`.\n",
            )
            .map_err(io)?;
            f.write_all(yaml.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Make a new key: returns the key (shown once) after adding its record.
    pub fn add(
        &mut self,
        id: &str,
        tenant: &str,
        policy: Option<String>,
        limits: Option<KeyLimits>,
        expires: Option<SystemTime>,
    ) -> Result<String, String> {
        if self.keys.iter().any(|k| k.id == id) {
            return Err(format!("a key with id `{id}` already exists"));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let key = format!("pk-{}", hex::encode(raw));
        self.keys.push(KeyRecord {
            id: id.to_string(),
            sha256: hash_hex(&key),
            tenant: tenant.to_string(),
            policy,
            limits,
            expires: expires.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            created: Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
            revoked: false,
        });
        self.check()?;
        Ok(key)
    }

    /// Revoke a key by id.
    pub fn revoke(&mut self, id: &str) -> Result<(), String> {
        match self.keys.iter_mut().find(|k| k.id == id) {
            Some(k) => {
                k.revoked = true;
                Ok(())
            }
            None => Err(format!("no key with id `{id}`")),
        }
    }
}

/// SHA-256 of a key, hex.
pub fn hash_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|k| !k.is_empty())
}

/// The loaded keys, swappable on reload.
#[derive(Debug)]
pub struct KeyStore {
    path: Option<PathBuf>,
    by_hash: ArcSwap<HashMap<[u8; 32], Arc<ApiKey>>>,
}

impl KeyStore {
    /// An empty store (no keys file configured).
    pub fn empty() -> KeyStore {
        KeyStore {
            path: None,
            by_hash: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Load the keys file at `path`.
    pub fn load(path: &Path) -> Result<KeyStore, KeysError> {
        let store = KeyStore {
            path: Some(path.to_path_buf()),
            by_hash: ArcSwap::from_pointee(HashMap::new()),
        };
        store.reload()?;
        Ok(store)
    }

    /// Re-read the file; on error the old keys stay. Returns how many keys are loaded.
    pub fn reload(&self) -> Result<usize, KeysError> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let f = KeysFile::read(path)?;
        let mut map = HashMap::new();
        for k in f.keys {
            let mut h = [0u8; 32];
            if hex::decode_to_slice(&k.sha256, &mut h).is_err() {
                continue; // `check` already refused this
            }
            let expires = k
                .expires
                .as_deref()
                .and_then(|e| humantime::parse_rfc3339(e).ok());
            map.insert(
                h,
                Arc::new(ApiKey {
                    id: k.id,
                    tenant: k.tenant,
                    policy: k.policy,
                    limits: k.limits.unwrap_or_default(),
                    expires,
                    revoked: k.revoked,
                }),
            );
        }
        let n = map.len();
        self.by_hash.store(Arc::new(map));
        Ok(n)
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every key (for the admin API).
    pub fn all(&self) -> Vec<Arc<ApiKey>> {
        let mut v: Vec<_> = self.by_hash.load().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// A key by id.
    pub fn by_id(&self, id: &str) -> Option<Arc<ApiKey>> {
        self.by_hash.load().values().find(|k| k.id == id).cloned()
    }

    /// Authenticate an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<ApiKey>, AuthError> {
        let key = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        let h: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let k = self
            .by_hash
            .load()
            .get(&h)
            .cloned()
            .ok_or(AuthError::Unknown)?;
        if k.revoked {
            return Err(AuthError::Revoked);
        }
        if k.expires.is_some_and(|e| e <= SystemTime::now()) {
            return Err(AuthError::Expired);
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anonymous_tenant_name_is_reserved() {
        let f = KeysFile {
            keys: vec![KeyRecord {
                id: "k".into(),
                sha256: hash_hex("x"),
                tenant: Caller::ANONYMOUS_TENANT.into(),
                policy: None,
                limits: None,
                expires: None,
                created: None,
                revoked: false,
            }],
        };
        let e = f.check().unwrap_err();
        assert!(e.contains("reserved for requests without a key"), "{e}");
    }

    #[test]
    fn add_authenticate_revoke_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        let mut f = KeysFile::read(&path).unwrap();
        let k1 = f.add("a", "acme", None, None, None).unwrap();
        let past = SystemTime::now() - std::time::Duration::from_secs(10);
        let k2 = f.add("b", "acme", None, None, Some(past)).unwrap();
        assert!(f.add("a", "x", None, None, None).is_err());
        f.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&k1) && !text.contains(&k2),
            "keys are never stored"
        );
        let store = KeyStore::load(&path).unwrap();
        let auth = |k: &str| store.authenticate(Some(&format!("Bearer {k}")));
        assert_eq!(auth(&k1).unwrap().id, "a");
        assert_eq!(auth(&k2).unwrap_err(), AuthError::Expired);
        assert_eq!(auth("nope").unwrap_err(), AuthError::Unknown);
        assert_eq!(store.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            store.authenticate(Some("Basic abc")).unwrap_err(),
            AuthError::Missing
        );
        let mut f = KeysFile::read(&path).unwrap();
        f.revoke("a").unwrap();
        f.write(&path).unwrap();
        store.reload().unwrap();
        assert_eq!(auth(&k1).unwrap_err(), AuthError::Revoked);
    }

    #[test]
    fn invalid_files_say_what_is_wrong() {
        let f: KeysFile = serde_yaml::from_str(
            "keys:\n  - {id: 'a b', sha256: xyz, tenant: ''}\n  - {id: c, sha256: xyz, tenant: t, expires: tomorrow, limits: {rate: 5/week, burst: 0}}\n",
        )
        .unwrap();
        let e = f.check().unwrap_err();
        for want in [
            "id must be",
            "sha256 must be",
            "tenant must not",
            "not RFC 3339",
            "unknown unit",
            "at least 1",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        assert!(
            serde_yaml::from_str::<KeysFile>("keys: [{id: a, sha256: b, tenant: c, key: d}]")
                .is_err()
        );
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/s").unwrap(), 10.0);
        assert_eq!(parse_rate("120/m").unwrap(), 2.0);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("ten/s").is_err());
        assert!(parse_rate("10").is_err());
    }
}
