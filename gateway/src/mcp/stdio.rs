//! MCP servers that speak only stdio: the gateway starts the command (args, env from the
//! config), speaks newline-delimited JSON-RPC to it, and serves it at `/mcp/<name>` like a
//! Streamable HTTP server, answering every POST with JSON.
//!
//! * **One process, many clients.** The gateway initializes the process once (its own
//!   `initialize` and `notifications/initialized`) and answers each client's `initialize` from
//!   that result, with a session id of its own. Client request ids are rewritten to the
//!   gateway's (unique per process) and restored in the answers.
//! * **Restarts.** When the process exits (or breaks the protocol: a line over
//!   `mcp.max_message_bytes`, or not JSON), every call in flight gets a JSON-RPC error saying
//!   so, and the next call starts it again: at once the first time, then after a backoff that
//!   doubles from 250 ms to 8 s while it keeps dying within a minute. Client sessions are the
//!   gateway's, so they survive the restart.
//! * **Cancellation.** A client's `notifications/cancelled` names its own request id in its
//!   session: the gateway passes it on with the process's id, and the cancelled call's POST
//!   ends at once with a JSON-RPC error. A call the gateway gives up on (its timeout) is
//!   cancelled in the process the same way, so a shared process does not keep working for
//!   nobody.
//! * **Server requests** (`roots/list`, `sampling/createMessage`, ...): a process shared by
//!   clients cannot ask one of them, so the gateway answers them itself (`ping`, an empty
//!   `roots/list`, else "method not found"); notifications from the process are dropped.
//!   The process's stderr is discarded (it is the server's log; it may hold anything).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// How to start a stdio server.
#[derive(Debug, Clone)]
pub struct StdioCommand {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (added to a cleared one: only `PATH` and `HOME` are kept from the
    /// gateway's).
    pub env: BTreeMap<String, String>,
    /// Where it runs (the gateway config's folder: relative paths in `args` are relative to
    /// it).
    pub cwd: Option<std::path::PathBuf>,
}

/// The protocol version the gateway initializes stdio servers with.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Most client sessions remembered per server.
const MAX_SESSIONS: usize = 10_000;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
/// Lines for the process's input: one writer task owns it, so that nobody waits on a lock a
/// blocked write holds (the reader answering the process's own requests never waits at all).
type Stdin = tokio::sync::mpsc::Sender<Vec<u8>>;

/// Calls in flight: (client session, client request id) → the process's id.
type InFlight = Arc<Mutex<HashMap<(String, String), u64>>>;

/// JSON-RPC code of a call its client cancelled (as LSP's `RequestCancelled`).
pub const CANCELLED: i64 = -32800;

/// Lines waiting for the process's input.
const INPUT_QUEUE: usize = 256;
/// Longest wait for room in that queue (a process that stopped reading its input).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running process.
struct Running {
    stdin: Stdin,
    child: tokio::process::Child,
    /// Set by the reader when the process's stdout ends.
    dead: Arc<std::sync::atomic::AtomicBool>,
}

/// One stdio server.
pub struct StdioServer {
    name: String,
    cmd: StdioCommand,
    max_line: usize,
    running: tokio::sync::Mutex<Option<Running>>,
    waiters: Waiters,
    inflight: InFlight,
    next_id: AtomicU64,
    /// The process's answer to the gateway's `initialize`.
    init: Mutex<Option<Value>>,
    sessions: Mutex<lru::LruCache<String, ()>>,
    /// (last start, current backoff).
    starts: Mutex<(Option<Instant>, Duration)>,
    /// Starts so far (the first included).
    pub started: AtomicU64,
}

/// What one client message got.
pub struct Exchange {
    /// A new session id (for `initialize`).
    pub session: Option<String>,
    /// The answers to return.
    pub answers: Vec<Value>,
}

impl StdioServer {
    /// A server started on first use.
    pub fn new(name: &str, cmd: StdioCommand, max_line: usize) -> StdioServer {
        StdioServer {
            name: name.to_string(),
            cmd,
            max_line,
            running: tokio::sync::Mutex::new(None),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
            init: Mutex::new(None),
            sessions: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_SESSIONS).unwrap_or(NonZeroUsize::MIN),
            )),
            starts: Mutex::new((None, Duration::ZERO)),
            started: AtomicU64::new(0),
        }
    }

    /// Whether `sid` is one of this server's sessions.
    pub fn knows(&self, sid: &str) -> bool {
        self.sessions.lock().get(sid).is_some()
    }

    /// A session ended.
    pub fn end(&self, sid: &str) -> bool {
        self.sessions.lock().pop(sid).is_some()
    }

    /// Send one client message of session `sid` (None before `initialize`); its answers.
    /// `Err`: why the server could not answer (for the client's JSON-RPC error).
    pub async fn exchange(
        &self,
        msg: &Value,
        sid: Option<&str>,
        timeout: Duration,
    ) -> Result<Exchange, String> {
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg.get("id").cloned();
        let is_request = method.is_some() && id.is_some();
        let stdin = self.ensure(timeout).await?;
        if method == Some("initialize") && is_request {
            let result = self.init.lock().clone().unwrap_or_else(|| json!({}));
            let sid = uuid::Uuid::new_v4().simple().to_string();
            self.sessions.lock().put(sid.clone(), ());
            return Ok(Exchange {
                session: Some(sid),
                answers: vec![json!({"jsonrpc": "2.0", "id": id, "result": result})],
            });
        }
        if !is_request {
            // `notifications/initialized`: the gateway initialized the process itself; an
            // answer to a server request: the gateway answered it itself; other notifications
            // but cancellations concern the client's session only
            if method == Some("notifications/cancelled") {
                self.cancel_from_client(msg, sid.unwrap_or(""));
            }
            return Ok(Exchange {
                session: None,
                answers: Vec::new(),
            });
        }
        let gid = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = msg.clone();
        out["id"] = json!(gid);
        let rx = self.register(gid);
        let key = (
            sid.unwrap_or("").to_string(),
            id.as_ref().map(id_key).unwrap_or_default(),
        );
        self.inflight.lock().insert(key.clone(), gid);
        // cancels the call in the process unless it is answered (the client went away, the
        // gateway gave up)
        let mut pending = Pending {
            server: self,
            stdin: &stdin,
            gid,
            key,
            reason: "the client went away",
            settled: false,
        };
        if let Err(e) = self.write(&stdin, &out).await {
            pending.settle();
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(mut answer)) => {
                pending.settle();
                answer["id"] = id.unwrap_or(Value::Null);
                Ok(Exchange {
                    session: None,
                    answers: vec![answer],
                })
            }
            Ok(Err(_)) => {
                pending.settle();
                Err("exited while answering; the gateway starts it again for the next call".into())
            }
            Err(_) => {
                pending.reason = "timed out at the gateway";
                Err(format!(
                    "did not answer within {}",
                    humantime::format_duration(timeout)
                ))
            }
        }
    }

    /// A client cancelled one of its calls: the process learns it under its own id, and the
    /// call's waiter gets an error at once.
    fn cancel_from_client(&self, msg: &Value, sid: &str) {
        let Some(rid) = msg.pointer("/params/requestId") else {
            return;
        };
        let Some(gid) = self.inflight.lock().remove(&(sid.to_string(), id_key(rid))) else {
            return; // already answered, or not this session's
        };
        self.send_cancel(gid, "cancelled by the client");
        if let Some(tx) = self.waiters.lock().remove(&gid) {
            let _ = tx.send(json!({"jsonrpc": "2.0", "id": gid, "error": {
                "code": CANCELLED,
                "message": "the client cancelled this request",
            }}));
        }
    }

    /// Tell the running process to stop working on `gid`.
    fn send_cancel(&self, gid: u64, reason: &str) {
        let Ok(running) = self.running.try_lock() else {
            return;
        };
        if let Some(r) = running.as_ref() {
            cancel_notice(&r.stdin, gid, reason);
        }
    }

    fn register(&self, gid: u64) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(gid, tx);
        rx
    }

    async fn write(&self, stdin: &Stdin, v: &Value) -> Result<(), String> {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        match tokio::time::timeout(WRITE_TIMEOUT, stdin.send(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(
                "exited (its input is closed); the gateway starts it again for the next call"
                    .to_string(),
            ),
            Err(_) => Err("does not read its input".to_string()),
        }
    }

    /// The running process's input, starting (and initializing) it when it is not running.
    async fn ensure(&self, timeout: Duration) -> Result<Stdin, String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_mut() {
            if !r.dead.load(Ordering::Acquire) && matches!(r.child.try_wait(), Ok(None)) {
                return Ok(r.stdin.clone());
            }
            let _ = r.child.start_kill();
            *running = None;
            tracing::warn!(server = %self.name, "MCP stdio server exited; starting it again");
        }
        // backoff while it keeps dying
        let wait = {
            let mut s = self.starts.lock();
            let now = Instant::now();
            let wait = match s.0 {
                Some(last) if now.duration_since(last) < Duration::from_secs(60) => {
                    s.1 = (s.1 * 2).clamp(Duration::from_millis(250), Duration::from_secs(8));
                    s.1.saturating_sub(now.duration_since(last))
                }
                _ => {
                    s.1 = Duration::ZERO;
                    Duration::ZERO
                }
            };
            s.0 = Some(now + wait);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let r = self.spawn()?;
        let stdin = r.stdin.clone();
        *running = Some(r);
        self.started.fetch_add(1, Ordering::Relaxed);
        // the handshake, before any client message
        let gid = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self.register(gid);
        self.write(
            &stdin,
            &json!({"jsonrpc": "2.0", "id": gid, "method": "initialize", "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "portcullis-gateway", "version": env!("CARGO_PKG_VERSION")},
            }}),
        )
        .await?;
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(a)) => a,
            _ => {
                if let Some(r) = running.as_mut() {
                    let _ = r.child.start_kill();
                }
                *running = None;
                return Err("did not complete the MCP handshake".into());
            }
        };
        let Some(result) = answer.get("result").cloned() else {
            *running = None;
            return Err("refused the gateway's initialize".into());
        };
        *self.init.lock() = Some(result);
        self.write(
            &stdin,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        tracing::info!(server = %self.name, "MCP stdio server started");
        Ok(stdin)
    }

    fn spawn(&self) -> Result<Running, String> {
        let mut cmd = tokio::process::Command::new(&self.cmd.command);
        cmd.args(&self.cmd.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for k in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.envs(&self.cmd.env);
        if let Some(dir) = &self.cmd.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            tracing::error!(server = %self.name, command = %self.cmd.command, error = %e, "cannot start MCP stdio server");
            "could not be started (see the gateway's log)".to_string()
        })?;
        let (Some(raw_stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("could not be started (no pipes)".into());
        };
        let (tx, rx) = tokio::sync::mpsc::channel(INPUT_QUEUE);
        let stdin: Stdin = tx;
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(write_loop(raw_stdin, rx, dead.clone()));
        tokio::spawn(read_loop(
            self.name.clone(),
            stdout,
            stdin.clone(),
            self.waiters.clone(),
            dead.clone(),
            self.max_line,
        ));
        Ok(Running { stdin, child, dead })
    }
}

/// A call written to the process and not yet settled: dropping it unsettled (the client went
/// away, the gateway timed out) cancels the call in the process.
struct Pending<'a> {
    server: &'a StdioServer,
    stdin: &'a Stdin,
    gid: u64,
    key: (String, String),
    reason: &'static str,
    settled: bool,
}

impl Pending<'_> {
    /// The call ended with an answer or with the process: nothing to cancel.
    fn settle(&mut self) {
        self.settled = true;
        self.forget();
    }

    /// Drop the call's waiter and in-flight entry (unless a newer call of the same client id
    /// took it); whether the waiter was still there (nobody answered or cancelled it).
    fn forget(&self) -> bool {
        let waiting = self.server.waiters.lock().remove(&self.gid).is_some();
        let mut inflight = self.server.inflight.lock();
        if inflight.get(&self.key) == Some(&self.gid) {
            inflight.remove(&self.key);
        }
        waiting
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.settled && self.forget() {
            cancel_notice(self.stdin, self.gid, self.reason);
        }
    }
}

/// Queue `notifications/cancelled` for the process's request `gid` (never waits: a process
/// that does not read its input loses the notice, not the gateway's time).
fn cancel_notice(stdin: &Stdin, gid: u64, reason: &str) {
    let mut line = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": gid, "reason": reason}})
    .to_string()
    .into_bytes();
    line.push(b'\n');
    let _ = stdin.try_send(line);
}

/// The key of a JSON-RPC id (`1` and `"1"` are different ids).
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Write queued lines to the process's input until it closes (or every sender is gone, with
/// the process).
async fn write_loop(
    mut stdin: tokio::process::ChildStdin,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    dead: Arc<std::sync::atomic::AtomicBool>,
) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            dead.store(true, Ordering::Release);
            break;
        }
    }
}

/// Read the process's output: answers to their waiters, the process's own requests answered,
/// notifications dropped. At the end (exit, a line too long, not JSON) every waiter is
/// dropped, which its caller reports.
async fn read_loop(
    name: String,
    stdout: tokio::process::ChildStdout,
    stdin: Stdin,
    waiters: Waiters,
    dead: Arc<std::sync::atomic::AtomicBool>,
    max_line: usize,
) {
    let mut r = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut r)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        if line.len() > max_line {
            tracing::error!(server = %name, "MCP stdio server wrote a line over mcp.max_message_bytes; stopping it");
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            tracing::error!(server = %name, "MCP stdio server wrote a line that is not JSON; stopping it");
            break;
        };
        let has_id = v.get("id").is_some_and(|i| !i.is_null());
        match (v.get("method").and_then(Value::as_str), has_id) {
            (None, true) => {
                let gid = v.get("id").and_then(Value::as_u64);
                if let Some(tx) = gid.and_then(|g| waiters.lock().remove(&g)) {
                    let _ = tx.send(v);
                }
            }
            (Some(m), true) => {
                let id = v.get("id").cloned().unwrap_or(Value::Null);
                let answer = match m {
                    "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                    "roots/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"roots": []}}),
                    _ => {
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "the Portcullis gateway shares this stdio server between clients and does not relay its requests to them"}})
                    }
                };
                let mut out = answer.to_string().into_bytes();
                out.push(b'\n');
                // never waits: a process that floods requests without reading its input
                // loses answers, not the gateway's reader
                let _ = stdin.try_send(out);
            }
            _ => {} // notifications
        }
    }
    dead.store(true, Ordering::Release);
    // every call in flight learns that the process is gone
    waiters.lock().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny stdio "server" in sh: answers initialize, echoes `x/echo` (with the process id
    /// of the last request it was told was cancelled), exits on `x/exit`, never answers
    /// `x/hang`.
    fn script() -> StdioCommand {
        StdioCommand {
            command: "sh".into(),
            args: vec![
                "-c".into(),
                r#"while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"sh","version":"1"}}}\n' "$id" ;;
    *'"method":"x/exit"'*) exit 3 ;;
    *'"method":"notifications/cancelled"'*) c=$(printf '%s' "$line" | sed -n 's/.*"requestId":\([0-9]*\).*/\1/p') ;;
    *'"method":"x/echo"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"echo":true,"cancelled":"%s"}}\n' "$id" "$c" ;;
  esac
done"#
                    .into(),
            ],
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    #[tokio::test]
    async fn a_stdio_server_is_shared_restarted_and_its_ids_are_the_clients() {
        let s = StdioServer::new("sh", script(), 1 << 16);
        let t = Duration::from_secs(5);
        let init = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":"c1","method":"initialize","params":{}}),
                None,
                t,
            )
            .await
            .unwrap();
        let sid = init.session.clone().unwrap();
        assert!(s.knows(&sid));
        assert_eq!(init.answers[0]["id"], "c1");
        assert_eq!(init.answers[0]["result"]["serverInfo"]["name"], "sh");
        let a = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":7,"method":"x/echo"}),
                Some(&sid),
                t,
            )
            .await
            .unwrap();
        assert_eq!(a.answers[0]["id"], 7);
        assert_eq!(a.answers[0]["result"]["echo"], true);
        // the process dies while answering: a clear error, then the next call works
        let e = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":8,"method":"x/exit"}),
                Some(&sid),
                t,
            )
            .await
            .err()
            .unwrap();
        assert!(e.contains("exited"), "{e}");
        let a = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":9,"method":"x/echo"}),
                Some(&sid),
                t,
            )
            .await
            .unwrap();
        assert_eq!(a.answers[0]["id"], 9);
        assert_eq!(s.started.load(Ordering::Relaxed), 2);
        // the session survived the restart
        assert!(s.knows(&sid));
        assert!(s.end(&sid) && !s.knows(&sid));
    }

    #[tokio::test]
    async fn cancellations_reach_the_process_under_its_own_ids() {
        let s = Arc::new(StdioServer::new("sh", script(), 1 << 16));
        let t = Duration::from_secs(5);
        let init = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}),
                None,
                t,
            )
            .await
            .unwrap();
        let sid = init.session.unwrap();
        // a call that never ends, cancelled by its client from another exchange
        let hang = {
            let (s, sid) = (s.clone(), sid.clone());
            tokio::spawn(async move {
                s.exchange(
                    &json!({"jsonrpc":"2.0","id":"h1","method":"x/hang"}),
                    Some(&sid),
                    Duration::from_secs(30),
                )
                .await
            })
        };
        while s.inflight.lock().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gid = *s.inflight.lock().values().next().unwrap();
        // another session's client cannot cancel it (ids are per session)
        let other =
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"h1"}});
        let x = s.exchange(&other, Some("another"), t).await.unwrap();
        assert!(x.answers.is_empty());
        assert_eq!(s.inflight.lock().len(), 1);
        let x = s.exchange(&other, Some(&sid), t).await.unwrap();
        assert!(x.answers.is_empty());
        let a = tokio::time::timeout(Duration::from_secs(5), hang)
            .await
            .expect("the cancelled call ends at once")
            .unwrap()
            .unwrap();
        assert_eq!(a.answers[0]["id"], "h1");
        assert_eq!(a.answers[0]["error"]["code"], CANCELLED);
        let e = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":2,"method":"x/echo"}),
                Some(&sid),
                t,
            )
            .await
            .unwrap();
        assert_eq!(e.answers[0]["result"]["cancelled"], gid.to_string());
        // a call the gateway gives up on is cancelled in the process too
        let e = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":3,"method":"x/hang"}),
                Some(&sid),
                Duration::from_millis(200),
            )
            .await
            .err()
            .unwrap();
        assert!(e.contains("did not answer"), "{e}");
        let e = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":4,"method":"x/echo"}),
                Some(&sid),
                t,
            )
            .await
            .unwrap();
        assert_eq!(e.answers[0]["result"]["cancelled"], (gid + 2).to_string());
        assert!(s.inflight.lock().is_empty() && s.waiters.lock().is_empty());
    }

    #[tokio::test]
    async fn a_command_that_does_not_start_is_a_clear_error() {
        let s = StdioServer::new(
            "nope",
            StdioCommand {
                command: "/nonexistent/mcp-server".into(),
                args: vec![],
                env: BTreeMap::new(),
                cwd: None,
            },
            1 << 16,
        );
        let e = s
            .exchange(
                &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
                None,
                Duration::from_secs(2),
            )
            .await
            .err()
            .unwrap();
        assert!(e.contains("could not be started"), "{e}");
    }
}
