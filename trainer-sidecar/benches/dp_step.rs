//! Time training steps of the DP engine against non-private steps of the same model, batch and
//! optimizer. `benches/dp/run.sh` runs one configuration per process and puts Opacus (the same
//! architectures in PyTorch, `benches/dp/opacus_step.py`) beside it.
//!
//! cargo bench -p trainer-sidecar --bench dp_step -- --model mlp|transformer
//!     --mode nonprivate|ghost|materialize|auto --batch B --steps N --warmup W --threads K
//!     [--layers L] [--seq T] [--malloc tuned|default]
//!
//! `--malloc tuned` (the default) makes the same allocator settings as the `trainer-sidecar`
//! binary (`runtime::tune_allocator`); `default` leaves glibc's.
//!
//! Prints one JSON line: per-step milliseconds, their median, and the process's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort it

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use trainer_sidecar::engine::{
    ClipMode, DpConfig, EngineError, Linear, Model, NoiseSource, Norm, Optimizer, OptimizerKind,
    PrivateEngine, Tape, gradients,
};

struct Block {
    ln1: Norm,
    qkv: Linear,
    out: Linear,
    ln2: Norm,
    fc1: Linear,
    fc2: Linear,
}

enum Net {
    Mlp(Linear, Linear),
    Transformer(trainer_sidecar::engine::Embedding, Vec<Block>, Linear, i64),
}

const D: i64 = 256;
const HEADS: i64 = 4;

fn build(model: &mut Model, which: &str, layers: usize, seq: i64) -> Net {
    match which {
        "mlp" => Net::Mlp(
            model.linear("fc0", 2304, 256, true).unwrap(),
            model.linear("fc2", 256, 1, true).unwrap(),
        ),
        _ => {
            let emb = model.embedding("emb", 1000, D).unwrap();
            let blocks = (0..layers)
                .map(|i| Block {
                    ln1: model.layer_norm(&format!("b{i}.ln1"), D, 1e-5).unwrap(),
                    qkv: model.linear(&format!("b{i}.qkv"), D, 3 * D, true).unwrap(),
                    out: model.linear(&format!("b{i}.out"), D, D, true).unwrap(),
                    ln2: model.layer_norm(&format!("b{i}.ln2"), D, 1e-5).unwrap(),
                    fc1: model.linear(&format!("b{i}.fc1"), D, 4 * D, true).unwrap(),
                    fc2: model.linear(&format!("b{i}.fc2"), 4 * D, D, true).unwrap(),
                })
                .collect();
            Net::Transformer(emb, blocks, model.linear("head", D, 2, true).unwrap(), seq)
        }
    }
}

impl Net {
    /// Per-example losses `[B]`.
    fn losses(&self, x: &Tensor, y: &Tensor, tape: &mut Tape) -> Result<Tensor, EngineError> {
        match self {
            Net::Mlp(a, b) => {
                let z = b.forward(&a.forward(x, tape)?.relu(), tape)?.squeeze_dim(1);
                Ok(z.binary_cross_entropy_with_logits::<Tensor>(
                    y,
                    None,
                    None,
                    tch::Reduction::None,
                ))
            }
            Net::Transformer(emb, blocks, head, t) => {
                let t = *t;
                let mut h = emb.forward(x, tape)?;
                let b = x.size()[0];
                for blk in blocks {
                    let qkv = blk.qkv.forward(&blk.ln1.forward(&h, tape)?, tape)?;
                    let qkv = qkv
                        .view([b, t, 3, HEADS, D / HEADS])
                        .permute([2, 0, 3, 1, 4]);
                    let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
                    let att = (q.matmul(&k.transpose(-2, -1)) / ((D / HEADS) as f64).sqrt())
                        .softmax(-1, Kind::Float);
                    let ctx = att.matmul(&v).transpose(1, 2).reshape([b, t, D]);
                    // Not `+=`: autograd needs the old `h` (layer norm's input).
                    h = h.f_add(&blk.out.forward(&ctx, tape)?)?;
                    let m = blk.fc2.forward(
                        &blk.fc1
                            .forward(&blk.ln2.forward(&h, tape)?, tape)?
                            .gelu("none"),
                        tape,
                    )?;
                    h = h.f_add(&m)?;
                }
                let logits =
                    head.forward(&h.mean_dim([1i64].as_slice(), false, Kind::Float), tape)?;
                Ok(logits
                    .log_softmax(-1, Kind::Float)
                    .gather(1, &y.unsqueeze(1), false)
                    .squeeze_dim(1)
                    .neg())
            }
        }
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--model") {
        // `cargo bench` with no arguments: nothing to do (run benches/dp/run.sh).
        return;
    }
    let which = arg(&args, "--model", "mlp");
    let mode = arg(&args, "--mode", "auto");
    let batch: i64 = arg(&args, "--batch", "64").parse().unwrap();
    let steps: usize = arg(&args, "--steps", "10").parse().unwrap();
    let warmup: usize = arg(&args, "--warmup", "2").parse().unwrap();
    let threads: i32 = arg(&args, "--threads", "1").parse().unwrap();
    let layers: usize = arg(&args, "--layers", "2").parse().unwrap();
    let seq: i64 = arg(&args, "--seq", "128").parse().unwrap();
    let malloc = arg(&args, "--malloc", "tuned");
    match malloc.as_str() {
        "tuned" => assert!(trainer_sidecar::runtime::tune_allocator()),
        "default" => {}
        other => panic!("--malloc tuned|default, not {other}"),
    }
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let mut model = Model::new(Kind::Float, Device::Cpu);
    let net = build(&mut model, &which, layers, seq);
    let (x, y) = if which == "mlp" {
        (
            Tensor::randn([batch, 2304], (Kind::Float, Device::Cpu)),
            Tensor::randint(2, [batch], (Kind::Float, Device::Cpu)),
        )
    } else {
        (
            Tensor::randint(1000, [batch, seq], (Kind::Int64, Device::Cpu)),
            Tensor::randint(2, [batch], (Kind::Int64, Device::Cpu)),
        )
    };
    let mut params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.01, 0.0, 0.0);
    let clip_mode = match mode.as_str() {
        "ghost" => Some(ClipMode::Ghost),
        "materialize" => Some(ClipMode::Materialize),
        "auto" => Some(ClipMode::Auto),
        _ => None,
    };
    let mut engine = clip_mode.map(|clip_mode| {
        PrivateEngine::new(
            &model,
            DpConfig {
                max_grad_norm: 1.0,
                noise_multiplier: std::env::var("DP_BENCH_SIGMA")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1.0),
                expected_batch_size: batch as f64,
                clip_mode,
                materialize_budget: 256 << 20,
            },
            NoiseSource::from_os().unwrap(),
        )
        .unwrap()
    });
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let grads = match engine.as_mut() {
            Some(e) => {
                e.accumulate(batch, |tape| net.losses(&x, &y, tape))
                    .unwrap();
                e.finish_step().unwrap()
            }
            None => {
                // The same per-example losses, averaged: what a non-private step does.
                let loss = net
                    .losses(&x, &y, &mut Tape::off())
                    .unwrap()
                    .mean(Kind::Float);
                gradients(&loss, &params).unwrap()
            }
        };
        opt.step(&mut params, &grads).unwrap();
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let plan: Vec<String> = engine
        .map(|e| {
            e.plan()
                .into_iter()
                .map(|p| format!("{}:{}", p.name, p.method))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "impl": "portcullis", "model": which, "mode": mode, "batch": batch, "threads": threads,
            "layers": layers, "seq": seq, "malloc": malloc, "step_ms": times, "median_ms": sorted[sorted.len() / 2],
            "peak_rss_mb": peak_rss_mb(), "plan": plan,
        })
    );
}
