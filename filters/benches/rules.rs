//! Criterion benches for the rule chain: the default and strict policies' input side on 1, 8 and
//! 64 KB prompts, typical (prose, one or two entities per KB) and dense (about 12 per KB) (target
//! ≤ 20 µs per KB, linear), and the streaming guard's cost per token
//! (target < 5 µs per token). Run with `cargo bench -p filters --bench rules`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use filters::{Policy, Pseudonymizer, StreamGuard, Vault};

/// Worst case: a support ticket dense with entities (about 12 per KB), every detector busy.
fn prompt(bytes: usize) -> String {
    let para = "Hi team, the customer Jane Doe (jane.doe@example.com, +44 20 7946 0958) says the \
        invoice INV-2024-00042 from 2024-03-14 10:22:31 was charged twice to card 4111 1111 1111 \
        1111. Her IBAN is DE89 3704 0044 0532 0130 00; please refund and reply by Friday. \
        The deploy of version 10.0.19045 failed with error code 502 on host 10.0.3.17, see the \
        logs. Can you summarise the ticket and draft a polite answer in English and German? ";
    let mut s = String::with_capacity(bytes + para.len());
    while s.len() < bytes {
        s.push_str(para);
    }
    s.truncate(bytes);
    while !s.is_char_boundary(s.len()) {
        s.pop();
    }
    s
}

/// A typical prompt: prose and code with one or two entities per KB.
fn typical(bytes: usize) -> String {
    let para = "I am working on a Rust service that parses log lines and aggregates latency \
        percentiles per endpoint. The current implementation keeps a HashMap from endpoint to a \
        Vec of samples and sorts on every report, which is slow once we reach a few million \
        requests per hour. Could you suggest a data structure that keeps approximate quantiles \
        in bounded memory, explain the error guarantees, and sketch the code? We deploy on \
        Kubernetes with three replicas behind an ingress and scrape metrics every fifteen \
        seconds; reports go to the on-call channel. If anything is unclear, the owner is \
        sam.lee@example.org and the runbook lives in the ops wiki under latency dashboards. ";
    let mut s = String::with_capacity(bytes + para.len());
    while s.len() < bytes {
        s.push_str(para);
    }
    s.truncate(bytes);
    s
}

fn policy(name: &str) -> Arc<Policy> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../policies/{name}.yaml"));
    Arc::new(Policy::load(&path).unwrap())
}

fn rule_chain(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_chain");
    for name in ["default", "strict"] {
        let p = policy(name);
        let ps = Pseudonymizer::new(b"bench", "t");
        for kb in [1usize, 8, 64] {
            for (kind, text) in [
                ("typical", typical(kb * 1024)),
                ("dense", prompt(kb * 1024)),
            ] {
                g.throughput(Throughput::Bytes(text.len() as u64));
                g.bench_with_input(
                    BenchmarkId::new(format!("{name}/{kind}"), format!("{kb}KB")),
                    &text,
                    |b, t| {
                        b.iter(|| {
                            let mut v = Vault::default();
                            black_box(p.input.evaluate(black_box(t), &mut v, &ps))
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

fn stream_per_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_guard");
    let text = prompt(4096);
    // tokens like the mock's: leading whitespace plus a word, or one symbol
    let mut tokens: Vec<&str> = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    for i in 1..=b.len() {
        let boundary = i == b.len()
            || (b[i] == b' ' && i > start)
            || (!b[i].is_ascii_alphanumeric() && b[i] != b' ');
        if boundary && text.is_char_boundary(i) {
            tokens.push(&text[start..i]);
            start = i;
        }
    }
    for name in ["default", "strict"] {
        let p = policy(name);
        let ps = Pseudonymizer::new(b"bench", "t");
        g.throughput(Throughput::Elements(tokens.len() as u64));
        g.bench_function(
            BenchmarkId::new(name, format!("{}tokens", tokens.len())),
            |bch| {
                bch.iter(|| {
                    let mut v = Vault::default();
                    let mut guard = StreamGuard::new(p.clone());
                    let mut n = 0;
                    for t in &tokens {
                        n += guard.push(t, &mut v, &ps).map(|s| s.len()).unwrap_or(0);
                    }
                    n += guard.finish(&mut v, &ps).map(|s| s.len()).unwrap_or(0);
                    black_box(n)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, rule_chain, stream_per_token);
criterion_main!(benches);
