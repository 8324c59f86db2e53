//! Portcullis filters: guardrail detectors, the policies that drive them, and the streaming
//! machinery that applies them to answers as they arrive.
//!
//! This crate has no dependency on the proxy, so the gateway, the trainer's data guard and the
//! command-line tools share it.
//!
//! * [`text`]: the views detectors match on (raw, folded, words) with maps back to the original.
//! * [`engine`]: the [`Detector`] trait and the [`Engine`] that runs every detector's patterns
//!   in one `RegexSet` pass and one Aho-Corasick pass per view.
//! * [`detectors`]: the built-in detectors, one file each.
//! * [`policy`]: policy files (YAML, validated, schema in `policies/schema.json`) compiled into
//!   a [`Policy`] with one engine per direction.
//! * [`actions`]: redaction, keyed pseudonyms, the placeholder [`Vault`] and its [`Restorer`].
//! * [`stream`]: the [`StreamGuard`] that filters an answer token by token with a hold-back.
//! * [`sse`]: server-sent event parsing.
//! * [`protocol`]: the API families (TGI, OpenAI chat/completions/responses/embeddings,
//!   Anthropic Messages): which request fields reach the model, which answer fields carry
//!   text, stream framing, error shapes; the input policy applied to a request body and the
//!   output policy to an answer, whole or streamed.

pub mod actions;
pub mod classify;
pub mod detectors;
pub mod engine;
pub mod finding;
pub mod hold;
pub mod policy;
pub mod protocol;
pub mod sse;
pub mod stream;
pub mod text;
pub mod yaml;

pub use actions::{Pseudonymizer, Restorer, Vault};
pub use engine::{Detector, Engine};
pub use finding::{Action, Direction, Finding, TYPES};
pub use policy::{Applied, Decision, Policy, PolicyError, PolicyFile};
pub use stream::StreamGuard;
pub use yaml::{YamlError, load_yaml};
