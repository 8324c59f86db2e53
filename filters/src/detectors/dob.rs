//! Dates of birth: a valid date (numeric or with a month name, several languages) that follows
//! a birth word (`born`, `DOB`, `date of birth`, `geboren`, `né le`, ...) within 48 bytes.

use super::B;
use crate::engine::util::{Keywords, before};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Date-of-birth detector.
pub struct DateOfBirth;

static KEYWORDS: Keywords = Keywords::new(&[
    "born",
    "birth",
    "dob",
    "d.o.b",
    "b-day",
    "bday",
    "geboren",
    "geburtsdatum",
    "geburtstag",
    "né le",
    "née le",
    "né(e)",
    "naissance",
    "nacido",
    "nacida",
    "nacimiento",
    "nato il",
    "nata il",
    "nascita",
    "geboortedatum",
    "geboren op",
    "age:",
    "geb.",
    "geb ",
    "nací",
    "naci ",
    "je suis né",
    "je suis née",
    "sono nato",
    "sono nata",
]);

const MONTHS: &str = "jan(?:uary|uar|vier)?|feb(?:ruary|ruar)?|févr(?:ier)?|fevrier|mar(?:ch)?|märz|mars|apr(?:il)?|avril|may|mai|juin|jun(?:e|i)?|jul(?:y|i)?|juillet|aug(?:ust)?|août|sep(?:t|tember)?|okt(?:ober)?|oct(?:ober|obre)?|nov(?:ember|embre)?|de[cz](?:ember)?|décembre|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|januari|februari|maart|juni|juli|augustus|oktober";

impl Detector for DateOfBirth {
    fn name(&self) -> &'static str {
        "date_of_birth"
    }
    fn types(&self) -> &'static [&'static str] {
        &["date_of_birth"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        vec![
            Pattern::regex(
                ViewKind::Raw,
                format!(
                    r"{B}(?:[0-9]{{4}}[-/.][0-9]{{1,2}}[-/.][0-9]{{1,2}}|[0-9]{{1,2}}[-/.][0-9]{{1,2}}[-/.](?:[0-9]{{4}}|[0-9]{{2}})){B}"
                ),
                0,
                "date_of_birth",
            ),
            Pattern::regex(
                ViewKind::Raw,
                format!(
                    r"(?i){B}(?:(?:{MONTHS})\.? [0-9]{{1,2}}(?:st|nd|rd|th)?,? [0-9]{{4}}|[0-9]{{1,2}}(?:st|nd|rd|th|er|\.)? (?:of |de )?(?:{MONTHS})\.?,? (?:de )?[0-9]{{4}}){B}"
                ),
                1,
                "date_of_birth",
            ),
        ]
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        if !KEYWORDS.in_text(before(hit.raw, hit.start, 48)) {
            return;
        }
        let m = hit.as_str();
        if hit.tag == 0 {
            let parts: Vec<u32> = m
                .split(['-', '/', '.'])
                .filter_map(|p| p.parse().ok())
                .collect();
            if parts.len() != 3 {
                return;
            }
            // year first only when the first part has four digits (`8/28/1958` has a separator at
            // byte 4 too)
            let year_first = m.bytes().take_while(u8::is_ascii_digit).count() == 4;
            let ok = if year_first {
                plausible(parts[0], parts[1], parts[2])
            } else {
                // d/m/y or m/d/y
                let y = if parts[2] < 100 {
                    parts[2] + 1900
                } else {
                    parts[2]
                };
                plausible(y, parts[1], parts[0]) || plausible(y, parts[0], parts[1])
            };
            if !ok {
                return;
            }
        } else {
            let year = m
                .rsplit(|c: char| !c.is_ascii_digit())
                .find(|s| s.len() == 4)
                .and_then(|s| s.parse::<u32>().ok());
            if !year.is_some_and(|y| (1900..=2026).contains(&y)) {
                return;
            }
        }
        out.push(hit.whole("date_of_birth", 0.9, "pii.dob.context"));
    }
}

fn plausible(y: u32, m: u32, d: u32) -> bool {
    (1900..=2026).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;
    use proptest::prelude::*;

    fn f(t: &str) -> Vec<&str> {
        found(Box::new(DateOfBirth), "date_of_birth", t)
    }

    #[test]
    fn in_context_only() {
        assert_eq!(f("Patient born on 14/03/1987."), ["14/03/1987"]);
        assert_eq!(f("DOB: 1987-03-14"), ["1987-03-14"]);
        assert_eq!(f("date of birth March 14, 1987"), ["March 14, 1987"]);
        assert_eq!(f("geboren am 14. März 1987"), ["14. März 1987"]);
        assert_eq!(f("Meredith Jimenez (d.o.b. 8/28/1958)"), ["8/28/1958"]);
        assert_eq!(f("birthdate=6/25/2003"), ["6/25/2003"]);
        assert_eq!(
            f("Nací el 22 de octubre de 1995"),
            ["22 de octubre de 1995"]
        );
        assert_eq!(f("geb. am 02.05.1961"), ["02.05.1961"]);
        assert!(f("invoice dated 14/03/1987").is_empty());
        assert!(f("born on 2024-13-45").is_empty());
        assert!(f("meeting on 2024-03-14 10:00").is_empty());
    }

    proptest! {
        #[test]
        fn iso_dates_after_dob_are_found(y in 1900u32..2020, m in 1u32..13, d in 1u32..29) {
            let date = format!("{y}-{m:02}-{d:02}");
            let t = format!("DOB {date}");
            prop_assert_eq!(f(&t), vec![date.as_str()]);
        }
    }
}
