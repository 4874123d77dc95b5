//! `cargo xtask bench-d4rl [--suite quick|classic|locomotion|full] [--protocol reduced|locomotion]
//! [--algos a,b] [--datasets a,b] [--seeds N] [--seed K] [--steps N] [--jobs N] [--transitions N]
//! [--hidden H] [--dataset-dir DIR] [--out DIR] [--emit-cells FILE] [--collect DIR [--partial]]
//! [--no-report]`: the benchmark grid.
//!
//! **Two protocols.** `reduced` (the default, except for `--suite locomotion`) trains every cell
//! `--steps` updates with the reduced settings below. `locomotion` (the default of `--suite
//! locomotion`, issue 16) is the long protocol of [`LOCOMOTION`]: IQL, TD3+BC and BC 300 000
//! updates on all nine locomotion datasets, CQL and BCQ 100 000 on medium and medium-replay,
//! 3 seeds each, plus one 1M-update IQL and TD3+BC run on hopper-medium and walker2d-medium;
//! each algorithm with its defaults (its paper's settings and networks), datasets at D4RL's
//! size (`--transitions` default 1M, medium-expert 2M), a learning curve over 10 episodes every
//! 10 000 updates, cells that checkpoint every 10 000 updates under
//! `target/bench-d4rl-checkpoints/` and continue from there when rerun (ending bit for bit as an
//! uninterrupted cell), the rounds run seed by seed, longest cells first, and the cells and the
//! report go to `docs/benchmarks/locomotion/` (committed: `--collect` rebuilds the report from
//! them without training). There `--steps N`
//! selects the blocks of `N` updates and `--seeds N` overrides the blocks' seed counts.
//!
//! 1. datasets: the suite's entries of `datasets/manifest.json`, built (or reused and
//!    sha256-verified) by `gen-datasets` from the committed behaviour policies with
//!    `--transitions` rows per rollout dataset (default 20 000 for `quick`, 100 000 otherwise;
//!    D4RL's 1 000 000 with `--transitions 1000000`); or every `*.parquet` in `--dataset-dir`
//!    (converted D4RL/Minari files), evaluated in the environment their metadata names;
//! 2. (reduced protocol) every (algorithm, dataset, seed) cell trains `--steps` updates (default 10 000) through
//!    `orl_algos::Trainer` (the recipe of `orl train`: each algorithm's batch size,
//!    normalisation and reward recipe from the registry, its reduced-protocol settings from
//!    `AlgoInfo::reduced`), with
//!    `--hidden` x `--hidden` networks (default 256 on the MuJoCo tasks as in the papers, 64 for
//!    classic control), `--jobs` cells at a time (default one per core, one
//!    thread each), evaluating 5 episodes every `steps / 10` updates (the learning curve) and
//!    the final policy over 10 episodes (D4RL's protocol), from start states drawn per training
//!    seed (`Recipe::eval_seed`); algorithms that do not support the
//!    action kind (TD3+BC on discrete data) are skipped and marked `n/a`;
//! 3. normalised score `100 (R - R_random) / (R_expert - R_random)` with the dataset's reference
//!    returns (the random and expert behaviour policies over 100 episodes); the locomotion
//!    protocol's report rescales every score to D4RL's reference returns, as the published
//!    numbers it stands beside use them (`on_d4rl_scale`; each cell keeps its manifest-scale
//!    score as `normalized_manifest`);
//! 4. `results.json` / `results.csv` (config, seed, steps, wall time, updates/s, versions per
//!    cell), `report.md` (mean +- std over seeds per dataset and algorithm, averages per
//!    environment and overall) and `curves/<dataset>.png` under `target/bench-d4rl/`.
//!
//! Finished cells are kept (`cells/*.json`, named by a hash of what their result depends on:
//! dataset sha256, algorithm and overrides, seed, steps): a rerun skips those that match and
//! trains the others anew.
//!
//! **Running the cells elsewhere.** `--emit-cells FILE` trains nothing: it writes one JSON line
//! per cell of the grid (`cell`, `dataset`, `algo`, `seed`, `result`: the cell file it writes,
//! `argv` and `command`: a self-contained command line, `cargo run --release -p xtask -- bench-d4rl
//! ... --datasets D --algos A --seed K --jobs 1 --no-report`), for a shell loop, a Slurm job array,
//! a Kubernetes indexed Job or Ray to run; `--collect DIR` then trains nothing either and builds
//! the report from the finished cell files under `DIR/cells` (the same grid arguments; it fails
//! naming the cells that are missing). The cells write under `--out` (default
//! `target/bench-d4rl`): on a cluster, point `--out` at shared storage, or copy the cell files
//! back. `--seed K` runs seed `K` alone; `--no-report` leaves the report alone (cells run side by
//! side must not all write it). `--collect DIR --partial` reports the finished cells and lists
//! the others as pending (a long grid's report while it runs).
//!
//! `--dataset-dir` with MuJoCo datasets (converted D4RL `hopper-*`, `walker2d-*`,
//! `halfcheetah-*`, evaluated on the v5 tasks) needs the feature:
//! `cargo xtask setup-mujoco && cargo run --release -p xtask --features mujoco -- bench-d4rl --dataset-dir DIR`.
//!
//! Suites: `quick` (the default, the README's main command, 2-7 minutes on 2 cores, most of it CQL): Pendulum-v1
//! random / medium / medium-replay / medium-expert / expert. `classic`: those plus CartPole-v1 and
//! Acrobot-v1. `locomotion` (feature `mujoco`): Hopper-v5, Walker2d-v5 and HalfCheetah-v5 medium,
//! medium-replay and medium-expert. `full`: `classic` plus all five locomotion recipes.
//! `--dataset-dir` runs the grid on real D4RL files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use orl_algos::{
    AlgoKind, EvalPlan, FINAL_EVAL, Hooks, LogRow, Recipe, RecipeRequest, Schedule, Trainer,
    eval_env_of,
};
use orl_data::{ActionSpace, Dataset};
use orl_nets::Device;
use plotters::prelude::*;
use serde_json::{Value, json};

use crate::gen_datasets::{self, Generated};

struct Opts {
    suite: String,
    /// `--protocol`; default [`Protocol::Locomotion`] for `--suite locomotion`, else reduced.
    protocol: Protocol,
    algos: Vec<AlgoKind>,
    datasets: Option<Vec<String>>,
    seeds: u64,
    /// `--seeds` was given (the locomotion protocol's blocks have their own seed counts).
    seeds_given: bool,
    steps: usize,
    /// `--steps` was given (under the locomotion protocol it selects the blocks of that length).
    steps_given: bool,
    jobs: usize,
    /// `--hidden`; `None`: [`default_hidden`] per dataset.
    hidden: Option<usize>,
    transitions: Option<usize>,
    dataset_dir: Option<PathBuf>,
    out: PathBuf,
    /// `--seed K`: only seed `K` (instead of `0..seeds`).
    seed: Option<u64>,
    /// `--emit-cells FILE`.
    emit_cells: Option<PathBuf>,
    /// `--collect DIR`: report from finished cells, train nothing.
    collect: bool,
    /// `--partial`: with `--collect`, report the finished cells and list the others as pending.
    partial: bool,
    no_report: bool,
    /// Tests: a cell fails right after its checkpoint at this step, as if the process had been
    /// killed there.
    interrupt_at: Option<usize>,
    /// The arguments that define the grid (everything but `--emit-cells`, `--collect`,
    /// `--jobs`), repeated in each emitted cell's command.
    grid_args: Vec<String>,
}

/// `args` without `--emit-cells FILE`, `--collect DIR`, `--jobs N` and `--no-report`, and
/// without the per-cell selections (`--datasets`, `--algos`, `--seed`) each emitted command
/// sets itself.
fn grid_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-report" | "--partial" => {}
            "--emit-cells" | "--collect" | "--jobs" | "--datasets" | "--algos" | "--seed"
            | "--steps" => {
                it.next();
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        suite: "quick".into(),
        protocol: Protocol::Reduced,
        algos: AlgoKind::all(),
        datasets: None,
        seeds: 1,
        seeds_given: false,
        steps: 10_000,
        steps_given: false,
        // One job per core, one thread each (`orl_nets::threads`).
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        hidden: None,
        transitions: None,
        dataset_dir: None,
        out: crate::workspace_root().join("target/bench-d4rl"),
        seed: None,
        emit_cells: None,
        collect: false,
        partial: false,
        no_report: false,
        interrupt_at: None,
        grid_args: Vec::new(),
    };
    let mut protocol = None;
    let mut out_given = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--suite" => o.suite = val()?.clone(),
            "--algos" => {
                o.algos = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--datasets" => o.datasets = Some(val()?.split(',').map(String::from).collect()),
            "--protocol" => protocol = Some(val()?.clone()),
            "--seeds" => {
                o.seeds = val()?.parse()?;
                o.seeds_given = true;
            }
            "--steps" => {
                o.steps = val()?.parse()?;
                o.steps_given = true;
            }
            "--jobs" => o.jobs = val()?.parse::<usize>()?.max(1),
            "--hidden" => o.hidden = Some(val()?.parse()?),
            "--transitions" => o.transitions = Some(val()?.parse()?),
            "--dataset-dir" => o.dataset_dir = Some(PathBuf::from(val()?)),
            "--out" => {
                o.out = PathBuf::from(val()?);
                out_given = true;
            }
            "--seed" => o.seed = Some(val()?.parse()?),
            "--emit-cells" => o.emit_cells = Some(PathBuf::from(val()?)),
            "--collect" => {
                o.out = PathBuf::from(val()?);
                out_given = true;
                o.collect = true;
            }
            "--no-report" => o.no_report = true,
            "--partial" => o.partial = true,
            other => bail!("bench-d4rl: unknown argument `{other}`"),
        }
    }
    o.grid_args = grid_args(args);
    o.protocol = match protocol.as_deref() {
        Some("reduced") => Protocol::Reduced,
        Some("locomotion") => Protocol::Locomotion,
        Some(other) => bail!("--protocol: unknown `{other}`; expected reduced or locomotion"),
        None if o.suite == "locomotion" && o.dataset_dir.is_none() => Protocol::Locomotion,
        None => Protocol::Reduced,
    };
    // The long grid's cells are results to keep: they go into the repository (raw JSON per
    // cell, rebuilt into the report by `--collect`), its checkpoints stay under `target/`.
    if o.protocol == Protocol::Locomotion && !out_given {
        o.out = crate::workspace_root().join(LOCOMOTION_OUT);
    }
    if o.partial && !o.collect {
        bail!("--partial goes with --collect DIR");
    }
    if o.emit_cells.is_some() && o.collect {
        bail!("--emit-cells and --collect do not go together");
    }
    if o.steps < 10 {
        bail!("--steps must be at least 10");
    }
    Ok(o)
}

/// The datasets of a suite.
fn suite_datasets(suite: &str) -> Result<Vec<String>> {
    Ok(match suite {
        "quick" => gen_datasets::names_for(Some("Pendulum-v1"))?,
        "classic" => ["Pendulum-v1", "CartPole-v1", "Acrobot-v1"]
            .iter()
            .map(|e| gen_datasets::names_for(Some(e)))
            .collect::<Result<Vec<_>>>()?
            .concat(),
        "locomotion" | "full" => {
            if !orl_envs::MUJOCO_ENABLED {
                bail!(
                    "suite `{suite}` evaluates on Hopper/Walker2d/HalfCheetah v5: run `cargo xtask setup-mujoco`, then \
                     `cargo run --release -p xtask --features mujoco -- bench-d4rl --suite {suite}`"
                );
            }
            let mut v = if suite == "full" {
                suite_datasets("classic")?
            } else {
                Vec::new()
            };
            for env in ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"] {
                let names = gen_datasets::names_for(Some(env))?;
                v.extend(names.into_iter().filter(|n| {
                    suite == "full"
                        || ["-medium", "-medium-replay", "-medium-expert"]
                            .iter()
                            .any(|r| n.ends_with(r))
                }));
            }
            v
        }
        other => bail!("unknown suite `{other}`; expected quick, classic, locomotion or full"),
    })
}

/// Hidden width of every network for dataset `d` unless `--hidden` says otherwise: 256 on the
/// MuJoCo tasks (the CQL, IQL and TD3+BC papers' and CORL's 256x256; at 64x64 and 30 000 updates
/// IQL stayed below BC on hopper-medium-expert and above it at 256x256,
/// `docs/benchmarks/locomotion.md`), 64 for classic control (4-6 observation dimensions; keeps
/// the default suite within its time budget on 2 cores).
fn default_hidden(d: &Generated) -> usize {
    if orl_envs::spec(&d.env).is_ok_and(|s| s.needs_mujoco) {
        256
    } else {
        64
    }
}

/// The hidden width the grid uses for `d`.
fn hidden_for(o: &Opts, d: &Generated) -> usize {
    o.hidden.unwrap_or_else(|| default_hidden(d))
}

/// How the grid's cells train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Every cell `--steps` updates (default 10 000) with the algorithm's reduced-protocol
    /// settings (`AlgoInfo::reduced`) at `--hidden` width, `--seeds` seeds, and a learning curve
    /// of 5 episodes every tenth of the run: short runs for CI-sized suites.
    Reduced,
    /// [`LOCOMOTION`]: each algorithm with its defaults (its paper's settings and networks),
    /// updates and seeds per block, evaluation every 10 000 updates over 10 episodes, and cells
    /// that checkpoint themselves every 10 000 updates and resume where they stopped.
    Locomotion,
}

/// One block of the locomotion protocol: `algos` on the `recipes` of `envs`, `steps` updates,
/// `seeds` seeds (`0..seeds`).
struct Block {
    algos: &'static [&'static str],
    recipes: &'static [&'static str],
    envs: &'static [&'static str],
    steps: usize,
    seeds: u64,
}

/// Where the locomotion protocol's cells and report go unless `--out` says otherwise.
const LOCOMOTION_OUT: &str = "docs/benchmarks/locomotion";

const LOCOMOTION_ENVS: &[&str] = &["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"];

/// The locomotion protocol of issue 16: IQL, TD3+BC and BC 300 000 updates on all nine
/// datasets, CQL and BCQ (the costliest updates) 100 000 on medium and medium-replay, 3 seeds
/// each, and one 1M-update run (D4RL's and the papers' length) of IQL and TD3+BC on
/// hopper-medium and walker2d-medium. The papers train 1M updates everywhere; at this
/// machine's speed that grid would take weeks of CPU time (`docs/benchmarks/locomotion.md`).
const LOCOMOTION: &[Block] = &[
    Block {
        algos: &["iql", "td3bc", "bc"],
        recipes: &["medium", "medium-replay", "medium-expert"],
        envs: LOCOMOTION_ENVS,
        steps: 300_000,
        seeds: 3,
    },
    Block {
        algos: &["cql", "bcq"],
        recipes: &["medium", "medium-replay"],
        envs: LOCOMOTION_ENVS,
        steps: 100_000,
        seeds: 3,
    },
    Block {
        algos: &["iql", "td3bc"],
        recipes: &["medium"],
        envs: &["Hopper-v5", "Walker2d-v5"],
        steps: 1_000_000,
        seeds: 1,
    },
];

/// The locomotion protocol's learning curve: 10 episodes every 10 000 updates (and at the end).
/// The cells checkpoint at the same steps, which are multiples of the replay segment
/// (`orl_algos::DEFAULT_REPLAY_SEGMENT`), so a resumed cell ends bit for bit as an
/// uninterrupted one.
const LOCOMOTION_EVAL: EvalPlan = EvalPlan {
    every: 10_000,
    episodes: 10,
};

/// The recipe of a dataset, read off its name (`hopper-v5-medium-replay`, D4RL's
/// `hopper-medium-replay-v2`): the longest recipe name it contains.
fn recipe_of(name: &str) -> &'static str {
    [
        "medium-replay",
        "medium-expert",
        "medium",
        "random",
        "expert",
    ]
    .into_iter()
    .find(|r| name.contains(r))
    .unwrap_or("")
}

impl Protocol {
    /// The cells of `kind` on `d`: `(steps, seeds)` per run length.
    fn runs(self, o: &Opts, d: &Generated, kind: AlgoKind) -> Vec<(usize, Vec<u64>)> {
        let seeds = |n: u64| -> Vec<u64> {
            let n = if o.seeds_given { o.seeds } else { n };
            (0..n).filter(|s| o.seed.is_none_or(|k| k == *s)).collect()
        };
        match self {
            Self::Reduced => vec![(o.steps, seeds(o.seeds))],
            Self::Locomotion => LOCOMOTION
                .iter()
                .filter(|b| {
                    b.algos.contains(&kind.name())
                        && b.envs.contains(&d.env.as_str())
                        && b.recipes.contains(&recipe_of(&d.name))
                        && (!o.steps_given || b.steps == o.steps)
                })
                .map(|b| (b.steps, seeds(b.seeds)))
                .filter(|(_, s)| !s.is_empty())
                .collect(),
        }
    }
    /// The configuration overrides of `kind` (the reduced settings, or under the locomotion
    /// protocol none: the defaults, unless `--hidden` sets a width).
    fn overrides(self, o: &Opts, d: &Generated, kind: AlgoKind, steps: usize) -> Value {
        match (self, o.hidden) {
            (Self::Locomotion, None) => json!({}),
            _ => kind.reduced_config(hidden_for(o, d), steps),
        }
    }
    /// The learning curve's schedule for a run of `steps` updates.
    fn curve(self, steps: usize) -> EvalPlan {
        match self {
            Self::Reduced => EvalPlan {
                every: (steps / 10).max(1),
                episodes: 5,
            },
            Self::Locomotion => LOCOMOTION_EVAL,
        }
    }
    /// Updates between a cell's checkpoints (`None`: cells are not checkpointed).
    fn checkpoint_every(self) -> Option<usize> {
        match self {
            Self::Reduced => None,
            Self::Locomotion => Some(LOCOMOTION_EVAL.every),
        }
    }
}

/// One cell of the grid.
struct Cell<'a> {
    d: &'a Generated,
    kind: AlgoKind,
    seed: u64,
    steps: usize,
    overrides: Value,
    /// Where its result goes.
    file: PathBuf,
}

/// Version of the training protocol (the trainer's seeds and schedule); bumped when a change
/// moves results without changing any setting, so that cached cells are not reused.
/// 2: `orl_algos::Trainer` (replay segments, evaluation seeds per training seed).
const PROTOCOL: u32 = 2;

/// What a finished cell's result depends on: the dataset's bytes, the algorithm, its defaults
/// and overrides, seed, steps, batch size, the protocol and orl's version. Its hash names the cell's file, so a
/// rerun reuses a cell only when all of these match (a rerun with another `--hidden`,
/// `--steps` or rebuilt dataset trains anew beside the old cells).
fn cell_key(
    d: &Generated,
    kind: AlgoKind,
    seed: u64,
    steps: usize,
    overrides: &Value,
    protocol: Protocol,
) -> Value {
    let mut key = json!({
        "dataset": d.name,
        "dataset_sha256": d.sha256,
        "algo": kind.name(),
        "overrides": overrides,
        "defaults": (kind.info().defaults)(),
        "protocol": PROTOCOL,
        "seed": seed,
        "steps": steps,
        "batch_size": kind.default_batch_size(),
        "orl_version": env!("CARGO_PKG_VERSION"),
    });
    // The reduced protocol's keys are unchanged from before protocols existed, so its cached
    // cells stay valid.
    if protocol == Protocol::Locomotion {
        let c = protocol.curve(steps);
        key["protocol_name"] = json!("locomotion");
        key["curve"] = json!({"every": c.every, "episodes": c.episodes});
        key["replay_segment"] = json!(orl_algos::DEFAULT_REPLAY_SEGMENT);
    }
    key
}

/// `cells/<dataset>__<algo>__<seed>__<steps>__<first 12 hex of sha256(key)>.json`.
fn cell_file(dir: &Path, key: &Value) -> PathBuf {
    let hash = orl_data::fsutil::sha256_bytes(key.to_string().as_bytes());
    dir.join(format!(
        "{}__{}__{}__{}__{}.json",
        key["dataset"].as_str().unwrap_or_default(),
        key["algo"].as_str().unwrap_or_default(),
        key["seed"],
        key["steps"],
        &hash[..12]
    ))
}

/// Advances the progress bar, keeps the learning curve and, for checkpointed cells, saves the
/// trainer and the curve so far.
struct CellHooks<'a> {
    bar: &'a ProgressBar,
    curve: Vec<Value>,
    /// Updates already counted on the bar.
    counted: usize,
    /// The cell's checkpoint folder, for protocols that checkpoint.
    ckpt: Option<PathBuf>,
    /// Update seconds of the processes before this one (a resumed cell).
    earlier_s: f64,
    /// [`Opts::interrupt_at`].
    interrupt_at: Option<usize>,
}

/// The curve so far, written before each checkpoint (`progress.json` beside `trainer.safetensors`).
fn progress_file(dir: &Path) -> PathBuf {
    dir.join("progress.json")
}

impl Hooks for CellHooks<'_> {
    type Error = anyhow::Error;
    /// The bar advances by log rows: the grid's bar counts the updates of every cell, so
    /// per-update ticks would only add lock traffic between the jobs.
    fn on_log(&mut self, _: &Trainer, row: &LogRow) -> Result<()> {
        self.bar.inc((row.step - self.counted) as u64);
        self.counted = row.step;
        if let Some(e) = &row.eval {
            self.curve.push(
                json!({"step": row.step, "return": e.mean, "normalized": e.normalized, "first_seed": e.first_seed}),
            );
        }
        Ok(())
    }
    /// The curve first, then the trainer: a crash between the two leaves a curve one point
    /// ahead of the checkpoint, which resuming cuts back (the point is recomputed identically).
    fn on_checkpoint(&mut self, t: &Trainer) -> Result<()> {
        let Some(dir) = &self.ckpt else {
            return Ok(());
        };
        let progress = json!({
            "step": t.step(), "curve": self.curve,
            "update_seconds": self.earlier_s + t.update_seconds(),
        });
        crate::write_atomic(&progress_file(dir), progress.to_string().as_bytes())?;
        t.save_checkpoint(&dir.join("trainer.safetensors"))?;
        if self.interrupt_at == Some(t.step()) {
            bail!("interrupted at step {} (test)", t.step());
        }
        Ok(())
    }
}

/// One cell: train, with a learning curve, then the final 10-episode evaluation (D4RL's
/// protocol), all through `orl_algos::Trainer`. Under a checkpointing protocol the cell
/// continues from its checkpoint folder (`ckpt_root/<cell file stem>/`) when one exists.
fn run_cell(c: &Cell<'_>, o: &Opts, bar: &ProgressBar, ckpt_root: &Path) -> Result<Value> {
    let (kind, d, seed, steps) = (c.kind, c.d, c.seed, c.steps);
    let ds = Dataset::open(&d.path)?;
    let req = RecipeRequest {
        protocol: Some(c.overrides.clone()),
        ref_scores: Some(d.refs),
        dataset_path: Some(d.path.display().to_string()),
        ..RecipeRequest::new(steps, seed)
    };
    let recipe = Recipe::new(kind, &ds, &req)?;
    let curve = o.protocol.curve(steps);
    let schedule = Schedule {
        log_every: curve.every,
        diagnostics: false,
        eval: recipe.env_id.is_some().then_some(curve),
        checkpoint_every: o.protocol.checkpoint_every(),
    };
    let mut trainer = Trainer::new(recipe, ds, &Device::Cpu)?;
    let mut hooks = CellHooks {
        bar,
        curve: Vec::new(),
        counted: 0,
        ckpt: None,
        earlier_s: 0.0,
        interrupt_at: o.interrupt_at,
    };
    let mut resumed_from = None;
    if o.protocol.checkpoint_every().is_some() {
        let stem = c.file.file_stem().context("cell file name")?;
        let dir = ckpt_root.join(stem);
        let ck = dir.join("trainer.safetensors");
        if ck.exists() {
            trainer
                .resume(&ck)
                .with_context(|| format!("resuming {}", ck.display()))?;
            let step = trainer.step();
            let p: Value = serde_json::from_slice(&std::fs::read(progress_file(&dir))?)
                .with_context(|| format!("{}: not JSON", progress_file(&dir).display()))?;
            hooks.curve = p["curve"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["step"].as_u64().is_some_and(|s| s as usize <= step))
                .cloned()
                .collect();
            if p["step"].as_u64() == Some(step as u64) {
                hooks.earlier_s = p["update_seconds"].as_f64().unwrap_or(0.0);
            }
            hooks.counted = step;
            bar.inc(step as u64);
            resumed_from = Some(step);
        }
        std::fs::create_dir_all(&dir)?;
        hooks.ckpt = Some(dir);
    }
    trainer.run(&schedule, &mut hooks)?;
    let train_s = hooks.earlier_s + trainer.update_seconds();
    let (returns, mean, first_seed) = match trainer.evaluate(10, FINAL_EVAL)? {
        Some(e) => (e.returns, e.mean, Some(e.first_seed)),
        None => (Vec::new(), f64::NAN, None),
    };
    let score = |r: f64| 100.0 * (r - d.refs.0) / (d.refs.1 - d.refs.0);
    let recipe = trainer.recipe();
    Ok(json!({
        "dataset": d.name, "env": recipe.env_id, "algo": kind.name(), "config": recipe.config,
        "reward_transform": recipe.reward_transform, "recipe": recipe,
        "seed": seed, "steps": steps, "batch_size": recipe.batch_size, "wall_s": train_s,
        "updates_per_s": steps as f64 / train_s, "returns": returns, "return_mean": mean,
        "eval_first_seed": first_seed,
        "normalized": score(mean), "curve": hooks.curve, "orl_version": env!("CARGO_PKG_VERSION"),
        "dataset_file": d.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "dataset_sha256": d.sha256, "hidden": recipe.config.get("hidden"),
        "protocol": format!("{:?}", o.protocol).to_lowercase(),
        "resumed_from_step": resumed_from,
        "cpu": crate::speed::cpu_model(),
        "cell_key": cell_key(d, kind, seed, steps, &c.overrides, o.protocol),
    }))
}

fn from_dir(dir: &Path) -> Result<Vec<Generated>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    for p in files {
        let ds = Dataset::open(&p).with_context(|| format!("reading {}", p.display()))?;
        let m = ds.meta();
        let env = eval_env_of(&ds);
        let refs = match (m.ref_min_score, m.ref_max_score) {
            (Some(a), Some(b)) => (a, b),
            _ => env
                .as_deref()
                .and_then(orl_envs::RefScores::d4rl)
                .map(|r| (r.min, r.max))
                .with_context(|| {
                    format!("{}: no reference scores in its metadata and none known for its environment", p.display())
                })?,
        };
        out.push(Generated {
            name: p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            env: env.unwrap_or_default(),
            sha256: orl_data::fsutil::sha256_file(&p)?,
            path: p,
            refs,
        });
    }
    if out.is_empty() {
        bail!("no .parquet files in {}", dir.display());
    }
    Ok(out)
}

/// Runs the grid.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let start = Instant::now();
    let sets: Vec<Generated> = match &o.dataset_dir {
        Some(dir) => from_dir(dir)?
            .into_iter()
            .filter(|d| {
                o.datasets
                    .as_ref()
                    .is_none_or(|names| names.contains(&d.name))
            })
            .collect(),
        None => {
            let names = match &o.datasets {
                Some(v) => v.clone(),
                None => suite_datasets(&o.suite)?,
            };
            let n = o
                .transitions
                .unwrap_or(match (o.suite.as_str(), o.protocol) {
                    (_, Protocol::Locomotion) => gen_datasets::DEFAULT_TRANSITIONS,
                    ("quick", _) => 20_000,
                    _ => 100_000,
                });
            println!(
                "bench-d4rl: suite {}, {} datasets of {n} transitions",
                o.suite,
                names.len()
            );
            gen_datasets::generate(&names, n, &gen_datasets::default_cache_dir())?
        }
    };
    let cells_dir = o.out.join("cells");
    std::fs::create_dir_all(&cells_dir)?;
    let mut todo = Vec::new();
    let mut skipped = Vec::new();
    for d in &sets {
        let ds = Dataset::open(&d.path)?;
        // Fail before any training, not at the first evaluation.
        if let Some(env) = eval_env_of(&ds)
            && orl_envs::spec(&env).is_ok_and(|s| s.needs_mujoco)
            && !orl_envs::MUJOCO_ENABLED
        {
            bail!(
                "{} is evaluated on {env}, which needs MuJoCo: run `cargo xtask setup-mujoco`, then \
                 `cargo run --release -p xtask --features mujoco -- bench-d4rl ...`",
                d.name
            );
        }
        let discrete = matches!(ds.meta().action_space, ActionSpace::Discrete { .. });
        for &kind in &o.algos {
            if discrete && !kind.supports_discrete() {
                skipped.push((d.name.clone(), kind));
                continue;
            }
            for (steps, seeds) in o.protocol.runs(&o, d, kind) {
                let overrides = o.protocol.overrides(&o, d, kind, steps);
                for seed in seeds {
                    let file = cell_file(
                        &cells_dir,
                        &cell_key(d, kind, seed, steps, &overrides, o.protocol),
                    );
                    todo.push(Cell {
                        d,
                        kind,
                        seed,
                        steps,
                        overrides: overrides.clone(),
                        file,
                    });
                }
            }
        }
    }
    if let Some(path) = &o.emit_cells {
        return emit_cells(&o, &todo, path);
    }
    let mut pending: Vec<&Cell<'_>> = todo.iter().filter(|c| !c.file.exists()).collect();
    if o.collect && !pending.is_empty() && !o.partial {
        let names: Vec<String> = pending
            .iter()
            .take(10)
            .map(|c| c.file.display().to_string())
            .collect();
        bail!(
            "--collect: {} of {} cells have no result yet, e.g.\n  {}\nrun them first (their commands: --emit-cells)",
            pending.len(),
            todo.len(),
            names.join("\n  ")
        );
    }
    if o.collect {
        pending.clear();
    }
    // Seed by seed, and within a seed the longest cells first (the queue pops from the end):
    // the jobs of a round finish together, and a grid that spans sessions has every cell's
    // first seed early.
    pending.sort_by_key(|c| {
        (
            std::cmp::Reverse(c.seed),
            c.kind.info().relative_cost as usize * c.steps,
        )
    });
    println!(
        "{} cells, {} to run, {} jobs",
        todo.len(),
        pending.len(),
        o.jobs
    );
    let ckpt_root = crate::workspace_root().join("target/bench-d4rl-checkpoints");
    let bar = ProgressBar::new(pending.iter().map(|c| c.steps as u64).sum());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} updates  {elapsed_precise} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let queue = Mutex::new(pending);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..o.jobs {
            s.spawn(|| {
                while let Some(c) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let (name, algo, seed) = (&c.d.name, c.kind.name(), c.seed);
                    match run_cell(c, &o, &bar, &ckpt_root) {
                        Ok(v) => {
                            bar.suspend(|| println!(
                                "  {name:<28} {algo:<6} seed {seed} {:>8} updates: normalized {:>6.1}  ({:.0} updates/s)",
                                c.steps,
                                v["normalized"].as_f64().unwrap_or(f64::NAN),
                                v["updates_per_s"].as_f64().unwrap_or(0.0)
                            ));
                            let written = crate::write_atomic(&c.file, serde_json::to_string_pretty(&v).unwrap_or_default().as_bytes());
                            match written {
                                Ok(()) => {
                                    if let Some(stem) = c.file.file_stem() {
                                        let _ = std::fs::remove_dir_all(ckpt_root.join(stem));
                                    }
                                }
                                Err(e) => {
                                    if let Ok(mut es) = errors.lock() {
                                        es.push(format!("{}: {e}", c.file.display()));
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            if let Ok(mut es) = errors.lock() {
                                es.push(format!("{name} {algo} seed {seed}: {e:#}"));
                            }
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Ok(es) = errors.lock()
        && !es.is_empty()
    {
        bail!("{} cells failed:\n{}", es.len(), es.join("\n"));
    }
    let mut cells = Vec::new();
    let mut missing = Vec::new();
    for c in &todo {
        if !c.file.exists() && o.partial {
            missing.push(c);
            continue;
        }
        cells.push(serde_json::from_slice::<Value>(
            &std::fs::read(&c.file).with_context(|| format!("reading {}", c.file.display()))?,
        )?);
    }
    if o.no_report {
        return Ok(());
    }
    let pending: Vec<(String, String, usize, u64)> = missing
        .iter()
        .map(|c| (c.d.name.clone(), c.kind.name().to_string(), c.steps, c.seed))
        .collect();
    report(
        &o,
        &cells,
        &sets,
        &skipped,
        &pending,
        start.elapsed().as_secs_f64(),
    )
}

/// `--emit-cells`: one JSON line per cell with a command that trains it alone.
fn emit_cells(o: &Opts, todo: &[Cell<'_>], path: &Path) -> Result<()> {
    let mut prefix: Vec<String> = ["cargo", "run", "--release", "--locked", "-p", "xtask"]
        .map(String::from)
        .to_vec();
    if cfg!(feature = "mujoco") {
        prefix.extend(["--features".into(), "mujoco".into()]);
    }
    prefix.extend(["--".into(), "bench-d4rl".into()]);
    let mut lines = String::new();
    for Cell {
        d,
        kind,
        seed,
        steps,
        file,
        ..
    } in todo
    {
        let mut argv = prefix.clone();
        argv.extend(o.grid_args.iter().cloned());
        for (flag, value) in [
            ("--datasets", d.name.clone()),
            ("--algos", kind.name().to_string()),
            ("--seed", seed.to_string()),
            ("--steps", steps.to_string()),
            ("--jobs", "1".into()),
        ] {
            argv.extend([flag.to_string(), value]);
        }
        argv.push("--no-report".into());
        let command = argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let line = json!({
            "cell": file.file_stem().map(|s| s.to_string_lossy().into_owned()),
            "dataset": d.name,
            "algo": kind.name(),
            "seed": seed,
            "steps": steps,
            "result": file,
            "argv": argv,
            "command": command,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    crate::write_atomic(path, lines.as_bytes())?;
    println!(
        "{} cells written to {} (run each `command` from the workspace root, then `--collect {}`)",
        todo.len(),
        path.display(),
        o.out.display()
    );
    Ok(())
}

/// `a` quoted for a POSIX shell when it needs it.
fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt();
    (m, s)
}

/// `(dataset, algo, steps, seed)` of a cell without a result yet (`--collect --partial`).
type Pending = (String, String, usize, u64);

/// The run length each algorithm's main table reports: the one most of its cells have (the
/// locomotion protocol's 1M-update runs are a separate table).
fn main_steps(cells: &[Value], pending: &[Pending]) -> BTreeMap<String, usize> {
    let mut count: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for c in cells {
        let key = (
            c["algo"].as_str().unwrap_or("").to_string(),
            c["steps"].as_u64().unwrap_or(0) as usize,
        );
        *count.entry(key).or_default() += 1;
    }
    for p in pending {
        *count.entry((p.1.clone(), p.2)).or_default() += 1;
    }
    let mut best: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for ((algo, steps), n) in count {
        let e = best.entry(algo).or_insert((0, steps));
        if n > e.0 || (n == e.0 && steps < e.1) {
            *e = (n, steps);
        }
    }
    best.into_iter().map(|(a, (_, s))| (a, s)).collect()
}

/// The locomotion report's scale: D4RL's reference returns (`orl_envs::RefScores::d4rl`, Fu et
/// al. 2020), so that its numbers stand beside the published ones, which use them.
///
/// A cell records `normalized` (and its curve) on the manifest's references, orl's own uniform
/// random and expert behaviour policies, since those are what its dataset was built from. Here
/// each cell's final score and every curve point are recomputed from their mean returns on
/// D4RL's references; the manifest-scale score is kept beside it as `normalized_manifest`. A
/// dataset whose environment D4RL has no references for keeps the manifest's.
fn on_d4rl_scale(cells: &[Value], sets: &[Generated]) -> (Vec<Value>, Vec<Generated>) {
    let refs = |d: &Generated| orl_envs::RefScores::d4rl(&d.env).map_or(d.refs, |r| (r.min, r.max));
    let scale: BTreeMap<&str, (f64, f64)> =
        sets.iter().map(|d| (d.name.as_str(), refs(d))).collect();
    let cells = cells
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let Some(&(lo, hi)) = c["dataset"].as_str().and_then(|n| scale.get(n)) else {
                return c;
            };
            let norm = |r: &Value| r.as_f64().map(|r| 100.0 * (r - lo) / (hi - lo));
            c["normalized_manifest"] = c["normalized"].clone();
            if let Some(v) = norm(&c["return_mean"]) {
                c["normalized"] = json!(v);
            }
            if let Some(pts) = c["curve"].as_array_mut() {
                for p in pts {
                    p["normalized_manifest"] = p["normalized"].clone();
                    if let Some(v) = norm(&p["return"]) {
                        p["normalized"] = json!(v);
                    }
                }
            }
            c
        })
        .collect();
    let sets = sets
        .iter()
        .map(|d| Generated {
            name: d.name.clone(),
            env: d.env.clone(),
            path: d.path.clone(),
            refs: refs(d),
            sha256: d.sha256.clone(),
        })
        .collect();
    (cells, sets)
}

fn report(
    o: &Opts,
    cells: &[Value],
    sets: &[Generated],
    skipped: &[(String, AlgoKind)],
    pending: &[Pending],
    wall: f64,
) -> Result<()> {
    let manifest_sets = sets;
    let rescored;
    let (cells, sets): (&[Value], &[Generated]) =
        if o.protocol == Protocol::Locomotion && o.dataset_dir.is_none() {
            rescored = on_d4rl_scale(cells, sets);
            (&rescored.0, &rescored.1)
        } else {
            (cells, sets)
        };
    let mut by = Scores::new();
    for c in cells {
        by.entry((
            c["dataset"].as_str().unwrap_or("").into(),
            c["algo"].as_str().unwrap_or("").into(),
            c["steps"].as_u64().unwrap_or(0) as usize,
        ))
        .or_default()
        .push((
            c["seed"].as_u64().unwrap_or(0),
            c["normalized"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    for v in by.values_mut() {
        v.sort_by_key(|x| x.0);
    }
    let main = main_steps(cells, pending);
    let waiting = |d: &str, a: &str, steps: usize| {
        pending
            .iter()
            .filter(|p| p.0 == d && p.1 == a && p.2 == steps)
            .count()
    };
    let mut md = String::from("# bench-d4rl report\n\n");
    let refs_note = if o.dataset_dir.is_some() {
        "each file's reference returns (its metadata, else D4RL's published references for its environment)"
    } else if o.protocol == Protocol::Locomotion {
        "D4RL's reference returns (Fu et al. 2020, as the published scores use them; the table below gives them beside orl's own). \
         `normalized_manifest` in `results.json` is the same score on orl's own references"
    } else {
        "each environment's reference returns (`datasets/manifest.json`: the uniform random and the expert behaviour policy, 100 episodes each; \
         datasets built from the committed behaviour policies in `datasets/policies/`)"
    };
    let suite = if o.dataset_dir.is_some() {
        "dataset-dir"
    } else {
        &o.suite
    };
    match o.protocol {
        Protocol::Reduced => {
            let widths: std::collections::BTreeSet<usize> =
                sets.iter().map(|d| hidden_for(o, d)).collect();
            let networks = match widths.iter().collect::<Vec<_>>().as_slice() {
                [h] => format!("{h}x{h} networks"),
                _ => {
                    "256x256 networks on the MuJoCo tasks and 64x64 on classic control".to_string()
                }
            };
            md.push_str(&format!(
                "Suite `{suite}`, reduced protocol; {} updates, {networks}, {} seed(s), final evaluation over 10 episodes. ",
                o.steps, o.seeds
            ));
        }
        Protocol::Locomotion => {
            md.push_str(&format!(
                "Suite `{suite}`, locomotion protocol (`xtask/src/bench_d4rl.rs`, `LOCOMOTION`): each algorithm with its \
                 defaults (its paper's settings), learning curve over {} episodes every {} updates, final evaluation over 10 episodes \
                 from start states drawn per training seed. ",
                LOCOMOTION_EVAL.episodes, LOCOMOTION_EVAL.every
            ));
        }
    }
    md.push_str(&format!(
        "Normalised score = 100 (R - R_random) / (R_expert - R_random) with {refs_note}. \
         `data` is the same score of the dataset's own mean episode return. Cells: mean +- std over seeds \
         (population std), `(k/n)` where only k of n seeds have finished.\n\n"
    ));
    if o.protocol == Protocol::Locomotion {
        md.push_str("| block | algorithms | datasets | updates | seeds | networks (hidden) | batch |\n|---|---|---|---|---|---|---|\n");
        for (i, b) in LOCOMOTION.iter().enumerate() {
            let nets: Vec<String> = b
                .algos
                .iter()
                .filter_map(|a| a.parse::<AlgoKind>().ok())
                .map(|k| {
                    let d = (k.info().defaults)();
                    let mut h = format!("{} {}", k.name(), d["hidden"]);
                    if let Some(v) = d.get("vae_hidden") {
                        h.push_str(&format!(", VAE {v}"));
                    }
                    h
                })
                .collect();
            let batches: Vec<String> = b
                .algos
                .iter()
                .filter_map(|a| a.parse::<AlgoKind>().ok())
                .map(|k| format!("{} {}", k.name(), k.default_batch_size()))
                .collect();
            md.push_str(&format!(
                "| {} | {} | {} of {} | {} | {} | {} | {} |\n",
                i + 1,
                b.algos.join(", "),
                b.recipes.join(", "),
                b.envs.join(", "),
                b.steps,
                b.seeds,
                nets.join("; "),
                batches.join(", ")
            ));
        }
        md.push('\n');
        if o.dataset_dir.is_none() {
            md.push_str(
                "Reference returns (random, expert) per environment: D4RL's, which the scores here use, and orl's own \
                 (the manifest's: uniform random and expert behaviour policy on the v5 task, 100 episodes each):\n\n\
                 | environment | D4RL random | D4RL expert | orl random | orl expert | orl expert / D4RL expert |\n|---|---|---|---|---|---|\n",
            );
            let mut seen = std::collections::BTreeSet::new();
            for (d, m) in sets.iter().zip(manifest_sets) {
                if seen.insert(d.env.clone()) {
                    md.push_str(&format!(
                        "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |\n",
                        d.env,
                        d.refs.0,
                        d.refs.1,
                        m.refs.0,
                        m.refs.1,
                        m.refs.1 / d.refs.1
                    ));
                }
            }
            md.push('\n');
        }
    }
    md.push_str("| dataset | data |");
    for k in &o.algos {
        match main.get(k.name()) {
            Some(s) => md.push_str(&format!(" {} ({}k) |", k.name(), s / 1000)),
            None => md.push_str(&format!(" {} |", k.name())),
        }
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(o.algos.len()));
    md.push('\n');
    let mut per_env: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut no_signal = Vec::new();
    let mut data_score = BTreeMap::new();
    for d in sets {
        let ds = Dataset::open(&d.path)?;
        if ds.uninformative_rewards() {
            no_signal.push(d.name.clone());
        }
        let rets = ds.episode_returns();
        let data = 100.0 * (mean_std(&rets).0 - d.refs.0) / (d.refs.1 - d.refs.0);
        data_score.insert(d.name.clone(), data);
        md.push_str(&format!("| {} | {data:.1} |", d.name));
        for k in &o.algos {
            if skipped.iter().any(|(n, s)| *n == d.name && s == k) {
                md.push_str(" n/a |");
                continue;
            }
            let Some(&steps) = main.get(k.name()) else {
                md.push_str(" - |");
                continue;
            };
            let v: Vec<f64> = by
                .get(&(d.name.clone(), k.name().to_string(), steps))
                .map(|v| v.iter().map(|x| x.1).collect())
                .unwrap_or_default();
            let wait = waiting(&d.name, k.name(), steps);
            if v.is_empty() {
                md.push_str(if wait > 0 { " pending |" } else { " - |" });
                continue;
            }
            let (m, s) = mean_std(&v);
            if wait == 0 {
                for key in [d.env.clone(), "all".to_string()] {
                    per_env
                        .entry(key)
                        .or_default()
                        .entry(k.name().into())
                        .or_default()
                        .push(m);
                }
            }
            md.push_str(&format!(" {m:.1} +- {s:.1}"));
            if wait > 0 {
                md.push_str(&format!(" ({}/{})", v.len(), v.len() + wait));
            }
            md.push_str(" |");
        }
        md.push('\n');
    }
    for (env, avg) in &per_env {
        md.push_str(&format!("| **average {env}** | |"));
        for k in &o.algos {
            match avg.get(k.name()) {
                Some(v) => md.push_str(&format!(" {:.1} |", mean_std(v).0)),
                None => md.push_str(" n/a |"),
            }
        }
        md.push('\n');
    }
    // Other run lengths (the locomotion protocol's 1M-update runs).
    let others: Vec<_> = by
        .iter()
        .filter(|((_, a, s), _)| main.get(a) != Some(s))
        .collect();
    if !others.is_empty() {
        md.push_str("\nOther run lengths:\n\n| dataset | algo | updates | normalised (per seed) |\n|---|---|---|---|\n");
        for ((d, a, s), v) in others {
            let per: Vec<String> = v.iter().map(|x| format!("{:.1}", x.1)).collect();
            md.push_str(&format!("| {d} | {a} | {s} | {} |\n", per.join(", ")));
        }
    }
    // Per seed.
    md.push_str("\nPer seed (normalised score of the final policy):\n\n| dataset | algo | updates | seeds |\n|---|---|---|---|\n");
    for ((d, a, s), v) in &by {
        let per: Vec<String> = v.iter().map(|x| format!("{}: {:.1}", x.0, x.1)).collect();
        md.push_str(&format!("| {d} | {a} | {s} | {} |\n", per.join(", ")));
    }
    if o.protocol == Protocol::Locomotion && o.dataset_dir.is_none() {
        md.push_str(&acceptance_checks(&by, &main, sets));
    }
    // Beside the published numbers (locomotion datasets only).
    let published: Vec<&Generated> = sets
        .iter()
        .filter(|d| crate::published::d4rl_name(&d.name).is_some())
        .collect();
    if !published.is_empty() {
        md.push_str(
            "\nBeside the published numbers (D4RL's `-v2` datasets: other behaviour policies and data, \
             see `docs/benchmarks/locomotion.md`; `xtask/src/published.rs` cites the sources):\n\n\
             | dataset | algo | orl | IQL paper | CORL |\n|---|---|---|---|---|\n",
        );
        for d in published {
            for k in &o.algos {
                let Some(&steps) = main.get(k.name()) else {
                    continue;
                };
                let Some(v) = by.get(&(d.name.clone(), k.name().to_string(), steps)) else {
                    continue;
                };
                let (m, s) = mean_std(&v.iter().map(|x| x.1).collect::<Vec<_>>());
                let f = |t| {
                    crate::published::score(t, k.name(), &d.name)
                        .map_or("-".to_string(), |x| format!("{x:.1}"))
                };
                md.push_str(&format!(
                    "| {} | {} | {m:.1} +- {s:.1} | {} | {} |\n",
                    d.name,
                    k.name(),
                    f(crate::published::IQL_PAPER),
                    f(crate::published::CORL)
                ));
            }
        }
    }
    if !pending.is_empty() {
        md.push_str(&format!(
            "\n**{} cells pending** (not yet trained): the averages above leave out every dataset and \
             algorithm with a pending seed.\n",
            pending.len()
        ));
    }
    if !no_signal.is_empty() {
        md.push_str(&format!(
            "\n**No reward signal** in {}: every reward is the same and no episode reaches a \
             terminal state, so every action has the same value and no method can improve on \
             behaviour cloning there (`orl inspect` shows it under `quality`).\n",
            no_signal.join(", ")
        ));
    }
    md.push_str(&format!(
        "\nWall time {wall:.0} s. Learning curves: `curves/<dataset>.png` (datasets with a finished cell). Per-cell configs, seeds, returns, curves, wall time and updates/s: `results.json` / `results.csv` (and `cells/`).\n"
    ));
    let mut csv = String::from(
        "dataset,algo,seed,steps,return_mean,normalized,data_normalized,wall_s,updates_per_s,cpu\n",
    );
    for c in cells {
        let name = c["dataset"].as_str().unwrap_or("");
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},\"{}\"\n",
            name,
            c["algo"].as_str().unwrap_or(""),
            c["seed"],
            c["steps"],
            c["return_mean"],
            c["normalized"],
            data_score.get(name).copied().unwrap_or(f64::NAN),
            c["wall_s"],
            c["updates_per_s"],
            c["cpu"].as_str().unwrap_or("")
        ));
    }
    let curves = o.out.join("curves");
    std::fs::create_dir_all(&curves)?;
    for d in sets {
        let path = curves.join(format!("{}.png", d.name));
        // A partial report plots only the datasets with a finished cell (an empty chart per
        // pending dataset would be noise, and a stale one from an earlier run is removed).
        if !cells.iter().any(|c| c["dataset"] == d.name.as_str()) {
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            continue;
        }
        plot_curves(&path, &d.name, cells, data_score.get(&d.name).copied())
            .map_err(|e| anyhow::anyhow!("plotting {}: {e}", d.name))?;
    }
    let refs: Vec<Value> = sets
        .iter()
        .map(|d| json!({"dataset": d.name, "env": d.env, "random": d.refs.0, "expert": d.refs.1, "file": d.path.file_name().map(|n| n.to_string_lossy().into_owned()), "sha256": d.sha256}))
        .collect();
    let pending_json: Vec<Value> = pending
        .iter()
        .map(|p| json!({"dataset": p.0, "algo": p.1, "steps": p.2, "seed": p.3}))
        .collect();
    crate::write_atomic(
        &o.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "suite": o.suite, "protocol": format!("{:?}", o.protocol).to_lowercase(),
            "datasets": refs, "cells": cells, "pending": pending_json,
        }))?
        .as_bytes(),
    )?;
    crate::write_atomic(&o.out.join("results.csv"), csv.as_bytes())?;
    crate::write_atomic(&o.out.join("report.md"), md.as_bytes())?;
    println!("\n{md}\nwrote {}", o.out.join("report.md").display());
    Ok(())
}

/// `(dataset, algo, steps) -> [(seed, normalised score)]` of the finished cells.
type Scores = BTreeMap<(String, String, usize), Vec<(u64, f64)>>;

/// The published ranges of IQL and TD3+BC on D4RL's medium datasets that the locomotion
/// report checks orl against (normalised on D4RL's references): roughly the span of the IQL
/// paper's (Table 1) and CORL's scores for the two methods, widened, as issue 16 of this
/// project states them.
const MEDIUM_RANGES: &[(&str, f64, f64)] = &[
    ("hopper", 50.0, 70.0),
    ("walker2d", 70.0, 85.0),
    ("halfcheetah", 42.0, 50.0),
];

/// The locomotion report's checks, computed from the finished cells (means over the seeds
/// that have finished; `pending` where a cell it needs has none): IQL and TD3+BC inside the
/// published range on each medium dataset; IQL, CQL and TD3+BC above BC on each medium-replay
/// dataset; IQL and TD3+BC above BC on each medium-expert dataset.
fn acceptance_checks(by: &Scores, main: &BTreeMap<String, usize>, sets: &[Generated]) -> String {
    let mean = |d: &str, a: &str| {
        let steps = main.get(a)?;
        let v: Vec<f64> = by
            .get(&(d.to_string(), a.to_string(), *steps))?
            .iter()
            .map(|x| x.1)
            .collect();
        Some((mean_std(&v).0, v.len()))
    };
    let fmt = |m: Option<(f64, usize)>| {
        m.map_or("pending".into(), |(m, n)| {
            format!("{m:.1} ({n} seed{})", if n == 1 { "" } else { "s" })
        })
    };
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "pending",
    };
    let mut rows = String::new();
    for d in sets {
        let task = d.name.split('-').next().unwrap_or("");
        if d.name.ends_with("-medium") {
            let Some(&(_, lo, hi)) = MEDIUM_RANGES.iter().find(|r| r.0 == task) else {
                continue;
            };
            for a in ["iql", "td3bc"] {
                let m = mean(&d.name, a);
                rows.push_str(&format!(
                    "| {} | {a} in the published range | {} | {lo:.0}-{hi:.0} | {} |\n",
                    d.name,
                    fmt(m),
                    verdict(m.map(|(v, _)| (lo..=hi).contains(&v)))
                ));
            }
            continue;
        }
        let algos: &[&str] = if d.name.ends_with("-medium-replay") {
            &["iql", "cql", "td3bc"]
        } else if d.name.ends_with("-medium-expert") {
            &["iql", "td3bc"]
        } else {
            continue;
        };
        let bc = mean(&d.name, "bc");
        for a in algos {
            let m = mean(&d.name, a);
            rows.push_str(&format!(
                "| {} | {a} above BC | {} | BC {} | {} |\n",
                d.name,
                fmt(m),
                fmt(bc),
                verdict(m.zip(bc).map(|(x, y)| x.0 > y.0))
            ));
        }
    }
    if rows.is_empty() {
        return rows;
    }
    format!(
        "\nChecks (issue 16's acceptance; means over the seeds finished so far, on D4RL's scale; \
         a check on fewer seeds than the protocol's is provisional):\n\n\
         | dataset | check | orl | against | holds |\n|---|---|---|---|---|\n{rows}"
    )
}

type PResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Normalised score against updates, one line per algorithm (mean over seeds), and the
/// dataset's own score (`data`, the mean return of its episodes) as a grey line: what an
/// offline method starts from and should end above.
fn plot_curves(path: &Path, dataset: &str, cells: &[Value], data: Option<f64>) -> PResult<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, crate::PLOT_FONT);
    let mut lines: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c["dataset"] == dataset) {
        let algo = c["algo"].as_str().unwrap_or("");
        let lengths: std::collections::BTreeSet<u64> = cells
            .iter()
            .filter(|x| x["dataset"] == dataset && x["algo"] == algo)
            .filter_map(|x| x["steps"].as_u64())
            .collect();
        let label = if lengths.len() > 1 {
            format!("{algo} ({}k)", c["steps"].as_u64().unwrap_or(0) / 1000)
        } else {
            algo.to_string()
        };
        for p in c["curve"].as_array().into_iter().flatten() {
            if let (Some(s), Some(v)) = (p["step"].as_u64(), p["normalized"].as_f64()) {
                lines
                    .entry(label.clone())
                    .or_default()
                    .entry(s)
                    .or_default()
                    .push(v);
            }
        }
    }
    let pts: Vec<(String, Vec<(f64, f64)>)> = lines
        .into_iter()
        .map(|(a, m)| {
            (
                a,
                m.into_iter()
                    .map(|(s, v)| (s as f64, mean_std(&v).0))
                    .collect(),
            )
        })
        .collect();
    let xs = pts.iter().flat_map(|p| p.1.iter().map(|q| q.0));
    let ys: Vec<f64> = pts
        .iter()
        .flat_map(|p| p.1.iter().map(|q| q.1))
        .chain(data)
        .collect();
    let xmax = xs.fold(1.0f64, f64::max);
    let ylo = ys.iter().copied().fold(0.0f64, f64::min) - 5.0;
    let yhi = ys.iter().copied().fold(100.0f64, f64::max) + 5.0;
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(dataset, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..xmax, ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc("updates")
            .y_desc("normalised score")
            .label_style(("sans-serif", 12))
            .draw()?;
        if let Some(v) = data.filter(|v| v.is_finite()) {
            let grey = RGBColor(70, 70, 70);
            chart
                .draw_series(LineSeries::new([(0.0, v), (xmax, v)], grey.stroke_width(1)))?
                .label("data")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], grey));
        }
        for (i, (algo, p)) in pts.iter().enumerate() {
            let color = Palette99::pick(i).mix(0.9);
            chart
                .draw_series(LineSeries::new(p.clone(), color.stroke_width(2)))?
                .label(algo.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `results.json`'s cells without what depends on the machine's speed.
    fn scores(out: &Path) -> Result<Vec<Value>> {
        let v: Value = serde_json::from_slice(&std::fs::read(out.join("results.json"))?)?;
        let mut cells: Vec<Value> = v["cells"]
            .as_array()
            .context("results.json has cells")?
            .iter()
            .map(|c| {
                json!([
                    c["dataset"],
                    c["algo"],
                    c["seed"],
                    c["returns"],
                    c["normalized"],
                    c["curve"]
                ])
            })
            .collect();
        cells.sort_by_key(Value::to_string);
        Ok(cells)
    }

    /// The grid run at once, and the same grid emitted as cells, each cell's command run on its
    /// own (a plain loop), then collected: the same results.
    #[test]
    fn emitted_cells_run_one_by_one_then_collected_give_the_grid_s_results() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let grid = |out: &Path| -> Vec<String> {
            [
                "--datasets",
                "pendulum-v1-random",
                "--algos",
                "bc,iql",
                "--seeds",
                "2",
                "--steps",
                "10",
                "--transitions",
                "2000",
                "--out",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string()])
            .collect()
        };
        run(&[grid(&a), vec!["--jobs".into(), "2".into()]].concat())?;
        let lines = tmp.path().join("cells.jsonl");
        run(&[
            grid(&b),
            vec!["--emit-cells".into(), lines.display().to_string()],
        ]
        .concat())?;
        assert!(
            !b.join("results.json").exists(),
            "--emit-cells trains nothing"
        );
        let err = run(&[
            vec!["--collect".into(), b.display().to_string()],
            grid(&b)[..10].to_vec(),
        ]
        .concat());
        assert!(
            err.is_err_and(|e| e.to_string().contains("4 of 4 cells have no result")),
            "--collect names the missing cells"
        );
        // `--partial` reports what has finished (nothing yet) and lists the rest as pending.
        run(&[
            vec![
                "--collect".into(),
                b.display().to_string(),
                "--partial".into(),
            ],
            grid(&b)[..10].to_vec(),
        ]
        .concat())?;
        let partial = std::fs::read_to_string(b.join("report.md"))?;
        assert!(partial.contains("**4 cells pending**"), "{partial}");
        std::fs::remove_file(b.join("results.json"))?;
        let text = std::fs::read_to_string(&lines)?;
        let cells: Vec<Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(cells.len(), 4);
        for c in &cells {
            let argv: Vec<String> = serde_json::from_value(c["argv"].clone())?;
            let at = argv
                .iter()
                .position(|a| a == "bench-d4rl")
                .context("argv runs bench-d4rl")?;
            assert!(
                c["command"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("cargo run --release"))
            );
            run(&argv[at + 1..])?;
            assert!(PathBuf::from(c["result"].as_str().unwrap_or_default()).exists());
        }
        assert!(
            !b.join("results.json").exists(),
            "cells leave the report alone"
        );
        run(&[
            vec!["--collect".into(), b.display().to_string()],
            grid(&b)[..10].to_vec(),
        ]
        .concat())?;
        assert_eq!(scores(&a)?, scores(&b)?);
        Ok(())
    }

    fn generated(name: &str, env: &str, sha: &str) -> Generated {
        Generated {
            name: name.into(),
            env: env.into(),
            path: PathBuf::from(format!("{name}.parquet")),
            refs: (0.0, 1.0),
            sha256: sha.into(),
        }
    }

    /// A cached cell is reused only for the same dataset bytes and settings: another width,
    /// step count, seed or rebuilt dataset names another file.
    #[test]
    fn cell_files_differ_exactly_when_their_inputs_do() {
        let dir = Path::new("cells");
        let d = generated("pendulum-v1-medium", "Pendulum-v1", "aa");
        let key = |d: &Generated, kind: AlgoKind, seed, steps, hidden| {
            let overrides = kind.reduced_config(hidden, steps);
            cell_key(d, kind, seed, steps, &overrides, Protocol::Reduced)
        };
        let f = |d: &Generated, seed, steps, hidden| {
            cell_file(dir, &key(d, AlgoKind::IQL, seed, steps, hidden))
        };
        let base = f(&d, 0, 1000, 64);
        assert_eq!(base, f(&d, 0, 1000, 64));
        assert!(
            base.to_string_lossy()
                .starts_with("cells/pendulum-v1-medium__iql__0__1000__")
        );
        let rebuilt = generated("pendulum-v1-medium", "Pendulum-v1", "bb");
        for other in [
            f(&d, 1, 1000, 64),
            f(&d, 0, 2000, 64),
            f(&d, 0, 1000, 256),
            f(&rebuilt, 0, 1000, 64),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(cell_file(dir, &key(&d, AlgoKind::BC, 0, 1000, 64)), base);
        // The same cell under the locomotion protocol is another cell.
        let long = cell_key(&d, AlgoKind::IQL, 0, 1000, &json!({}), Protocol::Locomotion);
        assert_ne!(cell_file(dir, &long), base);
    }

    /// The locomotion protocol lays out issue 16's grid: IQL, TD3+BC and BC 300 000 updates x 3
    /// seeds on the nine datasets, CQL and BCQ 100 000 x 3 on medium and medium-replay, one
    /// 1M-update IQL and TD3+BC run on hopper- and walker2d-medium; `--steps` and `--seed` pick
    /// out one cell of it, as an emitted command does.
    #[test]
    fn locomotion_protocol_lays_out_the_issue_s_grid() -> Result<()> {
        let o = parse(&["--suite".into(), "locomotion".into()])?;
        assert_eq!(o.protocol, Protocol::Locomotion);
        let mut sets = Vec::new();
        for env in LOCOMOTION_ENVS {
            for r in ["medium", "medium-replay", "medium-expert"] {
                let stem = crate::train_behaviours::stem(env);
                sets.push(generated(&format!("{stem}-{r}"), env, ""));
            }
        }
        let mut count: BTreeMap<(&str, usize), (usize, u64)> = BTreeMap::new();
        for d in &sets {
            for kind in AlgoKind::all() {
                for (steps, seeds) in o.protocol.runs(&o, d, kind) {
                    let e = count.entry((kind.name(), steps)).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(seeds.len() as u64);
                    assert_eq!(o.protocol.overrides(&o, d, kind, steps), json!({}));
                }
            }
        }
        let want: BTreeMap<(&str, usize), (usize, u64)> = [
            (("bc", 300_000), (9, 3)),
            (("iql", 300_000), (9, 3)),
            (("td3bc", 300_000), (9, 3)),
            (("cql", 100_000), (6, 3)),
            (("bcq", 100_000), (6, 3)),
            (("iql", 1_000_000), (2, 1)),
            (("td3bc", 1_000_000), (2, 1)),
        ]
        .into_iter()
        .collect();
        assert_eq!(count, want);
        let one = parse(&[
            "--suite".into(),
            "locomotion".into(),
            "--steps".into(),
            "1000000".into(),
            "--seed".into(),
            "0".into(),
        ])?;
        let hm = generated("hopper-v5-medium", "Hopper-v5", "");
        assert_eq!(
            one.protocol.runs(&one, &hm, AlgoKind::IQL),
            vec![(1_000_000, vec![0])]
        );
        assert!(one.protocol.runs(&one, &hm, AlgoKind::BC).is_empty());
        // Checkpoints fall on replay-segment boundaries, so a resumed cell is exact.
        assert!(
            LOCOMOTION_EVAL
                .every
                .is_multiple_of(orl_algos::DEFAULT_REPLAY_SEGMENT)
        );
        Ok(())
    }

    /// A checkpointed cell killed after its first checkpoint and run again ends exactly as an
    /// uninterrupted one: same returns, same learning curve.
    #[test]
    fn an_interrupted_cell_resumes_to_the_uninterrupted_result() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let sets = gen_datasets::generate(
            &["pendulum-v1-random".to_string()],
            2000,
            &tmp.path().join("data"),
        )?;
        let d = &sets[0];
        let mut o = parse(&["--hidden".into(), "16".into()])?;
        o.protocol = Protocol::Locomotion;
        let steps = 2 * LOCOMOTION_EVAL.every;
        let overrides = o.protocol.overrides(&o, d, AlgoKind::BC, steps);
        let cell = |name: &str| Cell {
            d,
            kind: AlgoKind::BC,
            seed: 3,
            steps,
            overrides: overrides.clone(),
            file: tmp.path().join(format!("{name}.json")),
        };
        let bar = ProgressBar::hidden();
        let whole = run_cell(&cell("whole"), &o, &bar, &tmp.path().join("ck"))?;
        o.interrupt_at = Some(LOCOMOTION_EVAL.every);
        let err = run_cell(&cell("cut"), &o, &bar, &tmp.path().join("ck"))
            .err()
            .context("the interrupted run fails")?;
        assert!(err.to_string().contains("interrupted"), "{err:#}");
        o.interrupt_at = None;
        let resumed = run_cell(&cell("cut"), &o, &bar, &tmp.path().join("ck"))?;
        assert_eq!(resumed["resumed_from_step"], json!(LOCOMOTION_EVAL.every));
        assert_eq!(whole["resumed_from_step"], Value::Null);
        for k in ["returns", "normalized", "curve"] {
            assert_eq!(whole[k], resumed[k], "{k}");
        }
        assert_eq!(whole["curve"].as_array().map(Vec::len), Some(2));
        Ok(())
    }

    /// Without `--hidden`, MuJoCo tasks get the papers' 256x256 and classic control 64x64.
    #[test]
    fn default_width_follows_the_task() -> Result<()> {
        let mut o = parse(&[])?;
        assert_eq!(hidden_for(&o, &generated("h", "Hopper-v5", "")), 256);
        assert_eq!(hidden_for(&o, &generated("p", "Pendulum-v1", "")), 64);
        assert_eq!(hidden_for(&o, &generated("x", "", "")), 64);
        o = parse(&["--hidden".into(), "32".into()])?;
        assert_eq!(hidden_for(&o, &generated("h", "Hopper-v5", "")), 32);
        Ok(())
    }

    /// The locomotion report scores on D4RL's references: a cell's final score and each curve
    /// point are recomputed from their returns, the manifest-scale score is kept beside them,
    /// and an environment D4RL has no references for keeps the manifest's.
    #[test]
    fn locomotion_scores_are_rescaled_to_d4rl_s_references() {
        let mut hop = generated("hopper-v5-medium", "Hopper-v5", "");
        hop.refs = (0.0, 1000.0);
        let mut pend = generated("pendulum-v1-medium", "Pendulum-v1", "");
        pend.refs = (-1000.0, 0.0);
        let cell = |d: &str, ret: f64, own: f64| {
            json!({"dataset": d, "return_mean": ret, "normalized": own,
                   "curve": [{"step": 10, "return": ret, "normalized": own}]})
        };
        let cells = [cell(&hop.name, 500.0, 50.0), cell(&pend.name, -500.0, 50.0)];
        let (cells, sets) = on_d4rl_scale(&cells, &[hop, pend]);
        let d4rl = 100.0 * (500.0 + 20.272305) / (3234.3 + 20.272305);
        for v in [&cells[0]["normalized"], &cells[0]["curve"][0]["normalized"]] {
            assert!(
                (v.as_f64().unwrap_or(f64::NAN) - d4rl).abs() < 1e-9,
                "{v} against {d4rl}"
            );
        }
        assert_eq!(cells[0]["normalized_manifest"], json!(50.0));
        assert_eq!(cells[0]["curve"][0]["normalized_manifest"], json!(50.0));
        assert_eq!(sets[0].refs, (-20.272305, 3234.3));
        assert_eq!(cells[1]["normalized"], json!(50.0));
        assert_eq!(sets[1].refs, (-1000.0, 0.0));
    }

    /// The checks read the finished cells: a range check on a medium dataset, a BC comparison
    /// elsewhere, and `pending` where a cell it needs is missing.
    #[test]
    fn acceptance_checks_compare_finished_cells() {
        let sets = [
            generated("hopper-v5-medium", "Hopper-v5", ""),
            generated("hopper-v5-medium-replay", "Hopper-v5", ""),
        ];
        let mut by = BTreeMap::new();
        let mut put = |d: &str, a: &str, v: f64| {
            by.insert((d.to_string(), a.to_string(), 100), vec![(0, v)]);
        };
        put("hopper-v5-medium", "iql", 60.0);
        put("hopper-v5-medium", "td3bc", 40.0);
        put("hopper-v5-medium-replay", "bc", 20.0);
        put("hopper-v5-medium-replay", "td3bc", 30.0);
        put("hopper-v5-medium-replay", "iql", 10.0);
        let main: BTreeMap<String, usize> = ["iql", "td3bc", "bc", "cql"]
            .iter()
            .map(|a| (a.to_string(), 100))
            .collect();
        let md = acceptance_checks(&by, &main, &sets);
        let row = |needle: &str| {
            md.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_default()
                .to_string()
        };
        for (needle, verdict) in [
            ("| hopper-v5-medium | iql", "| yes |"),
            ("| hopper-v5-medium | td3bc", "| **no** |"),
            ("| hopper-v5-medium-replay | td3bc", "| yes |"),
            ("| hopper-v5-medium-replay | iql", "| **no** |"),
            ("| hopper-v5-medium-replay | cql", "| pending |"),
        ] {
            assert!(row(needle).ends_with(verdict), "{needle}: {md}");
        }
    }
}
