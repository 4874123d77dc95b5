//! Online training with an environment loop, for the behaviour policies of dataset generation
//! (SAC for continuous actions, DQN for discrete ones). The replay buffer of the run is returned
//! as a [`Dataset`]: D4RL's "medium-replay" is exactly such a buffer.
//!
//! Loop: `start_steps` uniform random actions, then the algorithm's own exploration (SAC: a
//! sample of its policy; DQN: epsilon-greedy with epsilon decaying linearly from `eps_start` to
//! `eps_end` over `eps_fraction` of the run); one update per environment step on a uniform batch
//! from the buffer once `start_steps` are collected. Episode `k` is reset with `seed + k`.

use orl_data::{ActionSpace, Actions, Batch, Columns, Dataset, DatasetMeta, ObservationSpace};
use orl_envs::{Env, Space};
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

/// Trains `algo` online in `env` for `cfg.steps` steps, reporting episodes and steps to
/// `on_event` (an error from it stops the run).
pub fn train_online(
    algo: &mut dyn Algorithm,
    env: &mut dyn Env,
    cfg: &OnlineConfig,
    seed: u64,
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
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed ^ 0x000a_11ce);
    let (mut obs, mut next, mut cont, mut disc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rewards, mut terminals, mut timeouts) = (Vec::new(), Vec::new(), Vec::new());
    // log mu(a|s) of every action taken: the behaviour of this run, for off-policy evaluation.
    let mut logp: Vec<Option<f64>> = Vec::new();
    let mut episodes: Vec<(i64, usize)> = Vec::new();
    let mut returns = Vec::new();
    let (mut o, mut o2) = (Vec::new(), Vec::new());
    let mut batch = Batch::default();
    let (mut k, mut ep_len, mut ep_ret) = (0usize, 0usize, 0.0f64);
    env.reset_into(Some(seed), &mut o);
    for t in 0..cfg.steps {
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
                    Some(g) if rng.random::<f64>() >= eps => g,
                    _ => rng.random_range(0..n as i64),
                };
                let nf = n as f64;
                logp.push(Some(match greedy {
                    None => -nf.ln(),
                    Some(g) if g == a => (1.0 - eps + eps / nf).ln(),
                    Some(_) => (eps / nf).ln(),
                }));
                disc.push(a);
                orl_envs::OwnedAction::Discrete(a)
            }
            None => {
                let a: Vec<f32> = if random {
                    logp.push(Some(
                        -low.iter()
                            .zip(&high)
                            .map(|(&l, &h)| (h - l).ln())
                            .sum::<f64>(),
                    ));
                    low.iter()
                        .zip(&high)
                        .map(|(&l, &h)| rng.random_range(l as f32..h as f32))
                        .collect()
                } else {
                    let s =
                        candle_core::Tensor::from_slice(&o32, (1, od), &candle_core::Device::Cpu)?;
                    let a = algo.act(&s, false)?;
                    logp.push(
                        algo.log_prob(&s, &a)?
                            .map(|t| t.to_vec1::<f32>())
                            .transpose()?
                            .map(|v| f64::from(v[0])),
                    );
                    a.flatten_all()?.to_vec1()?
                };
                cont.extend_from_slice(&a);
                orl_envs::OwnedAction::Continuous(a)
            }
        };
        let out = env.step_into(action.as_action(), &mut o2)?;
        obs.extend_from_slice(&o32);
        next.extend(o2.iter().map(|&v| v as f32));
        rewards.push(out.reward as f32);
        terminals.push(out.terminated);
        timeouts.push(out.truncated && !out.terminated);
        ep_len += 1;
        ep_ret += out.reward;
        std::mem::swap(&mut o, &mut o2);
        if out.terminated || out.truncated {
            episodes.push((k as i64, ep_len));
            returns.push(ep_ret);
            on_event(OnlineEvent::Episode {
                k,
                step: t + 1,
                ret: ep_ret,
            })?;
            k += 1;
            ep_len = 0;
            ep_ret = 0.0;
            env.reset_into(Some(seed + k as u64), &mut o);
        }
        if t + 1 >= cfg.start_steps {
            sample(
                &mut batch,
                &mut rng,
                cfg,
                od,
                act_dim,
                discrete_n.is_some(),
                (&obs, &next, &cont, &disc, &rewards, &terminals, &timeouts),
            );
            algo.update(&batch)?;
        }
        on_event(OnlineEvent::Step {
            step: t + 1,
            algo: &*algo,
        })?;
    }
    if ep_len > 0 {
        episodes.push((k as i64, ep_len));
    }
    let act_space = match discrete_n {
        Some(n) => ActionSpace::Discrete { n },
        None => ActionSpace::Continuous {
            dim: act_dim,
            low: Some(low),
            high: Some(high),
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
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions: match discrete_n {
            Some(_) => Actions::Discrete(disc),
            None => Actions::Continuous {
                dim: act_dim,
                values: cont,
            },
        },
        rewards,
        terminals,
        timeouts,
        behavior_log_prob: logp.iter().copied().collect::<Option<Vec<f64>>>(),
    };
    let buffer = Dataset::new(meta, cols, &episodes)
        .map_err(|e| AlgoError::Config(format!("replay buffer: {e}")))?;
    Ok(OnlineReport {
        episode_returns: returns,
        buffer,
    })
}

type Buffers<'a> = (
    &'a [f32],
    &'a [f32],
    &'a [f32],
    &'a [i64],
    &'a [f32],
    &'a [bool],
    &'a [bool],
);

/// A uniform batch from the buffer so far.
#[allow(clippy::too_many_arguments)]
fn sample(
    batch: &mut Batch,
    rng: &mut rand_pcg::Pcg64Mcg,
    cfg: &OnlineConfig,
    od: usize,
    ad: usize,
    discrete: bool,
    (obs, next, cont, disc, rewards, terminals, timeouts): Buffers<'_>,
) {
    let n = rewards.len();
    let b = cfg.batch_size;
    batch.batch_size = b;
    batch.obs_dim = od;
    batch.act_dim = ad;
    for v in [
        &mut batch.observations,
        &mut batch.next_observations,
        &mut batch.actions,
        &mut batch.rewards,
        &mut batch.terminals,
        &mut batch.timeouts,
        &mut batch.discounts,
    ] {
        v.clear();
    }
    batch.discrete_actions.clear();
    batch.indices.clear();
    for _ in 0..b {
        let i = rng.random_range(0..n);
        batch.indices.push(i);
        batch
            .observations
            .extend_from_slice(&obs[i * od..(i + 1) * od]);
        batch
            .next_observations
            .extend_from_slice(&next[i * od..(i + 1) * od]);
        if discrete {
            batch.discrete_actions.push(disc[i]);
            batch.actions.push(disc[i] as f32);
        } else {
            batch.actions.extend_from_slice(&cont[i * ad..(i + 1) * ad]);
        }
        batch.rewards.push(rewards[i]);
        batch.terminals.push(if terminals[i] { 1.0 } else { 0.0 });
        batch.timeouts.push(if timeouts[i] { 1.0 } else { 0.0 });
        batch.discounts.push(cfg.gamma);
    }
}
