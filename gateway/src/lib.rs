//! The Portcullis gateway: a Pingora reverse proxy for TGI and OpenAI-compatible LLM servers.
//!
//! Read `ARCHITECTURE.md` at the repository root first. Module map:
//! - [`config`]: the YAML config, validated with file/line errors.
//! - [`routes`]: which routes exist and which API's error shape each speaks.
//! - [`error`]: the gateway's own error answers.
//! - [`proxy`]: the request path (pingora's `ProxyHttp`, phase by phase).
//! - [`upstream`]: pools, load balancing, health checks, circuit breakers.
//! - [`metrics`], [`admin`]: Prometheus metrics and the admin listener.
//! - [`keys`], [`limits`], [`audit`]: who may call, how much, and the tamper-evident record.
//! - [`models`], [`adapters`]: signed classifier bundles and LoRA adapters (trust, swaps, routing).
//! - [`mcp`]: the MCP gateway's state (servers, tool-definition pins, sessions); its request
//!   path is `proxy/mcp.rs`.
//! - [`server`]: assembling the pingora server; [`telemetry`]: logging.

pub mod adapters;
pub mod admin;
pub mod audit;
pub mod config;
pub mod connections;
pub mod error;
pub mod guard;
pub mod harness;
pub mod keys;
pub mod limits;
pub mod mcp;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod proxy;
pub mod routes;
pub mod scan_cache;
pub mod server;
pub mod telemetry;
pub mod upstream;
pub mod watch;
