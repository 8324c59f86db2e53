//! `mock-tgi`: a faithful TGI test backend (see `benches::mock`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use benches::mock::{self, Mock, MockConfig, Mode, Script};
use clap::Parser;

/// A mock Text Generation Inference server for tests, benchmarks and demos.
#[derive(Parser, Debug)]
#[command(name = "mock-tgi", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Answer from this YAML script instead of echoing the prompt.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Tokens per second (0: no pacing).
    #[arg(long, default_value_t = 0.0)]
    tokens_per_second: f64,
    /// Time to first token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Model id reported by /info.
    #[arg(long, default_value = "portcullis/mock-tgi")]
    model_id: String,
    /// How many requests /_mock/requests keeps.
    #[arg(long, default_value_t = 1000)]
    record: usize,
    /// Requests above this many in flight get 429 "Model is overloaded".
    #[arg(long, default_value_t = 4096)]
    max_concurrent_requests: usize,
    /// max_input_tokens reported by /info and enforced.
    #[arg(long, default_value_t = 1_000_000)]
    max_input_tokens: usize,
    /// max_total_tokens reported by /info and enforced.
    #[arg(long, default_value_t = 1_048_576)]
    max_total_tokens: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Compress answers with gzip when the client accepts it (as hosted APIs do; TGI does not).
    #[arg(long)]
    compress: bool,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.tokens_per_second.is_finite() && args.tokens_per_second >= 0.0) {
        anyhow::bail!("--tokens-per-second must be a finite number >= 0");
    }
    let mode = match &args.script {
        Some(p) => Mode::Script(Script::load(p)?),
        None => Mode::Echo,
    };
    let config = MockConfig {
        mode,
        tokens_per_second: args.tokens_per_second,
        ttft: Duration::from_millis(args.ttft_ms),
        model_id: args.model_id.clone(),
        record_limit: args.record,
        limits: mock::Limits {
            max_input_tokens: args.max_input_tokens,
            max_total_tokens: args.max_total_tokens,
            max_stop_sequences: 4,
        },
        max_concurrent_requests: args.max_concurrent_requests,
        compress: args.compress,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to learn the port.
        println!("mock-tgi listening on http://{addr}");
        if !args.quiet {
            eprintln!(
                "mode: {}; {} tok/s; ttft {} ms",
                if args.script.is_some() {
                    "script"
                } else {
                    "echo"
                },
                args.tokens_per_second,
                args.ttft_ms
            );
        }
        let mock = Mock::new(config);
        tokio::select! {
            r = mock::serve(listener, mock) => r.context("serving"),
            _ = shutdown_signal() => Ok(()),
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
