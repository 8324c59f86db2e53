//! Phone numbers: E.164 and international forms, and common national formats.
//!
//! The pattern finds digit groups; the confirmation decides. International numbers (`+` or
//! `00`) need 8 to 15 digits. National numbers need a shape real numbers have (a trunk `0` or
//! an area code in brackets with separators, the North American 3-3-4 shape, 3-3-3 groups) or a
//! phone word before them. Dates, times, IPs, versions and identifiers glued to letters
//! (`INV-2023-00042`) are rejected.

use std::sync::LazyLock;

use regex::Regex;

use super::B;
use crate::engine::util::{Keywords, after_iban_head, before, glued, line_before};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Phone detector.
pub struct Phone;

const SEP: &str = r"[ .\-/]";
const EXT: &str = r"(?:[ ]?(?:x|ext\.?|#)[ ]?[0-9]{1,5})?";

/// Words that say the next number is a phone number (matched at a word start, same line).
static KEYWORDS: Keywords = Keywords::new(&[
    "phone",
    "tel",
    "tél",
    "call",
    "mobile",
    "cell",
    "fax",
    "whatsapp",
    "signal",
    "contact",
    "ring",
    "text",
    "sms",
    "2fa",
    "otp",
    "hotline",
    "helpline",
    "my number",
    "your number",
    "his number",
    "her number",
    "their number",
    "number to call",
    "telefon",
    "portable",
    "handy",
    "móvil",
    "movil",
    "celular",
    "llamar",
    "llámame",
    "appel",
    "appelez",
    "joindre",
    "joignable",
    "anrufen",
    "erreichbar",
    "cellulare",
    "chiamare",
    "bel ",
    "bellen",
    "mobiel",
    "reach",
]);

/// Words that say the next number is something else; when one is nearer the number than any
/// phone word, the number is not a phone number (`Tracking number 6039776485`, `Order 0076`).
static NOT_PHONE: Keywords = Keywords::new(&[
    "tracking",
    "order",
    "invoice",
    "inv",
    "case",
    "ticket",
    "ref",
    "reference",
    "isbn",
    "postal",
    "zip",
    "plz",
    "account",
    "acct",
    "customer",
    "iban",
    "bic",
    "swift",
    "sort code",
    "routing",
    "serial",
    "sku",
    "part",
    "build",
    "version",
    "pid",
    "port",
    "id",
    "uid",
    "nr.",
    "no.",
    "amount",
    "total",
    "price",
    "balance",
]);

static DATE_START: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{2,4}$)",
    )
    .ok()
});
static NANP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(?:1[ .\-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}").ok()
});
static SSN_SHAPE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$").ok());
static GROUPS_333: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[0-9]{3} [0-9]{3} [0-9]{3,4}$").ok());

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

impl Detector for Phone {
    fn name(&self) -> &'static str {
        "phone"
    }
    fn types(&self) -> &'static [&'static str] {
        &["phone"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![Pattern::regex(
            ViewKind::Raw,
            format!(
                r"(?:(?:\+|{B}00)[1-9][0-9]{{0,3}}(?:{SEP}?\(0\))?(?:{SEP}?\(?[0-9]{{1,5}}\)?){{1,6}}|(?:\(|{B})[0-9]{{2,5}}\)?(?:{SEP}?[0-9]{{2,8}}){{1,5}}){EXT}{B}"
            ),
            0,
            "phone",
        )]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let m = hit.as_str();
        let raw = hit.raw;
        if glued(raw, hit.start, hit.end) {
            return;
        }
        let prev = before(raw, hit.start, 1);
        if prev == "#" || prev == "$" || prev == "€" || prev == "£" {
            return;
        }
        // digits, not counting an extension
        let main = m
            .split(['x', '#'])
            .next()
            .unwrap_or(m)
            .split("ext")
            .next()
            .unwrap_or(m);
        let digits = main.bytes().filter(u8::is_ascii_digit).count();
        let intl = m.starts_with('+') || m.starts_with("00");
        let has_sep = main.trim_end().bytes().any(|b| b" .-/()".contains(&b));
        if matches(&DATE_START, main)
            || is_dotted_quad(main)
            || matches(&SSN_SHAPE, main.trim_end())
        {
            return;
        }
        if after_iban_head(raw, hit.start) {
            return;
        }
        // context words count on the number's own line only (a CSV header naming a `phone`
        // column says nothing about the first field of the next row)
        let line = line_before(raw, hit.start, 32);
        let phone_word = KEYWORDS.last_end(line);
        let other_word = NOT_PHONE.last_end(line);
        if other_word.is_some_and(|o| phone_word.is_none_or(|p| o > p)) {
            return;
        }
        let context = phone_word.is_some();
        let ok = if intl {
            (8..=15).contains(&digits)
        } else if !(7..=12).contains(&digits) {
            false
        } else if context {
            true
        } else {
            let trunk = (main.starts_with('0') || main.starts_with("(0")) && has_sep && digits >= 9;
            let bracket_area = main.starts_with('(') && has_sep && digits >= 9;
            trunk || bracket_area || matches(&NANP, main) || matches(&GROUPS_333, main.trim_end())
        };
        if ok {
            out.push(hit.whole(
                "phone",
                if intl || context { 0.95 } else { 0.85 },
                "pii.phone",
            ));
        }
    }
}

fn is_dotted_quad(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(Phone), "phone", t)
    }

    #[test]
    fn positives() {
        for p in [
            "+1-415-555-0132",
            "+1 415 555 0132",
            "+4915123456789",
            "+44(0)20 7946 0958",
            "+33 (0)1 23 45 67 89",
            "0161 496 0123",
            "(0351) 123456",
            "06-12345678",
            "(415) 555-0132",
            "415.555.0132",
            "555-123-4567x890",
            "001-415-555-0132",
            "912 345 678",
            "01 23 45 67 89",
        ] {
            assert_eq!(f(&format!("reach me at {p} today")), [p], "{p}");
        }
        assert_eq!(f("call 5551234567"), ["5551234567"]);
        assert_eq!(f("Please text 02074960153"), ["02074960153"]);
        assert_eq!(f("Tél. : 0495229243"), ["0495229243"]);
        assert_eq!(f("me joindre au 0553190352"), ["0553190352"]);
        assert_eq!(f("order questions: call 0553190352"), ["0553190352"]);
    }

    #[test]
    fn negatives() {
        for t in [
            "order 100234987 shipped",
            "at 2024-03-14 10:22:31 UTC",
            "epoch 1710411751",
            "version 10.0.19045.3693",
            "ISBN 978-3-16-148410-0",
            "invoice INV-2023-00042",
            "host 192.168.1.20",
            "costs $1234.56",
            "ticket #4815162342",
            "on 14/03/2024 we met",
            "id 550e8400-e29b-41d4-a716-446655440000",
            "call about number 123-45-6789",
            "Tracking number 6039776485",
            "tracking_number = \"6759114014\"",
            "customer_id,name,phone,city\n8835985,Ann,Lyon",
            "Rekeningnummer: NL14 SIPY 0198 3702 08",
            "postal_code=04622-0741",
            "[billing] Order 007664447",
            "Case number 908-79-7019. Invoice Nr. 2025-2899",
            "the hotel has 1234567 rooms",
        ] {
            assert!(f(t).is_empty(), "{t}: {:?}", f(t));
        }
    }

    proptest! {
        #[test]
        fn e164_numbers_are_found(cc in 1u32..99, rest in "[1-9][0-9]{7,10}") {
            let p = format!("+{cc}{rest}");
            let t = format!("my number is {p}.");
            prop_assert_eq!(f(&t), vec![p.as_str()]);
        }
    }
}
