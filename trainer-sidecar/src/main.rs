//! `trainer-sidecar`: command-line entry point of the Portcullis trainer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trainer_sidecar::accountants::{self, Accountant, SubsampledGaussian};

#[derive(Parser)]
#[command(
    name = "trainer-sidecar",
    version,
    about = "Portcullis DP trainer sidecar"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What both accounting commands need to know about a run.
#[derive(clap::Args)]
struct RunArgs {
    /// Probability that each example joins a batch (batch size / dataset size).
    #[arg(long, short = 'q')]
    sample_rate: f64,
    /// Number of steps (logical batches).
    #[arg(long, short = 't')]
    steps: u64,
    /// δ of the (ε, δ) guarantee.
    #[arg(long, short = 'd')]
    delta: f64,
    /// rdp and prv give bounds; gdp is an approximation.
    #[arg(long, value_enum, default_value = "rdp")]
    accountant: Accountant,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch runtime this binary runs on (devices, threads) as JSON.
    Info,
    /// Privacy spent by T steps of DP-SGD (Poisson sampling at rate Q, noise multiplier S), as
    /// JSON: {"epsilon", "accountant", "order" (RDP only)}.
    Epsilon {
        /// Noise standard deviation divided by the clipping norm.
        #[arg(long, short = 's')]
        noise_multiplier: f64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The smallest noise multiplier that keeps T steps at rate Q within a target ε, as JSON:
    /// {"noise_multiplier", "epsilon", "accountant"}.
    Noise {
        /// The ε the run may spend.
        #[arg(long, short = 'e')]
        target_epsilon: f64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Train a classifier head with DP-SGD as described by a job file (YAML).
    Train {
        /// The job file.
        job: PathBuf,
        /// No progress bar (for logs and CI).
        #[arg(long)]
        quiet: bool,
    },
    /// Print the per-dataset privacy ledger as JSON (spent ε per dataset and run).
    Ledger {
        /// The ledger file.
        #[arg(long, default_value = "models/ledger.json")]
        path: PathBuf,
        /// Release the reservation of a run that crashed (status `running`): it then counts
        /// the spend it recorded, step by step, instead of its whole plan.
        #[arg(long, value_name = "RUN", requires = "dataset")]
        release: Option<String>,
        /// Dataset digest of the run to release.
        #[arg(long, value_name = "SHA256")]
        dataset: Option<String>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Before libtorch allocates anything: keep tensor buffers in the heap between steps.
    trainer_sidecar::runtime::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Info => {
            let info = trainer_sidecar::runtime::probe().context("probing libtorch")?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Epsilon {
            noise_multiplier,
            run,
        } => {
            let m = SubsampledGaussian::new(run.sample_rate, noise_multiplier)?;
            let eps = accountants::epsilon(run.accountant, m, run.steps, run.delta)?;
            println!("{}", serde_json::to_string(&eps)?);
        }
        Command::Noise {
            target_epsilon,
            run:
                RunArgs {
                    sample_rate,
                    steps,
                    delta,
                    accountant,
                },
        } => {
            let sigma = accountants::noise_multiplier(
                accountant,
                target_epsilon,
                sample_rate,
                steps,
                delta,
            )?;
            let m = SubsampledGaussian::new(sample_rate, sigma)?;
            let eps = accountants::epsilon(accountant, m, steps, delta)?;
            println!(
                "{}",
                serde_json::json!({
                    "noise_multiplier": sigma,
                    "epsilon": eps.epsilon,
                    "accountant": accountant.name(),
                })
            );
        }
        Command::Train { job, quiet } => {
            let report = trainer_sidecar::train::run_job_file(&job, !quiet)
                .with_context(|| format!("training job {}", job.display()))?;
            trainer_sidecar::runtime::release_free_memory();
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Ledger {
            path,
            release,
            dataset,
        } => {
            let ledger = trainer_sidecar::ledger::Ledger::open(&path)?;
            if let (Some(run), Some(dataset)) = (release, dataset) {
                ledger.finish(&dataset, &run, trainer_sidecar::ledger::RunStatus::Stopped)?;
            }
            let snap = ledger.snapshot()?;
            let spent: std::collections::BTreeMap<&String, f64> = snap
                .datasets
                .iter()
                .map(|(k, a)| (k, a.spent().0))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"spent_epsilon": spent, "ledger": snap})
                )?
            );
        }
    }
    Ok(())
}
