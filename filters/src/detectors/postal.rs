//! Postal codes, only next to a postal word (`ZIP`, `postcode`, `PLZ`, `code postal`, `CAP`)
//! or after a US state abbreviation (`CA 94107`): five-digit codes alone are too common.

use super::B;
use crate::engine::util::{Keywords, before};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Postal code detector.
pub struct PostalCode;

static KEYWORDS: Keywords = Keywords::new(&[
    "zip",
    "postal",
    "postcode",
    "post code",
    "plz",
    "code postal",
    "cp ",
    "c.p.",
    "cap ",
    "postleitzahl",
    "código postal",
    "codice postale",
]);

const STATES: &str = "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC";

impl Detector for PostalCode {
    fn name(&self) -> &'static str {
        "postal_code"
    }
    fn types(&self) -> &'static [&'static str] {
        &["postal_code"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![
            // US ZIP(+4), DE/FR/ES/IT five digits, NL 1234 AB, UK and Canadian codes
            Pattern::regex(
                ViewKind::Raw,
                format!(
                    r"{B}(?:[0-9]{{5}}(?:-[0-9]{{4}})?|[1-9][0-9]{{3}} ?[A-Z]{{2}}|[A-Z]{{1,2}}[0-9][A-Z0-9]? ?[0-9][A-Z]{{2}}|[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]){B}"
                ),
                0,
                "postal_code",
            ),
            Pattern::regex(
                ViewKind::Raw,
                format!(r"{B}(?:{STATES}) ([0-9]{{5}}(?:-[0-9]{{4}})?){B}"),
                1,
                "postal_code",
            ),
        ]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        if hit.tag == 1 {
            if let Some(c) = hit
                .regex
                .and_then(|r| r.captures_at(hit.text, hit.start))
                .and_then(|c| c.get(1))
            {
                out.push(hit.finding(
                    "postal_code",
                    c.start(),
                    c.end(),
                    0.85,
                    "pii.postal.us_state",
                ));
            }
            return;
        }
        if KEYWORDS.in_text(before(hit.raw, hit.start, 24)) {
            out.push(hit.whole("postal_code", 0.9, "pii.postal.context"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(PostalCode), "postal_code", t)
    }

    #[test]
    fn in_context_only() {
        assert_eq!(f("ZIP 94107"), ["94107"]);
        assert_eq!(f("postcode SW1A 1AA"), ["SW1A 1AA"]);
        assert_eq!(f("PLZ: 10115 Berlin"), ["10115"]);
        assert_eq!(f("San Francisco, CA 94107-1234"), ["94107-1234"]);
        assert_eq!(f("postcode 1012 AB Amsterdam"), ["1012 AB"]);
        assert!(f("we sold 94107 units").is_empty());
    }
}
