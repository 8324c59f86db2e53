//! The audit trail: one JSON line per request, hash-chained, written off the request path.
//!
//! * Each record carries `seq` (1, 2, 3, ... across files) and `prev`, the SHA-256 (hex) of the
//!   previous record's line as written (64 zeros before the first). Editing, removing or
//!   reordering a record breaks the chain at the next one.
//! * A chain begins with a `genesis` event record, and `audit.head` (rewritten atomically after
//!   every batch) names the last record's `seq` and hash and the first record kept (`first`:
//!   1, or where retention cut). With a key (`audit.key_file` / `key_env`, kept outside the
//!   folder) the head carries an HMAC-SHA256, and every `checkpoint_every` records a keyed
//!   checkpoint (seq, hash, MAC) is appended to `audit.checkpoints` and logged, so a log
//!   collector holds anchors the folder's owner cannot rewrite. Anyone who can write the
//!   folder but lacks the key can no longer rewrite the chain consistently, remove a prefix
//!   (the head's `first` is signed), or drop the head (`verify` fails without one).
//! * Files are `audit-<UTC time>-<first seq>.jsonl` in the audit folder, rotated by size and
//!   age; the chain continues across files. At start the writer resumes from the newest file.
//!   Retention (`max_files`, `max_age`) deletes the oldest files after a rotation and moves the
//!   head's `first`; a `retention` event record says how many records went.
//! * The request path only serialises the record and hands it to a bounded channel; a writer
//!   thread hashes and appends. When the channel is full the config chooses `drop` (counted in
//!   `portcullis_audit_dropped_total`) or `block` (the request's logging phase waits).
//!   Refusals of unauthenticated requests (401, 404, per-IP 429) are counted, not queued: one
//!   `refusals` event record every few seconds carries the counts, so a flood cannot fill the
//!   channel or the disk.
//! * A write error leaves the chain as it was (a half-written line is cut off) and the next
//!   write starts with a `lost` event record counting what could not be written.
//! * Records never hold matched values, prompts or keys: ids, counts, types and actions only.
//!
//! `gateway audit verify PATH...` checks files (or a folder) and names the first bad record.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD: &str = "audit.head";
const CHECKPOINTS: &str = "audit.checkpoints";
/// How often aggregated refusals are written.
const REFUSALS_EVERY: Duration = Duration::from_secs(5);

/// What happens when the writer falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Drop the record and count it (the request never waits).
    Drop,
    /// Wait for room (no record is ever lost; requests slow down with the disk).
    Block,
}

/// The key that signs the head and checkpoints. `Debug` hides it.
#[derive(Clone)]
pub struct AuditKey(Arc<[u8]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// A key from its bytes (at least 16).
    pub fn new(bytes: &[u8]) -> Result<AuditKey, String> {
        let b: Vec<u8> = bytes.trim_ascii().to_vec();
        if b.len() < 16 {
            return Err("the audit key must be at least 16 bytes".into());
        }
        Ok(AuditKey(b.into()))
    }

    fn mac(&self, msg: &str) -> String {
        // HMAC takes keys of any length: new_from_slice cannot fail
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(msg.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    fn check(&self, msg: &str, mac: &str) -> bool {
        let Ok(tag) = hex::decode(mac) else {
            return false;
        };
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return false;
        };
        m.update(msg.as_bytes());
        m.verify_slice(&tag).is_ok()
    }
}

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Folder of the audit files.
    pub dir: PathBuf,
    /// Rotate after this many bytes.
    pub max_file_bytes: u64,
    /// Rotate after this long.
    pub max_file_age: Duration,
    /// Records queued before `on_full` applies.
    pub channel_capacity: usize,
    /// Drop or block.
    pub on_full: OnFull,
    /// Signs the head and checkpoints (HMAC-SHA256), when configured.
    pub key: Option<AuditKey>,
    /// A checkpoint every this many records.
    pub checkpoint_every: u64,
    /// Keep at most this many files (the oldest go after a rotation).
    pub max_files: Option<usize>,
    /// Delete files last written longer ago than this.
    pub max_age: Option<Duration>,
}

/// A finding type's count and the action taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FindingCount {
    /// Finding type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Action.
    pub action: String,
    /// How many.
    pub count: u32,
}

/// Token counts of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenCounts {
    /// Reserved against quotas before forwarding.
    pub reserved: u64,
    /// Prompt tokens (the backend's count when it reports one, else the bound reserved).
    pub prompt: u64,
    /// Generated tokens (reported or counted).
    pub generated: u64,
    /// Whether the counts came from the backend.
    pub reported: bool,
}

/// Unauthenticated refusals of one route and status, counted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefusalCount {
    /// Route label (`unknown` for paths that match none).
    pub route: String,
    /// Status sent.
    pub status: u16,
    /// How many.
    pub count: u64,
}

/// One request, as audited. Field order is the line's order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Position in the chain (filled by the writer).
    pub seq: u64,
    /// When the request ended (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// Request id.
    pub request_id: String,
    /// API key id (never the key), if authenticated.
    pub key_id: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Route label.
    pub route: String,
    /// Policy name.
    pub policy: Option<String>,
    /// Policy version.
    pub policy_version: Option<u32>,
    /// Findings: types, actions and counts, never values.
    pub findings: Vec<FindingCount>,
    /// Upstream pool.
    pub upstream: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// Who produced an error status: `gateway` or `backend`.
    pub error_source: Option<String>,
    /// Total latency, milliseconds.
    pub latency_ms: f64,
    /// Time to the backend's first byte, milliseconds.
    pub upstream_ttfb_ms: Option<f64>,
    /// Token counts.
    pub tokens: Option<TokenCounts>,
    /// Limit decision: `pass`, or the limit that refused (`key_rate`, `key_tokens_day`, ...).
    pub limit: String,
    /// SHA-256 of the previous record's line (filled by the writer).
    pub prev: String,
    /// Placeholders met in the answer and what became of them: `action` is `restore` (the
    /// original went back), or the output action applied instead (`redact`, `pseudonymize`,
    /// `block`). Added after `prev`, so older lines (without it) still parse and verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<FindingCount>,
    /// A chain event instead of a request: `genesis` (a chain's first record), `lost` (records
    /// the writer could not write, `count` of them), `retention` (`count` records deleted by
    /// retention before this one), `refusals` (unauthenticated refusals in `refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The event's count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Unauthenticated refusals since the previous `refusals` event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusalCount>,
    /// The LoRA adapter the request was routed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// For `model_swap`, `model_rollback`, `model_refused`, `adapter_live` and
    /// `adapter_refused` events: which model and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelEvent>,
    /// One JSON-RPC call through an MCP route (route `mcp`): which server, method and tool,
    /// and what the gateway decided; or, for `mcp_tool_changed` / `mcp_tool_approved` events,
    /// which tool. Never arguments or results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpCall>,
}

/// An MCP call or tool event in the audit trail (see [`Record::mcp`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct McpCall {
    /// The server's name in the gateway config.
    pub server: String,
    /// The JSON-RPC method (`tools/call`), or the event.
    pub method: String,
    /// The tool, for `tools/call` and tool events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `forwarded`, `refused` (by the gateway, before the server saw it), `withheld` (the
    /// server's answer replaced by the gateway's error), `marked`, `upstream_error`,
    /// `changed_blocked`, `changed_flagged`, `approved`.
    pub decision: String,
    /// Why, for a refusal (a finding type or a gateway reason code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A model registry event: a version swapped in, rolled back to, or refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelEvent {
    /// Model (bundle) name.
    pub name: String,
    /// The version serving before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version swapped in or refused.
    pub version: String,
    /// SHA-256 of the version's manifest, when it loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The key that signed it, when it loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signed ε, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Refusals: `unsigned`, `untrusted`, `tampered`, `malformed`, `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Refusals: what failed (file names and keys, never contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Record {
    fn event(kind: &str, count: Option<u64>) -> Record {
        Record {
            time: now_rfc3339(),
            route: "-".into(),
            limit: "-".into(),
            event: Some(kind.into()),
            count,
            ..Record::default()
        }
    }
}

/// What the writer thread receives.
enum Msg {
    Record(Box<Record>),
    /// Time to write the aggregated refusals.
    Tick,
}

/// Unauthenticated refusals, counted until the next `refusals` record.
#[derive(Debug, Default)]
struct Refusals {
    total: AtomicU64,
    by: Mutex<HashMap<(&'static str, u16), u64>>,
}

impl Refusals {
    fn take(&self) -> Vec<RefusalCount> {
        if self.total.swap(0, Ordering::AcqRel) == 0 {
            return Vec::new();
        }
        let mut by = self.by.lock();
        let mut v: Vec<RefusalCount> = by
            .drain()
            .map(|((route, status), count)| RefusalCount {
                route: route.to_string(),
                status,
                count,
            })
            .collect();
        v.sort_by(|a, b| (&a.route, a.status).cmp(&(&b.route, b.status)));
        v
    }
}

/// The handle the request path uses.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    on_full: OnFull,
    dropped: IntCounter,
    refusals: Arc<Refusals>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Record(_) => f.write_str("Record"),
            Msg::Tick => f.write_str("Tick"),
        }
    }
}

impl AuditLog {
    /// Start the writer thread (resuming the chain from `cfg.dir`).
    pub fn start(cfg: AuditConfig, dropped: IntCounter) -> std::io::Result<AuditLog> {
        let mut w = Writer::open(&cfg)?;
        let (tx, mut rx) = mpsc::channel::<Msg>(cfg.channel_capacity.max(1));
        let refusals = Arc::new(Refusals::default());
        let counted = refusals.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(m) = rx.blocking_recv() {
                    let mut tick = matches!(m, Msg::Tick);
                    if let Msg::Record(r) = m {
                        batch.push(*r);
                    }
                    while batch.len() < 1024 {
                        match rx.try_recv() {
                            Ok(Msg::Record(r)) => batch.push(*r),
                            Ok(Msg::Tick) => tick = true,
                            Err(_) => break,
                        }
                    }
                    if tick {
                        let refused = counted.take();
                        if !refused.is_empty() {
                            let mut r = Record::event("refusals", None);
                            r.count = Some(refused.iter().map(|c| c.count).sum());
                            r.refused = refused;
                            batch.push(r);
                        }
                    }
                    if let Err(e) = w.append(&mut batch) {
                        tracing::error!(error = %e, lost = batch.len(), "audit: writing failed; these records are counted in a `lost` record at the next write");
                    }
                    batch.clear();
                }
            })?;
        // a ticker that ends with the writer (its channel closes)
        let ticks = tx.clone();
        std::thread::Builder::new()
            .name("audit-ticker".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(REFUSALS_EVERY);
                    match ticks.try_send(Msg::Tick) {
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                        _ => continue, // full: the writer is busy and ticks on its next turn
                    }
                }
            })?;
        Ok(AuditLog {
            tx,
            on_full: cfg.on_full,
            dropped,
            refusals,
        })
    }

    /// Queue a record (`seq` and `prev` are filled by the writer).
    pub async fn record(&self, r: Record) {
        let m = Msg::Record(Box::new(r));
        match self.on_full {
            OnFull::Block => {
                if self.tx.send(m).await.is_err() {
                    self.dropped.inc();
                }
            }
            OnFull::Drop => {
                if self.tx.try_send(m).is_err() {
                    self.dropped.inc();
                }
            }
        }
    }

    /// Queue a model registry event (`model_swap`, `model_rollback`, `model_refused`) from a
    /// thread that must not wait: a full channel counts it as dropped.
    pub fn model_event(&self, kind: &str, event: ModelEvent) {
        let mut r = Record::event(kind, None);
        r.model = Some(event);
        if self.tx.try_send(Msg::Record(Box::new(r))).is_err() {
            self.dropped.inc();
        }
    }

    /// Count an unauthenticated refusal (written in the next `refusals` record): a flood
    /// costs a counter, not a record each.
    pub fn refused(&self, route: &'static str, status: u16) {
        *self.refusals.by.lock().entry((route, status)).or_default() += 1;
        self.refusals.total.fetch_add(1, Ordering::AcqRel);
    }
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

struct Writer {
    cfg: AuditConfig,
    /// The open file: handle, name, size, when opened.
    file: Option<(File, String, u64, Instant)>,
    seq: u64,
    prev: String,
    /// The first record kept (1 until retention deletes files).
    first: u64,
    /// Records that could not be written, to report in a `lost` record.
    lost: u64,
    /// Tests: make this many writes fail halfway.
    #[cfg(test)]
    fail_writes: usize,
}

/// `audit.head`.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
    file: String,
    /// First record kept (absent in heads written before retention existed: 1).
    #[serde(default = "one")]
    first: u64,
    /// HMAC-SHA256 of the other fields, with a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

fn one() -> u64 {
    1
}

impl Head {
    fn message(&self) -> String {
        format!(
            "portcullis-audit-head-v1|{}|{}|{}|{}",
            self.seq, self.hash, self.first, self.file
        )
    }
}

/// One line of `audit.checkpoints`.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    seq: u64,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

fn checkpoint_message(seq: u64, hash: &str) -> String {
    format!("portcullis-audit-checkpoint-v1|{seq}|{hash}")
}

fn audit_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The first record's seq from a file name `audit-<time>-<seq>.jsonl`.
fn first_seq_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".jsonl")?
        .rsplit('-')
        .next()?
        .parse()
        .ok()
}

/// The last complete line of a file.
fn last_line(path: &Path) -> std::io::Result<Option<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split_inclusive('\n')
        .rfind(|l| l.ends_with('\n'))
        .map(|l| l.trim_end_matches('\n').to_string()))
}

fn sha_hex(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

fn read_head(dir: &Path) -> Option<Head> {
    std::fs::read(dir.join(HEAD))
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
}

impl Writer {
    fn open(cfg: &AuditConfig) -> std::io::Result<Writer> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut w = Writer {
            cfg: cfg.clone(),
            file: None,
            seq: 0,
            prev: GENESIS.to_string(),
            first: 1,
            lost: 0,
            #[cfg(test)]
            fail_writes: 0,
        };
        let files = audit_files(&cfg.dir)?;
        if let Some(newest) = files.last()
            && let Some(line) = last_line(newest)?
        {
            let r: Record = serde_json::from_str(&line).map_err(|e| {
                std::io::Error::other(format!(
                    "audit: cannot resume the chain from {}: its last record is not valid ({e}); run `gateway audit verify {}`",
                    newest.display(),
                    cfg.dir.display()
                ))
            })?;
            w.seq = r.seq;
            w.prev = sha_hex(&line);
            w.first = read_head(&cfg.dir)
                .map(|h| h.first)
                .or_else(|| files.first().and_then(|f| first_seq_of(f)))
                .unwrap_or(1);
        } else {
            // a new chain starts with its genesis record
            w.append(&mut [Record::event("genesis", None)])?;
        }
        Ok(w)
    }

    fn rotate_if_needed(&mut self) -> std::io::Result<()> {
        let due = match &self.file {
            None => true,
            Some((_, _, size, opened)) => {
                *size >= self.cfg.max_file_bytes || opened.elapsed() >= self.cfg.max_file_age
            }
        };
        if due {
            let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .replace([':', '-'], "");
            let name = format!("audit-{stamp}-{:012}.jsonl", self.seq + 1);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.cfg.dir.join(&name))?;
            let size = f.metadata()?.len();
            let rotated = self.file.is_some();
            self.file = Some((f, name, size, Instant::now()));
            if rotated {
                self.retain()?;
            }
        }
        Ok(())
    }

    /// Delete the oldest files past `max_files` or `max_age` (never the open one) and move
    /// `first`; the next record written is a `retention` event counting what went.
    fn retain(&mut self) -> std::io::Result<()> {
        if self.cfg.max_files.is_none() && self.cfg.max_age.is_none() {
            return Ok(());
        }
        let files = audit_files(&self.cfg.dir)?;
        let open = self.file.as_ref().map(|f| f.1.clone()).unwrap_or_default();
        let now = SystemTime::now();
        let mut removed = 0;
        for (i, f) in files.iter().enumerate() {
            let is_open = f.file_name().and_then(|n| n.to_str()) == Some(open.as_str());
            let left = files.len() - i;
            let too_many = self.cfg.max_files.is_some_and(|m| left > m.max(1));
            let too_old = self.cfg.max_age.is_some_and(|age| {
                f.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d > age)
            });
            if is_open || !(too_many || too_old) {
                break;
            }
            let Some(next_first) = files.get(i + 1).and_then(|n| first_seq_of(n)) else {
                break;
            };
            std::fs::remove_file(f)?;
            removed += next_first.saturating_sub(self.first);
            self.first = next_first;
        }
        if removed > 0 {
            tracing::info!(
                records = removed,
                first = self.first,
                "audit: retention deleted old files"
            );
        }
        Ok(())
    }

    /// Write one line; on failure cut off what was written and close the file.
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.rotate_if_needed()?;
        let Some((f, _, size, _)) = self.file.as_mut() else {
            return Err(std::io::Error::other("audit file not open"));
        };
        let before = *size;
        #[cfg(test)]
        let done = if self.fail_writes > 0 {
            self.fail_writes -= 1;
            f.write_all(&line.as_bytes()[..line.len() / 2])
                .and_then(|()| Err(std::io::Error::other("injected write failure")))
        } else {
            f.write_all(line.as_bytes())
                .and_then(|()| f.write_all(b"\n"))
        };
        #[cfg(not(test))]
        let done = f
            .write_all(line.as_bytes())
            .and_then(|()| f.write_all(b"\n"));
        if let Err(e) = done {
            let _ = f.set_len(before);
            self.file = None;
            return Err(e);
        }
        *size += line.len() as u64 + 1;
        Ok(())
    }

    fn chain(&mut self, r: &mut Record) -> std::io::Result<()> {
        r.seq = self.seq + 1;
        r.prev = self.prev.clone();
        let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
        self.write_line(&line)?;
        self.seq = r.seq;
        self.prev = sha_hex(&line);
        if self.cfg.checkpoint_every > 0 && self.seq.is_multiple_of(self.cfg.checkpoint_every) {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> std::io::Result<()> {
        let c = Checkpoint {
            seq: self.seq,
            hash: self.prev.clone(),
            mac: self
                .cfg
                .key
                .as_ref()
                .map(|k| k.mac(&checkpoint_message(self.seq, &self.prev))),
        };
        let line = serde_json::to_string(&c).map_err(std::io::Error::other)?;
        // the log line is an anchor outside the folder
        tracing::info!(target: "portcullis::audit", checkpoint = %line, "audit checkpoint");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cfg.dir.join(CHECKPOINTS))?;
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")
    }

    fn append(&mut self, batch: &mut [Record]) -> std::io::Result<()> {
        if self.lost > 0 {
            let mut r = Record::event("lost", Some(self.lost));
            if let Err(e) = self.chain(&mut r) {
                self.lost += batch.len() as u64;
                return Err(e);
            }
            self.lost = 0;
        }
        let mut first_before = self.first;
        for (i, r) in batch.iter_mut().enumerate() {
            if let Err(e) = self.chain(r) {
                self.lost += (batch.len() - i) as u64;
                return Err(e);
            }
            if self.first != first_before {
                // retention ran while rotating for this record: say so in the chain, once
                let mut ev = Record::event("retention", Some(self.first - first_before));
                first_before = self.first;
                if let Err(e) = self.chain(&mut ev) {
                    self.lost += (batch.len() - i - 1) as u64;
                    return Err(e);
                }
            }
        }
        self.sync_head()
    }

    fn sync_head(&mut self) -> std::io::Result<()> {
        let Some((f, name, _, _)) = self.file.as_mut() else {
            return Ok(()); // an empty batch before any file was opened
        };
        f.flush()?;
        f.sync_data()?;
        let mut head = Head {
            seq: self.seq,
            hash: self.prev.clone(),
            file: name.clone(),
            first: self.first,
            mac: None,
        };
        head.mac = self.cfg.key.as_ref().map(|k| k.mac(&head.message()));
        let tmp = self.cfg.dir.join("audit.head.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&head).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, self.cfg.dir.join(HEAD))
    }
}

/// The first problem `verify` found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Broken {
    /// File.
    pub file: String,
    /// Line number (1-based; 0: the folder's head or checkpoints).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Whether the chain is whole.
    pub ok: bool,
    /// Files read.
    pub files: usize,
    /// Records that checked out before the first problem.
    pub records: u64,
    /// Whether the head and checkpoints were checked with the key (else only hashes).
    pub authenticated: bool,
    /// Checkpoints matched against the chain.
    pub checkpoints: u64,
    /// The first problem.
    pub first_error: Option<Broken>,
}

/// How `verify` checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The key the head and checkpoints must be signed with.
    pub key: Option<AuditKey>,
    /// Accept a folder without `audit.head` (a chain that was never signed off).
    pub allow_missing_head: bool,
}

/// Check audit files (or folders of them) in order.
pub fn verify(paths: &[PathBuf], opts: &VerifyOptions) -> std::io::Result<Verdict> {
    let mut files = Vec::new();
    let mut folder: Option<PathBuf> = None;
    for p in paths {
        if p.is_dir() {
            files.extend(audit_files(p)?);
            folder = Some(p.clone());
        } else {
            files.push(p.clone());
        }
    }
    let mut v = Verdict {
        ok: true,
        files: files.len(),
        records: 0,
        authenticated: false,
        checkpoints: 0,
        first_error: None,
    };
    let fail_at = |v: &mut Verdict, file: &str, reason: String| {
        v.ok = false;
        v.first_error = Some(Broken {
            file: file.to_string(),
            line: 0,
            reason,
        });
    };
    // a folder's head and checkpoints, checked with the key
    let mut head = None;
    let mut expected: BTreeMap<u64, String> = BTreeMap::new();
    if let Some(dir) = &folder {
        let head_file = dir.join(HEAD).display().to_string();
        match (std::fs::read(dir.join(HEAD)), opts.allow_missing_head) {
            (Err(_), false) => {
                fail_at(
                    &mut v,
                    &head_file,
                    "audit.head is missing: records at the end may have been removed with it (pass --allow-missing-head for a chain that never had one)".into(),
                );
                return Ok(v);
            }
            (Err(_), true) => {}
            (Ok(bytes), _) => match serde_json::from_slice::<Head>(&bytes) {
                Err(e) => {
                    fail_at(&mut v, &head_file, format!("audit.head is not valid ({e})"));
                    return Ok(v);
                }
                Ok(h) => {
                    if let Some(k) = &opts.key {
                        let good = h.mac.as_deref().is_some_and(|m| k.check(&h.message(), m));
                        if !good {
                            fail_at(
                                &mut v,
                                &head_file,
                                "audit.head is not signed with this key: it was rewritten (or the key is wrong)".into(),
                            );
                            return Ok(v);
                        }
                        v.authenticated = true;
                    }
                    head = Some(h);
                }
            },
        }
        let cp_file = dir.join(CHECKPOINTS);
        if let Ok(text) = std::fs::read_to_string(&cp_file) {
            for (i, l) in text.lines().enumerate() {
                let c: Checkpoint = match serde_json::from_str(l) {
                    Ok(c) => c,
                    Err(e) => {
                        fail_at(
                            &mut v,
                            &cp_file.display().to_string(),
                            format!("checkpoint {} is not valid ({e})", i + 1),
                        );
                        return Ok(v);
                    }
                };
                if let Some(k) = &opts.key {
                    let good = c
                        .mac
                        .as_deref()
                        .is_some_and(|m| k.check(&checkpoint_message(c.seq, &c.hash), m));
                    if !good {
                        fail_at(
                            &mut v,
                            &cp_file.display().to_string(),
                            format!("checkpoint at record {} is not signed with this key", c.seq),
                        );
                        return Ok(v);
                    }
                }
                expected.insert(c.seq, c.hash);
            }
        }
    }
    let first = head.as_ref().map_or(1, |h| h.first);
    let mut prev: Option<(u64, String)> = None;
    let mut last_file = String::new();
    for path in &files {
        let name = path.display().to_string();
        last_file = name.clone();
        let mut r = BufReader::new(File::open(path)?);
        let mut n = 0;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if r.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            n += 1;
            let fail = |reason: String| Broken {
                file: name.clone(),
                line: n,
                reason,
            };
            let err = if buf.last() != Some(&b'\n') {
                Some(fail(
                    "truncated record: the line does not end (file cut short)".into(),
                ))
            } else {
                let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                match serde_json::from_str::<Record>(&line) {
                    Err(e) => Some(fail(format!("not a valid audit record ({e})"))),
                    Ok(rec) => {
                        let hash = sha_hex(&line);
                        let bad = match &prev {
                            None if rec.seq == 1 && rec.prev != GENESIS => {
                                Some("the first record must chain from 64 zeros".to_string())
                            }
                            None if folder.is_some() && rec.seq != first => Some(format!(
                                "the folder's chain starts at record {} but its head says {first}: records before it were removed",
                                rec.seq
                            )),
                            None => None, // files checked from the middle: anchored here
                            Some((seq, _)) if rec.seq != seq + 1 => Some(format!(
                                "expected record {} here, found {}: records were removed or reordered",
                                seq + 1,
                                rec.seq
                            )),
                            Some((seq, h)) if rec.prev != *h => Some(format!(
                                "`prev` does not match the hash of record {seq}: that record (or this one) was edited"
                            )),
                            _ => match expected.get(&rec.seq) {
                                Some(c) if *c != hash => Some(format!(
                                    "record {} does not match its checkpoint: the chain was rewritten",
                                    rec.seq
                                )),
                                _ => None,
                            },
                        };
                        match bad {
                            Some(b) => Some(fail(b)),
                            None => {
                                if expected.contains_key(&rec.seq) {
                                    v.checkpoints += 1;
                                }
                                prev = Some((rec.seq, hash));
                                v.records += 1;
                                None
                            }
                        }
                    }
                }
            };
            if let Some(e) = err {
                v.ok = false;
                v.first_error = Some(e);
                return Ok(v);
            }
        }
    }
    let last_seq = prev.as_ref().map_or(0, |p| p.0);
    let bad = match (&head, &prev) {
        (Some(h), None) if h.seq > 0 => Some(format!(
            "audit.head names record {} but no records were found",
            h.seq
        )),
        (Some(h), Some((seq, _))) if *seq != h.seq => Some(format!(
            "the last record is {seq} but audit.head names record {}: records at the end were removed (or added without the writer)",
            h.seq
        )),
        (Some(h), Some((seq, hash))) if *hash != h.hash => Some(format!(
            "the last record {seq} does not match audit.head's hash: it was edited"
        )),
        _ => expected
            .range(last_seq + 1..)
            .next()
            .filter(|_| folder.is_some())
            .map(|(seq, _)| {
                format!("a checkpoint names record {seq} but the chain ends at {last_seq}: records at the end were removed")
            }),
    };
    if let Some(reason) = bad {
        fail_at(&mut v, &last_file, reason);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of the folder's files, in order.
    fn records(dir: &Path) -> Vec<Record> {
        audit_files(dir)
            .unwrap()
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<Record>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn key() -> AuditKey {
        AuditKey::new(b"0123456789abcdef-test-key").unwrap()
    }

    fn cfg(dir: &Path, max: u64) -> AuditConfig {
        AuditConfig {
            dir: dir.to_path_buf(),
            max_file_bytes: max,
            max_file_age: Duration::from_secs(3600),
            channel_capacity: 16,
            on_full: OnFull::Block,
            key: Some(key()),
            checkpoint_every: 4,
            max_files: None,
            max_age: None,
        }
    }

    fn requests(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                time: now_rfc3339(),
                request_id: format!("r{i}"),
                route: "generate".into(),
                status: 200,
                limit: "pass".into(),
                ..Record::default()
            })
            .collect()
    }

    fn write_with(c: &AuditConfig, n: usize) {
        let mut w = Writer::open(c).unwrap();
        w.append(&mut requests(n)).unwrap();
    }

    fn write(dir: &Path, n: usize, max: u64) {
        write_with(&cfg(dir, max), n);
    }

    fn lines(dir: &Path) -> (PathBuf, Vec<String>) {
        let f = audit_files(dir).unwrap().remove(0);
        let t = std::fs::read_to_string(&f).unwrap();
        (f, t.lines().map(str::to_string).collect())
    }

    fn keyed() -> VerifyOptions {
        VerifyOptions {
            key: Some(key()),
            allow_missing_head: false,
        }
    }

    fn check(dir: &Path) -> Verdict {
        verify(&[dir.to_path_buf()], &keyed()).unwrap()
    }

    #[test]
    fn a_whole_chain_verifies_across_rotation_and_restarts() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), 10, 600);
        write(d.path(), 5, 600); // a restart resumes the chain
        assert!(audit_files(d.path()).unwrap().len() > 2, "rotated");
        let v = check(d.path());
        assert!(v.ok, "{v:?}");
        assert!(v.authenticated);
        assert_eq!(v.records, 16, "genesis + 15");
        assert_eq!(v.checkpoints, 4);
        let (_, l) = lines(d.path());
        assert!(l[0].contains("\"event\":\"genesis\""), "{}", l[0]);
        // without the key only the hashes are checked
        let v = verify(&[d.path().to_path_buf()], &VerifyOptions::default()).unwrap();
        assert!(v.ok && !v.authenticated);
        // a wrong key fails
        let wrong = VerifyOptions {
            key: Some(AuditKey::new(b"another key of 16+ bytes").unwrap()),
            allow_missing_head: false,
        };
        assert!(!verify(&[d.path().to_path_buf()], &wrong).unwrap().ok);
    }

    /// The attacks of issue 15 and the classic ones, each on a fresh 10-record chain.
    #[test]
    fn edits_deletions_reorders_truncation_and_rewrites_are_caught() {
        type Tamper = Box<dyn Fn(&Path, &mut Vec<String>, &mut bool)>;
        let cases: Vec<(&str, Tamper)> = vec![
            (
                "edited",
                Box::new(|_, l, _| l[3] = l[3].replace("\"status\":200", "\"status\":201")),
            ),
            (
                "deleted",
                Box::new(|_, l, _| {
                    l.remove(4);
                }),
            ),
            ("reordered", Box::new(|_, l, _| l.swap(2, 3))),
            (
                "tail removed",
                Box::new(|_, l, _| {
                    l.pop();
                }),
            ),
            (
                "last edited",
                Box::new(|_, l, _| {
                    let n = l.len() - 1;
                    l[n] = l[n].replace("r5", "rX");
                }),
            ),
            ("truncated", Box::new(|_, _, cut| *cut = true)),
            (
                "first two records deleted",
                Box::new(|_, l, _| {
                    l.drain(..2);
                }),
            ),
            (
                "head removed with the last record",
                Box::new(|d, l, _| {
                    l.pop();
                    std::fs::remove_file(d.join(HEAD)).unwrap();
                }),
            ),
            (
                "rewritten consistently without the key",
                Box::new(|d, l, _| {
                    // change a record, re-chain every later one, re-write the head: all
                    // hashes agree, only the MAC cannot be made
                    let mut prev = GENESIS.to_string();
                    for line in l.iter_mut() {
                        let mut r: Record = serde_json::from_str(line).unwrap();
                        if r.request_id == "r2" {
                            r.status = 500;
                        }
                        r.prev = prev.clone();
                        *line = serde_json::to_string(&r).unwrap();
                        prev = sha_hex(line);
                    }
                    let mut h: Head =
                        serde_json::from_slice(&std::fs::read(d.join(HEAD)).unwrap()).unwrap();
                    h.hash = prev;
                    std::fs::write(d.join(HEAD), serde_json::to_vec(&h).unwrap()).unwrap();
                    std::fs::remove_file(d.join(CHECKPOINTS)).unwrap();
                }),
            ),
            (
                "rolled back to an older signed head",
                Box::new(|d, l, _| {
                    // the head as it was after record 5, a copy the attacker kept
                    let old = std::fs::read(d.join("head-at-5")).unwrap();
                    std::fs::write(d.join(HEAD), old).unwrap();
                    l.truncate(5);
                }),
            ),
        ];
        for (what, f) in cases {
            let d = tempfile::tempdir().unwrap();
            let mut w = Writer::open(&cfg(d.path(), 1 << 30)).unwrap();
            w.append(&mut requests(4)).unwrap(); // genesis + 4
            std::fs::copy(d.path().join(HEAD), d.path().join("head-at-5")).unwrap();
            w.append(&mut requests(6)).unwrap();
            drop(w);
            assert_eq!(audit_files(d.path()).unwrap().len(), 1);
            assert!(check(d.path()).ok, "{what}: untouched chain");
            let (file, mut l) = lines(d.path());
            let mut cut = false;
            f(d.path(), &mut l, &mut cut);
            let mut text = l.join("\n") + "\n";
            if cut {
                text.truncate(text.len() - 20);
            }
            std::fs::write(&file, text).unwrap();
            let v = check(d.path());
            assert!(!v.ok, "{what} not caught");
            let e = v.first_error.unwrap();
            eprintln!("{what}: {e:?}");
        }
    }

    #[test]
    fn a_missing_head_fails_unless_allowed() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), 3, 1 << 30);
        std::fs::remove_file(d.path().join(HEAD)).unwrap();
        let v = verify(&[d.path().to_path_buf()], &VerifyOptions::default()).unwrap();
        assert!(!v.ok);
        assert!(
            v.first_error
                .unwrap()
                .reason
                .contains("audit.head is missing")
        );
        let allow = VerifyOptions {
            key: None,
            allow_missing_head: true,
        };
        assert!(verify(&[d.path().to_path_buf()], &allow).unwrap().ok);
    }

    #[test]
    fn a_write_error_leaves_the_chain_whole_and_records_the_loss() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), 1 << 30);
        let mut w = Writer::open(&c).unwrap();
        w.append(&mut requests(3)).unwrap();
        w.fail_writes = 1; // the next line is cut halfway and the write fails
        assert!(w.append(&mut requests(4)).is_err());
        assert_eq!(w.lost, 4);
        w.append(&mut requests(2)).unwrap();
        let v = check(d.path());
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 1 + 3 + 1 + 2, "genesis, 3, the `lost` record, 2");
        let all = records(d.path());
        let lost = all
            .iter()
            .find(|r| r.event.as_deref() == Some("lost"))
            .unwrap();
        assert_eq!(lost.count, Some(4));
    }

    #[test]
    fn retention_deletes_old_files_and_the_signed_head_says_where_the_chain_starts() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), 700);
        c.max_files = Some(3);
        for _ in 0..6 {
            write_with(&c, 5);
        }
        let files = audit_files(d.path()).unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        let v = check(d.path());
        assert!(v.ok, "{v:?}");
        let h = read_head(d.path()).unwrap();
        assert!(h.first > 1);
        // within one batch too, each deletion is recorded once, right after the rotation
        // that made it: one file (at most three records at 700 bytes) per retention record
        write_with(&c, 40);
        let counts: Vec<u64> = records(d.path())
            .into_iter()
            .filter(|r| r.event.as_deref() == Some("retention"))
            .map(|r| r.count.unwrap_or(0))
            .collect();
        assert!(!counts.is_empty(), "retention recorded");
        assert!(
            counts.iter().all(|n| (1..=3).contains(n)),
            "records deleted per retention record: {counts:?}"
        );
        assert!(check(d.path()).ok);
        // one more old file removed by hand: the chain no longer starts where the head says
        std::fs::remove_file(&audit_files(d.path()).unwrap()[0]).unwrap();
        let v = check(d.path());
        assert!(!v.ok);
        assert!(v.first_error.unwrap().reason.contains("were removed"));
    }
}
