//! OpenAI Chat Completions, `POST /v1/chat/completions`, as OpenAI, TGI's Messages API and
//! vLLM speak it.
//!
//! Request, what reaches the model:
//! * `messages[]` by role (`system`, `developer`, `user`, `assistant`, `tool`, `function`):
//!   `content` (a string, or parts: `text`, `image_url`, `refusal`, and vLLM's `input_text`,
//!   `output_text`, `thinking` and bare strings), `name`, assistant `tool_calls[].function`
//!   (`name`, `arguments`) and `function_call`, `refusal`, vLLM's `reasoning` /
//!   `reasoning_content`. Parts are read the two ways backends join them: TGI concatenates them
//!   with `""` and writes an image as the markdown text `![](url)`; vLLM joins text parts with
//!   `"\n"`. Audio and file parts cannot be inspected.
//! * `tools[]` (function: `name`, `description`, every string of `parameters`; custom tools),
//!   `functions[]`, `response_format`, `prediction`, TGI's `tool_prompt`, vLLM's `documents`,
//!   `chat_template_kwargs`, `structured_outputs` and the older `guided_*`. Tool-call
//!   arguments are read with their `\uXXXX` escapes decoded (the backend decodes them).
//! * Not understood (refused under `unknown_fields: refuse`): a request `chat_template` (a
//!   Jinja program: the text it renders cannot be read from it), and audio output
//!   (`modalities` other than `text`, `audio`): spoken words cannot be filtered.
//!
//! Answer: `choices[].message` `content`, `refusal`, `reasoning`/`reasoning_content`,
//! `tool_calls[].function.arguments` (JSON in a string: originals put back are escaped) and
//! `name`, `function_call`, `audio.transcript`, `annotations`; `logprobs` nulled, vLLM's
//! `token_ids` (the answer's tokens, which decode to the unfiltered text) removed. Stream:
//! `choices[].delta` with the same fields, tool-call arguments keyed by the call's `index`;
//! held text goes out in the chunk that carries the choice's `finish_reason`.

use serde_json::{Map, Value, json};

use super::answer::{AnswerCx, Frame, Key, StreamCx};
use super::read::{Kind, Piece, Reader, Role, ShapeError, shown, type_name};
use super::{At, Dialect, Path, Protocol, UsageKeys, util};
use crate::stream::Blocked;

/// `/v1/chat/completions`.
#[derive(Debug, Clone, Copy)]
pub struct Chat;

/// `/chat_tokenize` (TGI): read like a chat request; the answer (the templated prompt and its
/// tokens, as forwarded) passes as is.
#[derive(Debug, Clone, Copy)]
pub struct ChatTokenize;

/// Top-level members that carry no text to the model.
const NO_TEXT: &[&str] = &[
    "model",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "metadata",
    "store",
    "service_tier",
    "reasoning_effort",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
    // vLLM sampling and serving options
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "min_tokens",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "truncate_prompt_tokens",
    "add_generation_prompt",
    "continue_final_message",
    "add_special_tokens",
    "echo",
    "include_reasoning",
    "priority",
    "request_id",
    "cache_salt",
    "bad_words",
    "stop_token_ids",
    "allowed_token_ids",
    "use_beam_search",
    "return_tokens_as_token_ids",
    "return_token_ids",
    "prompt_logprobs",
    "thinking_token_budget",
    "moderation",
    "prompt_cache_options",
    "prompt_cache_retention",
];

/// Members whose every string reaches the model as a definition or constraint, or may (a
/// forced tool's name, a search location): cheap to scan, so scanned.
const DEFINITIONS: &[&str] = &[
    "tool_choice",
    "function_call",
    "web_search_options",
    "response_format",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "chat_template_kwargs",
];

pub(crate) fn read_chat(body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
    r.object(body, &At::Root, |r, k, v, at| {
        match k {
            "messages" => r.array(v, at, read_message)?,
            "tools" => r.array(v, at, |r, _, t, at| read_tool(r, t, at))?,
            "functions" => r.array(v, at, |r, _, f, at| {
                r.group(Role::ToolDefinition);
                read_function(r, f, at)
            })?,
            "prediction" => {
                r.group(Role::Assistant);
                r.object(v, at, |r, k, v, at| {
                    match k {
                        "type" => {}
                        "content" => read_content(r, v, at)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?
            }
            "tool_prompt" => {
                r.group(Role::ToolDefinition);
                r.text(v, at, Kind::Other)?
            }
            "chat_template" if !v.is_null() => {
                r.group(Role::System);
                r.not_understood(
                    v,
                    at,
                    "a chat template is a program: the text it renders cannot be read from it",
                )?
            }
            "modalities" => match v {
                Value::Null => {}
                Value::Array(m) if m.iter().all(|x| x.as_str() == Some("text")) => {}
                other => r.not_understood(
                    other,
                    at,
                    "only text output can be filtered (audio carries words the rules cannot read)",
                )?,
            },
            "audio" if !v.is_null() => r.not_understood(
                v,
                at,
                "only text output can be filtered (audio carries words the rules cannot read)",
            )?,
            "chat_template" | "audio" => {}
            "documents" => r.array(v, at, |r, _, d, at| {
                r.group(Role::Document);
                r.json(d, at, Kind::Content);
                Ok(())
            })?,
            k if DEFINITIONS.contains(&k) => {
                r.group(Role::ToolDefinition);
                r.json(v, at, Kind::Schema)
            }
            k if NO_TEXT.contains(&k) => {}
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn read_message(r: &mut Reader, _i: usize, m: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    let role = match m.get("role") {
        Some(Value::String(s)) => match Role::of_message(s) {
            Some(role) => role,
            None => {
                return r.not_understood(m, &at.key("role"), format!("unknown role {}", shown(s)));
            }
        },
        Some(other) => {
            return r.not_understood(
                m,
                &at.key("role"),
                format!("expected a string, found {}", type_name(other)),
            );
        }
        None => return r.not_understood(m, at, "a message without a role"),
    };
    r.group(role);
    r.object(m, at, |r, k, v, at| {
        match k {
            "role" => {}
            // some chat templates render tool-call ids
            "tool_call_id" => r.text(v, at, Kind::Id)?,
            "content" => read_content(r, v, at)?,
            "name" => r.text(v, at, Kind::Name)?,
            "refusal" | "reasoning" | "reasoning_content" => r.text(v, at, Kind::Content)?,
            "tool_calls" => r.array(v, at, |r, _, c, at| read_tool_call(r, c, at))?,
            "function_call" => read_call(r, v, at)?,
            // the id of earlier audio output: no text
            "audio" => {}
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A message's `content`: a string, `null`, or a list of parts.
pub(crate) fn read_content(r: &mut Reader, v: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    let Value::Array(parts) = v else {
        return r.text(v, at, Kind::Content);
    };
    // pieces in order: text parts, and images (which TGI writes as `![](url)`)
    let mut texts: Vec<(Path, &str)> = Vec::new();
    let mut tgi: Vec<Path> = Vec::new();
    let mut images: Vec<Path> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let pat = at.index(i);
        match p {
            Value::String(t) => {
                texts.push((pat.to_path(), t));
                tgi.push(pat.to_path());
            }
            Value::Object(o) => {
                let ty = o.get("type").and_then(Value::as_str);
                let text_key = match ty {
                    Some("text" | "input_text" | "output_text") => Some("text"),
                    Some("refusal") => Some("refusal"),
                    Some("thinking") => Some("thinking"),
                    Some("image_url") => None,
                    Some(t) => {
                        r.not_understood(
                            p,
                            &pat,
                            format!(
                                "content part type {} cannot be inspected by the gateway",
                                shown(t)
                            ),
                        )?;
                        continue;
                    }
                    None => {
                        r.not_understood(p, &pat, "a content part without a `type`")?;
                        continue;
                    }
                };
                match text_key {
                    Some(key) => {
                        let known = ["type", key, "cache_control", "prompt_cache_breakpoint"];
                        part_members(r, o, &pat, &known)?;
                        match o.get(key) {
                            Some(Value::String(t)) => {
                                texts.push((pat.key(key).to_path(), t));
                                tgi.push(pat.key(key).to_path());
                            }
                            Some(other) => r.not_understood(
                                other,
                                &pat.key(key),
                                format!("expected a string, found {}", type_name(other)),
                            )?,
                            None => r.not_understood(p, &pat, "a text part without its text")?,
                        }
                    }
                    None => {
                        part_members(
                            r,
                            o,
                            &pat,
                            &[
                                "type",
                                "image_url",
                                "cache_control",
                                "prompt_cache_breakpoint",
                            ],
                        )?;
                        let img = o.get("image_url");
                        let img_at = pat.key("image_url");
                        let url_at = img_at.key("url");
                        match img {
                            Some(Value::String(_)) => {
                                // a bare URL string (accepted by some servers)
                                images.push(pat.key("image_url").to_path());
                                tgi.push(pat.key("image_url").to_path());
                            }
                            Some(Value::Object(io)) => {
                                part_members(r, io, &pat.key("image_url"), &["url", "detail"])?;
                                if let Some(d) = io.get("detail") {
                                    r.text(d, &pat.key("image_url").key("detail"), Kind::Other)?;
                                }
                                match io.get("url") {
                                    Some(Value::String(_)) => {
                                        images.push(url_at.to_path());
                                        tgi.push(url_at.to_path());
                                    }
                                    Some(other) => r.not_understood(
                                        other,
                                        &url_at,
                                        format!("expected a string, found {}", type_name(other)),
                                    )?,
                                    None => {
                                        r.not_understood(p, &pat, "an image part without a URL")?
                                    }
                                }
                            }
                            Some(other) => r.not_understood(
                                other,
                                &pat.key("image_url"),
                                format!("expected an object, found {}", type_name(other)),
                            )?,
                            None => {
                                r.not_understood(p, &pat, "an image part without `image_url`")?
                            }
                        }
                    }
                }
            }
            other => r.not_understood(
                other,
                &pat,
                format!(
                    "a content part must be an object, found {}",
                    type_name(other)
                ),
            )?,
        }
    }
    // TGI concatenates the parts and writes an image as `![](url)`; vLLM joins text parts with
    // newlines (see `Reader::parts`). Each image URL is read on its own too (a `data:` image is
    // not text: the rules scan it, the classifiers skip it).
    let assembled = (!images.is_empty()).then(|| {
        let mut pieces = Vec::with_capacity(tgi.len() * 3);
        for p in &tgi {
            if images.contains(p) {
                pieces.push(Piece::Sep("![]("));
                pieces.push(Piece::Text(p.clone()));
                pieces.push(Piece::Sep(")"));
            } else {
                pieces.push(Piece::Text(p.clone()));
            }
        }
        pieces
    });
    r.parts(&texts, assembled, Kind::Content);
    for u in images {
        r.pieces(Kind::Url, true, vec![Piece::Text(u)]);
    }
    Ok(())
}

/// Members of a part other than `known` are not understood.
fn part_members(
    r: &mut Reader,
    o: &Map<String, Value>,
    at: &At<'_>,
    known: &[&str],
) -> Result<(), ShapeError> {
    for (k, v) in o {
        if !known.contains(&k.as_str()) {
            r.unknown_member(v, &at.key(k))?;
        }
    }
    Ok(())
}

/// `{name, arguments}` of a function call (`arguments` is a JSON document in a string; TGI
/// also accepts it as an object).
fn read_call(r: &mut Reader, v: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    r.object(v, at, |r, k, v, at| {
        match k {
            "name" => r.text(v, at, Kind::Name)?,
            "arguments" | "parameters" => r.arguments(v, at)?,
            "description" => r.text(v, at, Kind::Other)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn read_tool_call(r: &mut Reader, c: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    r.object(c, at, |r, k, v, at| {
        match k {
            "type" | "index" => {}
            "id" => r.text(v, at, Kind::Id)?,
            "function" => read_call(r, v, at)?,
            "custom" => r.object(v, at, |r, k, v, at| {
                match k {
                    "name" => r.text(v, at, Kind::Name)?,
                    "input" => r.text(v, at, Kind::Arguments)?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A function definition: `name`, `description`, every string of `parameters`.
fn read_function(r: &mut Reader, f: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    r.object(f, at, |r, k, v, at| {
        match k {
            "name" => r.text(v, at, Kind::Name)?,
            "description" => r.text(v, at, Kind::Other)?,
            // TGI names the parameter schema `arguments`
            "parameters" | "arguments" | "output_schema" => r.json(v, at, Kind::Schema),
            "strict" => {}
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn read_tool(r: &mut Reader, t: &Value, at: &At<'_>) -> Result<(), ShapeError> {
    r.group(Role::ToolDefinition);
    r.object(t, at, |r, k, v, at| {
        match k {
            "type" => match v.as_str() {
                Some("function" | "custom") => {}
                Some(other) => r.not_understood(
                    t,
                    at,
                    format!(
                        "tool type {} cannot be inspected by the gateway",
                        shown(other)
                    ),
                )?,
                None => r.not_understood(v, at, "expected a string")?,
            },
            "function" => read_function(r, v, at)?,
            "custom" => r.object(v, at, |r, k, v, at| {
                match k {
                    "name" => r.text(v, at, Kind::Name)?,
                    "description" => r.text(v, at, Kind::Other)?,
                    "format" => r.json(v, at, Kind::Schema),
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
    prompt: &[b"\"prompt_tokens\":"],
    generated: &[b"\"completion_tokens\":"],
    events: &[b"\"delta\":{"],
};

/// Message members that are not text (the rest are filtered).
const MESSAGE: &[&str] = &[
    "role",
    "content",
    "refusal",
    "reasoning",
    "reasoning_content",
    "tool_calls",
    "function_call",
    "audio",
    "annotations",
    "tool_call_id",
];

/// A tool call of an answer (whole): arguments as text in a JSON string.
fn answer_call(call: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
    let Some(o) = call.as_object_mut() else {
        return cx.all(call, Kind::Other);
    };
    if let Some(f) = o.get_mut("function").and_then(Value::as_object_mut) {
        cx.text(f.get_mut("name"), Kind::Name)?;
        match f.get_mut("arguments") {
            Some(a @ Value::String(_)) => cx.text(Some(a), Kind::Arguments)?,
            Some(other) => cx.all(other, Kind::Other)?,
            None => {}
        }
        cx.others(f, &["name", "arguments"])?;
    }
    if let Some(c) = o.get_mut("custom").and_then(Value::as_object_mut) {
        cx.text(c.get_mut("name"), Kind::Name)?;
        cx.text(c.get_mut("input"), Kind::Arguments)?;
        cx.others(c, &["name", "input"])?;
    }
    cx.others(o, &["id", "type", "index", "function", "custom"])
}

fn answer_message(m: &mut Map<String, Value>, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
    for k in ["content", "refusal", "reasoning", "reasoning_content"] {
        cx.text(m.get_mut(k), Kind::Content)?;
    }
    if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for c in calls.iter_mut() {
            answer_call(c, cx)?;
        }
    }
    if let Some(fc) = m.get_mut("function_call") {
        let mut wrapped = json!({"function": fc.take()});
        answer_call(&mut wrapped, cx)?;
        *fc = wrapped["function"].take();
    }
    if let Some(a) = m.get_mut("audio").and_then(Value::as_object_mut) {
        cx.text(a.get_mut("transcript"), Kind::Content)?;
    }
    if let Some(a) = m.get_mut("annotations") {
        cx.all(a, Kind::Other)?;
    }
    cx.others(m, MESSAGE)
}

/// Top-level answer members that carry no generated text.
const TOP: &[&str] = &[
    "id",
    "object",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
    "usage",
    "choices",
    "prompt_logprobs",
    "prompt_token_ids",
    "kv_transfer_params",
    "obfuscation",
];

/// Choice members handled (or carrying no text).
const CHOICE: &[&str] = &[
    "index",
    "message",
    "delta",
    "logprobs",
    "finish_reason",
    "text",
    "token_ids",
];

/// vLLM's `token_ids` (with `return_token_ids`) are the answer's tokens: decoded, they give
/// the text before the output policy. They go whenever the answer is filtered.
pub(crate) fn strip_token_ids(choice: &mut Map<String, Value>, strips: bool) {
    if strips {
        choice.remove("token_ids");
    }
}

/// Stream fields of a chat delta: (member, field number, kind).
const DELTA_FIELDS: [(&str, u32); 4] = [
    ("content", 0),
    ("reasoning", 1),
    ("reasoning_content", 2),
    ("refusal", 3),
];
const FIELD_FUNCTION_CALL: u32 = 4;
const FIELD_TOOL: u32 = 5;

fn finished(c: &Value) -> bool {
    c.get("finish_reason")
        .is_some_and(|f| !f.is_null() && f.as_str() != Some(""))
}

/// Filter one chat chunk's choices.
pub(crate) fn chunk(v: &mut Value, cx: &mut StreamCx<'_>) -> Result<(), Blocked> {
    if let Some(o) = v.as_object_mut() {
        cx.strip(o.get_mut("prompt_logprobs"), Value::Null);
        if let Some(pt) = o.get_mut("prompt_text") {
            cx.whole(Some(pt), Kind::Other)?;
        }
        let known: Vec<&str> = TOP.iter().copied().chain(["prompt_text"]).collect();
        cx.others(o, &known)?;
    }
    let Some(choices) = util::array_mut(v, "choices") else {
        return Ok(());
    };
    for (pos, c) in choices.iter_mut().enumerate() {
        let idx = util::idx(c.get("index"), pos);
        let done = finished(c);
        cx.strip(c.get_mut("logprobs"), Value::Null);
        let Some(co) = c.as_object_mut() else {
            cx.whole(Some(c), Kind::Other)?;
            continue;
        };
        strip_token_ids(co, cx.strips());
        if !co.contains_key("delta") && done {
            co.insert("delta".into(), json!({}));
        }
        if let Some(d) = co.get_mut("delta").and_then(Value::as_object_mut) {
            for (name, field) in DELTA_FIELDS {
                match d.get_mut(name) {
                    Some(Value::String(s)) => {
                        let s = std::mem::take(s);
                        let out = cx.push(Key(idx, 0, field), Kind::Content, &s)?;
                        d.insert(name.into(), Value::String(out));
                    }
                    // not a shape OpenAI or vLLM sends (parts, as some servers do): every
                    // string in it is filtered whole
                    Some(other) => cx.whole(Some(other), Kind::Content)?,
                    None => {}
                }
            }
            if let Some(fc) = d.get_mut("function_call").and_then(Value::as_object_mut) {
                if let Some(Value::String(a)) = fc.get("arguments") {
                    let a = a.clone();
                    let out = cx.push(Key(idx, 0, FIELD_FUNCTION_CALL), Kind::Arguments, &a)?;
                    fc.insert("arguments".into(), Value::String(out));
                }
                cx.whole(fc.get_mut("name"), Kind::Name)?;
            }
            if let Some(calls) = d.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for (j, call) in calls.iter_mut().enumerate() {
                    let tj = util::idx(call.get("index"), j);
                    if let Some(f) = call.get_mut("function").and_then(Value::as_object_mut) {
                        if let Some(Value::String(a)) = f.get("arguments") {
                            let a = a.clone();
                            let out = cx.push(Key(idx, tj, FIELD_TOOL), Kind::Arguments, &a)?;
                            f.insert("arguments".into(), Value::String(out));
                        }
                        cx.whole(f.get_mut("name"), Kind::Name)?;
                        cx.others(f, &["name", "arguments"])?;
                    }
                    if let Some(o) = call.as_object_mut() {
                        cx.others(o, &["index", "id", "type", "function"])?;
                    }
                }
            }
            cx.others(
                d,
                &[
                    "role",
                    "content",
                    "reasoning",
                    "reasoning_content",
                    "refusal",
                    "function_call",
                    "tool_calls",
                ],
            )?;
        }
        if done {
            release_choice(idx, co, cx)?;
        }
        if let Some(t) = co.get_mut("text") {
            // a completions-style choice inside a chat stream: filtered whole
            cx.whole(Some(t), Kind::Content)?;
        }
        cx.others(co, CHOICE)?;
    }
    Ok(())
}

/// The choice finished: every field of it releases what it holds into this chunk's delta.
fn release_choice(
    idx: u32,
    co: &mut Map<String, Value>,
    cx: &mut StreamCx<'_>,
) -> Result<(), Blocked> {
    let keys: Vec<Key> = cx
        .st
        .open_keys()
        .into_iter()
        .filter(|k| k.0 == idx)
        .collect();
    for k in keys {
        let tail = cx.finish(k)?;
        if tail.is_empty() {
            continue;
        }
        let delta = co
            .entry("delta")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        let Some(d) = delta else { continue };
        put_tail(d, k, &tail);
    }
    Ok(())
}

/// Append `tail` to the field of `d` that key `k` names.
fn put_tail(d: &mut Map<String, Value>, k: Key, tail: &str) {
    let append = |slot: &mut Value| {
        let mut s = slot.as_str().unwrap_or("").to_string();
        s.push_str(tail);
        *slot = Value::String(s);
    };
    match k.2 {
        f if f < FIELD_FUNCTION_CALL => {
            let name = DELTA_FIELDS
                .iter()
                .find(|(_, n)| *n == f)
                .map_or("content", |(m, _)| m);
            append(d.entry(name).or_insert(Value::Null));
        }
        FIELD_FUNCTION_CALL => {
            let fc = d.entry("function_call").or_insert_with(|| json!({}));
            if let Some(o) = fc.as_object_mut() {
                append(o.entry("arguments").or_insert(Value::Null));
            }
        }
        _ => {
            let calls = d.entry("tool_calls").or_insert_with(|| json!([]));
            if let Some(a) = calls.as_array_mut() {
                let existing = a
                    .iter_mut()
                    .find(|c| c.get("index").and_then(Value::as_u64) == Some(u64::from(k.1)));
                match existing {
                    Some(c) => {
                        if let Some(f) = c
                            .as_object_mut()
                            .map(|o| o.entry("function").or_insert_with(|| json!({})))
                            .and_then(Value::as_object_mut)
                        {
                            append(f.entry("arguments").or_insert(Value::Null));
                        }
                    }
                    None => a.push(json!({"index": k.1, "function": {"arguments": tail}})),
                }
            }
        }
    }
}

/// A chunk releasing `text` held for key `k` (the stream ended without its finish chunk).
pub(crate) fn release_chunk(k: Key, text: &str, cx: &StreamCx<'_>) -> Frame {
    let mut v = cx
        .st
        .template
        .clone()
        .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
    let mut delta = Map::new();
    put_tail(&mut delta, k, text);
    v["choices"] = json!([{"index": k.0, "delta": delta, "logprobs": null, "finish_reason": null}]);
    if let Some(o) = v.as_object_mut() {
        o.remove("usage");
    }
    Frame {
        event: None,
        data: v,
    }
}

impl Protocol for Chat {
    fn adapter_member(&self) -> Option<super::AdapterMember> {
        Some(super::AdapterMember::Model)
    }

    fn name(&self) -> &'static str {
        "openai.chat"
    }
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }
    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        read_chat(body, r)
    }
    fn max_new_tokens(&self, body: &Value) -> Option<u64> {
        util::uint(body, "max_completion_tokens").or_else(|| util::uint(body, "max_tokens"))
    }
    fn sequences(&self, body: &Value) -> u64 {
        util::uint(body, "n").unwrap_or(1).max(1)
    }
    fn bound_members(&self) -> &'static [&'static [&'static str]] {
        &[&["max_tokens"], &["max_completion_tokens"], &["n"]]
    }
    fn set_max_new_tokens(&self, body: &mut Value, n: u64) -> bool {
        // `max_completion_tokens` wins where both are read (OpenAI, vLLM); TGI reads `max_tokens`
        util::set_uint(body, &["max_completion_tokens"], &["max_tokens"], n)
    }
    fn usage(&self) -> UsageKeys {
        USAGE
    }

    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        let Some(o) = answer.as_object_mut() else {
            return cx.all(answer, Kind::Other);
        };
        cx.strip(o.get_mut("prompt_logprobs"), Value::Null);
        cx.text(o.get_mut("prompt_text"), Kind::Other)?;
        if let Some(choices) = o.get_mut("choices").and_then(Value::as_array_mut) {
            for c in choices.iter_mut() {
                let Some(co) = c.as_object_mut() else {
                    cx.all(c, Kind::Other)?;
                    continue;
                };
                if let Some(m) = co.get_mut("message").and_then(Value::as_object_mut) {
                    answer_message(m, cx)?;
                }
                cx.text(co.get_mut("text"), Kind::Content)?;
                cx.strip(co.get_mut("logprobs"), Value::Null);
                strip_token_ids(co, cx.strips());
                cx.others(co, CHOICE)?;
            }
        }
        let known: Vec<&str> = TOP.iter().copied().chain(["prompt_text"]).collect();
        cx.others(o, &known)
    }

    fn event(
        &self,
        _name: Option<&str>,
        v: &mut Value,
        cx: &mut StreamCx<'_>,
    ) -> Result<(), Blocked> {
        chunk(v, cx)
    }

    fn release(&self, key: Key, text: &str, cx: &mut StreamCx<'_>) -> Vec<Frame> {
        vec![release_chunk(key, text, cx)]
    }

    fn blocked_answer(&self, answer: &mut Value, e: &super::ErrorInfo) -> bool {
        blocked(answer, e)
    }
}

/// OpenAI's own answer to a filtered completion: the choices keep their shape with empty
/// text and `finish_reason: "content_filter"`.
pub(crate) fn blocked(answer: &mut Value, e: &super::ErrorInfo) -> bool {
    let Some(choices) = answer.get_mut("choices").and_then(Value::as_array_mut) else {
        return false;
    };
    for c in choices.iter_mut() {
        if let Some(m) = c.get_mut("message").and_then(Value::as_object_mut) {
            m.insert("content".into(), "".into());
            for k in [
                "tool_calls",
                "function_call",
                "reasoning",
                "reasoning_content",
                "refusal",
                "audio",
            ] {
                m.remove(k);
            }
        }
        if let Some(t) = c.get_mut("text") {
            *t = "".into();
        }
        if let Some(co) = c.as_object_mut() {
            strip_token_ids(co, true);
        }
        c["finish_reason"] = "content_filter".into();
        c["logprobs"] = Value::Null;
    }
    answer["portcullis_error"] = json!({"message": e.message, "code": e.code});
    true
}

impl Protocol for ChatTokenize {
    fn name(&self) -> &'static str {
        "tgi.chat_tokenize"
    }
    fn dialect(&self) -> Dialect {
        Dialect::Tgi
    }
    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        read_chat(body, r)
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
