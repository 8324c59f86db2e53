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
    /// The HTTP client for upstream servers (connection pool shared by all of them).
    pub client: reqwest::Client,
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
    /// It is the caller's (or unknown to the gateway: it becomes the caller's).
    Ok,
    /// Another key's.
    Foreign,
}

impl Mcp {
    /// The state for `settings`, reading the pins file when there is one.
    pub fn new(settings: McpSettings) -> anyhow::Result<Mcp> {
        let pins = Pins::open(settings.pins_file.clone())?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
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
            client,
            pins,
            sessions: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_SESSIONS).unwrap_or(NonZeroUsize::MIN),
            )),
            windows: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(MAX_WINDOWS).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// The stdio server `name`, when it is one.
    pub fn stdio(&self, name: &str) -> Option<&Arc<StdioServer>> {
        self.stdio.get(name)
    }

    /// Check (and bind, when new) the session `sid` for the caller `key`.
    pub fn session(&self, server: &str, sid: &str, key: &str) -> SessionCheck {
        let k = format!("{server}\u{0}{sid}");
        let mut s = self.sessions.lock();
        match s.get(&k) {
            Some(owner) if owner != key => SessionCheck::Foreign,
            Some(_) => SessionCheck::Ok,
            None => {
                s.put(k, key.to_string());
                SessionCheck::Ok
            }
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

/// Tool-definition pins, and the tools withheld for a finding in their definition.
pub struct Pins {
    file: Option<PathBuf>,
    state: Mutex<PinState>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinState {
    /// server → tool → pin.
    servers: BTreeMap<String, BTreeMap<String, Pin>>,
    /// (server, tool) → the finding type its definition was withheld for (not persisted: the
    /// next listing decides again).
    #[serde(skip)]
    poisoned: HashMap<(String, String), &'static str>,
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
        })
    }

    /// Compare a listed definition's digest with the tool's pin (pinning it when new).
    pub fn check(&self, server: &str, tool: &str, digest: &str) -> PinCheck {
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
                    },
                );
                PinCheck::New
            }
            Some(p) if p.digest == digest => {
                // a server that went back to the approved definition: nothing is pending
                if p.pending.take().is_some() {
                    p.pending_since = None;
                    self.save(&st);
                }
                return PinCheck::Same;
            }
            Some(p) => {
                let first = p.pending.as_deref() != Some(digest);
                if first {
                    p.pending = Some(digest.to_string());
                    p.pending_since = Some(crate::audit::now_rfc3339());
                } else {
                    return PinCheck::Changed { first };
                }
                PinCheck::Changed { first }
            }
        };
        self.save(&st);
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

    /// Approve the pending definitions of `server` (one `tool`, or all). Returns the tools
    /// approved; `None` when the server has no pins at all.
    pub fn approve(&self, server: &str, tool: Option<&str>) -> Option<Vec<String>> {
        let mut st = self.state.lock();
        let tools = st.servers.get_mut(server)?;
        let mut done = Vec::new();
        for (name, p) in tools.iter_mut() {
            if tool.is_some_and(|t| t != name) {
                continue;
            }
            if let Some(d) = p.pending.take() {
                p.digest = d;
                p.since = crate::audit::now_rfc3339();
                p.pending_since = None;
                done.push(name.clone());
            }
        }
        if !done.is_empty() {
            self.save(&st);
        }
        Some(done)
    }

    /// Record that `tool`'s definition was withheld for a finding (`None`: it is clean now).
    pub fn set_poisoned(&self, server: &str, tool: &str, finding: Option<&'static str>) {
        let mut st = self.state.lock();
        let k = (server.to_string(), tool.to_string());
        match finding {
            Some(f) => {
                st.poisoned.insert(k, f);
            }
            None => {
                st.poisoned.remove(&k);
            }
        }
    }

    /// The finding `tool`'s definition was withheld for, if it was.
    pub fn poisoned(&self, server: &str, tool: &str) -> Option<&'static str> {
        self.state
            .lock()
            .poisoned
            .get(&(server.to_string(), tool.to_string()))
            .copied()
    }

    /// Every pin, for `GET /admin/mcp/pins`.
    pub fn listing(&self) -> serde_json::Value {
        let st = self.state.lock();
        serde_json::json!({
            "servers": st.servers,
            "withheld": st.poisoned.iter().map(|((s, t), f)| serde_json::json!({"server": s, "tool": t, "finding": f})).collect::<Vec<_>>(),
        })
    }

    /// Write the pins file (atomically: a temporary file renamed over it). A failure is logged:
    /// the pins stay in force in memory.
    fn save(&self, st: &PinState) {
        let Some(file) = &self.file else { return };
        if let Err(e) = write_atomically(file, st) {
            tracing::error!(file = %file.display(), error = %e, "could not write the MCP pins file; pins stay in memory");
        }
    }
}

fn write_atomically(file: &Path, st: &PinState) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    let text = serde_json::to_vec_pretty(st).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// The state shared by the proxy and the admin API.
pub type Shared = Arc<Mcp>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_record_changes_until_approved_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pins.json");
        let p = Pins::open(Some(file.clone())).unwrap();
        assert_eq!(p.check("s", "w", "d1"), PinCheck::New);
        assert_eq!(p.check("s", "w", "d1"), PinCheck::Same);
        assert!(!p.pending("s", "w"));
        assert_eq!(p.check("s", "w", "d2"), PinCheck::Changed { first: true });
        assert_eq!(p.check("s", "w", "d2"), PinCheck::Changed { first: false });
        assert!(p.pending("s", "w"));
        // a restart keeps both the pin and the pending change
        let p = Pins::open(Some(file.clone())).unwrap();
        assert!(p.pending("s", "w"));
        assert_eq!(p.approve("s", Some("other")), Some(vec![]));
        assert_eq!(p.approve("nope", None), None);
        assert_eq!(p.approve("s", None), Some(vec!["w".to_string()]));
        assert_eq!(p.check("s", "w", "d2"), PinCheck::Same);
        assert_eq!(p.check("s", "w", "d1"), PinCheck::Changed { first: true });
        // going back to the approved definition clears the pending one
        assert_eq!(p.check("s", "w", "d2"), PinCheck::Same);
        assert!(!p.pending("s", "w"));
        assert!(Pins::open(Some(dir.path().join("absent.json"))).is_ok());
        std::fs::write(&file, "{not json").unwrap();
        assert!(Pins::open(Some(file)).is_err());
    }

    #[test]
    fn sessions_belong_to_the_key_that_made_them() {
        let m = Mcp::new(McpSettings {
            servers: BTreeMap::new(),
            max_message_bytes: 1 << 20,
            pins_file: None,
        })
        .unwrap();
        assert_eq!(m.session("s", "abc", "k1"), SessionCheck::Ok);
        assert_eq!(m.session("s", "abc", "k1"), SessionCheck::Ok);
        assert_eq!(m.session("s", "abc", "k2"), SessionCheck::Foreign);
        // the same id on another server is another session
        assert_eq!(m.session("t", "abc", "k2"), SessionCheck::Ok);
        m.end_session("s", "abc");
        assert_eq!(m.session("s", "abc", "k2"), SessionCheck::Ok);
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
