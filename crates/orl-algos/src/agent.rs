//! [`Agent`]: an algorithm plus the observation normalisation it was trained with, acting on
//! raw observations.

use candle_core::{DType, Device, Tensor};
use orl_envs::OwnedAction;

use crate::common::Algorithm;
use crate::error::{AlgoError, Result};

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
