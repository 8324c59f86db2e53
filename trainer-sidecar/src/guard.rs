//! The data guard: before a model sees training data, every text passes the input rules of a
//! `filters` policy, the same engine the gateway runs on prompts. Personal data becomes keyed
//! pseudonyms (or placeholders, or `[LABEL]`), credentials are redacted, and an example with a
//! `block` finding is dropped. The report counts findings by type and action and never holds a
//! value, so it can be logged and shown.
//!
//! The default policy is `policies/training-data.yaml`, built in. Pseudonyms are keyed with
//! `PORTCULLIS_PSEUDONYM_KEY` when set (the same value then gets the same token as in the
//! gateway), else with a key drawn for the job (consistent within the job only).

use std::collections::BTreeMap;
use std::path::Path;

use filters::{Action, Policy, Pseudonymizer, Vault};
use serde::Serialize;

use crate::llm::data::Line;

/// The built-in policy.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/training-data.yaml");

/// What the guard did, without any value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuardReport {
    /// The policy (`name` v`version`), or `disabled`.
    pub policy: String,
    /// Examples read.
    pub examples: usize,
    /// Examples dropped by a block finding.
    pub dropped: usize,
    /// Examples with at least one text changed.
    pub changed: usize,
    /// Findings by type, then by action.
    pub findings: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Why the guard could not run.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The policy file is invalid.
    #[error("data guard policy: {0}")]
    Policy(String),
}

/// Load the guard's policy (`None`: the built-in one).
pub fn policy(path: Option<&Path>) -> Result<Policy, GuardError> {
    match path {
        Some(p) => Policy::load(p).map_err(|e| GuardError::Policy(e.to_string())),
        None => Policy::parse(Path::new("policies/training-data.yaml"), DEFAULT_POLICY)
            .map_err(|e| GuardError::Policy(e.to_string())),
    }
}

/// The pseudonym key: `PORTCULLIS_PSEUDONYM_KEY`, else 32 random bytes.
pub fn pseudonym_key() -> Vec<u8> {
    match std::env::var("PORTCULLIS_PSEUDONYM_KEY") {
        Ok(k) if !k.is_empty() => k.into_bytes(),
        _ => rand::random::<[u8; 32]>().to_vec(),
    }
}

/// Pass every text of `lines` through `policy`'s input rules, in place; drop the lines with a
/// block finding.
pub fn run(lines: &mut Vec<Line>, policy: &Policy, key: &[u8]) -> GuardReport {
    let pseudo = Pseudonymizer::new(key, "training-data");
    let mut report = GuardReport {
        policy: format!("{} v{}", policy.name, policy.version),
        examples: lines.len(),
        ..GuardReport::default()
    };
    lines.retain_mut(|line| {
        let mut vault = Vault::default();
        let mut keep = true;
        let mut changed = false;
        for text in line.record.texts_mut() {
            let found = policy.input.findings(text);
            for f in &found {
                *report
                    .findings
                    .entry(f.ty.to_string())
                    .or_default()
                    .entry(f.action.name().to_string())
                    .or_default() += 1;
            }
            if found.iter().any(|f| f.action == Action::Block) {
                keep = false;
            } else if found.iter().any(|f| f.action.rewrites()) {
                *text = filters::policy::rewrite(text, &found, &mut vault, &pseudo);
                changed = true;
            }
        }
        if !keep {
            report.dropped += 1;
        } else if changed {
            report.changed += 1;
        }
        keep
    });
    report
}

/// The report of a job whose guard was disabled.
pub fn disabled(examples: usize) -> GuardReport {
    GuardReport {
        policy: "disabled: the data was trained on as it is".into(),
        examples,
        ..GuardReport::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::data::Record;

    fn line(p: &str, c: &str) -> Line {
        Line {
            line: 1,
            record: Record::Completion {
                prompt: p.into(),
                completion: c.into(),
            },
            user: None,
        }
    }

    #[test]
    fn personal_data_is_pseudonymized_and_blocked_examples_dropped() {
        let p = policy(None).unwrap();
        let mut lines = vec![
            line(
                "Mail jane.doe@example.com",
                "Key AKIAQ7LMZ2XABCDEFGHI noted.",
            ),
            line("Hello", "Hi there"),
        ];
        let r = run(&mut lines, &p, b"k");
        assert_eq!((r.examples, r.dropped, r.changed), (2, 0, 1));
        let Record::Completion { prompt, completion } = &lines[0].record else {
            unreachable!()
        };
        assert!(
            !prompt.contains("jane.doe") && prompt.contains("[EMAIL:"),
            "{prompt}"
        );
        assert!(!completion.contains("AKIA"), "{completion}");
        assert_eq!(r.findings["email"]["pseudonymize"], 1);
        // the report holds no value
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("jane") && !json.contains("AKIA"), "{json}");
        // a policy that blocks drops the example
        let strict = Policy::parse(
            Path::new("s.yaml"),
            "name: s\nversion: 1\ninput:\n  secrets: block\n",
        )
        .unwrap();
        let mut lines = vec![line("x", "Key AKIAQ7LMZ2XABCDEFGHI"), line("a", "b")];
        let r = run(&mut lines, &strict, b"k");
        assert_eq!((r.dropped, lines.len()), (1, 1));
    }
}
