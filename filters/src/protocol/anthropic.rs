//! Anthropic Messages, `POST /v1/messages` (Anthropic, vLLM, and servers that copy it).
//!
//! Request, what reaches the model: `system` (a string or text blocks), `messages[].content`
//! (a string or blocks: `text`, `tool_use` (`name`, every string of `input`), `tool_result`
//! (string or blocks: where indirect injection arrives), `thinking`, `document` with a text or
//! content source, `search_result`, `image` with a URL), `tools[]` (`name`, `description`,
//! every string of `input_schema` and `input_examples`), `tool_choice.name`,
//! `output_config.format`. PDFs and documents by URL or file id, server tools and server tool
//! results cannot be inspected; base64 images are pixels, not text, and pass (the gateway does
//! not read images).
//!
//! Answer: `content[]` blocks (`text`, `thinking`, every string of `tool_use.input`),
//! `stop_details.explanation`, `stop_sequence`. Stream: `event:`-named events; text arrives in
//! `content_block_delta` (`text_delta.text`, `input_json_delta.partial_json`,
//! `thinking_delta.thinking`) keyed by the block `index`; held text goes out in a
//! `content_block_delta` inserted before the block's `content_block_stop`.

use serde_json::{Map, Value, json};

use super::answer::{AnswerCx, Frame, Key, StreamCx};
use super::read::{Kind, Reader, Role, ShapeError, shown, type_name};
use super::{At, Dialect, ErrorInfo, Path, Protocol, UsageKeys, util};
use crate::stream::Blocked;

/// `/v1/messages`.
#[derive(Debug, Clone, Copy)]
pub struct Messages;

const NO_TEXT: &[&str] = &[
    "model",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "metadata",
    "thinking",
    "service_tier",
    "container",
    "inference_geo",
    "cache_control",
    "speed",
    "user_profile_id",
    "workspace_id",
];

/// Blocks of a `content` list (or of a `tool_result`, a document's content, `system`).
fn read_blocks(r: &mut Reader, v: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    let Value::Array(blocks) = v else {
        return r.text(v, at, Kind::Content);
    };
    let mut texts: Vec<(Path, &str)> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let bat = at.index(i);
        let Some(o) = b.as_object() else {
            r.not_understood(
                b,
                &bat,
                format!("a content block must be an object, found {}", type_name(b)),
            )?;
            continue;
        };
        let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "text" => {
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        "type" | "cache_control" => {}
                        "text" if v.is_string() => {}
                        "text" => r.not_understood(
                            v,
                            at,
                            format!("expected a string, found {}", type_name(v)),
                        )?,
                        "citations" => r.json(v, at, Kind::Other),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                if let Some(Value::String(t)) = o.get("text") {
                    texts.push((bat.key("text").to_path(), t));
                }
            }
            "image" => {
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        "type" | "cache_control" => {}
                        "source" => r.object(v, at, |r, k, v, at| {
                            match k {
                                // the base64 bytes of an image: pixels, not text
                                "data" => {}
                                "type" => match v.as_str() {
                                    Some("base64" | "url") => {}
                                    _ => r.not_understood(
                                        v,
                                        at,
                                        "an image source the gateway does not know",
                                    )?,
                                },
                                "media_type" => r.text(v, at, Kind::Other)?,
                                "url" => r.text(v, at, Kind::Url)?,
                                "file_id" => r.not_understood(
                                    v,
                                    at,
                                    "a file by id cannot be inspected by the gateway",
                                )?,
                                _ => return Ok(false),
                            }
                            Ok(true)
                        })?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            "document" => {
                let role = r.role();
                r.group(Role::Document);
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        "type" | "cache_control" => {}
                        "citations" => r.json(v, at, Kind::Other),
                        "title" | "context" => r.text(v, at, Kind::Other)?,
                        "source" => {
                            let st = v.get("type").and_then(Value::as_str).unwrap_or("");
                            match st {
                                "text" => r.object(v, at, |r, k, v, at| {
                                    match k {
                                        "type" => {}
                                        "media_type" => r.text(v, at, Kind::Other)?,
                                        "data" => r.text(v, at, Kind::Content)?,
                                        _ => return Ok(false),
                                    }
                                    Ok(true)
                                })?,
                                "content" => r.object(v, at, |r, k, v, at| {
                                    match k {
                                        "type" => {}
                                        "content" => read_blocks(r, v, at)?,
                                        _ => return Ok(false),
                                    }
                                    Ok(true)
                                })?,
                                other => r.not_understood(
                                    v,
                                    at,
                                    format!("a document source of type {} cannot be inspected by the gateway", shown(other)),
                                )?,
                            }
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                r.group(role);
            }
            "search_result" => {
                let role = r.role();
                r.group(Role::Document);
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        "type" | "cache_control" => {}
                        "citations" => r.json(v, at, Kind::Other),
                        "source" | "title" => r.text(v, at, Kind::Other)?,
                        "content" => read_blocks(r, v, at)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                r.group(role);
            }
            "tool_use" => {
                let role = r.role();
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        "type" | "cache_control" => {}
                        "id" => r.text(v, at, Kind::Id)?,
                        "caller" => r.json(v, at, Kind::Other),
                        "name" => r.text(v, at, Kind::Name)?,
                        "input" => r.json(v, at, Kind::Arguments),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                r.group(role);
            }
            "tool_result" => {
                let role = r.role();
                r.group(Role::Tool);
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        "type" | "is_error" | "cache_control" => {}
                        "tool_use_id" => r.text(v, at, Kind::Id)?,
                        "content" => read_blocks(r, v, at)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                r.group(role);
            }
            "thinking" => {
                r.object(b, &bat, |r, k, v, at| {
                    match k {
                        // a signature the provider checks: no readable text
                        "type" | "signature" => {}
                        "thinking" => r.text(v, at, Kind::Content)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            // encrypted by the provider; it carries nothing readable
            "redacted_thinking" => {
                r.object(b, &bat, |_, k, _, _| Ok(matches!(k, "type" | "data")))?;
            }
            "" => r.not_understood(b, &bat, "a content block without a `type`")?,
            other => r.not_understood(
                b,
                &bat,
                format!(
                    "content block type {} cannot be inspected by the gateway",
                    shown(other)
                ),
            )?,
        }
    }
    if !texts.is_empty() {
        r.parts(&texts, None, Kind::Content);
    }
    Ok(())
}

fn read_tool(r: &mut Reader, t: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    r.group(Role::ToolDefinition);
    match t.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(other) => {
            return r.not_understood(
                t,
                at,
                format!(
                    "tool type {} runs on the provider's side; the gateway cannot inspect what it reads",
                    shown(other)
                ),
            );
        }
    }
    r.object(t, at, |r, k, v, at| {
        match k {
            "type" | "cache_control" | "strict" | "defer_loading" | "eager_input_streaming" => {}
            "name" => r.text(v, at, Kind::Name)?,
            "description" => r.text(v, at, Kind::Other)?,
            "input_schema" | "input_examples" | "allowed_callers" => r.json(v, at, Kind::Schema),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Fields of a content block in a stream: text, tool input JSON, thinking.
const TEXT: u32 = 0;
const INPUT_JSON: u32 = 1;
const THINKING: u32 = 2;

fn delta_event(key: Key, text: &str) -> Value {
    let delta = match key.2 {
        INPUT_JSON => json!({"type": "input_json_delta", "partial_json": text}),
        THINKING => json!({"type": "thinking_delta", "thinking": text}),
        _ => json!({"type": "text_delta", "text": text}),
    };
    json!({"type": "content_block_delta", "index": key.0, "delta": delta})
}

fn answer_block(b: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
    let ty = b
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(o) = b.as_object_mut() else {
        return cx.all(b, Kind::Other);
    };
    match ty.as_str() {
        "text" => {
            cx.text(o.get_mut("text"), Kind::Content)?;
            if let Some(c) = o.get_mut("citations") {
                cx.all(c, Kind::Other)?;
            }
            cx.others(o, &["type", "text", "citations"])
        }
        "thinking" => {
            cx.text(o.get_mut("thinking"), Kind::Content)?;
            cx.others(o, &["type", "thinking", "signature"])
        }
        "redacted_thinking" => cx.others(o, &["type", "data"]),
        "tool_use" | "server_tool_use" => {
            cx.text(o.get_mut("name"), Kind::Name)?;
            if let Some(i) = o.get_mut("input") {
                cx.all(i, Kind::Other)?;
            }
            cx.others(o, &["type", "id", "name", "input", "caller"])
        }
        _ => cx.all(b, Kind::Other),
    }
}

/// Message members that carry no generated text.
const MESSAGE: &[&str] = &[
    "id",
    "type",
    "role",
    "model",
    "content",
    "stop_reason",
    "usage",
    "container",
    "stop_details",
    "stop_sequence",
];

fn answer_message(o: &mut Map<String, Value>, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
    if let Some(blocks) = o.get_mut("content").and_then(Value::as_array_mut) {
        for b in blocks.iter_mut() {
            answer_block(b, cx)?;
        }
    }
    if let Some(d) = o.get_mut("stop_details").and_then(Value::as_object_mut) {
        cx.text(d.get_mut("explanation"), Kind::Other)?;
    }
    cx.text(o.get_mut("stop_sequence"), Kind::Other)?;
    cx.others(o, MESSAGE)
}

impl Protocol for Messages {
    fn adapter_member(&self) -> Option<super::AdapterMember> {
        Some(super::AdapterMember::Model)
    }

    fn name(&self) -> &'static str {
        "anthropic.messages"
    }
    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        r.object(body, &At::Root, |r, k, v, at| {
            match k {
                "system" => {
                    r.group(Role::System);
                    read_blocks(r, v, at)?
                }
                "messages" => r.array(v, at, |r, _, m, at| {
                    let role = m.get("role").and_then(Value::as_str);
                    let role = match role {
                        Some("user") => Role::User,
                        Some("assistant") => Role::Assistant,
                        Some("system") => Role::System,
                        Some(other) => {
                            return r.not_understood(
                                m,
                                &at.key("role"),
                                format!("unknown role {}", shown(other)),
                            );
                        }
                        None => return r.not_understood(m, at, "a message without a role"),
                    };
                    r.group(role);
                    r.object(m, at, |r, k, v, at| {
                        match k {
                            "role" => {}
                            "content" => read_blocks(r, v, at)?,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })
                })?,
                "tools" => r.array(v, at, |r, _, t, at| read_tool(r, t, at))?,
                "tool_choice" => r.object(v, at, |r, k, v, at| {
                    match k {
                        "type" | "disable_parallel_tool_use" => {}
                        "name" => {
                            r.group(Role::ToolDefinition);
                            r.text(v, at, Kind::Name)?
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?,
                "output_config" => r.object(v, at, |r, k, v, at| {
                    match k {
                        "effort" => {}
                        "format" => {
                            r.group(Role::ToolDefinition);
                            r.json(v, at, Kind::Schema)
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?,
                k if NO_TEXT.contains(&k) => {}
                _ => return Ok(false),
            }
            Ok(true)
        })
    }

    fn max_new_tokens(&self, body: &Value) -> Option<u64> {
        util::uint(body, "max_tokens")
    }
    fn bound_members(&self) -> &'static [&'static [&'static str]] {
        &[&["max_tokens"]]
    }
    fn set_max_new_tokens(&self, body: &mut Value, n: u64) -> bool {
        util::set_uint(body, &[], &["max_tokens"], n)
    }

    fn usage(&self) -> UsageKeys {
        UsageKeys {
            prompt: &[b"\"input_tokens\":"],
            generated: &[b"\"output_tokens\":"],
            events: &[b"\"content_block_delta\""],
        }
    }

    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        match answer.as_object_mut() {
            Some(o) => answer_message(o, cx),
            None => cx.all(answer, Kind::Other),
        }
    }

    fn event(
        &self,
        _name: Option<&str>,
        v: &mut Value,
        cx: &mut StreamCx<'_>,
    ) -> Result<(), Blocked> {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let index = util::idx(v.get("index"), 0);
        match ty.as_str() {
            "content_block_delta" => {
                let dty = v
                    .pointer("/delta/type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let (member, field, kind) = match dty.as_str() {
                    "text_delta" => ("text", TEXT, Kind::Content),
                    "input_json_delta" => ("partial_json", INPUT_JSON, Kind::Arguments),
                    "thinking_delta" => ("thinking", THINKING, Kind::Content),
                    "signature_delta" => return Ok(()),
                    _ => {
                        // citations and deltas added later: filtered whole
                        return cx.whole(v.get_mut("delta"), Kind::Other);
                    }
                };
                if let Some(d) = v.get_mut("delta").and_then(Value::as_object_mut) {
                    if let Some(Value::String(t)) = d.get(member) {
                        let t = t.clone();
                        let out = cx.push(Key(index, 0, field), kind, &t)?;
                        d.insert(member.into(), Value::String(out));
                    }
                    cx.others(d, &["type", member])?;
                }
            }
            "content_block_stop" => {
                let keys: Vec<Key> = cx
                    .st
                    .open_keys()
                    .into_iter()
                    .filter(|k| k.0 == index)
                    .collect();
                for k in keys {
                    let tail = cx.finish(k)?;
                    if !tail.is_empty() {
                        cx.before(Some("content_block_delta"), delta_event(k, &tail));
                    }
                }
            }
            "content_block_start" => {
                if let Some(b) = v.get_mut("content_block") {
                    let bty = b
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    // text a block starts with goes through the block's stream guard
                    let start = match bty.as_str() {
                        "text" => Some(("text", TEXT, Kind::Content)),
                        "thinking" => Some(("thinking", THINKING, Kind::Content)),
                        _ => None,
                    };
                    if let Some((member, field, kind)) = start
                        && let Some(o) = b.as_object_mut()
                    {
                        if let Some(Value::String(t)) = o.get(member)
                            && !t.is_empty()
                        {
                            let t = t.clone();
                            let out = cx.push(Key(index, 0, field), kind, &t)?;
                            o.insert(member.into(), Value::String(out));
                        }
                        cx.others(o, &["type", member, "signature", "citations"])?;
                    } else {
                        cx.whole(Some(b), Kind::Other)?;
                    }
                }
            }
            "message_start" => {
                if let Some(m) = v.get_mut("message").and_then(Value::as_object_mut) {
                    if let Some(blocks) = m.get_mut("content") {
                        cx.whole(Some(blocks), Kind::Other)?;
                    }
                    cx.others(m, MESSAGE)?;
                }
            }
            "message_delta" => {
                if let Some(d) = v.get_mut("delta").and_then(Value::as_object_mut) {
                    if let Some(sd) = d.get_mut("stop_details") {
                        cx.whole(Some(sd), Kind::Other)?;
                    }
                    cx.whole(d.get_mut("stop_sequence"), Kind::Other)?;
                    cx.others(
                        d,
                        &["stop_reason", "stop_sequence", "stop_details", "container"],
                    )?;
                }
            }
            "message_stop" | "ping" => {}
            _ => {
                if let Some(o) = v.as_object_mut() {
                    cx.others(o, &["type", "index"])?;
                }
            }
        }
        if let Some(o) = v.as_object_mut() {
            cx.others(
                o,
                &[
                    "type",
                    "index",
                    "delta",
                    "content_block",
                    "message",
                    "usage",
                ],
            )?;
        }
        Ok(())
    }

    fn release(&self, key: Key, text: &str, _cx: &mut StreamCx<'_>) -> Vec<Frame> {
        vec![Frame {
            event: Some("content_block_delta".into()),
            data: delta_event(key, text),
        }]
    }

    fn blocked_answer(&self, answer: &mut Value, e: &ErrorInfo) -> bool {
        let Some(o) = answer.as_object_mut() else {
            return false;
        };
        o.insert("content".into(), json!([]));
        o.insert("stop_reason".into(), "refusal".into());
        o.insert("stop_sequence".into(), Value::Null);
        o.insert(
            "portcullis_error".into(),
            json!({"message": e.message, "code": e.code}),
        );
        true
    }
}
