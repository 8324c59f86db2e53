//! OpenAI Embeddings, `POST /v1/embeddings` (OpenAI, vLLM, TEI's OpenAI route).
//!
//! Request: `input`, a string or a list of strings (token-id inputs cannot be inspected). The
//! input rules apply (an embedding API is where documents full of personal data are sent);
//! placeholders cannot come back (the answer is vectors). Answer: `data[].embedding` is numbers
//! or a base64 string of float32s and is never text; nothing else is expected, and unknown
//! members are filtered like any answer's.

use serde_json::Value;

use super::answer::{AnswerCx, Frame, Key, StreamCx};
use super::read::{Kind, Reader, Role, ShapeError};
use super::{At, Dialect, Protocol, UsageKeys};
use crate::stream::Blocked;

/// `/v1/embeddings`.
#[derive(Debug, Clone, Copy)]
pub struct Embeddings;

const NO_TEXT: &[&str] = &[
    "model",
    "dimensions",
    "encoding_format",
    "user",
    // vLLM
    "truncate_prompt_tokens",
    "add_special_tokens",
    "priority",
    "request_id",
    "normalize",
];

impl Protocol for Embeddings {
    fn adapter_member(&self) -> Option<super::AdapterMember> {
        Some(super::AdapterMember::Model)
    }

    fn name(&self) -> &'static str {
        "openai.embeddings"
    }
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        r.group(Role::User);
        r.object(body, &At::Root, |r, k, v, at| {
            match k {
                "input" => r.text_or_list(v, at, Kind::Content)?,
                k if NO_TEXT.contains(&k) => {}
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn max_new_tokens(&self, _body: &Value) -> Option<u64> {
        Some(0)
    }

    fn usage(&self) -> UsageKeys {
        UsageKeys {
            prompt: &[b"\"prompt_tokens\":"],
            generated: &[],
            events: &[],
        }
    }

    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        let Some(o) = answer.as_object_mut() else {
            return cx.all(answer, Kind::Other);
        };
        if let Some(data) = o.get_mut("data").and_then(Value::as_array_mut) {
            for d in data.iter_mut() {
                if let Some(e) = d.as_object_mut() {
                    cx.others(e, &["object", "embedding", "index"])?;
                }
            }
        }
        cx.others(o, &["object", "data", "model", "usage", "id", "created"])
    }

    fn event(&self, _: Option<&str>, v: &mut Value, cx: &mut StreamCx<'_>) -> Result<(), Blocked> {
        // embeddings do not stream; an event would be unexpected: filter its strings
        cx.whole(Some(v), Kind::Other)
    }

    fn release(&self, _: Key, _: &str, _: &mut StreamCx<'_>) -> Vec<Frame> {
        Vec::new()
    }
}
