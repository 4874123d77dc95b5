//! `orl eval`: run a trained policy in its environment and report returns and normalised score.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use orl_envs::{EvalConfig, RefScores, evaluate, make};

use crate::agent_io::{ENV_ID, REF_SCORES, load_agent};

/// Arguments of `orl eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run folder or checkpoint file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Environment (default: the training dataset's).
    #[arg(long)]
    pub env: Option<String>,
    /// Episodes.
    #[arg(long, default_value_t = 10)]
    pub episodes: usize,
    /// Seed of the first episode (episode i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads (each loads its own copy of the policy).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Sample actions instead of taking the policy's mode.
    #[arg(long)]
    pub stochastic: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `orl eval`.
pub fn run(args: &Args) -> Result<()> {
    let threads = args.threads.clamp(1, args.episodes.max(1));
    let mut agents = Vec::new();
    let mut meta = Default::default();
    for _ in 0..threads {
        let (mut a, m) = load_agent(&args.checkpoint)?;
        a.deterministic = !args.stochastic;
        agents.push(a);
        meta = m;
    }
    let env = args
        .env
        .clone()
        .or_else(|| meta.get(ENV_ID).cloned())
        .ok_or_else(|| anyhow!("the checkpoint names no environment: pass --env"))?;
    let reference = match meta.get(REF_SCORES) {
        Some(s) => serde_json::from_str::<[f64; 2]>(s)
            .ok()
            .map(|[min, max]| RefScores { min, max }),
        None => RefScores::d4rl(&env),
    };
    let pool = Mutex::new(agents);
    let cfg = EvalConfig {
        episodes: args.episodes,
        seed: args.seed,
        threads,
        reference,
    };
    let report = evaluate(
        || make(&env),
        || {
            pool.lock()
                .map(|mut v| v.pop())
                .ok()
                .flatten()
                .expect("one agent per thread")
        },
        &cfg,
    )
    .with_context(|| format!("evaluating on {env}"))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"env": env, "episodes": args.episodes, "seed": args.seed, "returns": report.returns,
                "lengths": report.lengths, "mean": report.mean, "std": report.std, "min": report.min, "max": report.max,
                "normalized_mean": report.normalized_mean, "normalized_std": report.normalized_std})
        );
    } else {
        println!(
            "{env}: {} episodes, return {:.2} +- {:.2} (min {:.2}, max {:.2})",
            args.episodes, report.mean, report.std, report.min, report.max
        );
        if let (Some(m), Some(s)) = (report.normalized_mean, report.normalized_std) {
            println!("normalized score {m:.1} +- {s:.1}");
        }
    }
    Ok(())
}
