//! System-prompt canary: a unique string the operator puts in the system prompt and the policy;
//! if it shows up in an answer, the system prompt leaked.

use crate::engine::{Detector, Hit, Pattern};
use crate::finding::Finding;
use crate::text::ViewKind;

/// Canary detector.
pub struct Canary {
    canary: Option<String>,
}

impl Canary {
    /// A detector for `canary` (none: finds nothing).
    pub fn new(canary: Option<String>) -> Canary {
        Canary { canary }
    }
}

impl Detector for Canary {
    fn name(&self) -> &'static str {
        "canary"
    }
    fn types(&self) -> &'static [&'static str] {
        &["canary_leak"]
    }
    fn patterns(&self) -> Vec<Pattern> {
        self.canary
            .iter()
            .map(|c| Pattern::literal(ViewKind::Raw, c.clone(), 0, "canary_leak"))
            .collect()
    }
    fn confirm(&self, hit: &Hit<'_>, out: &mut Vec<Finding>) {
        out.push(hit.whole("canary_leak", 1.0, "output.canary"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testutil::found;

    #[test]
    fn finds_the_canary() {
        let d = || Box::new(Canary::new(Some("CANARY-7f3a".into())));
        assert_eq!(
            found(d(), "canary_leak", "my prompt says CANARY-7f3a ok"),
            ["CANARY-7f3a"]
        );
        assert!(found(d(), "canary_leak", "nothing").is_empty());
    }
}
