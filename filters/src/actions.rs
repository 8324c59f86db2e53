//! Applying actions to text: redaction, keyed pseudonyms, and reversible placeholders kept in a
//! per-request [`Vault`] and restored into answers by a [`Restorer`] (which also works on a
//! stream, holding back a placeholder split across tokens).

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::finding::{Action, type_info};

type HmacSha256 = Hmac<Sha256>;

/// Keyed pseudonyms: `HMAC-SHA256(tenant_key, type ‖ 0 ‖ value)`, where the tenant key is
/// `HMAC-SHA256(master_key, "portcullis/pseudonym/" ‖ tenant)`. The same value gives the same
/// token within a tenant and different tokens across tenants; without the key it cannot be
/// reversed or confirmed.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: [u8; 32],
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer { key: <hidden> }")
    }
}

impl Pseudonymizer {
    /// Derive the tenant's key from the master key.
    pub fn new(master_key: &[u8], tenant: &str) -> Pseudonymizer {
        let mut key = [0u8; 32];
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
        if let Ok(mut mac) = HmacSha256::new_from_slice(master_key) {
            mac.update(b"portcullis/pseudonym/");
            mac.update(tenant.as_bytes());
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        Pseudonymizer { key }
    }

    /// The token for `value` of type `ty`: 12 hex digits (48 bits).
    pub fn token(&self, ty: &str, value: &str) -> String {
        let mut out = String::with_capacity(12);
        if let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) {
            mac.update(ty.as_bytes());
            mac.update(&[0]);
            mac.update(value.as_bytes());
            let tag = mac.finalize().into_bytes();
            out = hex::encode(&tag[..6]);
        }
        out
    }
}

/// A request's placeholders and the originals they stand for. It holds raw personal data, so
/// its `Debug` shows only counts; it lives as long as the request and is never logged.
#[derive(Default, Clone)]
pub struct Vault {
    by_placeholder: HashMap<String, (&'static str, String)>,
    by_value: HashMap<(&'static str, String), String>,
    counters: HashMap<&'static str, usize>,
    longest: usize,
    outcomes: Vec<RestoreOutcome>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault {{ {} placeholders }}", self.by_placeholder.len())
    }
}

/// What became of placeholders of one type met in an answer: put back, or replaced as the
/// output policy says (counts only, for the audit record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// Finding type of the placeholder.
    pub ty: &'static str,
    /// `restore`, or the output action applied instead (`redact`, `pseudonymize`, `block`).
    pub how: &'static str,
    /// How many placeholders.
    pub count: u32,
}

impl Vault {
    /// The placeholder for `value` (the same value gets the same placeholder).
    pub fn placeholder(&mut self, ty: &'static str, value: &str) -> String {
        if let Some(p) = self.by_value.get(&(ty, value.to_string())) {
            return p.clone();
        }
        let label = type_info(ty).map_or("PII", |t| t.label);
        let n = self.counters.entry(ty).or_insert(0);
        *n += 1;
        let p = format!("<{label}_{n}>");
        self.longest = self.longest.max(p.len());
        self.by_placeholder
            .insert(p.clone(), (ty, value.to_string()));
        self.by_value.insert((ty, value.to_string()), p.clone());
        p
    }

    /// Number of placeholders.
    pub fn len(&self) -> usize {
        self.by_placeholder.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// The original for a placeholder.
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder
            .get(placeholder)
            .map(|(_, v)| v.as_str())
    }

    /// The type and original of a placeholder.
    pub fn entry(&self, placeholder: &str) -> Option<(&'static str, &str)> {
        self.by_placeholder
            .get(placeholder)
            .map(|(t, v)| (*t, v.as_str()))
    }

    /// Put every original back into a whole text (no output policy applied: see
    /// [`Restorer::push_with`]).
    pub fn restore(&self, text: &str) -> String {
        let mut r = Restorer::default();
        let mut out = r.push(self, text);
        out.push_str(&r.finish());
        out
    }

    /// What became of the placeholders met in answers so far.
    pub fn outcomes(&self) -> &[RestoreOutcome] {
        &self.outcomes
    }

    fn note(&mut self, ty: &'static str, how: &'static str) {
        match self
            .outcomes
            .iter_mut()
            .find(|o| o.ty == ty && o.how == how)
        {
            Some(o) => o.count += 1,
            None => self.outcomes.push(RestoreOutcome { ty, how, count: 1 }),
        }
    }
}

/// How a placeholder met in an answer is put back.
pub struct RestoreRule<'a> {
    /// The output action for a finding type (`None`: always put the original back). A type
    /// the output policy redacts is redacted, one it pseudonymizes is pseudonymized, one it
    /// blocks stops the answer: the output policy applies to restored values too.
    pub output: Option<&'a crate::policy::Side>,
    /// The text is inside a JSON string (tool-call arguments): escape the original so it
    /// cannot close the string and inject members.
    pub json_escape: bool,
    /// For `pseudonymize`.
    pub pseudo: &'a Pseudonymizer,
}

/// A placeholder of a type the output policy blocks was about to be put back into the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreBlocked(pub &'static str);

impl RestoreRule<'_> {
    /// Write what `ph` becomes; returns the outcome to count (`None`: not a placeholder of ours).
    fn apply(
        &self,
        vault: &Vault,
        ph: &str,
        out: &mut String,
    ) -> Result<Option<(&'static str, &'static str)>, RestoreBlocked> {
        let Some((ty, orig)) = vault.entry(ph) else {
            out.push_str(ph);
            return Ok(None);
        };
        let action = self.output.map_or(Action::Allow, |side| side.action(ty));
        let how = match action {
            Action::Allow | Action::Monitor | Action::Placeholder => {
                if self.json_escape {
                    let quoted = serde_json::to_string(orig).unwrap_or_default();
                    out.push_str(quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or(""));
                } else {
                    out.push_str(orig);
                }
                "restore"
            }
            Action::Redact | Action::Pseudonymize => {
                let label = type_info(ty).map_or("REDACTED", |t| t.label);
                if action == Action::Redact {
                    out.push('[');
                    out.push_str(label);
                    out.push(']');
                } else {
                    out.push_str(&format!("[{label}:{}]", self.pseudo.token(ty, orig)));
                }
                action.name()
            }
            Action::Block => return Err(RestoreBlocked(ty)),
        };
        Ok(Some((ty, how)))
    }
}

/// Restores placeholders in a stream of pieces; a `<` that may begin a placeholder is held back
/// until it is complete or cannot be one.
#[derive(Debug, Default, Clone)]
pub struct Restorer {
    held: String,
}

/// Longest placeholder the restorer waits for (`<POSTAL_CODE_99999>` fits).
const MAX_PLACEHOLDER: usize = 40;

fn could_be_placeholder_prefix(s: &str) -> bool {
    // `<`, then upper-case letters or `_`, then digits, then `>`
    let b = s.as_bytes();
    if b.first() != Some(&b'<') || b.len() > MAX_PLACEHOLDER {
        return false;
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

impl Restorer {
    /// Feed the next piece; returns the text that can be sent now (every original put back).
    pub fn push(&mut self, vault: &Vault, piece: &str) -> String {
        self.run(vault, piece, None, &mut Vec::new())
            .unwrap_or_default()
    }

    /// Feed the next piece; each complete placeholder becomes what `rule` says (its outcome
    /// is counted in the vault). `Err`: a placeholder's type is blocked by the output policy.
    pub fn push_with(
        &mut self,
        vault: &mut Vault,
        piece: &str,
        rule: &RestoreRule<'_>,
    ) -> Result<String, RestoreBlocked> {
        let mut notes = Vec::new();
        let r = self.run(vault, piece, Some(rule), &mut notes);
        for (ty, how) in notes {
            vault.note(ty, how);
        }
        if let Err(RestoreBlocked(ty)) = &r {
            vault.note(ty, "block");
        }
        r
    }

    fn run(
        &mut self,
        vault: &Vault,
        piece: &str,
        rule: Option<&RestoreRule<'_>>,
        notes: &mut Vec<(&'static str, &'static str)>,
    ) -> Result<String, RestoreBlocked> {
        if vault.is_empty() && self.held.is_empty() {
            return Ok(piece.to_string());
        }
        self.held.push_str(piece);
        let text = std::mem::take(&mut self.held);
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(lt) = rest.find('<') {
            out.push_str(&rest[..lt]);
            let cand = &rest[lt..];
            match cand.find('>') {
                Some(gt) if could_be_placeholder_prefix(&cand[..gt]) => {
                    let ph = &cand[..=gt];
                    match rule {
                        Some(rule) => notes.extend(rule.apply(vault, ph, &mut out)?),
                        None => out.push_str(vault.original(ph).unwrap_or(ph)),
                    }
                    rest = &cand[gt + 1..];
                }
                Some(_) => {
                    out.push('<');
                    rest = &cand[1..];
                }
                None if could_be_placeholder_prefix(cand) => {
                    self.held = cand.to_string();
                    return Ok(out);
                }
                None => {
                    out.push('<');
                    rest = &cand[1..];
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// End of stream: whatever is held goes out as it is.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// What replaces a finding's text.
pub fn replacement(
    action: Action,
    ty: &'static str,
    value: &str,
    vault: &mut Vault,
    pseudo: &Pseudonymizer,
) -> Option<String> {
    let label = type_info(ty).map_or("REDACTED", |t| t.label);
    match action {
        Action::Redact => Some(format!("[{label}]")),
        Action::Pseudonymize => Some(format!("[{label}:{}]", pseudo.token(ty, value))),
        Action::Placeholder => Some(vault.placeholder(ty, value)),
        Action::Allow | Action::Monitor | Action::Block => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pseudonyms_are_stable_per_tenant_and_differ_across_tenants() {
        let a = Pseudonymizer::new(b"k", "acme");
        let b = Pseudonymizer::new(b"k", "globex");
        assert_eq!(a.token("email", "x@y.z"), a.token("email", "x@y.z"));
        assert_ne!(a.token("email", "x@y.z"), b.token("email", "x@y.z"));
        assert_ne!(a.token("email", "x@y.z"), a.token("email", "x@y.zz"));
        assert_eq!(a.token("email", "x@y.z").len(), 12);
        assert!(
            !format!("{a:?}").contains('k'.to_string().as_str())
                || format!("{a:?}").contains("hidden")
        );
    }

    #[test]
    fn placeholders_round_trip() {
        let mut v = Vault::default();
        let p1 = v.placeholder("email", "a@b.co");
        let p2 = v.placeholder("email", "c@d.co");
        assert_eq!(p1, "<EMAIL_1>");
        assert_eq!(p2, "<EMAIL_2>");
        assert_eq!(v.placeholder("email", "a@b.co"), "<EMAIL_1>");
        assert_eq!(
            v.restore("to <EMAIL_1> and <EMAIL_2>, not <EMAIL_3> or <b>"),
            "to a@b.co and c@d.co, not <EMAIL_3> or <b>"
        );
        assert_eq!(format!("{v:?}"), "Vault { 2 placeholders }");
    }

    #[test]
    fn restorer_handles_split_placeholders() {
        let mut v = Vault::default();
        v.placeholder("phone", "+1 415 555 0132");
        let mut r = Restorer::default();
        let mut out = String::new();
        for piece in ["call <", "PHO", "NE_", "1", "> now <", "b>", " <"] {
            out.push_str(&r.push(&v, piece));
        }
        out.push_str(&r.finish());
        assert_eq!(out, "call +1 415 555 0132 now <b> <");
    }

    proptest! {
        #[test]
        fn restoring_in_pieces_equals_restoring_whole(text in "[a-z <>_A-Z0-9]{0,60}", cuts in proptest::collection::vec(0usize..60, 0..6)) {
            let mut v = Vault::default();
            v.placeholder("email", "x@y.z");
            v.placeholder("card", "4111111111111111");
            let text = format!("{text} <EMAIL_1> {text} <CARD_1>");
            let whole = v.restore(&text);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < text.len()).collect();
            cuts.sort_unstable();
            let mut r = Restorer::default();
            let mut out = String::new();
            let mut last = 0;
            for c in cuts { out.push_str(&r.push(&v, &text[last..c])); last = c; }
            out.push_str(&r.push(&v, &text[last..]));
            out.push_str(&r.finish());
            prop_assert_eq!(out, whole);
        }
    }
}
