//! The built-in detectors. Each file is one detector; [`builtin`] registers them.

use crate::engine::Detector;

pub mod canary;
pub mod card;
pub mod dob;
pub mod email;
pub mod exfil;
pub mod html;
pub mod iban;
pub mod injection;
pub mod ip;
pub mod national_id;
pub mod phone;
pub mod postal;
pub mod secrets;
pub mod ssn;
pub mod toxicity;

/// `(?-u:\b)`: an ASCII word boundary. Unicode `\b` would make the lazy DFA give up on
/// non-ASCII text, so every raw-view pattern uses this one.
pub const B: &str = r"(?-u:\b)";

/// Settings a policy passes to the detectors.
#[derive(Debug, Clone, Default)]
pub struct DetectorConfig {
    /// System-prompt canary string whose appearance in an answer is a leak.
    pub canary: Option<String>,
    /// Hosts links and images may point at (`example.com`, `*.example.com`).
    pub allowed_link_hosts: Vec<String>,
    /// Toxicity word lists: (language, entries).
    pub lexicons: Vec<(String, Vec<String>)>,
    /// Most bytes of encoded payload decoded per text.
    pub max_decode_bytes: usize,
}

/// Every built-in detector, configured. To add one: a file in this folder, a `pub mod` line
/// above and one line here.
pub fn builtin(cfg: &DetectorConfig) -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(email::Email),
        Box::new(phone::Phone),
        Box::new(card::Card),
        Box::new(iban::Iban),
        Box::new(ssn::Ssn),
        Box::new(national_id::NationalId),
        Box::new(ip::Ip),
        Box::new(dob::DateOfBirth),
        Box::new(postal::PostalCode),
        Box::new(secrets::Secrets),
        Box::new(injection::Injection::new(cfg.max_decode_bytes)),
        Box::new(toxicity::Toxicity::new(&cfg.lexicons)),
        Box::new(exfil::Exfil::new(&cfg.allowed_link_hosts)),
        Box::new(html::Html),
        Box::new(canary::Canary::new(cfg.canary.clone())),
    ]
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::engine::Engine;
    use crate::finding::Finding;

    /// Scan with one detector, all of its types enabled.
    pub fn scan(d: Box<dyn Detector>, text: &str) -> Vec<Finding> {
        let e = Engine::new(vec![d], &|_| true).unwrap();
        e.scan(text)
    }

    /// The matched substrings of type `ty`.
    pub fn found<'a>(d: Box<dyn Detector>, ty: &str, text: &'a str) -> Vec<&'a str> {
        scan(d, text)
            .into_iter()
            .filter(|f| f.ty == ty)
            .map(|f| &text[f.start..f.end])
            .collect()
    }
}
