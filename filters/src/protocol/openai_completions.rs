//! OpenAI Completions, `POST /v1/completions` (OpenAI, TGI, vLLM).
//!
//! Request: `prompt` (a string or a list of strings; token-id prompts and vLLM's
//! `prompt_embeds` cannot be inspected), `suffix`, and vLLM's `response_format` /
//! `structured_outputs`. Answer: `choices[].text` (with `echo` it repeats the prompt, which the
//! output rules then see too); `logprobs` (whose `top_logprobs` keys are token texts) nulled.
//! Stream: `choices[].text` per chunk; held text goes out with the choice's `finish_reason`.

use serde_json::{Value, json};

use super::answer::{AnswerCx, Frame, Key, StreamCx};
use super::read::{Kind, Reader, Role, ShapeError};
use super::{At, Dialect, Protocol, UsageKeys, util};
use crate::stream::Blocked;

/// `/v1/completions`.
#[derive(Debug, Clone, Copy)]
pub struct Completions;

const NO_TEXT: &[&str] = &[
    "model",
    "echo",
    "best_of",
    "n",
    "logprobs",
    "max_tokens",
    "stop",
    "stream",
    "stream_options",
    "seed",
    "logit_bias",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "user",
    // vLLM
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "min_tokens",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "truncate_prompt_tokens",
    "add_special_tokens",
    "prompt_logprobs",
    "bad_words",
    "stop_token_ids",
    "allowed_token_ids",
    "use_beam_search",
    "return_tokens_as_token_ids",
    "return_token_ids",
    "priority",
    "request_id",
    "cache_salt",
];

const USAGE: UsageKeys = UsageKeys {
    prompt: &[b"\"prompt_tokens\":"],
    generated: &[b"\"completion_tokens\":"],
    events: &[b"\"text\":"],
};

impl Protocol for Completions {
    fn adapter_member(&self) -> Option<super::AdapterMember> {
        Some(super::AdapterMember::Model)
    }

    fn name(&self) -> &'static str {
        "openai.completions"
    }
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn read(&self, body: &Value, r: &mut Reader) -> Result<(), ShapeError> {
        r.group(Role::User);
        r.object(body, &At::Root, |r, k, v, at| {
            match k {
                "prompt" => r.text_or_list(v, at, Kind::Content)?,
                "suffix" => r.text(v, at, Kind::Content)?,
                "response_format" | "structured_outputs" | "guided_json" | "guided_regex"
                | "guided_choice" | "guided_grammar" => {
                    r.group(Role::ToolDefinition);
                    r.json(v, at, Kind::Schema);
                    r.group(Role::User);
                }
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
        &[&["max_tokens"], &["n"], &["best_of"]]
    }
    fn set_max_new_tokens(&self, body: &mut Value, n: u64) -> bool {
        util::set_uint(body, &[], &["max_tokens"], n)
    }

    fn sequences(&self, body: &Value) -> u64 {
        let n = util::uint(body, "n").unwrap_or(1);
        let best = util::uint(body, "best_of").unwrap_or(1);
        // a list prompt generates for every prompt
        let prompts = body
            .get("prompt")
            .and_then(Value::as_array)
            .map_or(1, |a| a.len() as u64);
        n.max(best).max(1) * prompts.max(1)
    }

    fn usage(&self) -> UsageKeys {
        USAGE
    }

    fn answer(&self, answer: &mut Value, cx: &mut AnswerCx<'_>) -> Result<(), Blocked> {
        // the same choice and top-level handling as chat (choices carry `text` here)
        super::openai_chat::Chat.answer(answer, cx)
    }

    fn event(
        &self,
        _name: Option<&str>,
        v: &mut Value,
        cx: &mut StreamCx<'_>,
    ) -> Result<(), Blocked> {
        if let Some(o) = v.as_object_mut() {
            cx.others(
                o,
                &[
                    "id",
                    "object",
                    "created",
                    "model",
                    "system_fingerprint",
                    "usage",
                    "choices",
                ],
            )?;
        }
        let Some(choices) = util::array_mut(v, "choices") else {
            return Ok(());
        };
        for (pos, c) in choices.iter_mut().enumerate() {
            let idx = util::idx(c.get("index"), pos);
            let done = c
                .get("finish_reason")
                .is_some_and(|f| !f.is_null() && f.as_str() != Some(""));
            cx.strip(c.get_mut("logprobs"), Value::Null);
            let Some(co) = c.as_object_mut() else {
                cx.whole(Some(c), Kind::Other)?;
                continue;
            };
            super::openai_chat::strip_token_ids(co, cx.strips());
            let key = Key(idx, 0, 0);
            let mut sent = match co.get("text") {
                Some(Value::String(t)) => {
                    let t = t.clone();
                    Some(cx.push(key, Kind::Content, &t)?)
                }
                Some(other) if !other.is_null() => {
                    let mut o = other.clone();
                    cx.whole(Some(&mut o), Kind::Content)?;
                    co.insert("text".into(), o);
                    None
                }
                _ => None,
            };
            if done {
                let tail = cx.finish(key)?;
                if !tail.is_empty() || sent.is_some() {
                    let mut s = sent.take().unwrap_or_default();
                    s.push_str(&tail);
                    sent = Some(s);
                }
            }
            if let Some(s) = sent {
                co.insert("text".into(), Value::String(s));
            }
            cx.others(
                co,
                &["index", "text", "logprobs", "finish_reason", "token_ids"],
            )?;
        }
        Ok(())
    }

    fn release(&self, key: Key, text: &str, cx: &mut StreamCx<'_>) -> Vec<Frame> {
        let mut v = cx
            .st
            .template
            .clone()
            .unwrap_or_else(|| json!({"object": "text_completion"}));
        v["choices"] =
            json!([{"index": key.0, "text": text, "logprobs": null, "finish_reason": null}]);
        vec![Frame {
            event: None,
            data: v,
        }]
    }

    fn blocked_answer(&self, answer: &mut Value, e: &super::ErrorInfo) -> bool {
        super::openai_chat::blocked(answer, e)
    }
}
