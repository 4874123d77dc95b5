//! `orl ope`: off-policy estimates of a trained policy's value on a logged dataset, with
//! bootstrap intervals.

use std::path::PathBuf;

use anyhow::{Context, Result};
use orl_data::Dataset;
use orl_ope::{Estimator, OpeConfig, evaluate};

use crate::agent_io::load_agent_with_recipe;

/// Arguments of `orl ope`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Threads of this run (default 1, or RAYON_NUM_THREADS when set). One per run and several
    /// runs fill the cores best; a second thread speeds a single run by 5-50 % (ensemble members
    /// and IQL's update halves in parallel, same numbers).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run folder or checkpoint file of the evaluated policy.
    #[arg(long)]
    pub policy: PathBuf,
    /// Logged data (Parquet).
    #[arg(long)]
    pub dataset: PathBuf,
    /// `all` or a comma-separated list of is, wis, pdis, wpdis, dr, wdr, ris, fqe, model.
    #[arg(long, default_value = "all")]
    pub estimators: String,
    /// Discount factor (default: the `--config` file's, else the policy's training discount
    /// from its recipe, else 0.99).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Clip cumulative importance weights at this value.
    #[arg(long)]
    pub clip: Option<f64>,
    /// Bootstrap resamples.
    #[arg(long)]
    pub resamples: Option<usize>,
    /// Seed of the fits and the bootstrap.
    #[arg(long)]
    pub seed: Option<u64>,
    /// FQE gradient steps (default: enough for the discount's horizon).
    #[arg(long)]
    pub fqe_steps: Option<usize>,
    /// Dynamics-model gradient steps.
    #[arg(long)]
    pub model_steps: Option<usize>,
    /// TOML file with any `OpeConfig` field (`gamma`, `[fqe]`, `[model]`, `[behavior]`, ...);
    /// flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `orl ope`.
pub fn run(args: &Args) -> Result<()> {
    let (mut agent, recipe, _) = load_agent_with_recipe(&args.policy)?;
    let mut cfg = match &args.config {
        Some(p) => toml::from_str::<OpeConfig>(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not an OPE configuration", p.display()))?,
        None => OpeConfig {
            gamma: recipe
                .as_ref()
                .map_or(OpeConfig::default().gamma, |r| f64::from(r.gamma)),
            ..OpeConfig::default()
        },
    };
    cfg.estimators = Estimator::parse_list(&args.estimators)?;
    if let Some(g) = args.gamma {
        cfg.gamma = g;
    }
    if args.clip.is_some() {
        cfg.clip = args.clip;
    }
    if let Some(r) = args.resamples {
        cfg.resamples = r;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(s) = args.fqe_steps {
        cfg.fqe.steps = Some(s);
    }
    if let Some(s) = args.model_steps {
        cfg.model.steps = s;
    }
    let ds = Dataset::open(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let report = evaluate(&ds, &mut agent, &cfg).with_context(|| {
        format!(
            "off-policy evaluation of {} on {}",
            args.policy.display(),
            args.dataset.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("estimating the {}", report.target);
    println!(
        "{} episodes ({} cut episodes left out), {} transitions, gamma {}; behaviour probabilities: {}",
        report.episodes,
        report.dropped_episodes,
        report.transitions,
        cfg.gamma,
        report.behavior_source
    );
    println!(
        "{:<7} {:>12} {:>27} {:>9} {:>8}",
        "method",
        "estimate",
        format!("{:.0}% interval", 100.0 * cfg.level),
        "ESS",
        "max w"
    );
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    for e in &report.estimates {
        let ci = e.interval.map_or("-".to_string(), |i| {
            format!("[{:.3}, {:.3}]", i.low, i.high)
        });
        println!(
            "{:<7} {:>12} {:>27} {:>9} {:>8}",
            e.estimator,
            opt(e.value, 3),
            ci,
            opt(e.ess, 1),
            opt(e.max_weight, 3)
        );
        for w in &e.warnings {
            println!("        note: {w}");
        }
    }
    Ok(())
}
