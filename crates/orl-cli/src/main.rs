//! `orl`: the command-line front end of the orl offline-RL toolkit.
//!
//! Subcommands: `convert`, `inspect`, `envs`, `train`, `eval`, `diagnose`, `export`, `ope`.

mod agent_io;
mod convert;
mod diagnose;
mod envs;
mod eval;
mod export;
mod inspect;
mod ope;
mod train;

use std::process::ExitCode;

/// mimalloc as the global allocator: candle allocates a fresh buffer for every op's output,
/// and glibc's malloc returns large freed blocks to the OS, paying page faults again on the next
/// one; mimalloc keeps them (25-50% more updates/s, `docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Train an offline RL algorithm on a dataset (metrics, checkpoints, --resume, divergence guard).
    Train(train::Args),
    /// Evaluate a trained policy in its environment (returns and normalized score).
    Eval(eval::Args),
    /// Off-policy estimates of a policy's value on logged data (IS, WIS, PDIS, WPDIS, DR, WDR,
    /// RIS, FQE, model-based) with bootstrap intervals.
    Ope(ope::Args),
    /// Diagnose a run: Q vs observed return-to-go (over-estimation) and policy vs data actions.
    Diagnose(diagnose::Args),
    /// Export a policy to one safetensors file with a JSON header (normalisation folded in).
    Export(export::Args),
    /// List the environments (Gymnasium ids) with their spaces and time limits.
    Envs(envs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread per run unless `--threads` (or RAYON_NUM_THREADS) says otherwise
    // (`orl_nets::threads`).
    let threads = match &cli.command {
        Command::Train(a) => Some(a.threads),
        Command::Ope(a) => Some(a.threads),
        _ => None,
    };
    if let Some(t) = threads {
        let n = orl_nets::threads::resolve_threads(t);
        match orl_nets::threads::reexec_with_threads(n) {
            // This thread is one of the run's `n` (`orl_nets::threads::init_pool`).
            Ok(None) => orl_nets::threads::init_pool(n),
            Ok(Some(code)) => return ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("error: cannot re-run with the requested thread count: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match cli.command {
        Command::Convert(a) => convert::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Envs(a) => envs::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Ope(a) => ope::run(&a),
        Command::Diagnose(a) => diagnose::run(&a),
        Command::Export(a) => export::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
