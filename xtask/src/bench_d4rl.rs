//! `cargo xtask bench-d4rl [--suite quick|classic|locomotion|full] [--algos a,b] [--datasets a,b]
//! [--seeds N] [--seed K] [--steps N] [--jobs N] [--transitions N] [--hidden H] [--dataset-dir DIR]
//! [--out DIR] [--emit-cells FILE] [--collect DIR] [--no-report]`: the benchmark grid.
//!
//! 1. datasets: the suite's entries of `datasets/manifest.json`, built (or reused and
//!    sha256-verified) by `gen-datasets` from the committed behaviour policies with
//!    `--transitions` rows per rollout dataset (default 20 000 for `quick`, 100 000 otherwise;
//!    D4RL's 1 000 000 with `--transitions 1000000`); or every `*.parquet` in `--dataset-dir`
//!    (converted D4RL/Minari files), evaluated in the environment their metadata names;
//! 2. every (algorithm, dataset, seed) cell trains `--steps` updates (default 10 000) through
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
//!    returns (the random and expert behaviour policies over 100 episodes);
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
//! side must not all write it).
//!
//! `--dataset-dir` with MuJoCo datasets (converted D4RL `hopper-*`, `walker2d-*`,
//! `halfcheetah-*`, evaluated on the v5 tasks) needs the feature:
//! `cargo xtask setup-mujoco && cargo run --release -p xtask --features mujoco -- bench-d4rl --dataset-dir DIR`.
//!
//! Suites: `quick` (the default, the README's main command, about 30 minutes on 2 cores, most of it CQL): Pendulum-v1
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
    algos: Vec<AlgoKind>,
    datasets: Option<Vec<String>>,
    seeds: u64,
    steps: usize,
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
    no_report: bool,
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
            "--no-report" => {}
            "--emit-cells" | "--collect" | "--jobs" | "--datasets" | "--algos" | "--seed" => {
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
        algos: AlgoKind::all(),
        datasets: None,
        seeds: 1,
        steps: 10_000,
        // One job per core, one thread each (`orl_nets::threads`).
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        hidden: None,
        transitions: None,
        dataset_dir: None,
        out: crate::workspace_root().join("target/bench-d4rl"),
        seed: None,
        emit_cells: None,
        collect: false,
        no_report: false,
        grid_args: Vec::new(),
    };
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
            "--seeds" => o.seeds = val()?.parse()?,
            "--steps" => o.steps = val()?.parse()?,
            "--jobs" => o.jobs = val()?.parse::<usize>()?.max(1),
            "--hidden" => o.hidden = Some(val()?.parse()?),
            "--transitions" => o.transitions = Some(val()?.parse()?),
            "--dataset-dir" => o.dataset_dir = Some(PathBuf::from(val()?)),
            "--out" => o.out = PathBuf::from(val()?),
            "--seed" => o.seed = Some(val()?.parse()?),
            "--emit-cells" => o.emit_cells = Some(PathBuf::from(val()?)),
            "--collect" => {
                o.out = PathBuf::from(val()?);
                o.collect = true;
            }
            "--no-report" => o.no_report = true,
            other => bail!("bench-d4rl: unknown argument `{other}`"),
        }
    }
    o.grid_args = grid_args(args);
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

/// Version of the training protocol (the trainer's seeds and schedule); bumped when a change
/// moves results without changing any setting, so that cached cells are not reused.
/// 2: `orl_algos::Trainer` (replay segments, evaluation seeds per training seed).
const PROTOCOL: u32 = 2;

/// What a finished cell's result depends on: the dataset's bytes, the algorithm, its defaults
/// and overrides, seed, steps, batch size, the protocol and orl's version. Its hash names the cell's file, so a
/// rerun reuses a cell only when all of these match (a rerun with another `--hidden`,
/// `--steps` or rebuilt dataset trains anew beside the old cells).
fn cell_key(d: &Generated, kind: AlgoKind, seed: u64, steps: usize, hidden: usize) -> Value {
    json!({
        "dataset": d.name,
        "dataset_sha256": d.sha256,
        "algo": kind.name(),
        "overrides": kind.reduced_config(hidden, steps),
        "defaults": (kind.info().defaults)(),
        "protocol": PROTOCOL,
        "seed": seed,
        "steps": steps,
        "batch_size": kind.default_batch_size(),
        "orl_version": env!("CARGO_PKG_VERSION"),
    })
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

/// Advances the progress bar and keeps the learning curve.
struct CellHooks<'a> {
    bar: &'a ProgressBar,
    curve: Vec<Value>,
    /// Updates already counted on the bar.
    counted: usize,
}

impl Hooks for CellHooks<'_> {
    type Error = anyhow::Error;
    /// The bar advances by log rows (every tenth of the run): the grid's bar counts the updates
    /// of every cell, so per-update ticks would only add lock traffic between the jobs.
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
}

/// One cell: train, with a learning curve (5 episodes every `steps / 10` updates), then the
/// final 10-episode evaluation (D4RL's protocol), all through `orl_algos::Trainer`.
fn run_cell(
    kind: AlgoKind,
    d: &Generated,
    seed: u64,
    o: &Opts,
    bar: &ProgressBar,
) -> Result<Value> {
    let ds = Dataset::open(&d.path)?;
    let hidden = hidden_for(o, d);
    let req = RecipeRequest {
        protocol: Some(kind.reduced_config(hidden, o.steps)),
        ref_scores: Some(d.refs),
        dataset_path: Some(d.path.display().to_string()),
        ..RecipeRequest::new(o.steps, seed)
    };
    let recipe = Recipe::new(kind, &ds, &req)?;
    let every = o.steps / 10;
    let schedule = Schedule {
        log_every: every,
        diagnostics: false,
        eval: recipe
            .env_id
            .is_some()
            .then_some(EvalPlan { every, episodes: 5 }),
        checkpoint_every: None,
    };
    let mut trainer = Trainer::new(recipe, ds, &Device::Cpu)?;
    let mut hooks = CellHooks {
        bar,
        curve: Vec::new(),
        counted: 0,
    };
    trainer.run(&schedule, &mut hooks)?;
    let train_s = trainer.update_seconds();
    let (returns, mean, first_seed) = match trainer.evaluate(10, FINAL_EVAL)? {
        Some(e) => (e.returns, e.mean, Some(e.first_seed)),
        None => (Vec::new(), f64::NAN, None),
    };
    let score = |r: f64| 100.0 * (r - d.refs.0) / (d.refs.1 - d.refs.0);
    let recipe = trainer.recipe();
    Ok(json!({
        "dataset": d.name, "env": recipe.env_id, "algo": kind.name(), "config": recipe.config,
        "reward_transform": recipe.reward_transform, "recipe": recipe,
        "seed": seed, "steps": o.steps, "batch_size": recipe.batch_size, "wall_s": train_s,
        "updates_per_s": o.steps as f64 / train_s, "returns": returns, "return_mean": mean,
        "eval_first_seed": first_seed,
        "normalized": score(mean), "curve": hooks.curve, "orl_version": env!("CARGO_PKG_VERSION"),
        "dataset_file": d.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "dataset_sha256": d.sha256, "hidden": hidden,
        "cell_key": cell_key(d, kind, seed, o.steps, hidden),
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
                .unwrap_or(if o.suite == "quick" { 20_000 } else { 100_000 });
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
            let seeds: Vec<u64> = match o.seed {
                Some(k) => vec![k],
                None => (0..o.seeds).collect(),
            };
            for seed in seeds {
                let f = cell_file(
                    &cells_dir,
                    &cell_key(d, kind, seed, o.steps, hidden_for(&o, d)),
                );
                todo.push((d, kind, seed, f));
            }
        }
    }
    if let Some(path) = &o.emit_cells {
        return emit_cells(&o, &todo, path);
    }
    // Longest cells first (the queue pops from the end), so the jobs finish together.
    let mut pending: Vec<_> = todo.iter().filter(|c| !c.3.exists()).collect();
    if o.collect && !pending.is_empty() {
        let names: Vec<String> = pending
            .iter()
            .take(10)
            .map(|c| c.3.display().to_string())
            .collect();
        bail!(
            "--collect: {} of {} cells have no result yet, e.g.\n  {}\nrun them first (their commands: --emit-cells)",
            pending.len(),
            todo.len(),
            names.join("\n  ")
        );
    }
    pending.sort_by_key(|c| c.1.info().relative_cost);
    println!(
        "{} cells, {} to run, {} jobs",
        todo.len(),
        pending.len(),
        o.jobs
    );
    let bar = ProgressBar::new((pending.len() * o.steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} updates  {elapsed_precise} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let queue = Mutex::new(pending);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..o.jobs {
            s.spawn(|| {
                while let Some((d, kind, seed, f)) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    match run_cell(*kind, d, *seed, &o, &bar) {
                        Ok(v) => {
                            bar.suspend(|| println!(
                                "  {:<28} {:<6} seed {seed}: normalized {:>6.1}  ({:.0} updates/s)",
                                d.name,
                                kind.name(),
                                v["normalized"].as_f64().unwrap_or(f64::NAN),
                                v["updates_per_s"].as_f64().unwrap_or(0.0)
                            ));
                            let tmp = f.with_extension("tmp");
                            if let Err(e) = std::fs::write(&tmp, v.to_string())
                                .and_then(|_| std::fs::rename(&tmp, f))
                                && let Ok(mut es) = errors.lock()
                            {
                                es.push(format!("{}: {e}", f.display()));
                            }
                        }
                        Err(e) => {
                            if let Ok(mut es) = errors.lock() {
                                es.push(format!("{} {} seed {seed}: {e:#}", d.name, kind.name()));
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
    let cells: Vec<Value> = todo
        .iter()
        .map(|c| -> Result<Value> {
            Ok(serde_json::from_slice(
                &std::fs::read(&c.3).with_context(|| format!("reading {}", c.3.display()))?,
            )?)
        })
        .collect::<Result<_>>()?;
    if o.no_report {
        return Ok(());
    }
    report(&o, &cells, &sets, &skipped, start.elapsed().as_secs_f64())
}

/// `--emit-cells`: one JSON line per cell with a command that trains it alone.
fn emit_cells(o: &Opts, todo: &[(&Generated, AlgoKind, u64, PathBuf)], path: &Path) -> Result<()> {
    let mut prefix: Vec<String> = ["cargo", "run", "--release", "--locked", "-p", "xtask"]
        .map(String::from)
        .to_vec();
    if cfg!(feature = "mujoco") {
        prefix.extend(["--features".into(), "mujoco".into()]);
    }
    prefix.extend(["--".into(), "bench-d4rl".into()]);
    let mut lines = String::new();
    for (d, kind, seed, file) in todo {
        let mut argv = prefix.clone();
        argv.extend(o.grid_args.iter().cloned());
        for (flag, value) in [
            ("--datasets", d.name.clone()),
            ("--algos", kind.name().to_string()),
            ("--seed", seed.to_string()),
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
            "steps": o.steps,
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

fn report(
    o: &Opts,
    cells: &[Value],
    sets: &[Generated],
    skipped: &[(String, AlgoKind)],
    wall: f64,
) -> Result<()> {
    let mut by: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for c in cells {
        by.entry((
            c["dataset"].as_str().unwrap_or("").into(),
            c["algo"].as_str().unwrap_or("").into(),
        ))
        .or_default()
        .push(c["normalized"].as_f64().unwrap_or(f64::NAN));
    }
    let mut md = String::from("# bench-d4rl report\n\n");
    let widths: std::collections::BTreeSet<usize> = sets.iter().map(|d| hidden_for(o, d)).collect();
    let networks = match widths.iter().collect::<Vec<_>>().as_slice() {
        [h] => format!("{h}x{h} networks"),
        _ => "256x256 networks on the MuJoCo tasks and 64x64 on classic control".to_string(),
    };
    let refs_note = if o.dataset_dir.is_some() {
        "each file's reference returns (its metadata, else D4RL's published references for its environment)"
    } else {
        "each environment's reference returns (`datasets/manifest.json`: the uniform random and the expert behaviour policy, 100 episodes each; \
         datasets built from the committed behaviour policies in `datasets/policies/`)"
    };
    md.push_str(&format!(
        "Suite `{}`; {} updates, {networks}, {} seed(s), final evaluation over 10 episodes. \
         Normalised score = 100 (R - R_random) / (R_expert - R_random) with {refs_note}. \
         `data` is the same score of the dataset's own mean episode return.\n\n",
        if o.dataset_dir.is_some() {
            "dataset-dir"
        } else {
            &o.suite
        },
        o.steps,
        o.seeds
    ));
    md.push_str("| dataset | data |");
    for k in &o.algos {
        md.push_str(&format!(" {} |", k.name()));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(o.algos.len()));
    md.push('\n');
    let mut per_env: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut no_signal = Vec::new();
    for d in sets {
        let ds = Dataset::open(&d.path)?;
        if ds.uninformative_rewards() {
            no_signal.push(d.name.clone());
        }
        let rets = ds.episode_returns();
        let data = 100.0 * (mean_std(&rets).0 - d.refs.0) / (d.refs.1 - d.refs.0);
        md.push_str(&format!("| {} | {data:.1} |", d.name));
        for k in &o.algos {
            if skipped.iter().any(|(n, s)| *n == d.name && s == k) {
                md.push_str(" n/a |");
                continue;
            }
            let v = by
                .get(&(d.name.clone(), k.name().to_string()))
                .cloned()
                .unwrap_or_default();
            let (m, s) = mean_std(&v);
            for key in [d.env.clone(), "all".to_string()] {
                per_env
                    .entry(key)
                    .or_default()
                    .entry(k.name().into())
                    .or_default()
                    .push(m);
            }
            md.push_str(&format!(" {m:.1} +- {s:.1} |"));
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
    if !no_signal.is_empty() {
        md.push_str(&format!(
            "\n**No reward signal** in {}: every reward is the same and no episode reaches a \
             terminal state, so every action has the same value and no method can improve on \
             behaviour cloning there (`orl inspect` shows it under `quality`).\n",
            no_signal.join(", ")
        ));
    }
    md.push_str(&format!(
        "\nWall time {wall:.0} s. Learning curves: `curves/<dataset>.png`. Per-cell configs, seeds, returns, curves, wall time and updates/s: `results.json` / `results.csv`.\n"
    ));
    let mut csv =
        String::from("dataset,algo,seed,steps,return_mean,normalized,wall_s,updates_per_s\n");
    for c in cells {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            c["dataset"].as_str().unwrap_or(""),
            c["algo"].as_str().unwrap_or(""),
            c["seed"],
            c["steps"],
            c["return_mean"],
            c["normalized"],
            c["wall_s"],
            c["updates_per_s"]
        ));
    }
    let curves = o.out.join("curves");
    std::fs::create_dir_all(&curves)?;
    for d in sets {
        plot_curves(&curves.join(format!("{}.png", d.name)), &d.name, cells)
            .map_err(|e| anyhow::anyhow!("plotting {}: {e}", d.name))?;
    }
    let refs: Vec<Value> = sets
        .iter()
        .map(|d| json!({"dataset": d.name, "env": d.env, "random": d.refs.0, "expert": d.refs.1, "file": d.path.file_name().map(|n| n.to_string_lossy().into_owned())}))
        .collect();
    crate::write_atomic(
        &o.out.join("results.json"),
        serde_json::to_string_pretty(&json!({"suite": o.suite, "datasets": refs, "cells": cells}))?
            .as_bytes(),
    )?;
    crate::write_atomic(&o.out.join("results.csv"), csv.as_bytes())?;
    crate::write_atomic(&o.out.join("report.md"), md.as_bytes())?;
    println!("\n{md}\nwrote {}", o.out.join("report.md").display());
    Ok(())
}

type PResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Normalised score against updates, one line per algorithm (mean over seeds).
fn plot_curves(path: &Path, dataset: &str, cells: &[Value]) -> PResult<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, crate::PLOT_FONT);
    let mut lines: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c["dataset"] == dataset) {
        for p in c["curve"].as_array().into_iter().flatten() {
            if let (Some(s), Some(v)) = (p["step"].as_u64(), p["normalized"].as_f64()) {
                lines
                    .entry(c["algo"].as_str().unwrap_or("").into())
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
    let ys: Vec<f64> = pts.iter().flat_map(|p| p.1.iter().map(|q| q.1)).collect();
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
        let f = |d: &Generated, seed, steps, hidden| {
            cell_file(dir, &cell_key(d, AlgoKind::IQL, seed, steps, hidden))
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
        assert_ne!(
            cell_file(dir, &cell_key(&d, AlgoKind::BC, 0, 1000, 64)),
            base
        );
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
}
