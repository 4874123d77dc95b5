//! `cargo xtask learn-pendulum`: the Pendulum-v1 learning check of the algorithms.
//!
//! Recipe (seeded, deterministic): a mixed-quality dataset of `--transitions` rows (default
//! 20 000), half from the uniform random policy (return about -1200) and half from a noisy
//! swing-up controller (`orl_algos::pendulum_controller`, noise std 0.5, return about -150 to
//! -400), each with its behaviour log-probabilities. Every algorithm (CQL, IQL, BCQ, TD3+BC, BC)
//! trains on it for `--steps` updates (default 20 000) through `orl_algos::Trainer` with the
//! reduced protocol of the benchmark (`AlgoInfo::reduced`: `--hidden`x`--hidden` networks,
//! default 64), seed 0, two algorithms at a time, and is evaluated over `--episodes` episodes
//! (default 30) from the same start states (seed 0's), so the comparison with BC is paired
//! (mean difference +- standard error). Behaviour cloning imitates
//! the average of the two behaviours; the offline RL methods should pick the good actions out,
//! and the check fails unless CQL, IQL, TD3+BC and BCQ each end with a higher return than BC.
//!
//! `--algos cql,iql` restricts the set (BC always runs); `--set iql.expectile=0.9` overrides a
//! configuration value (JSON) of one algorithm, recorded in the report; `--raw-rewards`
//! turns off IQL's reward scaling (`RewardChoice::None`).
//!
//! Writes `target/learn-pendulum/report.json` and prints a table.

use anyhow::{Context, Result, bail};
use orl_algos::{
    AlgoKind, FINAL_EVAL, NoHooks, Recipe, RecipeRequest, RewardChoice, Schedule, Trainer, collect,
    pendulum_controller,
};
use orl_data::Dataset;
use orl_envs::{OwnedAction, make};
use orl_nets::Device;
use rand::{RngExt, SeedableRng};

/// Builds the mixed dataset.
pub fn mixed_dataset(transitions: usize, seed: u64) -> Result<Dataset> {
    let mut env = make("Pendulum-v1")?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut random = |_: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
        Ok((
            OwnedAction::Continuous(vec![rng.random_range(-2.0f32..2.0)]),
            Some(-(4.0f64.ln())),
        ))
    };
    let low = collect(&mut env, &mut random, transitions / 2, seed)?;
    let mut rng2 = rand_pcg::Pcg64Mcg::seed_from_u64(seed + 1);
    let mut expert = |o: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
        let z: f64 = {
            let (u1, u2): (f64, f64) = (1.0 - rng2.random::<f64>(), rng2.random::<f64>());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let (a, lp) = pendulum_controller(o, 0.5, z);
        Ok((OwnedAction::Continuous(vec![a]), Some(lp)))
    };
    let high = collect(
        &mut env,
        &mut expert,
        transitions - transitions / 2,
        seed + 100_000,
    )?;
    let mut ds = Dataset::concat(vec![low, high], true).context("concatenating")?;
    ds.meta_mut().generator_policy =
        Some("50% uniform random, 50% swing-up controller + N(0, 0.5)".into());
    Ok(ds)
}

fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Runs the check.
pub fn run(args: &[String]) -> Result<()> {
    let mut steps = 20_000usize;
    let mut transitions = 20_000usize;
    let mut hidden = 64usize;
    let mut episodes = 30usize;
    let mut algos: Vec<AlgoKind> = AlgoKind::all()
        .into_iter()
        .filter(|k| *k != AlgoKind::BC)
        .collect();
    let mut overrides: Vec<(AlgoKind, String, serde_json::Value)> = Vec::new();
    let mut raw_rewards = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => steps = it.next().context("--steps N")?.parse()?,
            "--transitions" => transitions = it.next().context("--transitions N")?.parse()?,
            "--hidden" => hidden = it.next().context("--hidden N")?.parse()?,
            "--episodes" => episodes = it.next().context("--episodes N")?.parse()?,
            "--algos" => {
                let list = it.next().context("--algos a,b")?;
                algos = list
                    .split(',')
                    .map(|a| a.parse::<AlgoKind>().map_err(|e| anyhow::anyhow!("{e}")))
                    .collect::<Result<_>>()?;
            }
            "--raw-rewards" => raw_rewards = true,
            "--set" => {
                // --set iql.expectile=0.9
                let kv = it.next().context("--set algo.key=value")?;
                let (k, v) = kv.split_once('=').context("--set algo.key=value")?;
                let (algo, key) = k.split_once('.').context("--set algo.key=value")?;
                let value: serde_json::Value = serde_json::from_str(v)
                    .with_context(|| format!("--set {kv}: value is not JSON"))?;
                overrides.push((
                    algo.parse::<AlgoKind>()
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                    key.to_string(),
                    value,
                ));
            }
            other => bail!("learn-pendulum: unknown argument `{other}`"),
        }
    }
    let ds = mixed_dataset(transitions, 0)?;
    let rets = ds.episode_returns();
    println!(
        "dataset: {} transitions, {} episodes, return mean {:.1} (min {:.1}, max {:.1})",
        ds.len(),
        ds.num_episodes(),
        rets.iter().sum::<f64>() / rets.len() as f64,
        rets.iter().cloned().fold(f64::INFINITY, f64::min),
        rets.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
    );
    // One cell per algorithm, two at a time (one candle thread each).
    // BC first: every other algorithm is compared with it.
    let kinds: Vec<AlgoKind> = std::iter::once(AlgoKind::BC)
        .chain(algos.into_iter().filter(|k| *k != AlgoKind::BC))
        .collect();
    let cell = |kind: AlgoKind| -> Result<(Vec<f64>, f64)> {
        let mut user = serde_json::json!({});
        for (_, key, v) in overrides.iter().filter(|o| o.0 == kind) {
            user[key.as_str()] = v.clone();
        }
        let req = RecipeRequest {
            protocol: Some(kind.reduced_config(hidden, steps)),
            config: Some(user),
            // The algorithm's recipe (IQL: r * T / (G_max - G_min) with Pendulum's T = 200).
            reward: if raw_rewards {
                RewardChoice::None
            } else {
                RewardChoice::Auto
            },
            eval_env: Some("Pendulum-v1".into()),
            ..RecipeRequest::new(steps, 0)
        };
        let recipe = Recipe::new(kind, &ds, &req)?;
        let mut trainer = Trainer::new(recipe, ds.clone(), &Device::Cpu)?;
        trainer.run(&Schedule::quiet(steps), &mut NoHooks)?;
        let ups = steps as f64 / trainer.update_seconds();
        // Start states from the run's seed: the same for every algorithm (seed 0), so
        // differences between algorithms are paired.
        let eval = trainer
            .evaluate(episodes, FINAL_EVAL)?
            .context("Pendulum-v1 evaluation")?;
        Ok((eval.returns, ups))
    };
    let queue = std::sync::Mutex::new(kinds.iter().rev().copied().collect::<Vec<_>>());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(kind) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let r = cell(kind);
                    if let Ok(mut d) = done.lock() {
                        d.push((kind, r));
                    }
                }
            });
        }
    });
    let mut results = Vec::new();
    for &kind in &kinds {
        let r = done
            .lock()
            .ok()
            .and_then(|mut d| d.iter().position(|x| x.0 == kind).map(|i| d.remove(i)))
            .context("a cell did not finish")?;
        let (returns, ups) = r.1.with_context(|| format!("{} failed", kind.name()))?;
        results.push((kind, returns, ups));
    }
    let bc = results[0].1.clone();
    let mut rows = Vec::new();
    println!(
        "algo     return (mean +- SE over {episodes} episodes)   vs BC (paired, mean +- SE)   updates/s"
    );
    for (kind, returns, ups) in &results {
        let (m, se) = mean_se(returns);
        let diff: Vec<f64> = returns.iter().zip(&bc).map(|(a, b)| a - b).collect();
        let (dm, dse) = mean_se(&diff);
        println!(
            "{:<6} {m:>9.1} +- {se:>5.1}                     {}   {ups:>6.0}",
            kind.name(),
            if *kind == AlgoKind::BC {
                "        -          ".to_string()
            } else {
                format!(
                    "{dm:>+8.1} +- {dse:>5.1}{}",
                    if dm > 2.0 * dse { " *" } else { "  " }
                )
            }
        );
        rows.push(serde_json::json!({
            "algo": kind.name(), "return_mean": m, "return_se": se, "returns": returns,
            "diff_vs_bc_mean": dm, "diff_vs_bc_se": dse, "updates_per_s": ups,
        }));
    }
    println!("(* : more than two standard errors above BC)");
    let (bc_mean, _) = mean_se(&bc);
    let report = serde_json::json!({
        "env": "Pendulum-v1", "transitions": transitions, "steps": steps, "hidden": hidden,
        "seed": 0, "episodes": episodes, "eval_seeds": "orl_algos::Recipe::eval_seed(FINAL_EVAL) + i, seed 0",
        "dataset": ds.meta().generator_policy, "results": rows,
        "raw_rewards": raw_rewards,
        "overrides": overrides.iter().map(|(k, key, v)| format!("{}.{key}={v}", k.name())).collect::<Vec<_>>(),
    });
    let out = crate::workspace_root().join("target/learn-pendulum/report.json");
    std::fs::create_dir_all(out.parent().context("no parent")?)?;
    crate::write_atomic(&out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("wrote {}", out.display());
    let losers: Vec<_> = results[1..]
        .iter()
        .filter(|r| mean_se(&r.1).0 <= bc_mean)
        .map(|r| r.0.name())
        .collect();
    if !losers.is_empty() {
        bail!("not above BC ({bc_mean:.1}): {}", losers.join(", "));
    }
    println!("every offline RL method beats BC ({bc_mean:.1})");
    Ok(())
}
