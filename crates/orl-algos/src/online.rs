//! Online training with an environment loop, for the behaviour policies of dataset generation
//! (SAC for continuous actions, DQN for discrete ones). The replay buffer of the run is returned
//! as a [`Dataset`]: D4RL's "medium-replay" is exactly such a buffer.
//!
//! Loop: `start_steps` uniform random actions, then the algorithm's own exploration (SAC: a
//! sample of its policy; DQN: epsilon-greedy with epsilon decaying linearly from `eps_start` to
//! `eps_end` over `eps_fraction` of the run); one update per environment step on a uniform batch
//! from the buffer once `start_steps` are collected. Episode `k` is reset with `seed + k`.
//!
//! Resumable ([`train_online_resumable`]): at the first episode end after every
//! [`OnlineCheckpoint::every`] steps the run writes its whole state (the algorithm's checkpoint,
//! the buffer, the counters and the sampling RNG); a later call with the same checkpoint
//! continues from there. Because a checkpoint falls between episodes, and episode `k` always
//! starts from the reset with `seed + k`, the environment needs no saved state, and an
//! interrupted and resumed run ends bit for bit as an uninterrupted one (same machine).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use orl_data::{
    ActionSpace, Batch, Dataset, DatasetMeta, ObservationSpace, Transition, TransitionAction,
    TransitionBuffer,
};
use orl_envs::{Env, Space};
use orl_nets::checkpoint::{Array, load_arrays, save_arrays};
use rand::{RngExt, SeedableRng};

use crate::common::Algorithm;
use crate::error::{AlgoError, Result};

/// Online loop settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineConfig {
    /// Environment steps.
    pub steps: usize,
    /// Uniform random actions before learning starts.
    pub start_steps: usize,
    /// Batch size of each update.
    pub batch_size: usize,
    /// Discount.
    pub gamma: f32,
    /// Discrete: initial epsilon.
    pub eps_start: f64,
    /// Discrete: final epsilon.
    pub eps_end: f64,
    /// Discrete: fraction of the run over which epsilon decays.
    pub eps_fraction: f64,
}

impl Default for OnlineConfig {
    /// Stable-Baselines3 / rl-zoo defaults for the classic tasks: 1000 random steps, batch 256,
    /// gamma 0.99; DQN epsilon 1 -> 0.05 over the first 10% (SB3 `DQN` defaults).
    fn default() -> Self {
        Self {
            steps: 50_000,
            start_steps: 1000,
            batch_size: 256,
            gamma: 0.99,
            eps_start: 1.0,
            eps_end: 0.05,
            eps_fraction: 0.1,
        }
    }
}

/// What an online run produced.
#[derive(Debug, Clone)]
pub struct OnlineReport {
    /// Undiscounted return of every finished episode, in order.
    pub episode_returns: Vec<f64>,
    /// The whole replay buffer as a dataset (the last episode may be unfinished).
    pub buffer: Dataset,
}

/// What [`train_online`] reports to its caller while it runs.
pub enum OnlineEvent<'a> {
    /// Episode `k` finished after `step` environment steps in total, with `ret`.
    Episode {
        /// Episode index.
        k: usize,
        /// Environment steps so far.
        step: usize,
        /// Undiscounted return.
        ret: f64,
    },
    /// `step` environment steps are done (called after every step; snapshot the policy here).
    Step {
        /// Environment steps so far.
        step: usize,
        /// The algorithm, to save or evaluate.
        algo: &'a dyn Algorithm,
    },
}

/// Where and how often an online run checkpoints itself (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineCheckpoint {
    /// The run's state file (safetensors: buffer, counters, RNG); the algorithm's own
    /// checkpoint is written beside it as `<stem>.algo-<step>.safetensors`.
    pub path: PathBuf,
    /// Environment steps between checkpoints (one is written at the first episode end after).
    pub every: usize,
    /// Identifies the run (e.g. its recipe as JSON): a checkpoint written under another
    /// fingerprint is refused rather than continued.
    pub fingerprint: String,
}

impl OnlineCheckpoint {
    fn algo_path(&self, step: usize) -> PathBuf {
        self.side_path("algo", step, "safetensors")
    }
    /// `<stem>.<what>-<step>.<ext>` beside the state file.
    fn side_path(&self, what: &str, step: usize, ext: &str) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.path
            .with_file_name(format!("{stem}.{what}-{step:09}.{ext}"))
    }
}

/// Trains `algo` online in `env` for `cfg.steps` steps, reporting episodes and steps to
/// `on_event` (an error from it stops the run).
pub fn train_online(
    algo: &mut dyn Algorithm,
    env: &mut dyn Env,
    cfg: &OnlineConfig,
    seed: u64,
    on_event: impl FnMut(OnlineEvent<'_>) -> Result<()>,
) -> Result<OnlineReport> {
    train_online_resumable(algo, env, cfg, seed, None, on_event)
}

/// [`train_online`] with checkpoints: when `ck.path` exists the run continues from it (events
/// before the checkpoint are not reported again), otherwise it starts afresh and writes one at
/// the first episode end after every `ck.every` steps. The checkpoint files stay after the run
/// (the caller removes them once it has stored what it needs).
pub fn train_online_resumable(
    algo: &mut dyn Algorithm,
    env: &mut dyn Env,
    cfg: &OnlineConfig,
    seed: u64,
    ck: Option<&OnlineCheckpoint>,
    mut on_event: impl FnMut(OnlineEvent<'_>) -> Result<()>,
) -> Result<OnlineReport> {
    let od = env.observation_space().dim();
    let (discrete_n, act_dim, low, high) = match env.action_space() {
        Space::Discrete { n } => (Some(*n), 1, vec![], vec![]),
        Space::Box { low, high, .. } => (None, low.len(), low.clone(), high.clone()),
    };
    if algo.spec().obs_dim != od || algo.spec().is_discrete() != discrete_n.is_some() {
        return Err(AlgoError::Config(format!(
            "{} was built for other spaces than {}",
            algo.name(),
            env.id()
        )));
    }
    let (mut o, mut o2) = (Vec::new(), Vec::new());
    let mut batch = Batch::default();
    let mut ep_ret = 0.0f64;
    let act_space = match discrete_n {
        Some(n) => ActionSpace::Discrete { n },
        None => ActionSpace::Continuous {
            dim: act_dim,
            low: Some(low.clone()),
            high: Some(high.clone()),
        },
    };
    let mut meta = DatasetMeta::new(
        ObservationSpace {
            dim: od,
            low: None,
            high: None,
        },
        act_space,
    );
    meta.env_id = Some(env.id().to_string());
    meta.seed = Some(seed as i64);
    meta.max_episode_steps = env.max_episode_steps().map(|m| m as u64);
    meta.generator_policy = Some(format!("{} online training buffer", algo.name()));
    let mut st = match ck.filter(|c| c.path.exists()) {
        Some(ck) => OnlineState::load(ck, algo, env.id(), seed, &meta)?,
        None => OnlineState::new(seed, TransitionBuffer::new(meta)),
    };
    let t0 = st.t;
    let mut last_ck = t0;
    env.reset_into(Some(seed + st.k as u64), &mut o);
    let mut next32: Vec<f32> = Vec::new();
    for t in t0..cfg.steps {
        let o32: Vec<f32> = o.iter().map(|&v| v as f32).collect();
        let random = t < cfg.start_steps;
        let action = match discrete_n {
            Some(n) => {
                let frac = (t as f64 / (cfg.eps_fraction * cfg.steps as f64).max(1.0)).min(1.0);
                let eps = cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start);
                let greedy = if random {
                    None
                } else {
                    let s =
                        candle_core::Tensor::from_slice(&o32, (1, od), &candle_core::Device::Cpu)?;
                    Some(i64::from(
                        algo.act(&s, true)?
                            .to_dtype(candle_core::DType::U32)?
                            .to_vec1::<u32>()?[0],
                    ))
                };
                let a = match greedy {
                    Some(g) if st.rng.random::<f64>() >= eps => g,
                    _ => st.rng.random_range(0..n as i64),
                };
                let nf = n as f64;
                let lp = match greedy {
                    None => -nf.ln(),
                    Some(g) if g == a => (1.0 - eps + eps / nf).ln(),
                    Some(_) => (eps / nf).ln(),
                };
                (orl_envs::OwnedAction::Discrete(a), Some(lp))
            }
            None => {
                if random {
                    let lp = -low
                        .iter()
                        .zip(&high)
                        .map(|(&l, &h)| (h - l).ln())
                        .sum::<f64>();
                    let a = low
                        .iter()
                        .zip(&high)
                        .map(|(&l, &h)| st.rng.random_range(l as f32..h as f32))
                        .collect();
                    (orl_envs::OwnedAction::Continuous(a), Some(lp))
                } else {
                    let s =
                        candle_core::Tensor::from_slice(&o32, (1, od), &candle_core::Device::Cpu)?;
                    let (a, lp) = algo.act_with_log_prob(&s)?;
                    let lp = lp
                        .map(|t| t.to_vec1::<f32>())
                        .transpose()?
                        .map(|v| f64::from(v[0]));
                    (
                        orl_envs::OwnedAction::Continuous(a.flatten_all()?.to_vec1()?),
                        lp,
                    )
                }
            }
        };
        let (action, log_prob) = action;
        let out = env.step_into(action.as_action(), &mut o2)?;
        next32.clear();
        next32.extend(o2.iter().map(|&v| v as f32));
        st.buf.push(Transition {
            observation: &o32,
            action: match &action {
                orl_envs::OwnedAction::Discrete(i) => TransitionAction::Discrete(*i),
                orl_envs::OwnedAction::Continuous(v) => TransitionAction::Continuous(v),
            },
            reward: out.reward as f32,
            next_observation: &next32,
            terminal: out.terminated,
            timeout: out.truncated,
            log_prob,
        })?;
        ep_ret += out.reward;
        std::mem::swap(&mut o, &mut o2);
        let episode_end = out.terminated || out.truncated;
        if episode_end {
            st.buf.end_episode();
            st.returns.push(ep_ret);
            on_event(OnlineEvent::Episode {
                k: st.k,
                step: t + 1,
                ret: ep_ret,
            })?;
            st.k += 1;
            ep_ret = 0.0;
            env.reset_into(Some(seed + st.k as u64), &mut o);
        }
        if t + 1 >= cfg.start_steps {
            st.buf
                .sample_uniform_into(&mut batch, cfg.batch_size, cfg.gamma, &mut st.rng);
            algo.update(&batch)?;
        }
        on_event(OnlineEvent::Step {
            step: t + 1,
            algo: &*algo,
        })?;
        if let Some(ck) = ck
            && episode_end
            && t + 1 - last_ck >= ck.every.max(1)
            && t + 1 < cfg.steps
        {
            st.t = t + 1;
            st.save(ck, &*algo, env.id(), seed)?;
            last_ck = t + 1;
        }
    }
    // An unfinished last episode stays in the buffer, unterminated.
    let buffer = st.buf.to_dataset()?;
    Ok(OnlineReport {
        episode_returns: st.returns,
        buffer,
    })
}

/// Everything an online run needs to continue at an episode boundary.
struct OnlineState {
    t: usize,
    k: usize,
    rng: rand_pcg::Pcg64Mcg,
    buf: TransitionBuffer,
    returns: Vec<f64>,
}

fn ck_err(path: &Path, what: impl std::fmt::Display) -> AlgoError {
    AlgoError::checkpoint(path, what.to_string())
}

impl OnlineState {
    /// A fresh run: empty buffer, the sampling RNG seeded from `seed`.
    fn new(seed: u64, buf: TransitionBuffer) -> Self {
        Self {
            t: 0,
            k: 0,
            rng: rand_pcg::Pcg64Mcg::seed_from_u64(seed ^ 0x000a_11ce),
            buf,
            returns: Vec::new(),
        }
    }

    /// Writes the state at step `self.t` (an episode boundary) and the algorithm beside it.
    fn save(
        &self,
        ck: &OnlineCheckpoint,
        algo: &dyn Algorithm,
        env_id: &str,
        seed: u64,
    ) -> Result<()> {
        let (t, k) = (self.t, self.k);
        // The algorithm's file first, under a name of its own: a crash between the two writes
        // leaves the previous state file pointing at the previous (still present) algorithm file.
        let algo_path = ck.algo_path(t);
        algo.save(&algo_path, &HashMap::new())?;
        let buffer_path = ck.side_path("buffer", t, "parquet");
        self.buf.save(&buffer_path)?;
        let arrays = vec![(
            "episode_returns".to_string(),
            Array::F64(self.returns.clone()),
        )];
        let buffer_file = buffer_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let algo_file = algo_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = HashMap::from([
            ("fingerprint".to_string(), ck.fingerprint.clone()),
            ("env".to_string(), env_id.to_string()),
            ("seed".to_string(), seed.to_string()),
            ("step".to_string(), t.to_string()),
            ("episode".to_string(), k.to_string()),
            ("algo_steps".to_string(), algo.steps().to_string()),
            ("algo_file".to_string(), algo_file.clone()),
            ("buffer_file".to_string(), buffer_file.clone()),
            (
                "rng".to_string(),
                serde_json::to_string(&self.rng).map_err(|e| ck_err(&ck.path, e))?,
            ),
            (
                "orl_version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]);
        save_arrays(&ck.path, &arrays, &meta)?;
        // Now that the state names the new files, older ones are garbage.
        remove_older(&algo_path, &algo_file, ".algo-")?;
        remove_older(&buffer_path, &buffer_file, ".buffer-")?;
        Ok(())
    }

    fn load(
        ck: &OnlineCheckpoint,
        algo: &mut dyn Algorithm,
        env_id: &str,
        seed: u64,
        want: &DatasetMeta,
    ) -> Result<Self> {
        let p = &ck.path;
        let (mut arrays, meta) = load_arrays(p)?;
        let get = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| ck_err(p, format!("no `{key}` in the metadata")))
        };
        for (key, want) in [
            ("fingerprint", ck.fingerprint.clone()),
            ("env", env_id.to_string()),
            ("seed", seed.to_string()),
        ] {
            let got = get(key)?;
            if got != want {
                return Err(ck_err(
                    p,
                    format!(
                        "written by another run (`{key}` is {got}, this run's is {want}); delete it to start afresh"
                    ),
                ));
            }
        }
        let num = |key: &str| -> Result<usize> {
            get(key)?
                .parse()
                .map_err(|_| ck_err(p, format!("`{key}` is not a count")))
        };
        let (t, k, algo_steps) = (num("step")?, num("episode")?, num("algo_steps")?);
        algo.load(&p.with_file_name(get("algo_file")?))?;
        if algo.steps() != algo_steps {
            return Err(ck_err(
                p,
                format!(
                    "its algorithm file holds {} updates, the state expects {algo_steps}",
                    algo.steps()
                ),
            ));
        }
        let rng = serde_json::from_str(&get("rng")?)
            .map_err(|e| ck_err(p, format!("bad RNG state: {e}")))?;
        let returns = match arrays.remove("episode_returns") {
            Some(Array::F64(v)) => v,
            Some(_) => return Err(ck_err(p, "array `episode_returns` has the wrong dtype")),
            None => return Err(ck_err(p, "no array `episode_returns`")),
        };
        let buf = TransitionBuffer::load(&p.with_file_name(get("buffer_file")?))?;
        let spaces_match = buf.meta().observation_space.dim == want.observation_space.dim
            && buf.meta().action_space == want.action_space;
        if !spaces_match || buf.len() != t || buf.num_episodes() != k || returns.len() != k {
            return Err(ck_err(
                p,
                "its buffer disagrees with its spaces, step and episode counts",
            ));
        }
        Ok(Self {
            t,
            k,
            rng,
            buf,
            returns,
        })
    }
}

/// Removes the files beside `path` named like `keep` up to `marker` but not `keep` itself.
fn remove_older(path: &Path, keep: &str, marker: &str) -> Result<()> {
    let prefix = keep.split(marker).next().unwrap_or_default().to_string() + marker;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with(&prefix) && f != keep {
                std::fs::remove_file(e.path())
                    .map_err(|err| ck_err(&e.path(), format!("cannot remove: {err}")))?;
            }
        }
    }
    Ok(())
}
