//! Reading a request body whole before anything is sent upstream.
//!
//! The gateway must see the whole prompt before it chooses a backend: to refuse malformed JSON
//! with 422 without calling the backend, to apply guardrails, and to replay the body on a retry.
//! Pingora connects upstream first and then streams the body through `request_body_filter`;
//! a body consumed earlier (here, in `request_filter`) is only sent upstream when pingora's
//! *retry buffer* holds a copy. That buffer is capped at 64 KiB, so we switch it on only once the
//! bytes still to come fit in it: the buffer then ends non-empty, pingora hands it to
//! `request_body_filter` on every attempt, and the filter substitutes the full body we kept.
//! Chunked bodies have no known length; they are buffered from the start and must fit in the
//! window (larger ones get 411 Length Required; every common client sends `Content-Length`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

/// Pingora's retry buffer size (`pingora_core::protocols::http::v1::common::BODY_BUF_LIMIT`).
pub const REPLAY_WINDOW: usize = 64 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Declared or actual size over the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A chunked body over [`REPLAY_WINDOW`].
    ChunkedTooLarge,
    /// The client sent nothing for too long.
    Timeout,
    /// The body was read but could not be armed for forwarding (should not happen; reported as
    /// an internal error rather than hanging the request).
    NotReplayable,
    /// The client connection failed while reading.
    Read(Box<pingora::Error>),
}

/// The `Content-Length` the client declared, if any and if valid.
pub fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// Whether the client sent `Expect: 100-continue`.
pub fn expects_continue(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Read the whole body (at most `limit` bytes), leaving pingora able to forward it.
pub async fn read_whole(
    session: &mut Session,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = declared_length(session);
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    if expects_continue(session) {
        // The client waits for our go-ahead before sending the body (curl does above 1 MB).
        // We answer it ourselves: the backend only ever sees a complete request.
        session
            .as_downstream_mut()
            .write_continue_response()
            .await
            .map_err(BodyError::Read)?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut armed = false;
    loop {
        if !armed {
            let remaining = declared.map_or(0, |n| n.saturating_sub(buf.len()));
            if declared.is_none() || remaining <= REPLAY_WINDOW {
                session.as_downstream_mut().enable_retry_buffering();
                armed = true;
            }
        }
        let chunk = match tokio::time::timeout(timeout, session.read_request_body()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(Err(e)) => return Err(BodyError::Read(e)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    if !buf.is_empty() && session.as_downstream().get_retry_buffer().is_none() {
        return Err(if declared.is_none() {
            BodyError::ChunkedTooLarge
        } else {
            BodyError::NotReplayable
        });
    }
    Ok(buf.freeze())
}
