//! Diagnostics of a trained (or training) algorithm on its dataset:
//!
//! - **Over-estimation**: the critic's `Q(s, a)` on dataset pairs against the observed
//!   discounted return-to-go `G_t = sum_k gamma^k r_(t+k)` to the end of the episode. A ratio
//!   `mean Q / mean G` far above 1 is the over-estimation offline RL suffers from; conservative
//!   methods sit at or below 1. `G_t` of an episode cut by a timeout (or by the end of the data)
//!   is truncated and so biased low; the report counts such rows.
//! - **Divergence from the data**: continuous, the mean squared distance `||pi(s) - a||^2`
//!   between the policy's action and the data's; discrete, the fraction of states where they
//!   differ; plus the mean `log pi(a|s)` of data actions where the policy has a density.

use candle_core::{DType, Device, Tensor};
use orl_data::{Actions, Dataset};
use serde::Serialize;

use crate::common::Algorithm;
use crate::error::Result;

/// The diagnostics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostics {
    /// Rows evaluated.
    pub rows: usize,
    /// Rows whose return-to-go is truncated (episode ended by a timeout or the data's end).
    pub truncated_rows: usize,
    /// Mean `Q(s, a)` over the rows (`None` without a critic).
    pub q_mean: Option<f64>,
    /// Mean discounted return-to-go.
    pub return_mean: f64,
    /// `q_mean / return_mean` (`None` when either is unavailable or the return is ~0).
    pub overestimation_ratio: Option<f64>,
    /// Mean `|Q - G|`.
    pub q_abs_error: Option<f64>,
    /// Continuous: mean `||pi(s) - a||^2`; discrete: fraction of rows with `pi(s) != a`.
    pub action_divergence: f64,
    /// Mean `log pi(a|s)` of the data's actions, where defined.
    pub data_log_likelihood: Option<f64>,
}

/// Discounted return-to-go of every row (rewards mapped by `reward_fn`), and whether it is
/// truncated (the episode did not end in a terminal state).
pub fn returns_to_go(
    ds: &Dataset,
    gamma: f64,
    reward_fn: impl Fn(f32) -> f64,
) -> (Vec<f64>, Vec<bool>) {
    let mut g = vec![0.0; ds.len()];
    let mut truncated = vec![false; ds.len()];
    let r = ds.rewards();
    for ep in ds.episodes() {
        let mut acc = 0.0;
        for i in ep.rows.clone().rev() {
            acc = reward_fn(r[i]) + gamma * acc;
            g[i] = acc;
            truncated[i] = !ep.terminal;
        }
    }
    (g, truncated)
}

/// Evaluates `algo` on `rows` of `ds`. `obs` maps a raw observation row to the algorithm's input
/// (normalisation); `returns`/`truncated` come from [`returns_to_go`].
pub fn diagnose(
    algo: &mut dyn Algorithm,
    ds: &Dataset,
    rows: &[usize],
    normalize: &dyn Fn(&[f32]) -> Vec<f32>,
    returns: &[f64],
    truncated: &[bool],
) -> Result<Diagnostics> {
    let od = ds.obs_dim();
    let n = rows.len();
    let device = Device::Cpu;
    let s: Vec<f32> = rows
        .iter()
        .flat_map(|&i| normalize(ds.observation(i)))
        .collect();
    let s = Tensor::from_vec(s, (n, od), &device)?;
    let a = match ds.actions() {
        Actions::Continuous { dim, values } => {
            let v: Vec<f32> = rows
                .iter()
                .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            Tensor::from_vec(v, (n, *dim), &device)?
        }
        Actions::Discrete(v) => Tensor::from_vec(
            rows.iter().map(|&i| v[i] as u32).collect::<Vec<_>>(),
            n,
            &device,
        )?,
    };
    let g: Vec<f64> = rows.iter().map(|&i| returns[i]).collect();
    let return_mean = g.iter().sum::<f64>() / n.max(1) as f64;
    let q: Option<Vec<f32>> = algo.q_value(&s, &a)?.map(|t| t.to_vec1()).transpose()?;
    let q_mean = q
        .as_ref()
        .map(|q| q.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64);
    let q_abs_error = q.as_ref().map(|q| {
        q.iter()
            .zip(&g)
            .map(|(&a, b)| (f64::from(a) - b).abs())
            .sum::<f64>()
            / n.max(1) as f64
    });
    let pi = algo.act(&s, true)?;
    let action_divergence = if algo.spec().is_discrete() {
        let p: Vec<u32> = pi.to_dtype(DType::U32)?.to_vec1()?;
        let d: Vec<u32> = a.to_vec1()?;
        p.iter().zip(&d).filter(|(x, y)| x != y).count() as f64 / n.max(1) as f64
    } else {
        f64::from((pi - &a)?.sqr()?.sum(1)?.mean_all()?.to_scalar::<f32>()?)
    };
    let data_log_likelihood = algo
        .log_prob(&s, &a)?
        .map(|t| t.mean_all().and_then(|m| m.to_scalar::<f32>()))
        .transpose()?
        .map(f64::from);
    Ok(Diagnostics {
        rows: n,
        truncated_rows: rows.iter().filter(|&&i| truncated[i]).count(),
        q_mean,
        return_mean,
        overestimation_ratio: q_mean
            .filter(|_| return_mean.abs() > 1e-6)
            .map(|q| q / return_mean),
        q_abs_error,
        action_divergence,
        data_log_likelihood,
    })
}

/// Up to `max` rows spread evenly over the dataset (a fixed probe set).
pub fn probe_rows(len: usize, max: usize) -> Vec<usize> {
    let k = len.min(max).max(1);
    (0..k).map(|j| j * len / k).filter(|&i| i < len).collect()
}
