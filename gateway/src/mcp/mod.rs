//! The MCP gateway's state: the configured servers, the tool-definition pins, which client
//! owns which MCP session, and the per-key tool-call windows. The request path that uses them
//! is `proxy/mcp.rs`; what a JSON-RPC message carries is `filters::protocol::mcp`.
//!
//! **Pins.** The first `tools/list` answer that shows a tool records the SHA-256 of its
//! definition (`filters::protocol::mcp::tool_digest`). A later listing with another digest is
//! a *change* (a rug-pull): it is kept as the tool's `pending` digest until an admin approves
//! it (`POST /admin/mcp/approve?server=&tool=`), and the policy's `mcp.pinning` decides what
//! the client sees meanwhile. Pins are per server (shared by every client of it), kept in
//! `mcp.pins_file` when configured (written atomically on every change), else in memory.
//!
//! **Stdio servers** ([`stdio`]): started by the gateway and served like HTTP ones.
//!
//! **Sessions.** The server's `Mcp-Session-Id` is bound to the API key whose `initialize`
//! created it: another key presenting it is answered 404 (unknown session), so a leaked or
//! guessed session id does not let one tenant ride another's session.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub mod stdio;

pub use stdio::{StdioCommand, StdioServer};

/// One configured server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Its Streamable HTTP endpoint (empty for a stdio server).
    pub url: String,
    /// CA certificates (PEM) its https endpoint is checked against, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// The command of a stdio server.
    pub stdio: Option<StdioCommand>,
    /// Time it has to start answering a POST.
    pub timeout: Duration,
}

/// The validated `mcp:` section.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// Servers by name.
    pub servers: BTreeMap<String, ServerSettings>,
    /// Largest JSON-RPC body either way.
    pub max_message_bytes: usize,
    /// Where pins are kept.
    pub pins_file: Option<PathBuf>,
}

/// Most MCP sessions remembered (their owners); the oldest are forgotten first.
const MAX_SESSIONS: usize = 100_000;
/// Most (key, server, tool) call windows remembered.
const MAX_WINDOWS: usize = 100_000;

/// (key id, server, tool): whose calls a window counts.
type WindowKey = (String, String, String);

/// The MCP gateway's shared state.
pub struct Mcp {
    /// The configuration.
    pub settings: McpSettings,
    /// The HTTP client of each HTTP server (its own connection pool and trusted CAs).
    clients: HashMap<String, reqwest::Client>,
    /// The client of servers without one of their own.
    default_client: reqwest::Client,
    /// Tool-definition pins.
    pub pins: Pins,
    /// The stdio servers, by name.
    stdio: HashMap<String, Arc<StdioServer>>,
    /// Session id → the key id that owns it (`""`: no key).
    sessions: Mutex<lru::LruCache<String, String>>,
    /// (key id, server, tool) → (start of the current minute window, calls in it).
    windows: Mutex<lru::LruCache<WindowKey, (Instant, u32)>>,
}

impl std::fmt::Debug for Mcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcp")
            .field("servers", &self.settings.servers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether a session may be used by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    /// It is the caller's.
    Ok,
    /// Another key's.
    Foreign,
    /// Not issued through this gateway (or forgotten: the oldest of `MAX_SESSIONS`).
    Unknown,
}

impl Mcp {
    /// The state for `settings`, reading the pins file when there is one.
    pub fn new(settings: McpSettings) -> anyhow::Result<Mcp> {
        let pins = Pins::open(settings.pins_file.clone())?;
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
        };
        let mut clients = HashMap::new();
        for (name, s) in &settings.servers {
            let Some(ca) = &s.ca_file else { continue };
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("mcp.servers.{name}.ca_file {}: {e}", ca.display()))?;
            let mut b = builder();
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("mcp.servers.{name}.ca_file {}: {e}", ca.display()))?
            {
                b = b.add_root_certificate(cert);
            }
            clients.insert(name.clone(), b.build()?);
        }
        let default_client = builder().build()?;
        let stdio = settings
            .servers
            .iter()
            .filter_map(|(name, s)| {
                s.stdio.clone().map(|cmd| {
                    (
                        name.clone(),
                        Arc::new(StdioServer::new(name, cmd, settings.max_message_bytes)),
                    )
                })
            })
            .collect();
        Ok(Mcp {
            stdio,
            settings,
            clients,
            default_client,
            pins,
            sessions: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_SESSIONS).unwrap_or(NonZeroUsize::MIN),
            )),
            windows: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_WINDOWS).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// The HTTP client for server `name`.
    pub fn client(&self, name: &str) -> &reqwest::Client {
        self.clients.get(name).unwrap_or(&self.default_client)
    }

    /// The stdio server `name`, when it is one.
    pub fn stdio(&self, name: &str) -> Option<&Arc<StdioServer>> {
        self.stdio.get(name)
    }

    /// Whether the caller `key` may use the session `sid`: only the key whose request the
    /// server issued it for may (an id the gateway never saw issued is unknown: a client
    /// presenting a leaked or guessed id, or any id after a restart, starts a new session).
    pub fn session(&self, server: &str, sid: &str, key: &str) -> SessionCheck {
        match self.sessions.lock().get(&format!("{server}\u{0}{sid}")) {
            Some(owner) if owner == key => SessionCheck::Ok,
            Some(_) => SessionCheck::Foreign,
            None => SessionCheck::Unknown,
        }
    }

    /// The server issued `sid` in its answer to `key`'s request: the session is that key's
    /// (an id already bound stays with its owner).
    pub fn bind(&self, server: &str, sid: &str, key: &str) {
        let k = format!("{server}\u{0}{sid}");
        let mut s = self.sessions.lock();
        if s.get(&k).is_none() {
            s.put(k, key.to_string());
        }
    }

    /// The session `sid` ended (DELETE).
    pub fn end_session(&self, server: &str, sid: &str) {
        self.sessions.lock().pop(&format!("{server}\u{0}{sid}"));
    }

    /// Count a `tools/call` of `key` to `server`'s `tool` against `per_minute` (fixed one-minute
    /// windows). `Err(seconds)`: over the limit; retry after that many seconds.
    pub fn take_call(
        &self,
        key: &str,
        server: &str,
        tool: &str,
        per_minute: u32,
    ) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut w = self.windows.lock();
        let slot = w.get_or_insert_mut(
            (key.to_string(), server.to_string(), tool.to_string()),
            || (now, 0),
        );
        if now.duration_since(slot.0) >= Duration::from_secs(60) {
            *slot = (now, 0);
        }
        if slot.1 >= per_minute {
            let left = Duration::from_secs(60).saturating_sub(now.duration_since(slot.0));
            return Err(left.as_secs().max(1));
        }
        slot.1 += 1;
        Ok(())
    }
}

/// A tool's pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The approved definition's digest.
    pub digest: String,
    /// When it was pinned or approved (RFC 3339).
    pub since: String,
    /// A changed definition's digest, waiting for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// When the change was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    /// The changed definition, for the admin to read before approving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_definition: Option<serde_json::Value>,
}

/// What a listing's definition is to its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// First seen: pinned now.
    New,
    /// The pinned definition.
    Same,
    /// Another definition than the pinned one (`first`: the first listing that shows this
    /// change, for logging and the audit event once).
    Changed {
        /// Whether this listing is the first to show this definition.
        first: bool,
    },
}

/// Most tools pinned per server (a listing with more is refused: pins and metric labels stay
/// bounded whatever a server lists).
pub const MAX_TOOLS: usize = 1024;

/// Tool-definition pins, and the tools withheld for a finding in their definition.
pub struct Pins {
    file: Option<PathBuf>,
    state: Mutex<PinState>,
    /// Serialises writes of the pins file (the newest snapshot wins).
    writing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinState {
    /// server → tool → pin.
    servers: BTreeMap<String, BTreeMap<String, Pin>>,
    /// (server, tool, policy id) → the finding type its definition was withheld for under
    /// that policy (not persisted: the next listing decides again).
    #[serde(skip)]
    poisoned: HashMap<(String, String, u64), &'static str>,
    /// Changed since the file was last written.
    #[serde(skip)]
    dirty: bool,
}

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveError {
    /// The server has no pins.
    UnknownServer,
    /// `digest` is not the pending definition's (it changed again since the admin read it).
    DigestMismatch {
        /// The tool.
        tool: String,
        /// Its pending digest now.
        pending: String,
    },
}

impl Pins {
    /// Pins kept in `file` (read now when it exists), or in memory.
    pub fn open(file: Option<PathBuf>) -> anyhow::Result<Pins> {
        let state = match &file {
            Some(f) if f.exists() => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    anyhow::anyhow!("reading the MCP pins file {}: {e}", f.display())
                })?;
                serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("the MCP pins file {} is not valid: {e}", f.display())
                })?
            }
            _ => PinState::default(),
        };
        Ok(Pins {
            file,
            state: Mutex::new(state),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Compare a listed definition (`definition`, its `digest`) with the tool's pin, pinning
    /// it when new. Changes are kept in memory until [`Pins::flush`].
    pub fn check(
        &self,
        server: &str,
        tool: &str,
        digest: &str,
        definition: &serde_json::Value,
    ) -> PinCheck {
        let mut st = self.state.lock();
        let tools = st.servers.entry(server.to_string()).or_default();
        let out = match tools.get_mut(tool) {
            None => {
                tools.insert(
                    tool.to_string(),
                    Pin {
                        digest: digest.to_string(),
                        since: crate::audit::now_rfc3339(),
                        pending: None,
                        pending_since: None,
                        pending_definition: None,
                    },
                );
                PinCheck::New
            }
            Some(p) if p.digest == digest => {
                if p.pending.is_none() {
                    return PinCheck::Same;
                }
                // the server went back to the approved definition: nothing is pending
                p.pending = None;
                p.pending_since = None;
                p.pending_definition = None;
                PinCheck::Same
            }
            Some(p) if p.pending.as_deref() == Some(digest) => {
                return PinCheck::Changed { first: false };
            }
            Some(p) => {
                p.pending = Some(digest.to_string());
                p.pending_since = Some(crate::audit::now_rfc3339());
                p.pending_definition = Some(definition.clone());
                PinCheck::Changed { first: true }
            }
        };
        st.dirty = true;
        out
    }

    /// Whether `tool`'s definition changed and waits for approval.
    pub fn pending(&self, server: &str, tool: &str) -> bool {
        self.state
            .lock()
            .servers
            .get(server)
            .and_then(|t| t.get(tool))
            .is_some_and(|p| p.pending.is_some())
    }

    /// Whether `tool` was ever listed by `server` (pinned).
    pub fn known(&self, server: &str, tool: &str) -> bool {
        self.state
            .lock()
            .servers
            .get(server)
            .is_some_and(|t| t.contains_key(tool))
    }

    /// Approve the pending definitions of `server` (one `tool`, or all; with `digest`, only
    /// if it is the pending one: what the admin read is what gets approved). Returns the tools
    /// approved.
    pub fn approve(
        &self,
        server: &str,
        tool: Option<&str>,
        digest: Option<&str>,
    ) -> Result<Vec<String>, ApproveError> {
        let mut st = self.state.lock();
        let tools = st
            .servers
            .get_mut(server)
            .ok_or(ApproveError::UnknownServer)?;
        let chosen = |name: &str| tool.is_none_or(|t| t == name);
        if let Some(d) = digest {
            for (name, p) in tools.iter().filter(|(n, _)| chosen(n)) {
                if let Some(pending) = &p.pending
                    && pending != d
                {
                    return Err(ApproveError::DigestMismatch {
                        tool: name.clone(),
                        pending: pending.clone(),
                    });
                }
            }
        }
        let mut done = Vec::new();
        for (name, p) in tools.iter_mut().filter(|(n, _)| chosen(n)) {
            if let Some(d) = p.pending.take() {
                p.digest = d;
                p.since = crate::audit::now_rfc3339();
                p.pending_since = None;
                p.pending_definition = None;
                done.push(name.clone());
            }
        }
        if !done.is_empty() {
            st.dirty = true;
        }
        Ok(done)
    }

    /// Record that `tool`'s definition was withheld under policy `policy` for a finding
    /// (`None`: that policy found it clean at the last listing).
    pub fn set_poisoned(
        &self,
        server: &str,
        tool: &str,
        policy: u64,
        finding: Option<&'static str>,
    ) {
        let mut st = self.state.lock();
        let k = (server.to_string(), tool.to_string(), policy);
        match finding {
            Some(f) => {
                st.poisoned.insert(k, f);
            }
            None => {
                st.poisoned.remove(&k);
            }
        }
    }

    /// The finding `tool`'s definition was withheld for under policy `policy`, if it was.
    pub fn poisoned(&self, server: &str, tool: &str, policy: u64) -> Option<&'static str> {
        self.state
            .lock()
            .poisoned
            .get(&(server.to_string(), tool.to_string(), policy))
            .copied()
    }

    /// Every pin, for `GET /admin/mcp/pins`.
    pub fn listing(&self) -> serde_json::Value {
        let st = self.state.lock();
        serde_json::json!({
            "servers": st.servers,
            "withheld": st.poisoned.iter().map(|((s, t, _), f)| serde_json::json!({"server": s, "tool": t, "finding": f})).collect::<Vec<_>>(),
        })
    }

    /// Write the pins file when something changed (once per listing or approval, off the
    /// async threads, atomically: a temporary file synced and renamed over it). A failure is
    /// logged: the pins stay in force in memory.
    pub async fn flush(&self) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let _one_writer = self.writing.lock().await;
        let snapshot = {
            let mut st = self.state.lock();
            if !st.dirty {
                return;
            }
            st.dirty = false;
            serde_json::to_vec_pretty(&*st)
        };
        let Ok(bytes) = snapshot else { return };
        let target = file.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&target, &bytes)).await;
        if !matches!(written, Ok(Ok(()))) {
            self.state.lock().dirty = true;
            tracing::error!(file = %file.display(), "could not write the MCP pins file; pins stay in memory");
        }
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// The state shared by the proxy and the admin API.
pub type Shared = Arc<Mcp>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pins_record_changes_until_approved_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pins.json");
        let def = serde_json::json!({"name": "w"});
        let p = Pins::open(Some(file.clone())).unwrap();
        assert_eq!(p.check("s", "w", "d1", &def), PinCheck::New);
        assert_eq!(p.check("s", "w", "d1", &def), PinCheck::Same);
        assert!(!p.pending("s", "w"));
        assert_eq!(
            p.check("s", "w", "d2", &def),
            PinCheck::Changed { first: true }
        );
        assert_eq!(
            p.check("s", "w", "d2", &def),
            PinCheck::Changed { first: false }
        );
        assert!(p.pending("s", "w"));
        p.flush().await;
        // a restart keeps both the pin and the pending change
        let p = Pins::open(Some(file.clone())).unwrap();
        assert!(p.pending("s", "w"));
        assert_eq!(p.approve("s", Some("other"), None), Ok(vec![]));
        assert_eq!(
            p.approve("nope", None, None),
            Err(ApproveError::UnknownServer)
        );
        // an approval names what the admin read: another digest is refused
        assert!(matches!(
            p.approve("s", Some("w"), Some("d3")),
            Err(ApproveError::DigestMismatch { .. })
        ));
        assert_eq!(p.approve("s", None, Some("d2")), Ok(vec!["w".to_string()]));
        assert_eq!(p.check("s", "w", "d2", &def), PinCheck::Same);
        assert_eq!(
            p.check("s", "w", "d1", &def),
            PinCheck::Changed { first: true }
        );
        // going back to the approved definition clears the pending one
        assert_eq!(p.check("s", "w", "d2", &def), PinCheck::Same);
        assert!(!p.pending("s", "w"));
        assert!(Pins::open(Some(dir.path().join("absent.json"))).is_ok());
        std::fs::write(&file, "{not json").unwrap();
        assert!(Pins::open(Some(file)).is_err());
    }

    #[test]
    fn poisoning_verdicts_are_per_policy() {
        let p = Pins::open(None).unwrap();
        p.set_poisoned("s", "t", 1, Some("tool_poisoning"));
        assert_eq!(p.poisoned("s", "t", 1), Some("tool_poisoning"));
        assert_eq!(p.poisoned("s", "t", 2), None);
        p.set_poisoned("s", "t", 2, None);
        assert_eq!(p.poisoned("s", "t", 1), Some("tool_poisoning"));
    }

    #[test]
    fn sessions_belong_to_the_key_that_made_them() {
        let m = Mcp::new(McpSettings {
            servers: BTreeMap::new(),
            max_message_bytes: 1 << 20,
            pins_file: None,
        })
        .unwrap();
        // an id nobody was issued is nobody's, whoever presents it first
        assert_eq!(m.session("s", "abc", "k2"), SessionCheck::Unknown);
        m.bind("s", "abc", "k1");
        assert_eq!(m.session("s", "abc", "k1"), SessionCheck::Ok);
        assert_eq!(m.session("s", "abc", "k2"), SessionCheck::Foreign);
        // a second issue of the same id does not move it
        m.bind("s", "abc", "k2");
        assert_eq!(m.session("s", "abc", "k2"), SessionCheck::Foreign);
        // the same id on another server is another session
        assert_eq!(m.session("t", "abc", "k1"), SessionCheck::Unknown);
        m.end_session("s", "abc");
        assert_eq!(m.session("s", "abc", "k1"), SessionCheck::Unknown);
    }

    #[test]
    fn tool_calls_are_counted_per_key_and_tool() {
        let m = Mcp::new(McpSettings {
            servers: BTreeMap::new(),
            max_message_bytes: 1 << 20,
            pins_file: None,
        })
        .unwrap();
        for _ in 0..3 {
            assert!(m.take_call("k", "s", "t", 3).is_ok());
        }
        let wait = m.take_call("k", "s", "t", 3).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(m.take_call("k", "s", "other", 3).is_ok());
        assert!(m.take_call("k2", "s", "t", 3).is_ok());
        assert!(m.take_call("k", "s", "t", 0).is_ok());
    }
}
