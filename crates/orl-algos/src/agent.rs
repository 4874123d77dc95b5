//! Building algorithms by name ([`AlgoKind`], [`build`]), and [`Agent`]: an algorithm plus the
//! observation normalisation it was trained with, acting on raw observations.

use candle_core::{DType, Device, Tensor};
use orl_envs::OwnedAction;

use crate::common::{Algorithm, Spec};
use crate::error::{AlgoError, Result};
use crate::{Bc, BcConfig, Bcq, BcqConfig, Cql, CqlConfig, Iql, IqlConfig, Td3Bc, Td3BcConfig};

/// The algorithms `orl train` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgoKind {
    /// Behavioural cloning.
    Bc,
    /// TD3+BC (continuous only).
    Td3Bc,
    /// Implicit Q-learning.
    Iql,
    /// Conservative Q-learning.
    Cql,
    /// Batch-constrained Q-learning.
    Bcq,
}

impl AlgoKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [AlgoKind; 5] = [
        AlgoKind::Cql,
        AlgoKind::Iql,
        AlgoKind::Bcq,
        AlgoKind::Td3Bc,
        AlgoKind::Bc,
    ];
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            AlgoKind::Bc => "bc",
            AlgoKind::Td3Bc => "td3bc",
            AlgoKind::Iql => "iql",
            AlgoKind::Cql => "cql",
            AlgoKind::Bcq => "bcq",
        }
    }
    /// Whether the algorithm handles discrete actions.
    pub fn supports_discrete(self) -> bool {
        !matches!(self, AlgoKind::Td3Bc)
    }
    /// Batch size of the reference implementation: 100 for BCQ (Fujimoto et al. 2019, appendix
    /// D), 256 for the others (TD3+BC and IQL papers; CORL).
    pub fn default_batch_size(self) -> usize {
        match self {
            AlgoKind::Bcq => 100,
            _ => 256,
        }
    }
    /// Whether the reference implementation standardises observations with the dataset's mean
    /// and std: TD3+BC (paper, section 5), IQL, CQL and BC in CORL; not BCQ's reference code.
    pub fn normalizes_observations(self) -> bool {
        !matches!(self, AlgoKind::Bcq)
    }
    /// The reward transform of the algorithm's published recipe for `ds`, whose episodes last
    /// at most `horizon` steps. IQL rescales rewards by `horizon / (G_max - G_min)` (Kostrikov
    /// et al. 2021, appendix B, with 1000 = the locomotion horizon; CORL `iql.py`
    /// `normalize_reward` in its locomotion configs; d3rlpy's `ReturnBasedRewardScaler(1000)`).
    /// Where every complete episode has the same return the range is undefined and the rewards
    /// stay as stored. The other algorithms use the rewards as stored.
    pub fn reward_transform(
        self,
        ds: &orl_data::Dataset,
        horizon: usize,
    ) -> orl_data::RewardTransform {
        match (self, ds.return_range()) {
            (AlgoKind::Iql, Some((lo, hi))) if hi > lo => orl_data::RewardTransform::ReturnRange {
                max_episode_steps: horizon as f32,
            },
            _ => orl_data::RewardTransform::None,
        }
    }
}

impl std::str::FromStr for AlgoKind {
    type Err = AlgoError;
    fn from_str(s: &str) -> Result<Self> {
        AlgoKind::ALL
            .into_iter()
            .find(|k| k.name() == s.to_ascii_lowercase().replace(['+', '-', '_'], ""))
            .ok_or_else(|| {
                AlgoError::Config(format!(
                    "unknown algorithm `{s}` (known: cql, iql, bcq, td3bc, bc)"
                ))
            })
    }
}

fn parse<T: serde::de::DeserializeOwned + Default>(
    kind: AlgoKind,
    config: Option<&serde_json::Value>,
) -> Result<T> {
    match config {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| AlgoError::Config(format!("{} configuration: {e}", kind.name()))),
    }
}

/// Builds `kind` for `spec` with `config` (a JSON object of fields to override; unknown fields
/// are errors) and `seed`.
pub fn build(
    kind: AlgoKind,
    spec: Spec,
    config: Option<&serde_json::Value>,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn Algorithm>> {
    Ok(match kind {
        AlgoKind::Bc => Box::new(Bc::new(
            spec,
            parse::<BcConfig>(kind, config)?,
            seed,
            device,
        )?),
        AlgoKind::Td3Bc => Box::new(Td3Bc::new(
            spec,
            parse::<Td3BcConfig>(kind, config)?,
            seed,
            device,
        )?),
        AlgoKind::Iql => Box::new(Iql::new(
            spec,
            parse::<IqlConfig>(kind, config)?,
            seed,
            device,
        )?),
        AlgoKind::Cql => Box::new(Cql::new(
            spec,
            parse::<CqlConfig>(kind, config)?,
            seed,
            device,
        )?),
        AlgoKind::Bcq => Box::new(Bcq::new(
            spec,
            parse::<BcqConfig>(kind, config)?,
            seed,
            device,
        )?),
    })
}

/// `(s - mean) / std` per dimension for row-major observations `raw` (any number of rows; `norm`
/// is `(mean, std)` with the std's epsilon included), or a copy when `norm` is `None`.
pub fn normalize_observations(raw: &[f32], norm: Option<&(Vec<f32>, Vec<f32>)>) -> Vec<f32> {
    match norm {
        Some((m, s)) if !m.is_empty() => {
            let od = m.len();
            raw.iter()
                .enumerate()
                .map(|(i, v)| (v - m[i % od]) / s[i % od])
                .collect()
        }
        _ => raw.to_vec(),
    }
}

/// An algorithm with the observation normalisation of its training data, acting on raw
/// observations: `s_norm = (s - mean) / std`.
pub struct Agent {
    /// The algorithm.
    pub algo: Box<dyn Algorithm>,
    /// Per-dimension mean and std (std including its epsilon), if observations were normalised.
    pub obs_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// Act with the policy's mode (true) or a sample.
    pub deterministic: bool,
    device: Device,
}

impl Agent {
    /// Wraps `algo`.
    pub fn new(
        algo: Box<dyn Algorithm>,
        obs_norm: Option<(Vec<f32>, Vec<f32>)>,
        device: Device,
    ) -> Self {
        Self {
            algo,
            obs_norm,
            deterministic: true,
            device,
        }
    }
    /// `[B, obs]` raw observations (row-major) to the algorithm's input tensor.
    pub fn input(&self, raw: &[f32]) -> Result<Tensor> {
        let od = self.algo.spec().obs_dim;
        if od == 0 || !raw.len().is_multiple_of(od) {
            return Err(AlgoError::Config(format!(
                "observation of {} values, expected a multiple of {od}",
                raw.len()
            )));
        }
        let x = normalize_observations(raw, self.obs_norm.as_ref());
        Ok(Tensor::from_vec(x, (raw.len() / od, od), &self.device)?)
    }
    /// Actions for `B` raw observations: one [`OwnedAction`] per row.
    pub fn act_raw(&mut self, raw: &[f32]) -> Result<Vec<OwnedAction>> {
        let s = self.input(raw)?;
        let a = self.algo.act(&s, self.deterministic)?;
        Ok(if self.algo.spec().is_discrete() {
            a.to_dtype(DType::U32)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|i| OwnedAction::Discrete(i64::from(i)))
                .collect()
        } else {
            a.to_vec2::<f32>()?
                .into_iter()
                .map(OwnedAction::Continuous)
                .collect()
        })
    }
}

impl orl_envs::Policy for Agent {
    fn act(
        &mut self,
        observation: &[f32],
    ) -> std::result::Result<OwnedAction, Box<dyn std::error::Error + Send + Sync>> {
        let mut v = self.act_raw(observation)?;
        v.pop()
            .ok_or_else(|| "the policy returned no action".into())
    }
}

impl orl_nets::Policy for Agent {
    fn is_discrete(&self) -> bool {
        self.algo.spec().is_discrete()
    }
    fn act(&mut self, observations: &Tensor, deterministic: bool) -> orl_nets::Result<Tensor> {
        let raw: Vec<f32> = observations.flatten_all()?.to_vec1()?;
        let s = self.input(&raw).map_err(to_net)?;
        self.algo.act(&s, deterministic).map_err(to_net)
    }
    fn log_prob(
        &mut self,
        observations: &Tensor,
        actions: &Tensor,
    ) -> orl_nets::Result<Option<Tensor>> {
        let raw: Vec<f32> = observations.flatten_all()?.to_vec1()?;
        let s = self.input(&raw).map_err(to_net)?;
        self.algo.log_prob(&s, actions).map_err(to_net)
    }
}

fn to_net(e: AlgoError) -> orl_nets::NetError {
    match e {
        AlgoError::Net(n) => n,
        other => orl_nets::NetError::Config(other.to_string()),
    }
}
