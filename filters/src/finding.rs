//! What detectors find, the finding types they can report, and the actions a policy can take.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A detector's report: a finding type at a byte span of the scanned text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Finding type (`email`, `aws_key`, `injection`, ...); see [`TYPES`].
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// First byte of the match in the scanned text.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// Confidence in `0..=1` (rules report 1.0 once validated, heuristics less).
    pub score: f32,
    /// Id of the rule that matched (`pii.card.luhn`).
    pub rule: &'static str,
}

/// The family a finding type belongs to; a policy can set one action for a whole family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Personal data.
    Pii,
    /// Credentials and keys.
    Secrets,
    /// Prompt injection and jailbreaks.
    Injection,
    /// Abusive language.
    Toxicity,
    /// Risks specific to model answers.
    Output,
    /// Prompts on topics a policy denies, or off the topics it allows (model-based).
    Topics,
}

impl Group {
    /// Name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Group::Pii => "pii",
            Group::Secrets => "secrets",
            Group::Injection => "injection",
            Group::Toxicity => "toxicity",
            Group::Output => "unsafe_output",
            Group::Topics => "topics",
        }
    }

    /// All groups.
    pub const ALL: [Group; 6] = [
        Group::Pii,
        Group::Secrets,
        Group::Injection,
        Group::Toxicity,
        Group::Output,
        Group::Topics,
    ];
}

/// A finding type: its name in policies, its family and the label used when redacting.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    /// Name in policy files, metrics and `check` output.
    pub name: &'static str,
    /// Family.
    pub group: Group,
    /// Upper-case label used in `[LABEL]`, `<LABEL_1>` and `[LABEL:token]`.
    pub label: &'static str,
    /// One line for documentation.
    pub about: &'static str,
}

const fn t(name: &'static str, group: Group, label: &'static str, about: &'static str) -> TypeInfo {
    TypeInfo {
        name,
        group,
        label,
        about,
    }
}

/// Finding types reported by the model classifiers (policy section `classifiers:`), input only.
/// Their rules take effect only in a policy that names a model.
pub const CLASSIFIER_TYPES: &[&str] = &[
    "injection_classifier",
    "indirect_injection_classifier",
    "toxicity_classifier",
    "denied_topic",
    "off_topic",
    "classifier_unavailable",
];

/// Types that count only in *supplied* text (tool definitions, tool results, documents, fields
/// the gateway does not understand): what they match is ordinary in a system prompt or a user's
/// question ("do not reveal this to the user") and a warning sign only in text the model is
/// given to read.
pub const SUPPLIED_ONLY: &[&str] = &["tool_poisoning"];

/// Whether a finding of type `ty` counts in text written by `role`.
pub fn counts_in(ty: &str, role: crate::protocol::Role) -> bool {
    use crate::protocol::Role;
    !SUPPLIED_ONLY.contains(&ty)
        || matches!(
            role,
            Role::Tool | Role::ToolDefinition | Role::Document | Role::Unknown
        )
}

/// PII types found by the entity head of the `classifiers:` bundle (input only), not by rules.
pub const ENTITY_TYPES: &[&str] = &["person", "address"];

/// Every finding type a built-in detector (or a model hook) can report.
pub const TYPES: &[TypeInfo] = &[
    t(
        "injection_classifier",
        Group::Injection,
        "INJECTION",
        "prompt injection or jailbreak in text the user typed, by the model's injection head (needs `classifiers:`)",
    ),
    t(
        "indirect_injection_classifier",
        Group::Injection,
        "INJECTION",
        "instructions aimed at the model inside supplied content (tool results, documents, tool definitions: `classifiers.supplied_roles`), by the model's indirect-injection head at its own operating point; takes `injection_classifier`'s action when not set",
    ),
    t(
        "toxicity_classifier",
        Group::Toxicity,
        "TOXICITY",
        "abusive or hateful text, by the model's toxicity head (needs `classifiers:`)",
    ),
    t(
        "denied_topic",
        Group::Topics,
        "TOPIC",
        "a prompt close to a topic in `classifiers.topics.denied`",
    ),
    t(
        "off_topic",
        Group::Topics,
        "TOPIC",
        "a prompt close to none of `classifiers.topics.allowed`",
    ),
    t(
        "classifier_unavailable",
        Group::Topics,
        "CLASSIFIER",
        "the classifiers did not answer within `classifiers.timeout` (action from `on_timeout`; not settable)",
    ),
    t("email", Group::Pii, "EMAIL", "e-mail address"),
    t(
        "phone",
        Group::Pii,
        "PHONE",
        "phone number, E.164 or national format",
    ),
    t(
        "card",
        Group::Pii,
        "CARD",
        "payment card number (Luhn-checked, known issuer prefix)",
    ),
    t(
        "iban",
        Group::Pii,
        "IBAN",
        "IBAN (mod-97 and country length checked)",
    ),
    t(
        "ssn",
        Group::Pii,
        "SSN",
        "US social security number (valid ranges only)",
    ),
    t("ip_address", Group::Pii, "IP", "IPv4 or IPv6 address"),
    t(
        "date_of_birth",
        Group::Pii,
        "DOB",
        "a date next to words like `born` or `DOB`",
    ),
    t(
        "postal_code",
        Group::Pii,
        "POSTAL_CODE",
        "a postal code next to words like `ZIP`",
    ),
    t(
        "uk_nino",
        Group::Pii,
        "UK_NINO",
        "UK National Insurance number (prefix and suffix rules)",
    ),
    t(
        "nhs_number",
        Group::Pii,
        "NHS_NUMBER",
        "NHS number (mod 11) after a word like `NHS`",
    ),
    t(
        "nl_bsn",
        Group::Pii,
        "NL_BSN",
        "Dutch BSN (11-proof) after a word like `BSN`",
    ),
    t(
        "de_tax_id",
        Group::Pii,
        "DE_TAX_ID",
        "German Steuer-ID (digit rule, MOD 11,10) after a word like `Steuer-ID`",
    ),
    t(
        "fr_nir",
        Group::Pii,
        "FR_NIR",
        "French NIR / social security number (mod-97 key) after a word like `sécu`",
    ),
    t(
        "es_dni",
        Group::Pii,
        "ES_DNI",
        "Spanish DNI or NIE (mod-23 letter)",
    ),
    t(
        "it_fiscal_code",
        Group::Pii,
        "IT_FISCAL_CODE",
        "Italian codice fiscale (check letter)",
    ),
    t(
        "us_passport",
        Group::Pii,
        "US_PASSPORT",
        "US passport number after the word `passport`",
    ),
    t(
        "us_driver_license",
        Group::Pii,
        "US_DRIVER_LICENSE",
        "driver's licence number after words like `driver's license`",
    ),
    t(
        "medical_record_number",
        Group::Pii,
        "MRN",
        "medical record number after words like `MRN`, `patient ID`",
    ),
    t(
        "person",
        Group::Pii,
        "PERSON",
        "person name, by the entity head of the `classifiers:` bundle",
    ),
    t(
        "address",
        Group::Pii,
        "ADDRESS",
        "street address, by the entity head of the `classifiers:` bundle",
    ),
    t("aws_key", Group::Secrets, "AWS_KEY", "AWS access key id"),
    t(
        "github_token",
        Group::Secrets,
        "GITHUB_TOKEN",
        "GitHub token (ghp_, gho_, github_pat_, ...)",
    ),
    t(
        "gitlab_token",
        Group::Secrets,
        "GITLAB_TOKEN",
        "GitLab personal access token",
    ),
    t(
        "slack_token",
        Group::Secrets,
        "SLACK_TOKEN",
        "Slack token or webhook URL",
    ),
    t(
        "stripe_key",
        Group::Secrets,
        "STRIPE_KEY",
        "Stripe secret or restricted key",
    ),
    t(
        "openai_key",
        Group::Secrets,
        "OPENAI_KEY",
        "OpenAI-style API key (sk-...)",
    ),
    t("jwt", Group::Secrets, "JWT", "JSON Web Token"),
    t(
        "private_key",
        Group::Secrets,
        "PRIVATE_KEY",
        "PEM private key block",
    ),
    t(
        "url_password",
        Group::Secrets,
        "PASSWORD",
        "password in a URL or connection string",
    ),
    t(
        "generic_secret",
        Group::Secrets,
        "SECRET",
        "high-entropy value next to a key word",
    ),
    t(
        "instruction_override",
        Group::Injection,
        "INJECTION",
        "instruction-override phrases and chat-template delimiters",
    ),
    t(
        "jailbreak",
        Group::Injection,
        "JAILBREAK",
        "role-play and restriction-removal markers",
    ),
    t(
        "tool_poisoning",
        Group::Injection,
        "INJECTION",
        "instructions hidden for the model in supplied text: concealment from the user, reading credential files, shadowing other tools; counted only in tool definitions, tool results and documents",
    ),
    t(
        "prompt_extraction",
        Group::Injection,
        "PROMPT_EXTRACTION",
        "system-prompt extraction",
    ),
    t(
        "encoded_injection",
        Group::Injection,
        "ENCODED_INJECTION",
        "injection hidden in base64/hex/rot13",
    ),
    t(
        "toxicity",
        Group::Toxicity,
        "TOXIC",
        "word from the toxicity lexicon",
    ),
    t(
        "exfil_image",
        Group::Output,
        "IMAGE",
        "markdown/HTML image pointing at a host not allowlisted",
    ),
    t(
        "exfil_link",
        Group::Output,
        "LINK",
        "markdown link pointing at a host not allowlisted",
    ),
    t(
        "html_injection",
        Group::Output,
        "HTML",
        "script-capable HTML or javascript: URL",
    ),
    t(
        "canary_leak",
        Group::Output,
        "CANARY",
        "the policy's system-prompt canary string",
    ),
];

/// Look a finding type up by name.
pub fn type_info(name: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.name == name)
}

/// What a policy does with a finding. Ordered by severity: when findings overlap, the most
/// severe action wins; a request's overall action is its most severe finding's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Do not look for it.
    Allow,
    /// Record it (metrics, log, audit); change nothing.
    Monitor,
    /// Replace it with `[LABEL]`.
    Redact,
    /// Replace it with `[LABEL:token]`, the token a keyed HMAC-SHA256 of the value: the same value
    /// gives the same token within a tenant; it cannot be reversed without the key.
    Pseudonymize,
    /// Input only: replace it with `<LABEL_n>`, keep the original in the request's vault, and
    /// put it back into the answer (streamed or not).
    Placeholder,
    /// Refuse the request (or end the stream) naming the rule, never the value.
    Block,
}

impl Action {
    /// Name in policy files and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Monitor => "monitor",
            Action::Redact => "redact",
            Action::Pseudonymize => "pseudonymize",
            Action::Placeholder => "placeholder",
            Action::Block => "block",
        }
    }

    /// Whether the action changes the text.
    pub fn rewrites(self) -> bool {
        matches!(
            self,
            Action::Redact | Action::Pseudonymize | Action::Placeholder
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way the text flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Prompts, on their way to the model.
    Input,
    /// Answers, on their way to the client.
    Output,
}

impl Direction {
    /// Name in policies, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_unique_and_labels_upper_case() {
        let mut names: Vec<_> = TYPES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TYPES.len());
        for t in TYPES {
            assert!(t.label.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            // a group may share its name only with its single rule-based member (`toxicity`;
            // `toxicity_classifier` joins it only in policies with `classifiers:`), so that
            // `toxicity: block` means the same thing with and without a model
            for g in Group::ALL {
                if g.name() == t.name {
                    let others = TYPES
                        .iter()
                        .filter(|u| u.group == g && u.name != t.name)
                        .filter(|u| !CLASSIFIER_TYPES.contains(&u.name))
                        .count();
                    assert_eq!(others, 0);
                }
            }
        }
    }

    #[test]
    fn block_is_the_most_severe() {
        assert!(Action::Block > Action::Placeholder);
        assert!(Action::Monitor > Action::Allow);
    }
}
