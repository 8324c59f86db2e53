//! Client connections: deadlines and caps that pingora leaves open.
//!
//! pingora 0.9 times each header `read()` (60 s) but sets no deadline on the whole header, and
//! after the first request of a keep-alive connection it waits for the next one without a
//! timeout. [`Hygiene`] wraps the proxy as the listening service's [`ServerApp`] and runs the
//! HTTP/1.1 keep-alive loop itself:
//!
//! * **Caps**: a connection over `max_per_ip` for its address or `max_total` in all is answered
//!   `503` and closed before any byte of it is read; a [`Slot`] held for the connection's life
//!   keeps the counts.
//! * **Header deadline**: each request's header must arrive within `header_read_timeout` (after
//!   the keep-alive wait, on a reused connection). The proxy signals the header through the
//!   connection's user context ([`HeaderSeen`], consumed by
//!   `ProxyHttp::on_connection_reuse` once the header is parsed); past the deadline the
//!   connection is dropped.
//! * **Idle keep-alive**: `keepalive_timeout` between requests (pingora's HTTP/1.1 default
//!   resets to "forever" after each request).
//!
//! * **Memory after a burst**: each proxy thread counts the connections that ended on it; a
//!   task on the thread collects its allocator heap once they stop ending for [`QUIET_AFTER`]
//!   ([`crate::memory`]), so a flood's peak goes back to the system once it is over.
//!
//! HTTP/2 never reaches this loop (the listeners do not offer it); a stream that negotiated
//! it is handed to the proxy unchanged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounterVec, IntGauge};
use tokio::io::AsyncWriteExt;

/// Connection limits and deadlines (`server:` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Deadline for a whole request header.
    pub header_read_timeout: Duration,
    /// Idle wait between requests on a keep-alive connection.
    pub keepalive_timeout: Duration,
    /// Open connections in all.
    pub max_total: usize,
    /// Open connections per client address.
    pub max_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_total: 16_384,
            max_per_ip: 1024,
        }
    }
}

/// Open connections, counted in all and per address.
#[derive(Debug, Default)]
pub struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections`.
    Total,
    /// `max_connections_per_ip`.
    PerIp,
}

/// A connection's place in the counts, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: Option<IpAddr>,
    gauge: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = c.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&ip); // the map holds only addresses with open connections
            }
        }
        self.gauge.dec();
    }
}

/// The caps, shared by every connection of the listener.
#[derive(Debug, Clone)]
pub struct Caps {
    counts: Arc<Mutex<Counts>>,
    limits: ConnectionLimits,
    gauge: IntGauge,
}

impl Caps {
    /// Caps with these limits, reporting open connections in `gauge`.
    pub fn new(limits: ConnectionLimits, gauge: IntGauge) -> Caps {
        Caps {
            counts: Arc::default(),
            limits,
            gauge,
        }
    }

    /// Take a slot for a connection from `ip`, or say which cap refuses it.
    pub fn acquire(&self, ip: Option<IpAddr>) -> Result<Slot, Refused> {
        let mut c = self.counts.lock();
        if c.total >= self.limits.max_total {
            return Err(Refused::Total);
        }
        if let Some(ip) = ip {
            let n = c.per_ip.entry(ip).or_default();
            if *n >= self.limits.max_per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        c.total += 1;
        drop(c);
        self.gauge.inc();
        Ok(Slot {
            counts: self.counts.clone(),
            ip,
            gauge: self.gauge.clone(),
        })
    }

    /// Addresses with open connections (the map never holds more).
    pub fn addresses(&self) -> usize {
        self.counts.lock().per_ip.len()
    }
}

/// Put in a connection's user context before each request; the proxy fires it once the
/// request header is parsed (`ProxyHttp::on_connection_reuse`). One flag per connection,
/// cleared before each request: the loop reads it only when the deadline passes, so a request
/// costs no channel and no new timer.
pub struct HeaderSeen(Arc<AtomicBool>);

impl HeaderSeen {
    /// Tell the connection loop the header arrived.
    pub fn fire(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// How long a proxy thread's connections must have stopped ending before it hands its unused
/// memory back.
pub const QUIET_AFTER: Duration = Duration::from_secs(2);

thread_local! {
    /// Connections that ended on this thread.
    static ENDED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Whether this thread runs its collector task.
    static COLLECTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts a connection's end on its thread, whichever way it ends.
struct Ended;

impl Drop for Ended {
    fn drop(&mut self) {
        ENDED.with(|n| n.set(n.get() + 1));
    }
}

/// Start this thread's collector once: every [`QUIET_AFTER`], if connections ended since the
/// last collection but none in the last period, collect the thread's heap. Pingora's proxy
/// threads each run their own single-threaded runtime, so the task stays on this thread.
fn ensure_collector() {
    if COLLECTOR.with(|c| c.replace(true)) {
        return;
    }
    tokio::spawn(async {
        let (mut seen, mut collected) = (0u64, 0u64);
        loop {
            tokio::time::sleep(QUIET_AFTER).await;
            let now = ENDED.with(std::cell::Cell::get);
            if now == seen && now != collected {
                crate::memory::collect_this_thread();
                collected = now;
            }
            seen = now;
        }
    });
}

/// Counters of what the loop refused or cut.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// `portcullis_connections_open`.
    pub open: IntGauge,
    /// `portcullis_connections_refused_total{reason}`: `max_connections`,
    /// `max_connections_per_ip`, `header_timeout`.
    pub refused: IntCounterVec,
}

/// The listening service's app: caps and deadlines around the proxy.
pub struct Hygiene<A> {
    app: Arc<A>,
    caps: Caps,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
}

impl<A> Hygiene<A> {
    /// Wrap `app` (the pingora proxy).
    pub fn new(app: A, limits: ConnectionLimits, metrics: ConnectionMetrics) -> Hygiene<A> {
        Hygiene {
            app: Arc::new(app),
            caps: Caps::new(limits, metrics.open.clone()),
            limits,
            metrics,
        }
    }
}

const REFUSAL: &str = "the gateway refused the connection: too many open connections";

async fn refuse(mut stream: Stream, why: &str) {
    let body = format!(
        "{{\"error\":{{\"message\":\"{REFUSAL} ({why})\",\"type\":\"overloaded\",\"code\":\"too_many_connections\"}}}}"
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nx-portcullis-error-source: gateway\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.flush().await;
}

#[async_trait]
impl<A> ServerApp for Hygiene<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        ensure_collector();
        let _ended = Ended;
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned())
            .and_then(|a| a.as_inet().map(|a| a.ip()));
        let _slot = match self.caps.acquire(ip) {
            Ok(s) => s,
            Err(r) => {
                let why = match r {
                    Refused::Total => "max_connections",
                    Refused::PerIp => "max_connections_per_ip",
                };
                self.metrics.refused.with_label_values(&[why]).inc();
                refuse(stream, why).await;
                return None;
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let idle = self.limits.keepalive_timeout.as_secs().max(1);
        let mut session = ServerSession::new_http1(stream);
        let mut reused = false;
        // one flag and one timer for the connection's life, reset for each request
        let seen = Arc::new(AtomicBool::new(false));
        let timer = tokio::time::sleep(self.limits.header_read_timeout);
        tokio::pin!(timer);
        loop {
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(idle) });
            seen.store(false, Ordering::Release);
            session.set_connection_user_context(Some(Box::new(HeaderSeen(seen.clone()))));
            let deadline = if reused {
                self.limits.keepalive_timeout + self.limits.header_read_timeout
            } else {
                self.limits.header_read_timeout
            };
            timer.as_mut().reset(tokio::time::Instant::now() + deadline);
            let served = self.app.process_new_http(session, shutdown);
            tokio::pin!(served);
            let result = tokio::select! {
                biased;
                r = &mut served => r,
                () = &mut timer => {
                    if seen.load(Ordering::Acquire) {
                        // the header arrived in time: the proxy finishes the request
                        served.await
                    } else {
                        // still reading the header: dropping the future closes the connection
                        if !reused {
                            self.metrics.refused.with_label_values(&["header_timeout"]).inc();
                        }
                        return None;
                    }
                }
            };
            let (stream, settings) = result?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(s) = settings {
                s.apply_to_session(&mut session);
            }
            reused = true;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_all_and_forget_closed_addresses() {
        let gauge = IntGauge::new("open", "open").unwrap();
        let caps = Caps::new(
            ConnectionLimits {
                max_total: 3,
                max_per_ip: 2,
                ..ConnectionLimits::default()
            },
            gauge.clone(),
        );
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = caps.acquire(Some(a)).unwrap();
        let s2 = caps.acquire(Some(a)).unwrap();
        assert_eq!(caps.acquire(Some(a)).unwrap_err(), Refused::PerIp);
        let s3 = caps.acquire(Some(b)).unwrap();
        assert_eq!(caps.acquire(Some(b)).unwrap_err(), Refused::Total);
        assert_eq!(gauge.get(), 3);
        drop((s1, s2));
        assert_eq!(caps.addresses(), 1);
        let _s4 = caps.acquire(Some(a)).unwrap();
        drop(s3);
        assert_eq!(gauge.get(), 1);
    }
}
