//! What a streamed answer costs per delta through `AnswerStream`, by API family and field: chat
//! content and tool-call arguments, Anthropic `input_json_delta`, Responses `output_text`. Each
//! stream is 512 deltas of 4 bytes (a tool call's JSON arguments, prose for content), fed
//! event by event as the network delivers them, under the shipped default policy's output
//! side with one placeholder in the vault. Criterion reports time per delta (target: < 5 µs
//! for tool-call deltas). Run with `cargo bench -p filters --bench protocol`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use filters::protocol::{AnswerStream, Protocol, anthropic, openai_chat, openai_responses};
use filters::{Policy, Pseudonymizer, Vault};
use serde_json::json;

const DELTAS: usize = 512;

fn text() -> String {
    let para = "{\"city\": \"Lisbon\", \"note\": \"book the quiet room facing the garden\", \"contact\": \"<EMAIL_1>\", \"nights\": 3} ";
    let mut s = String::new();
    while s.len() < DELTAS * 4 {
        s.push_str(para);
    }
    s.truncate(DELTAS * 4);
    s
}

fn pieces(t: &str) -> Vec<String> {
    t.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn frame(event: Option<&str>, v: serde_json::Value) -> Vec<u8> {
    match event {
        Some(e) => format!("event: {e}\ndata: {v}\n\n").into_bytes(),
        None => format!("data: {v}\n\n").into_bytes(),
    }
}

/// (name, family, events) of each stream.
fn streams() -> Vec<(&'static str, &'static dyn Protocol, Vec<Vec<u8>>)> {
    let t = text();
    let p = pieces(&t);
    let chat = |field: &str| -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = p
            .iter()
            .map(|x| {
                let delta = if field == "args" {
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": x}}]})
                } else {
                    json!({"content": x})
                };
                frame(None, json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}))
            })
            .collect();
        out.push(frame(None, json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
        out
    };
    let mut anth: Vec<Vec<u8>> = vec![frame(
        Some("content_block_start"),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "book", "input": {}}}),
    )];
    anth.extend(p.iter().map(|x| frame(Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": x}}))));
    anth.push(frame(
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    ));
    let mut resp: Vec<Vec<u8>> = p
        .iter()
        .enumerate()
        .map(|(i, x)| frame(Some("response.output_text.delta"), json!({"type": "response.output_text.delta", "sequence_number": i, "item_id": "m", "output_index": 0, "content_index": 0, "delta": x, "logprobs": []})))
        .collect();
    resp.push(frame(Some("response.output_text.done"), json!({"type": "response.output_text.done", "sequence_number": DELTAS, "item_id": "m", "output_index": 0, "content_index": 0, "text": t, "logprobs": []})));
    vec![
        ("chat_tool_arguments", &openai_chat::Chat, chat("args")),
        ("chat_content", &openai_chat::Chat, chat("content")),
        ("anthropic_input_json", &anthropic::Messages, anth),
        ("responses_output_text", &openai_responses::Responses, resp),
    ]
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policy = Arc::new(Policy::load(&root.join("policies/default.yaml")).unwrap());
    let ps = Pseudonymizer::new(b"bench", "t");
    let mut g = c.benchmark_group("stream_delta");
    g.throughput(Throughput::Elements(DELTAS as u64));
    for (name, proto, events) in streams() {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut vault = Vault::default();
                vault.placeholder("email", "jane.doe@example.com");
                let mut s = AnswerStream::new(proto, policy.clone());
                let mut n = 0;
                for e in &events {
                    if let filters::sse::Step::Send(out) = s.feed(black_box(e), &mut vault, &ps) {
                        n += out.len();
                    }
                }
                black_box(s.finish(&mut vault, &ps));
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
