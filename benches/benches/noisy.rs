//! Noisy neighbour: a quiet tenant's latency through the gateway's classifiers, alone and
//! while another tenant floods them with many-message chats. Driven by
//! `benches/noisy/run.sh`, which starts mock-tgi and the gateway(s) and passes their URLs
//! and keys; prints one JSON line per target, phase and round.
//!
//!   cargo bench -p benches --bench noisy -- --target new=http://127.0.0.1:8080 \
//!       --quiet-key pk-... --loud-key pk-...

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// `name=url` of a gateway to measure (repeat).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// The quiet tenant's key.
    #[arg(long)]
    quiet_key: String,
    /// The flooding tenant's key.
    #[arg(long)]
    loud_key: String,
    /// Quiet requests per phase (sequential).
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Concurrent flooding requests.
    #[arg(long, default_value_t = 8)]
    loud_concurrency: usize,
    /// Messages per flooding request (one classifier window each).
    #[arg(long, default_value_t = 200)]
    loud_messages: usize,
    /// Rounds (targets interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Accept cargo bench's own flag.
    #[arg(long, hide = true)]
    bench: bool,
}

fn chat(messages: Vec<serde_json::Value>) -> String {
    json!({"model": "m", "max_tokens": 4, "messages": messages}).to_string()
}

async fn quiet_phase(c: &reqwest::Client, url: &str, key: &str, n: usize) -> (Vec<f64>, usize) {
    let body = chat(vec![
        json!({"role": "user", "content": "What are your opening hours on Sunday?"}),
    ]);
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = c
            .post(format!("{url}/v1/chat/completions"))
            .header("content-type", "application/json")
            .bearer_auth(key)
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            _ => errors += 1,
        }
    }
    (lat, errors)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let loud_body = chat(
        (0..a.loud_messages)
            .map(|i| json!({"role": "user", "content": format!("Message {i}: please check order {i} again.")}))
            .collect(),
    );
    for round in 1..=a.rounds {
        for t in &a.targets {
            let (name, url) = t
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--target {t}: expected name=url"))?;
            let (mut alone, alone_err) = quiet_phase(&c, url, &a.quiet_key, a.samples).await;
            // the flood runs until the quiet phase ends
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flood: Vec<_> = (0..a.loud_concurrency)
                .map(|_| {
                    let (c, url, key, body, stop) = (
                        c.clone(),
                        url.to_string(),
                        a.loud_key.clone(),
                        loud_body.clone(),
                        stop.clone(),
                    );
                    tokio::spawn(async move {
                        let mut sent = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            if let Ok(r) = c
                                .post(format!("{url}/v1/chat/completions"))
                                .header("content-type", "application/json")
                                .bearer_auth(&key)
                                .body(body.clone())
                                .send()
                                .await
                            {
                                let _ = r.bytes().await;
                            }
                            sent += 1;
                        }
                        sent
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(500)).await; // the queue fills
            let (mut flooded, flooded_err) = quiet_phase(&c, url, &a.quiet_key, a.samples).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut loud_sent = 0;
            for f in flood {
                loud_sent += f.await.unwrap_or(0);
            }
            for (phase, v, errors) in [
                ("alone", &mut alone, alone_err),
                ("flooded", &mut flooded, flooded_err),
            ] {
                println!(
                    "{}",
                    json!({
                        "target": name, "round": round, "phase": phase,
                        "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "ok": v.len(),
                        "errors": errors, "loud_requests": loud_sent,
                    })
                );
            }
        }
    }
    Ok(())
}
