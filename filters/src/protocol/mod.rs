//! API families: what each LLM API means, in one place per family.
//!
//! A [`Protocol`] knows, for one API family, which request fields carry text to the model and
//! how the backend assembles them (content parts joined, roles, names, tool definitions, tool
//! results, image URLs rendered as text), which answer fields carry text (content, tool-call
//! arguments, reasoning, refusals, alternatives), how its stream is framed, how its errors are
//! shaped, and where its token budget and usage live. The gateway's route table maps a route to
//! one protocol; everything else is generic:
//!
//! * [`read`]: a fail-closed [`Reader`] that family readers drive; what they do not understand
//!   is refused (or scanned whole, by policy).
//! * [`inspect()`]: the input policy applied to every unit, rewrites written back into the
//!   body, texts for the classifiers.
//! * [`answer`]: whole answers ([`AnswerCx`]) and stream state ([`StreamCx`]).
//! * [`stream`]: [`AnswerStream`], bytes in, filtered bytes (or a block) out.
//!
//! One file per family: [`tgi`] (TGI `/generate`, `/generate_stream`, `/`, `/tokenize`),
//! [`openai_chat`] (`/v1/chat/completions`, as OpenAI, TGI's Messages API and vLLM speak it),
//! [`openai_completions`], [`openai_responses`], [`openai_embeddings`], [`anthropic`]
//! (`/v1/messages`). Adding a family is one file here, one entry in [`families`] and one
//! row in the gateway's route table.

pub mod answer;
pub mod anthropic;
pub mod inspect;
pub mod json;
pub mod mcp;
pub mod openai_chat;
pub mod openai_completions;
pub mod openai_embeddings;
pub mod openai_responses;
pub mod path;
pub mod read;
pub mod stream;
pub mod tgi;

use serde_json::{Value, json};

pub use answer::{AnswerCx, Frame, Key, StreamCx, StreamState};
pub use inspect::{
    ClassifierText, InspectError, Inspection, ReadFn, ScanMemo, inspect, inspect_read,
    inspect_read_all, inspect_with, prose_texts_read, unit_texts, unit_texts_read,
};
pub use json::{JsonError, parse_strict};
pub use path::{At, Path};
pub use read::{Kind, Reader, Role, ShapeError, Unit, UnknownFields};
pub use stream::AnswerStream;

use crate::stream::Blocked;

/// How a family shapes the errors the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// TGI: `{"error": "...", "error_type": "..."}`; stream events `data:{...}`.
    Tgi,
    /// OpenAI: `{"error": {"message", "type", "param", "code"}}`; stream events `data: {...}`.
    OpenAi,
    /// Anthropic: `{"type": "error", "error": {"type", "message"}}`; stream events
    /// `event: error`.
    Anthropic,
    /// JSON-RPC 2.0 (MCP): `{"jsonrpc": "2.0", "id": null, "error": {"code", "message",
    /// "data": {"code", "source": "gateway"}}}`; stream events `event: message`.
    JsonRpc,
}

/// An error the gateway answers, independent of its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code (`policy_violation`).
    pub code: &'static str,
    /// For humans; never request content.
    pub message: String,
}

impl Dialect {
    /// The JSON error body.
    pub fn body(self, e: &ErrorInfo) -> Value {
        let client = (400..500).contains(&e.status);
        match self {
            Dialect::Tgi => json!({"error": e.message, "error_type": e.code}),
            Dialect::OpenAi => json!({"error": {
                "message": e.message,
                "type": if client { "invalid_request_error" } else { "server_error" },
                "param": null,
                "code": e.code,
            }}),
            Dialect::Anthropic => json!({"type": "error", "error": {
                "type": anthropic_type(e.status),
                "message": e.message,
                "code": e.code,
            }}),
            Dialect::JsonRpc => mcp::error(
                &Value::Null,
                mcp::code_for_status(e.status),
                &e.message,
                e.code,
            ),
        }
    }

    /// A final stream event carrying the error.
    pub fn event(self, e: &ErrorInfo) -> Vec<u8> {
        let v = self.body(e).to_string();
        match self {
            Dialect::Tgi => format!("data:{v}\n\n"),
            Dialect::OpenAi => format!("data: {v}\n\n"),
            Dialect::Anthropic => format!("event: error\ndata: {v}\n\n"),
            Dialect::JsonRpc => format!("event: message\ndata: {v}\n\n"),
        }
        .into_bytes()
    }

    /// The dialect a path that matches no route answers in: OpenAI's under `/v1/`, TGI's
    /// elsewhere (Anthropic's for `/v1/messages...`).
    pub fn for_path(path: &str) -> Dialect {
        if path.starts_with("/mcp/") {
            Dialect::JsonRpc
        } else if path.starts_with("/v1/messages") {
            Dialect::Anthropic
        } else if path.starts_with("/v1/") {
            Dialect::OpenAi
        } else {
            Dialect::Tgi
        }
    }
}

/// Anthropic's `error.type` for a status.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

/// Where a family's answers report token counts, for quota reconciliation: member names as
/// they appear in the answer's bytes.
#[derive(Debug, Clone, Copy)]
pub struct UsageKeys {
    /// Prompt tokens (`"prompt_tokens":`).
    pub prompt: &'static [&'static [u8]],
    /// Generated tokens (`"completion_tokens":`).
    pub generated: &'static [&'static [u8]],
    /// A marker present once per stream event that carries a token, to count them when the
    /// backend reports nothing.
    pub events: &'static [&'static [u8]],
}

/// One API family. See the module documentation.
pub trait Protocol: Send + Sync + 'static {
    /// Stable name (`openai.chat`), for logs and docs.
    fn name(&self) -> &'static str;

    /// How errors are shaped for this family's clients.
    fn dialect(&self) -> Dialect;

    /// Read a request body: every field that reaches the model becomes a unit of `r`, in the
    /// order the backend assembles them; what is not understood goes to
    /// [`Reader::not_understood`].
    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError>;

    /// The most tokens the request lets the backend generate, per sequence, when it says.
    fn max_new_tokens(&self, _body: &Value) -> Option<u64> {
        None
    }

    /// How many sequences the backend generates (`n`, `best_of`).
    fn sequences(&self, _body: &Value) -> u64 {
        1
    }

    /// The members that bound how much the backend generates (`max_tokens`, `n`, ...), as
    /// paths from the body. Each must be absent, `null` or a non-negative integer: backends
    /// that coerce (`"16"`, `16.0`) would otherwise generate more than the gateway counted.
    fn bound_members(&self) -> &'static [&'static [&'static str]] {
        &[]
    }

    /// Write `n` as the request's maximum of generated tokens per sequence, in the member the
    /// backend reads. `false`: the family has no such member.
    fn set_max_new_tokens(&self, _body: &mut Value, _n: u64) -> bool {
        false
    }

    /// Where the request picks a LoRA adapter, if the family can (see [`AdapterMember`]).
    fn adapter_member(&self) -> Option<AdapterMember> {
        None
    }

    /// Where answers report token counts.
    fn usage(&self) -> UsageKeys;

    /// Filter every text field of a whole JSON answer in place.
    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked>;

    /// Filter one stream event (`name`: its `event:` field) in place.
    fn event(
        &self,
        name: Option<&str>,
        data: &mut Value,
        cx: &mut StreamCx<'_>,
    ) -> Result<(), Blocked>;

    /// Events carrying text still held for `key` when the stream ends without that field's
    /// final event (or before `[DONE]` or an upstream error event).
    fn release(&self, key: Key, text: &str, cx: &mut StreamCx<'_>) -> Vec<Frame>;

    /// Turn a whole answer a policy blocked into the family's "filtered" answer (the status
    /// was already sent with the backend's headers). `false`: the family has none; the
    /// gateway sends its error body instead.
    fn blocked_answer(&self, _answer: &mut Value, _e: &ErrorInfo) -> bool {
        false
    }

    /// A final event ending a stream with an error.
    fn error_event(&self, e: &ErrorInfo, _st: Option<&StreamState>) -> Vec<u8> {
        self.dialect().event(e)
    }
}

/// Where a request names the LoRA adapter the backend applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterMember {
    /// TGI's `parameters.adapter_id`: absent or `null` is the base model. (TGI falls back to
    /// the base model, silently, for an id it does not know.)
    AdapterId,
    /// `model`: OpenAI-compatible servers serve adapters as model names (vLLM
    /// `--lora-modules name=path`; TGI maps `model` to `adapter_id` unless it is `tgi`).
    /// Any other value is the base model only if the gateway is told so.
    Model,
}

impl AdapterMember {
    /// The name the request gives (`None`: absent or null). `Err`: not a string.
    pub fn read(self, body: &Value) -> Result<Option<&str>, &'static str> {
        let v = match self {
            AdapterMember::AdapterId => body.get("parameters").and_then(|p| p.get("adapter_id")),
            AdapterMember::Model => body.get("model"),
        };
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(self.path()),
        }
    }

    /// Write `name` (`None`: the base model: the member is removed for `adapter_id`, left as
    /// it is for `model`). `false` when the body has no place for it (`parameters` not an
    /// object, or the body not an object).
    pub fn write(self, body: &mut Value, name: Option<&str>) -> bool {
        let Some(obj) = body.as_object_mut() else {
            return false;
        };
        match (self, name) {
            (AdapterMember::AdapterId, Some(n)) => {
                let params = obj
                    .entry("parameters")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                match params.as_object_mut() {
                    Some(p) => {
                        p.insert("adapter_id".into(), Value::String(n.into()));
                        true
                    }
                    None => false,
                }
            }
            (AdapterMember::AdapterId, None) => {
                if let Some(p) = obj.get_mut("parameters").and_then(Value::as_object_mut) {
                    p.remove("adapter_id");
                }
                true
            }
            (AdapterMember::Model, Some(n)) => {
                obj.insert("model".into(), Value::String(n.into()));
                true
            }
            (AdapterMember::Model, None) => true,
        }
    }

    /// The member's path, for messages.
    pub fn path(self) -> &'static str {
        match self {
            AdapterMember::AdapterId => "parameters.adapter_id",
            AdapterMember::Model => "model",
        }
    }
}

/// Every family, for tests, fuzzing and documentation.
pub fn families() -> [&'static dyn Protocol; 6] {
    [
        &tgi::Generate,
        &openai_chat::Chat,
        &openai_completions::Completions,
        &openai_responses::Responses,
        &openai_embeddings::Embeddings,
        &anthropic::Messages,
    ]
}

/// What a request lets the backend generate, for token quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// Most new tokens per sequence, when the request says.
    pub max_new: Option<u64>,
    /// Sequences generated (`n`, `best_of`, prompts of a list), at least 1.
    pub sequences: u64,
}

/// Check the members that bound generation and read them (see
/// [`Protocol::bound_members`]).
pub fn generation(p: &dyn Protocol, body: &Value) -> Result<Generation, ShapeError> {
    for members in p.bound_members() {
        let mut v = Some(body);
        for m in *members {
            v = v.and_then(|v| v.get(*m));
        }
        match v {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some() => {}
            Some(_) => {
                return Err(ShapeError {
                    path: members.join("."),
                    reason: "must be a non-negative integer: it bounds the tokens the backend generates, which the gateway counts against quotas".to_string(),
                });
            }
        }
    }
    Ok(Generation {
        max_new: p.max_new_tokens(body),
        sequences: p.sequences(body).max(1),
    })
}

/// TGI's `/invocations` (SageMaker) serves several families on one route and picks one by the
/// body's shape, the way TGI does: see [`tgi::sagemaker`].
pub fn invocations(body: &Value) -> &'static dyn Protocol {
    tgi::sagemaker(body)
}

/// Helpers shared by the family files.
pub(crate) mod util {
    use serde_json::Value;

    /// A non-negative integer member.
    pub fn uint(v: &Value, key: &str) -> Option<u64> {
        v.get(key).and_then(Value::as_u64)
    }

    /// Set the integer member the backend reads: the first of `prefer` present, else
    /// `fallback`; every other present member of both lists gets the same value.
    pub fn set_uint(v: &mut Value, prefer: &[&str], fallback: &[&str], n: u64) -> bool {
        let Some(o) = v.as_object_mut() else {
            return false;
        };
        let mut any = false;
        for k in prefer.iter().chain(fallback) {
            if o.get(*k).is_some_and(|x| !x.is_null()) {
                o.insert((*k).to_string(), n.into());
                any = true;
            }
        }
        if !any {
            for k in fallback {
                o.insert((*k).to_string(), n.into());
            }
        }
        true
    }

    /// The array member `key` of `v`, mutably.
    pub fn array_mut<'v>(v: &'v mut Value, key: &str) -> Option<&'v mut Vec<Value>> {
        v.get_mut(key).and_then(Value::as_array_mut)
    }

    /// The position `i` as a stream-key component (indexes beyond `u32` are clamped: they
    /// cannot occur in a stream the gateway accepted).
    pub fn idx(v: Option<&Value>, fallback: usize) -> u32 {
        let n = v.and_then(Value::as_u64).unwrap_or(fallback as u64);
        u32::try_from(n).unwrap_or(u32::MAX - 1)
    }
}
