//! `orl train`: train an algorithm on a dataset, with metrics, diagnostics, evaluation,
//! atomic checkpoints, `--resume` and a divergence guard. The run folder, the resume check and
//! the loop are `orl_app::train` (over `orl_algos::{Recipe, Trainer}`); this file maps flags
//! onto a `TrainJob` and draws the progress bar.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use orl_algos::{AlgoKind, EvalPlan, RecipeRequest, RewardChoice, Schedule};
use orl_app::{Observer, Stop, TrainJob};
use orl_data::Dataset;
use serde_json::Value;

/// The algorithms of the registry (names and one-line summaries), parsed into an [`AlgoKind`].
fn algo_parser() -> impl clap::builder::TypedValueParser<Value = AlgoKind> {
    use clap::builder::{PossibleValue, TypedValueParser};
    clap::builder::PossibleValuesParser::new(
        orl_algos::ALGORITHMS
            .iter()
            .map(|i| PossibleValue::new(i.name).help(i.summary)),
    )
    .try_map(|s: String| s.parse::<AlgoKind>())
}

/// Arguments of `orl train`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Threads of this run (default 1, or RAYON_NUM_THREADS when set). One per run and several
    /// runs fill the cores best; a second thread speeds a single run by 5-50 % (ensemble members
    /// and IQL's update halves in parallel, same numbers).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Algorithm (the registry's names).
    #[arg(long, value_parser = algo_parser())]
    pub algo: AlgoKind,
    /// Dataset (orl Parquet file or folder).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Gradient updates.
    #[arg(long, default_value_t = 100_000)]
    pub steps: usize,
    /// Seed of initialisation, sampling, noise and evaluation start states.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// TOML file of algorithm settings overriding the defaults (unknown keys are errors).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Batch size (default: the algorithm's reference value).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Standardise observations (default: as the algorithm's reference implementation).
    #[arg(long)]
    pub normalize_obs: Option<bool>,
    /// Reward transform: `auto` (the algorithm's recipe: IQL scales by T / (G_max - G_min), the
    /// others none), `none`, or `return-range` (r * T / (G_max - G_min), IQL's locomotion
    /// scaling), with T the evaluation environment's time limit, else the dataset's longest
    /// episode (1000 for D4RL locomotion).
    #[arg(long, default_value = "auto")]
    pub reward_transform: String,
    /// Discount (default 0.99).
    #[arg(long)]
    pub gamma: Option<f32>,
    /// Environment for periodic evaluation (Gymnasium id).
    #[arg(long)]
    pub eval_env: Option<String>,
    /// Evaluate every K updates (and at the end).
    #[arg(long, default_value_t = 5000)]
    pub eval_every: usize,
    /// Episodes per evaluation.
    #[arg(long, default_value_t = 10)]
    pub eval_episodes: usize,
    /// Log averaged metrics and diagnostics every K updates.
    #[arg(long, default_value_t = 1000)]
    pub log_every: usize,
    /// Write a checkpoint every K updates (and at the end); the replay stream restarts at
    /// these boundaries, so that `--resume` continues bit for bit.
    #[arg(long, default_value_t = orl_algos::DEFAULT_REPLAY_SEGMENT)]
    pub checkpoint_every: usize,
    /// Run folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn user_config(args: &Args) -> Result<Option<Value>> {
    let Some(p) = &args.config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let v: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", p.display()))?;
    Ok(Some(serde_json::to_value(v)?))
}

/// The training job the flags ask for.
pub fn job_of(args: &Args) -> Result<TrainJob> {
    let request = RecipeRequest {
        config: user_config(args)?,
        batch_size: args.batch_size,
        normalize_observations: args.normalize_obs,
        reward: args.reward_transform.parse::<RewardChoice>()?,
        gamma: args.gamma,
        eval_env: args.eval_env.clone(),
        replay_segment: Some(args.checkpoint_every),
        dataset_path: Some(args.dataset.display().to_string()),
        ..RecipeRequest::new(args.steps, args.seed)
    };
    Ok(TrainJob {
        algo: args.algo,
        request,
        schedule: Schedule {
            log_every: args.log_every,
            diagnostics: true,
            eval: args.eval_env.as_ref().map(|_| EvalPlan {
                every: args.eval_every,
                episodes: args.eval_episodes,
            }),
            checkpoint_every: Some(args.checkpoint_every),
        },
        out: args.out.clone(),
        resume: args.resume,
    })
}

/// A progress bar over the updates.
struct Bar(ProgressBar);

impl Observer for Bar {
    fn started(&mut self, step: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(step as u64);
        if step > 0 {
            self.0.println(format!("resuming at update {step}"));
        }
    }
    fn updated(&mut self, _: usize) -> Result<(), Stop> {
        self.0.inc(1);
        Ok(())
    }
    fn logged(&mut self, row: &serde_json::Map<String, Value>) -> Result<(), Stop> {
        if let Some(r) = row.get("eval_return").and_then(Value::as_f64) {
            self.0.set_message(format!("return {r:.1}"));
        }
        Ok(())
    }
}

/// Runs `orl train`.
pub fn run(args: &Args) -> Result<()> {
    let ds = Dataset::open(&args.dataset)
        .with_context(|| format!("opening {}", args.dataset.display()))?;
    let job = job_of(args)?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} updates {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut bar = Bar(bar);
    let summary =
        orl_app::train(&job, ds, &mut bar).with_context(|| format!("--algo {}", args.algo));
    match summary {
        Ok(s) => {
            bar.0.finish();
            if let Some(r) = &s.last_row {
                println!("{}", serde_json::to_string(r)?);
            }
            Ok(())
        }
        Err(e) => {
            bar.0.abandon();
            Err(e)
        }
    }
}
