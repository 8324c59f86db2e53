//! The API families a TGI server does not speak but the gateway fronts: OpenAI's Responses
//! (`/v1/responses`) and Embeddings (`/v1/embeddings`) and Anthropic's Messages
//! (`/v1/messages`), as vLLM and the hosted APIs answer them, so the gateway's tests drive the
//! real `openai` and `anthropic` SDKs against faithful shapes.
//!
//! Echo mode answers with the request's texts joined by newlines (system/instructions first,
//! then each message's or input item's text, tool results included); a request whose
//! `tool_choice` forces a tool gets a tool call whose input is `{"text": <echo>}`. Streams follow
//! each API's event sequence (`event:` lines, Responses' `sequence_number`s, Anthropic's
//! `message_start` ... `message_stop`). Errors use each API's own shape.

#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Mock;
use super::generate::Plan;
use super::routes::{
    begin, json_answer_bare, now_unix, parse_json, sse_response_bare, visible, wants_stream,
};
use super::sse::frame_named;

type Mk = State<Arc<Mock>>;

// ----------------------------------------------------------------------------------------------
// Text gathering

/// Every string under `v` whose member name is one of `keys`, in document order.
fn texts_under(v: &Value, keys: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| texts_under(x, keys, out)),
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::String(s) if keys.contains(&k.as_str()) => out.push(s.clone()),
                    _ => texts_under(x, keys, out),
                }
            }
        }
        _ => {}
    }
}

/// The text of a content value: a string, or the texts of its parts joined with `""`.
fn content_text(v: &Value, keys: &[&str]) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => {
            let mut out = Vec::new();
            texts_under(other, keys, &mut out);
            out.concat()
        }
    }
}

fn openai_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}).to_string(),
    )
        .into_response()
}

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
    )
        .into_response()
}

fn parse_value(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    parse_json::<Value>(headers, body)
}

fn max_tokens(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn plan_for(mock: &Mock, prompt: &str, answer: &str, max: Option<u32>) -> Result<Plan, String> {
    let prompt = if prompt.is_empty() { " " } else { prompt };
    mock.plan(prompt, answer, max, &[])
        .map_err(|e| e.to_string())
}

// ----------------------------------------------------------------------------------------------
// OpenAI Responses

fn responses_echo(v: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(Value::String(i)) = v.get("instructions") {
        parts.push(i.clone());
    }
    match v.get("input") {
        Some(Value::String(s)) => parts.push(s.clone()),
        Some(Value::Array(items)) => {
            for it in items {
                let t = match it.get("type").and_then(Value::as_str).unwrap_or("message") {
                    "message" => it
                        .get("content")
                        .map(|c| content_text(c, &["text", "refusal"]))
                        .unwrap_or_default(),
                    "function_call_output" | "custom_tool_call_output" => it
                        .get("output")
                        .map(|c| content_text(c, &["text"]))
                        .unwrap_or_default(),
                    "function_call" => it
                        .get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    _ => String::new(),
                };
                if !t.is_empty() {
                    parts.push(t);
                }
            }
        }
        _ => {}
    }
    parts.join("\n")
}

fn responses_tool(v: &Value) -> Option<String> {
    let tools = v.get("tools")?.as_array()?;
    match v.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => tools
            .iter()
            .find_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_string),
        Some(Value::Object(o)) => o.get("name").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn response_object(v: &Value, model: &str, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": "resp_mock",
        "object": "response",
        "created_at": now_unix(),
        "status": status,
        "model": v.get("model").cloned().unwrap_or_else(|| json!(model)),
        "output": output,
        "instructions": v.get("instructions").cloned().unwrap_or(Value::Null),
        "tools": v.get("tools").cloned().unwrap_or_else(|| json!([])),
        "tool_choice": v.get("tool_choice").cloned().unwrap_or_else(|| json!("auto")),
        "parallel_tool_calls": true,
        "max_output_tokens": v.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        "previous_response_id": null,
        "reasoning": null,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "incomplete_details": null,
        "error": null,
        "metadata": {},
        "usage": usage,
    })
}

fn responses_usage(plan: &Plan) -> Value {
    json!({
        "input_tokens": plan.input_length,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": plan.generated_tokens(),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": plan.input_length + plan.generated_tokens(),
    })
}

/// `POST /v1/responses`
pub async fn responses(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stream = wants_stream(&body);
    let begun = match begin(&mock, &method, &uri, &headers, &body, stream).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let v = match parse_value(&headers, &body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if v.get("input").is_none() {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'input'.",
        );
    }
    let echo = responses_echo(&v);
    let tool = responses_tool(&v);
    let answer = match &tool {
        Some(_) => json!({"text": echo}).to_string(),
        None => echo.clone(),
    };
    let plan = match plan_for(&mock, &echo, &answer, max_tokens(&v, "max_output_tokens")) {
        Ok(p) => p,
        Err(e) => return openai_error(StatusCode::BAD_REQUEST, &e),
    };
    let model = mock.config.model_id.clone();
    let done_item = match &tool {
        Some(name) => {
            json!({"type": "function_call", "id": "fc_mock", "call_id": "call_mock", "name": name, "arguments": plan.text, "status": "completed"})
        }
        None => {
            json!({"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant", "content": [
            {"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}]})
        }
    };
    let status = if plan.finish == super::generate::Finish::Length {
        "incomplete"
    } else {
        "completed"
    };
    let mut final_response = response_object(
        &v,
        &model,
        status,
        json!([done_item.clone()]),
        responses_usage(&plan),
    );
    if status == "incomplete" {
        final_response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    }
    if !stream {
        return json_answer_bare(&mock, &begun.fault, &plan, final_response).await;
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |events: &mut Vec<Bytes>, ty: &str, mut data: Value| {
        data["type"] = json!(ty);
        data["sequence_number"] = json!(seq);
        seq += 1;
        events.push(frame_named(ty, &data.to_string()));
    };
    let started = response_object(&v, &model, "in_progress", json!([]), Value::Null);
    push(
        &mut events,
        "response.created",
        json!({"response": started.clone()}),
    );
    push(
        &mut events,
        "response.in_progress",
        json!({"response": started}),
    );
    match &tool {
        Some(name) => {
            push(
                &mut events,
                "response.output_item.added",
                json!({"output_index": 0, "item": {"type": "function_call", "id": "fc_mock", "call_id": "call_mock", "name": name, "arguments": "", "status": "in_progress"}}),
            );
            for t in plan.tokens.iter().filter(|t| !t.special) {
                push(
                    &mut events,
                    "response.function_call_arguments.delta",
                    json!({"item_id": "fc_mock", "output_index": 0, "delta": visible(t)}),
                );
            }
            push(
                &mut events,
                "response.function_call_arguments.done",
                json!({"item_id": "fc_mock", "output_index": 0, "name": name, "arguments": plan.text}),
            );
        }
        None => {
            push(
                &mut events,
                "response.output_item.added",
                json!({"output_index": 0, "item": {"type": "message", "id": "msg_mock", "status": "in_progress", "role": "assistant", "content": []}}),
            );
            push(
                &mut events,
                "response.content_part.added",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            );
            for t in plan.tokens.iter().filter(|t| !t.special) {
                push(
                    &mut events,
                    "response.output_text.delta",
                    json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": visible(t), "logprobs": []}),
                );
            }
            push(
                &mut events,
                "response.output_text.done",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "text": plan.text, "logprobs": []}),
            );
            push(
                &mut events,
                "response.content_part.done",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}}),
            );
        }
    }
    push(
        &mut events,
        "response.output_item.done",
        json!({"output_index": 0, "item": done_item}),
    );
    let last = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    push(&mut events, last, json!({"response": final_response}));
    sse_response_bare(&mock, begun, &plan, events)
}

// ----------------------------------------------------------------------------------------------
// OpenAI Embeddings

/// A deterministic unit vector for a text (FNV-1a seeded, so equal texts embed equally).
fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            h ^= i as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn base64_f32(v: &[f32]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = begin(&mock, &method, &uri, &headers, &body, false).await {
        return r;
    }
    let v = match parse_value(&headers, &body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "'input' must be a non-empty string or array",
            );
        }
    };
    let dims = v
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(8, |d| d.clamp(1, 4096) as usize);
    let b64 = v.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let tokens: usize = inputs.iter().map(|t| super::tokens::count(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let e = embed(t, dims);
            let emb = if b64 { json!(base64_f32(&e)) } else { json!(e) };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    mock.stats
        .successes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": v.get("model").cloned().unwrap_or_else(|| json!(mock.config.model_id)),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

// ----------------------------------------------------------------------------------------------
// Anthropic Messages

fn anthropic_echo(v: &Value) -> String {
    let keys = ["text", "thinking", "data"];
    let mut parts = Vec::new();
    if let Some(s) = v.get("system") {
        let t = content_text(s, &keys);
        if !t.is_empty() {
            parts.push(t);
        }
    }
    if let Some(Value::Array(msgs)) = v.get("messages") {
        for m in msgs {
            let t = m.get("content").map(|c| match c {
                Value::String(s) => s.clone(),
                Value::Array(blocks) => blocks
                    .iter()
                    .map(|b| match b.get("type").and_then(Value::as_str) {
                        Some("tool_result") => b
                            .get("content")
                            .map(|c| content_text(c, &keys))
                            .unwrap_or_default(),
                        Some("tool_use") => {
                            b.get("input").map(Value::to_string).unwrap_or_default()
                        }
                        _ => content_text(b, &keys),
                    })
                    .collect(),
                _ => String::new(),
            });
            if let Some(t) = t.filter(|t| !t.is_empty()) {
                parts.push(t);
            }
        }
    }
    parts.join("\n")
}

fn anthropic_tool(v: &Value) -> Option<String> {
    let tools = v.get("tools")?.as_array()?;
    let choice = v.get("tool_choice")?;
    match choice.get("type").and_then(Value::as_str) {
        Some("any") => tools
            .iter()
            .find_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_string),
        Some("tool") => choice
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// `POST /v1/messages`
pub async fn messages(
    State(mock): Mk,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stream = wants_stream(&body);
    let begun = match begin(&mock, &method, &uri, &headers, &body, stream).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let v = match parse_value(&headers, &body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(max) = max_tokens(&v, "max_tokens") else {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    };
    if !v.get("messages").is_some_and(Value::is_array) {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: Field required",
        );
    }
    let echo = anthropic_echo(&v);
    let tool = anthropic_tool(&v);
    let answer = match &tool {
        Some(_) => json!({"text": echo}).to_string(),
        None => echo.clone(),
    };
    let plan = match plan_for(&mock, &echo, &answer, Some(max)) {
        Ok(p) => p,
        Err(e) => return anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", &e),
    };
    let stop_reason = match (&tool, plan.finish) {
        (Some(_), _) => "tool_use",
        (None, super::generate::Finish::Length) => "max_tokens",
        (None, _) => "end_turn",
    };
    let model = v
        .get("model")
        .cloned()
        .unwrap_or_else(|| json!(mock.config.model_id));
    let block = match &tool {
        Some(name) => json!({"type": "tool_use", "id": "toolu_mock", "name": name,
            "input": serde_json::from_str::<Value>(&plan.text).unwrap_or_else(|_| json!({"text": plan.text}))}),
        None => json!({"type": "text", "text": plan.text}),
    };
    if !stream {
        let body = json!({
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": plan.input_length, "output_tokens": plan.generated_tokens()},
        });
        return json_answer_bare(&mock, &begun.fault, &plan, body).await;
    }
    let mut events = Vec::new();
    let push = |events: &mut Vec<Bytes>, ty: &str, mut data: Value| {
        data["type"] = json!(ty);
        events.push(frame_named(ty, &data.to_string()));
    };
    push(
        &mut events,
        "message_start",
        json!({"message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": plan.input_length, "output_tokens": 1}}}),
    );
    match &tool {
        Some(name) => push(
            &mut events,
            "content_block_start",
            json!({"index": 0, "content_block": {"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}}),
        ),
        None => push(
            &mut events,
            "content_block_start",
            json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    }
    push(&mut events, "ping", json!({}));
    for (i, t) in plan.tokens.iter().filter(|t| !t.special).enumerate() {
        if begun.fault.error_after == Some(i) {
            push(
                &mut events,
                "error",
                json!({"error": {"type": "overloaded_error", "message": "mock: injected error"}}),
            );
            return sse_response_bare(&mock, begun, &plan, events);
        }
        let delta = match &tool {
            Some(_) => json!({"type": "input_json_delta", "partial_json": visible(t)}),
            None => json!({"type": "text_delta", "text": visible(t)}),
        };
        push(
            &mut events,
            "content_block_delta",
            json!({"index": 0, "delta": delta}),
        );
    }
    push(&mut events, "content_block_stop", json!({"index": 0}));
    push(
        &mut events,
        "message_delta",
        json!({"delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": plan.generated_tokens()}}),
    );
    push(&mut events, "message_stop", json!({}));
    sse_response_bare(&mock, begun, &plan, events)
}
