//! `cargo xtask train-behaviours [--env ID|all] [--steps N] [--force]`: the behaviour policies of the
//! dataset suite, trained with orl's own SAC (continuous) and DQN (discrete), committed under
//! `datasets/policies/`.
//!
//! Per environment (D4RL's recipe, Fu et al. 2020, section 5):
//! 1. online training (`RECIPES`: algorithm, steps, network width, seed 0), a snapshot every
//!    `steps / 20` environment steps (Acrobot: `steps / 60`), the replay buffer kept;
//! 2. every snapshot's behaviour policy (stochastic SAC, or epsilon-greedy DQN with
//!    `epsilon = 0.1`) scored over 10 episodes; **expert** = the best snapshot, **medium** = the
//!    snapshot whose score is closest to one third of the way from random to expert, among the
//!    earlier snapshots whose training buffer has a reward signal
//!    ([`Dataset::uninformative_rewards`] is false: a medium-replay in which every action has the
//!    same value could not tell offline methods from behaviour cloning; this changes Acrobot
//!    only, see `datasets/README.md`);
//! 3. random, medium and expert scored over 100 episodes (reset seeds 7 000 000..);
//! 4. written: `<env>-medium.safetensors`, `<env>-expert.safetensors` (the acting network only,
//!    see `behaviour_policy.rs`), `<env>-medium-replay.archive.parquet` (the buffer up to the medium
//!    snapshot, D4RL's medium-replay) and `<env>.json` (command, seed, steps, configs, the
//!    returns), and the environment's entries in `datasets/manifest.json`.
//!
//! Resumable: an environment whose record exists is skipped (`--force` retrains), and within a
//! run the online loop checkpoints itself between episodes every `steps / snapshots` steps
//! (`target/behaviours/<env>/online.safetensors`), so that rerunning the same command after an
//! interruption continues from the last checkpoint and ends exactly as an uninterrupted run.
//! Training itself is deterministic on one machine; the committed files, not a retraining, are
//! what makes datasets reproducible elsewhere.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::{
    Algorithm, Dqn, DqnConfig, OnlineCheckpoint, OnlineConfig, OnlineEvent, Sac, SacConfig, Spec,
    train_online_resumable,
};
use orl_data::Dataset;
use orl_envs::{Space, make};
use orl_nets::Device;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde_json::{Value, json};

use crate::behaviour_policy::{self, Behaviour, Header};

/// One environment's behaviour training.
pub struct Recipe {
    /// Environment id.
    pub env: &'static str,
    /// `sac` or `dqn`.
    pub algo: &'static str,
    /// Environment steps of online training.
    pub steps: usize,
    /// Batch size of each update.
    pub batch: usize,
    /// Width of the two hidden layers of every network.
    pub hidden: usize,
    /// DQN: Adam learning rate, updates between target copies, final epsilon and the fraction
    /// of the run over which it decays (SAC ignores them and uses `SacConfig::default()`).
    pub dqn: (f64, usize, f64, f64),
    /// Snapshots taken over the run (one every `steps / snapshots` steps); the medium policy is
    /// chosen among them.
    pub snapshots: usize,
}

/// The classic-control suite.
pub const RECIPES: [Recipe; 3] = [
    Recipe {
        env: "Pendulum-v1",
        algo: "sac",
        steps: 20_000,
        batch: 64,
        hidden: HIDDEN,
        dqn: (0.0, 0, 0.0, 0.0),
        snapshots: SNAPSHOTS,
    },
    // rl-zoo's DQN settings adapted to one update per step (`DqnConfig::default()` explains why).
    Recipe {
        env: "CartPole-v1",
        algo: "dqn",
        steps: CARTPOLE_STEPS,
        batch: 64,
        hidden: HIDDEN,
        dqn: (CARTPOLE_LR, CARTPOLE_TARGET, 0.04, 0.16),
        snapshots: SNAPSHOTS,
    },
    Recipe {
        env: "Acrobot-v1",
        algo: "dqn",
        steps: ACROBOT_STEPS,
        batch: 128,
        hidden: HIDDEN,
        dqn: (ACROBOT_LR, ACROBOT_TARGET, 0.1, 0.12),
        snapshots: ACROBOT_SNAPSHOTS,
    },
];

/// The MuJoCo locomotion suite (feature `mujoco`): D4RL's behaviour recipe (Fu et al. 2020,
/// appendix C: rlkit's SAC, 256x256 networks, batch 256, one update per environment step, 1M
/// steps; SAC's own settings are `SacConfig::default()`, the SAC paper's table 1), snapshotted
/// every 20 000 steps so that the medium level (a third of the way to the expert) falls between
/// two close snapshots. At the engine's speed (about 100 steps a second) this is about 3 hours
/// per environment on one core of the development VM; the run is resumable (see the module
/// doc).
pub const LOCOMOTION: [Recipe; 3] = [
    locomotion("Hopper-v5"),
    locomotion("Walker2d-v5"),
    locomotion("HalfCheetah-v5"),
];

/// The locomotion recipe of `env` (the same for all three tasks).
const fn locomotion(env: &'static str) -> Recipe {
    Recipe {
        env,
        algo: "sac",
        steps: LOCOMOTION_STEPS,
        batch: 256,
        hidden: LOCOMOTION_HIDDEN,
        dqn: (0.0, 0, 0.0, 0.0),
        snapshots: LOCOMOTION_SNAPSHOTS,
    }
}

/// D4RL's 1M environment steps per behaviour run (it was 200 000 with 64x64 networks before
/// the engine made 1M affordable; `docs/benchmarks/locomotion.md` reports those runs).
const LOCOMOTION_STEPS: usize = 1_000_000;
/// One snapshot every 20 000 steps.
const LOCOMOTION_SNAPSHOTS: usize = 50;

const CARTPOLE_STEPS: usize = 50_000;
const CARTPOLE_LR: f64 = 1e-3;
const CARTPOLE_TARGET: usize = 500;
const ACROBOT_STEPS: usize = 60_000;
const ACROBOT_LR: f64 = 6.3e-4;
const ACROBOT_TARGET: usize = 250;
/// Acrobot's DQN goes from the random policy's -500 to about -100 between steps 4 000 and
/// 12 000; one snapshot every 3 000 steps cannot resolve the medium level in between (the
/// closest then was step 30 000, a dip, and its buffer scored 89 of 100 normalised), so
/// Acrobot is snapshotted every 1 000 steps.
const ACROBOT_SNAPSHOTS: usize = 60;
/// Snapshots per run of every other recipe (one every 5% of training).
const SNAPSHOTS: usize = 20;

/// Exploration of the epsilon-greedy behaviour of DQN policies.
pub const EPSILON: f64 = 0.1;
const HIDDEN: usize = 64;
/// D4RL's 256x256 networks for every locomotion behaviour (with 64x64, Hopper's SAC sat at a
/// return of about 380, a hop-and-fall local optimum, from step 60 000 to 130 000, so its
/// medium-replay buffer held almost nothing else: `docs/benchmarks/locomotion.md`).
const LOCOMOTION_HIDDEN: usize = 256;

/// `datasets/`.
pub fn datasets_dir() -> PathBuf {
    crate::workspace_root().join("datasets")
}

/// File stem of an environment (`pendulum-v1`).
pub fn stem(env: &str) -> String {
    env.to_ascii_lowercase()
}

/// The uniform random policy of `env`.
pub fn random_policy(env: &str) -> Result<Behaviour> {
    Ok(match make(env)?.action_space() {
        Space::Discrete { n } => Behaviour::UniformDiscrete(*n),
        Space::Box { low, high, .. } => Behaviour::UniformBox {
            low: low.iter().map(|&x| x as f32).collect(),
            high: high.iter().map(|&x| x as f32).collect(),
        },
    })
}

/// Mean undiscounted return of `episodes` episodes of `b` from reset seeds `seed..`.
pub fn score(env: &str, b: &Behaviour, episodes: usize, seed: u64) -> Result<f64> {
    let mut e = make(env)?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let (mut o, mut o2) = (Vec::new(), Vec::new());
    let mut total = 0.0;
    for k in 0..episodes {
        e.reset_into(Some(seed + k as u64), &mut o);
        loop {
            let of: Vec<f32> = o.iter().map(|&x| x as f32).collect();
            let (a, _) = b.act(&of, &mut rng);
            let out = e.step_into(a.as_action(), &mut o2)?;
            total += out.reward;
            std::mem::swap(&mut o, &mut o2);
            if out.terminated || out.truncated {
                break;
            }
        }
    }
    Ok(total / episodes as f64)
}

fn header(r: &Recipe, source: &str) -> Result<Header> {
    let env = make(r.env)?;
    let od = env.observation_space().dim();
    Ok(match env.action_space() {
        Space::Discrete { n } => Header {
            kind: "epsilon_greedy".into(),
            obs_dim: od,
            act_dim: 0,
            n_actions: *n,
            max_action: 0.0,
            epsilon: EPSILON,
            source: source.into(),
        },
        Space::Box { high, .. } => Header {
            kind: "tanh_gaussian".into(),
            obs_dim: od,
            act_dim: high.len(),
            n_actions: 0,
            max_action: high.first().copied().unwrap_or(1.0),
            epsilon: 0.0,
            source: source.into(),
        },
    })
}

fn build_algo(r: &Recipe) -> Result<(Box<dyn Algorithm>, Value)> {
    let env = make(r.env)?;
    let od = env.observation_space().dim();
    Ok(match (r.algo, env.action_space()) {
        ("sac", Space::Box { high, .. }) => {
            let cfg = SacConfig {
                hidden: vec![r.hidden, r.hidden],
                ..SacConfig::default()
            };
            let v = serde_json::to_value(&cfg)?;
            let spec = Spec::continuous(od, high.len(), high.first().copied().unwrap_or(1.0));
            (Box::new(Sac::new(spec, cfg, 0, &Device::Cpu)?), v)
        }
        ("dqn", Space::Discrete { n }) => {
            let cfg = DqnConfig {
                hidden: vec![r.hidden, r.hidden],
                lr: r.dqn.0,
                target_update_interval: r.dqn.1,
                ..DqnConfig::default()
            };
            let v = serde_json::to_value(&cfg)?;
            (
                Box::new(Dqn::new(Spec::discrete(od, *n), cfg, 0, &Device::Cpu)?),
                v,
            )
        }
        (a, _) => bail!("{}: `{a}` does not fit its action space", r.env),
    })
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Trains one environment's behaviour policies (see the module doc).
fn train(r: &Recipe, steps: usize) -> Result<()> {
    let dir = datasets_dir().join("policies");
    let work = crate::workspace_root()
        .join("target/behaviours")
        .join(stem(r.env));
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&work)?;
    let t = Instant::now();
    let (mut algo, algo_cfg) = build_algo(r)?;
    let mut env = make(r.env)?;
    let mut cfg = OnlineConfig {
        steps,
        batch_size: r.batch,
        ..OnlineConfig::default()
    };
    if r.algo == "dqn" {
        cfg.eps_end = r.dqn.2;
        cfg.eps_fraction = r.dqn.3;
    }
    let every = (steps / r.snapshots).max(1);
    let snap = |step: usize| work.join(format!("step{step:06}.safetensors"));
    // Resumable within the run: the loop checkpoints itself between episodes, and a rerun of
    // the same command continues from there (`OnlineCheckpoint`); a checkpoint of another
    // recipe is discarded.
    let ck = OnlineCheckpoint {
        path: work.join("online.safetensors"),
        every,
        fingerprint: serde_json::to_string(&json!({
            "env": r.env, "algo": r.algo, "config": algo_cfg, "steps": steps, "batch": r.batch,
            "online": format!("{cfg:?}"), "snapshot_every": every, "seed": 0,
        }))?,
    };
    let resumed_from = match orl_nets::checkpoint::load_arrays(&ck.path) {
        Ok((_, m)) if m.get("fingerprint") == Some(&ck.fingerprint) => m.get("step").cloned(),
        Ok(_) => {
            println!(
                "{}: discarding {} (another recipe)",
                r.env,
                ck.path.display()
            );
            remove_checkpoints(&work)?;
            None
        }
        Err(_) => None,
    };
    match &resumed_from {
        Some(s) => println!(
            "{}: resuming {} at step {s} of {steps} from {}",
            r.env,
            r.algo,
            ck.path.display()
        ),
        None => println!("{}: training {} for {} steps ...", r.env, r.algo, steps),
    }
    let report = train_online_resumable(&mut *algo, &mut *env, &cfg, 0, Some(&ck), |e| {
        if let OnlineEvent::Step { step, algo } = e
            && step % every == 0
        {
            algo.save(&snap(step), &Default::default())?;
        }
        Ok(())
    })?;
    let snaps: Vec<(usize, PathBuf)> = (1..=steps / every)
        .map(|i| (i * every, snap(i * every)))
        .collect();
    if let Some((step, p)) = snaps.iter().find(|s| !s.1.exists()) {
        bail!(
            "{}: snapshot of step {step} missing ({}); rerun with the checkpoint removed",
            r.env,
            p.display()
        );
    }
    let random = random_policy(r.env)?;
    let random_ret = score(r.env, &random, 100, 7_000_000)?;
    let mut scored = Vec::new();
    for (step, ck) in &snaps {
        let bp = ck.with_extension("behaviour.safetensors");
        behaviour_policy::save_from_checkpoint(ck, &bp, &header(r, &name(ck))?)?;
        let (b, _) = behaviour_policy::load(&bp)?;
        scored.push((*step, bp, score(r.env, &b, 10, 6_000_000)?));
    }
    // Expert: the best-scoring snapshot (for SAC on Pendulum the last ones; DQN's return
    // oscillates late in training, so "the end of training" would be a matter of luck).
    let (expert_step, expert_bp, expert_10) = scored
        .iter()
        .rev()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .cloned()
        .context("no snapshot")?;
    let target = random_ret + (expert_10 - random_ret) / 3.0;
    // Medium: closest to the target among the snapshots before the expert whose training buffer
    // (the future medium-replay) carries a reward signal. Without that filter Acrobot's DQN,
    // whose untrained greedy policy happened to score at the medium level at the first
    // snapshot, gave a medium-replay of 6 episodes that all hit the time limit with reward -1 on
    // every step: every action has the same value there, so no offline method can do better
    // than behaviour cloning. This is the one departure from D4RL's definition; it changes no
    // environment whose buffer at the closest snapshot already varies (all the others).
    let signal_from = report.buffer.first_reward_signal_row();
    let mut candidates = Vec::new();
    for s in scored.iter().filter(|s| s.0 < expert_step) {
        // The buffer's first `s.0` rows, as `prefix` cuts them.
        if signal_from.is_none_or(|i| s.0 <= i) {
            println!(
                "{}: snapshot {} skipped as medium: its buffer has no reward signal",
                r.env, s.0
            );
        } else {
            candidates.push(s.clone());
        }
    }
    let (medium_step, medium_bp, _) = candidates
        .into_iter()
        .min_by(|a, b| (a.2 - target).abs().total_cmp(&(b.2 - target).abs()))
        .with_context(|| {
            format!(
                "{}: no snapshot before the expert (step {expert_step}) has a training buffer \
                 with a reward signal; train longer or snapshot more often",
                r.env
            )
        })?;
    let s = stem(r.env);
    let medium_path = dir.join(format!("{s}-medium.safetensors"));
    let expert_path = dir.join(format!("{s}-expert.safetensors"));
    let replay_path = dir.join(format!("{s}-medium-replay.archive.parquet"));
    std::fs::copy(&medium_bp, &medium_path)?;
    std::fs::copy(&expert_bp, &expert_path)?;
    let buffer = prefix(&report.buffer, medium_step)?;
    crate::buffer_archive::write(&buffer, &replay_path)?;
    let medium_ret = score(
        r.env,
        &behaviour_policy::load(&medium_path)?.0,
        100,
        7_000_000,
    )?;
    let expert_ret = score(
        r.env,
        &behaviour_policy::load(&expert_path)?.0,
        100,
        7_000_000,
    )?;
    let record = json!({
        "env": r.env, "algo": r.algo, "config": algo_cfg, "seed": 0, "steps": steps, "snapshot_every": every,
        "online": {"start_steps": cfg.start_steps, "batch_size": cfg.batch_size, "gamma": cfg.gamma,
                   "eps_start": cfg.eps_start, "eps_end": cfg.eps_end, "eps_fraction": cfg.eps_fraction},
        "command": format!("cargo xtask train-behaviours --env {} --steps {steps}", r.env),
        "behaviour": if r.algo == "dqn" { format!("epsilon-greedy, epsilon {EPSILON}") } else { "stochastic tanh-Gaussian".into() },
        "random": {"return_100": random_ret},
        "medium": {"file": name(&medium_path), "step": medium_step, "return_100": medium_ret, "target_10": target},
        "expert": {"file": name(&expert_path), "step": expert_step, "return_100": expert_ret},
        "medium_replay": {"file": name(&replay_path), "transitions": buffer.len()},
        "snapshots": scored.iter().map(|(s, _, r)| json!({"step": s, "return_10": r})).collect::<Vec<_>>(),
        "training_episode_returns": report.episode_returns,
        "wall_s": t.elapsed().as_secs_f64(), "orl_version": env!("CARGO_PKG_VERSION"),
        "resumed_from_step": resumed_from.map(|s| s.parse::<usize>().unwrap_or_default()),
    });
    let rec = dir.join(format!("{s}.json"));
    crate::write_atomic(&rec, serde_json::to_string_pretty(&record)?.as_bytes())?;
    crate::gen_datasets::register_env(r.env, &record)?;
    remove_checkpoints(&work)?;
    println!(
        "{}: random {random_ret:.1}, medium {medium_ret:.1} (step {medium_step}), expert {expert_ret:.1} (step {expert_step}); {:.0} s",
        r.env,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes an online run's checkpoint files (`online.safetensors`, `online.algo-*`,
/// `online.buffer-*`) from `work`.
fn remove_checkpoints(work: &Path) -> Result<()> {
    for e in std::fs::read_dir(work)?.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with("online.") && (f.ends_with(".safetensors") || f.ends_with(".parquet")) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The first `n` rows of `ds` (the last episode may be cut, as in D4RL).
pub fn prefix(ds: &Dataset, n: usize) -> Result<Dataset> {
    let mut buf = orl_data::TransitionBuffer::from_dataset(ds);
    buf.truncate(n);
    Ok(buf.to_dataset()?)
}

/// Runs the task.
pub fn run(args: &[String]) -> Result<()> {
    let mut only: Option<String> = None;
    let mut force = false;
    let mut steps: Option<usize> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--env" => only = Some(it.next().context("--env needs a value")?.clone()),
            "--force" => force = true,
            "--steps" => steps = Some(it.next().context("--steps needs a value")?.parse()?),
            other => bail!("train-behaviours: unknown argument `{other}`"),
        }
    }
    let todo: Vec<&Recipe> = RECIPES
        .iter()
        .chain(LOCOMOTION.iter().filter(|_| orl_envs::MUJOCO_ENABLED))
        .filter(|r| only.as_deref().is_none_or(|o| o == "all" || o == r.env))
        .collect();
    if todo.is_empty() {
        bail!(
            "no recipe for `{}`; choose one of {}",
            only.unwrap_or_default(),
            RECIPES
                .iter()
                .chain(&LOCOMOTION)
                .map(|r| r.env)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for r in todo {
        let rec = datasets_dir()
            .join("policies")
            .join(format!("{}.json", stem(r.env)));
        if rec.exists() && !force {
            println!("{}: done ({}); --force retrains", r.env, rec.display());
            continue;
        }
        train(r, steps.unwrap_or(r.steps))?;
    }
    Ok(())
}
