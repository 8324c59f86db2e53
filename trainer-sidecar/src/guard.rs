//! The data guard: before a model sees training data, every text passes the input rules of a
//! `filters` policy, the same engine the gateway runs on prompts. Personal data becomes keyed
//! pseudonyms (or placeholders, or `[LABEL]`), credentials are redacted, and an example with a
//! `block` finding is dropped. The report counts findings by type and action and never holds a
//! value, so it can be logged and shown.
//!
//! Person names and street addresses come from the entity head of the bundle a policy's
//! `classifiers:` section names (the gateway's detector, [`filters::classify::Classifier`]):
//! [`entity_model`] loads it from the model registry and [`run`] tags every text with it before
//! the rules apply. The built-in policy has no `classifiers:` section (rules only).
//!
//! The default policy is `policies/training-data.yaml`, built in. Pseudonyms are keyed with
//! `PORTCULLIS_PSEUDONYM_KEY` when set (the same value then gets the same token as in the
//! gateway), else with a key drawn for the job (consistent within the job only).

use std::collections::BTreeMap;
use std::path::Path;

use filters::classify::Classifier;
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
    /// The policy's model could not be loaded or lacks what the policy needs.
    #[error("data guard model: {0}")]
    Model(String),
    /// Tagging a text failed (the job stops: no text goes untagged).
    #[error("data guard: tagging names and addresses failed: {0}")]
    Tagging(String),
}

/// The bundle that tags person names and street addresses for `policy`: `None` when the policy
/// has no `classifiers:` section or acts on neither type. The bundle comes from `models` (a
/// registry root: `<models>/<name>/<version>/`); its digests are checked (signatures are the
/// serving gateway's business, as for `gateway check`). A policy that acts on names or
/// addresses and names a bundle whose entity head does not tag them is refused.
pub fn entity_model(
    policy: &Policy,
    models: &Path,
) -> Result<Option<std::sync::Arc<Classifier>>, GuardError> {
    let Some(plan) = policy.classifiers.as_ref() else {
        return Ok(None);
    };
    if !policy.input.wants_entities(filters::finding::ENTITY_TYPES) {
        return Ok(None);
    }
    let reg = filters::classify::ModelRegistry::new(
        models,
        filters::classify::EncoderOptions::default(),
        None,
        None,
    )
    .with_trust(signing::Trust::signatures_ignored());
    let slot = reg
        .get(&plan.model, plan.version.as_deref())
        .map_err(|e| GuardError::Model(format!("`{}`: {e}", plan.model)))?;
    let c = slot.current();
    let untagged = c.untagged(&policy.input.entity_types());
    if !untagged.is_empty() {
        return Err(GuardError::Model(format!(
            "policy `{}` acts on {}, but the entity head of bundle {} does not tag them (rebuild it with scripts/setup.sh)",
            policy.name,
            untagged.join(", "),
            c.id()
        )));
    }
    Ok(Some(c))
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

/// Pass every text of `lines` through `policy`'s input rules (and `entities`' tags of names and
/// addresses, see [`entity_model`]), in place; drop the lines with a block finding.
pub fn run(
    lines: &mut Vec<Line>,
    policy: &Policy,
    key: &[u8],
    entities: Option<&Classifier>,
) -> Result<GuardReport, GuardError> {
    let pseudo = Pseudonymizer::new(key, "training-data");
    let mut report = GuardReport {
        policy: format!("{} v{}", policy.name, policy.version),
        examples: lines.len(),
        ..GuardReport::default()
    };
    let mut failed = None;
    lines.retain_mut(|line| {
        let mut vault = Vault::default();
        let mut keep = true;
        let mut changed = false;
        for text in line.record.texts_mut() {
            let mut found = policy.input.findings(text);
            if let Some(c) = entities {
                match c.entities_blocking(&[text.as_str()]) {
                    Ok(spans) => {
                        policy
                            .input
                            .add_entities(&mut found, spans.first().map_or(&[], Vec::as_slice));
                    }
                    Err(e) => {
                        failed.get_or_insert(e.to_string());
                        return false;
                    }
                }
            }
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
    match failed {
        Some(e) => Err(GuardError::Tagging(e)),
        None => Ok(report),
    }
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
        let r = run(&mut lines, &p, b"k", None).unwrap();
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
        let r = run(&mut lines, &strict, b"k", None).unwrap();
        assert_eq!((r.dropped, lines.len()), (1, 1));
    }

    /// With a policy that names the guard bundle, names and addresses are pseudonymized with
    /// the same pseudonym the gateway gives them; a bundle without an entity head is refused.
    #[test]
    fn names_and_addresses_are_pseudonymized_by_the_policys_bundle() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let p = Policy::parse(
            Path::new("t.yaml"),
            "name: t\nversion: 1\ninput:\n  pii: pseudonymize\n  injection_classifier: monitor\nclassifiers:\n  model: guard\n",
        )
        .unwrap();
        let c = entity_model(&p, &models)
            .expect("run scripts/setup.sh (make test does)")
            .expect("the policy acts on names");
        let mut lines = vec![
            line(
                "My name is John Smith and I live at 221B Baker Street, London NW1 6XE.",
                "Dear John Smith, your order has shipped.",
            ),
            line("Who was Albert Einstein?", "A physicist."),
        ];
        let r = run(&mut lines, &p, b"k", Some(&*c)).unwrap();
        let Record::Completion { prompt, completion } = &lines[0].record else {
            unreachable!()
        };
        assert!(
            !prompt.contains("John") && !prompt.contains("Baker"),
            "{prompt}"
        );
        assert!(
            prompt.contains("[PERSON:") && prompt.contains("[ADDRESS:"),
            "{prompt}"
        );
        // the same name, the same pseudonym, in the prompt and the completion
        let token = |s: &str| {
            let i = s.find("[PERSON:").unwrap();
            s[i..i + s[i..].find(']').unwrap() + 1].to_string()
        };
        assert_eq!(token(prompt), token(completion));
        let Record::Completion { prompt, .. } = &lines[1].record else {
            unreachable!()
        };
        assert_eq!(prompt, "Who was Albert Einstein?");
        assert_eq!(r.findings["person"]["pseudonymize"], 2);
        // rules-only policies load no model
        assert!(
            entity_model(&policy(None).unwrap(), &models)
                .unwrap()
                .is_none()
        );
    }
}
