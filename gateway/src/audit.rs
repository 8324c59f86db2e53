//! The audit trail: one JSON line per request, hash-chained, written off the request path.
//!
//! * Each record carries `seq` (1, 2, 3, ... across files) and `prev`, the SHA-256 (hex) of the
//!   previous record's line as written (64 zeros before the first). Editing, removing or
//!   reordering a record breaks the chain at the next one; `audit.head` (rewritten atomically
//!   after every batch) names the last record's `seq` and hash, so removing or editing the last
//!   records is caught too.
//! * Files are `audit-<UTC time>-<first seq>.jsonl` in the audit folder, rotated by size and
//!   age; the chain continues across files. At start the writer resumes from the newest file.
//! * The request path only serialises the record and hands it to a bounded channel; a writer
//!   thread hashes and appends. When the channel is full the config chooses `drop` (counted in
//!   `portcullis_audit_dropped_total`) or `block` (the request's logging phase waits).
//! * Records never hold matched values, prompts or keys: ids, counts, types and actions only.
//!
//! `gateway audit verify PATH...` checks files (or a folder) and names the first bad record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD: &str = "audit.head";

/// What happens when the writer falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Drop the record and count it (the request never waits).
    Drop,
    /// Wait for room (no record is ever lost; requests slow down with the disk).
    Block,
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
    /// Prompt tokens (the backend's count when it reports one, else our estimate).
    pub prompt: u64,
    /// Generated tokens (reported or counted).
    pub generated: u64,
    /// Whether the counts came from the backend.
    pub reported: bool,
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
}

/// The handle the request path uses.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Record>,
    on_full: OnFull,
    dropped: IntCounter,
}

impl AuditLog {
    /// Start the writer thread (resuming the chain from `cfg.dir`).
    pub fn start(cfg: AuditConfig, dropped: IntCounter) -> std::io::Result<AuditLog> {
        let mut w = Writer::open(&cfg)?;
        let (tx, mut rx) = mpsc::channel::<Record>(cfg.channel_capacity.max(1));
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(r) = rx.blocking_recv() {
                    batch.push(r);
                    while batch.len() < 1024 {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = w.append(&mut batch) {
                        tracing::error!(error = %e, "audit: writing failed; records of this batch are lost");
                    }
                    batch.clear();
                }
            })?;
        Ok(AuditLog {
            tx,
            on_full: cfg.on_full,
            dropped,
        })
    }

    /// Queue a record (`seq` and `prev` are filled by the writer).
    pub async fn record(&self, r: Record) {
        match self.on_full {
            OnFull::Block => {
                if self.tx.send(r).await.is_err() {
                    self.dropped.inc();
                }
            }
            OnFull::Drop => {
                if self.tx.try_send(r).is_err() {
                    self.dropped.inc();
                }
            }
        }
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
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
    file: String,
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

impl Writer {
    fn open(cfg: &AuditConfig) -> std::io::Result<Writer> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut w = Writer {
            cfg: cfg.clone(),
            file: None,
            seq: 0,
            prev: GENESIS.to_string(),
        };
        if let Some(newest) = audit_files(&cfg.dir)?.pop()
            && let Some(line) = last_line(&newest)?
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
            self.file = Some((f, name, size, Instant::now()));
        }
        Ok(())
    }

    fn append(&mut self, batch: &mut [Record]) -> std::io::Result<()> {
        for r in batch.iter_mut() {
            self.rotate_if_needed()?;
            r.seq = self.seq + 1;
            r.prev = std::mem::take(&mut self.prev);
            let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
            let Some((f, _, size, _)) = self.file.as_mut() else {
                return Err(std::io::Error::other("audit file not open"));
            };
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            *size += line.len() as u64 + 1;
            self.seq = r.seq;
            self.prev = sha_hex(&line);
        }
        let Some((f, name, _, _)) = self.file.as_mut() else {
            return Ok(()); // an empty batch before any file was opened
        };
        f.flush()?;
        f.sync_data()?;
        let head = Head {
            seq: self.seq,
            hash: self.prev.clone(),
            file: name.clone(),
        };
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
    /// Line number (1-based).
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
    /// The first problem.
    pub first_error: Option<Broken>,
}

/// Check audit files (or folders of them) in order.
pub fn verify(paths: &[PathBuf]) -> std::io::Result<Verdict> {
    let mut files = Vec::new();
    let mut head: Option<Head> = None;
    for p in paths {
        if p.is_dir() {
            files.extend(audit_files(p)?);
            if let Ok(h) = std::fs::read(p.join(HEAD)) {
                head = serde_json::from_slice(&h).ok();
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut v = Verdict {
        ok: true,
        files: files.len(),
        records: 0,
        first_error: None,
    };
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
                        let bad = match &prev {
                            None if rec.seq == 1 && rec.prev != GENESIS => {
                                Some("the first record must chain from 64 zeros".to_string())
                            }
                            None => None, // a chain checked from the middle: anchored here
                            Some((seq, _)) if rec.seq != seq + 1 => Some(format!(
                                "expected record {} here, found {}: records were removed or reordered",
                                seq + 1,
                                rec.seq
                            )),
                            Some((seq, h)) if rec.prev != *h => Some(format!(
                                "`prev` does not match the hash of record {seq}: that record (or this one) was edited"
                            )),
                            _ => None,
                        };
                        match bad {
                            Some(b) => Some(fail(b)),
                            None => {
                                prev = Some((rec.seq, sha_hex(&line)));
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
    if let Some(h) = head {
        let bad = match &prev {
            None if h.seq > 0 => Some(format!(
                "audit.head names record {} but no records were found",
                h.seq
            )),
            Some((seq, _)) if *seq != h.seq => Some(format!(
                "the last record is {seq} but audit.head names record {}: records at the end were removed (or added without the writer)",
                h.seq
            )),
            Some((seq, hash)) if *hash != h.hash => Some(format!(
                "the last record {seq} does not match audit.head's hash: it was edited"
            )),
            _ => None,
        };
        if let Some(reason) = bad {
            v.ok = false;
            v.first_error = Some(Broken {
                file: last_file,
                line: 0,
                reason,
            });
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max: u64) -> AuditConfig {
        AuditConfig {
            dir: dir.to_path_buf(),
            max_file_bytes: max,
            max_file_age: Duration::from_secs(3600),
            channel_capacity: 16,
            on_full: OnFull::Block,
        }
    }

    fn write(dir: &Path, n: usize, max: u64) {
        let mut w = Writer::open(&cfg(dir, max)).unwrap();
        let mut batch: Vec<Record> = (0..n)
            .map(|i| Record {
                time: now_rfc3339(),
                request_id: format!("r{i}"),
                route: "generate".into(),
                status: 200,
                limit: "pass".into(),
                ..Record::default()
            })
            .collect();
        w.append(&mut batch).unwrap();
    }

    fn lines(dir: &Path) -> (PathBuf, Vec<String>) {
        let f = audit_files(dir).unwrap().remove(0);
        let t = std::fs::read_to_string(&f).unwrap();
        (f, t.lines().map(str::to_string).collect())
    }

    #[test]
    fn a_whole_chain_verifies_across_rotation_and_restarts() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), 10, 600);
        write(d.path(), 5, 600); // a restart resumes the chain
        assert!(audit_files(d.path()).unwrap().len() > 2, "rotated");
        let v = verify(&[d.path().to_path_buf()]).unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 15);
    }

    #[test]
    fn edits_deletions_reorders_and_truncation_are_caught() {
        type Tamper = Box<dyn Fn(&mut Vec<String>, &mut bool)>;
        let cases: Vec<(&str, Tamper)> = vec![
            (
                "edited",
                Box::new(|l, _| l[3] = l[3].replace("\"status\":200", "\"status\":201")),
            ),
            (
                "deleted",
                Box::new(|l, _| {
                    l.remove(4);
                }),
            ),
            ("reordered", Box::new(|l, _| l.swap(2, 3))),
            (
                "tail removed",
                Box::new(|l, _| {
                    l.pop();
                }),
            ),
            (
                "last edited",
                Box::new(|l, _| {
                    let n = l.len() - 1;
                    l[n] = l[n].replace("r9", "rX");
                }),
            ),
            ("truncated", Box::new(|_, cut| *cut = true)),
        ];
        for (what, f) in cases {
            let d = tempfile::tempdir().unwrap();
            write(d.path(), 10, 1 << 30);
            let (file, mut l) = lines(d.path());
            let mut cut = false;
            f(&mut l, &mut cut);
            let mut text = l.join("\n") + "\n";
            if cut {
                text.truncate(text.len() - 20);
            }
            std::fs::write(&file, text).unwrap();
            let v = verify(&[d.path().to_path_buf()]).unwrap();
            assert!(!v.ok, "{what} not caught");
            let e = v.first_error.unwrap();
            eprintln!("{what}: {e:?}");
        }
    }
}
