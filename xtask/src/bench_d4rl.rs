//! `cargo xtask bench-d4rl`: the benchmark grid. **Partial** (issue 6): only the `quick` suite
//! on Pendulum-v1 exists (no MuJoCo suite, no committed policy weights or dataset manifest, no
//! learning-curve plots). What it does follows D4RL's recipe and is measured for real:
//!
//! 1. trains the behaviour policy with orl's own SAC online (`--behaviour-steps`, default
//!    20 000 environment steps, 64x64 networks, seed 0), snapshotting it every 1000 steps, and
//!    keeps its replay buffer;
//! 2. evaluates every snapshot (10 deterministic episodes) and the uniform random policy
//!    (50 episodes): the **expert** is the final snapshot, the **medium** policy the snapshot
//!    whose return is closest to one third of the way from random to expert (as D4RL's medium);
//!    these returns are the reference scores of the normalised score
//!    `100 (R - R_random) / (R_expert - R_random)`;
//! 3. generates the datasets deterministically into `target/bench-d4rl/data/` (`--transitions`
//!    each, default 20 000): `random`, `medium` and `expert` (rollouts of the stochastic
//!    policies, with their log-probabilities in `behavior_log_prob`), `medium-replay` (the SAC
//!    buffer up to the medium snapshot, D4RL's definition) and `medium-expert` (medium and
//!    expert concatenated);
//! 4. trains every (algorithm, dataset, seed) for `--steps` updates (default 3000) with
//!    `--hidden` x `--hidden` networks (default 64), `--jobs` cells at a time (default 2, one
//!    thread each), evaluates the final policy over 10 episodes (D4RL's protocol);
//! 5. writes `results.json`, `results.csv` (config, seed, steps, wall time, updates/s per cell)
//!    and `report.md` (normalised score mean +- std over seeds per dataset and algorithm, suite
//!    average) under `target/bench-d4rl/`. Finished cells and behaviour policies are kept: a
//!    rerun skips them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::{
    Agent, AlgoKind, Algorithm, OnlineConfig, OnlineEvent, Sac, SacConfig, Spec, build, collect,
    train_online,
};
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
    behaviour_steps: usize,
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
        behaviour_steps: 20_000,
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
            "--behaviour-steps" => o.behaviour_steps = val()?.parse()?,
            "--out" => o.out = PathBuf::from(val()?),
            "--datasets" | "--dataset-dir" => bail!("{a} is not implemented yet (issue 6)"),
            other => bail!("bench-d4rl: unknown argument `{other}`"),
        }
    }
    Ok(o)
}

const ENV: &str = "Pendulum-v1";

fn sac_spec() -> Spec {
    Spec::continuous(3, 1, 2.0)
}

fn sac_config() -> SacConfig {
    SacConfig {
        hidden: vec![64, 64],
        ..SacConfig::default()
    }
}

fn load_sac(path: &Path) -> Result<Sac> {
    let mut sac = Sac::new(sac_spec(), sac_config(), 0, &Device::Cpu)?;
    sac.load(path)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(sac)
}

fn act(sac: &mut Sac, o: &[f32], stochastic: bool) -> orl_algos::Result<(Vec<f32>, Option<f64>)> {
    let s = Tensor::from_slice(o, (1, o.len()), &Device::Cpu)?;
    let a = sac.act(&s, !stochastic)?;
    let lp = if stochastic {
        Some(f64::from(
            sac.log_prob(&s, &a)?
                .map(|t| t.to_vec1::<f32>())
                .transpose()?
                .map_or(0.0, |v| v[0]),
        ))
    } else {
        None
    };
    Ok((a.flatten_all()?.to_vec1()?, lp))
}

/// Mean return of `episodes` episodes of `policy` from seeds `seed..`.
fn mean_return(
    policy: &mut dyn FnMut(&[f32]) -> OwnedAction,
    episodes: usize,
    seed: u64,
) -> Result<f64> {
    let mut env = make(ENV)?;
    let mut p = |o: &[f32]| policy(o);
    let mut total = 0.0;
    for i in 0..episodes {
        total += run_episode(&mut env, &mut p, seed + i as u64, i)?.0;
    }
    Ok(total / episodes as f64)
}

/// What step 1-2 produce.
struct Behaviours {
    expert: PathBuf,
    medium: PathBuf,
    medium_step: usize,
    buffer: PathBuf,
    refs: (f64, f64),
    record: Value,
}

fn behaviours(o: &Opts) -> Result<Behaviours> {
    let dir = o.out.join("policies");
    std::fs::create_dir_all(&dir)?;
    let record_path = dir.join("pendulum-sac.json");
    let buffer = dir.join("pendulum-sac-buffer.parquet");
    if let Ok(bytes) = std::fs::read(&record_path) {
        let r: Value = serde_json::from_slice(&bytes)?;
        if r["behaviour_steps"].as_u64() == Some(o.behaviour_steps as u64) && buffer.exists() {
            println!("behaviour policies: reusing {}", record_path.display());
            return Ok(Behaviours {
                expert: dir.join(r["expert"].as_str().unwrap_or_default()),
                medium: dir.join(r["medium"].as_str().unwrap_or_default()),
                medium_step: r["medium_step"].as_u64().unwrap_or(0) as usize,
                buffer,
                refs: (
                    r["random_return"].as_f64().unwrap_or(f64::NAN),
                    r["expert_return"].as_f64().unwrap_or(f64::NAN),
                ),
                record: r,
            });
        }
    }
    println!(
        "training the behaviour policy: SAC on {ENV}, {} steps ...",
        o.behaviour_steps
    );
    let t = Instant::now();
    let mut env = make(ENV)?;
    let mut sac = Sac::new(sac_spec(), sac_config(), 0, &Device::Cpu)?;
    let cfg = OnlineConfig {
        steps: o.behaviour_steps,
        ..OnlineConfig::default()
    };
    let mut snaps: Vec<(usize, PathBuf)> = Vec::new();
    let report = train_online(&mut sac, &mut env, &cfg, 0, |e| {
        if let OnlineEvent::Step { step, algo } = e
            && (step % 1000 == 0 || step == o.behaviour_steps)
        {
            let p = dir.join(format!("pendulum-sac-step{step:06}.safetensors"));
            algo.save(&p, &Default::default())?;
            snaps.push((step, p));
        }
        Ok(())
    })?;
    write_parquet(&report.buffer, &buffer, &WriteOptions::default())?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(99);
    let random = mean_return(
        &mut |_| OwnedAction::Continuous(vec![rng.random_range(-2.0f32..2.0)]),
        50,
        3_000_000,
    )?;
    let mut evals = Vec::new();
    for (step, p) in &snaps {
        let mut s = load_sac(p)?;
        let r = mean_return(
            &mut |o| {
                OwnedAction::Continuous(
                    act(&mut s, o, false).map(|x| x.0).unwrap_or(vec![f32::NAN]),
                )
            },
            10,
            2_000_000,
        )?;
        evals.push((*step, p.clone(), r));
    }
    let (expert_step, expert, expert_ret) = evals.last().cloned().context("no snapshot")?;
    let target = random + (expert_ret - random) / 3.0;
    let (medium_step, medium, medium_ret) = evals[..evals.len() - 1]
        .iter()
        .min_by(|a, b| (a.2 - target).abs().total_cmp(&(b.2 - target).abs()))
        .cloned()
        .context("need at least two snapshots")?;
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let record = json!({
        "env": ENV, "algo": "sac", "config": sac_config(), "seed": 0, "behaviour_steps": o.behaviour_steps,
        "online": {"start_steps": cfg.start_steps, "batch_size": cfg.batch_size, "gamma": cfg.gamma},
        "random_return": random, "expert": name(&expert), "expert_step": expert_step, "expert_return": expert_ret,
        "medium": name(&medium), "medium_step": medium_step, "medium_return": medium_ret, "medium_target": target,
        "snapshots": evals.iter().map(|(s, _, r)| json!({"step": s, "return": r})).collect::<Vec<_>>(),
        "training_episode_returns": report.episode_returns, "wall_s": t.elapsed().as_secs_f64(),
    });
    std::fs::write(&record_path, serde_json::to_string_pretty(&record)?)?;
    println!(
        "  random {random:.1}, medium {medium_ret:.1} (step {medium_step}), expert {expert_ret:.1} (step {expert_step}); {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(Behaviours {
        expert,
        medium,
        medium_step,
        buffer,
        refs: (random, expert_ret),
        record,
    })
}

/// The first `n` rows of `ds` as a dataset (the last episode may be cut, as in D4RL).
fn prefix(ds: &Dataset, n: usize) -> Result<Dataset> {
    let (meta, cols, eps) = ds.clone().into_parts();
    let od = ds.obs_dim();
    let actions = match cols.actions {
        orl_data::Actions::Continuous { dim, values } => orl_data::Actions::Continuous {
            dim,
            values: values[..n * dim].to_vec(),
        },
        orl_data::Actions::Discrete(v) => orl_data::Actions::Discrete(v[..n].to_vec()),
    };
    let cols = orl_data::Columns {
        observations: cols.observations[..n * od].to_vec(),
        next_observations: cols.next_observations[..n * od].to_vec(),
        next_valid: cols.next_valid.map(|v| v[..n].to_vec()),
        actions,
        rewards: cols.rewards[..n].to_vec(),
        terminals: cols.terminals[..n].to_vec(),
        timeouts: cols.timeouts[..n].to_vec(),
        behavior_log_prob: cols.behavior_log_prob.map(|v| v[..n].to_vec()),
    };
    let mut kept = Vec::new();
    let mut rows = 0;
    for (id, len) in eps {
        if rows >= n {
            break;
        }
        kept.push((id, len.min(n - rows)));
        rows += len;
    }
    Ok(Dataset::new(meta, cols, &kept)?)
}

fn datasets(o: &Opts, b: &Behaviours) -> Result<Vec<(String, PathBuf)>> {
    let dir = o.out.join("data");
    std::fs::create_dir_all(&dir)?;
    let rollouts = |policy: Option<&Path>, seed: u64, n: usize| -> Result<Dataset> {
        let mut env = make(ENV)?;
        let ds = match policy {
            None => {
                let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
                let mut f = |_: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
                    Ok((
                        OwnedAction::Continuous(vec![rng.random_range(-2.0f32..2.0)]),
                        Some(-(4.0f64.ln())),
                    ))
                };
                collect(&mut env, &mut f, n, seed)?
            }
            Some(p) => {
                let mut sac = load_sac(p)?;
                let mut f = |o: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
                    let (a, lp) = act(&mut sac, o, true)?;
                    Ok((OwnedAction::Continuous(a), lp))
                };
                collect(&mut env, &mut f, n, seed)?
            }
        };
        Ok(ds)
    };
    let mut out = Vec::new();
    let mut make_set = |name: &str, build: &dyn Fn() -> Result<Dataset>| -> Result<()> {
        let path = dir.join(format!("{name}.parquet"));
        if !path.exists() {
            let mut d = build()?;
            d.meta_mut().ref_min_score = Some(b.refs.0);
            d.meta_mut().ref_max_score = Some(b.refs.1);
            d.meta_mut().generator_policy = Some(format!("{name}: see policies/pendulum-sac.json"));
            write_parquet(&d, &path, &WriteOptions::default())?;
        }
        out.push((name.to_string(), path));
        Ok(())
    };
    let n = o.transitions;
    make_set("pendulum-random", &|| rollouts(None, 1, n))?;
    make_set("pendulum-medium", &|| rollouts(Some(&b.medium), 2, n))?;
    make_set("pendulum-medium-replay", &|| {
        prefix(&Dataset::open(&b.buffer)?, b.medium_step)
    })?;
    make_set("pendulum-medium-expert", &|| {
        Ok(Dataset::concat(
            vec![
                rollouts(Some(&b.medium), 2, n / 2)?,
                rollouts(Some(&b.expert), 3, n - n / 2)?,
            ],
            true,
        )?)
    })?;
    make_set("pendulum-expert", &|| rollouts(Some(&b.expert), 3, n))?;
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
    let norm = norm.map(|s| (s.mean, s.std));
    let mut agent = Agent::new(algo, norm, Device::Cpu);
    let mut returns = Vec::new();
    for i in 0..10 {
        returns.push(run_episode(&mut env, &mut agent, 1_000_000 + i, i as usize)?.0);
    }
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    Ok(json!({
        "algo": kind.name(), "config": serde_json::from_str::<Value>(&agent.algo.config_json())?, "seed": seed,
        "steps": o.steps, "batch_size": kind.default_batch_size(), "wall_s": secs, "updates_per_s": o.steps as f64 / secs,
        "returns": returns, "return_mean": mean, "normalized": 100.0 * (mean - refs.0) / (refs.1 - refs.0),
        "orl_version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The quick suite's datasets with default settings (behaviour policies trained or reused
/// first): `(name, path)` pairs. Shared with `ope-bench`.
pub(crate) fn quick_datasets() -> Result<Vec<(String, PathBuf)>> {
    let o = parse(&[])?;
    let b = behaviours(&o)?;
    datasets(&o, &b)
}

/// Runs the grid.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let start = Instant::now();
    println!("bench-d4rl (partial: the quick Pendulum-v1 suite; see xtask/src/bench_d4rl.rs)");
    let b = behaviours(&o)?;
    let refs = b.refs;
    println!(
        "reference returns: random {:.1}, expert {:.1}",
        refs.0, refs.1
    );
    let sets = datasets(&o, &b)?;
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
        &b,
        start.elapsed().as_secs_f64(),
    )
}

fn report(
    o: &Opts,
    files: &[PathBuf],
    sets: &[(String, PathBuf)],
    b: &Behaviours,
    wall: f64,
) -> Result<()> {
    let refs = b.refs;
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
         Behaviour policy: orl's SAC (64x64) trained online for {} steps; expert = final snapshot (step {}),\n\
         medium = snapshot at step {} (return {:.1}, target one third of the way from random to expert).\n\
         Normalised score = 100 (R - R_random) / (R_expert - R_random) with R_random = {:.1} (uniform policy, 50 episodes)\n\
         and R_expert = {:.1} (expert, 10 deterministic episodes). `data` is the normalised mean episode return of the dataset\n\
         itself (medium-replay: the SAC buffer up to the medium snapshot). Pendulum only: issue 6 (MuJoCo suites) is open.\n\n",
        o.transitions, o.steps, o.hidden, o.hidden, o.seeds, o.behaviour_steps, b.record["expert_step"], b.medium_step,
        b.record["medium_return"].as_f64().unwrap_or(f64::NAN), refs.0, refs.1
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
