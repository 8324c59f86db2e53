//! An in-process harness over [`crate::server::build`]: the request path exactly as `gateway
//! serve` runs it (the connection loop of `connections.rs`, pingora's HTTP/1.1 session, every
//! phase of the proxy) driven through in-memory connections instead of sockets, from any client
//! address. For tests and benchmarks of request-path logic: no process to spawn, no port to
//! find, no log to scrape, and the built parts ([`Harness::metrics`], [`Harness::built`]) are
//! there to assert on. Backends stay real: a request that reaches the upstream goes over TCP to
//! whatever the config names (tests start mock-tgi for that). The spawned-binary tests remain
//! for the CLI, signals, TLS listeners and end-to-end runs with real client SDKs.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use gateway::harness::{Harness, Request};
//! let h = Harness::from_yaml(
//!     std::path::Path::new("/tmp/gw.yaml"),
//!     "upstreams: {tgi: {backends: ['127.0.0.1:3000']}}",
//! )?;
//! let r = h.send(Request::post("/generate").json(r#"{"inputs":"hi"}"#)).await?;
//! assert_eq!(r.status, 200);
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use crate::config::GatewayConfig;
use crate::server::{Built, ProxyApp};

/// A gateway built from a config, served over in-memory connections.
pub struct Harness {
    app: Arc<ProxyApp>,
    /// What `server::build` made (metrics, guard, pools).
    pub built: BuiltParts,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Longest wait for a whole answer.
    pub timeout: Duration,
}

/// The parts of [`Built`] a test reads (the proxy itself is inside the harness).
pub struct BuiltParts {
    /// The metrics registry.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The guard, when a policy is configured.
    pub guard: Option<Arc<crate::guard::Guard>>,
    /// The upstream pools.
    pub pools: Vec<Arc<crate::upstream::Pool>>,
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers (`host`, `content-length` and `connection: close` are added).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The client address the gateway sees.
    pub peer: SocketAddr,
}

impl Request {
    /// A request with no body.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// A JSON body (and its content type).
    pub fn json(mut self, body: impl Into<String>) -> Request {
        self.body = body.into().into_bytes();
        self.header("content-type", "application/json")
    }

    /// A header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `Authorization: Bearer key`.
    pub fn bearer(self, key: &str) -> Request {
        self.header("authorization", &format!("Bearer {key}"))
    }

    /// From this client address.
    pub fn from(mut self, ip: IpAddr) -> Request {
        self.peer = SocketAddr::new(ip, self.peer.port());
        self
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: portcullis.test\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            out.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        out.push_str("connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (chunked transfer decoded).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parse a whole HTTP/1.1 response.
    pub fn parse(raw: &[u8]) -> anyhow::Result<Response> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let at = match r.parse(raw).context("not an HTTP/1.1 response")? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => anyhow::bail!(
                "the connection closed inside the response header ({} bytes)",
                raw.len()
            ),
        };
        let status = r.code.context("no status")?;
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let rest = &raw[at..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(rest)?
        } else {
            match headers.iter().find(|(k, _)| k == "content-length") {
                Some((_, n)) => {
                    let n: usize = n.trim().parse().context("content-length")?;
                    rest.get(..n)
                        .with_context(|| format!("body cut short: {} of {n} bytes", rest.len()))?
                        .to_vec()
                }
                None => rest.to_vec(),
            }
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line cut short")?;
        let size = std::str::from_utf8(&b[..line_end])?;
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).with_context(|| format!("chunk size `{size}`"))?;
        b = &b[line_end + 2..];
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..n).context("chunk cut short")?);
        b = b.get(n + 2..).context("chunk end cut short")?;
    }
}

impl Harness {
    /// Build the gateway of `config` (as `gateway serve` would, without binding anything).
    pub fn new(config: &GatewayConfig) -> anyhow::Result<Harness> {
        let built = crate::server::build(config)?;
        let Built {
            gateway,
            metrics,
            guard,
            pools,
            ..
        } = built;
        let conf = Arc::new(pingora::server::configuration::ServerConf::default());
        let app = crate::server::proxy_app(&conf, gateway, config.connections, &metrics);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Ok(Harness {
            app: Arc::new(app),
            built: BuiltParts {
                metrics,
                guard,
                pools,
            },
            shutdown,
            timeout: Duration::from_secs(30),
        })
    }

    /// Write `yaml` to `path` (relative paths in it are relative to `path`'s folder), load it
    /// and build. `server.listen` / `admin.listen` may be left out: nothing binds them.
    pub fn from_yaml(path: &Path, yaml: &str) -> anyhow::Result<Harness> {
        std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))?;
        let config = GatewayConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        Harness::new(&config)
    }

    /// Send one request on a new connection and read the whole answer.
    pub async fn send(&self, req: Request) -> anyhow::Result<Response> {
        let raw = self.exchange(req.peer, &req.to_bytes()).await?;
        Response::parse(&raw)
    }

    /// Write `bytes` on a new connection from `peer`; everything the gateway writes back
    /// until it closes the connection.
    pub async fn exchange(&self, peer: SocketAddr, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let app = self.app.clone();
        let rx = self.shutdown.subscribe();
        let served = tokio::spawn(async move {
            let stream: pingora::protocols::Stream = Box::new(Peer::new(server, peer));
            app.process_new(stream, &rx).await.is_none()
        });
        // a gateway that refuses early (401, 413, 429) closes without reading the rest of a
        // large body: the answer is still there to read, so a failed write is not the result
        let _ = client.write_all(bytes).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(self.timeout, client.read_to_end(&mut out)).await;
        drop(client);
        match read {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                served.abort();
                anyhow::bail!("no whole answer in time (the gateway kept the connection open)");
            }
        }
        served.await.context("the connection task panicked")?;
        Ok(out)
    }

    /// The metrics, as `/metrics` shows them.
    pub fn metrics_text(&self) -> String {
        String::from_utf8_lossy(&self.built.metrics.encode()).into_owned()
    }
}

/// The server half of an in-memory connection, with the client address the gateway reads.
#[derive(Debug)]
struct Peer {
    inner: DuplexStream,
    digest: Arc<SocketDigest>,
}

impl Peer {
    fn new(inner: DuplexStream, peer: SocketAddr) -> Peer {
        // the descriptor is never consulted once the peer address is set
        let d = SocketDigest::from_raw_fd(-1);
        let _ = d.peer_addr.set(Some(PeerAddr::Inet(peer)));
        Peer {
            inner,
            digest: Arc::new(d),
        }
    }
}

impl AsyncRead for Peer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Peer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Peer {
    async fn shutdown(&mut self) {}
}
impl UniqueID for Peer {
    fn id(&self) -> UniqueIDType {
        0
    }
}
impl Ssl for Peer {}
impl GetTimingDigest for Peer {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}
impl GetProxyDigest for Peer {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}
impl GetSocketDigest for Peer {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.digest.clone())
    }
}
impl Peek for Peer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let r = Response::parse(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"{}"[..]));
        assert_eq!(r.header("x-a"), Some("b"));
        let r = Response::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(Response::parse(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(Response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
    }
}
