//! IBANs: country code, check digits, national part of the country's length, mod-97 valid;
//! written plain or in groups of four.

use super::B;
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// IBAN detector.
pub struct Iban;

/// IBAN length by country (ISO 13616 registry).
pub fn iban_length(cc: &str) -> Option<usize> {
    Some(match cc {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "IQ" | "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

/// The ISO 7064 mod-97-10 check over an IBAN without spaces.
pub fn mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

impl Detector for Iban {
    fn name(&self) -> &'static str {
        "iban"
    }
    fn types(&self) -> &'static [&'static str] {
        &["iban"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::regex(
            ViewKind::Raw,
            format!(r"{B}[A-Z]{{2}}[0-9]{{2}}(?: ?[A-Z0-9]){{11,30}}"),
            0,
            "iban",
        )]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        let Some(len) = iban_length(&m[..2]) else {
            return;
        };
        // take exactly `len` alphanumerics (single spaces allowed between them)
        let mut compact = Vec::with_capacity(len);
        let mut end = 0;
        for (i, b) in m.bytes().enumerate() {
            if b == b' ' {
                continue;
            }
            compact.push(b);
            if compact.len() == len {
                end = i + 1;
                break;
            }
        }
        if compact.len() != len || !mod97(&compact) {
            return;
        }
        // the next char must not continue the code
        if m.as_bytes().get(end).is_some_and(u8::is_ascii_alphanumeric) {
            return;
        }
        out.push(hit.finding("iban", hit.start, hit.start + end, 1.0, "pii.iban.mod97"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Iban), "iban", t)
    }

    #[test]
    fn positives() {
        for c in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB29 NWBK 6016 1331 9268 19",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
        ] {
            assert_eq!(f(&format!("IBAN {c} THANKS")), [c], "{c}");
        }
    }

    #[test]
    fn negatives() {
        assert!(f("DE89370400440532013001").is_empty()); // checksum
        assert!(f("ZZ89370400440532013000").is_empty()); // no such country
        assert!(f("DE8937040044053201300").is_empty()); // too short
    }

    proptest! {
        #[test]
        fn a_changed_digit_fails(pos in 4usize..22, d in 0u8..10) {
            let good = b"DE89370400440532013000".to_vec();
            let mut bad = good.clone();
            prop_assume!(bad[pos] != b'0' + d);
            bad[pos] = b'0' + d;
            prop_assert!(!mod97(&bad));
        }
    }
}
