//! Logging: `tracing` with text or JSON lines on stderr; pingora's `log` records are bridged in.
//!
//! Lines are formatted on the request's thread but written by a background thread
//! (`tracing-appender`'s non-blocking writer), so a slow or contended stderr never stalls the
//! proxy. If that writer falls more than its buffer behind, lines are dropped rather than
//! blocking requests. Keep the returned guard alive: dropping it flushes what is buffered.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

/// Pingora logs every proxied error at `error`/`warn` itself; our access line already carries
/// them, so its crates stay at `warn` unless the user's filter names them.
const QUIET_DEPENDENCIES: &str = "pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn";

/// Install the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(log: &LogSection) -> anyhow::Result<WorkerGuard> {
    let spec = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => s,
        _ => {
            if log.level.contains("pingora") {
                log.level.clone()
            } else {
                format!("{},{QUIET_DEPENDENCIES}", log.level)
            }
        }
    };
    let filter = EnvFilter::try_new(&spec)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{spec}`: {e}"))?;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let result = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
