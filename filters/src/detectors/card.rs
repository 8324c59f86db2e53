//! Payment card numbers: 12 to 19 digits, Luhn-valid, with a known issuer prefix, written
//! plain or in groups separated by one kind of separator.

use super::B;
use crate::engine::util::{after_iban_head, glued};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Card detector.
pub struct Card;

/// The Luhn checksum over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether the number starts with a known issuer prefix and has a length that issuer uses.
pub fn known_issuer(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 {
        d.iter()
            .take(k)
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    // Maestro: 12 to 19 digits
    let maestro = (12..=19).contains(&n);
    match d.first() {
        Some(b'4') => matches!(n, 13 | 16 | 19), // Visa
        Some(b'5') => {
            (51..=55).contains(&p(2)) && n == 16                            // Mastercard
                || (p(2) == 50 || (56..=58).contains(&p(2))) && maestro // Maestro
        }
        Some(b'2') => {
            (2221..=2720).contains(&p(4)) && n == 16 // Mastercard 2-series
                || p(4) == 2131 && n == 15 // JCB, 15 digits
        }
        Some(b'1') => p(4) == 1800 && n == 15, // JCB, 15 digits
        Some(b'0') => p(4) == 604 && maestro,  // Maestro 0604
        Some(b'3') => match p(2) {
            34 | 37 => n == 15,                          // Amex
            35 => (16..=19).contains(&n), // JCB (3528-3589 assigned; generators use all of 35)
            30 | 36 | 38 | 39 => (14..=19).contains(&n), // Diners
            _ => false,
        },
        Some(b'6') => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3))) && (16..=19).contains(&n) // Discover
                || p(2) == 62 && (16..=19).contains(&n)                                       // UnionPay
                || [63, 67].contains(&p(2)) && maestro // Maestro
        }
        _ => false,
    }
}

impl Detector for Card {
    fn name(&self) -> &'static str {
        "card"
    }
    fn types(&self) -> &'static [&'static str] {
        &["card"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::regex(
            ViewKind::Raw,
            format!(r"{B}[0-9](?:[ \-]?[0-9]){{11,18}}{B}"),
            0,
            "card",
        )]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        // `INV-4111...`, `+4915257703418` (a phone number), `DE06 6564 7448 ...` (an IBAN)
        if glued(hit.raw, hit.start, hit.end)
            || hit.raw[..hit.start].ends_with('+')
            || after_iban_head(hit.raw, hit.start)
        {
            return;
        }
        let seps: Vec<u8> = m.bytes().filter(|b| !b.is_ascii_digit()).collect();
        if seps.windows(2).any(|w| w[0] != w[1]) {
            return;
        }
        let digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
        if !(12..=19).contains(&digits.len()) || !known_issuer(&digits) || !luhn(&digits) {
            return;
        }
        out.push(hit.whole("card", 1.0, "pii.card.luhn"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Card), "card", t)
    }

    #[test]
    fn positives() {
        for c in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "3782 822463 10005",
            "6011000990139424",
            "2223003122003222",
            "3530111333300000",
            "3511636736824662",
        ] {
            assert_eq!(f(&format!("card: {c}.")), [c], "{c}");
        }
    }

    #[test]
    fn negatives() {
        for t in [
            "4111111111111112",                 // Luhn fails
            "1234567812345670",                 // no issuer
            "4111 1111-1111 1111",              // mixed separators
            "ref 9781234567897 ok",             // ISBN-13 shape
            "order A-4111111111111111",         // glued
            "call +4111111111111111",           // a phone number
            "IBAN DE06 6564 7448 5379 6011 55", // the rest of an IBAN
        ] {
            assert!(f(t).is_empty(), "{t}");
        }
    }

    fn with_check_digit(body: &str) -> String {
        (0..10u8)
            .map(|d| format!("{body}{d}"))
            .find(|c| luhn(c.as_bytes()))
            .unwrap()
    }

    proptest! {
        /// The formats the issue found missing: 15-digit JCB (2131, 1800) and Maestro of 12
        /// to 19 digits (50, 56-58, 63, 67, 0604), as Faker makes them.
        #[test]
        fn jcb_15_and_maestro_are_found(
            prefix in proptest::sample::select(vec!["2131", "1800", "5018", "5020", "5038", "5612", "5893", "6304", "6759", "6761", "0604", "6390"]),
            len in 12usize..=19,
            rest in "[0-9]{18}",
        ) {
            let len = if prefix == "2131" || prefix == "1800" { 15 } else { len };
            let body = format!("{prefix}{}", &rest[..len - prefix.len() - 1]);
            let c = with_check_digit(&body);
            let t = format!("card {c} please");
            prop_assert_eq!(f(&t), vec![c.as_str()]);
        }

        #[test]
        fn valid_visas_are_found(body in "4[0-9]{14}") {
            let c = with_check_digit(&body);
            let grouped: String = c.as_bytes().chunks(4).map(|g| std::str::from_utf8(g).unwrap()).collect::<Vec<_>>().join(" ");
            let t = format!("pay with {grouped} please");
            prop_assert_eq!(f(&t), vec![grouped.as_str()]);
        }

        #[test]
        fn a_wrong_check_digit_is_never_found(body in "4[0-9]{14}", bump in 1u8..10) {
            let c = with_check_digit(&body);
            let last = c.as_bytes()[15] - b'0';
            let wrong = format!("{body}{}", (last + bump) % 10);
            prop_assert!(f(&wrong).is_empty());
        }
    }
}
