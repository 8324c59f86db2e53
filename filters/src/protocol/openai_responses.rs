//! OpenAI Responses, `POST /v1/responses` (OpenAI, vLLM).
//!
//! Request, what reaches the model: `input` (a string, or items: messages with `input_text`,
//! `output_text`, `refusal`, `input_image` parts; `function_call` with `arguments`;
//! `function_call_output` with `output`, where indirect injection arrives; `reasoning`
//! summaries; custom tool calls and outputs), `instructions`, `tools` (flat function and custom
//! tools: `name`, `description`, every string of `parameters`), `text.format` (a JSON schema),
//! `prompt.variables`. Server-side tools (web search, file search, MCP, computer use), files
//! by id or URL and `input_file` data cannot be inspected. `previous_response_id` and
//! `conversation` point at earlier turns that passed the gateway when they were made.
//!
//! Answer: the response's `output[]` items (message `output_text` and `refusal` parts,
//! `function_call.arguments`, reasoning summary and content texts, custom tool input).
//! Stream: `event: <type>` events; text arrives in `*.delta` events keyed by
//! (`output_index`, `content_index` or `summary_index`); every `*.done` event, `content_part.done`,
//! `output_item.done` and the final `response.completed` repeat the whole text, so they are
//! rewritten to exactly what the deltas sent; held text goes out in a `*.delta` event inserted
//! before the `*.done` one, and `sequence_number`s after it shift by one.

use serde_json::{Map, Value, json};

use super::answer::{AnswerCx, Frame, Key, StreamCx};
use super::read::{Kind, Reader, Role, ShapeError, shown, type_name};
use super::{At, Dialect, ErrorInfo, Path, Protocol, StreamState, UsageKeys, util};
use crate::stream::Blocked;

/// `/v1/responses`.
#[derive(Debug, Clone, Copy)]
pub struct Responses;

const NO_TEXT: &[&str] = &[
    "model",
    "max_output_tokens",
    "previous_response_id",
    "conversation",
    "metadata",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "truncation",
    "user",
    "parallel_tool_calls",
    "max_tool_calls",
    "background",
    "include",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "top_logprobs",
    "prompt_cache_retention",
    "prompt_cache_options",
    "background_options",
    "moderation",
];

/// Settings whose strings are scanned anyway: a forced tool's name, reasoning options.
const SCANNED_SETTINGS: &[&str] = &["tool_choice", "reasoning"];

/// One content part (text pieces go to `texts`, read together as the message's parts).
fn read_part<'v>(
    r: &mut Reader,
    p: &'v Value,
    pat: &At<'_>,
    texts: &mut Vec<(Path, &'v str)>,
) -> Result<(), ShapeError> {
    let Some(o) = p.as_object() else {
        r.not_understood(
            p,
            pat,
            format!("a content part must be an object, found {}", type_name(p)),
        )?;
        return Ok(());
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
    let (text_key, known): (Option<&str>, &[&str]) = match ty {
        "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
            (Some("text"), &["type", "text", "annotations", "logprobs"])
        }
        "refusal" => (Some("refusal"), &["type", "refusal"]),
        "input_image" => (None, &["type", "image_url", "detail"]),
        "input_file" => (None, &["type", "filename"]),
        "" => {
            r.not_understood(p, pat, "a content part without a `type`")?;
            return Ok(());
        }
        other => {
            r.not_understood(
                p,
                pat,
                format!(
                    "content part type {} cannot be inspected by the gateway",
                    shown(other)
                ),
            )?;
            return Ok(());
        }
    };
    for (k, x) in o {
        let kp = pat.key(k);
        if !known.contains(&k.as_str()) {
            let why = match k.as_str() {
                "file_id" | "file_url" | "file_data" => {
                    "file content by id, URL or data cannot be inspected by the gateway"
                }
                _ => {
                    "the gateway does not know this field, so it cannot tell whether it reaches the model"
                }
            };
            r.not_understood(x, &kp, why)?;
            continue;
        }
        match k.as_str() {
            "annotations" | "logprobs" | "prompt_cache_breakpoint" => r.json(x, &kp, Kind::Other),
            "image_url" => r.text(x, &kp, Kind::Url)?,
            "filename" | "detail" => r.text(x, &kp, Kind::Name)?,
            _ => {}
        }
    }
    if let Some(key) = text_key {
        match o.get(key) {
            Some(Value::String(t)) => texts.push((pat.key(key).to_path(), t)),
            Some(other) => r.not_understood(
                other,
                &pat.key(key),
                format!("expected a string, found {}", type_name(other)),
            )?,
            None => r.not_understood(p, pat, "a text part without its text")?,
        }
    }
    Ok(())
}

fn read_parts(r: &mut Reader, v: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    let Value::Array(parts) = v else {
        return r.text(v, at, Kind::Content);
    };
    let mut texts: Vec<(Path, &str)> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        read_part(r, p, &at.index(i), &mut texts)?;
    }
    if !texts.is_empty() {
        r.parts(&texts, None, Kind::Content);
    }
    Ok(())
}

fn read_item(r: &mut Reader, item: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    let Some(o) = item.as_object() else {
        return r.not_understood(
            item,
            at,
            format!("an input item must be an object, found {}", type_name(item)),
        );
    };
    let ty = match o.get("type") {
        None => "message",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return r.not_understood(other, &at.key("type"), "expected a string");
        }
    };
    match ty {
        "message" => {
            let role = o
                .get("role")
                .and_then(Value::as_str)
                .and_then(Role::of_message)
                .filter(|r| !matches!(r, Role::Tool));
            let Some(role) = role else {
                return r.not_understood(item, &at.key("role"), "unknown or missing role");
            };
            r.group(role);
            r.object(item, at, |r, k, v, at| {
                match k {
                    "type" | "role" | "id" | "status" | "phase" => {}
                    "content" => read_parts(r, v, at)?,
                    _ => return Ok(false),
                }
                Ok(true)
            })
        }
        "function_call" | "custom_tool_call" => {
            r.group(Role::Assistant);
            r.object(item, at, |r, k, v, at| {
                match k {
                    "type" | "id" | "status" => {}
                    "name" | "namespace" => r.text(v, at, Kind::Name)?,
                    "call_id" => r.text(v, at, Kind::Id)?,
                    "arguments" => r.arguments(v, at)?,
                    // a custom tool's input is free text
                    "input" => r.text(v, at, Kind::Arguments)?,
                    _ => return Ok(false),
                }
                Ok(true)
            })
        }
        "function_call_output" | "custom_tool_call_output" => {
            r.group(Role::Tool);
            r.object(item, at, |r, k, v, at| {
                match k {
                    "type" | "id" | "status" => {}
                    "name" | "namespace" => r.text(v, at, Kind::Name)?,
                    "call_id" => r.text(v, at, Kind::Id)?,
                    "output" => read_parts(r, v, at)?,
                    _ => return Ok(false),
                }
                Ok(true)
            })
        }
        "reasoning" => {
            r.group(Role::Assistant);
            r.object(item, at, |r, k, v, at| {
                match k {
                    // opaque state the model provider encrypted: it carries no readable text
                    "type" | "id" | "status" | "encrypted_content" => {}
                    "summary" | "content" => read_parts(r, v, at)?,
                    _ => return Ok(false),
                }
                Ok(true)
            })
        }
        "item_reference" => r.object(item, at, |_, k, _, _| Ok(matches!(k, "type" | "id"))),
        other => r.not_understood(
            item,
            at,
            format!(
                "input item type {} cannot be inspected by the gateway",
                shown(other)
            ),
        ),
    }
}

fn read_tool(r: &mut Reader, t: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    r.group(Role::ToolDefinition);
    let ty = t.get("type").and_then(Value::as_str).unwrap_or("");
    if !matches!(ty, "function" | "custom") {
        return r.not_understood(
            t,
            at,
            format!(
                "tool type {} runs on the model provider's side; the gateway cannot inspect what it reads",
                shown(ty)
            ),
        );
    }
    r.object(t, at, |r, k, v, at| {
        match k {
            "type" | "strict" | "defer_loading" => {}
            "name" => r.text(v, at, Kind::Name)?,
            "description" => r.text(v, at, Kind::Other)?,
            "parameters" | "format" | "output_schema" | "allowed_callers" => {
                r.json(v, at, Kind::Schema)
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Stream fields: output text, refusal, function-call arguments, reasoning summary, reasoning
/// text, custom tool input.
const TEXT: u32 = 0;
const REFUSAL: u32 = 1;
const ARGS: u32 = 2;
const SUMMARY: u32 = 3;
const REASONING: u32 = 4;
const CUSTOM: u32 = 5;

/// `(delta event, done event, member of the done event, field, kind)`.
const STREAMED: [(&str, &str, &str, u32, Kind); 6] = [
    (
        "response.output_text.delta",
        "response.output_text.done",
        "text",
        TEXT,
        Kind::Content,
    ),
    (
        "response.refusal.delta",
        "response.refusal.done",
        "refusal",
        REFUSAL,
        Kind::Content,
    ),
    (
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "arguments",
        ARGS,
        Kind::Arguments,
    ),
    (
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "text",
        SUMMARY,
        Kind::Content,
    ),
    (
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "text",
        REASONING,
        Kind::Content,
    ),
    (
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "input",
        CUSTOM,
        Kind::Arguments,
    ),
];

fn key_of(v: &Value, field: u32) -> Key {
    let o = util::idx(v.get("output_index"), 0);
    let sub = match field {
        SUMMARY => util::idx(v.get("summary_index"), 0),
        ARGS | CUSTOM => 0,
        _ => util::idx(v.get("content_index"), 0),
    };
    Key(o, sub, field)
}

/// Event members that carry no text.
const EVENT_IDS: &[&str] = &[
    "type",
    "sequence_number",
    "item_id",
    "output_index",
    "content_index",
    "summary_index",
    "annotation_index",
    "obfuscation",
];

/// A `*.delta` event carrying `text` for `key` (held text released by the gateway).
fn delta_event(key: Key, text: &str, cx: &mut StreamCx<'_>) -> Value {
    let Some((name, _, _, field, _)) = STREAMED.iter().find(|s| s.3 == key.2) else {
        return json!({});
    };
    let item_id = cx
        .st
        .notes
        .get(&key.0)
        .cloned()
        .map_or(Value::Null, Value::String);
    let mut v = json!({"type": name, "item_id": item_id, "output_index": key.0, "delta": text});
    match *field {
        SUMMARY => v["summary_index"] = key.1.into(),
        ARGS | CUSTOM => {}
        _ => v["content_index"] = key.1.into(),
    }
    if *field == TEXT {
        v["logprobs"] = json!([]);
    }
    v
}

/// The final text of a streamed field: what its deltas sent (the held tail goes out in a
/// delta event first); a field that never streamed is filtered whole.
fn settle(
    slot: Option<&mut Value>,
    key: Key,
    kind: Kind,
    cx: &mut StreamCx<'_>,
) -> Result<(), Blocked> {
    let Some(slot) = slot else {
        return Ok(());
    };
    if cx.kind(key).is_none() {
        return cx.whole(Some(slot), kind);
    }
    let tail = cx.finish(key)?;
    if !tail.is_empty() {
        let ev = delta_event(key, &tail, cx);
        let name = ev["type"].as_str().map(str::to_string);
        cx.before(name.as_deref(), ev);
    }
    *slot = Value::String(cx.sent(key).to_string());
    Ok(())
}

/// An output item in a stream's `output_item.done` or final response.
fn settle_item(o: u32, item: &mut Value, cx: &mut StreamCx<'_>) -> Result<(), Blocked> {
    let ty = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(obj) = item.as_object_mut() else {
        return cx.whole(Some(item), Kind::Other);
    };
    match ty.as_str() {
        "message" => {
            if let Some(parts) = obj.get_mut("content").and_then(Value::as_array_mut) {
                for (c, p) in parts.iter_mut().enumerate() {
                    let c = u32::try_from(c).unwrap_or(u32::MAX - 1);
                    let Some(po) = p.as_object_mut() else {
                        continue;
                    };
                    settle(po.get_mut("text"), Key(o, c, TEXT), Kind::Content, cx)?;
                    settle(po.get_mut("refusal"), Key(o, c, REFUSAL), Kind::Content, cx)?;
                    cx.strip(po.get_mut("logprobs"), json!([]));
                    cx.others(po, &["type", "text", "refusal", "logprobs"])?;
                }
            }
            cx.others(obj, &["type", "id", "role", "status", "content", "phase"])
        }
        "function_call" | "custom_tool_call" => {
            let (member, field) = if ty == "function_call" {
                ("arguments", ARGS)
            } else {
                ("input", CUSTOM)
            };
            settle(obj.get_mut(member), Key(o, 0, field), Kind::Arguments, cx)?;
            cx.whole(obj.get_mut("name"), Kind::Name)?;
            cx.others(
                obj,
                &[
                    "type",
                    "id",
                    "call_id",
                    "status",
                    "name",
                    member,
                    "namespace",
                ],
            )
        }
        "reasoning" => {
            for (member, field) in [("summary", SUMMARY), ("content", REASONING)] {
                if let Some(parts) = obj.get_mut(member).and_then(Value::as_array_mut) {
                    for (s, p) in parts.iter_mut().enumerate() {
                        let s = u32::try_from(s).unwrap_or(u32::MAX - 1);
                        if let Some(po) = p.as_object_mut() {
                            settle(po.get_mut("text"), Key(o, s, field), Kind::Content, cx)?;
                            cx.others(po, &["type", "text"])?;
                        }
                    }
                }
            }
            cx.others(
                obj,
                &[
                    "type",
                    "id",
                    "status",
                    "summary",
                    "content",
                    "encrypted_content",
                ],
            )
        }
        _ => cx.whole(Some(item), Kind::Other),
    }
}

/// Response-object members that carry no generated text.
const RESPONSE: &[&str] = &[
    "id",
    "object",
    "created_at",
    "completed_at",
    "status",
    "model",
    "output",
    "usage",
    "incomplete_details",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "max_tool_calls",
    "previous_response_id",
    "reasoning",
    "store",
    "temperature",
    "top_p",
    "top_logprobs",
    "truncation",
    "metadata",
    "service_tier",
    "background",
    "user",
    "text",
    "conversation",
    "safety_identifier",
    "prompt_cache_key",
];

fn settle_response(r: &mut Value, cx: &mut StreamCx<'_>) -> Result<(), Blocked> {
    let Some(o) = r.as_object_mut() else {
        return cx.whole(Some(r), Kind::Other);
    };
    if let Some(items) = o.get_mut("output").and_then(Value::as_array_mut) {
        for (i, item) in items.iter_mut().enumerate() {
            settle_item(u32::try_from(i).unwrap_or(u32::MAX - 1), item, cx)?;
        }
    }
    cx.others(o, RESPONSE)
}

fn answer_item(item: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
    let ty = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(obj) = item.as_object_mut() else {
        return cx.all(item, Kind::Other);
    };
    match ty.as_str() {
        "message" => {
            if let Some(parts) = obj.get_mut("content").and_then(Value::as_array_mut) {
                for p in parts.iter_mut() {
                    let Some(po) = p.as_object_mut() else {
                        cx.all(p, Kind::Other)?;
                        continue;
                    };
                    cx.text(po.get_mut("text"), Kind::Content)?;
                    cx.text(po.get_mut("refusal"), Kind::Content)?;
                    cx.strip(po.get_mut("logprobs"), json!([]));
                    cx.others(po, &["type", "text", "refusal", "logprobs"])?;
                }
            }
            cx.others(obj, &["type", "id", "role", "status", "content", "phase"])
        }
        "function_call" | "custom_tool_call" => {
            cx.text(obj.get_mut("arguments"), Kind::Arguments)?;
            cx.text(obj.get_mut("input"), Kind::Arguments)?;
            cx.text(obj.get_mut("name"), Kind::Name)?;
            cx.others(
                obj,
                &[
                    "type",
                    "id",
                    "call_id",
                    "status",
                    "name",
                    "arguments",
                    "input",
                    "namespace",
                ],
            )
        }
        "reasoning" => {
            for member in ["summary", "content"] {
                if let Some(parts) = obj.get_mut(member).and_then(Value::as_array_mut) {
                    for p in parts.iter_mut() {
                        if let Some(po) = p.as_object_mut() {
                            cx.text(po.get_mut("text"), Kind::Content)?;
                            cx.others(po, &["type", "text"])?;
                        }
                    }
                }
            }
            cx.others(
                obj,
                &[
                    "type",
                    "id",
                    "status",
                    "summary",
                    "content",
                    "encrypted_content",
                ],
            )
        }
        _ => cx.all(item, Kind::Other),
    }
}

impl Protocol for Responses {
    fn adapter_member(&self) -> Option<super::AdapterMember> {
        Some(super::AdapterMember::Model)
    }

    fn name(&self) -> &'static str {
        "openai.responses"
    }
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        r.object(body, &At::Root, |r, k, v, at| {
            match k {
                "input" => match v {
                    Value::String(_) => {
                        r.group(Role::User);
                        r.text(v, at, Kind::Content)?
                    }
                    _ => r.array(v, at, |r, _, item, at| read_item(r, item, at))?,
                },
                "instructions" => {
                    r.group(Role::System);
                    r.text(v, at, Kind::Content)?
                }
                k if SCANNED_SETTINGS.contains(&k) => {
                    r.group(Role::ToolDefinition);
                    r.json(v, at, Kind::Other)
                }
                "tools" => r.array(v, at, |r, _, t, at| read_tool(r, t, at))?,
                "text" => r.object(v, at, |r, k, v, at| {
                    match k {
                        "format" => {
                            r.group(Role::ToolDefinition);
                            r.json(v, at, Kind::Schema)
                        }
                        "verbosity" => {}
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?,
                "prompt" => r.object(v, at, |r, k, v, at| {
                    match k {
                        "id" | "version" => {}
                        // a variable is a string or one input part (text, image, file)
                        "variables" => r.object(v, at, |r, _, x, at| {
                            r.group(Role::User);
                            match x {
                                Value::String(_) => r.text(x, at, Kind::Content)?,
                                _ => {
                                    let mut texts = Vec::new();
                                    read_part(r, x, at, &mut texts)?;
                                    if !texts.is_empty() {
                                        r.parts(&texts, None, Kind::Content);
                                    }
                                }
                            }
                            Ok(true)
                        })?,
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
        util::uint(body, "max_output_tokens")
    }
    fn bound_members(&self) -> &'static [&'static [&'static str]] {
        &[&["max_output_tokens"]]
    }
    fn set_max_new_tokens(&self, body: &mut Value, n: u64) -> bool {
        util::set_uint(body, &[], &["max_output_tokens"], n)
    }

    fn usage(&self) -> UsageKeys {
        UsageKeys {
            prompt: &[b"\"input_tokens\":"],
            generated: &[b"\"output_tokens\":"],
            events: &[b"\"response.output_text.delta\""],
        }
    }

    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        let Some(o) = answer.as_object_mut() else {
            return cx.all(answer, Kind::Other);
        };
        if let Some(items) = o.get_mut("output").and_then(Value::as_array_mut) {
            for item in items.iter_mut() {
                answer_item(item, cx)?;
            }
        }
        // `output_text` is an SDK convenience, but a server may send it
        cx.text(o.get_mut("output_text"), Kind::Content)?;
        cx.others(o, RESPONSE)
    }

    fn event(
        &self,
        _name: Option<&str>,
        v: &mut Value,
        cx: &mut StreamCx<'_>,
    ) -> Result<(), Blocked> {
        let base = v.get("sequence_number").and_then(Value::as_i64);
        let r = self.filter_event(v, cx);
        // events the gateway inserted before this one take its number; it and every later
        // event move up
        if let Some(n) = base {
            let mut next = n + cx.st.shift;
            for f in cx.st.queued() {
                f.data["sequence_number"] = next.into();
                next += 1;
            }
            cx.st.shift = next - n;
            v["sequence_number"] = next.into();
            cx.st.last_seq = Some(next);
        }
        r
    }

    fn release(&self, key: Key, text: &str, cx: &mut StreamCx<'_>) -> Vec<Frame> {
        let mut v = delta_event(key, text, cx);
        let next = cx.st.last_seq.map_or(0, |s| s + 1);
        v["sequence_number"] = next.into();
        cx.st.last_seq = Some(next);
        cx.st.shift += 1;
        vec![Frame {
            event: v["type"].as_str().map(str::to_string),
            data: v,
        }]
    }

    fn blocked_answer(&self, answer: &mut Value, e: &ErrorInfo) -> bool {
        let Some(o) = answer.as_object_mut() else {
            return false;
        };
        o.insert("status".into(), "incomplete".into());
        o.insert(
            "incomplete_details".into(),
            json!({"reason": "content_filter"}),
        );
        o.insert("output".into(), json!([]));
        o.remove("output_text");
        o.insert(
            "portcullis_error".into(),
            json!({"message": e.message, "code": e.code}),
        );
        true
    }

    fn error_event(&self, e: &ErrorInfo, st: Option<&StreamState>) -> Vec<u8> {
        let seq = st.and_then(|s| s.last_seq).map_or(0, |s| s + 1);
        let client = (400..500).contains(&e.status);
        let mut err = Map::new();
        err.insert(
            "type".into(),
            if client {
                "invalid_request_error"
            } else {
                "server_error"
            }
            .into(),
        );
        err.insert("code".into(), e.code.into());
        err.insert("message".into(), e.message.clone().into());
        err.insert("param".into(), Value::Null);
        let v = json!({
            "type": "error",
            "sequence_number": seq,
            "code": e.code,
            "message": e.message,
            "param": null,
            "error": err,
        });
        format!("event: error\ndata: {v}\n\n").into_bytes()
    }
}

impl Responses {
    fn filter_event(&self, v: &mut Value, cx: &mut StreamCx<'_>) -> Result<(), Blocked> {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(&(_, _, _, field, kind)) = STREAMED.iter().find(|s| s.0 == ty) {
            let key = key_of(v, field);
            if let Some(Value::String(d)) = v.get("delta") {
                let d = d.clone();
                let out = cx.push(key, kind, &d)?;
                v["delta"] = Value::String(out);
            }
            cx.strip(v.get_mut("logprobs"), json!([]));
            if let Some(o) = v.as_object_mut() {
                cx.others(o, &[EVENT_IDS, &["delta", "logprobs"]].concat())?;
            }
            return Ok(());
        }
        if let Some(&(_, _, member, field, kind)) = STREAMED.iter().find(|s| s.1 == ty) {
            let key = key_of(v, field);
            if cx.kind(key).is_some() {
                let tail = cx.finish(key)?;
                if !tail.is_empty() {
                    let mut ev = v.clone();
                    if let Some(o) = ev.as_object_mut() {
                        o.remove(member);
                        o.insert(
                            "type".into(),
                            STREAMED
                                .iter()
                                .find(|s| s.1 == ty)
                                .map_or("", |s| s.0)
                                .into(),
                        );
                        o.insert("delta".into(), Value::String(tail));
                        if field == TEXT {
                            o.insert("logprobs".into(), json!([]));
                        }
                    }
                    let name = ev["type"].as_str().map(str::to_string);
                    cx.before(name.as_deref(), ev);
                }
                v[member] = Value::String(cx.sent(key).to_string());
            } else {
                cx.whole(v.get_mut(member), kind)?;
            }
            cx.strip(v.get_mut("logprobs"), json!([]));
            if let Some(o) = v.as_object_mut() {
                cx.others(o, &[EVENT_IDS, &[member, "logprobs", "name"]].concat())?;
                cx.whole(o.get_mut("name"), Kind::Name)?;
            }
            return Ok(());
        }
        match ty.as_str() {
            "response.output_item.added" | "response.output_item.done" => {
                let o = util::idx(v.get("output_index"), 0);
                if let Some(id) = v.pointer("/item/id").and_then(Value::as_str) {
                    cx.st.notes.insert(o, id.to_string());
                }
                if let Some(item) = v.get_mut("item") {
                    if ty.ends_with(".done") {
                        settle_item(o, item, cx)?;
                    } else {
                        cx.whole(Some(item), Kind::Other)?;
                    }
                }
                if let Some(obj) = v.as_object_mut() {
                    cx.others(obj, &[EVENT_IDS, &["item"]].concat())?;
                }
            }
            "response.content_part.added" | "response.content_part.done" => {
                let o = util::idx(v.get("output_index"), 0);
                let c = util::idx(v.get("content_index"), 0);
                if let Some(part) = v.get_mut("part").and_then(Value::as_object_mut) {
                    if ty.ends_with(".done") {
                        settle(part.get_mut("text"), Key(o, c, TEXT), Kind::Content, cx)?;
                        settle(
                            part.get_mut("refusal"),
                            Key(o, c, REFUSAL),
                            Kind::Content,
                            cx,
                        )?;
                        cx.strip(part.get_mut("logprobs"), json!([]));
                        cx.others(part, &["type", "text", "refusal", "logprobs"])?;
                    } else {
                        let mut p = Value::Object(std::mem::take(part));
                        cx.whole(Some(&mut p), Kind::Other)?;
                        if let Value::Object(m) = p {
                            *part = m;
                        }
                    }
                }
                if let Some(obj) = v.as_object_mut() {
                    cx.others(obj, &[EVENT_IDS, &["part"]].concat())?;
                }
            }
            "response.reasoning_summary_part.added" | "response.reasoning_summary_part.done" => {
                let o = util::idx(v.get("output_index"), 0);
                let s = util::idx(v.get("summary_index"), 0);
                if let Some(part) = v.get_mut("part").and_then(Value::as_object_mut) {
                    if ty.ends_with(".done") {
                        settle(part.get_mut("text"), Key(o, s, SUMMARY), Kind::Content, cx)?;
                    } else {
                        cx.whole(part.get_mut("text"), Kind::Content)?;
                    }
                    cx.others(part, &["type", "text"])?;
                }
                if let Some(obj) = v.as_object_mut() {
                    cx.others(obj, &[EVENT_IDS, &["part"]].concat())?;
                }
            }
            "response.created"
            | "response.in_progress"
            | "response.queued"
            | "response.completed"
            | "response.failed"
            | "response.incomplete" => {
                if let Some(r) = v.get_mut("response") {
                    settle_response(r, cx)?;
                }
                if let Some(obj) = v.as_object_mut() {
                    cx.others(obj, &[EVENT_IDS, &["response"]].concat())?;
                }
            }
            _ => {
                if let Some(obj) = v.as_object_mut() {
                    cx.others(obj, EVENT_IDS)?;
                }
            }
        }
        Ok(())
    }
}
