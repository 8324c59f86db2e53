//! Rewriting server-sent event streams of generated text: TGI's `/generate_stream` token events
//! and OpenAI's `chat.completion.chunk` / `text_completion` chunks.
//!
//! [`SseParser`] splits arbitrary byte chunks into events (an event may arrive in many chunks,
//! many events in one). [`StreamRewriter`] runs each event's text through a [`StreamGuard`]
//! (one per choice), rewrites the event and reframes it. What it keeps consistent:
//!
//! * TGI: `token.text` is the filtered text (possibly empty while text is held back); `index` stays
//!   consecutive; when held text must be released after the last non-special token, it goes out
//!   in an extra token event before the final one (indexes after it shift by one); the final
//!   `generated_text` is the concatenation of the sent non-special token texts; `top_tokens`
//!   are emptied whenever output rules are active, since they would carry unfiltered text.
//! * OpenAI: `delta.content` (chat) or `text` (completions) is the filtered text; held text is
//!   released into the chunk that carries `finish_reason`; `logprobs` are nulled when output
//!   rules are active. `[DONE]`, usage-only chunks and error events pass through.
//!
//! A blocking finding ends the stream: [`Step::Blocked`] carries what may still be sent and the
//! finding; the caller appends an error event in the stream's own format and closes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::actions::{Pseudonymizer, Vault};
use crate::policy::{Applied, Policy};
use crate::stream::{Blocked, StreamGuard};

/// Largest event the parser accepts (an event larger than this is passed through unparsed).
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

fn parse_event(raw: Vec<u8>) -> Event {
    let mut data: Option<String> = None;
    let mut spaced = false;
    let text = String::from_utf8_lossy(&raw);
    for line in text.split(['\n', '\r']) {
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
    Event { raw, data, spaced }
}

/// Which stream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TGI `/generate_stream` (and `/` with `stream: true`).
    Tgi,
    /// OpenAI chat completions or completions chunks.
    OpenAi,
}

/// The result of feeding bytes.
#[derive(Debug)]
pub enum Step {
    /// Bytes to send on.
    Send(Vec<u8>),
    /// Send these bytes, then end the stream with an error naming the finding.
    Blocked(Vec<u8>, Applied),
}

/// Rewrites one response stream.
#[derive(Debug)]
pub struct StreamRewriter {
    format: Format,
    policy: Arc<Policy>,
    parser: SseParser,
    guards: BTreeMap<u64, StreamGuard>,
    index_shift: i64,
    generated: String,
    template: Option<Value>,
    spaced: bool,
    strip_alternatives: bool,
    done: bool,
}

impl StreamRewriter {
    /// A rewriter for `format` applying `policy`'s output rules.
    pub fn new(format: Format, policy: Arc<Policy>) -> StreamRewriter {
        let strip_alternatives = policy.output.is_active();
        StreamRewriter {
            format,
            policy,
            parser: SseParser::default(),
            guards: BTreeMap::new(),
            index_shift: 0,
            generated: String::new(),
            template: None,
            spaced: false,
            strip_alternatives,
            done: false,
        }
    }

    /// Findings applied so far, over all choices.
    pub fn findings(&self) -> impl Iterator<Item = &Applied> {
        self.guards.values().flat_map(|g| g.findings().iter())
    }

    fn guard(&mut self, choice: u64) -> &mut StreamGuard {
        let policy = &self.policy;
        self.guards
            .entry(choice)
            .or_insert_with(|| StreamGuard::new(policy.clone()))
    }

    /// Feed upstream bytes.
    pub fn feed(&mut self, bytes: &[u8], vault: &mut Vault, pseudo: &Pseudonymizer) -> Step {
        let mut out = Vec::with_capacity(bytes.len() + 64);
        if self.done {
            return Step::Send(out);
        }
        for ev in self.parser.feed(bytes) {
            if let Err(Blocked(f)) = self.event(ev, &mut out, vault, pseudo) {
                self.done = true;
                return Step::Blocked(out, f);
            }
        }
        Step::Send(out)
    }

    /// The upstream body ended. Releases held text (in a synthesized event) if the stream ended
    /// without its final event, and any unfinished event's bytes.
    pub fn finish(&mut self, vault: &mut Vault, pseudo: &Pseudonymizer) -> Step {
        let mut out = Vec::new();
        if self.done {
            return Step::Send(out);
        }
        self.done = true;
        if let Err(Blocked(f)) = self.release_all(&mut out, vault, pseudo) {
            return Step::Blocked(out, f);
        }
        out.extend_from_slice(&self.parser.remainder());
        Step::Send(out)
    }

    /// Release every choice's held text, each in a synthesized event.
    fn release_all(
        &mut self,
        out: &mut Vec<u8>,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        let choices: Vec<u64> = self.guards.keys().copied().collect();
        for c in choices {
            let tail = self.guard(c).finish(vault, pseudo)?;
            if !tail.is_empty() {
                self.synthesize(c, &tail, out);
            }
        }
        Ok(())
    }

    fn frame(&self, data: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.spaced { b"data: " } else { b"data:" });
        out.extend_from_slice(data.as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn passthrough(ev: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(&ev.raw);
        out.extend_from_slice(b"\n\n");
    }

    fn event(
        &mut self,
        ev: Event,
        out: &mut Vec<u8>,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        self.spaced = ev.spaced;
        let Some(data) = ev.data.as_deref() else {
            Self::passthrough(&ev, out);
            return Ok(());
        };
        if data.trim() == "[DONE]" {
            // release anything still held before the end marker
            self.release_all(out, vault, pseudo)?;
            Self::passthrough(&ev, out);
            return Ok(());
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            Self::passthrough(&ev, out);
            return Ok(());
        };
        if v.get("error").is_some() {
            // an upstream error event: release held text first, then pass it on
            self.release_all(out, vault, pseudo)?;
            Self::passthrough(&ev, out);
            return Ok(());
        }
        match self.format {
            Format::Tgi => self.tgi_event(&mut v, out, vault, pseudo)?,
            Format::OpenAi => self.openai_event(&mut v, vault, pseudo)?,
        }
        if self.template.is_none() {
            self.template = Some(v.clone());
        }
        self.frame(&v.to_string(), out);
        Ok(())
    }

    fn tgi_event(
        &mut self,
        v: &mut Value,
        out: &mut Vec<u8>,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        let special = v
            .pointer("/token/special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let text = v
            .pointer("/token/text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let last = v.get("generated_text").is_some_and(|g| !g.is_null())
            || v.get("details").is_some_and(|d| !d.is_null());
        let mut sent = if special {
            String::new()
        } else {
            self.guard(0).push(&text, vault, pseudo)?
        };
        if last {
            let tail = self.guard(0).finish(vault, pseudo)?;
            if special {
                if !tail.is_empty() {
                    // release held text in its own token event before the special one
                    let mut extra = v.clone();
                    self.shape_tgi(&mut extra, &tail, false);
                    if let Some(o) = extra.as_object_mut() {
                        o.insert("generated_text".into(), Value::Null);
                        o.insert("details".into(), Value::Null);
                    }
                    self.generated.push_str(&tail);
                    self.frame(&extra.to_string(), out);
                    self.index_shift += 1;
                }
            } else {
                sent.push_str(&tail);
            }
        }
        if !special {
            self.generated.push_str(&sent);
        }
        let token_text = if special { text } else { sent };
        self.shape_tgi(v, &token_text, special);
        if last && let Some(o) = v.as_object_mut() {
            o.insert(
                "generated_text".into(),
                Value::String(self.generated.clone()),
            );
        }
        Ok(())
    }

    /// Set the token text and the shifted index of a TGI event.
    fn shape_tgi(&self, v: &mut Value, text: &str, special: bool) {
        if let Some(t) = v.get_mut("token").and_then(Value::as_object_mut) {
            t.insert("text".into(), Value::String(text.to_string()));
            if !special {
                // a released tail (or a synthesized event) is ordinary text, never special
                t.insert("special".into(), Value::Bool(false));
            }
        }
        if let Some(i) = v.get("index").and_then(Value::as_i64) {
            v["index"] = Value::from(i + self.index_shift);
        }
        if self.strip_alternatives
            && let Some(t) = v.get_mut("top_tokens")
        {
            *t = Value::Array(Vec::new());
        }
    }

    fn openai_event(
        &mut self,
        v: &mut Value,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<(), Blocked> {
        let strip = self.strip_alternatives;
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let mut work: Vec<(usize, u64, Option<String>, bool, bool)> = Vec::new();
        for (pos, c) in choices.iter().enumerate() {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            let (text, chat) = match c.pointer("/delta/content").and_then(Value::as_str) {
                Some(t) => (Some(t.to_string()), true),
                None => (
                    c.get("text").and_then(Value::as_str).map(str::to_string),
                    c.get("delta").is_some(),
                ),
            };
            let finished = c
                .get("finish_reason")
                .is_some_and(|f| !f.is_null() && f.as_str() != Some(""));
            work.push((pos, idx, text, chat, finished));
        }
        let mut results: Vec<(usize, Option<String>, bool)> = Vec::new();
        for (pos, idx, text, chat, finished) in work {
            let mut sent = match &text {
                Some(t) => Some(self.guard(idx).push(t, vault, pseudo)?),
                None => None,
            };
            if finished {
                let tail = self.guard(idx).finish(vault, pseudo)?;
                if !tail.is_empty() || sent.is_some() {
                    let mut s = sent.unwrap_or_default();
                    s.push_str(&tail);
                    sent = Some(s);
                }
            }
            results.push((pos, sent, chat));
        }
        for (pos, sent, chat) in results {
            let c = &mut choices[pos];
            if let Some(s) = sent {
                if chat {
                    if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
                        d.insert("content".into(), Value::String(s));
                    }
                } else if let Some(o) = c.as_object_mut() {
                    o.insert("text".into(), Value::String(s));
                }
            }
            if strip && let Some(l) = c.get_mut("logprobs") {
                *l = Value::Null;
            }
        }
        Ok(())
    }

    /// An event carrying held text released at the end of a stream that lacked a final event.
    fn synthesize(&mut self, choice: u64, text: &str, out: &mut Vec<u8>) {
        let v = match self.format {
            Format::Tgi => {
                let mut v = self.template.clone().unwrap_or_else(|| {
                    serde_json::json!({"index": 0, "token": {"id": 0, "text": "", "logprob": 0.0, "special": false}, "generated_text": null, "details": null})
                });
                self.shape_tgi(&mut v, text, false);
                if let Some(o) = v.as_object_mut() {
                    o.insert("generated_text".into(), Value::Null);
                    o.insert("details".into(), Value::Null);
                }
                self.index_shift += 1;
                self.generated.push_str(text);
                v
            }
            Format::OpenAi => {
                let mut v = self.template.clone().unwrap_or_else(|| {
                    serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": null}]})
                });
                let chat = v.pointer("/choices/0/delta").is_some();
                let choice = if chat {
                    serde_json::json!({"index": choice, "delta": {"content": text}, "logprobs": null, "finish_reason": null})
                } else {
                    serde_json::json!({"index": choice, "text": text, "logprobs": null, "finish_reason": null})
                };
                v["choices"] = Value::Array(vec![choice]);
                v
            }
        };
        self.frame(&v.to_string(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    #[test]
    fn parser_handles_split_and_joined_events() {
        let mut p = SseParser::default();
        let mut evs = p.feed(b"data:{\"a\":1}\n");
        assert!(evs.is_empty());
        evs.extend(p.feed(b"\ndata: x\r\n\r\n: comment\n\ndata:[DONE]\n\n"));
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
    }

    fn policy() -> Arc<Policy> {
        Arc::new(
            Policy::parse(
                Path::new("p.yaml"),
                "name: a\nversion: 1\noutput:\n  pii: redact\n",
            )
            .unwrap(),
        )
    }

    fn tgi_stream(tokens: &[&str]) -> Vec<u8> {
        let mut s = String::new();
        let full: String = tokens.concat();
        for (i, t) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            let ev = serde_json::json!({"index": i + 1, "token": {"id": 7, "text": t, "logprob": -0.1, "special": false}, "top_tokens": [], "generated_text": if last { Value::String(full.clone()) } else { Value::Null }, "details": if last { serde_json::json!({"finish_reason": "length", "generated_tokens": tokens.len()}) } else { Value::Null }});
            s.push_str(&format!("data:{ev}\n\n"));
        }
        s.into_bytes()
    }

    fn run(format: Format, bytes: &[u8], chunk: usize) -> (Vec<Value>, Option<Applied>) {
        let mut r = StreamRewriter::new(format, policy());
        let (mut v, ps) = (Vault::default(), Pseudonymizer::new(b"k", "t"));
        let mut out = Vec::new();
        let mut blocked = None;
        for c in bytes.chunks(chunk.max(1)) {
            match r.feed(c, &mut v, &ps) {
                Step::Send(b) => out.extend(b),
                Step::Blocked(b, f) => {
                    out.extend(b);
                    blocked = Some(f);
                    break;
                }
            }
        }
        if blocked.is_none()
            && let Step::Send(b) = r.finish(&mut v, &ps)
        {
            out.extend(b);
        }
        let evs = SseParser::default()
            .feed(&out)
            .into_iter()
            .filter_map(|e| e.data)
            .filter(|d| d != "[DONE]")
            .map(|d| serde_json::from_str(&d).unwrap())
            .collect();
        (evs, blocked)
    }

    #[test]
    fn tgi_entity_split_across_three_tokens() {
        let (evs, _) = run(
            Format::Tgi,
            &tgi_stream(&["Mail", " jane", ".doe@exam", "ple.com", " now"]),
            7,
        );
        let texts: String = evs
            .iter()
            .map(|e| e["token"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, "Mail [EMAIL] now");
        let last = evs.last().unwrap();
        assert_eq!(last["generated_text"], "Mail [EMAIL] now");
        let idx: Vec<i64> = evs.iter().map(|e| e["index"].as_i64().unwrap()).collect();
        assert_eq!(idx, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn openai_chunks_are_rewritten() {
        let mut s = String::new();
        let toks = ["card ", "4111 1111", " 1111 1111", " thanks"];
        for (i, t) in toks.iter().enumerate() {
            let fin = if i + 1 == toks.len() {
                Value::from("stop")
            } else {
                Value::Null
            };
            s.push_str(&format!("data: {}\n\n", serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": fin}]})));
        }
        s.push_str("data: [DONE]\n\n");
        let (evs, _) = run(Format::OpenAi, s.as_bytes(), 5);
        let text: String = evs
            .iter()
            .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(text, "card [CARD] thanks");
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

        #[test]
        fn tgi_rewrite_is_chunking_independent(chunk in 1usize..200) {
            let bytes = tgi_stream(&["Call", " +44", " 20", " 7946", " 0958", " or", " a@b.io"]);
            let (evs, _) = run(Format::Tgi, &bytes, chunk);
            let text: String = evs.iter().map(|e| e["token"]["text"].as_str().unwrap()).collect();
            prop_assert_eq!(text, "Call [PHONE] or [EMAIL]");
        }
    }
}
