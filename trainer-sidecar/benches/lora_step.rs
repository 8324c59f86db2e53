//! Time LoRA training steps on a real checkpoint: DP (per-example clipping and noise) against
//! a non-private step of the same model, adapters, batch and sequence. `benches/lora/run.sh`
//! runs one configuration per process and puts Opacus + PEFT beside it
//! (`benches/lora/opacus_lora.py`).
//!
//! cargo bench -p trainer-sidecar --bench lora_step -- --base DIR --mode nonprivate|dp|ghost|materialize
//!     --batch B --seq T --rank R --steps N --warmup W --threads K
//!
//! Every position predicts the next token (the same work as transformers' loss over all
//! positions). Prints one JSON line: per-step milliseconds, their median, tokens per second, the
//! RSS once the model was loaded and the peak RSS while training (the load's own peak reset).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failures abort it

use std::path::PathBuf;
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use trainer_sidecar::engine::{
    ClipMode, DpConfig, Model, NoiseSource, Optimizer, OptimizerKind, PrivateEngine, Tape,
    gradients,
};
use trainer_sidecar::llm::model::Segment;
use trainer_sidecar::llm::{Batch, Decoder, LoraSpec, Target};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--base") {
        // `cargo bench` with no arguments: nothing to do (run benches/lora/run.sh).
        return;
    }
    let base = PathBuf::from(arg(&args, "--base", "models/base/smollm2-135m-instruct"));
    let mode = arg(&args, "--mode", "dp");
    let batch: usize = arg(&args, "--batch", "4").parse().unwrap();
    let seq: usize = arg(&args, "--seq", "64").parse().unwrap();
    let rank: i64 = arg(&args, "--rank", "16").parse().unwrap();
    let steps: usize = arg(&args, "--steps", "3").parse().unwrap();
    let warmup: usize = arg(&args, "--warmup", "1").parse().unwrap();
    let threads: i32 = arg(&args, "--threads", "2").parse().unwrap();
    assert!(trainer_sidecar::runtime::tune_allocator());
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let mut decoder = Decoder::load(&base, Kind::Float, Device::Cpu).unwrap();
    let spec = LoraSpec {
        rank,
        alpha: Some(2 * rank),
        targets: Target::ALL.to_vec(),
        ..LoraSpec::default()
    };
    let mut model = Model::new(Kind::Float, Device::Cpu);
    decoder.add_lora(&spec, &mut model).unwrap();
    // B starts at zero; give it values so that A's gradients are not trivially zero
    tch::no_grad(|| {
        for (name, mut t) in decoder.adapter_tensors() {
            if name.contains("lora_B") {
                let _ = t.normal_(0.0, 0.01);
            }
        }
    });
    let loaded_rss = rss_mb("VmRSS:");
    // the peak of the training steps, not of loading the checkpoint (Linux: writing 5 to
    // clear_refs resets VmHWM)
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let vocab = decoder.config.vocab_size;
    let ids: Vec<Vec<i64>> = (0..batch)
        .map(|_| {
            Vec::<i64>::try_from(&Tensor::randint(
                vocab,
                [seq as i64],
                (Kind::Int64, Device::Cpu),
            ))
            .unwrap()
        })
        .collect();
    let trained = vec![true; seq];
    let rows: Vec<Vec<Segment<'_>>> = ids
        .iter()
        .map(|r| {
            vec![Segment {
                ids: r,
                trained: &trained,
            }]
        })
        .collect();
    let b = Batch::new(&rows, 0, Device::Cpu).unwrap();
    let mut params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 1e-3, 0.0, 0.0);
    let clip_mode = match mode.as_str() {
        "dp" => Some(ClipMode::Auto),
        "ghost" => Some(ClipMode::Ghost),
        "materialize" => Some(ClipMode::Materialize),
        "nonprivate" => None,
        other => panic!("--mode nonprivate|dp|ghost|materialize, not {other}"),
    };
    let mut engine = clip_mode.map(|clip_mode| {
        PrivateEngine::new(
            &model,
            DpConfig {
                max_grad_norm: 1.0,
                noise_multiplier: 1.0,
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
                e.accumulate(b.rows, |tape| {
                    decoder
                        .row_losses(&b, tape, true)
                        .map_err(|e| trainer_sidecar::engine::EngineError::Config(e.to_string()))
                })
                .unwrap();
                e.finish_step().unwrap()
            }
            None => {
                let loss = decoder
                    .row_losses(&b, &mut Tape::off(), true)
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
    let median = sorted[sorted.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "portcullis", "mode": mode, "batch": batch, "seq": seq, "rank": rank,
            "threads": threads, "step_ms": times, "median_ms": median,
            "tokens_per_second": (batch * seq) as f64 / (median / 1e3),
            "peak_rss_mb": rss_mb("VmHWM:"), "loaded_rss_mb": loaded_rss,
            "plan": engine.map(|e| {
                let mut methods: std::collections::BTreeMap<&str, usize> = Default::default();
                for p in e.plan() { *methods.entry(p.method).or_default() += 1; }
                methods.into_iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>()
            }),
        })
    );
}
