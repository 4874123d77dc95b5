//! `orl`: the command-line front end of the orl offline-RL toolkit.
//!
//! Implemented: `orl convert`, `orl inspect` and `orl envs`. Training, evaluation and off-policy evaluation
//! arrive with their crates (see `docs/ARCHITECTURE.md`).

mod convert;
mod envs;
mod inspect;
mod plot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Offline reinforcement learning toolkit.
#[derive(Debug, Parser)]
#[command(name = "orl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert a dataset: D4RL HDF5, Minari, d3rlpy or npz into orl Parquet, or Parquet back to D4RL HDF5 / npz.
    Convert(convert::Args),
    /// Summarise a dataset: counts, episode returns, observation and action statistics, data quality.
    Inspect(inspect::Args),
    /// List the environments (Gymnasium ids) with their spaces and time limits.
    Envs(envs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(a) => convert::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Envs(a) => envs::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
