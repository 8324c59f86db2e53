//! The model classifiers: latency of all heads together (one encoder pass) for a 128-token and
//! a 512-token prompt on one thread, INT8 (`models/guard`) against FP32 (`models/guard-fp32`)
//! in the same run (targets: INT8 ≤ 8 ms median at 128 tokens, ≤ 40 ms at 512), then
//! throughput with micro-batching on every core at concurrency 1, 8 and 32, against the same
//! pool with batching off (`max_batch: 1`) as the baseline. `<variant>_with_entities` is the
//! same pass with the entity head tagging every token (person names, street addresses).
//! `int8_without_indirect_head` is the INT8 bundle without its `indirect_injection` head (the
//! heads as they were before the second channel), the baseline of that head's cost.
//! `heads/tag_tokens/<n>` is the entity head alone on `n` token states (the part of
//! `_with_entities` that is ours; the rest is reading the `tokens` output), too small to see
//! in the difference of two whole passes on a noisy machine; `heads/sequence_heads_*` every
//! sequence head on one window's features.
//!
//! `cargo bench -p filters --bench classifier` (bundles built by scripts/setup.sh);
//! `NO_THROUGHPUT=1` skips the throughput table.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use filters::classify::{Bundle, Classifier, EncoderOptions, TokenHead};

fn bundle(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../models/{name}/1"))
}

fn load(name: &str, opts: EncoderOptions) -> Classifier {
    Classifier::load(&bundle(name), &opts, None, None)
        .unwrap_or_else(|e| panic!("{name}: {e} (run scripts/setup.sh)"))
}

/// One session on one thread, the default batch wait (a lone caller stops paying it after the
/// first pass whose wait found nothing).
fn one_thread() -> EncoderOptions {
    EncoderOptions {
        workers: 1,
        intra_threads: 1,
        ..EncoderOptions::default()
    }
}

/// A prompt of exactly `tokens` tokens with [CLS] and [SEP] (`tokens` - 2 word pieces).
fn prompt(c: &Classifier, tokens: usize) -> String {
    let para = "Our support team received a question about delayed shipments to the northern \
        warehouse; please summarise the customer's history, list the open tickets, and draft a \
        short answer that explains the new delivery window and offers a discount code. ";
    let mut s = String::new();
    while c
        .encoder()
        .windows(&s)
        .unwrap()
        .iter()
        .map(|w| w.len() - 2)
        .sum::<usize>()
        < tokens
    {
        s.push_str(para);
    }
    // Trim words until the text is exactly `tokens` - 2 pieces long (as one sequence).
    let pieces = |s: &str| {
        let w = c.encoder().windows(s).unwrap();
        w[0].len() - 2
            + w[1..]
                .iter()
                .map(|w| w.len() - 2 - c.bundle.manifest.encoder.window_overlap)
                .sum::<usize>()
    };
    while pieces(&s) > tokens - 2 {
        let cut = s.trim_end().rfind(' ').unwrap();
        s.truncate(cut);
    }
    s
}

fn latency(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("classify_1_thread");
    g.sample_size(30);
    for name in ["guard", "guard-fp32"] {
        let c = load(name, one_thread());
        for tokens in [13usize, 128, 512] {
            let text = prompt(&c, tokens);
            let windows = c.encoder().windows(&text).unwrap().len();
            let label = if name == "guard" { "int8" } else { "fp32" };
            g.bench_with_input(
                BenchmarkId::new(label, format!("{tokens}_tokens_{windows}_windows")),
                &text,
                |b, t| b.iter(|| black_box(c.classify_blocking(&[t.as_str()]).unwrap())),
            );
            if name == "guard" {
                let mut base = load(name, one_thread());
                base.heads = std::sync::Arc::new(
                    base.heads
                        .iter()
                        .filter(|h| h.name != "indirect_injection")
                        .cloned()
                        .collect(),
                );
                g.bench_with_input(
                    BenchmarkId::new(
                        "int8_without_indirect_head",
                        format!("{tokens}_tokens_{windows}_windows"),
                    ),
                    &text,
                    |b, t| b.iter(|| black_box(base.classify_blocking(&[t.as_str()]).unwrap())),
                );
            }
            // The same pass with the entity head tagging every token too: the difference is
            // the head's cost (target: at most 1 ms at 128 tokens).
            if c.has_entities() {
                g.bench_with_input(
                    BenchmarkId::new(
                        format!("{label}_with_entities"),
                        format!("{tokens}_tokens_{windows}_windows"),
                    ),
                    &text,
                    |b, t| b.iter(|| black_box(c.entities_blocking(&[t.as_str()]).unwrap())),
                );
            }
        }
    }
    g.finish();
}

/// Classifications per second with `concurrency` callers for `secs`.
fn throughput(c: &Arc<Classifier>, text: &str, concurrency: usize, secs: f64) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (c, stop, done, lat, text) = (
                c.clone(),
                stop.clone(),
                done.clone(),
                lat.clone(),
                text.to_string(),
            );
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    black_box(c.classify_blocking(&[text.as_str()]).unwrap());
                    mine.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat.lock().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    let mut l = lat.lock().clone();
    l.sort();
    let p50 = l.get(l.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    (rate, p50)
}

fn throughput_table() {
    let text_len = 128;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nthroughput, INT8, {text_len}-token prompts, {cores} sessions x 1 thread, 5 s per cell"
    );
    println!(
        "| concurrency | batching (max 16, wait 1 ms) | p50 ms | no batching (max 1) | p50 ms | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let batched = Arc::new(load(
        "guard",
        EncoderOptions {
            workers: cores,
            ..EncoderOptions::default()
        },
    ));
    let single = Arc::new(load(
        "guard",
        EncoderOptions {
            workers: cores,
            max_batch: 1,
            ..EncoderOptions::default()
        },
    ));
    let text = prompt(&batched, text_len);
    for conc in [1usize, 8, 32] {
        let (b, bp) = throughput(&batched, &text, conc, 5.0);
        let (s, sp) = throughput(&single, &text, conc, 5.0);
        println!(
            "| {conc} | {b:.1}/s | {bp:.1} | {s:.1}/s | {sp:.1} | {:.2}x |",
            b / s
        );
    }
}

/// `n` values spread over [-1, 1] (the heads' work does not depend on them).
fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0)
        .collect()
}

/// The heads alone: the entity head's `tag_tokens` on the states of one full window (126
/// tokens) and of a short prompt (10 tokens), and every sequence head on one window's
/// features; the values do not change the work.
fn heads(cr: &mut Criterion) {
    let b = Bundle::open(&bundle("guard")).unwrap();
    let (Some(spec), Some(dim)) = (b.manifest.entities.clone(), b.manifest.encoder.token_dim)
    else {
        return;
    };
    let head = TokenHead::load(&spec, &b.path(&spec.file), dim).unwrap();
    let mut g = cr.benchmark_group("heads");
    g.sample_size(50);
    for n in [10usize, 126] {
        let states = values(n * dim);
        g.bench_with_input(BenchmarkId::new("tag_tokens", n), &states, |b, s| {
            b.iter(|| black_box(head.tag_tokens(s)))
        });
    }
    // every sequence head of the bundle on one window's features (the gateway's own work
    // after the encoder pass on a short prompt)
    let c = load("guard", one_thread());
    let width = b.manifest.encoder.features;
    let features = values(width);
    g.bench_function(
        format!("sequence_heads_{}_1_window", c.heads.len()),
        |bch| {
            bch.iter(|| {
                black_box(
                    c.heads
                        .iter()
                        .map(|h| h.logit(black_box(&features)))
                        .sum::<f32>(),
                )
            })
        },
    );
    g.finish();
}

criterion_group!(benches, latency, heads);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    // (criterion refuses arguments it does not know, so this switch is an environment variable)
    if std::env::var_os("NO_THROUGHPUT").is_some() {
        return;
    }
    throughput_table();
}
