//! National identifiers with their check digits, and identifiers that only a context word tells
//! apart from any other number.
//!
//! Self-checking formats with letters count anywhere: UK National Insurance number (prefix
//! rules), Spanish DNI/NIE (mod-23 letter), Italian codice fiscale (odd/even check letter,
//! omocodia digits). Digit-only formats count only after a context word within
//! [`CONTEXT_BYTES`] before them, because their checksums pass 1 random number in 10 or 11:
//! NHS number (mod 11), Dutch BSN (11-proof), German Steuer-ID (digit-frequency rule and ISO
//! 7064 MOD 11,10), French NIR (mod-97 key); and those without a checksum: US passport and
//! driver's licence numbers, medical record numbers.

use super::B;
use crate::engine::util::{Keywords, before, glued};
use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// National identifier detector.
pub struct NationalId;

/// Bytes before a digit-only identifier searched for its context word.
pub const CONTEXT_BYTES: usize = 48;

static NHS_WORDS: Keywords = Keywords::new(&["nhs", "national health service"]);
static BSN_WORDS: Keywords = Keywords::new(&[
    "bsn",
    "burgerservicenummer",
    "burger service nummer",
    "sofinummer",
    "sofi-nummer",
    "citizen service number",
]);
static STEUER_WORDS: Keywords = Keywords::new(&[
    "steuer-id",
    "steuerid",
    "steuer id",
    "steueridentifikationsnummer",
    "steuerliche identifikationsnummer",
    "identifikationsnummer",
    "idnr",
    "tax id",
    "tax identification",
    "tin",
]);
static NIR_WORDS: Keywords = Keywords::new(&[
    "nir",
    "insee",
    "sécurité sociale",
    "securite sociale",
    "sécu",
    "secu",
    "carte vitale",
    "social security",
]);
static PASSPORT_WORDS: Keywords = Keywords::new(&["passport"]);
static LICENCE_WORDS: Keywords = Keywords::new(&[
    "driver's license",
    "drivers license",
    "driver license",
    "driver's licence",
    "drivers licence",
    "driving licence",
    "driving license",
    "dl#",
    "dl no",
    "dl number",
    "license no",
    "license number",
    "licence number",
]);
static MRN_WORDS: Keywords = Keywords::new(&[
    "mrn",
    "medical record",
    "patient id",
    "patient number",
    "patient no",
    "chart number",
    "hospital number",
]);

/// UK National Insurance number: two prefix letters (not D, F, I, Q, U, V; the second not O;
/// not BG, GB, KN, NK, NT, TN, ZZ), six digits, suffix A-D.
pub fn valid_nino(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if c.len() != 9 {
        return false;
    }
    let bad = |b: u8| b"DFIQUV".contains(&b);
    let prefix = [c[0], c[1]];
    c[0].is_ascii_uppercase()
        && c[1].is_ascii_uppercase()
        && !bad(c[0])
        && !bad(c[1])
        && c[1] != b'O'
        && ![b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"].contains(&&prefix)
        && c[2..8].iter().all(u8::is_ascii_digit)
        && (b'A'..=b'D').contains(&c[8])
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spanish DNI (`12345678Z`) or NIE (`X1234567L`): the letter is the number mod 23.
pub fn valid_dni(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|&b| b != b'-' && b != b' ').collect();
    if c.len() != 9 {
        return false;
    }
    let lead = match c[0] {
        b'X' => Some(0),
        b'Y' => Some(1),
        b'Z' => Some(2),
        _ => None,
    };
    let digits = match lead {
        Some(_) => &c[1..8],
        None => &c[0..8],
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = digits.iter().fold(lead.unwrap_or(0) as u64, |a, d| {
        a * 10 + u64::from(d - b'0')
    });
    DNI_LETTERS[(n % 23) as usize] == c[8]
}

/// Italian codice fiscale: the 16th letter checks the first 15 (odd positions by one table,
/// even by another); omocodia letters stand for digits.
pub fn valid_fiscal_code(s: &str) -> bool {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let c = s.as_bytes();
    if c.len() != 16 || !c.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    // a digit counts as the letter of the same rank in both tables
    let rank = |b: u8| -> Option<usize> {
        match b {
            b'0'..=b'9' => Some(usize::from(b - b'0')),
            b'A'..=b'Z' => Some(usize::from(b - b'A')),
            _ => None,
        }
    };
    let mut sum = 0u32;
    for (i, &b) in c[..15].iter().enumerate() {
        let Some(r) = rank(b) else { return false };
        // 1-based odd positions use the odd table
        sum += if i % 2 == 0 { ODD[r] } else { r as u32 };
    }
    c[15] == b'A' + (sum % 26) as u8
}

fn digits_of(s: &str) -> Vec<u32> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect()
}

/// NHS number: ten digits, the last the mod-11 check of the first nine (weights 10..2).
pub fn valid_nhs(s: &str) -> bool {
    let d = digits_of(s);
    if d.len() != 10 {
        return false;
    }
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
    match 11 - sum % 11 {
        11 => d[9] == 0,
        10 => false,
        c => d[9] == c,
    }
}

/// Dutch BSN: nine digits passing the 11-proof (weights 9..2, the last digit −1).
pub fn valid_bsn(s: &str) -> bool {
    let d = digits_of(s);
    if d.len() != 9 || d.iter().all(|&x| x == 0) {
        return false;
    }
    let sum: i64 = d[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(x, w)| i64::from(*x) * w)
        .sum::<i64>()
        - i64::from(d[8]);
    sum % 11 == 0
}

/// German Steuer-ID: eleven digits, no leading zero; in the first ten exactly one digit occurs
/// two or three times and the rest at most once; the last is the ISO 7064 MOD 11,10 check.
pub fn valid_steuer_id(s: &str) -> bool {
    let d = digits_of(s);
    if d.len() != 11 || d[0] == 0 {
        return false;
    }
    let mut counts = [0u8; 10];
    for &x in &d[..10] {
        counts[x as usize] += 1;
    }
    let repeated = counts.iter().filter(|&&n| n >= 2).count();
    if repeated != 1 || counts.iter().any(|&n| n > 3) {
        return false;
    }
    let mut product = 10u32;
    for &x in &d[..10] {
        let mut sum = (x + product) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (sum * 2) % 11;
    }
    let check = (11 - product) % 10;
    d[10] == check
}

/// French NIR (numéro de sécurité sociale): sex, year, month, department (2A/2B for Corsica),
/// commune, order, then a key = 97 − (the 13-digit number mod 97).
pub fn valid_nir(s: &str) -> bool {
    let c: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if c.len() != 15 {
        return false;
    }
    // Corsica: 2A counts as 19, 2B as 18 in the key (the same as reading them as 20 and
    // subtracting 1,000,000 or 2,000,000)
    let body = match &c[5..7] {
        "2A" => format!("{}19{}", &c[..5], &c[7..13]),
        "2B" => format!("{}18{}", &c[..5], &c[7..13]),
        _ => c[..13].to_string(),
    };
    if !body.bytes().all(|b| b.is_ascii_digit()) || !c[13..].bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(n) = body.parse::<u64>() else {
        return false;
    };
    let Ok(key) = c[13..].parse::<u64>() else {
        return false;
    };
    let month: u32 = c[3..5].parse().unwrap_or(0);
    matches!(c.as_bytes()[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8')
        && ((1..=12).contains(&month) || month >= 20)
        && key == 97 - n % 97
}

/// Digits (and omocodia letters) of a codice fiscale's date and place fields.
const OMO: &str = "[0-9LMNPQRSTUV]";

/// One kind of identifier: its pattern, finding type and rule, its check, and the words one of
/// which must stand within [`CONTEXT_BYTES`] before it (`None`: it counts anywhere).
struct Kind {
    pattern: String,
    ty: &'static str,
    rule: &'static str,
    valid: fn(&str) -> bool,
    context: Option<&'static Keywords>,
}

/// Every kind, in tag order (a pattern's tag is its index here).
fn kinds() -> Vec<Kind> {
    let k = |pattern: String, ty, rule, valid, context| Kind {
        pattern,
        ty,
        rule,
        valid,
        context,
    };
    let any: fn(&str) -> bool = |_| true;
    vec![
        k(
            format!(r"{B}[A-Z]{{2}} ?[0-9]{{2}} ?[0-9]{{2}} ?[0-9]{{2}} ?[A-D]{B}"),
            "uk_nino",
            "pii.national_id.uk_nino",
            valid_nino,
            None,
        ),
        k(
            format!(r"{B}[0-9]{{8}}-?[A-Z]{B}"),
            "es_dni",
            "pii.national_id.es_dni",
            valid_dni,
            None,
        ),
        k(
            format!(r"{B}[XYZ]-?[0-9]{{7}}-?[A-Z]{B}"),
            "es_dni",
            "pii.national_id.es_dni",
            valid_dni,
            None,
        ),
        k(
            format!(r"{B}[A-Z]{{6}}{OMO}{{2}}[ABCDEHLMPRST]{OMO}{{2}}[A-Z]{OMO}{{3}}[A-Z]{B}"),
            "it_fiscal_code",
            "pii.national_id.it_fiscal_code",
            valid_fiscal_code,
            None,
        ),
        k(
            format!(r"{B}[0-9]{{3}}[ -]?[0-9]{{3}}[ -]?[0-9]{{4}}{B}"),
            "nhs_number",
            "pii.national_id.nhs_number",
            valid_nhs,
            Some(&NHS_WORDS),
        ),
        k(
            format!(r"{B}[0-9]{{4}}[ .]?[0-9]{{2}}[ .]?[0-9]{{3}}{B}"),
            "nl_bsn",
            "pii.national_id.nl_bsn",
            valid_bsn,
            Some(&BSN_WORDS),
        ),
        k(
            format!(r"{B}[0-9]{{2}} ?[0-9]{{3}} ?[0-9]{{3}} ?[0-9]{{3}}{B}"),
            "de_tax_id",
            "pii.national_id.de_tax_id",
            valid_steuer_id,
            Some(&STEUER_WORDS),
        ),
        k(
            format!(
                r"(?i){B}[1-478] ?[0-9]{{2}} ?[0-9]{{2}} ?(?:[0-9]{{2}}|2[AB]) ?[0-9]{{3}} ?[0-9]{{3}} ?[0-9]{{2}}{B}"
            ),
            "fr_nir",
            "pii.national_id.fr_nir",
            valid_nir,
            Some(&NIR_WORDS),
        ),
        k(
            format!(r"{B}[A-Z]?[0-9]{{8,9}}{B}"),
            "us_passport",
            "pii.national_id.us_passport",
            any,
            Some(&PASSPORT_WORDS),
        ),
        k(
            format!(r"{B}[A-Z]{{0,2}}[0-9]{{5,13}}{B}"),
            "us_driver_license",
            "pii.national_id.us_driver_license",
            any,
            Some(&LICENCE_WORDS),
        ),
        k(
            format!(r"{B}[A-Z]{{0,3}}-?[0-9]{{5,12}}{B}"),
            "medical_record_number",
            "pii.national_id.medical_record_number",
            any,
            Some(&MRN_WORDS),
        ),
    ]
}

static KINDS: std::sync::LazyLock<Vec<Kind>> = std::sync::LazyLock::new(kinds);

impl Detector for NationalId {
    fn name(&self) -> &'static str {
        "national_id"
    }
    fn types(&self) -> &'static [&'static str] {
        &[
            "uk_nino",
            "es_dni",
            "it_fiscal_code",
            "nhs_number",
            "nl_bsn",
            "de_tax_id",
            "fr_nir",
            "us_passport",
            "us_driver_license",
            "medical_record_number",
        ]
    }
    fn patterns(&self) -> Vec<Pattern> {
        KINDS
            .iter()
            .enumerate()
            .map(|(tag, k)| Pattern::regex(ViewKind::Raw, k.pattern.clone(), tag as u32, k.ty))
            .collect()
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        let Some(k) = KINDS.get(hit.tag as usize) else {
            return;
        };
        if glued(hit.raw, hit.start, hit.end) {
            return;
        }
        let in_context = || {
            k.context
                .is_none_or(|w| w.in_text(before(hit.raw, hit.start, CONTEXT_BYTES)))
        };
        if in_context() && (k.valid)(hit.as_str()) {
            out.push(hit.whole(k.ty, 1.0, k.rule));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One engine for every test (building it per text would cost most of the test time).
    static ENGINE: std::sync::LazyLock<crate::engine::Engine> = std::sync::LazyLock::new(|| {
        crate::engine::Engine::new(vec![Box::new(NationalId)], &|_| true).unwrap()
    });

    fn f(t: &str) -> Vec<(&'static str, &str)> {
        ENGINE
            .scan(t)
            .into_iter()
            .map(|x| (x.ty, &t[x.start..x.end]))
            .collect()
    }

    /// The check digit or letter each generator appends.
    fn nhs_of(d9: &[u32]) -> Option<u32> {
        let sum: u32 = d9.iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
        match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            c => Some(c),
        }
    }

    fn join(d: &[u32]) -> String {
        d.iter().map(|x| char::from(b'0' + *x as u8)).collect()
    }

    #[test]
    fn every_kind_reports_a_type_the_detector_declares() {
        for k in KINDS.iter() {
            assert!(NationalId.types().contains(&k.ty), "{}", k.ty);
            assert_eq!(k.rule, format!("pii.national_id.{}", k.ty));
        }
    }

    #[test]
    fn known_valid_identifiers_in_context_are_found() {
        for (text, ty, value) in [
            ("My NI number is AB 12 34 56 C.", "uk_nino", "AB 12 34 56 C"),
            ("NINO JG103759A on file", "uk_nino", "JG103759A"),
            ("DNI 12345678Z", "es_dni", "12345678Z"),
            ("mi NIE es X1234567L", "es_dni", "X1234567L"),
            ("CF: RSSMRA85T10A562S", "it_fiscal_code", "RSSMRA85T10A562S"),
            ("NHS number 943 476 5919", "nhs_number", "943 476 5919"),
            ("BSN: 111222333", "nl_bsn", "111222333"),
            ("Steuer-ID 86095742719", "de_tax_id", "86095742719"),
            (
                "numéro de sécu 1 85 05 78 006 084 91",
                "fr_nir",
                "1 85 05 78 006 084 91",
            ),
            ("passport number 123456789", "us_passport", "123456789"),
            ("driver's license D1234567", "us_driver_license", "D1234567"),
            ("MRN 00123456", "medical_record_number", "00123456"),
        ] {
            let got = f(text);
            assert!(got.contains(&(ty, value)), "{text}: {got:?}");
        }
    }

    #[test]
    fn wrong_check_digits_and_letters_are_not_found() {
        for text in [
            "NINO AB 12 34 56 E",   // suffix beyond D
            "NINO GB123456A",       // prefix never issued
            "DNI 12345678A",        // wrong letter
            "CF: RSSMRA85T10A562X", // wrong check letter
            "NHS number 943 476 5918",
            "BSN: 111222334",
            "Steuer-ID 86095742718",
            "sécu 1 85 05 78 006 084 92",
        ] {
            assert!(f(text).is_empty(), "{text}: {:?}", f(text));
        }
    }

    #[test]
    fn digit_only_identifiers_need_their_context_word() {
        for text in [
            "order 943 476 5919 shipped",
            "ref 111222333",
            "invoice 86095742719",
            "call 123456789 now",
            "code D1234567",
            "1 85 05 78 006 084 91",
        ] {
            assert!(f(text).is_empty(), "{text}: {:?}", f(text));
        }
    }

    #[test]
    fn corsica_departments_count_in_the_nir_key() {
        // 2A is 19 and 2B is 18 in the key computation (INSEE); the same key as reading 2A as
        // 20 and subtracting 1,000,000. Faker's fr_FR NIRs (benches/entities/run_ids.sh) found
        // that an earlier version did both.
        for (dept, as_digits) in [("2A", "19"), ("2B", "18")] {
            let n: u64 = format!("18505{as_digits}006084").parse().unwrap();
            let key = 97 - n % 97;
            let via_20 = 97
                - ("1850520006084".parse::<u64>().unwrap()
                    - if dept == "2A" { 1_000_000 } else { 2_000_000 })
                    % 97;
            assert_eq!(key, via_20);
            for text in [
                format!("NIR 1 85 05 {dept} 006 084 {key:02}"),
                format!("NIR 18505{dept}006084{key:02}"),
            ] {
                assert_eq!(f(&text).len(), 1, "{text}");
            }
            let wrong = format!("NIR 18505{dept}006084{:02}", (key % 97) + 1);
            assert!(f(&wrong).is_empty(), "{wrong}");
        }
        // a known Corsican NIR from Faker's fr_FR provider
        assert_eq!(f("Numéro INSEE 133102A00403655").len(), 1);
    }

    proptest! {
        /// Recall with the checksum: every valid NHS number, BSN and Steuer-ID after its
        /// context word is found.
        #[test]
        fn every_valid_digit_identifier_in_context_is_found(
            d9 in proptest::collection::vec(0u32..10, 9),
            sep in proptest::bool::ANY,
        ) {
            if let Some(c) = nhs_of(&d9) {
                let mut d = d9.clone();
                d.push(c);
                let s = join(&d);
                let s = if sep { format!("{} {} {}", &s[..3], &s[3..6], &s[6..]) } else { s };
                let text = format!("NHS no. {s}.");
                prop_assert!(f(&text).iter().any(|(t, v)| *t == "nhs_number" && *v == s), "{}", text);
            }
            // BSN: fix the last digit so the 11-proof holds
            let sum: u32 = d9[..8].iter().zip((2..=9).rev()).map(|(x, w)| x * w).sum();
            let last = sum % 11;
            if last < 10 && !(d9[..8].iter().all(|&x| x == 0) && last == 0) {
                let mut d = d9[..8].to_vec();
                d.push(last);
                let s = join(&d);
                let text = format!("BSN {s}");
                prop_assert!(f(&text).iter().any(|(t, v)| *t == "nl_bsn" && *v == s), "{}", text);
            }
        }

        /// No false positives on random digit strings of each identifier's length without a
        /// context word.
        #[test]
        fn random_digit_strings_without_context_are_never_identifiers(
            digits in "[0-9]{9,15}",
        ) {
            let text = format!("reference {digits} attached");
            prop_assert!(f(&text).is_empty(), "{}: {:?}", text, f(&text));
        }

        #[test]
        fn dni_letters_round_trip(n in 0u64..100_000_000) {
            let s = format!("{n:08}{}", char::from(DNI_LETTERS[(n % 23) as usize]));
            prop_assert!(valid_dni(&s));
            let wrong = format!("{n:08}{}", char::from(DNI_LETTERS[((n + 1) % 23) as usize]));
            prop_assert!(!valid_dni(&wrong));
        }
    }

    /// A seeded xorshift: the same candidates on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn digits(&mut self, n: usize) -> String {
            (0..n)
                .map(|_| char::from(b'0' + (self.next() % 10) as u8))
                .collect()
        }
        fn letter(&mut self, from: &[u8]) -> char {
            char::from(from[(self.next() % from.len() as u64) as usize])
        }
    }

    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    /// Recall and false positives per checksummed type, on 4,000 seeded candidates of each
    /// type's shape (40,000 for the Steuer-ID) after its context word: every candidate whose check digits or letters hold
    /// is found (as that type), and none whose check fails is (0 false positives on random
    /// strings of the same length). Candidates with independently computed check digits (DNI
    /// letter, NHS mod 11, BSN 11-proof, NIR key) must all be found too. Run with
    /// `--nocapture` for the counts (recorded in benches/RESULTS.md).
    #[test]
    fn checksummed_identifiers_recall_and_false_positives() {
        type Shape = fn(&mut Rng) -> String;
        // (the Steuer-ID's digit rule and check digit pass about 1 random string in 270)
        let shapes: [(&str, &str, Shape); 8] = [
            ("uk_nino", "NI number", |r| {
                format!(
                    "{}{}{}{}",
                    r.letter(UPPER),
                    r.letter(UPPER),
                    r.digits(6),
                    r.letter(b"ABCDEFG")
                )
            }),
            ("es_dni", "DNI", |r| {
                format!("{}{}", r.digits(8), r.letter(UPPER))
            }),
            ("es_dni", "NIE", |r| {
                format!("{}{}{}", r.letter(b"XYZ"), r.digits(7), r.letter(UPPER))
            }),
            ("it_fiscal_code", "codice fiscale", |r| {
                let name: String = (0..6).map(|_| r.letter(UPPER)).collect();
                let year = r.digits(2);
                let month = r.letter(b"ABCDEHLMPRST");
                let day = 1 + r.next() % 71;
                let place = format!("{}{}", r.letter(UPPER), r.digits(3));
                format!("{name}{year}{month}{day:02}{place}{}", r.letter(UPPER))
            }),
            ("nhs_number", "NHS number", |r| r.digits(10)),
            ("nl_bsn", "BSN", |r| r.digits(9)),
            ("de_tax_id", "Steuer-ID", |r| {
                format!("{}{}", 1 + r.next() % 9, r.digits(10))
            }),
            ("fr_nir", "NIR", |r| {
                format!(
                    "{}{}{:02}{}{}",
                    1 + r.next() % 2,
                    r.digits(2),
                    1 + r.next() % 12,
                    r.digits(8),
                    r.digits(2)
                )
            }),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for (ty, word, shape) in shapes {
            let (mut valid, mut found, mut invalid, mut false_pos) = (0, 0, 0, 0);
            let tries = if ty == "de_tax_id" { 40_000 } else { 4000 };
            for _ in 0..tries {
                let id = shape(&mut rng);
                let text = format!("My {word} is {id}, thanks.");
                let hit = f(&text).iter().any(|(t, v)| *t == ty && *v == id);
                let k = KINDS.iter().find(|k| k.ty == ty).map(|k| k.valid);
                if k.is_some_and(|v| v(&id)) {
                    valid += 1;
                    found += usize::from(hit);
                } else {
                    invalid += 1;
                    false_pos += usize::from(hit);
                }
            }
            println!(
                "{ty:<16} ({word}): {found}/{valid} valid found, {false_pos}/{invalid} invalid found"
            );
            assert!(valid >= 20, "{ty}: only {valid} valid candidates");
            assert_eq!(found, valid, "{ty}: a valid identifier was missed");
            assert_eq!(
                false_pos, 0,
                "{ty}: an identifier with a failed check was found"
            );
        }
        // independently computed check digits
        for _ in 0..2000 {
            let n = rng.next() % 100_000_000;
            let dni = format!("{n:08}{}", char::from(DNI_LETTERS[(n % 23) as usize]));
            assert!(
                f(&format!("DNI {dni}")).contains(&("es_dni", dni.as_str())),
                "{dni}"
            );
            let d9: Vec<u32> = (0..9).map(|_| (rng.next() % 10) as u32).collect();
            if let Some(c) = nhs_of(&d9) {
                let s = format!("{}{c}", join(&d9));
                assert!(
                    f(&format!("NHS number {s}")).contains(&("nhs_number", s.as_str())),
                    "{s}"
                );
            }
            let sum: u32 = d9[..8].iter().zip((2..=9).rev()).map(|(x, w)| x * w).sum();
            if sum % 11 < 10 && sum > 0 {
                let s = format!("{}{}", join(&d9[..8]), sum % 11);
                assert!(
                    f(&format!("BSN {s}")).contains(&("nl_bsn", s.as_str())),
                    "{s}"
                );
            }
            let body = format!(
                "{}{}{:02}{}",
                1 + rng.next() % 2,
                rng.digits(2),
                1 + rng.next() % 12,
                rng.digits(8)
            );
            let key = 97 - body.parse::<u64>().unwrap() % 97;
            let s = format!("{body}{key:02}");
            assert!(
                f(&format!("NIR {s}")).contains(&("fr_nir", s.as_str())),
                "{s}"
            );
        }
    }
}
