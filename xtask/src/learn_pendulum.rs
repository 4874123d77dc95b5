//! `cargo xtask learn-pendulum`: the Pendulum-v1 learning check of the algorithms.
//!
//! Recipe (seeded, deterministic): a mixed-quality dataset of `--transitions` rows (default
//! 20 000), half from the uniform random policy (return about -1200) and half from a noisy
//! swing-up controller (`orl_algos::pendulum_controller`, noise std 0.5, return about -150 to
//! -400), each with its behaviour log-probabilities. Every algorithm (CQL, IQL, BCQ, TD3+BC, BC)
//! trains on it for `--steps` updates (default 20 000) with `--hidden`x`--hidden` networks
//! (default 64; CQL with 4 sampled actions), two algorithms at a time, and is evaluated over
//! `--episodes` episodes (default 30) from the same start states, so the comparison with BC is
//! paired (mean difference +- standard error). Behaviour cloning imitates
//! the average of the two behaviours; the offline RL methods should pick the good actions out,
//! and the check fails unless CQL, IQL, TD3+BC and BCQ each end with a higher return than BC.
//!
//! `--algos cql,iql` restricts the set (BC always runs); `--set iql.expectile=0.9` overrides a
//! configuration value (JSON) of one algorithm, recorded in the report; `--raw-rewards`
//! turns off IQL's reward scaling (`AlgoKind::reward_transform`).
//!
//! Writes `target/learn-pendulum/report.json` and prints a table.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::{Agent, AlgoKind, Spec, build, collect, pendulum_controller};
use orl_data::{Dataset, Replay, ReplayConfig};
use orl_envs::{OwnedAction, make, run_episode};
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

/// Returns of `episodes` episodes from the fixed start seeds `10 000 + i` (the same starts for
/// every algorithm, so differences between algorithms are paired).
fn evaluate(agent: &mut Agent, episodes: usize) -> Result<Vec<f64>> {
    let mut env = make("Pendulum-v1")?;
    (0..episodes)
        .map(|i| {
            run_episode(&mut env, &mut *agent, 10_000 + i as u64, i)
                .map(|r| r.0)
                .map_err(Into::into)
        })
        .collect()
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
    let mut algos: Vec<AlgoKind> =
        vec![AlgoKind::Cql, AlgoKind::Iql, AlgoKind::Td3Bc, AlgoKind::Bcq];
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
    let kinds: Vec<AlgoKind> = std::iter::once(AlgoKind::Bc)
        .chain(algos.into_iter().filter(|k| *k != AlgoKind::Bc))
        .collect();
    let cell = |kind: AlgoKind| -> Result<(Vec<f64>, f64)> {
        let h = serde_json::json!([hidden, hidden]);
        let mut cfg = match kind {
            AlgoKind::Cql => serde_json::json!({"hidden": h, "n_actions": 4}),
            AlgoKind::Iql => serde_json::json!({"hidden": h, "actor_cosine_steps": steps}),
            AlgoKind::Bcq => serde_json::json!({"hidden": h, "vae_hidden": h}),
            _ => serde_json::json!({"hidden": h}),
        };
        for (_, key, v) in overrides.iter().filter(|o| o.0 == kind) {
            cfg[key.as_str()] = v.clone();
        }
        let rcfg = ReplayConfig {
            normalize_observations: kind.normalizes_observations(),
            // The algorithm's recipe (IQL: r * T / (G_max - G_min) with Pendulum's T = 200).
            reward_transform: if raw_rewards {
                orl_data::RewardTransform::None
            } else {
                kind.reward_transform(&ds, 200)
            },
            ..ReplayConfig::default()
        };
        let mut replay = Replay::new(ds.clone(), rcfg, 1)?;
        let norm = replay.obs_stats().map(|s| (s.mean.clone(), s.std.clone()));
        let mut algo = build(
            kind,
            Spec::continuous(3, 1, 2.0),
            Some(&cfg),
            0,
            &Device::Cpu,
        )?;
        let t = Instant::now();
        for _ in 0..steps {
            algo.update(&replay.sample(kind.default_batch_size()))?;
        }
        let ups = steps as f64 / t.elapsed().as_secs_f64();
        let mut agent = Agent::new(algo, norm, Device::Cpu);
        Ok((evaluate(&mut agent, episodes)?, ups))
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
            if *kind == AlgoKind::Bc {
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
        "seed": 0, "episodes": episodes, "eval_seeds": format!("10000..{}", 10_000 + episodes),
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
