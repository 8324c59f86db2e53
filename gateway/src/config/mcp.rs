//! `mcp:`: agents' MCP servers, each exposed at `/mcp/<name>` on the public listener behind the
//! same API keys, limits, policies and audit trail.
//!
//! ```yaml
//! mcp:
//!   servers:
//!     github: {url: http://127.0.0.1:8001/mcp}   # Streamable HTTP
//!     docs: {url: https://mcp.internal/mcp, ca_file: internal-ca.pem}
//!     files: {command: npx, args: [-y, "@modelcontextprotocol/server-filesystem", /srv]}  # stdio
//!   max_message_bytes: 1000000
//!   pins_file: mcp-pins.json                     # tool definition pins, kept across restarts
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Check;
use crate::mcp::{McpSettings, ServerSettings, StdioCommand};

/// Default largest JSON-RPC body, either way.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;
/// Default time a server has to start answering one POST.
pub const DEFAULT_MCP_TIMEOUT: Duration = Duration::from_secs(60);

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}
fn default_timeout() -> Duration {
    DEFAULT_MCP_TIMEOUT
}

/// The `mcp:` section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// MCP servers by name: each is reachable at `/mcp/<name>` (names: letters, digits, `-`,
    /// `_`).
    pub servers: BTreeMap<String, McpServerSection>,
    /// Largest JSON-RPC body accepted from a client (a POST) or a server (one answer or one
    /// event), in bytes: larger ones are refused (413 / a JSON-RPC error).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Where tool definition pins are kept (relative to this file). Without it, pins live in
    /// memory: a restart trusts the next listing anew.
    #[serde(default)]
    pub pins_file: Option<PathBuf>,
}

/// One MCP server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerSection {
    /// The server's Streamable HTTP endpoint (`http://127.0.0.1:8001/mcp`).
    #[serde(default)]
    pub url: Option<String>,
    /// Or: a command that serves MCP over stdio, which the gateway starts (and starts again
    /// when it exits, with a backoff).
    #[serde(default)]
    pub command: Option<String>,
    /// The command's arguments (it runs in this file's folder: relative paths are relative to
    /// it).
    #[serde(default)]
    pub args: Vec<String>,
    /// The command's environment (only `PATH` and `HOME` are kept from the gateway's).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CA certificates (PEM, relative to this file) an `https` server's certificate is checked
    /// against, beside the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time the server has to start answering a POST (`30s`); a stream may then last longer.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// Check the section into runtime settings (`None`: no section).
pub(super) fn check(cx: &mut Check<'_>) -> Option<McpSettings> {
    let section = cx.file().mcp.clone()?;
    let mut servers = BTreeMap::new();
    if section.servers.is_empty() {
        cx.err(
            "mcp.servers",
            "name at least one server, or leave `mcp:` out",
        );
    }
    for (name, s) in &section.servers {
        let at = format!("mcp.servers.{name}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            cx.err(
                &at,
                format!("server name `{name}` must use only letters, digits, `-` and `_` (it is a path segment: /mcp/<name>)"),
            );
            continue;
        }
        match (&s.url, &s.command) {
            (Some(url), None) => match url.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                    let ca_file = s.ca_file.as_ref().map(|f| cx.base().join(f));
                    if let Some(f) = &ca_file
                        && !super::readable(f)
                    {
                        cx.err(
                            &format!("{at}.ca_file"),
                            format!("{} is not a readable file", f.display()),
                        );
                    }
                    if ca_file.is_some() && u.scheme_str() != Some("https") {
                        cx.err(
                            &format!("{at}.ca_file"),
                            "only an https `url:` uses a CA file",
                        );
                    }
                    servers.insert(
                        name.clone(),
                        ServerSettings {
                            url: url.clone(),
                            ca_file,
                            stdio: None,
                            timeout: s.timeout,
                        },
                    );
                }
                _ => cx.err(
                    &format!("{at}.url"),
                    format!("`{url}` is not an http(s) URL (write `https://host:port/path`)"),
                ),
            },
            (None, Some(command)) if !command.trim().is_empty() => {
                // the process runs in this file's folder, named absolutely (a relative folder
                // would be taken from the new working directory again)
                let here = cx.base();
                let here = if here.as_os_str().is_empty() {
                    std::path::PathBuf::from(".")
                } else {
                    here
                };
                let base = std::path::absolute(&here).unwrap_or(here);
                servers.insert(
                    name.clone(),
                    ServerSettings {
                        url: String::new(),
                        ca_file: None,
                        stdio: Some(StdioCommand {
                            // a path (not a name looked up on PATH) is relative to this file
                            command: if command.contains('/') {
                                base.join(command).display().to_string()
                            } else {
                                command.clone()
                            },
                            args: s.args.clone(),
                            env: s.env.clone(),
                            cwd: Some(base),
                        }),
                        timeout: s.timeout,
                    },
                );
            }
            (None, Some(_)) => cx.err(&format!("{at}.command"), "the command is empty"),
            (Some(_), Some(_)) => cx.err(&at, "give `url:` or `command:`, not both"),
            (None, None) => cx.err(
                &at,
                "give the server's `url:` (Streamable HTTP) or `command:` (stdio)",
            ),
        }
        if s.timeout.is_zero() {
            cx.err(&format!("{at}.timeout"), "must be more than 0");
        }
    }
    if !(1024..=64 * 1024 * 1024).contains(&section.max_message_bytes) {
        cx.err(
            "mcp.max_message_bytes",
            format!(
                "{} is out of range 1024..=67108864",
                section.max_message_bytes
            ),
        );
    }
    let pins_file = section.pins_file.as_ref().map(|p| cx.base().join(p));
    Some(McpSettings {
        servers,
        max_message_bytes: section.max_message_bytes,
        pins_file,
    })
}
