//! The request recorder: the last N requests the mock received, for tests to inspect.
//!
//! Tests share one mock server, so every record keeps the request's `x-request-id`; the
//! inspection route filters on it (`GET /_mock/requests?request_id=...`).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

/// One request as the mock received it.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// Arrival order, from 1.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The `x-request-id` header, if any.
    pub request_id: Option<String>,
    /// All headers, lower-cased names, in arrival order (repeated names repeated).
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
}

/// A bounded ring of recorded requests.
#[derive(Debug)]
pub struct Recorder {
    limit: usize,
    inner: Mutex<(u64, VecDeque<Recorded>)>,
}

impl Recorder {
    /// A recorder that keeps the last `limit` requests.
    pub fn new(limit: usize) -> Self {
        Recorder {
            limit,
            inner: Mutex::new((0, VecDeque::with_capacity(limit.min(1024)))),
        }
    }

    /// Record a request; the oldest record goes when the ring is full.
    pub fn push(&self, mut r: Recorded) {
        if self.limit == 0 {
            return;
        }
        let mut g = self.inner.lock();
        g.0 += 1;
        r.seq = g.0;
        if g.1.len() == self.limit {
            g.1.pop_front();
        }
        g.1.push_back(r);
    }

    /// Records, oldest first, optionally only those with the given request id.
    pub fn list(&self, request_id: Option<&str>) -> Vec<Recorded> {
        let g = self.inner.lock();
        g.1.iter()
            .filter(|r| request_id.is_none_or(|id| r.request_id.as_deref() == Some(id)))
            .cloned()
            .collect()
    }

    /// Forget every record.
    pub fn clear(&self) {
        self.inner.lock().1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Recorded {
        Recorded {
            seq: 0,
            method: "POST".into(),
            path: "/generate".into(),
            query: None,
            request_id: Some(id.into()),
            headers: vec![],
            body: String::new(),
            json: None,
        }
    }

    #[test]
    fn keeps_the_last_n_in_order() {
        let r = Recorder::new(2);
        r.push(rec("a"));
        r.push(rec("b"));
        r.push(rec("c"));
        let ids: Vec<_> = r
            .list(None)
            .into_iter()
            .map(|r| r.request_id.unwrap())
            .collect();
        assert_eq!(ids, vec!["b", "c"]);
        assert_eq!(r.list(Some("c"))[0].seq, 3);
        assert!(r.list(Some("a")).is_empty());
        r.clear();
        assert!(r.list(None).is_empty());
    }
}
