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
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The view's text.
    pub text: String,
    /// For each view byte, the original span of the character that produced it.
    spans: Vec<(u32, u32)>,
    orig_len: usize,
}

impl View {
    /// The original span of the view span `start..end`.
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self
            .spans
            .get(start)
            .map_or(self.orig_len, |p| p.0 as usize);
        if end <= start {
            return (s, s);
        }
        let e = self
            .spans
            .get(end - 1)
            .map_or(self.orig_len, |p| p.1 as usize);
        (s, e.max(s))
    }

    fn push(&mut self, c: char, span: (u32, u32)) {
        self.text.push(c);
        for _ in 0..c.len_utf8() {
            self.spans.push(span);
        }
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

/// Fold a confusable (homoglyph) to the Latin letter it imitates; other characters unchanged.
pub fn fold_confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'ԁ' => 'd',
        'ɡ' => 'g',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ո' => 'n',
        'ս' => 'u',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'γ' => 'y',
        'ω' => 'w',
        // Latin look-alikes
        'ı' => 'i',
        'ł' => 'l',
        'ø' => 'o',
        'đ' => 'd',
        'ħ' => 'h',
        'ŀ' => 'l',
        'ſ' => 's',
        'ß' => 's',
        'ɑ' => 'a',
        'ɩ' => 'i',
        'ʀ' => 'r',
        'ʏ' => 'y',
        _ => c,
    }
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

/// Build the folded view of `text`.
pub fn folded(text: &str) -> View {
    let mut v = View {
        text: String::with_capacity(text.len()),
        spans: Vec::with_capacity(text.len()),
        orig_len: text.len(),
    };
    let mut last_space = true; // drop leading whitespace
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let at = i;
        let i = (i as u32, (i + c.len_utf8()) as u32);
        if c.is_ascii() {
            if c.is_ascii_whitespace() {
                if !last_space {
                    v.push(' ', i);
                    last_space = true;
                }
                continue;
            }
            last_space = false;
            let mut f = fold_leet(c.to_ascii_lowercase());
            if f == c && c.is_ascii_punctuation() {
                // a symbol stands for a letter only between letters or digits (`a$$`, `h@ck`)
                let prev = at.checked_sub(1).and_then(|p| bytes.get(p));
                let next = bytes.get(at + 1);
                let wordy = |b: Option<&u8>| {
                    b.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'@' | b'!'))
                };
                if wordy(prev) && (wordy(next) || c == '$') {
                    f = fold_leet_symbol(c);
                }
            }
            v.push(f, i);
            continue;
        }
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
                let f = fold_leet(fold_confusable(l));
                if f.is_whitespace() {
                    if !last_space {
                        v.push(' ', i);
                        last_space = true;
                    }
                } else {
                    last_space = false;
                    v.push(f, i);
                }
            }
        }
    }
    v
}

/// Characters that may sit inside an obfuscated word (`f.u.c.k`, `f*ck`, `f-u-c-k`).
fn is_inner_separator(c: char) -> bool {
    matches!(
        c,
        '.' | '*' | '-' | '_' | '\'' | '`' | '~' | '^' | '#' | '%'
    )
}

/// Build the words view from a folded view (its map still points at the original text).
pub fn words(f: &View) -> View {
    let mut v = View {
        text: String::with_capacity(f.text.len()),
        spans: Vec::with_capacity(f.text.len()),
        orig_len: f.orig_len,
    };
    // 1. cut into words: letters plus inner separators between letters
    struct Word {
        letters: Vec<(char, (u32, u32))>, // char and original span
    }
    let mut out_words: Vec<Word> = Vec::new();
    let mut cur: Vec<(char, (u32, u32))> = Vec::new();
    let mut pending_sep = false;
    let chars: Vec<(usize, char)> = f.text.char_indices().collect();
    for &(i, c) in &chars {
        let orig = f.spans.get(i).copied().unwrap_or((0, 0));
        if c.is_alphabetic() {
            cur.push((c, orig));
            pending_sep = false;
        } else if is_inner_separator(c) && !cur.is_empty() {
            pending_sep = true;
        } else {
            let _ = pending_sep;
            pending_sep = false;
            if !cur.is_empty() {
                out_words.push(Word {
                    letters: std::mem::take(&mut cur),
                });
            }
        }
    }
    if !cur.is_empty() {
        out_words.push(Word { letters: cur });
    }
    // 2. join runs of three or more single letters (`f u c k`)
    let mut joined: Vec<Word> = Vec::with_capacity(out_words.len());
    let mut i = 0;
    while i < out_words.len() {
        let mut j = i;
        while j < out_words.len() && out_words[j].letters.len() == 1 {
            j += 1;
        }
        if j - i >= 3 {
            let mut letters = Vec::with_capacity(j - i);
            for w in &out_words[i..j] {
                letters.extend_from_slice(&w.letters);
            }
            joined.push(Word { letters });
            i = j;
        } else {
            joined.push(Word {
                letters: std::mem::take(&mut out_words[i].letters),
            });
            i += 1;
        }
    }
    // 3. squeeze letter runs of three or more to one letter
    for (n, w) in joined.iter().enumerate() {
        if n > 0 {
            // the separating space maps to the empty span at the word's start
            let at = w.letters.first().map_or(0, |l| l.1.0);
            v.push(' ', (at, at));
        }
        let mut k = 0;
        while k < w.letters.len() {
            let c = w.letters[k].0;
            let mut run = 1;
            while k + run < w.letters.len() && w.letters[k + run].0 == c {
                run += 1;
            }
            let keep = if run >= 3 { 1 } else { run };
            for r in 0..keep {
                v.push(c, w.letters[k + r].1);
            }
            k += run;
        }
    }
    v
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
