//! Filtering an answer as it streams, without buffering it.
//!
//! A [`StreamGuard`] takes the answer piece by piece (token texts) and returns what may be sent
//! now. It holds back only text that may still be part of an entity: the trailing word (it may
//! continue), digit groups and short upper-case groups before it (a card or IBAN written in
//! groups), and any finding that touches the end of the held text (it may grow), never more than
//! `stream_hold_back_bytes` except for a growing finding (bounded by [`MAX_GROWING`]). Every push
//! rescans the held text plus [`CONTEXT`] bytes already sent, so context words (`born on`) and
//! phrases split across the cut are still seen. Then it restores the request's placeholders,
//! holding a placeholder split across tokens.

use std::sync::Arc;

use crate::actions::{Pseudonymizer, RestoreBlocked, Restorer, Vault};
use crate::finding::Action;
use crate::policy::{Applied, Policy, rewrite};

/// Bytes of already-sent text rescanned with the held text.
pub const CONTEXT: usize = 64;
/// Most bytes a finding that is still growing (a PEM block) may hold back.
pub const MAX_GROWING: usize = 16 * 1024;

/// The stream must stop: a finding whose action is `block`.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked(pub Applied);

impl From<RestoreBlocked> for Blocked {
    fn from(RestoreBlocked(ty): RestoreBlocked) -> Blocked {
        Blocked(Applied::restore_blocked(ty))
    }
}

/// Incremental output filter for one stream (one choice of an OpenAI stream).
#[derive(Debug)]
pub struct StreamGuard {
    policy: Arc<Policy>,
    pending: String,
    context: String,
    restorer: Restorer,
    findings: Vec<Applied>,
    hold_back: usize,
    json_escape: bool,
}

impl StreamGuard {
    /// A guard applying `policy`'s output rules.
    pub fn new(policy: Arc<Policy>) -> StreamGuard {
        let hold_back = policy.settings.stream_hold_back_bytes;
        StreamGuard {
            policy,
            pending: String::new(),
            context: String::new(),
            restorer: Restorer::default(),
            findings: Vec::new(),
            hold_back,
            json_escape: false,
        }
    }

    /// A guard for text that sits inside a JSON string (tool-call arguments): originals put
    /// back into it are JSON-escaped.
    pub fn in_json_string(policy: Arc<Policy>) -> StreamGuard {
        StreamGuard {
            json_escape: true,
            ..StreamGuard::new(policy)
        }
    }

    /// Findings applied so far (spans are relative to each scanned window; use for counts).
    pub fn findings(&self) -> &[Applied] {
        &self.findings
    }

    /// Record findings made outside the guard (a whole field of the same stream).
    pub fn note(&mut self, found: Vec<Applied>) {
        self.findings.extend(found);
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Feed the next piece of the answer; returns the text to send now.
    pub fn push(
        &mut self,
        piece: &str,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<String, Blocked> {
        self.pending.push_str(piece);
        let cut = self.safe_cut();
        self.emit(cut, false, vault, pseudo)
    }

    /// End of the answer: everything held is filtered and returned.
    pub fn finish(&mut self, vault: &mut Vault, pseudo: &Pseudonymizer) -> Result<String, Blocked> {
        let cut = self.pending.len();
        let mut out = self.emit(cut, true, vault, pseudo)?;
        out.push_str(&self.restorer.finish());
        Ok(out)
    }

    fn restore(
        &mut self,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
        text: &str,
    ) -> Result<String, Blocked> {
        let rule = self.policy.restore_rule(pseudo, self.json_escape);
        Ok(self.restorer.push_with(vault, text, &rule)?)
    }

    /// Where the held text may be cut, before looking at findings.
    fn safe_cut(&self) -> usize {
        let p = &self.pending;
        // the trailing word may continue
        let mut cut = p.trim_end_matches(|c: char| !c.is_whitespace()).len();
        // walk back over earlier segments that may be part of a grouped entity
        loop {
            let before = p[..cut].trim_end();
            let seg_start = before.trim_end_matches(|c: char| !c.is_whitespace()).len();
            let seg = &before[seg_start..];
            if seg.is_empty() || p.len() - seg_start > self.hold_back {
                break;
            }
            let groupish = seg.bytes().any(|b| b.is_ascii_digit())
                || (seg.len() <= 4
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
                || seg.ends_with([':', '=', '+', '('])
                || seg.starts_with(['+', '('])
                || seg.bytes().any(|b| b == b'@');
            if !groupish {
                break;
            }
            cut = seg_start;
        }
        if p.len() - cut > self.hold_back {
            cut = floor_boundary(p, p.len() - self.hold_back);
        }
        cut
    }

    fn emit(
        &mut self,
        mut cut: usize,
        all: bool,
        vault: &mut Vault,
        pseudo: &Pseudonymizer,
    ) -> Result<String, Blocked> {
        let side = &self.policy.output;
        if !side.is_active() {
            // nothing to look for: only placeholders to restore
            let text: String = self.pending.drain(..).collect();
            return self.restore(vault, pseudo, &text);
        }
        if cut == 0 && !all {
            return Ok(String::new());
        }
        let ctx_len = self.context.len();
        let mut window = String::with_capacity(ctx_len + self.pending.len());
        window.push_str(&self.context);
        window.push_str(&self.pending);
        let found = side.findings(&window);
        // blocking findings stop the stream at once, wherever they are
        if let Some(b) = found
            .iter()
            .find(|f| f.action == Action::Block && f.end > ctx_len)
        {
            let mut b = b.clone();
            b.start = b.start.saturating_sub(ctx_len);
            b.end -= ctx_len;
            self.findings.push(b.clone());
            return Err(Blocked(b));
        }
        // findings crossing the cut (or touching the end: they may grow) are held whole
        if !all {
            for f in &found {
                if f.end <= ctx_len {
                    continue;
                }
                let (s, e) = (f.start.saturating_sub(ctx_len), f.end - ctx_len);
                let growing = e == self.pending.len();
                if (s < cut && e > cut) || growing {
                    if growing && self.pending.len() - s > MAX_GROWING {
                        continue;
                    }
                    cut = cut.min(s);
                }
            }
        }
        if cut == 0 {
            return Ok(String::new());
        }
        // findings inside the emitted part, relative to it (clamped when they began in context)
        let emitted: Vec<Applied> = found
            .into_iter()
            .filter(|f| f.end > ctx_len && f.end - ctx_len <= cut)
            .map(|mut f| {
                f.start = f.start.saturating_sub(ctx_len);
                f.end -= ctx_len;
                f
            })
            .collect();
        let head = &self.pending[..cut];
        let out = if emitted.iter().any(|f| f.action.rewrites()) {
            rewrite(head, &emitted, vault, pseudo)
        } else {
            head.to_string()
        };
        self.findings.extend(emitted);
        // keep the tail of what was sent as context
        let mut ctx = std::mem::take(&mut self.context);
        ctx.push_str(head);
        let keep = floor_boundary(&ctx, ctx.len().saturating_sub(CONTEXT));
        self.context = ctx[keep..].to_string();
        self.pending.drain(..cut);
        self.restore(vault, pseudo, &out)
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn policy(yaml: &str) -> Arc<Policy> {
        Arc::new(Policy::parse(Path::new("p.yaml"), yaml).unwrap())
    }

    fn run(
        p: &Arc<Policy>,
        pieces: &[&str],
        vault: &mut Vault,
    ) -> Result<(String, Vec<String>), Blocked> {
        let ps = Pseudonymizer::new(b"k", "t");
        let mut g = StreamGuard::new(p.clone());
        let mut outs = Vec::new();
        for piece in pieces {
            outs.push(g.push(piece, vault, &ps)?);
        }
        outs.push(g.finish(vault, &ps)?);
        Ok((outs.concat(), outs))
    }

    #[test]
    fn an_email_split_across_three_tokens_is_redacted() {
        let p = policy("name: a\nversion: 1\noutput:\n  pii: redact\n");
        let (out, _) = run(
            &p,
            &["Write to jane", ".doe@exam", "ple.com today"],
            &mut Vault::default(),
        )
        .unwrap();
        assert_eq!(out, "Write to [EMAIL] today");
    }

    #[test]
    fn a_card_in_groups_is_redacted() {
        let p = policy("name: a\nversion: 1\noutput:\n  pii: redact\n");
        let (out, _) = run(
            &p,
            &["card ", "4111", " 1111", " 1111", " 1111", " ok"],
            &mut Vault::default(),
        )
        .unwrap();
        assert_eq!(out, "card [CARD] ok");
    }

    #[test]
    fn prose_is_not_held_beyond_the_last_word() {
        let p = policy("name: a\nversion: 1\noutput:\n  pii: redact\n");
        let (_, outs) = run(
            &p,
            &["The", " quick", " brown", " fox"],
            &mut Vault::default(),
        )
        .unwrap();
        assert_eq!(outs, ["", "The ", "quick ", "brown ", "fox"]);
    }

    #[test]
    fn blocking_mid_stream() {
        let p = policy("name: a\nversion: 1\noutput:\n  secrets: block\n");
        let e = run(
            &p,
            &["here: AKIA", "Q7LMZ2XABCDEFGHI", " done"],
            &mut Vault::default(),
        )
        .unwrap_err();
        assert_eq!(e.0.rule, "secrets.aws_access_key");
    }

    #[test]
    fn placeholders_are_restored_across_tokens() {
        let p = policy("name: a\nversion: 1\n");
        let mut v = Vault::default();
        v.placeholder("email", "a@b.io");
        let (out, _) = run(&p, &["mail <", "EMA", "IL_1", "> now"], &mut v).unwrap();
        assert_eq!(out, "mail a@b.io now");
    }

    proptest! {
        #[test]
        fn streaming_equals_whole_text_for_entities(
            prefix in "[a-z ]{0,30}",
            suffix in "[a-z ]{0,30}",
            cuts in proptest::collection::vec(0usize..120, 0..8),
            which in 0usize..4,
        ) {
            let entity = ["jane.doe@example.com", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "+44 20 7946 0958"][which];
            let text = format!("{prefix} {entity} {suffix}");
            let p = policy("name: a\nversion: 1\noutput:\n  pii: redact\n");
            let ps = Pseudonymizer::new(b"k", "t");
            let whole = p.output.evaluate(&text, &mut Vault::default(), &ps).text.unwrap_or(text.clone());
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < text.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&text[last..c]); last = c; }
            pieces.push(&text[last..]);
            let (streamed, _) = run(&p, &pieces, &mut Vault::default()).unwrap();
            prop_assert_eq!(streamed, whole);
        }
    }
}
