//! `cargo xtask learn-pendulum`: the Pendulum-v1 learning check of the algorithms.
//!
//! Recipe (seeded, deterministic): a mixed-quality dataset of `--transitions` rows (default
//! 20 000), half from the uniform random policy (return about -1200) and half from a noisy
//! swing-up controller (`orl_algos::pendulum_controller`, noise std 0.5, return about -150 to
//! -400), each with its behaviour log-probabilities. Every algorithm (CQL, IQL, BCQ, TD3+BC, BC)
//! trains on it for `--steps` updates (default 10 000) with `--hidden`x`--hidden` networks
//! (default 64; CQL with 4 sampled actions) to fit a CI time budget and is evaluated over 10 episodes. Behaviour cloning imitates
//! the average of the two behaviours; the offline RL methods should pick the good actions out,
//! and the check fails unless CQL, IQL, TD3+BC and BCQ each end with a higher return than BC.
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

fn evaluate(agent: &mut Agent, episodes: usize) -> Result<(f64, f64)> {
    let mut env = make("Pendulum-v1")?;
    let returns: Vec<f64> = (0..episodes)
        .map(|i| run_episode(&mut env, &mut *agent, 10_000 + i as u64, i).map(|r| r.0))
        .collect::<Result<_, _>>()?;
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    Ok((
        mean,
        (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt(),
    ))
}

/// Runs the check.
pub fn run(args: &[String]) -> Result<()> {
    let mut steps = 10_000usize;
    let mut transitions = 20_000usize;
    let mut hidden = 64usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => steps = it.next().context("--steps N")?.parse()?,
            "--transitions" => transitions = it.next().context("--transitions N")?.parse()?,
            "--hidden" => hidden = it.next().context("--hidden N")?.parse()?,
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
    let mut results = Vec::new();
    for kind in [
        AlgoKind::Bc,
        AlgoKind::Cql,
        AlgoKind::Iql,
        AlgoKind::Td3Bc,
        AlgoKind::Bcq,
    ] {
        let h = serde_json::json!([hidden, hidden]);
        let cfg = Some(match kind {
            AlgoKind::Cql => serde_json::json!({"hidden": h, "n_actions": 4}),
            AlgoKind::Iql => serde_json::json!({"hidden": h, "actor_cosine_steps": steps}),
            AlgoKind::Bcq => serde_json::json!({"hidden": h, "vae_hidden": h}),
            _ => serde_json::json!({"hidden": h}),
        });
        let rcfg = ReplayConfig {
            normalize_observations: kind.normalizes_observations(),
            ..ReplayConfig::default()
        };
        let mut replay = Replay::new(ds.clone(), rcfg, 1)?;
        let norm = replay.obs_stats().map(|s| (s.mean.clone(), s.std.clone()));
        let mut algo = build(
            kind,
            Spec::continuous(3, 1, 2.0),
            cfg.as_ref(),
            0,
            &Device::Cpu,
        )?;
        let t = Instant::now();
        for _ in 0..steps {
            algo.update(&replay.sample(kind.default_batch_size()))?;
        }
        let secs = t.elapsed().as_secs_f64();
        let mut agent = Agent::new(algo, norm, Device::Cpu);
        let (mean, std) = evaluate(&mut agent, 10)?;
        println!(
            "{:<6} return {mean:>9.1} +- {std:>6.1}   ({steps} updates, {:.0} updates/s)",
            kind.name(),
            steps as f64 / secs
        );
        results.push((kind, mean, std, steps as f64 / secs));
    }
    let bc = results[0].1;
    let report = serde_json::json!({
        "env": "Pendulum-v1", "transitions": transitions, "steps": steps, "hidden": hidden, "seed": 0,
        "dataset": ds.meta().generator_policy,
        "results": results.iter().map(|(k, m, s, u)| serde_json::json!({"algo": k.name(), "return_mean": m, "return_std": s, "updates_per_s": u})).collect::<Vec<_>>(),
    });
    let out = crate::workspace_root().join("target/learn-pendulum/report.json");
    std::fs::create_dir_all(out.parent().context("no parent")?)?;
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    let losers: Vec<_> = results[1..]
        .iter()
        .filter(|r| r.1 <= bc)
        .map(|r| r.0.name())
        .collect();
    if !losers.is_empty() {
        bail!("not above BC ({bc:.1}): {}", losers.join(", "));
    }
    println!("every offline RL method beats BC ({bc:.1})");
    Ok(())
}
