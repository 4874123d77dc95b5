//! `orl diagnose RUN`: over-estimation (Q on dataset pairs vs the observed discounted
//! return-to-go) and divergence of the policy from the data, now and over training.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use orl_algos::{diagnose, normalize_observations, probe_rows, returns_to_go};
use orl_data::Dataset;

use crate::agent_io::{DATASET, load_agent};
use crate::run_dir::{RunDir, read_rows};

/// Arguments of `orl diagnose`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run folder (or checkpoint file).
    pub run: PathBuf,
    /// Dataset (default: the one the run trained on).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Discount of the return-to-go (default: the run's).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Rows to evaluate.
    #[arg(long, default_value_t = 5000)]
    pub rows: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `orl diagnose`.
pub fn run(args: &Args) -> Result<()> {
    let (mut agent, meta) = load_agent(&args.run)?;
    let run_json: Option<serde_json::Value> = args
        .run
        .is_dir()
        .then(|| std::fs::read(RunDir::new(&args.run).run_json()).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let dataset = args
        .dataset
        .clone()
        .or_else(|| meta.get(DATASET).map(PathBuf::from))
        .ok_or_else(|| anyhow!("the checkpoint names no dataset: pass --dataset"))?;
    let ds = Dataset::open(&dataset).with_context(|| format!("opening {}", dataset.display()))?;
    let gamma = args
        .gamma
        .or_else(|| {
            run_json
                .as_ref()
                .and_then(|r| r["replay"]["gamma"].as_f64())
        })
        .unwrap_or(0.99);
    let scale = match run_json
        .as_ref()
        .and_then(|r| r["replay"]["reward_transform"].as_str())
    {
        Some("return-range") => {
            let stats = orl_data::Replay::new(
                ds.clone(),
                orl_data::ReplayConfig {
                    reward_transform: orl_data::RewardTransform::ReturnRange {
                        max_episode_steps: 1000.0,
                    },
                    ..Default::default()
                },
                0,
            )?;
            stats.reward_scale()
        }
        _ => 1.0,
    };
    let (rtg, truncated) = returns_to_go(&ds, gamma, |r| f64::from(r * scale));
    let norm = agent.obs_norm.clone();
    let f = move |o: &[f32]| normalize_observations(o, norm.as_ref());
    let probe = probe_rows(ds.len(), args.rows);
    let d = diagnose(&mut *agent.algo, &ds, &probe, &f, &rtg, &truncated)?;
    let history = if args.run.is_dir() {
        read_rows(&RunDir::new(&args.run).metrics_jsonl())?
    } else {
        Vec::new()
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"diagnostics": d, "history": history.iter().map(|r| serde_json::json!({
            "step": r.get("step"), "overestimation_ratio": r.get("diag_overestimation_ratio"),
            "action_divergence": r.get("diag_action_divergence")})).collect::<Vec<_>>()})
        );
        return Ok(());
    }
    println!(
        "algorithm          {} ({} updates)",
        agent.algo.name(),
        agent.algo.steps()
    );
    println!(
        "rows               {} ({} with truncated return-to-go)",
        d.rows, d.truncated_rows
    );
    match (d.q_mean, d.overestimation_ratio) {
        (Some(q), r) => println!(
            "Q on data          mean {q:.3} vs return-to-go {:.3} (gamma {gamma}): ratio {}",
            d.return_mean,
            r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "n/a".into())
        ),
        (None, _) => println!(
            "Q on data          n/a ({} has no critic)",
            agent.algo.name()
        ),
    }
    if let Some(e) = d.q_abs_error {
        println!("|Q - return|       {e:.3}");
    }
    let div = if agent.algo.spec().is_discrete() {
        "fraction of states where pi(s) != a"
    } else {
        "mean ||pi(s) - a||^2"
    };
    println!("policy vs data     {:.4} ({div})", d.action_divergence);
    if let Some(l) = d.data_log_likelihood {
        println!("log pi(a|s) data   {l:.3}");
    }
    if !history.is_empty() {
        println!("over training (step: Q/return ratio, divergence):");
        for r in &history {
            let f = |k: &str| {
                r.get(k)
                    .and_then(|v| v.as_f64())
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "  {:>8}: {:>8}  {:>8}",
                r.get("step").map(|v| v.to_string()).unwrap_or_default(),
                f("diag_overestimation_ratio"),
                f("diag_action_divergence")
            );
        }
    }
    Ok(())
}
