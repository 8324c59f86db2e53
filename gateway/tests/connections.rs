//! Client connections against the real gateway binary: slowloris sockets are cut at the header
//! deadline and capped per address, idle keep-alive connections are closed, and other clients
//! keep being served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What became of one slow socket: refused with 503 at once, or closed by the server after
/// this long.
#[derive(Debug)]
enum Fate {
    Refused,
    Closed(Duration),
    StillOpen,
}

/// A slowloris client: the start of a header, then one more header line every 200 ms, never
/// the blank line that ends it.
async fn slowloris(addr: SocketAddr, for_how_long: Duration) -> Fate {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Fate::Refused;
    };
    let (mut r, mut w) = s.split();
    let write = async {
        let _ = w.write_all(b"POST /generate HTTP/1.1\r\nHost: x\r\n").await;
        while started.elapsed() < for_how_long {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if w.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut buf = vec![0u8; 1024];
        match r.read(&mut buf).await {
            Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 503") => Fate::Refused,
            _ => Fate::Closed(started.elapsed()),
        }
    };
    tokio::select! {
        f = read => f,
        () = write => Fate::StillOpen,
    }
}

#[tokio::test]
async fn slow_clients_are_cut_and_capped_while_other_clients_are_served() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::start_full(
        &upstream_yaml(&[mock.addr], ""),
        true,
        &[],
        "  header_read_timeout: 1s\n  keepalive_timeout: 2s\n  max_connections_per_ip: 30\n",
    )
    .await;
    let slow: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(gw.addr, Duration::from_secs(4))))
        .collect();
    // a client from another address, while the slow ones hold their sockets
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        let t = Instant::now();
        let r = post_json(
            &other,
            gw.url("/generate"),
            r#"{"inputs":"hello","parameters":{"max_new_tokens":3}}"#.to_string(),
            &[],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut refused, mut cut) = (0, Vec::new());
    for t in slow {
        match t.await.unwrap() {
            Fate::Refused => refused += 1,
            Fate::Closed(d) => cut.push(d),
            Fate::StillOpen => panic!("a slow client kept its socket past the header deadline"),
        }
    }
    assert!(
        refused >= 170,
        "{refused} refused at the per-address cap of 30"
    );
    assert!(
        cut.iter()
            .all(|d| *d >= Duration::from_millis(900) && *d < Duration::from_secs(3)),
        "cut at the 1 s header deadline: {cut:?}"
    );
    // the address is served again once its slow sockets are gone
    let r = post_json(
        &client(),
        gw.url("/generate"),
        r#"{"inputs":"hello","parameters":{"max_new_tokens":3}}"#.to_string(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            "portcullis_connections_refused_total{reason=\"max_connections_per_ip\"}"
        ) >= 170.0
    );
    assert!(
        metric_value(
            &m,
            "portcullis_connections_refused_total{reason=\"header_timeout\"}"
        ) >= cut.len() as f64
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let mock = MockTgi::echo().await;
    let gw = Gateway::start_full(
        &upstream_yaml(&[mock.addr], ""),
        true,
        &[],
        "  keepalive_timeout: 1s\n",
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let body = r#"{"inputs":"hi","parameters":{"max_new_tokens":2}}"#;
    let req = format!(
        "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // a second request on the same connection works (keep-alive)...
    s.write_all(req.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // ...and once idle past the timeout the gateway closes it
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within the keep-alive timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
}
