//! The detection engine: every detector's patterns compiled into one pass per view.
//!
//! A [`Detector`] declares [`Pattern`]s (regexes or literals, each on a [`ViewKind`]) and
//! confirms candidate matches (Luhn, mod-97, context words, host allowlists...). The engine
//! compiles the regexes of each view into one [`RegexSet`] and the literals of each view into
//! one Aho-Corasick automaton, so the text is scanned once per view however many detectors
//! there are; only patterns the set reports as present are re-run to find their spans.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::finding::Finding;
use crate::text::{self, View, ViewKind};

/// How a pattern matches.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A regular expression (Rust `regex` syntax).
    Regex(String),
    /// A literal string (matched leftmost-longest).
    Literal(String),
}

/// One pattern of a detector.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The view it matches on.
    pub view: ViewKind,
    /// Regex or literal.
    pub matcher: Matcher,
    /// The detector's own tag, handed back in [`Hit::tag`].
    pub tag: u32,
    /// The finding type the pattern leads to, when it leads to one type only: the engine drops
    /// the pattern when the policy does not act on that type.
    pub ty: Option<&'static str>,
    /// What a stream must not send before the match is decided, as a regex that every match
    /// contains and that starts at or before the part the detector reports (a password, not
    /// the URL scheme before it). `None`: the whole pattern. See [`crate::hold`].
    pub hold: Option<String>,
    /// A regex that must end just before [`Pattern::hold`] for it to count (the key word
    /// before a secret's value): only then is the rest held. See [`crate::hold`].
    pub hold_after: Option<String>,
}

impl Pattern {
    /// A regex pattern.
    pub fn regex(view: ViewKind, re: impl Into<String>, tag: u32, ty: &'static str) -> Pattern {
        Pattern {
            view,
            matcher: Matcher::Regex(re.into()),
            tag,
            ty: Some(ty),
            hold: None,
            hold_after: None,
        }
    }

    /// A literal pattern.
    pub fn literal(view: ViewKind, lit: impl Into<String>, tag: u32, ty: &'static str) -> Pattern {
        Pattern {
            view,
            matcher: Matcher::Literal(lit.into()),
            tag,
            ty: Some(ty),
            hold: None,
            hold_after: None,
        }
    }

    /// Let a stream send the start of a match before the match is decided, holding back only
    /// from where `re` begins (see [`Pattern::hold`]). The part sent before must be short: it
    /// is seen again only through the [`crate::stream::CONTEXT`] bytes a stream rescans.
    pub fn hold_from(mut self, re: impl Into<String>) -> Pattern {
        self.hold = Some(re.into());
        self
    }

    /// Let a stream send a match's lead (`trigger`: a key word, a URL scheme) and hold only
    /// `rest` from where a `trigger` match ends, when `rest` may follow there. For patterns
    /// whose reported part follows a lead that alone says nothing (`token`, then a value).
    /// The lead must be short, for the same reason as in [`Pattern::hold_from`].
    pub fn hold_after(mut self, trigger: impl Into<String>, rest: impl Into<String>) -> Pattern {
        self.hold_after = Some(trigger.into());
        self.hold = Some(rest.into());
        self
    }
}

/// A candidate match handed to [`Detector::confirm`].
pub struct Hit<'a> {
    /// The pattern's tag.
    pub tag: u32,
    /// The text of the view the pattern matched on.
    pub text: &'a str,
    /// Start of the match in the view.
    pub start: usize,
    /// End of the match in the view.
    pub end: usize,
    /// The pattern's compiled regex (for captures), when it is a regex.
    pub regex: Option<&'a Regex>,
    /// The original text.
    pub raw: &'a str,
    view: Option<&'a View>,
}

impl<'a> Hit<'a> {
    /// The matched text, in the view.
    pub fn as_str(&self) -> &'a str {
        &self.text[self.start..self.end]
    }

    /// Map a span of the view to the original text.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        match self.view {
            None => (start, end),
            Some(v) => v.original(start, end),
        }
    }

    /// A finding for the view span `start..end`.
    pub fn finding(
        &self,
        ty: &'static str,
        start: usize,
        end: usize,
        score: f32,
        rule: &'static str,
    ) -> Finding {
        let (start, end) = self.original(start, end);
        Finding {
            ty,
            start,
            end,
            score,
            rule,
        }
    }

    /// A finding for the whole match.
    pub fn whole(&self, ty: &'static str, score: f32, rule: &'static str) -> Finding {
        self.finding(ty, self.start, self.end, score, rule)
    }
}

/// A detector: declares patterns, confirms their matches. Adding one is one file in
/// `detectors/` and one line in [`crate::detectors::builtin`].
pub trait Detector: Send + Sync {
    /// Name, for errors and docs.
    fn name(&self) -> &'static str;
    /// The finding types this detector can report.
    fn types(&self) -> &'static [&'static str];
    /// Patterns to feed the shared automata.
    fn patterns(&self) -> Vec<Pattern>;
    /// Confirm a candidate; push zero or more findings.
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>);
    /// Whole-text hook for detectors that are not pattern-driven (a NER model for person names
    /// and addresses plugs in here). Default: nothing.
    fn scan_whole(&self, _text: &str, _out: &mut Vec<Finding>) {}
    /// Whether [`Detector::scan_whole`] is implemented: a stream cannot tell from patterns
    /// what such a detector may still match, so it holds the trailing word for it.
    fn scans_whole(&self) -> bool {
        false
    }
}

/// Errors building an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A pattern does not compile.
    #[error("detector `{detector}`: pattern `{pattern}` does not compile: {source}")]
    Regex {
        /// Detector name.
        detector: &'static str,
        /// The pattern.
        pattern: String,
        /// Why.
        source: regex::Error,
    },
    /// The automata could not be built (too large).
    #[error("building the matcher failed: {0}")]
    Build(String),
}

#[derive(Default)]
struct ViewMatchers {
    set: Option<RegexSet>,
    regexes: Vec<(Regex, usize, u32)>,
    ac: Option<AhoCorasick>,
    literals: Vec<(usize, u32)>,
}

impl ViewMatchers {
    fn is_empty(&self) -> bool {
        self.regexes.is_empty() && self.literals.is_empty()
    }
}

/// What a kept pattern means for a stream's hold-back.
#[derive(Debug)]
struct HoldSource {
    view: ViewKind,
    /// A regex (literals escaped): the pattern's `hold`, or the pattern itself.
    src: String,
    /// The pattern's `hold_after`.
    trigger: Option<String>,
    ty: Option<&'static str>,
    detector: usize,
}

/// Compiled detectors.
pub struct Engine {
    detectors: Vec<Box<dyn Detector>>,
    views: [ViewMatchers; 3],
    holds: Vec<HoldSource>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "detectors",
                &self.detectors.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Engine {
    /// Compile `detectors`, keeping only the patterns for which `wants(type)` holds.
    pub fn new(
        detectors: Vec<Box<dyn Detector>>,
        wants: &dyn Fn(&str) -> bool,
    ) -> Result<Engine, EngineError> {
        let detectors: Vec<Box<dyn Detector>> = detectors
            .into_iter()
            .filter(|d| d.types().iter().any(|t| wants(t)))
            .collect();
        let mut views: [ViewMatchers; 3] = Default::default();
        let mut regex_src: [Vec<String>; 3] = Default::default();
        let mut lit_src: [Vec<String>; 3] = Default::default();
        let mut holds = Vec::new();
        for (di, d) in detectors.iter().enumerate() {
            for p in d.patterns() {
                if p.ty.is_some_and(|t| !wants(t)) {
                    continue;
                }
                let v = p.view.index();
                let whole = match &p.matcher {
                    Matcher::Regex(src) => src.clone(),
                    Matcher::Literal(lit) => regex::escape(lit),
                };
                holds.push(HoldSource {
                    view: p.view,
                    trigger: p.hold_after.clone(),
                    src: p.hold.unwrap_or(whole),
                    ty: p.ty,
                    detector: di,
                });
                match p.matcher {
                    Matcher::Regex(src) => {
                        let re = Regex::new(&src).map_err(|e| EngineError::Regex {
                            detector: d.name(),
                            pattern: src.clone(),
                            source: e,
                        })?;
                        views[v].regexes.push((re, di, p.tag));
                        regex_src[v].push(src);
                    }
                    Matcher::Literal(lit) => {
                        if lit.is_empty() {
                            continue;
                        }
                        views[v].literals.push((di, p.tag));
                        lit_src[v].push(lit);
                    }
                }
            }
        }
        for v in 0..3 {
            if regex_src[v].len() > 1 {
                let set = RegexSetBuilder::new(&regex_src[v])
                    .size_limit(64 << 20)
                    .dfa_size_limit(16 << 20)
                    .build()
                    .map_err(|e| EngineError::Build(e.to_string()))?;
                views[v].set = Some(set);
            }
            if !lit_src[v].is_empty() {
                let ac = AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&lit_src[v])
                    .map_err(|e| EngineError::Build(e.to_string()))?;
                views[v].ac = Some(ac);
            }
        }
        Ok(Engine {
            detectors,
            views,
            holds,
        })
    }

    /// What a stream must hold back for the finding types `relevant` (those whose action
    /// rewrites or stops the text): nothing when no pattern leads to one, an automaton of
    /// their patterns' hold regexes when all are on the original text, and the trailing word
    /// when one is on a derived view or comes from a whole-text detector.
    pub fn hold(&self, relevant: &dyn Fn(&str) -> bool) -> crate::hold::Hold {
        use crate::hold::{Hold, HoldAutomaton};
        let leads = |ty: Option<&'static str>, di: usize| match ty {
            Some(t) => relevant(t),
            None => self.detectors[di].types().iter().any(|t| relevant(t)),
        };
        if let Some(d) = self
            .detectors
            .iter()
            .find(|d| d.scans_whole() && d.types().iter().any(|t| relevant(t)))
            .map(|d| d.name())
        {
            return Hold::TrailingWord(format!("detector `{d}` scans whole texts"));
        }
        let mut srcs = Vec::new();
        for h in &self.holds {
            if !leads(h.ty, h.detector) {
                continue;
            }
            if h.view != ViewKind::Raw {
                let d = self.detectors[h.detector].name();
                return Hold::TrailingWord(format!("detector `{d}` matches a derived view"));
            }
            srcs.push((h.trigger.as_deref(), h.src.as_str()));
        }
        if srcs.is_empty() {
            return Hold::Nothing;
        }
        match HoldAutomaton::new(&srcs) {
            Ok(a) => Hold::Automaton(Box::new(a)),
            Err(e) => Hold::TrailingWord(e.to_string()),
        }
    }

    /// Whether the engine has anything to look for.
    pub fn is_empty(&self) -> bool {
        self.views.iter().all(ViewMatchers::is_empty)
    }

    /// Scan `text`; findings sorted by start (longest first), exact duplicates removed.
    ///
    /// The derived views are first built as text only; their maps to the original text are
    /// built (by building the view again) only when one of their patterns matched, which in
    /// most prompts none does.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        let need_words = !self.views[ViewKind::Words.index()].is_empty();
        let need_folded = need_words || !self.views[ViewKind::Folded.index()].is_empty();
        let raw = self.candidates(ViewKind::Raw, text);
        self.confirm_all(ViewKind::Raw, &raw, None, text, &mut out);
        if need_folded {
            let folded = text::folded_with(text, false);
            let words = need_words.then(|| text::words_with(&folded, false));
            let fh = self.candidates(ViewKind::Folded, &folded.text);
            let wh = match &words {
                Some(w) => self.candidates(ViewKind::Words, &w.text),
                None => Vec::new(),
            };
            if !fh.is_empty() || !wh.is_empty() {
                let folded = text::folded(text);
                if !fh.is_empty() {
                    self.confirm_all(ViewKind::Folded, &fh, Some(&folded), text, &mut out);
                }
                if !wh.is_empty() {
                    let words = text::words(&folded);
                    self.confirm_all(ViewKind::Words, &wh, Some(&words), text, &mut out);
                }
            }
        }
        for d in &self.detectors {
            d.scan_whole(text, &mut out);
        }
        out.retain(|f| f.start < f.end && f.end <= text.len());
        out.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        out.dedup_by(|a, b| a.ty == b.ty && a.start == b.start && a.end == b.end);
        out
    }

    /// Every match of the view's patterns in `vt` (one `RegexSet` pass, then only the patterns
    /// it reported, and one Aho-Corasick pass), not yet confirmed.
    fn candidates(&self, kind: ViewKind, vt: &str) -> Vec<Candidate> {
        let m = &self.views[kind.index()];
        let mut hits = Vec::new();
        let mut run = |i: usize| {
            for mat in m.regexes[i].0.find_iter(vt) {
                hits.push(Candidate {
                    regex: true,
                    index: i,
                    start: mat.start(),
                    end: mat.end(),
                });
            }
        };
        match &m.set {
            Some(set) => set.matches(vt).iter().for_each(&mut run),
            None => (0..m.regexes.len()).for_each(&mut run),
        }
        if let Some(ac) = &m.ac {
            for mat in ac.find_iter(vt) {
                hits.push(Candidate {
                    regex: false,
                    index: mat.pattern().as_usize(),
                    start: mat.start(),
                    end: mat.end(),
                });
            }
        }
        hits
    }

    fn confirm_all(
        &self,
        kind: ViewKind,
        hits: &[Candidate],
        view: Option<&View>,
        raw: &str,
        out: &mut Vec<Finding>,
    ) {
        let m = &self.views[kind.index()];
        for c in hits {
            let (re, di, tag) = if c.regex {
                let (re, di, tag) = &m.regexes[c.index];
                (Some(re), *di, *tag)
            } else {
                let (di, tag) = m.literals[c.index];
                (None, di, tag)
            };
            let hit = Hit {
                tag,
                text: view.map_or(raw, |v| v.text.as_str()),
                start: c.start,
                end: c.end,
                regex: re,
                raw,
                view,
            };
            self.detectors[di].confirm(&hit, out);
        }
    }
}

/// A match in a view, not yet confirmed (a derived view's map is built only when it has some).
struct Candidate {
    regex: bool,
    index: usize,
    start: usize,
    end: usize,
}

/// Helpers detectors share.
pub mod util {
    /// The (at most) `n` bytes before `at`, on a char boundary.
    pub fn before(text: &str, at: usize, n: usize) -> &str {
        let mut s = at.saturating_sub(n);
        while s > 0 && !text.is_char_boundary(s) {
            s -= 1;
        }
        &text[s..at.min(text.len())]
    }

    /// The (at most) `n` bytes after `at`, on a char boundary.
    pub fn after(text: &str, at: usize, n: usize) -> &str {
        let at = at.min(text.len());
        let mut e = (at + n).min(text.len());
        while e < text.len() && !text.is_char_boundary(e) {
            e += 1;
        }
        &text[at..e]
    }

    /// A keyword list matched by one ASCII-case-insensitive Aho-Corasick automaton, built on
    /// first use: context checks run for every candidate, so they must not cost one pass per
    /// keyword. A keyword counts only at the start of a word (`tel` in `tel:` and `telephone`,
    /// not in `hotel`), so short keywords do not fire inside unrelated words.
    pub struct Keywords {
        list: &'static [&'static str],
        ac: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>>,
    }

    impl Keywords {
        /// Keywords from a static list (usable in a `static`).
        pub const fn new(list: &'static [&'static str]) -> Keywords {
            Keywords {
                list,
                ac: std::sync::OnceLock::new(),
            }
        }

        fn automaton(&self) -> Option<&aho_corasick::AhoCorasick> {
            self.ac
                .get_or_init(|| {
                    aho_corasick::AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .build(self.list)
                        .ok()
                })
                .as_ref()
        }

        /// The end of the last keyword in `hay` that starts a word.
        pub fn last_end(&self, hay: &str) -> Option<usize> {
            let b = hay.as_bytes();
            let at_word_start =
                |s: usize| s == 0 || !(b[s - 1].is_ascii_alphanumeric() || b[s - 1] >= 0x80);
            match self.automaton() {
                Some(ac) => ac
                    .find_overlapping_iter(hay)
                    .filter(|m| at_word_start(m.start()))
                    .map(|m| m.end())
                    .max(),
                None => self
                    .list
                    .iter()
                    .filter_map(|k| {
                        let k = k.as_bytes();
                        if k.is_empty() || k.len() > b.len() {
                            return None;
                        }
                        (0..=b.len() - k.len())
                            .rev()
                            .find(|&s| {
                                at_word_start(s) && b[s..s + k.len()].eq_ignore_ascii_case(k)
                            })
                            .map(|s| s + k.len())
                    })
                    .max(),
            }
        }

        /// Whether `hay` contains a keyword at the start of a word, ignoring ASCII case.
        pub fn in_text(&self, hay: &str) -> bool {
            self.last_end(hay).is_some()
        }
    }

    static IBAN_HEAD: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:^|[^A-Za-z0-9])[A-Z]{2}[0-9]{2} ?(?:[A-Z0-9]{4} ?)?$").ok()
    });

    /// Whether the digits at `at` follow an IBAN's country code and check digits, and maybe an
    /// alphanumeric bank code (`DE06 `, `NL14 SIPY `): they are then the rest of an IBAN, not
    /// a card or a phone number.
    pub fn after_iban_head(text: &str, at: usize) -> bool {
        IBAN_HEAD
            .as_ref()
            .is_some_and(|r| r.is_match(before(text, at, 12)))
    }

    /// The part of `text` before `at` on the same line, at most `n` bytes.
    pub fn line_before(text: &str, at: usize, n: usize) -> &str {
        let s = before(text, at, n);
        match s.rfind('\n') {
            Some(i) => &s[i + 1..],
            None => s,
        }
    }

    /// The last char before `at`.
    pub fn char_before(text: &str, at: usize) -> Option<char> {
        text.get(..at)?.chars().next_back()
    }

    /// The char at `at`.
    pub fn char_at(text: &str, at: usize) -> Option<char> {
        text.get(at..)?.chars().next()
    }

    /// Whether the match `start..end` is glued to an alphanumeric run by `-`, `.`, `_` or `/`
    /// on either side (it is then part of an identifier like `INV-2024-558812` or `1.2.3.4.5`).
    pub fn glued(text: &str, start: usize, end: usize) -> bool {
        let b = text.as_bytes();
        let joiner = |c: u8| matches!(c, b'-' | b'.' | b'_' | b'/' | b'#');
        let left = start >= 2 && joiner(b[start - 1]) && b[start - 2].is_ascii_alphanumeric();
        let right = end + 1 < b.len() && joiner(b[end]) && b[end + 1].is_ascii_alphanumeric();
        left || right
    }

    /// Shannon entropy of `s` in bits per character.
    pub fn entropy(s: &str) -> f64 {
        let mut counts = [0u32; 256];
        let mut n = 0u32;
        for b in s.bytes() {
            counts[b as usize] += 1;
            n += 1;
        }
        if n == 0 {
            return 0.0;
        }
        let n = f64::from(n);
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / n;
                -p * p.log2()
            })
            .sum()
    }
}
