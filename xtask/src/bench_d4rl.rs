//! `cargo xtask bench-d4rl`: the benchmark grid. **Partial** (issue 6): only the `quick` suite
//! on Pendulum-v1 exists, and its behaviour policies are a scripted swing-up controller at
//! several noise levels, not SAC checkpoints; there is no medium-replay dataset (it needs SAC's
//! training buffer), no MuJoCo suite, no learning-curve plots. What it does, it does for real:
//!
//! 1. generates the datasets deterministically (seeded) into `target/bench-d4rl/data/`:
//!    `pendulum-random` (uniform actions), `pendulum-medium` (a uniform action 70% of the time,
//!    else the controller + N(0, 0.3)), `pendulum-medium-expert` (medium and the expert, the
//!    controller + N(0, 0.3), concatenated), 20 000 transitions each by default (`--transitions`);
//! 2. measures the reference returns (random and expert policy, 50 episodes each) used for
//!    D4RL-style normalised scores `100 (R - R_random) / (R_expert - R_random)`;
//! 3. trains every (algorithm, dataset, seed) for `--steps` updates (default 3000) with
//!    `--hidden` x `--hidden` networks (default 64), `--jobs` cells at a time (default 2, one
//!    thread each), evaluates the final policy over 10 episodes (D4RL's protocol);
//! 4. writes `results.json`, `results.csv` (config, seed, steps, wall time, updates/s per cell)
//!    and `report.md` (normalised score mean +- std over seeds per dataset and algorithm, suite
//!    average) under `target/bench-d4rl/`. Finished cells are kept: a rerun skips them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::{AlgoKind, Spec, build, collect, pendulum_controller};
use orl_data::{Dataset, Replay, ReplayConfig, WriteOptions, write_parquet};
use orl_envs::{OwnedAction, make, run_episode};
use orl_nets::{Device, Tensor};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

struct Opts {
    algos: Vec<AlgoKind>,
    seeds: u64,
    steps: usize,
    jobs: usize,
    hidden: usize,
    transitions: usize,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        algos: AlgoKind::ALL.to_vec(),
        seeds: 1,
        steps: 3000,
        jobs: 2,
        hidden: 64,
        transitions: 20_000,
        out: crate::workspace_root().join("target/bench-d4rl"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--suite" => {
                let s = val()?;
                if s != "quick" {
                    bail!(
                        "suite `{s}` is not implemented yet: only `quick` (Pendulum-v1) exists (issue 6)"
                    );
                }
            }
            "--algos" => {
                o.algos = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--seeds" => o.seeds = val()?.parse()?,
            "--steps" => o.steps = val()?.parse()?,
            "--jobs" => o.jobs = val()?.parse::<usize>()?.max(1),
            "--hidden" => o.hidden = val()?.parse()?,
            "--transitions" => o.transitions = val()?.parse()?,
            "--out" => o.out = PathBuf::from(val()?),
            "--datasets" | "--dataset-dir" => bail!("{a} is not implemented yet (issue 6)"),
            other => bail!("bench-d4rl: unknown argument `{other}`"),
        }
    }
    Ok(o)
}

fn gaussian(rng: &mut rand_pcg::Pcg64Mcg) -> f64 {
    let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The behaviour policies: `None` = uniform random; `Some((sigma, eps))` = with probability
/// `eps` a uniform action, otherwise the swing-up controller plus N(0, sigma). The logged
/// log-probability is the mixture's density (ignoring the clip at the torque limit).
fn behavior(
    kind: Option<(f64, f64)>,
    seed: u64,
) -> impl FnMut(&[f32]) -> orl_algos::Result<(OwnedAction, Option<f64>)> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    move |o: &[f32]| match kind {
        None => Ok((
            OwnedAction::Continuous(vec![rng.random_range(-2.0f32..2.0)]),
            Some(-(4.0f64.ln())),
        )),
        Some((sigma, eps)) => {
            let mean = f64::from(pendulum_controller(o, 0.0, 0.0).0);
            let a = if rng.random::<f64>() < eps {
                rng.random_range(-2.0f32..2.0)
            } else {
                pendulum_controller(o, sigma, gaussian(&mut rng)).0
            };
            let z = (f64::from(a) - mean) / sigma;
            let gauss = (-0.5 * z * z).exp() / (sigma * (std::f64::consts::TAU).sqrt());
            Ok((
                OwnedAction::Continuous(vec![a]),
                Some((eps / 4.0 + (1.0 - eps) * gauss).ln()),
            ))
        }
    }
}

/// The medium behaviour: a uniform action 70% of the time, else the controller + N(0, 0.3).
const MEDIUM: (f64, f64) = (0.3, 0.7);

fn mean_return(noise: Option<(f64, f64)>, episodes: usize, seed: u64) -> Result<f64> {
    let mut env = make("Pendulum-v1")?;
    let mut b = behavior(noise, seed);
    let mut policy = |o: &[f32]| {
        b(o).map(|x| x.0)
            .unwrap_or(OwnedAction::Continuous(vec![0.0]))
    };
    let mut total = 0.0;
    for i in 0..episodes {
        total += run_episode(&mut env, &mut policy, seed + i as u64, i)?.0;
    }
    Ok(total / episodes as f64)
}

fn datasets(o: &Opts, refs: (f64, f64)) -> Result<Vec<(String, PathBuf)>> {
    let dir = o.out.join("data");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    let mut make_set = |name: &str, parts: &[(Option<(f64, f64)>, u64)]| -> Result<()> {
        let path = dir.join(format!("{name}.parquet"));
        if !path.exists() {
            let mut env = make("Pendulum-v1")?;
            let n = o.transitions / parts.len();
            let mut ds = Vec::new();
            for &(noise, seed) in parts {
                ds.push(collect(&mut env, &mut behavior(noise, seed), n, seed)?);
            }
            let mut d = if ds.len() == 1 {
                ds.remove(0)
            } else {
                Dataset::concat(ds, true)?
            };
            d.meta_mut().ref_min_score = Some(refs.0);
            d.meta_mut().ref_max_score = Some(refs.1);
            d.meta_mut().generator_policy = Some(format!(
                "{parts:?} ((noise std, uniform-action probability) of the swing-up controller, None = uniform random; seed)"
            ));
            write_parquet(&d, &path, &WriteOptions::default())?;
        }
        out.push((name.to_string(), path));
        Ok(())
    };
    make_set("pendulum-random", &[(None, 1)])?;
    make_set("pendulum-medium", &[(Some(MEDIUM), 2)])?;
    make_set(
        "pendulum-medium-expert",
        &[(Some(MEDIUM), 2), (Some((0.3, 0.0)), 3)],
    )?;
    Ok(out)
}

fn run_cell(kind: AlgoKind, data: &Path, seed: u64, o: &Opts, refs: (f64, f64)) -> Result<Value> {
    let ds = Dataset::open(data)?;
    let h = json!([o.hidden, o.hidden]);
    let cfg = match kind {
        AlgoKind::Cql => json!({"hidden": h, "n_actions": 4}),
        AlgoKind::Iql => json!({"hidden": h, "actor_cosine_steps": o.steps}),
        AlgoKind::Bcq => json!({"hidden": h, "vae_hidden": h}),
        _ => json!({"hidden": h}),
    };
    let rcfg = ReplayConfig {
        normalize_observations: kind.normalizes_observations(),
        ..ReplayConfig::default()
    };
    let mut replay = Replay::new(ds, rcfg, seed)?;
    let norm = replay.obs_stats().cloned();
    let mut algo = build(
        kind,
        Spec::continuous(3, 1, 2.0),
        Some(&cfg),
        seed,
        &Device::Cpu,
    )?;
    let t = Instant::now();
    for _ in 0..o.steps {
        algo.update(&replay.sample(kind.default_batch_size()))?;
    }
    let secs = t.elapsed().as_secs_f64();
    let mut env = make("Pendulum-v1")?;
    let mut returns = Vec::new();
    for i in 0..10 {
        let mut policy = |obs: &[f32]| -> OwnedAction {
            let x: Vec<f32> = match &norm {
                Some(s) => obs
                    .iter()
                    .zip(s.mean.iter().zip(&s.std))
                    .map(|(v, (m, sd))| (v - m) / sd)
                    .collect(),
                None => obs.to_vec(),
            };
            let a = Tensor::from_vec(x, (1, 3), &Device::Cpu)
                .map_err(orl_algos::AlgoError::from)
                .and_then(|s| algo.act(&s, true))
                .and_then(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?));
            OwnedAction::Continuous(a.unwrap_or_else(|_| vec![f32::NAN]))
        };
        returns.push(run_episode(&mut env, &mut policy, 1_000_000 + i, i as usize)?.0);
    }
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    Ok(json!({
        "algo": kind.name(), "config": serde_json::from_str::<Value>(&algo.config_json())?, "seed": seed,
        "steps": o.steps, "batch_size": kind.default_batch_size(), "wall_s": secs, "updates_per_s": o.steps as f64 / secs,
        "returns": returns, "return_mean": mean, "normalized": 100.0 * (mean - refs.0) / (refs.1 - refs.0),
        "orl_version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Runs the grid.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let start = Instant::now();
    println!(
        "bench-d4rl (partial, quick suite: Pendulum-v1 with scripted behaviour policies; see xtask/src/bench_d4rl.rs)"
    );
    let refs = (
        mean_return(None, 50, 7)?,
        mean_return(Some((0.3, 0.0)), 50, 7)?,
    );
    println!(
        "reference returns: random {:.1}, expert {:.1}",
        refs.0, refs.1
    );
    let sets = datasets(&o, refs)?;
    let cells_dir = o.out.join("cells");
    std::fs::create_dir_all(&cells_dir)?;
    let mut todo = Vec::new();
    for (name, path) in &sets {
        for &kind in &o.algos {
            for seed in 0..o.seeds {
                let f = cells_dir.join(format!("{name}__{}__{seed}.json", kind.name()));
                todo.push((name.clone(), path.clone(), kind, seed, f));
            }
        }
    }
    let queue = Mutex::new(todo.iter().filter(|c| !c.4.exists()).collect::<Vec<_>>());
    let total = queue.lock().map(|q| q.len()).unwrap_or(0);
    println!("{} cells, {} to run, {} jobs", todo.len(), total, o.jobs);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..o.jobs {
            s.spawn(|| {
                while let Some((name, path, kind, seed, f)) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    match run_cell(*kind, path, *seed, &o, refs) {
                        Ok(mut v) => {
                            v["dataset"] = json!(name);
                            println!("  {name:<24} {:<6} seed {seed}: normalized {:>6.1}  ({:.0} updates/s)", kind.name(), v["normalized"].as_f64().unwrap_or(f64::NAN), v["updates_per_s"].as_f64().unwrap_or(0.0));
                            let tmp = f.with_extension("tmp");
                            if let Err(e) = std::fs::write(&tmp, v.to_string()).and_then(|_| std::fs::rename(&tmp, f))
                                && let Ok(mut es) = errors.lock()
                            {
                                es.push(format!("{}: {e}", f.display()));
                            }
                        }
                        Err(e) => {
                            if let Ok(mut es) = errors.lock() { es.push(format!("{name} {} seed {seed}: {e:#}", kind.name())); }
                        }
                    }
                }
            });
        }
    });
    if let Ok(es) = errors.lock()
        && !es.is_empty()
    {
        bail!("{} cells failed:\n{}", es.len(), es.join("\n"));
    }
    report(
        &o,
        &todo.iter().map(|c| c.4.clone()).collect::<Vec<_>>(),
        &sets,
        refs,
        start.elapsed().as_secs_f64(),
    )
}

fn report(
    o: &Opts,
    files: &[PathBuf],
    sets: &[(String, PathBuf)],
    refs: (f64, f64),
    wall: f64,
) -> Result<()> {
    let cells: Vec<Value> = files
        .iter()
        .map(|f| -> Result<Value> {
            Ok(serde_json::from_slice(
                &std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
            )?)
        })
        .collect::<Result<_>>()?;
    let mut by: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for c in &cells {
        by.entry((
            c["dataset"].as_str().unwrap_or("").into(),
            c["algo"].as_str().unwrap_or("").into(),
        ))
        .or_default()
        .push(c["normalized"].as_f64().unwrap_or(f64::NAN));
    }
    let ms = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (
            m,
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt(),
        )
    };
    let mut md = String::from("# bench-d4rl report (partial quick suite)\n\n");
    md.push_str(&format!(
        "Pendulum-v1, {} transitions per dataset, {} updates, {}x{} networks, {} seed(s), evaluation over 10 episodes.\n\
         Normalised score = 100 (R - R_random) / (R_expert - R_random) with R_random = {:.1}, R_expert = {:.1}\n\
         (the uniform random policy and the swing-up controller with N(0, 0.3) noise, 50 episodes each).\n\
         `data` is the normalised mean episode return of the dataset itself. Behaviour policies are scripted, not SAC checkpoints: this is not the D4RL recipe (issue 6 is open).\n\n",
        o.transitions, o.steps, o.hidden, o.hidden, o.seeds, refs.0, refs.1
    ));
    md.push_str("| dataset | data |");
    for k in &o.algos {
        md.push_str(&format!(" {} |", k.name()));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(o.algos.len()));
    md.push('\n');
    let mut avg: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (name, path) in sets {
        let rets = Dataset::open(path)?.episode_returns();
        let data = 100.0 * (rets.iter().sum::<f64>() / rets.len().max(1) as f64 - refs.0)
            / (refs.1 - refs.0);
        md.push_str(&format!("| {name} | {data:.1} |"));
        for k in &o.algos {
            let v = by
                .get(&(name.clone(), k.name().to_string()))
                .cloned()
                .unwrap_or_default();
            let (m, s) = ms(&v);
            avg.entry(k.name().into()).or_default().push(m);
            md.push_str(&format!(" {m:.1} +- {s:.1} |"));
        }
        md.push('\n');
    }
    md.push_str("| **average** | |");
    for k in &o.algos {
        md.push_str(&format!(
            " {:.1} |",
            ms(avg.get(k.name()).map(Vec::as_slice).unwrap_or(&[])).0
        ));
    }
    md.push_str(&format!("\n\nWall time {wall:.0} s. Per-cell configs, seeds, returns, wall time and updates/s: `results.json` / `results.csv`.\n"));
    let mut csv =
        String::from("dataset,algo,seed,steps,return_mean,normalized,wall_s,updates_per_s\n");
    for c in &cells {
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
    std::fs::write(
        o.out.join("results.json"),
        serde_json::to_string_pretty(
            &json!({"reference": {"random": refs.0, "expert": refs.1}, "cells": cells}),
        )?,
    )?;
    std::fs::write(o.out.join("results.csv"), csv)?;
    std::fs::write(o.out.join("report.md"), &md)?;
    println!("\n{md}\nwrote {}", o.out.join("report.md").display());
    Ok(())
}
