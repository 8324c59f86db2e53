//! How much of a streamed answer must wait: the earliest point from which a pattern that
//! rewrites or stops the text may still be matching.
//!
//! A stream guard may send text only once no redaction can reach back into it. Holding the
//! trailing word of every piece is safe but delays each token's text until the next token
//! arrives (one token interval, 20 ms at 50 tokens/s). Instead, the patterns whose action
//! rewrites or blocks are compiled into one anchored lazy DFA (`regex-automata`'s hybrid DFA,
//! the engine behind `regex`), and the guard holds from the earliest position whose suffix is
//! still a prefix of some match: `hello` is sent at once when only secrets and cards are
//! redacted, `sk-`, `4111` or `<scr` wait for the next piece. Detectors' confirmation steps
//! (Luhn, mod-97, entropy) only narrow matches, so the patterns bound them from above.
//!
//! A pattern may name a [`crate::engine::Pattern::hold`] regex: only that part is held (a
//! link from its `[`). With [`crate::engine::Pattern::hold_after`] it also names a trigger (a
//! key word, a URL scheme and `://`): the trigger is sent, and only what may follow a trigger
//! match is held, so `token` or `postgres` alone wait for nothing, while the value after
//! `token: ` or `postgres://` does. A stream rescans the last bytes it sent, so the lead is
//! still seen when the rest arrives.
//!
//! Bounded repetitions lose their upper bound (`[^\s)>]{1,2048}` becomes `[^\s)>]{1,}`) and
//! capture groups go: a larger language has more prefixes, so this only ever holds more, and
//! the automaton is a small fraction of the size (a 2048-fold Unicode class is megabytes of
//! NFA). Search caches are shared by all streams through a small pool.

use parking_lot::Mutex;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Repetition};

/// Most idle search caches kept for reuse.
const POOL: usize = 16;

/// What a stream holds back for one side of a policy.
#[derive(Debug)]
pub enum Hold {
    /// Nothing the side finds changes or stops the text: send everything at once.
    Nothing,
    /// Hold from the earliest position where one of the patterns may still be matching.
    Automaton(Box<HoldAutomaton>),
    /// A pattern the automaton cannot follow (on a derived view, or a whole-text detector):
    /// hold the trailing word and entity-like groups before it. Says why.
    TrailingWord(String),
}

/// The hold regexes of every relevant pattern: those that may start anywhere as one anchored
/// lazy DFA, those that follow a trigger as another, anchored per pattern, with the triggers.
pub struct HoldAutomaton {
    /// Patterns without a trigger, any of them from any position.
    free: Option<DFA>,
    /// Patterns with a trigger, each anchored where its trigger ends.
    after: Option<DFA>,
    /// The triggers, by `after`'s pattern id.
    triggers: Vec<regex::Regex>,
    caches: Mutex<Vec<Caches>>,
}

struct Caches {
    free: Option<Cache>,
    after: Option<Cache>,
}

impl std::fmt::Debug for HoldAutomaton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = |d: &Option<DFA>| d.as_ref().map_or(0, |d| d.get_nfa().memory_usage());
        f.debug_struct("HoldAutomaton")
            .field("free_nfa_bytes", &bytes(&self.free))
            .field("triggered", &self.triggers.len())
            .field("after_nfa_bytes", &bytes(&self.after))
            .finish()
    }
}

/// Errors building a [`HoldAutomaton`].
#[derive(Debug, thiserror::Error)]
#[error("building the stream hold-back automaton failed: {0}")]
pub struct HoldError(String);

fn dfa(patterns: &[&str], per_pattern: bool) -> Result<Option<DFA>, HoldError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let hirs = patterns
        .iter()
        .map(|p| {
            regex_automata::util::syntax::parse(p)
                .map(unbounded)
                .map_err(|e| HoldError(format!("pattern `{p}`: {e}")))
        })
        .collect::<Result<Vec<Hir>, HoldError>>()?;
    let nfa = thompson::Compiler::new()
        .configure(thompson::Config::new().nfa_size_limit(Some(16 << 20)))
        .build_many_from_hir(&hirs)
        .map_err(|e| HoldError(e.to_string()))?;
    DFA::builder()
        // every pattern stays alive as long as it may match, not only the leftmost
        .configure(
            DFA::config()
                .match_kind(MatchKind::All)
                .starts_for_each_pattern(per_pattern),
        )
        .build_from_nfa(nfa)
        .map(Some)
        .map_err(|e| HoldError(e.to_string()))
}

impl HoldAutomaton {
    /// Compile `(trigger, rest)` pairs (Rust `regex` syntax): without a trigger `rest` may
    /// start anywhere; with one, only where a match of the trigger ends.
    pub fn new(sources: &[(Option<&str>, &str)]) -> Result<HoldAutomaton, HoldError> {
        let free: Vec<&str> = sources
            .iter()
            .filter(|(t, _)| t.is_none())
            .map(|(_, r)| *r)
            .collect();
        let mut triggers = Vec::new();
        let mut rests = Vec::new();
        for (t, r) in sources {
            if let Some(t) = t {
                triggers.push(
                    regex::Regex::new(t).map_err(|e| HoldError(format!("trigger `{t}`: {e}")))?,
                );
                rests.push(*r);
            }
        }
        Ok(HoldAutomaton {
            free: dfa(&free, false)?,
            after: dfa(&rests, true)?,
            triggers,
            caches: Mutex::new(Vec::new()),
        })
    }

    /// The earliest char boundary `p >= from` of `window[ctx..]` (the held text after `ctx`
    /// bytes already sent) from which some pattern may still be matching at the end of the
    /// window, relative to `window[ctx..]`: a free pattern whose prefix `window[ctx + p..]` is,
    /// or a trigger that ended at or before `ctx + p` and whose rest may follow (then `p` is
    /// where the trigger ended, or 0 when that was already sent). `None`: all may be sent.
    pub fn earliest_live(&self, window: &str, ctx: usize, from: usize) -> Option<usize> {
        let popped = self.caches.lock().pop();
        let mut caches = popped.unwrap_or_else(|| Caches {
            free: self.free.as_ref().map(DFA::create_cache),
            after: self.after.as_ref().map(DFA::create_cache),
        });
        let at = self.search(&mut caches, window, ctx, from);
        let mut pool = self.caches.lock();
        if pool.len() < POOL {
            pool.push(caches);
        }
        at
    }

    fn search(&self, caches: &mut Caches, window: &str, ctx: usize, from: usize) -> Option<usize> {
        let b = window.as_bytes();
        let look = |at: usize| at.checked_sub(1).map(|i| b[i]);
        let mut best: Option<usize> = None;
        if let (Some(dfa), Some(cache)) = (&self.after, caches.after.as_mut()) {
            for (i, t) in self.triggers.iter().enumerate() {
                for m in t.find_iter(window) {
                    let q = m.end();
                    let anchored = Anchored::Pattern(regex_automata::PatternID::must(i));
                    if live_from(dfa, cache, anchored, look(q), &b[q..]) {
                        let p = q.saturating_sub(ctx);
                        best = Some(best.map_or(p, |x| x.min(p)));
                        break;
                    }
                }
            }
        }
        if let (Some(dfa), Some(cache)) = (&self.free, caches.free.as_mut()) {
            let end = best.map_or(b.len(), |x| ctx + x);
            let first = (ctx + from..end)
                .filter(|&p| window.is_char_boundary(p))
                .find(|&p| live_from(dfa, cache, Anchored::Yes, look(p), &b[p..]));
            if let Some(p) = first {
                best = Some(p - ctx);
            }
        }
        best
    }
}

/// Whether an anchored search over `hay` is still alive at its end. Anything the DFA cannot
/// answer (its cache gave up, a quit byte) counts as alive: hold rather than leak.
fn live_from(
    dfa: &DFA,
    cache: &mut Cache,
    anchored: Anchored,
    look: Option<u8>,
    hay: &[u8],
) -> bool {
    let cfg = start::Config::new().anchored(anchored).look_behind(look);
    let Ok(mut s) = dfa.start_state(cache, &cfg) else {
        return true;
    };
    for &byte in hay {
        if s.is_dead() {
            return false;
        }
        if s.is_quit() {
            return true;
        }
        s = match dfa.next_state(cache, s, byte) {
            Ok(n) => n,
            Err(_) => return true,
        };
    }
    !s.is_dead()
}

/// `hir` with every repetition's upper bound and every capture group removed.
fn unbounded(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: None,
            greedy: r.greedy,
            sub: Box::new(unbounded(*r.sub)),
        }),
        HirKind::Capture(c) => unbounded(*c.sub),
        HirKind::Concat(v) => Hir::concat(v.into_iter().map(unbounded).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.into_iter().map(unbounded).collect()),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0),
        HirKind::Class(c) => Hir::class(c),
        HirKind::Look(l) => Hir::look(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r"(?-u:\b)[0-9](?:[ \-]?[0-9]){11,18}(?-u:\b)";
    const KEY: &str = r"(?-u:\b)sk-[A-Za-z0-9]{20,200}";

    fn live(pats: &[&str], before: &str, text: &str) -> Option<usize> {
        let srcs: Vec<(Option<&str>, &str)> = pats.iter().map(|p| (None, *p)).collect();
        let a = HoldAutomaton::new(&srcs).unwrap();
        a.earliest_live(&format!("{before}{text}"), before.len(), 0)
    }

    #[test]
    fn words_that_cannot_start_a_match_are_not_held() {
        assert_eq!(live(&[CARD, KEY], "", "Hello world"), None);
        assert_eq!(live(&[CARD, KEY], "", "pay 4111 1111"), Some(4));
        assert_eq!(live(&[CARD, KEY], "", "use sk-abc"), Some(4));
        assert_eq!(live(&[CARD, KEY], "", "use s"), Some(4));
        // a match that ended and cannot grow is not held (the guard's findings handle it)
        assert_eq!(live(&[CARD, KEY], "", "4111111111111111 and"), None);
        // upper bounds are dropped (more is held, never less)
        assert_eq!(live(&[CARD], "", &"1".repeat(40)), Some(0));
    }

    #[test]
    fn look_behind_is_the_byte_before_the_text() {
        // `task-` is not the start of a key: no word boundary before `sk`
        assert_eq!(live(&[KEY], "", "task-"), None);
        assert_eq!(live(&[KEY], "a", "sk-"), None);
        assert_eq!(live(&[KEY], "a ", "sk-"), Some(0));
    }

    #[test]
    fn non_ascii_text_is_followed() {
        assert_eq!(live(&[KEY], "", "größer überall"), None);
        assert_eq!(live(&[KEY], "", "größer sk"), Some("größer ".len()));
    }

    #[test]
    fn a_triggered_rest_is_held_only_after_its_trigger() {
        let a =
            HoldAutomaton::new(&[(Some(r"(?i)token"), r"\s*[:=]?\s*[A-Za-z0-9]{12,}")]).unwrap();
        // the key word alone, or its prefix, holds nothing: only what follows it may be secret
        assert_eq!(a.earliest_live("the tok", 0, 0), None);
        assert_eq!(a.earliest_live("a token", 0, 0), Some(7));
        assert_eq!(a.earliest_live("a token: abc", 0, 0), Some(7));
        // without the trigger the same text is not held
        assert_eq!(a.earliest_live("a value: abc", 0, 0), None);
        // a trigger already sent holds the whole of what is pending
        assert_eq!(a.earliest_live("token: abc", 7, 0), Some(0));
        // the rest ended: nothing to hold
        assert_eq!(a.earliest_live("token: abc;", 0, 0), None);
    }

    #[test]
    fn every_pooled_search_reuses_its_caches() {
        let a = HoldAutomaton::new(&[(None, KEY)]).unwrap();
        for t in ["use sk-ab", "plain words", "sk", "ask-"] {
            a.earliest_live(t, 0, 0);
        }
        assert_eq!(a.caches.lock().len(), 1);
    }

    #[test]
    fn a_large_unicode_pattern_stays_small() {
        let img =
            r"!\[[^\]\n]{0,256}\]\(\s*<?((?i:https?)://[^\s)>]{1,2048})>?(?:\s+[^)]{0,256})?\)";
        let a = HoldAutomaton::new(&[(None, img)]).unwrap();
        let nfa = a.free.as_ref().unwrap().get_nfa().memory_usage();
        assert!(nfa < 256 << 10, "{a:?}");
        assert_eq!(a.earliest_live("see ![x](https://e", 0, 0), Some(4));
    }
}
