//! Server-sent events as TGI frames them, paced like a model and with injectable faults.
//!
//! TGI writes `data:{json}\n\n` (no space after the colon; its OpenAI routes end with
//! `data:[DONE]`). The mock frames events itself rather than through a framework helper so the
//! bytes match TGI's and so a fault can cut the connection between any two events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use super::Mock;

/// Frame one event's data the way TGI does.
pub fn frame(data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 8);
    s.push_str("data:");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// Frame one event with an `event:` name, as OpenAI's Responses API and Anthropic's Messages
/// API do (`event: <type>\ndata: <json>\n\n`).
pub fn frame_named(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// How one stream is paced and broken.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Wait before the first event.
    pub ttft: Duration,
    /// Wait between two token events.
    pub per_token: Duration,
    /// Cut the connection (no clean end) after this many events.
    pub drop_after: Option<usize>,
}

/// Counts a stream as active while it lives; records how it ended when dropped.
struct StreamGuard {
    mock: Arc<Mock>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.mock
            .stats
            .active_streams
            .fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            // The client went away (or a fault cut the stream) before the last event.
            self.mock
                .stats
                .streams_cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A paced stream of pre-framed events. `events[i]` is sent `ttft` (i = 0) or `per_token`
/// (i > 0) after the previous one; with `drop_after`, the stream errors instead of sending event
/// `drop_after`, which makes the HTTP server abort the connection mid-body. `hold` lives as long
/// as the stream (the request's in-flight slot).
pub fn paced<H: Send + 'static>(
    mock: Arc<Mock>,
    events: Vec<Bytes>,
    pacing: Pacing,
    hold: H,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    mock.stats.active_streams.fetch_add(1, Ordering::Relaxed);
    mock.stats.streams_started.fetch_add(1, Ordering::Relaxed);
    let guard = StreamGuard {
        mock,
        finished: false,
    };
    futures::stream::unfold(
        (0usize, events.into_iter(), (guard, hold)),
        move |(i, mut it, (mut guard, hold))| async move {
            if pacing.drop_after == Some(i) {
                // Give the server time to flush the events already yielded, so that exactly
                // `drop_after` events reach the client before the connection is cut.
                tokio::time::sleep(pacing.per_token.max(Duration::from_millis(20))).await;
                guard
                    .mock
                    .stats
                    .connections_dropped
                    .fetch_add(1, Ordering::Relaxed);
                let err = std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "mock-tgi: connection dropped by x-mock-fault drop_after",
                );
                // Returning the error ends the stream: the server resets the connection.
                return Some((Err(err), (i + 1, Vec::new().into_iter(), (guard, hold))));
            }
            let next = it.next()?;
            let wait = if i == 0 {
                pacing.ttft
            } else {
                pacing.per_token
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if it.len() == 0 {
                guard.finished = true;
                guard
                    .mock
                    .stats
                    .streams_completed
                    .fetch_add(1, Ordering::Relaxed);
            }
            Some((Ok(next), (i + 1, it, (guard, hold))))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_like_tgi() {
        assert_eq!(&frame("{\"a\":1}")[..], b"data:{\"a\":1}\n\n");
        assert_eq!(&frame("[DONE]")[..], b"data:[DONE]\n\n");
    }
}
