//! `orl train`: train an algorithm on a dataset, with metrics, diagnostics, evaluation,
//! atomic checkpoints, `--resume` and a divergence guard. The recipe and the loop are
//! `orl_algos::{Recipe, Trainer}`; this file maps flags onto them and writes the run folder.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use orl_algos::{
    AlgoError, AlgoKind, EvalPlan, Hooks, LogRow, Recipe, RecipeRequest, RewardChoice, Schedule,
    Trainer,
};
use orl_data::Dataset;
use orl_nets::Device;
use serde_json::{Value, json};

use crate::run_dir::{RunDir, atomic_write, read_rows, write_rows};

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

/// The recipe the flags ask for on `ds` with `steps` updates (validated).
pub fn recipe_of(args: &Args, ds: &Dataset, steps: usize) -> Result<Recipe> {
    let req = RecipeRequest {
        config: user_config(args)?,
        batch_size: args.batch_size,
        normalize_observations: args.normalize_obs,
        reward: args.reward_transform.parse::<RewardChoice>()?,
        gamma: args.gamma,
        eval_env: args.eval_env.clone(),
        replay_segment: Some(args.checkpoint_every),
        dataset_path: Some(args.dataset.display().to_string()),
        ..RecipeRequest::new(steps, args.seed)
    };
    Recipe::new(args.algo, ds, &req).with_context(|| format!("--algo {}", args.algo))
}

/// The schedule the flags ask for.
fn schedule_of(args: &Args) -> Schedule {
    Schedule {
        log_every: args.log_every,
        diagnostics: true,
        eval: args.eval_env.as_ref().map(|_| EvalPlan {
            every: args.eval_every,
            episodes: args.eval_episodes,
        }),
        checkpoint_every: Some(args.checkpoint_every),
    }
}

/// Writes the run folder as the loop goes.
struct RunHooks {
    run: RunDir,
    rows: Vec<serde_json::Map<String, Value>>,
    bar: ProgressBar,
    /// The divergence message, once an update diverged.
    diverged: Option<String>,
}

impl Hooks for RunHooks {
    type Error = anyhow::Error;
    fn on_update(&mut self, _: &Trainer) -> Result<()> {
        self.bar.inc(1);
        Ok(())
    }
    fn on_log(&mut self, _: &Trainer, row: &LogRow) -> Result<()> {
        if let Some(e) = &row.eval {
            self.bar.set_message(format!("return {:.1}", e.mean));
        }
        self.rows.push(row.to_json());
        write_rows(
            &self.run.metrics_jsonl(),
            &self.run.metrics_csv(),
            &self.rows,
        )
    }
    fn on_checkpoint(&mut self, t: &Trainer) -> Result<()> {
        t.save_checkpoint(&self.run.checkpoint())?;
        Ok(())
    }
    fn on_diverged(&mut self, _: &Trainer, e: &AlgoError) -> Result<()> {
        self.bar.abandon();
        let msg = format!(
            "{e}. The last good checkpoint ({}) is kept.",
            self.run.checkpoint().display()
        );
        write_status(&self.run, "diverged", &msg)?;
        self.diverged = Some(msg);
        Ok(())
    }
}

/// Runs `orl train`.
pub fn run(args: &Args) -> Result<()> {
    let ds = Dataset::open(&args.dataset)
        .with_context(|| format!("opening {}", args.dataset.display()))?;
    let recipe = recipe_of(args, &ds, args.steps)?;
    let schedule = schedule_of(args);
    schedule.validate(&recipe)?;
    let run = RunDir::new(&args.out);
    let mut rows = Vec::new();
    let trainer = if args.resume {
        let ck = run.checkpoint();
        if !ck.exists() {
            bail!("--resume: {} has no checkpoint", ck.display());
        }
        let old: Value = serde_json::from_slice(
            &std::fs::read(run.run_json())
                .with_context(|| format!("reading {}", run.run_json().display()))?,
        )
        .with_context(|| format!("{}: not JSON", run.run_json().display()))?;
        let saved: Recipe = serde_json::from_value(old["recipe"].clone())
            .with_context(|| format!("{}: no valid `recipe`", run.run_json().display()))?;
        // Compared at the run's own length: settings that follow the length (IQL's schedule)
        // were fixed when it started.
        if let Some(d) = recipe_of(args, &ds, saved.steps)?.differs_from(&saved) {
            bail!(
                "--resume: the flags give another recipe than the run in {}: {d}",
                run.root.display()
            );
        }
        let mut t = Trainer::new(saved.with_steps(args.steps)?, ds, &Device::Cpu)?;
        t.resume(&ck)
            .with_context(|| format!("resuming from {}", ck.display()))?;
        rows = read_rows(&run.metrics_jsonl())?;
        let step = t.step();
        rows.retain(|r| {
            r.get("step")
                .and_then(Value::as_u64)
                .is_some_and(|s| s as usize <= step)
        });
        eprintln!("resuming {} at update {step}", run.root.display());
        t
    } else {
        if run.checkpoint().exists() {
            bail!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                run.root.display()
            );
        }
        let record = json!({
            "recipe": recipe,
            "schedule": {"log_every": args.log_every, "eval_every": args.eval_every,
                         "eval_episodes": args.eval_episodes, "checkpoint_every": args.checkpoint_every},
            "orl_version": env!("CARGO_PKG_VERSION"),
            "device": "cpu",
        });
        atomic_write(
            &run.run_json(),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
        let t = Trainer::new(recipe, ds, &Device::Cpu)?;
        // A first checkpoint before any update, so that a divergence always leaves a good one.
        t.save_checkpoint(&run.checkpoint())?;
        t
    };
    let mut trainer = trainer;
    write_status(&run, "running", "")?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} updates {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step() as u64);
    let mut hooks = RunHooks {
        run,
        rows,
        bar,
        diverged: None,
    };
    if let Err(e) = trainer.run(&schedule, &mut hooks) {
        match hooks.diverged {
            Some(msg) => bail!(msg),
            None => return Err(e),
        }
    }
    hooks.bar.finish();
    write_status(&hooks.run, "finished", "")?;
    if let Some(r) = hooks.rows.last() {
        println!("{}", serde_json::to_string(r)?);
    }
    Ok(())
}

fn write_status(run: &RunDir, status: &str, message: &str) -> Result<()> {
    atomic_write(
        &run.status(),
        serde_json::to_string_pretty(&json!({"status": status, "message": message}))?.as_bytes(),
    )
}
