//! Server-sent events: [`SseParser`] splits arbitrary byte chunks into events (an event may
//! arrive in many chunks, many events in one), keeping each event's raw lines, its `data`
//! and its `event:` name. [`crate::protocol::AnswerStream`] rewrites the events of every API
//! family on top of it.

/// Largest event the parser accepts: a longer one is handed on marked [`Event::oversize`]
/// (an answer stream then ends with an error rather than pass text it cannot read).
pub const MAX_EVENT: usize = 1 << 20;

/// One parsed event: its raw bytes (without the terminating blank line) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The raw lines of the event.
    pub raw: Vec<u8>,
    /// The `data` field (data lines joined by `\n`), if any.
    pub data: Option<String>,
    /// Whether the data lines were written `data: x` (with a space) rather than `data:x`.
    pub spaced: bool,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The parser gave up on it: more than [`MAX_EVENT`] bytes without an end.
    pub oversize: bool,
}

/// Incremental SSE parser (LF, CRLF or CR line ends).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feed bytes; returns the events completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((end, next)) = find_event_end(&self.buf) {
            let raw: Vec<u8> = self.buf[..end].to_vec();
            self.buf.drain(..next);
            out.push(parse_event(raw));
        }
        if self.buf.len() > MAX_EVENT {
            // not SSE as we know it: hand it on as an opaque event
            let raw = std::mem::take(&mut self.buf);
            out.push(Event {
                raw,
                data: None,
                spaced: false,
                event: None,
                oversize: true,
            });
        }
        out
    }

    /// Bytes of an unfinished event.
    pub fn remainder(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// End of the first event in `b`: (end of its lines, start of what follows the blank line).
fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < b.len() {
        let nl = match b[i] {
            b'\n' => 1,
            b'\r' if b.get(i + 1) == Some(&b'\n') => 2,
            b'\r' if i + 1 < b.len() => 1,
            b'\r' => return None, // may be the first half of CRLF
            _ => {
                i += 1;
                continue;
            }
        };
        let j = i + nl;
        // a second line end right after the first one ends the event
        match b.get(j) {
            Some(b'\n') => return Some((i, j + 1)),
            Some(b'\r') if b.get(j + 1) == Some(&b'\n') => return Some((i, j + 2)),
            Some(b'\r') if j + 1 < b.len() => return Some((i, j + 1)),
            Some(b'\r') | None => return None,
            Some(_) => i = j,
        }
    }
    None
}

/// Parse one event's lines (without the blank line that ends it).
pub fn parse_event(raw: Vec<u8>) -> Event {
    let mut data: Option<String> = None;
    let mut spaced = false;
    let mut event = None;
    let text = String::from_utf8_lossy(&raw);
    for line in text.split(['\n', '\r']) {
        if let Some(rest) = line.strip_prefix("event:") {
            event = Some(rest.strip_prefix(' ').unwrap_or(rest).to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("data:") {
            let v = match rest.strip_prefix(' ') {
                Some(v) => {
                    spaced = true;
                    v
                }
                None => rest,
            };
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_string()),
            }
        }
    }
    Event {
        raw,
        data,
        spaced,
        event,
        oversize: false,
    }
}

/// The result of feeding bytes to an answer stream.
#[derive(Debug)]
pub enum Step {
    /// Bytes to send on.
    Send(Vec<u8>),
    /// Send these bytes, then end the stream with an error naming the finding.
    Blocked(Vec<u8>, crate::policy::Applied),
    /// Send these bytes, then end the stream with a gateway error: the answer cannot be read
    /// (an event over [`MAX_EVENT`]), and passing it unfiltered would fail open.
    Unreadable(Vec<u8>, &'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parser_handles_split_and_joined_events() {
        let mut p = SseParser::default();
        let mut evs = p.feed(b"data:{\"a\":1}\n");
        assert!(evs.is_empty());
        evs.extend(p.feed(b"\nevent: x\ndata: x\r\n\r\n: comment\n\ndata:[DONE]\n\n"));
        let data: Vec<_> = evs.iter().map(|e| e.data.clone()).collect();
        assert_eq!(
            data,
            [
                Some("{\"a\":1}".into()),
                Some("x".into()),
                None,
                Some("[DONE]".into())
            ]
        );
        assert!(evs[1].spaced);
        assert_eq!(evs[1].event.as_deref(), Some("x"));
    }

    #[test]
    fn an_oversized_event_is_marked() {
        let mut p = SseParser::default();
        let evs = p.feed(&vec![b'a'; MAX_EVENT + 1]);
        assert_eq!(evs.len(), 1);
        assert!(evs[0].oversize && evs[0].data.is_none());
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_keeps_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
            let mut p = SseParser::default();
            let mut n = 0;
            for c in bytes.chunks(chunk) {
                for e in p.feed(c) { n += e.raw.len(); }
            }
            n += p.remainder().len();
            prop_assert!(n <= bytes.len());
        }
    }
}
