//! TGI's native API: `POST /generate`, `/generate_stream`, `/` (compat, `stream` in the body)
//! and `/tokenize`; and the `/invocations` (SageMaker) dispatch.
//!
//! * Request: `inputs` is the whole prompt; `parameters.grammar` (`{"type": "json" | "regex" |
//!   "json_schema", "value": ...}`) constrains the answer and reaches the model's decoding, so
//!   every string in it is scanned. Other parameters carry no text.
//! * Answer: `generated_text`, `details.best_of_sequences[].generated_text`; token lists
//!   (`tokens`, `top_tokens`, `prefill`) would carry unfiltered text and are emptied whenever
//!   output rules are active or placeholders were made. `/` answers a list of such objects.
//! * Stream: one event per token, `token.text`; the last event carries `generated_text` (which
//!   must equal the sent token texts) and `details`; no `[DONE]`. Held text goes out with the
//!   last event, or in an extra token event before a final special token (indexes after it
//!   shift by one).

use serde_json::{Value, json};

use super::answer::{AnswerCx, Frame, Key, StreamCx};
use super::read::{Kind, Reader, Role, ShapeError};
use super::{At, Dialect, Protocol, UsageKeys, util};
use crate::stream::Blocked;

/// `/generate`, `/generate_stream`, `/`.
#[derive(Debug, Clone, Copy)]
pub struct Generate;

/// `/tokenize`: the request reads like `/generate`; the answer is the prompt's tokens (what
/// the gateway forwarded), passed as is.
#[derive(Debug, Clone, Copy)]
pub struct Tokenize;

/// `parameters` members that carry no text to the model.
const PARAMETERS: &[&str] = &[
    "adapter_id",
    "best_of",
    "decoder_input_details",
    "details",
    "do_sample",
    "frequency_penalty",
    "max_new_tokens",
    "repetition_penalty",
    "return_full_text",
    "seed",
    "stop",
    "temperature",
    "top_k",
    "top_n_tokens",
    "top_p",
    "truncate",
    "typical_p",
    "watermark",
];

fn read_generate(body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
    r.group(Role::User);
    r.object(body, &At::Root, |r, k, v, at| {
        match k {
            "inputs" => r.text(v, at, Kind::Content)?,
            "stream" => {}
            "parameters" => r.object(v, at, |r, k, v, at| {
                match k {
                    "grammar" => {
                        let role = r.role();
                        r.group(Role::ToolDefinition);
                        r.json(v, at, Kind::Schema);
                        r.group(role);
                    }
                    k if PARAMETERS.contains(&k) => {}
                    _ => return Ok(false),
                }
                Ok(true)
            })?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

const USAGE: UsageKeys = UsageKeys {
    prompt: &[b"\"input_length\":"],
    generated: &[b"\"generated_tokens\":"],
    events: &[b"\"token\":{"],
};

fn max_new(body: &Value) -> Option<u64> {
    body.get("parameters")
        .and_then(|p| util::uint(p, "max_new_tokens"))
}

fn best_of(body: &Value) -> u64 {
    body.get("parameters")
        .and_then(|p| util::uint(p, "best_of"))
        .unwrap_or(1)
        .max(1)
}

/// One `GenerateResponse` object.
fn answer_object(o: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
    let Some(obj) = o.as_object_mut() else {
        return cx.all(o, Kind::Other);
    };
    cx.text(obj.get_mut("generated_text"), Kind::Content)?;
    if let Some(d) = obj.get_mut("details").and_then(Value::as_object_mut) {
        if let Some(seqs) = d.get_mut("best_of_sequences").and_then(Value::as_array_mut) {
            for s in seqs.iter_mut() {
                if let Some(so) = s.as_object_mut() {
                    cx.text(so.get_mut("generated_text"), Kind::Content)?;
                    for k in ["tokens", "top_tokens", "prefill"] {
                        cx.strip(so.get_mut(k), json!([]));
                    }
                    cx.others(
                        so,
                        &[
                            "generated_text",
                            "finish_reason",
                            "generated_tokens",
                            "seed",
                            "tokens",
                            "top_tokens",
                            "prefill",
                        ],
                    )?;
                }
            }
        }
        for k in ["tokens", "top_tokens", "prefill"] {
            cx.strip(d.get_mut(k), json!([]));
        }
        cx.others(
            d,
            &[
                "finish_reason",
                "generated_tokens",
                "seed",
                "input_length",
                "best_of_sequences",
                "tokens",
                "top_tokens",
                "prefill",
            ],
        )?;
    }
    cx.others(obj, &["generated_text", "details"])
}

impl Protocol for Generate {
    fn adapter_member(&self) -> Option<super::AdapterMember> {
        Some(super::AdapterMember::AdapterId)
    }

    fn name(&self) -> &'static str {
        "tgi.generate"
    }
    fn dialect(&self) -> Dialect {
        Dialect::Tgi
    }
    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        read_generate(body, r)
    }
    fn max_new_tokens(&self, body: &Value) -> Option<u64> {
        max_new(body)
    }
    fn sequences(&self, body: &Value) -> u64 {
        best_of(body)
    }
    fn bound_members(&self) -> &'static [&'static [&'static str]] {
        &[
            &["parameters", "max_new_tokens"],
            &["parameters", "best_of"],
        ]
    }
    fn set_max_new_tokens(&self, body: &mut Value, n: u64) -> bool {
        let Some(o) = body.as_object_mut() else {
            return false;
        };
        let params = o
            .entry("parameters")
            .or_insert_with(|| Value::Object(Default::default()));
        if params.is_null() {
            *params = Value::Object(Default::default());
        }
        match params.as_object_mut() {
            Some(p) => {
                p.insert("max_new_tokens".into(), n.into());
                true
            }
            None => false,
        }
    }
    fn usage(&self) -> UsageKeys {
        USAGE
    }

    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        match answer {
            Value::Array(items) => items.iter_mut().try_for_each(|o| answer_object(o, cx)),
            other => answer_object(other, cx),
        }
    }

    fn event(
        &self,
        _name: Option<&str>,
        v: &mut Value,
        cx: &mut StreamCx<'_>,
    ) -> Result<(), Blocked> {
        const KEY: Key = Key(0, 0, 0);
        let special = v
            .pointer("/token/special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let text = v
            .pointer("/token/text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let last = v.get("generated_text").is_some_and(|g| !g.is_null())
            || v.get("details").is_some_and(|d| !d.is_null());
        let mut sent = if special {
            String::new()
        } else {
            cx.push(KEY, Kind::Content, &text)?
        };
        if last {
            let tail = cx.finish(KEY)?;
            if special {
                if !tail.is_empty() {
                    // held text goes out in its own token event before the special one
                    let mut extra = v.clone();
                    shape(&mut extra, &tail, false, cx);
                    if let Some(o) = extra.as_object_mut() {
                        o.insert("generated_text".into(), Value::Null);
                        o.insert("details".into(), Value::Null);
                    }
                    cx.before(None, extra);
                    cx.st.shift += 1;
                }
            } else {
                sent.push_str(&tail);
            }
        }
        let token_text = if special { text } else { sent };
        shape(v, &token_text, special, cx);
        if last && let Some(o) = v.as_object_mut() {
            o.insert(
                "generated_text".into(),
                Value::String(cx.sent(KEY).to_string()),
            );
        }
        if let Some(o) = v.as_object_mut() {
            cx.others(
                o,
                &["index", "token", "top_tokens", "generated_text", "details"],
            )?;
        }
        Ok(())
    }

    fn release(&self, _key: Key, text: &str, cx: &mut StreamCx<'_>) -> Vec<Frame> {
        let mut v = cx.st.template.clone().unwrap_or_else(|| {
            json!({"index": 0, "token": {"id": 0, "text": "", "logprob": 0.0, "special": false}, "generated_text": null, "details": null})
        });
        shape(&mut v, text, false, cx);
        if let Some(o) = v.as_object_mut() {
            o.insert("generated_text".into(), Value::Null);
            o.insert("details".into(), Value::Null);
        }
        cx.st.shift += 1;
        vec![Frame {
            event: None,
            data: v,
        }]
    }
}

/// Set a TGI event's token text, its shifted index, and empty its alternatives.
fn shape(v: &mut Value, text: &str, special: bool, cx: &StreamCx<'_>) {
    if let Some(t) = v.get_mut("token").and_then(Value::as_object_mut) {
        t.insert("text".into(), Value::String(text.to_string()));
        if !special {
            // a released tail (or a synthesized event) is ordinary text, never special
            t.insert("special".into(), Value::Bool(false));
        }
    }
    if let Some(i) = v.get("index").and_then(Value::as_i64) {
        v["index"] = Value::from(i + cx.st.shift);
    }
    cx.strip(v.get_mut("top_tokens"), json!([]));
}

impl Protocol for Tokenize {
    fn name(&self) -> &'static str {
        "tgi.tokenize"
    }
    fn dialect(&self) -> Dialect {
        Dialect::Tgi
    }
    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        read_generate(body, r)
    }
    fn usage(&self) -> UsageKeys {
        UsageKeys {
            prompt: &[],
            generated: &[],
            events: &[],
        }
    }
    fn answer(&self, _answer: &mut Value, _cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        Ok(())
    }
    fn event(&self, _: Option<&str>, _: &mut Value, _: &mut StreamCx<'_>) -> Result<(), Blocked> {
        Ok(())
    }
    fn release(&self, _: Key, _: &str, _: &mut StreamCx<'_>) -> Vec<Frame> {
        Vec::new()
    }
}

/// The family TGI's `/invocations` serves a body as. TGI tries, in order, a generate request
/// (a string `inputs`), a chat request (`messages`), a completion request (`prompt`), and
/// ignores the other members: a body with both `inputs` and `messages` is a *generate*
/// request, and its `messages` never reach the model (the generate reader then refuses them as
/// a field it does not know, under `unknown_fields: refuse`).
pub fn sagemaker(body: &Value) -> &'static dyn Protocol {
    if body.get("inputs").is_some_and(Value::is_string) {
        &Generate
    } else if body.get("messages").is_some() {
        &super::openai_chat::Chat
    } else if body.get("prompt").is_some() {
        &super::openai_completions::Completions
    } else {
        &Generate
    }
}
