//! `trainer-sidecar serve` end to end, as a real process on an ephemeral port: the token, the
//! spec checks (422 with every problem), the budget refusal (409), a job followed over SSE to
//! its end, `kill -9` in the middle of a job and the resume after a restart, cancel, artifacts
//! and metrics; and a DP LoRA job on SmolLM2-135M-Instruct whose adapter PEFT loads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{gap_to_peft, root, smollm2, tiny};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Sidecar {
    child: Child,
    url: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sidecar on `dir`, signing its outputs with `dir/keys/private.pem` (made on first start)
/// and publishing adapters into `dir/published`.
fn start(dir: &Path) -> Sidecar {
    let port = free_port();
    let keys = dir.join("keys");
    if !keys.join("private.pem").is_file() {
        signing::keygen_to(&keys).unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_trainer-sidecar"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir)
        .arg("--signing-key")
        .arg(keys.join("private.pem"))
        .arg("--adapters-dir")
        .arg(dir.join("published"))
        .env("PORTCULLIS_SIDECAR_TOKEN", TOKEN)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Owned by the guard at once, so a failed start still kills and waits.
    let sidecar = Sidecar {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::blocking::get(format!("{}/healthz", sidecar.url))
            .is_ok_and(|r| r.status() == 200)
        {
            return sidecar;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the sidecar did not start");
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

fn post(s: &Sidecar, body: &str, yaml: bool) -> reqwest::blocking::Response {
    client()
        .post(format!("{}/v1/jobs", s.url))
        .bearer_auth(TOKEN)
        .header(
            "content-type",
            if yaml {
                "application/yaml"
            } else {
                "application/json"
            },
        )
        .body(body.to_string())
        .send()
        .unwrap()
}

fn get(s: &Sidecar, path: &str) -> Value {
    client()
        .get(format!("{}{path}", s.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Read the job's SSE stream until `stop` says so or the stream ends; the events seen.
fn follow(
    s: &Sidecar,
    id: &str,
    mut stop: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    use std::io::{BufRead, BufReader};
    let r = client()
        .get(format!("{}/v1/jobs/{id}/events", s.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut out = Vec::new();
    let mut event = String::new();
    for line in BufReader::new(r).lines() {
        let Ok(line) = line else { break };
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap();
            out.push((event.clone(), v["data"].clone()));
            if stop(&event, &v["data"]) {
                break;
            }
        }
    }
    out
}

fn qa_data(dir: &Path, n: usize) -> PathBuf {
    let qa = [
        ("What is the capital of France?", " Paris."),
        ("What is the capital of Italy?", " Rome."),
        ("Say hello.", " Hello world."),
        ("Count to three.", " 1 2 3."),
    ];
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let (q, a) = qa[i % qa.len()];
            json!({"prompt": q, "completion": a}).to_string()
        })
        .collect();
    let p = dir.join("qa.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

fn ledger_run(dir: &Path) -> Value {
    let l: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).unwrap()).unwrap();
    l["datasets"].as_object().unwrap().values().next().unwrap()["runs"][0].clone()
}

#[test]
fn the_api_checks_specs_and_budgets_and_a_job_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let data = qa_data(dir.path(), 96);
    let s = start(&state);

    // the token
    let r = client().get(format!("{}/v1/jobs", s.url)).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{}/metrics", s.url))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // a bad spec: every problem, each with its path
    let r = post(
        &s,
        &json!({"kind": "lora", "base_model": "nowhere", "train_data": data,
                "privacy": {"target_epsilon": -1}, "lora": {"rank": 0}})
        .to_string(),
        false,
    );
    assert_eq!(r.status(), 422);
    let body: Value = r.json().unwrap();
    let paths: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["base_model", "privacy.target_epsilon", "lora.rank"],
        "{body}"
    );
    let r = post(&s, "kind: lora\nbase_model: [\n", true);
    assert_eq!(r.status(), 422);

    // a job, in YAML, killed with SIGKILL after a checkpoint
    let spec = format!(
        "kind: lora\nname: qa\nbase_model: {}\ntrain_data: {}\nprivacy: {{target_epsilon: 8, dataset_budget: {{epsilon: 10, delta: 1.0e-4}}}}\n\
         lora: {{rank: 4}}\nmax_steps: 300\ntraining: {{batch_size: 8, checkpoint_every: 5}}\nseed: 3\n",
        tiny().join("qwen2-tied-bias").display(),
        data.display()
    );
    let r = post(&s, &spec, true);
    assert_eq!(r.status(), 201);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v1/jobs/")
    );
    let job: Value = r.json().unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["state"], "queued");
    let seen = follow(&s, &id, |e, d| {
        e == "checkpoint" && d["step"].as_u64() >= Some(20)
    });
    let last_eps = seen
        .iter()
        .rev()
        .find(|(e, _)| e == "progress")
        .map(|(_, d)| d["epsilon"].as_f64().unwrap())
        .unwrap();
    let mut s = s;
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    // the ledger holds at least what the process had spent, and keeps the run's plan reserved
    let run = ledger_run(&state);
    assert_eq!(run["status"], "running");
    assert!(
        run["epsilon"].as_f64().unwrap() >= last_eps,
        "{run} < {last_eps}"
    );
    let steps_at_kill = run["steps"].as_u64().unwrap();
    assert!(steps_at_kill >= 20);

    // a second job on the same data would pass the dataset's lifetime budget: 409
    drop(s);
    let s = start(&state);
    let r = post(&s, &spec, true);
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap();
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("qa.jsonl") && msg.contains("lifetime budget"),
        "{msg}"
    );

    // the restarted sidecar resumed the job from its checkpoint
    let events = follow(&s, &id, |e, _| {
        matches!(e, "succeeded" | "failed" | "cancelled")
    });
    assert!(events.iter().any(|(e, _)| e == "resumed"), "{events:?}");
    let (last, end) = events.last().unwrap();
    assert_eq!(last, "succeeded", "{end}");
    let job = get(&s, &format!("/v1/jobs/{id}"));
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["resumed"], 1);
    let eps = job["epsilon_spent"].as_f64().unwrap();
    assert!(eps <= 8.0 + 1e-9, "{eps}");
    // every step drawn counts: the lost ones (after the checkpoint) and the rest of the plan
    let run = ledger_run(&state);
    assert_eq!(
        (run["status"].as_str(), run["steps"].as_u64()),
        (Some("finished"), Some(300))
    );
    let report = get(&s, &format!("/v1/jobs/{id}/artifacts/report.json"));
    assert_eq!(report["privacy"]["steps_accounted"], 300);
    let applied = report["privacy"]["steps_applied"].as_u64().unwrap();
    assert!(
        applied <= 300 && applied >= 300 - (steps_at_kill - 20) - 5,
        "{applied}"
    );
    let adapter = PathBuf::from(job["outputs"]["adapter"].as_str().unwrap());
    assert!(adapter.join("adapter_model.safetensors").is_file());
    // signed by the sidecar, with the job's privacy in the signed provenance
    assert_eq!(
        job["outputs"]["signature"].as_str(),
        adapter.join("model.sig").to_str()
    );
    let public = signing::read_public_key(&state.join("keys/public.pem")).unwrap();
    let signed = signing::verify(&adapter, &public, None).expect("the adapter's signature");
    let prov = signed.provenance.unwrap();
    assert_eq!(prov["privacy"]["epsilon"].as_f64(), Some(eps));
    assert_eq!(prov["job"], id.as_str());
    assert!(prov["dataset"]["sha256"].is_string(), "{prov}");
    // published, signed, as the first version of the job's name in the adapters folder
    let published = PathBuf::from(job["outputs"]["published"].as_str().unwrap());
    assert_eq!(
        published.parent().unwrap().parent().unwrap(),
        state.join("published")
    );
    assert_eq!(published.file_name().unwrap(), "1");
    signing::verify(&published, &public, None).expect("the published copy verifies");
    let svg = client()
        .get(format!("{}/v1/jobs/{id}/artifacts/training.svg", s.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let r = client()
        .get(format!(
            "{}/v1/jobs/{id}/artifacts/..%2F..%2Fledger.json",
            s.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert!(matches!(r.status().as_u16(), 400 | 404), "{}", r.status());

    // cancel: an ended job cannot be; a queued one ends at once
    let r = client()
        .delete(format!("{}/v1/jobs/{id}", s.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let xdir = dir.path().join("x");
    std::fs::create_dir_all(&xdir).unwrap();
    let other = qa_data(&xdir, 40);
    let spec2 = json!({"kind": "lora", "base_model": tiny().join("llama3-tied"), "train_data": other,
        "privacy": {"target_epsilon": 4}, "max_steps": 100000, "training": {"batch_size": 4}});
    let a: Value = post(&s, &spec2.to_string(), false).json().unwrap();
    let b: Value = post(&s, &spec2.to_string(), false).json().unwrap();
    // b waits behind a (one job at a time): cancel it while queued, then a while it runs
    let r = client()
        .delete(format!("{}/v1/jobs/{}", s.url, b["id"].as_str().unwrap()))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        get(&s, &format!("/v1/jobs/{}", b["id"].as_str().unwrap()))["state"],
        "cancelled"
    );
    let aid = a["id"].as_str().unwrap().to_string();
    follow(&s, &aid, |e, _| e == "progress");
    let r = client()
        .delete(format!("{}/v1/jobs/{aid}", s.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let ev = follow(&s, &aid, |e, _| {
        matches!(e, "succeeded" | "failed" | "cancelled")
    });
    assert_eq!(ev.last().unwrap().0, "cancelled");

    // metrics
    let m = client()
        .get(format!("{}/metrics", s.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains("portcullis_sidecar_jobs{state=\"succeeded\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_sidecar_jobs{state=\"cancelled\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_sidecar_epsilon_spent{dataset="),
        "{m}"
    );
    let list = get(&s, "/v1/jobs");
    assert_eq!(list["jobs"].as_array().unwrap().len(), 3);
}

#[test]
fn a_dp_lora_job_on_smollm2_through_the_api_gives_an_adapter_peft_loads() {
    let base = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let topics = [
        (
            "Where is my order?",
            "I am sorry for the wait. Your order is on its way and arrives within two days.",
        ),
        (
            "Can I return these shoes?",
            "Of course. You can return them within 30 days for a full refund.",
        ),
        (
            "My package arrived damaged.",
            "I am sorry to hear that. We will send a replacement right away.",
        ),
        (
            "How do I reset my password?",
            "Click 'Forgot password' on the sign-in page and follow the e-mail we send you.",
        ),
    ];
    let lines: Vec<String> = (0..48)
        .map(|i| {
            let (q, a) = topics[i % topics.len()];
            json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}).to_string()
        })
        .collect();
    let data = dir.path().join("support.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let s = start(&dir.path().join("state"));
    let spec = json!({
        "kind": "lora",
        "base_model": base,
        "train_data": data,
        "privacy": {"target_epsilon": 8, "delta": 1e-3},
        "lora": {"rank": 16},
        "max_steps": 6,
        "data": {"max_length": 96},
        "training": {"batch_size": 4, "physical_batch_size": 4, "learning_rate": 0.002},
    });
    let r = post(&s, &spec.to_string(), false);
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = follow(&s, &id, |e, _| {
        matches!(e, "succeeded" | "failed" | "cancelled")
    });
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"queued"));
    assert_eq!(kinds.last(), Some(&"succeeded"), "{events:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "progress").count(), 6);
    let job = get(&s, &format!("/v1/jobs/{id}"));
    assert!(job["epsilon_spent"].as_f64().unwrap() <= 8.0);
    let report = get(&s, &format!("/v1/jobs/{id}/artifacts/report.json"));
    assert!(report["privacy"]["epsilon"].as_f64().unwrap() <= 8.0);
    assert!(report["training"]["tokens_per_second"].as_f64().unwrap() > 0.0);
    let adapter = PathBuf::from(job["outputs"]["adapter"].as_str().unwrap());
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 16);
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);
    // PEFT loads it onto transformers' SmolLM2, and it computes what our decoder computes
    let ids: Vec<i64> = vec![1, 9690, 198, 2683, 359, 253, 5356, 5646, 2, 198];
    let diff = gap_to_peft(&base, &adapter, &ids);
    assert!(diff < 1e-3, "PEFT's logits differ by {diff}");
}

#[test]
fn a_classifier_head_job_runs_through_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::head_data(dir.path());
    let s = start(&dir.path().join("state"));
    let spec = json!({
        "kind": "classifier_head",
        "name": "api-head",
        "data": {"train": data, "validation_fraction": 0.2},
        "encoder": root().join("models/guard"),
        "privacy": {"target_epsilon": 4.0},
        "training": {"epochs": 2, "batch_size": 32, "evaluations": 2},
        "output": {"dir": "head"},
        "cache": dir.path().join("cache"),
    });
    let r = post(&s, &spec.to_string(), false);
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = follow(&s, &id, |e, _| {
        matches!(e, "succeeded" | "failed" | "cancelled")
    });
    assert_eq!(events.last().unwrap().0, "succeeded", "{events:?}");
    assert!(events.iter().any(|(e, _)| e == "progress"));
    let job = get(&s, &format!("/v1/jobs/{id}"));
    assert_eq!(job["kind"], "classifier_head");
    assert!(job["epsilon_spent"].as_f64().unwrap() <= 4.0);
    let head = PathBuf::from(job["outputs"]["head"].as_str().unwrap());
    assert!(
        head.is_file() && head.starts_with(dir.path().join("state")),
        "{}",
        head.display()
    );
    // its ε is in the sidecar's ledger
    assert!(dir.path().join("state/ledger.json").is_file());
}
