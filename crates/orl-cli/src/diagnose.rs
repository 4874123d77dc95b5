//! `orl diagnose RUN`: over-estimation (Q on dataset pairs vs the observed discounted
//! return-to-go) and divergence of the policy from the data, now and over training. The
//! return-to-go is computed as training computed it (`orl_algos::DiagnosticProbe` from the
//! run's recipe: its reward transform, discount and probe rows).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use orl_algos::{AlgoKind, DIAGNOSTIC_ROWS, DiagnosticProbe, Recipe, RecipeRequest};
use orl_data::Dataset;

use crate::agent_io::load_agent_with_recipe;
use orl_app::RunDir;
use orl_app::run_dir::read_rows;

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
    pub gamma: Option<f32>,
    /// Rows to evaluate (default: the rows training logs its `diag_*` columns on).
    #[arg(long, default_value_t = DIAGNOSTIC_ROWS)]
    pub rows: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `orl diagnose`.
pub fn run(args: &Args) -> Result<()> {
    let (mut agent, recipe, _) = load_agent_with_recipe(&args.run)?;
    let dataset = args
        .dataset
        .clone()
        .or_else(|| {
            recipe
                .as_ref()
                .and_then(|r| r.dataset.path.clone())
                .map(PathBuf::from)
        })
        .ok_or_else(|| anyhow!("the checkpoint names no dataset: pass --dataset"))?;
    let ds = Dataset::open(&dataset).with_context(|| format!("opening {}", dataset.display()))?;
    let mut recipe = match recipe {
        Some(r) => r,
        None => {
            // A checkpoint without a recipe (not from `orl train`): the algorithm's defaults.
            let kind: AlgoKind = agent.algo.name().parse()?;
            eprintln!(
                "note: the checkpoint holds no recipe; using {kind}'s default reward transform and discount"
            );
            Recipe::new(kind, &ds, &RecipeRequest::new(1, 0))?
        }
    };
    if let Some(g) = args.gamma {
        orl_algos::validate::unit_open_closed("gamma", f64::from(g))?;
        recipe.gamma = g;
    }
    orl_algos::validate::count("rows", args.rows, usize::MAX)?;
    let probe = DiagnosticProbe::new(&recipe, &ds, args.rows)?;
    let d = probe.run(&mut agent, &ds)?;
    let gamma = recipe.gamma;
    let history = if args.run.is_dir() {
        read_rows(&RunDir::new(&args.run).metrics_jsonl())?
    } else {
        Vec::new()
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"diagnostics": d, "gamma": gamma, "reward_transform": recipe.reward_transform,
            "history": history.iter().map(|r| serde_json::json!({
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
            "Q on data          mean {q:.3} vs return-to-go {:.3} (gamma {gamma}, rewards {:?}): ratio {}",
            d.return_mean,
            recipe.reward_transform,
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
