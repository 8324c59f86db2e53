//! DP LoRA jobs in-process on a tiny checkpoint: the data guard, the privacy plan, training
//! that moves the adapter and lowers the loss, PEFT's view of the result, cancellation with a
//! checkpoint, and the one-run privacy audit (which passes the engine as it is and fails it
//! with the noise or the clipping switched off).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use trainer_sidecar::audit::{self, AuditConfig};
use trainer_sidecar::engine::Fault;
use trainer_sidecar::finetune::{self, Hooks, Outcome};
use trainer_sidecar::jobs::spec::{self, JobSpec};
use trainer_sidecar::ledger::{Ledger, RunStatus};

mod common;
use common::{gap_to_peft, tiny};

fn tiny_qwen() -> PathBuf {
    tiny().join("qwen2-tied-bias")
}

/// 96 prompt/completion lines the tiny model can learn (a fixed answer per question), one
/// with an e-mail address and one with an AWS key for the data guard.
fn dataset(dir: &Path) -> PathBuf {
    let qa = [
        ("What is the capital of France?", " Paris."),
        ("What is the capital of Italy?", " Rome."),
        ("Say hello.", " Hello world."),
        ("Count to three.", " 1 2 3."),
    ];
    let mut lines = Vec::new();
    for i in 0..96 {
        let (q, a) = qa[i % qa.len()];
        let prompt = match i {
            0 => format!("Mail jane.doe@example.com: {q}"),
            1 => format!("My key is AKIAQ7LMZ2XABCDEFGHI. {q}"),
            _ => q.to_string(),
        };
        lines.push(
            json!({"prompt": prompt, "completion": a, "user": format!("u{}", i % 24)}).to_string(),
        );
    }
    let path = dir.join("qa.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn job(dir: &Path, extra: Value) -> trainer_sidecar::jobs::spec::LoraJob {
    let mut v = json!({
        "kind": "lora",
        "base_model": tiny_qwen(),
        "train_data": dataset(dir),
        "privacy": {"target_epsilon": 8.0},
        "lora": {"rank": 4},
        "max_steps": 40,
        "training": {"batch_size": 16, "learning_rate": 0.02, "checkpoint_every": 10},
        "ledger": dir.join("ledger.json"),
        "seed": 7,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    match spec::from_value(v, dir).unwrap() {
        JobSpec::Lora(j) => j,
        JobSpec::ClassifierHead(_) => unreachable!(),
    }
}

#[derive(Default)]
struct Record {
    events: std::sync::Mutex<Vec<(String, Value)>>,
    cancel_at: AtomicU64,
    step: AtomicU64,
}

impl Hooks for Record {
    fn event(&self, kind: &str, data: Value) {
        if kind == "progress" {
            self.step
                .store(data["step"].as_u64().unwrap_or(0), Ordering::SeqCst);
        }
        self.events.lock().unwrap().push((kind.to_string(), data));
    }
    fn cancelled(&self) -> bool {
        let at = self.cancel_at.load(Ordering::SeqCst);
        at > 0 && self.step.load(Ordering::SeqCst) >= at
    }
}

#[test]
fn a_dp_lora_job_trains_guards_accounts_and_writes_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), json!({}));
    let hooks = Record::default();
    let work = dir.path().join("work");
    let Outcome::Succeeded(report) =
        finetune::run(&j, &work, &dir.path().join("ledger.json"), &hooks).unwrap()
    else {
        panic!("not succeeded")
    };
    // privacy: within the target, every step accounted
    let eps = report["privacy"]["epsilon"].as_f64().unwrap();
    assert!(eps <= 8.0 && eps > 1.0, "{eps}");
    assert_eq!(report["privacy"]["steps_accounted"], 40);
    let ledger = Ledger::open(&dir.path().join("ledger.json"))
        .unwrap()
        .snapshot()
        .unwrap();
    let run = &ledger.datasets.values().next().unwrap().runs[0];
    assert_eq!((run.status, run.steps), (RunStatus::Finished, 40));
    assert!((run.epsilon - eps).abs() < 1e-9);
    // the guard changed the two lines and says so by type, never by value
    let guard = &report["data_guard"];
    assert_eq!(guard["changed"], 2);
    assert_eq!(guard["findings"]["email"]["pseudonymize"], 1);
    assert_eq!(guard["findings"]["aws_key"]["redact"], 1);
    assert!(!report.to_string().contains("jane.doe") && !report.to_string().contains("AKIAQ7"));
    // it learned: the loss of the last steps is below the first steps'
    let losses: Vec<f64> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["loss"].as_f64())
        .collect();
    let head: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(tail < head * 0.8, "loss {head:.3} -> {tail:.3}");
    assert!(report["lora"]["tensors_moved"].as_u64().unwrap() > 0);
    // events: progress per step, checkpoints every 10
    let events = hooks.events.lock().unwrap();
    assert_eq!(events.iter().filter(|(k, _)| k == "progress").count(), 40);
    assert_eq!(events.iter().filter(|(k, _)| k == "checkpoint").count(), 4);
    // outputs
    let adapter = work.join("outputs/adapter");
    assert!(adapter.join("adapter_model.safetensors").is_file());
    let svg = std::fs::read_to_string(work.join("outputs/training.svg")).unwrap();
    assert!(svg.contains("ε spent"));
    // PEFT loads it onto transformers' model and computes what our decoder computes
    let ids = vec![1i64, 60, 61, 62, 63, 64];
    let diff = gap_to_peft(&tiny_qwen(), &adapter, &ids);
    assert!(diff < 1e-4, "PEFT's logits differ by {diff}");
}

#[test]
fn user_level_privacy_counts_users_and_cancel_leaves_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(
        dir.path(),
        json!({"privacy": {"target_epsilon": 8.0, "unit": "user"}, "training": {"batch_size": 6, "checkpoint_every": 100}}),
    );
    let hooks = Record::default();
    hooks.cancel_at.store(7, Ordering::SeqCst);
    let work = dir.path().join("work");
    let out = finetune::run(&j, &work, &dir.path().join("ledger.json"), &hooks).unwrap();
    assert!(matches!(out, Outcome::Cancelled(7)), "{out:?}");
    let events = hooks.events.lock().unwrap();
    let data = &events.iter().find(|(k, _)| k == "log").unwrap().1["data"];
    assert_eq!(data["units"], 24, "24 users, 4 lines each: {data}");
    let cp = events.iter().find(|(k, _)| k == "checkpoint").unwrap();
    assert_eq!(cp.1["step"], 7);
    assert!(work.join("checkpoints/latest").is_file());
    // a cancelled run counts what it spent
    let ledger = Ledger::open(&dir.path().join("ledger.json"))
        .unwrap()
        .snapshot()
        .unwrap();
    let run = &ledger.datasets.values().next().unwrap().runs[0];
    assert_eq!((run.status, run.steps), (RunStatus::Stopped, 7));
}

#[test]
fn specs_are_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let v = json!({"kind": "lora", "base_model": tiny_qwen(), "train_data": data,
        "privacy": {"target_epsilon": 0, "unit": "household"}, "lora": {"rank": 1000, "targets": ["q_proj", "wq"]},
        "training": {"batch_size": 0}});
    let e = spec::from_value(v, dir.path()).unwrap_err();
    let text = e.to_string();
    for want in ["privacy.unit", "lora.targets[1]"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let v = json!({"kind": "lora", "base_model": tiny_qwen(), "train_data": data,
        "privacy": {"target_epsilon": 0}, "lora": {"rank": 1000}, "training": {"batch_size": 0}});
    let e = spec::from_value(v, dir.path()).unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["privacy.target_epsilon", "lora.rank", "training.batch_size"],
        "{e}"
    );
}

#[test]
fn the_audit_passes_the_engine_and_catches_it_broken() {
    let base = AuditConfig {
        canaries: 2000,
        examples: 1000,
        batch_size: 150,
        steps: 250,
        target_epsilon: 2.0,
        seed: Some(11),
        ..AuditConfig::default()
    };
    let ok = audit::run(&base).unwrap();
    assert!(ok.consistent, "{ok:?}");
    assert!(ok.epsilon_lower_bound <= ok.claimed_epsilon);
    for fault in [Fault::NoNoise, Fault::NoClipping] {
        let broken = audit::run(&AuditConfig {
            fault,
            ..base.clone()
        })
        .unwrap();
        assert!(
            broken.epsilon_lower_bound > broken.claimed_epsilon,
            "{fault:?}: bound {} vs claim {}",
            broken.epsilon_lower_bound,
            broken.claimed_epsilon
        );
    }
}
