//! US social security numbers: `AAA-GG-SSSS` outside the never-issued ranges (area 000, 666,
//! 900-999; group 00; serial 0000). Nine digits without separators count only after an SSN word.

use super::B;
use crate::engine::util::{Keywords, before, glued};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// SSN detector.
pub struct Ssn;

static KEYWORDS: Keywords = Keywords::new(&[
    "ssn",
    "social security",
    "ss#",
    "soc sec",
    "social sec",
    "ssa",
    "tin",
]);

/// Whether the three parts are in issued ranges.
pub fn valid_ranges(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

impl Detector for Ssn {
    fn name(&self) -> &'static str {
        "ssn"
    }
    fn types(&self) -> &'static [&'static str] {
        &["ssn"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::regex(
            ViewKind::Raw,
            format!(r"{B}[0-9]{{3}}([- ]?)[0-9]{{2}}[- ]?[0-9]{{4}}{B}"),
            0,
            "ssn",
        )]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        if glued(hit.raw, hit.start, hit.end) {
            return;
        }
        let digits: Vec<u32> = m
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| u32::from(b - b'0'))
            .collect();
        let seps: Vec<u8> = m.bytes().filter(|b| !b.is_ascii_digit()).collect();
        if digits.len() != 9 || !(seps.is_empty() || seps.len() == 2 && seps[0] == seps[1]) {
            return;
        }
        let num = |r: std::ops::Range<usize>| digits[r].iter().fold(0, |a, d| a * 10 + d);
        if !valid_ranges(num(0..3), num(3..5), num(5..9)) {
            return;
        }
        let context = KEYWORDS.in_text(before(hit.raw, hit.start, 40));
        if seps.is_empty() && !context {
            return;
        }
        let score = if context { 1.0 } else { 0.85 };
        out.push(hit.whole("ssn", score, "pii.ssn"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Ssn), "ssn", t)
    }

    #[test]
    fn positives_and_negatives() {
        assert_eq!(f("SSN 123-45-6789"), ["123-45-6789"]);
        assert_eq!(f("my social security number is 123456789"), ["123456789"]);
        assert_eq!(f("id 123 45 6789"), ["123 45 6789"]);
        for t in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
            "order 123456789",
            "123-45 6789",
            "A-123-45-6789",
        ] {
            assert!(f(t).is_empty(), "{t}");
        }
    }

    proptest! {
        #[test]
        fn ranges_decide(area in 0u32..1000, group in 0u32..100, serial in 0u32..10000) {
            let t = format!("SSN: {area:03}-{group:02}-{serial:04}");
            prop_assert_eq!(!f(&t).is_empty(), valid_ranges(area, group, serial));
        }
    }
}
