//! `gateway`: the Portcullis gateway's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::GatewayConfig;

// The proxy allocates per request (headers, bodies, tasks); glibc's malloc showed up at ~7% of
// the proxy's CPU under load. mimalloc measured faster (benches/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis: a guardrail gateway for TGI and OpenAI-compatible LLM servers.
#[derive(Parser)]
#[command(name = "gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file (and the policy it names) and exit: 0 if valid, 1 if not,
    /// with one `file:line:column: path: problem` line per problem on stderr.
    Validate {
        /// The configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match GatewayConfig::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} upstream(s), default `{}`, listen {}, admin {}{})",
                    config.display(),
                    c.upstreams.len(),
                    c.default_upstream,
                    c.listen,
                    c.admin_listen,
                    c.policy
                        .as_ref()
                        .map(|(_, p)| format!(", policy `{}` v{}", p.name, p.version))
                        .unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                for err in &e.errors {
                    eprintln!("{err}");
                }
                eprintln!("{}: {} problem(s) found", config.display(), e.errors.len());
                ExitCode::FAILURE
            }
        },
        Command::Schema => match serde_json::to_string_pretty(&gateway::config::json_schema()) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => {
            let c = match GatewayConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    for err in &e.errors {
                        eprintln!("{err}");
                    }
                    eprintln!("error: the configuration is invalid; nothing was started");
                    return ExitCode::FAILURE;
                }
            };
            let _log_guard = match gateway::telemetry::init(&c.log) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            match gateway::server::run(c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
