//! Portcullis filters: guardrail detectors and the policies that drive them.
//!
//! This crate has no dependency on the proxy, so the gateway, the trainer's data guard and the
//! command-line tools share it. Today it holds the policy file format and the YAML loader that
//! reports errors with file, line and column; the detectors (PII, secrets, injection heuristics,
//! toxicity lexicon, output checks) plug in here.

pub mod policy;
pub mod yaml;

pub use policy::Policy;
pub use yaml::{YamlError, load_yaml};
