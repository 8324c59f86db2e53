//! `trainer-sidecar`: command-line entry point of the Portcullis trainer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trainer_sidecar::accountants::{self, Accountant, SubsampledGaussian};
use trainer_sidecar::engine::Fault;
use trainer_sidecar::jobs::spec::JobSpec;

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

#[derive(Clone, Copy, clap::ValueEnum)]
enum FaultArg {
    /// The engine as it is.
    None,
    /// No noise.
    NoNoise,
    /// No clipping.
    NoClipping,
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
    /// Run a job file (YAML or JSON) here, without the service: `kind: lora` fine-tunes an LLM
    /// into a PEFT adapter; a classifier-head job (`kind: classifier_head`, or no `kind`)
    /// trains a gateway head. Prints the report as JSON.
    Train {
        /// The job file.
        job: PathBuf,
        /// No progress bar (for logs and CI).
        #[arg(long)]
        quiet: bool,
        /// LoRA jobs: the folder for checkpoints and outputs (a second run resumes from its
        /// last checkpoint). Default `runs/<job name>`.
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// Serve the job API (see the README, "Trainer sidecar"). The bearer token is read from
    /// PORTCULLIS_SIDECAR_TOKEN.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: std::net::SocketAddr,
        /// Folder for job folders and the ledger (`<dir>/jobs/<id>/`, `<dir>/ledger.json`).
        #[arg(long)]
        dir: PathBuf,
        /// Jobs that run at the same time.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Sign every job's adapter or bundle with this PKCS#8 PEM P-256 key (`keygen`):
        /// OpenSSF model_signing v1.0, with the job's ε, δ, accountant and data guard signed
        /// along. Unset: outputs are not signed.
        #[arg(long, env = "PORTCULLIS_SIDECAR_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
        /// Certificate mode: the signing key's PEM certificate (model_signing `sign
        /// certificate`); verifiers then trust its CA root instead of the key.
        #[arg(long, requires = "signing_key")]
        signing_certificate: Option<PathBuf>,
        /// Certificate mode: PEM intermediate certificates to include (repeat).
        #[arg(long, requires = "signing_certificate")]
        certificate_chain: Vec<PathBuf>,
        /// Publish every LoRA adapter a job makes, signed, as the next version of
        /// `<DIR>/<job name>/` (the gateway's `adapters.dir`). Classifier bundles are
        /// published where their spec says, after signing.
        #[arg(long, env = "PORTCULLIS_SIDECAR_ADAPTERS_DIR")]
        adapters_dir: Option<PathBuf>,
        /// A gateway's admin listener to notify after each publication
        /// (`POST /admin/models/refresh`, token from PORTCULLIS_ADMIN_TOKEN).
        #[arg(long, env = "PORTCULLIS_GATEWAY_ADMIN")]
        gateway_admin: Option<String>,
    },
    /// An empirical privacy audit in one training run (Steinke, Nasr & Jagielski 2023): the
    /// ε lower bound at the given confidence next to the accountant's claim, as JSON.
    Audit {
        /// Canaries, each included with probability 1/2 (at most 2048).
        #[arg(long, default_value_t = 2000)]
        canaries: usize,
        /// Real examples.
        #[arg(long, default_value_t = 1000)]
        examples: usize,
        /// Expected examples per step.
        #[arg(long, default_value_t = 150)]
        batch_size: usize,
        /// Steps.
        #[arg(long, default_value_t = 250)]
        steps: u64,
        /// The ε the accountant claims (σ is calibrated to it).
        #[arg(long, default_value_t = 2.0)]
        epsilon: f64,
        /// δ.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// Confidence of the lower bound.
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        /// Break the engine on purpose, to see the audit catch it.
        #[arg(long, value_enum, default_value = "none")]
        fault: FaultArg,
        /// A fixed seed (reproducible).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Make an ECDSA P-256 key pair for signing models: DIR/private.pem (mode 0600, PKCS#8)
    /// and DIR/public.pem (what verifiers and the gateway trust).
    Keygen {
        /// Where to write the keys (created; existing keys are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a model folder in the OpenSSF model_signing v1.0 format: key mode (the standard
    /// `model_signing verify key` accepts it), or certificate mode with `--certificate`
    /// (`model_signing verify certificate`). A provenance JSON (ε, δ, accountant, data guard,
    /// digests, job) goes into the signed predicate.
    Sign {
        /// The model folder.
        model: PathBuf,
        /// The PKCS#8 PEM private key (`keygen`).
        #[arg(long)]
        private_key: PathBuf,
        /// Certificate mode: the PEM signing certificate of the private key.
        #[arg(long)]
        certificate: Option<PathBuf>,
        /// Certificate mode: PEM intermediate certificates to include (repeat).
        #[arg(long, requires = "certificate")]
        chain: Vec<PathBuf>,
        /// Where the signature goes (default MODEL/model.sig).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// A JSON file of provenance to sign along (verifiers print it back).
        #[arg(long)]
        provenance: Option<PathBuf>,
    },
    /// Verify a model folder against its signature and a public key; prints the files and the
    /// signed provenance as JSON, exits 1 with the reason when anything does not match.
    Verify {
        /// The model folder.
        model: PathBuf,
        /// The PEM public key (key mode).
        #[arg(long, required_unless_present = "roots", conflicts_with = "roots")]
        public_key: Option<PathBuf>,
        /// Certificate mode: PEM CA root certificates to trust (repeat).
        #[arg(long)]
        roots: Vec<PathBuf>,
        /// The signature (default MODEL/model.sig).
        #[arg(long)]
        signature: Option<PathBuf>,
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
        Command::Train { job, quiet, work } => {
            let text = std::fs::read_to_string(&job)
                .with_context(|| format!("reading {}", job.display()))?;
            let raw: serde_yaml::Value = serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not YAML or JSON", job.display()))?;
            let report = if raw.get("kind").is_some() {
                let base = std::env::current_dir()?;
                let spec = trainer_sidecar::jobs::spec::parse(&text, true, &base)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", job.display()))?;
                match spec {
                    JobSpec::Lora(j) => {
                        let work = work.unwrap_or_else(|| PathBuf::from("runs").join(j.name()));
                        let ledger = j
                            .ledger
                            .clone()
                            .unwrap_or_else(|| PathBuf::from("models/ledger.json"));
                        trainer_sidecar::finetune::run_file(&j, &work, &ledger, !quiet)
                            .with_context(|| format!("training job {}", job.display()))?
                    }
                    JobSpec::ClassifierHead(j) => serde_json::to_value(
                        trainer_sidecar::train::run_job(&j, !quiet)
                            .with_context(|| format!("training job {}", job.display()))?,
                    )?,
                }
            } else {
                serde_json::to_value(
                    trainer_sidecar::train::run_job_file(&job, !quiet)
                        .with_context(|| format!("training job {}", job.display()))?,
                )?
            };
            trainer_sidecar::runtime::release_free_memory();
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Serve {
            listen,
            dir,
            workers,
            signing_key,
            signing_certificate,
            certificate_chain,
            adapters_dir,
            gateway_admin,
        } => {
            let token = std::env::var("PORTCULLIS_SIDECAR_TOKEN").unwrap_or_default();
            anyhow::ensure!(
                token.len() >= 16,
                "set PORTCULLIS_SIDECAR_TOKEN to a secret of at least 16 characters: every \
                 route but /healthz needs it as a bearer token"
            );
            let jobs = trainer_sidecar::jobs::Jobs::open(&dir)
                .with_context(|| format!("opening the job folder {}", dir.display()))?;
            if let Some(k) = &signing_key {
                let key = signing::read_private_key(k)?;
                if let Some(c) = &signing_certificate {
                    // refuse a certificate of another key now, not at the end of a job
                    let leaf = signing::x509::read_certificates(c)?;
                    anyhow::ensure!(
                        signing::x509::public_key(&leaf[0])? == *key.verifying_key(),
                        "{} does not certify the key in {}",
                        c.display(),
                        k.display()
                    );
                }
                anyhow::ensure!(
                    jobs.set_signer(trainer_sidecar::jobs::Signer {
                        key,
                        certificate: signing_certificate.map(|c| (c, certificate_chain)),
                    }),
                    "the signing key was set twice"
                );
            }
            let gateway = match gateway_admin {
                Some(url) => {
                    let token = std::env::var("PORTCULLIS_ADMIN_TOKEN").unwrap_or_default();
                    anyhow::ensure!(
                        !token.is_empty(),
                        "--gateway-admin needs the gateway's admin token in PORTCULLIS_ADMIN_TOKEN"
                    );
                    Some((url, token))
                }
                None => None,
            };
            jobs.set_publish(trainer_sidecar::jobs::Publish {
                adapters_dir,
                gateway,
            });
            jobs.spawn_workers(workers)?;
            let base = std::env::current_dir()?;
            let router = trainer_sidecar::serve::router(jobs, token, base);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                tokio::select! {
                    r = trainer_sidecar::serve::serve(listen, router) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })?;
        }
        Command::Audit {
            canaries,
            examples,
            batch_size,
            steps,
            epsilon,
            delta,
            confidence,
            fault,
            seed,
        } => {
            let cfg = trainer_sidecar::audit::AuditConfig {
                canaries,
                examples,
                batch_size,
                steps,
                target_epsilon: epsilon,
                delta,
                confidence,
                fault: match fault {
                    FaultArg::None => Fault::None,
                    FaultArg::NoNoise => Fault::NoNoise,
                    FaultArg::NoClipping => Fault::NoClipping,
                },
                seed,
                ..trainer_sidecar::audit::AuditConfig::default()
            };
            let report = trainer_sidecar::audit::run(&cfg)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Keygen { out } => {
            let (private, public) = signing::keygen_to(&out)?;
            println!(
                "{}",
                serde_json::json!({"private_key": private, "public_key": public})
            );
        }
        Command::Sign {
            model,
            private_key,
            certificate,
            chain,
            signature,
            provenance,
        } => {
            let key = signing::read_private_key(&private_key)?;
            let provenance = match provenance {
                Some(p) => Some(
                    serde_json::from_slice::<serde_json::Value>(
                        &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                    )
                    .with_context(|| format!("{} is not JSON", p.display()))?,
                ),
                None => None,
            };
            match &certificate {
                Some(c) => signing::sign_with_certificate(
                    &model,
                    &key,
                    c,
                    &chain,
                    signature.as_deref(),
                    provenance,
                )?,
                None => signing::sign(&model, &key, signature.as_deref(), provenance)?,
            };
            let at = signature.unwrap_or_else(|| model.join(signing::DEFAULT_SIGNATURE));
            println!("{}", serde_json::json!({"signature": at}));
        }
        Command::Verify {
            model,
            public_key,
            roots,
            signature,
        } => {
            let (v, signer) = match &public_key {
                Some(p) => {
                    let key = signing::read_public_key(p)?;
                    (signing::verify(&model, &key, signature.as_deref())?, None)
                }
                None => {
                    let mut trusted = Vec::new();
                    for r in &roots {
                        trusted.extend(signing::x509::read_certificates(r)?);
                    }
                    let c = signing::verify_certificate(&model, &trusted, signature.as_deref())?;
                    (
                        c.verified,
                        Some(serde_json::json!({"certificate": c.signer, "root": c.root})),
                    )
                }
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "ok": true,
                    "model": v.model_name,
                    "signer": signer,
                    "files": v.resources.iter().map(|r| serde_json::json!({
                        "name": r.name, "sha256": hex::encode(r.sha256),
                    })).collect::<Vec<_>>(),
                    "provenance": v.provenance,
                }))?
            );
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
