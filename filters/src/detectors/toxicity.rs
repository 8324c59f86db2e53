//! Toxicity lexicon: per-language word lists (files under `policies/lexicons/toxicity/`),
//! matched on the words view so `f.u.c.k`, `fuuuck`, `f u c k`, `fück` and `sh1t` are caught,
//! and only as whole words (`Scunthorpe` and `assess` are not).

use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::{self, ViewKind};

/// Toxicity lexicon detector.
pub struct Toxicity {
    entries: Vec<String>,
}

impl Toxicity {
    /// Build from `(language, entries)` lists. Entries are normalised like the words view.
    pub fn new(lexicons: &[(String, Vec<String>)]) -> Toxicity {
        let mut entries: Vec<String> = lexicons
            .iter()
            .flat_map(|(_, words)| words.iter())
            .map(|w| text::words_with(&text::folded_with(w, false), false).text)
            .filter(|w| w.len() >= 2)
            .collect();
        entries.sort_unstable();
        entries.dedup();
        Toxicity { entries }
    }

    /// Number of distinct normalised entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the lexicon is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Detector for Toxicity {
    fn name(&self) -> &'static str {
        "toxicity"
    }
    fn types(&self) -> &'static [&'static str] {
        &["toxicity"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        self.entries
            .iter()
            .map(|w| Pattern::literal(ViewKind::Words, w.clone(), 0, "toxicity"))
            .collect()
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let b = hit.text.as_bytes();
        let left = hit.start == 0 || b[hit.start - 1] == b' ';
        let right = hit.end == b.len() || b[hit.end] == b' ';
        if left && right {
            out.push(hit.whole("toxicity", 0.8, "toxicity.lexicon"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;

    fn f(t: &str) -> Vec<&str> {
        let lex = vec![(
            "en".to_string(),
            vec![
                "fuck".to_string(),
                "shit".to_string(),
                "ass".to_string(),
                "piece of shit".to_string(),
            ],
        )];
        found(Box::new(Toxicity::new(&lex)), "toxicity", t)
    }

    #[test]
    fn obfuscations_are_caught() {
        assert_eq!(f("oh f.u.c.k this"), ["f.u.c.k"]);
        assert_eq!(f("FUUUUCK"), ["FUUUUCK"]);
        assert_eq!(f("what a pile of sh1t"), ["sh1t"]);
        assert_eq!(f("f u c k you"), ["f u c k"]);
        assert_eq!(f("you piece of shit"), ["piece of shit"]);
        assert_eq!(f("you a$$"), ["a$$"]);
    }

    #[test]
    fn whole_words_only() {
        assert!(f("Scunthorpe assessment of the class, shitake mushrooms").is_empty());
    }
}
