//! Views of a text that detectors match on, each with a map back to the original bytes.
//!
//! * [`ViewKind::Raw`]: the text as sent. PII and secret detectors use it, so spans are exact.
//! * [`ViewKind::Folded`]: Unicode NFKD with combining marks dropped (so NFKC compatibility forms
//!   and accents fold), zero-width and bidi controls removed, confusable homoglyphs folded to
//!   Latin, lower case, leetspeak digits mapped to letters, whitespace runs collapsed to one space.
//!   Injection heuristics use it: `ІGN0RE  prev\u{200b}ious` reads `ignore previous`.
//! * [`ViewKind::Words`]: the folded view cut into words, with separators inside a word removed
//!   (`f.u.c.k`), letter runs of three or more squeezed (`fuuuck`), and spaced-out letters joined
//!   (`f u c k`). Words are separated by one space. The toxicity lexicon matches on it.
//!
//! Each derived view keeps, for every byte, the original span of the character that produced it,
//! so a match in a view maps back to an original span.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Which view a pattern matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewKind {
    /// The original text.
    Raw,
    /// Normalised for injection heuristics.
    Folded,
    /// Word-normalised for lexicons.
    Words,
}

impl ViewKind {
    /// All views, in the order the engine builds them.
    pub const ALL: [ViewKind; 3] = [ViewKind::Raw, ViewKind::Folded, ViewKind::Words];

    /// Index into per-view arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A derived view and its map to original offsets.
///
/// The map is a list of segments rather than one entry per byte: ASCII text that only changes
/// case or leetspeak keeps a one-to-one byte map, so a run of it is one segment whatever its
/// length. A character that changes length (NFKD, removed marks) gets a segment of its own.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The view's text.
    pub text: String,
    segs: Vec<Seg>,
    orig_len: usize,
    mapped: bool,
}

/// View bytes from `view` up to the next segment's `view` come from the original text at
/// `orig`: byte for byte when `ident`, otherwise every byte maps to `orig..orig + olen`.
#[derive(Debug, Clone, Copy)]
struct Seg {
    view: u32,
    orig: u32,
    olen: u32,
    ident: bool,
}

impl View {
    fn with_capacity(n: usize, orig_len: usize) -> View {
        View {
            text: String::with_capacity(n),
            segs: Vec::with_capacity(n / 4 + 4),
            orig_len,
            mapped: true,
        }
    }

    /// The original span of the character that produced view byte `p`.
    fn span_at(&self, p: usize) -> (usize, usize) {
        if p >= self.text.len() {
            return (self.orig_len, self.orig_len);
        }
        let k = self.segs.partition_point(|s| s.view as usize <= p);
        self.seg_span(k.saturating_sub(1), p)
    }

    /// Like [`View::span_at`] for increasing `p`, with a cursor `k` kept by the caller.
    fn span_from(&self, p: usize, k: &mut usize) -> (usize, usize) {
        while *k + 1 < self.segs.len() && self.segs[*k + 1].view as usize <= p {
            *k += 1;
        }
        self.seg_span(*k, p)
    }

    fn seg_span(&self, k: usize, p: usize) -> (usize, usize) {
        match self.segs.get(k) {
            None => (self.orig_len, self.orig_len),
            Some(s) if s.ident => {
                let o = s.orig as usize + (p - s.view as usize);
                (o, o + 1)
            }
            Some(s) => (s.orig as usize, (s.orig + s.olen) as usize),
        }
    }

    /// The original span of the view span `start..end`.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.span_at(start).0;
        if end <= start {
            return (s, s);
        }
        let e = self.span_at(end - 1).1;
        (s, e.max(s))
    }
}

/// Builds a [`View`], keeping the current one-to-one segment's offset so that extending it is
/// one comparison per byte.
struct Builder {
    v: View,
    /// `orig - view` of the current identity segment, if the last segment is one.
    delta: Option<u32>,
    /// Whether to build the map at all (text-only views are for a first, cheap pass).
    map: bool,
}

impl Builder {
    fn new(n: usize, orig_len: usize, map: bool) -> Builder {
        let mut v = View::with_capacity(n, orig_len);
        if !map {
            v.segs = Vec::new();
        }
        v.mapped = map;
        Builder {
            v,
            delta: None,
            map,
        }
    }

    /// Push an ASCII byte `b` that stands for original byte `orig`.
    #[inline(always)]
    fn push_ascii(&mut self, b: u8, orig: u32) {
        if !self.map {
            self.v.text.push(char::from(b));
            return;
        }
        let at = self.v.text.len() as u32;
        let d = orig.wrapping_sub(at);
        if self.delta != Some(d) {
            self.v.segs.push(Seg {
                view: at,
                orig,
                olen: 1,
                ident: true,
            });
            self.delta = Some(d);
        }
        self.v.text.push(char::from(b));
    }

    /// Push `c`, produced by the original span `span`.
    #[inline(always)]
    fn push(&mut self, c: char, span: (u32, u32)) {
        if !self.map {
            self.v.text.push(c);
            return;
        }
        if c.is_ascii() && span.1 == span.0 + 1 {
            return self.push_ascii(c as u8, span.0);
        }
        let at = self.v.text.len() as u32;
        let same = self.delta.is_none()
            && self
                .v
                .segs
                .last()
                .is_some_and(|s| s.orig == span.0 && s.olen == span.1 - span.0);
        if !same {
            self.v.segs.push(Seg {
                view: at,
                orig: span.0,
                olen: span.1 - span.0,
                ident: false,
            });
            self.delta = None;
        }
        self.v.text.push(c);
    }
}

/// Zero-width characters, bidi controls and other invisible formatting code points.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/confusables.rs"));
}

/// Look-alikes that read as a Latin letter but that Unicode's confusables data does not list
/// (its skeletons map them to other non-ASCII prototypes): Greek `ε κ β ω χ`, `ß`, `ʀ`, `ŀ`.
const NOT_IN_CONFUSABLES: &[(char, &str)] = &[
    ('ß', "ss"),
    ('ŀ', "l"),
    ('ʀ', "r"),
    ('β', "b"),
    ('ε', "e"),
    ('κ', "k"),
    ('χ', "x"),
    ('ω', "w"),
];

/// The ASCII a (lower-case) homoglyph reads as: Cyrillic, Greek, Armenian, Cherokee and every
/// other script in Unicode's confusables data (UTS #39), generated at build time.
pub fn confusable(c: char) -> Option<&'static str> {
    if c.is_ascii() {
        return None;
    }
    let table = generated::CONFUSABLES;
    if let Ok(i) = table.binary_search_by(|(k, _)| k.cmp(&c)) {
        return Some(table[i].1);
    }
    NOT_IN_CONFUSABLES
        .iter()
        .find(|(k, _)| *k == c)
        .map(|(_, v)| *v)
}

/// Map a leetspeak digit to the letter it stands for.
pub fn fold_leet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '8' => 'b',
        '9' => 'g',
        _ => c,
    }
}

/// Map a leetspeak symbol (`!`, `|`, `@`, `$`, `+`) to its letter; only done inside a word.
pub fn fold_leet_symbol(c: char) -> char {
    match c {
        '!' | '|' => 'i',
        '@' => 'a',
        '$' => 's',
        '+' => 't',
        _ => c,
    }
}

/// Lower case and leetspeak digits, for ASCII bytes.
const ASCII_FOLD: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = (i as u8).to_ascii_lowercase();
        t[i] = match b {
            b'0' => b'o',
            b'1' => b'i',
            b'3' => b'e',
            b'4' => b'a',
            b'5' => b's',
            b'7' => b't',
            b'8' => b'b',
            b'9' => b'g',
            _ => b,
        };
        i += 1;
    }
    t
};

/// Build the folded view of `text`, with its map.
pub fn folded(text: &str) -> View {
    folded_with(text, true)
}

/// Build the folded view of `text`; `map` says whether to build its map too.
pub fn folded_with(text: &str, map: bool) -> View {
    let mut v = Builder::new(text.len(), text.len(), map);
    let mut last_space = true; // drop leading whitespace
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b.is_ascii() {
            let o = at as u32;
            at += 1;
            // `_` is never a letter; read as a space it lets word boundaries fall between
            // `ignore_all_previous` (regex word characters include `_`)
            if b.is_ascii_whitespace() || b == b'_' {
                if !last_space {
                    v.push_ascii(b' ', o);
                    last_space = true;
                }
                continue;
            }
            if b.is_ascii_uppercase()
                && !last_space
                && o > 0
                && bytes[o as usize - 1].is_ascii_lowercase()
            {
                // camel case reads as words (`IgnoreAllPrevious`)
                v.push(' ', (o, o));
            }
            last_space = false;
            let mut f = ASCII_FOLD[b as usize];
            if f == b && b.is_ascii_punctuation() {
                // a symbol stands for a letter only between letters or digits (`a$$`, `h@ck`)
                let wordy = |b: Option<&u8>| {
                    b.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'@' | b'!'))
                };
                let prev = (o as usize).checked_sub(1).and_then(|p| bytes.get(p));
                if wordy(prev) && (wordy(bytes.get(at)) || b == b'$') {
                    f = fold_leet_symbol(char::from(b)) as u8;
                }
            }
            v.push_ascii(f, o);
            continue;
        }
        let Some(c) = text.get(at..).and_then(|t| t.chars().next()) else {
            break;
        };
        let i = (at as u32, (at + c.len_utf8()) as u32);
        at += c.len_utf8();
        if is_invisible(c) {
            continue;
        }
        if c.is_whitespace() {
            if !last_space {
                v.push(' ', i);
                last_space = true;
            }
            continue;
        }
        for d in std::iter::once(c).nfkd() {
            if is_combining_mark(d) || is_invisible(d) {
                continue;
            }
            for l in d.to_lowercase() {
                match confusable(l) {
                    Some(ascii) => {
                        last_space = false;
                        for a in ascii.chars() {
                            v.push(fold_leet(a), i);
                        }
                    }
                    None if l.is_whitespace() => {
                        if !last_space {
                            v.push(' ', i);
                            last_space = true;
                        }
                    }
                    None => {
                        last_space = false;
                        v.push(fold_leet(l), i);
                    }
                }
            }
        }
    }
    v.v
}

/// Characters that may sit inside an obfuscated word (`f.u.c.k`, `f*ck`, `f-u-c-k`).
fn is_inner_separator(c: char) -> bool {
    matches!(
        c,
        '.' | '*' | '-' | '_' | '\'' | '`' | '~' | '^' | '#' | '%'
    )
}

/// Build the words view from a folded view (its map still points at the original text).
///
/// One pass over the folded text. The letters of the current word and of a run of
/// single-letter words go to two small reused buffers; nothing is allocated per word.
pub fn words(f: &View) -> View {
    words_with(f, f.mapped)
}

/// Build the words view; `map` (which needs a mapped `f`) says whether to build its map too.
pub fn words_with(f: &View, map: bool) -> View {
    let map = map && f.mapped;
    struct W<'a> {
        f: &'a View,
        v: Builder,
        cursor: usize,
        first: bool,
    }
    impl W<'_> {
        /// Write one word: squeeze letter runs of three or more to one letter.
        fn emit(&mut self, letters: &[(u32, char)]) {
            let Some(&(p0, _)) = letters.first() else {
                return;
            };
            let span = |w: &mut W<'_>, p: u32| {
                if !w.v.map {
                    return (0, 0);
                }
                let (a, b) = w.f.span_from(p as usize, &mut w.cursor);
                (a as u32, b as u32)
            };
            let start = span(self, p0);
            if !self.first {
                // the separating space maps to the empty span at the word's start
                self.v.push(' ', (start.0, start.0));
            }
            self.first = false;
            let mut k = 0;
            while k < letters.len() {
                let c = letters[k].1;
                let mut run = 1;
                while k + run < letters.len() && letters[k + run].1 == c {
                    run += 1;
                }
                let keep = if run >= 3 { 1 } else { run };
                for &(p, c) in &letters[k..k + keep] {
                    let sp = span(self, p);
                    self.v.push(c, sp);
                }
                k += run;
            }
        }

        /// A word ended: single letters wait for the next word (runs of three or more
        /// single-letter words are one word, `f u c k`); a longer word flushes them first.
        fn word(&mut self, cur: &mut Vec<(u32, char)>, singles: &mut Vec<(u32, char)>) {
            if cur.len() == 1 {
                singles.push(cur[0]);
            } else {
                self.flush(singles);
                self.emit(cur);
            }
            cur.clear();
        }

        fn flush(&mut self, singles: &mut Vec<(u32, char)>) {
            if singles.len() >= 3 {
                self.emit(singles);
            } else {
                for i in 0..singles.len() {
                    self.emit(&singles[i..=i]);
                }
            }
            singles.clear();
        }
    }

    let mut w = W {
        f,
        v: Builder::new(f.text.len(), f.orig_len, map),
        cursor: 0,
        first: true,
    };
    let mut cur: Vec<(u32, char)> = Vec::with_capacity(64);
    let mut singles: Vec<(u32, char)> = Vec::with_capacity(16);
    let bytes = f.text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (c, len) = if b.is_ascii() {
            (char::from(b), 1)
        } else {
            match f.text.get(i..).and_then(|t| t.chars().next()) {
                Some(c) => (c, c.len_utf8()),
                None => break,
            }
        };
        if c.is_alphabetic() {
            cur.push((i as u32, c));
        } else if is_inner_separator(c) && !cur.is_empty() {
            // stays inside the word
        } else if !cur.is_empty() {
            w.word(&mut cur, &mut singles);
        }
        i += len;
    }
    if !cur.is_empty() {
        w.word(&mut cur, &mut singles);
    }
    w.flush(&mut singles);
    w.v.v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_homoglyphs_invisibles_and_leet() {
        let t = "ІGN0RE  prev\u{200b}ious ｉｎｓｔｒｕｃｔｉｏｎｓ";
        let v = folded(t);
        assert_eq!(v.text, "ignore previous instructions");
        let s = v.text.find("previous").unwrap();
        let (a, b) = v.original(s, s + "previous".len());
        assert_eq!(&t[a..b], "prev\u{200b}ious");
    }

    #[test]
    fn homoglyphs_of_every_script_fold() {
        // Cyrillic, Greek, Armenian, Cherokee, and a supplement confusables.txt lacks
        for (t, want) in [
            ("іgnоrе", "ignore"),
            ("ρrενιουs", "previous"),
            ("ոօ", "no"),
            ("ᎪᏞᏞ", "all"),
            ("ꭺꮮꮮ", "all"),
            ("ſyſtem", "system"),
        ] {
            assert_eq!(folded(t).text, want, "{t}");
        }
        let table = generated::CONFUSABLES;
        assert!(table.len() > 1000);
        assert!(
            table.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted for the binary search"
        );
    }

    #[test]
    fn accents_fold() {
        assert_eq!(folded("Ïgnörë").text, "ignore");
    }

    #[test]
    fn words_squeeze_and_join() {
        let f = folded("you f.u.c.k and fuuuuck and f u c k, ass!");
        let w = words(&f);
        assert_eq!(w.text, "you fuck and fuck and fuck ass");
        let s = w.text.find("fuck").unwrap();
        let (a, b) = w.original(s, s + 4);
        assert_eq!(
            &"you f.u.c.k and fuuuuck and f u c k, ass!"[a..b],
            "f.u.c.k"
        );
    }

    proptest! {
        #[test]
        fn ascii_bytes_map_to_the_byte_they_came_from(t in "[ -~\t\n]{0,96}") {
            let f = folded(&t);
            let raw = t.as_bytes();
            for (p, &b) in f.text.as_bytes().iter().enumerate() {
                let (a, e) = f.original(p, p + 1);
                if b == b' ' && e == a {
                    // a space inserted where camel case starts a word
                    prop_assert!(raw[a].is_ascii_uppercase() && raw[a - 1].is_ascii_lowercase());
                    continue;
                }
                prop_assert_eq!(e, a + 1);
                let o = raw[a];
                if b == b' ' {
                    prop_assert!(o.is_ascii_whitespace() || o == b'_');
                } else {
                    let c = char::from(o);
                    let want = [fold_leet(c.to_ascii_lowercase()), fold_leet_symbol(c)];
                    prop_assert!(want.contains(&char::from(b)), "{} from {}", b, o);
                }
            }
        }

        #[test]
        fn maps_stay_in_bounds_and_on_char_boundaries(t in "\\PC{0,64}") {
            let f = folded(&t);
            let w = words(&f);
            for v in [&f, &w] {
                for s in 0..=v.text.len() {
                    for e in s..=v.text.len() {
                        if !v.text.is_char_boundary(s) || !v.text.is_char_boundary(e) { continue; }
                        let (a, b) = v.original(s, e);
                        prop_assert!(a <= b && b <= t.len());
                        prop_assert!(t.is_char_boundary(a) && t.is_char_boundary(b));
                    }
                }
            }
        }
    }
}
