//! [`AnswerStream`]: an event stream of any family, filtered event by event.
//!
//! Bytes in (any chunking), bytes out, or a block: [`Step`]. The SSE parser splits events; the
//! family's [`Protocol::event`] filters each one through per-field stream guards; events the
//! family queues (held text released before a "done" event) go out first. What the generic
//! part does for every family:
//!
//! * `[DONE]` and upstream error events first release every field's held text (in events the
//!   family synthesizes), then pass.
//! * An event whose data is not JSON is filtered as one whole text and passed.
//! * At the end of the body, held text is released the same way, and a partial event's bytes
//!   are passed on.
//! * A block stops the stream: [`Step::Blocked`] carries what may still be sent; the caller
//!   appends the family's error event ([`Protocol::error_event`]) and closes.

use std::sync::Arc;

use serde_json::Value;

use super::Protocol;
use super::answer::{Frame, StreamCx, StreamState};
use super::read::Kind;
use crate::actions::{Pseudonymizer, Vault};
use crate::policy::{Applied, Policy};
use crate::sse::{Event, SseParser, Step};
use crate::stream::Blocked;

/// Filters one answer stream of `proto`.
pub struct AnswerStream {
    proto: &'static dyn Protocol,
    parser: SseParser,
    st: StreamState,
    spaced: bool,
    done: bool,
}

impl std::fmt::Debug for AnswerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerStream")
            .field("protocol", &self.proto.name())
            .field("state", &self.st)
            .finish()
    }
}

impl AnswerStream {
    /// A stream of `proto` under `policy`.
    pub fn new(proto: &'static dyn Protocol, policy: Arc<Policy>) -> AnswerStream {
        AnswerStream {
            proto,
            parser: SseParser::default(),
            st: StreamState::new(policy),
            spaced: false,
            done: false,
        }
    }

    /// Findings applied so far.
    pub fn findings(&self) -> impl Iterator<Item = &Applied> {
        self.st.findings()
    }

    /// The stream's state (for the family's error event).
    pub fn state(&self) -> &StreamState {
        &self.st
    }

    /// Feed upstream bytes.
    pub fn feed(&mut self, bytes: &[u8], vault: &mut Vault, pseudo: &Pseudonymizer) -> Step {
        let mut out = Vec::with_capacity(bytes.len() + 64);
        if self.done {
            return Step::Send(out);
        }
        for ev in self.parser.feed(bytes) {
            if ev.oversize {
                self.done = true;
                return Step::Unreadable(
                    out,
                    "the backend sent an event larger than the gateway reads (1 MiB); it cannot be filtered",
                );
            }
            if let Err(Blocked(f)) = self.event(ev, &mut out, vault, pseudo) {
                self.done = true;
                return Step::Blocked(out, f);
            }
        }
        Step::Send(out)
    }

    /// The upstream body ended: an unterminated last event is read like any other (its text
    /// continues what the fields hold), then every field releases what it holds.
    pub fn finish(&mut self, vault: &mut Vault, pseudo: &Pseudonymizer) -> Step {
        let mut out = Vec::new();
        if self.done {
            return Step::Send(out);
        }
        self.done = true;
        let rest = self.parser.remainder();
        if !rest.is_empty() {
            let ev = crate::sse::parse_event(rest);
            if let Err(Blocked(f)) = self.event(ev, &mut out, vault, pseudo) {
                return Step::Blocked(out, f);
            }
        }
        if let Err(Blocked(f)) = self.release_all(&mut out, vault, pseudo) {
            return Step::Blocked(out, f);
        }
        Step::Send(out)
    }

    fn write(&self, f: &Frame, out: &mut Vec<u8>) {
        if let Some(e) = &f.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(e.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(if self.spaced { b"data: " } else { b"data:" });
        out.extend_from_slice(f.data.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// The event's own lines with its data replaced (`id:`, `event:`, comments kept).
    fn reframe(ev: &Event, data: &str, out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(&ev.raw);
        let mut wrote = false;
        for line in text.split_inclusive('\n') {
            let bare = line.trim_end_matches(['\n', '\r']);
            if bare.starts_with("data:") || bare == "data" {
                if !wrote {
                    out.extend_from_slice(if ev.spaced { b"data: " } else { b"data:" });
                    out.extend_from_slice(data.as_bytes());
                    out.push(b'\n');
                    wrote = true;
                }
            } else {
                out.extend_from_slice(bare.as_bytes());
                out.push(b'\n');
            }
        }
        if !wrote {
            out.extend_from_slice(b"data:");
            out.extend_from_slice(data.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
    }

    fn passthrough(ev: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(&ev.raw);
        out.extend_from_slice(b"\n\n");
    }

    fn flush_before(&mut self, out: &mut Vec<u8>) {
        for f in self.st.take_before() {
            self.write(&f, out);
        }
    }

    /// Release every open field's held text, in events the family builds.
    fn release_all(
        &mut self,
        out: &mut Vec<u8>,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        let keys = self.st.open_keys();
        let mut frames = Vec::new();
        {
            let mut cx = StreamCx::new(&mut self.st, vault, pseudo);
            for k in keys {
                let tail = cx.finish(k)?;
                if !tail.is_empty() {
                    frames.extend(self.proto.release(k, &tail, &mut cx));
                }
            }
        }
        self.flush_before(out);
        for f in &frames {
            self.write(f, out);
        }
        Ok(())
    }

    /// Data that is not JSON (or an event the family cannot place): filtered as one text.
    fn text_event(
        &mut self,
        ev: &mut Event,
        out: &mut Vec<u8>,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        let Some(data) = ev.data.take() else {
            Self::passthrough(ev, out);
            return Ok(());
        };
        let mut v = Value::String(data);
        StreamCx::new(&mut self.st, vault, pseudo).whole(Some(&mut v), Kind::Other)?;
        let data = v.as_str().unwrap_or_default().to_string();
        Self::reframe(ev, &data, out);
        Ok(())
    }

    fn event(
        &mut self,
        mut ev: Event,
        out: &mut Vec<u8>,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        let Some(data) = ev.data.as_deref() else {
            Self::passthrough(&ev, out);
            return Ok(());
        };
        self.spaced = ev.spaced;
        if data.trim() == "[DONE]" {
            self.release_all(out, vault, pseudo)?;
            Self::passthrough(&ev, out);
            return Ok(());
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return self.text_event(&mut ev, out, vault, pseudo);
        };
        let name = ev.event.clone();
        let is_error = name.as_deref() == Some("error")
            || v.get("error").is_some_and(|e| !e.is_null())
            || v.get("type").and_then(Value::as_str) == Some("error");
        if is_error {
            // an upstream error: what was held goes out first; the error's own text is
            // filtered too (backends quote prompts in errors)
            self.release_all(out, vault, pseudo)?;
            StreamCx::new(&mut self.st, vault, pseudo).whole(Some(&mut v), Kind::Other)?;
            Self::reframe(&ev, &v.to_string(), out);
            return Ok(());
        }
        if !v.is_object() {
            // no family sends this: every string in it is filtered as one text
            StreamCx::new(&mut self.st, vault, pseudo).whole(Some(&mut v), Kind::Other)?;
            Self::reframe(&ev, &v.to_string(), out);
            return Ok(());
        }
        let r = {
            let mut cx = StreamCx::new(&mut self.st, vault, pseudo);
            self.proto.event(name.as_deref(), &mut v, &mut cx)
        };
        self.flush_before(out);
        r?;
        if self.st.template.is_none() {
            // the first event, filtered, is the model for events the gateway writes
            self.st.template = Some(v.clone());
        }
        Self::reframe(&ev, &v.to_string(), out);
        Ok(())
    }
}
