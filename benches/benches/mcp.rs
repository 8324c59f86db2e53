//! MCP `tools/call` latency, direct to an MCP server and through the gateway: each target is
//! an MCP endpoint (Streamable HTTP); the driver opens a session (`initialize`,
//! `notifications/initialized`), then `--calls` `tools/call` requests at each concurrency,
//! every worker on its own connection, one request at a time. Driven by `benches/mcp/run.sh`,
//! which starts the SDK's server and the gateways; prints one JSON line per target,
//! concurrency and round.
//!
//!   cargo bench -p benches --bench mcp -- --target direct=http://127.0.0.1:8001/mcp \
//!       --target rules=http://127.0.0.1:8080/mcp/demo --key pk-...

use std::time::Instant;

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// `name=url` of an MCP endpoint (repeat).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// The gateway's API key (sent to every target; an MCP server ignores it).
    #[arg(long)]
    key: String,
    /// Calls per target, concurrency and round.
    #[arg(long, default_value_t = 400)]
    calls: usize,
    /// Concurrencies (comma-separated).
    #[arg(long, default_value = "1,16")]
    concurrency: String,
    /// Rounds (targets interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Accept cargo bench's own flag.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The call every request makes: an e-mail address in the arguments (the rules rewrite it on
/// the way in) and a result the server echoes (the rules and classifiers read it on the way
/// out). Each call's text is different (its id in it), so the scan-once cache never answers
/// for the classifier: every result is scored.
fn call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "send_email",
        "arguments": {"to": "alice@example.com", "body": format!("Ticket {id}: the meeting moved to 3 pm on Thursday, room 4.12.")}}})
}

/// POST one message; the answer's JSON-RPC messages (JSON or SSE) and the session id.
async fn post(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    sid: Option<&str>,
    msg: &Value,
) -> Result<(Vec<Value>, Option<String>), String> {
    let mut rb = c
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(msg.to_string());
    if let Some(s) = sid {
        rb = rb.header("mcp-session-id", s);
    }
    let r = rb.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.map_err(|e| e.to_string())?;
    if status >= 400 {
        return Err(format!("HTTP {status}: {text}"));
    }
    let msgs = if text.trim_start().starts_with('{') {
        vec![serde_json::from_str(&text).map_err(|e| e.to_string())?]
    } else {
        text.split("\n\n")
            .filter_map(|ev| {
                ev.lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.trim_start().trim_end_matches('\r'))
            })
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    };
    Ok((msgs, sid))
}

async fn session(c: &reqwest::Client, url: &str, key: &str) -> Result<Option<String>, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}});
    let (_, sid) = post(c, url, key, None, &init).await?;
    post(
        c,
        url,
        key,
        sid.as_deref(),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    // list once, as a client does before calling (the gateway pins the tools here)
    post(
        c,
        url,
        key,
        sid.as_deref(),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await?;
    Ok(sid)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// `calls` calls at `conc` workers, ids from `first_id` (never repeated in a run, so no text
/// is one the gateway scored before); (latencies in ms, errors, wall seconds).
async fn phase(
    url: &str,
    key: &str,
    calls: usize,
    conc: usize,
    first_id: usize,
) -> (Vec<f64>, usize, f64) {
    let setup = reqwest::Client::new();
    let sid = match session(&setup, url, key).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{url}: cannot open a session: {e}");
            return (Vec::new(), calls, 0.0);
        }
    };
    let t0 = Instant::now();
    let per = calls.div_ceil(conc);
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (url, key, sid) = (url.to_string(), key.to_string(), sid.clone());
        tasks.push(tokio::spawn(async move {
            // one connection per worker
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap_or_default();
            let mut lat = Vec::with_capacity(per);
            let mut errors = 0;
            for i in 0..per {
                let id = (first_id + w * per + i) as u64;
                let t = Instant::now();
                match post(&c, &url, &key, sid.as_deref(), &call(id)).await {
                    Ok((msgs, _))
                        if msgs
                            .iter()
                            .any(|m| m["id"] == id && m.get("result").is_some()) =>
                    {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    (lat, errors, t0.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let concs: Vec<usize> = args
        .concurrency
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut first_id = 10;
    for round in 1..=args.rounds {
        for &conc in &concs {
            first_id += args.calls + conc;
            for t in &args.targets {
                let Some((name, url)) = t.split_once('=') else {
                    eprintln!("--target must be name=url: {t}");
                    std::process::exit(2);
                };
                let (mut lat, errors, wall) =
                    phase(url, &args.key, args.calls, conc, first_id).await;
                let n = lat.len();
                println!(
                    "{}",
                    json!({
                        "target": name, "round": round, "concurrency": conc, "calls": n,
                        "errors": errors, "calls_per_s": n as f64 / wall.max(1e-9),
                        "p50_ms": pct(&mut lat, 0.5), "p90_ms": pct(&mut lat, 0.9),
                        "p99_ms": pct(&mut lat, 0.99),
                    })
                );
            }
        }
    }
}
