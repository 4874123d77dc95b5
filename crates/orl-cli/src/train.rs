//! `orl train`: train an algorithm on a dataset, with metrics, diagnostics, evaluation,
//! atomic checkpoints, `--resume` and a divergence guard.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use orl_algos::{
    AlgoError, AlgoKind, Algorithm, Metrics, Spec, build, diagnose, normalize_observations,
    probe_rows, returns_to_go,
};
use orl_data::{ActionSpace, Batch, Dataset, Replay, ReplayConfig, RewardTransform};
use orl_envs::{EvalConfig, RefScores};
use orl_nets::Device;
use serde_json::{Value, json};

use crate::agent_io::{DATASET, ENV_ID, OBS_NORM, REF_SCORES};
use crate::run_dir::{RunDir, atomic_write, read_rows, write_rows};

/// Arguments of `orl train`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Algorithm: cql, iql, bcq, td3bc or bc.
    #[arg(long)]
    pub algo: String,
    /// Dataset (orl Parquet file or folder).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Gradient updates.
    #[arg(long, default_value_t = 100_000)]
    pub steps: usize,
    /// Seed of initialisation, sampling and noise.
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
    /// Discount.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f32,
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
    /// Write a checkpoint every K updates (and at the end).
    #[arg(long, default_value_t = 10_000)]
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

/// The action spec of a dataset: continuous boxes must be symmetric (`max_action` is the largest
/// bound; unknown bounds mean 1).
pub fn spec_of(ds: &Dataset) -> Result<Spec> {
    let od = ds.obs_dim();
    Ok(match &ds.meta().action_space {
        ActionSpace::Discrete { n } => Spec::discrete(od, *n),
        ActionSpace::Continuous { dim, low, high } => {
            let m = high
                .iter()
                .chain(low.iter())
                .flatten()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let m = if m > 0.0 && m.is_finite() { m } else { 1.0 };
            Spec::continuous(od, *dim, m)
        }
    })
}

/// The replay seed at checkpoint boundary `step`: the sampling stream restarts there, so a
/// resumed run draws exactly the batches an uninterrupted one does.
fn replay_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step as u64)
        .rotate_left(17)
        ^ 0x5851_F42D_4C95_7F2D
}

fn algo_config(args: &Args) -> Result<Option<Value>> {
    let Some(p) = &args.config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let v: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", p.display()))?;
    Ok(Some(serde_json::to_value(v)?))
}

/// Runs `orl train`.
pub fn run(args: &Args) -> Result<()> {
    let kind: AlgoKind = args.algo.parse()?;
    let ds = Dataset::open(&args.dataset)
        .with_context(|| format!("opening {}", args.dataset.display()))?;
    let spec = spec_of(&ds)?;
    if spec.is_discrete() && !kind.supports_discrete() {
        bail!(
            "{} needs continuous actions; {} has discrete ones",
            kind.name(),
            args.dataset.display()
        );
    }
    let normalize = args.normalize_obs.unwrap_or(kind.normalizes_observations());
    let horizon = match args
        .eval_env
        .as_deref()
        .or(ds.meta().env_id.as_deref())
        .and_then(|id| orl_envs::spec(id).ok())
    {
        Some(spec) => spec.max_episode_steps,
        None => ds
            .episode_lengths_with_ids()
            .iter()
            .map(|e| e.1)
            .max()
            .unwrap_or(1000),
    };
    let reward_transform = match args.reward_transform.as_str() {
        "auto" => kind.reward_transform(&ds, horizon),
        "none" => RewardTransform::None,
        "return-range" => RewardTransform::ReturnRange {
            max_episode_steps: horizon as f32,
        },
        other => bail!("--reward-transform: `{other}` is not `auto`, `none` or `return-range`"),
    };
    let rcfg = ReplayConfig {
        normalize_observations: normalize,
        gamma: args.gamma,
        reward_transform,
        ..ReplayConfig::default()
    };
    let batch_size = args.batch_size.unwrap_or(kind.default_batch_size());
    let config = algo_config(args)?;
    let mut algo = build(kind, spec.clone(), config.as_ref(), args.seed, &Device::Cpu)?;
    let run = RunDir::new(&args.out);
    let env_id = args.eval_env.clone().or(ds.meta().env_id.clone());
    let refs = match (ds.meta().ref_min_score, ds.meta().ref_max_score) {
        (Some(min), Some(max)) => Some(RefScores { min, max }),
        _ => env_id.as_deref().and_then(RefScores::d4rl),
    };
    let record = json!({
        "algo": kind.name(),
        "config": serde_json::from_str::<Value>(&algo.config_json())?,
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": batch_size,
        "dataset": args.dataset.display().to_string(),
        "dataset_sha256": ds.meta().provenance.source_sha256,
        "env_id": env_id,
        "replay": {"normalize_observations": normalize, "gamma": args.gamma, "reward_transform": args.reward_transform, "reward_transform_in_effect": format!("{reward_transform:?}")},
        "eval": {"env": args.eval_env, "every": args.eval_every, "episodes": args.eval_episodes},
        "orl_version": env!("CARGO_PKG_VERSION"),
        "device": "cpu",
    });
    let mut replay = Replay::new(ds, rcfg, replay_seed(args.seed, 0))?;
    let obs_norm = replay.obs_stats().map(|s| (s.mean.clone(), s.std.clone()));
    let mut rows = Vec::new();
    if args.resume {
        let ck = run.checkpoint();
        if !ck.exists() {
            bail!("--resume: {} has no checkpoint", ck.display());
        }
        let old: Value = serde_json::from_slice(
            &std::fs::read(run.run_json())
                .with_context(|| format!("reading {}", run.run_json().display()))?,
        )?;
        for k in ["algo", "config", "seed", "batch_size", "replay"] {
            if old[k] != record[k] {
                bail!(
                    "--resume: `{k}` differs from the run in {} ({} vs {})",
                    run.root.display(),
                    old[k],
                    record[k]
                );
            }
        }
        algo.load(&ck)?;
        rows = read_rows(&run.metrics_jsonl())?;
        rows.retain(|r| {
            r.get("step")
                .and_then(Value::as_u64)
                .is_some_and(|s| s as usize <= algo.steps())
        });
        replay.reseed(replay_seed(args.seed, algo.steps()));
        eprintln!("resuming {} at update {}", run.root.display(), algo.steps());
    } else {
        if run.checkpoint().exists() {
            bail!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                run.root.display()
            );
        }
        atomic_write(
            &run.run_json(),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
    }
    let mut extra = HashMap::new();
    if let Some(n) = &obs_norm {
        extra.insert(OBS_NORM.to_string(), serde_json::to_string(n)?);
    }
    extra.insert(DATASET.to_string(), args.dataset.display().to_string());
    if let Some(e) = &env_id {
        extra.insert(ENV_ID.to_string(), e.clone());
    }
    if let Some(r) = refs {
        extra.insert(
            REF_SCORES.to_string(),
            serde_json::to_string(&[r.min, r.max])?,
        );
    }
    if !args.resume {
        // A first checkpoint before any update, so that a divergence always leaves a good one.
        algo.save(&run.checkpoint(), &extra)?;
    }
    write_status(&run, "running", "")?;

    let (rtg, truncated) = {
        let (scale, shift) = (replay.reward_scale(), replay.reward_shift());
        returns_to_go(replay.dataset(), f64::from(args.gamma), |r| {
            f64::from(r * scale + shift)
        })
    };
    let probe = probe_rows(replay.dataset().len(), 1000);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} updates {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(algo.steps() as u64);
    let mut batch = Batch::default();
    let mut window: Vec<Metrics> = Vec::new();
    let mut t_window = Instant::now();
    let start = Instant::now();
    while algo.steps() < args.steps {
        let step = algo.steps();
        if step > 0 && step % args.checkpoint_every.max(1) == 0 {
            replay.reseed(replay_seed(args.seed, step));
        }
        replay.sample_into(&mut batch, batch_size);
        match algo.update(&batch) {
            Ok(m) => window.push(m),
            Err(AlgoError::Diverged { step, name, value }) => {
                bar.abandon();
                let msg = format!(
                    "training diverged at update {step}: {name} = {value}. The last good checkpoint ({}) is kept.",
                    run.checkpoint().display()
                );
                write_status(&run, "diverged", &msg)?;
                bail!(msg);
            }
            Err(e) => return Err(e.into()),
        }
        bar.inc(1);
        let done = algo.steps();
        let last = done == args.steps;
        if done % args.log_every.max(1) == 0 || last {
            let mut row = average(&window);
            let secs = t_window.elapsed().as_secs_f64();
            row.insert(
                "updates_per_s".into(),
                json!(window.len() as f64 / secs.max(1e-9)),
            );
            row.insert("wall_s".into(), json!(start.elapsed().as_secs_f64()));
            row.insert("step".into(), json!(done));
            let stats = obs_norm.clone();
            let norm = move |o: &[f32]| normalize_observations(o, stats.as_ref());
            let d = diagnose(
                &mut *algo,
                replay.dataset(),
                &probe,
                &norm,
                &rtg,
                &truncated,
            )?;
            row.insert("diag_q_mean".into(), json!(d.q_mean));
            row.insert("diag_return_mean".into(), json!(d.return_mean));
            row.insert(
                "diag_overestimation_ratio".into(),
                json!(d.overestimation_ratio),
            );
            row.insert("diag_action_divergence".into(), json!(d.action_divergence));
            row.insert(
                "diag_data_log_likelihood".into(),
                json!(d.data_log_likelihood),
            );
            if let Some(env) = &args.eval_env
                && (done % args.eval_every.max(1) == 0 || last)
            {
                let (mean, std, norm_mean) = evaluate(
                    &mut *algo,
                    obs_norm.clone(),
                    env,
                    args.eval_episodes,
                    args.seed,
                    refs,
                )?;
                row.insert("eval_return".into(), json!(mean));
                row.insert("eval_return_std".into(), json!(std));
                row.insert("eval_normalized".into(), json!(norm_mean));
                bar.set_message(format!("return {mean:.1}"));
            }
            rows.push(row);
            write_rows(&run.metrics_jsonl(), &run.metrics_csv(), &rows)?;
            window.clear();
            t_window = Instant::now();
        }
        if done % args.checkpoint_every.max(1) == 0 || last {
            algo.save(&run.checkpoint(), &extra)?;
        }
    }
    bar.finish();
    write_status(&run, "finished", "")?;
    if let Some(r) = rows.last() {
        println!("{}", serde_json::to_string(r)?);
    }
    Ok(())
}

fn average(window: &[Metrics]) -> serde_json::Map<String, Value> {
    let mut sums: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for m in window {
        for (k, v) in m {
            let e = sums.entry(k.as_str()).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k.to_string(), json!(s / n as f64)))
        .collect()
}

/// Evaluates the current policy (deterministic) on `env`: `(mean, std, normalised mean)`.
fn evaluate(
    algo: &mut dyn Algorithm,
    obs_norm: Option<(Vec<f32>, Vec<f32>)>,
    env: &str,
    episodes: usize,
    seed: u64,
    refs: Option<RefScores>,
) -> Result<(f64, f64, Option<f64>)> {
    let mut e = orl_envs::make(env)?;
    let mut policy = AlgoPolicy { algo, obs_norm };
    let cfg = EvalConfig {
        episodes,
        seed: 1_000_000 + seed,
        threads: 1,
        reference: refs,
    };
    let returns: Vec<f64> = (0..episodes)
        .map(|i| orl_envs::run_episode(&mut e, &mut policy, cfg.seed + i as u64, i).map(|r| r.0))
        .collect::<std::result::Result<_, _>>()?;
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let std = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok((mean, std, refs.map(|r| r.normalize(mean))))
}

/// A borrowed algorithm acting on raw observations (normalised here).
struct AlgoPolicy<'a> {
    algo: &'a mut dyn Algorithm,
    obs_norm: Option<(Vec<f32>, Vec<f32>)>,
}

impl orl_envs::Policy for AlgoPolicy<'_> {
    fn act(
        &mut self,
        o: &[f32],
    ) -> std::result::Result<orl_envs::OwnedAction, Box<dyn std::error::Error + Send + Sync>> {
        let x = normalize_observations(o, self.obs_norm.as_ref());
        let s = orl_nets::Tensor::from_vec(x, (1, o.len()), &Device::Cpu)?;
        let a = self.algo.act(&s, true)?;
        Ok(if self.algo.spec().is_discrete() {
            orl_envs::OwnedAction::Discrete(i64::from(
                a.to_dtype(orl_nets::DType::U32)?.to_vec1::<u32>()?[0],
            ))
        } else {
            orl_envs::OwnedAction::Continuous(a.flatten_all()?.to_vec1::<f32>()?)
        })
    }
}

fn write_status(run: &RunDir, status: &str, message: &str) -> Result<()> {
    atomic_write(
        &run.status(),
        serde_json::to_string_pretty(&json!({"status": status, "message": message}))?.as_bytes(),
    )
}
