//! The logged data as the estimators see it, and the queries made of the evaluated policy
//! (log-probabilities of logged actions, sampled actions, action probabilities), in chunks.

use candle_core::{DType, Device, Tensor};
use orl_data::{Actions, Dataset};
use orl_nets::Policy;

use crate::error::{OpeError, Result};

/// Rows per policy call.
const CHUNK: usize = 4096;

/// The action space of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Continuous, `dim` floats.
    Continuous(usize),
    /// Discrete, `n` actions.
    Discrete(usize),
}

/// A dataset's transitions in the layout the estimators use, with the episodes kept for
/// estimation (those that end with a terminal or a time limit; an episode cut by the end of the
/// file is left out of the importance-sampling family, as its return is incomplete).
#[derive(Debug, Clone)]
pub struct Logged {
    /// Observation width.
    pub obs_dim: usize,
    /// Action space.
    pub kind: ActionKind,
    /// `[N * obs_dim]`.
    pub obs: Vec<f32>,
    /// `[N * obs_dim]`.
    pub next_obs: Vec<f32>,
    /// `[N * act_dim]` (continuous) or empty.
    pub act_f32: Vec<f32>,
    /// `[N]` (discrete) or empty.
    pub act_u32: Vec<u32>,
    /// `[N]`.
    pub rewards: Vec<f64>,
    /// `[N]` MDP termination.
    pub terminals: Vec<bool>,
    /// `[N]` the episode was cut by its time limit after this row.
    pub timeouts: Vec<bool>,
    /// `[N]` the row's step within its episode (0 for the first).
    pub steps: Vec<u32>,
    /// The time limit `T` every estimator values up to: the dataset's `max_episode_steps`,
    /// else its longest episode.
    pub horizon: usize,
    /// `[N]` logged `log mu(a|s)`, if the dataset has the column.
    pub behavior_log_prob: Option<Vec<f64>>,
    /// Row ranges of the kept episodes.
    pub episodes: Vec<std::ops::Range<usize>>,
    /// Episodes left out because the file cut them.
    pub dropped_episodes: usize,
}

impl Logged {
    /// Reads `ds`; fails on an empty dataset or non-finite values.
    pub fn from_dataset(ds: &Dataset) -> Result<Self> {
        if ds.is_empty() {
            return Err(OpeError::Data("the dataset has no transition".into()));
        }
        let c = ds.columns();
        let (kind, act_f32, act_u32) = match &c.actions {
            Actions::Continuous { dim, values } => {
                (ActionKind::Continuous(*dim), values.clone(), Vec::new())
            }
            Actions::Discrete(v) => {
                let n = match ds.meta().action_space {
                    orl_data::ActionSpace::Discrete { n } => n,
                    _ => (v.iter().copied().max().unwrap_or(0) + 1) as usize,
                };
                let a = v
                    .iter()
                    .map(|&x| {
                        u32::try_from(x).map_err(|_| {
                            OpeError::Data(format!("column `actions`: negative action {x}"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                (ActionKind::Discrete(n), Vec::new(), a)
            }
        };
        let check = |name: &str, v: &[f32]| -> Result<()> {
            match v.iter().position(|x| !x.is_finite()) {
                Some(i) => Err(OpeError::Data(format!(
                    "column `{name}`: non-finite value {} at element {i}",
                    v[i]
                ))),
                None => Ok(()),
            }
        };
        check("observations", &c.observations)?;
        check("next_observations", &c.next_observations)?;
        check("rewards", &c.rewards)?;
        check("actions", &act_f32)?;
        if let Some(lp) = &c.behavior_log_prob
            && let Some(i) = lp.iter().position(|x| x.is_nan() || *x == f64::INFINITY)
        {
            return Err(OpeError::Data(format!(
                "column `behavior_log_prob`: invalid value {} at row {i}",
                lp[i]
            )));
        }
        let mut steps = vec![0u32; ds.len()];
        for e in ds.episodes() {
            for (t, i) in e.rows.clone().enumerate() {
                steps[i] = t as u32;
            }
        }
        let longest = ds.episodes().map(|e| e.rows.len()).max().unwrap_or(1);
        let horizon = ds
            .meta()
            .max_episode_steps
            .map_or(longest, |m| (m as usize).max(longest))
            .max(1);
        let mut episodes = Vec::new();
        let mut dropped = 0;
        for e in ds.episodes() {
            if e.terminal || e.timeout {
                episodes.push(e.rows.clone());
            } else {
                dropped += 1;
            }
        }
        if episodes.is_empty() {
            // No episode boundary is marked at all: use every episode as logged.
            episodes = ds.episodes().map(|e| e.rows).collect();
            dropped = 0;
        }
        Ok(Self {
            obs_dim: ds.obs_dim(),
            kind,
            obs: c.observations.clone(),
            next_obs: c.next_observations.clone(),
            act_f32,
            act_u32,
            rewards: c.rewards.iter().map(|&r| f64::from(r)).collect(),
            terminals: c.terminals.clone(),
            timeouts: c.timeouts.clone(),
            steps,
            horizon,
            behavior_log_prob: c.behavior_log_prob.clone(),
            episodes,
            dropped_episodes: dropped,
        })
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }
    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }
    /// Action width (`1` for discrete).
    pub fn act_dim(&self) -> usize {
        match self.kind {
            ActionKind::Continuous(d) => d,
            ActionKind::Discrete(_) => 1,
        }
    }
    /// Observations of the first step of every kept episode, `[E * obs_dim]`.
    pub fn initial_states(&self) -> Vec<f32> {
        let od = self.obs_dim;
        self.episodes
            .iter()
            .flat_map(|r| self.obs[r.start * od..(r.start + 1) * od].iter().copied())
            .collect()
    }
    /// The logged actions of `rows` as a tensor (`[B, act]` f32 or `[B]` u32).
    pub fn actions_tensor(&self, rows: std::ops::Range<usize>) -> Result<Tensor> {
        Ok(match self.kind {
            ActionKind::Continuous(d) => Tensor::from_slice(
                &self.act_f32[rows.start * d..rows.end * d],
                (rows.len(), d),
                &Device::Cpu,
            )?,
            ActionKind::Discrete(_) => {
                Tensor::from_slice(&self.act_u32[rows.clone()], rows.len(), &Device::Cpu)?
            }
        })
    }
}

/// `[B, obs_dim]` tensor of row-major observations.
pub fn obs_tensor(obs: &[f32], obs_dim: usize) -> Result<Tensor> {
    Ok(Tensor::from_slice(
        obs,
        (obs.len() / obs_dim, obs_dim),
        &Device::Cpu,
    )?)
}

/// Checks that `policy` fits `data` (action kind, observation and action widths) by asking it
/// for one action; the error names what differs.
pub fn check_policy(policy: &mut dyn Policy, data: &Logged) -> Result<()> {
    let discrete = matches!(data.kind, ActionKind::Discrete(_));
    if policy.is_discrete() != discrete {
        return Err(OpeError::Mismatch(format!(
            "the policy has {} actions, the dataset {} actions",
            if policy.is_discrete() {
                "discrete"
            } else {
                "continuous"
            },
            if discrete { "discrete" } else { "continuous" }
        )));
    }
    let s = obs_tensor(&data.obs[..data.obs_dim], data.obs_dim)?;
    let a = policy.act(&s, true).map_err(|e| {
        OpeError::Mismatch(format!(
            "the policy cannot act on the dataset's {}-dimensional observations: {e}",
            data.obs_dim
        ))
    })?;
    let rows = a.dims().first().copied().unwrap_or(0);
    if rows != 1 {
        return Err(OpeError::Mismatch(format!(
            "the policy returned {rows} actions for one {}-dimensional observation: its observation width differs",
            data.obs_dim
        )));
    }
    if let ActionKind::Continuous(d) = data.kind {
        let w = a.dims().get(1).copied().unwrap_or(0);
        if w != d {
            return Err(OpeError::Mismatch(format!(
                "the policy's actions have {w} dimensions, the dataset's {d}"
            )));
        }
    }
    Ok(())
}

/// `log pi(a_i|s_i)` for every logged row; `None` if the policy has no density
/// (deterministic).
pub fn policy_log_probs(policy: &mut dyn Policy, data: &Logged) -> Result<Option<Vec<f64>>> {
    let od = data.obs_dim;
    let mut out = Vec::with_capacity(data.len());
    let mut start = 0;
    while start < data.len() {
        let end = (start + CHUNK).min(data.len());
        let s = obs_tensor(&data.obs[start * od..end * od], od)?;
        let a = data.actions_tensor(start..end)?;
        match policy.log_prob(&s, &a)? {
            None if matches!(data.kind, ActionKind::Discrete(_)) => {
                // A greedy policy: probability 1 on its action, 0 elsewhere.
                let g = greedy(policy, &s)?;
                out.extend(
                    g.iter()
                        .zip(&data.act_u32[start..end])
                        .map(|(g, a)| if g == a { 0.0 } else { f64::NEG_INFINITY }),
                );
            }
            None => return Ok(None),
            Some(lp) => out.extend(
                lp.to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?
                    .into_iter()
                    .map(|x| if x.is_nan() { f64::NEG_INFINITY } else { x }),
            ),
        }
        start = end;
    }
    Ok(Some(out))
}

/// `k` actions per observation sampled from the policy (deterministic policies repeat their
/// action): `[B * k, act]` with the samples of row `i` at `i * k .. (i + 1) * k`.
pub fn sample_actions(
    policy: &mut dyn Policy,
    obs: &[f32],
    obs_dim: usize,
    k: usize,
) -> Result<Tensor> {
    let rows = obs.len() / obs_dim;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < rows {
        let end = (start + CHUNK / k.max(1)).clamp(start + 1, rows);
        let s = obs_tensor(&obs[start * obs_dim..end * obs_dim], obs_dim)?;
        let s = s
            .unsqueeze(1)?
            .broadcast_as((end - start, k, obs_dim))?
            .reshape(((end - start) * k, obs_dim))?;
        parts.push(policy.act(&s, false)?.to_dtype(DType::F32)?);
        start = end;
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `pi(a|s)` for every action `a < n` of every observation: `[B * n]` row-major.
pub fn action_probs(
    policy: &mut dyn Policy,
    obs: &[f32],
    obs_dim: usize,
    n: usize,
) -> Result<Vec<f64>> {
    let rows = obs.len() / obs_dim;
    let mut out = vec![0.0; rows * n];
    let mut start = 0;
    while start < rows {
        let end = (start + CHUNK).min(rows);
        let s = obs_tensor(&obs[start * obs_dim..end * obs_dim], obs_dim)?;
        for a in 0..n {
            let idx = Tensor::from_vec(vec![a as u32; end - start], end - start, &Device::Cpu)?;
            let lp = match policy.log_prob(&s, &idx)? {
                Some(lp) => lp.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                None => greedy(policy, &s)?
                    .into_iter()
                    .map(|g| {
                        if g == a as u32 {
                            0.0
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect(),
            };
            for (i, l) in lp.into_iter().enumerate() {
                out[(start + i) * n + a] = l.exp();
            }
        }
        start = end;
    }
    Ok(out)
}

/// The greedy (deterministic) actions of a discrete policy.
fn greedy(policy: &mut dyn Policy, s: &Tensor) -> Result<Vec<u32>> {
    Ok(policy
        .act(s, true)?
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?)
}
