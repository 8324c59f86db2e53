//! `trainer-sidecar`: command-line entry point of the Portcullis trainer.

use anyhow::Context;
use clap::{Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch runtime this binary runs on (devices, threads) as JSON.
    Info,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => {
            let info = trainer_sidecar::runtime::probe().context("probing libtorch")?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
    }
    Ok(())
}
