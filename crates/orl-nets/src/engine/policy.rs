//! Acting with an engine policy head: one place for greedy and sampled actions and for the
//! log-probabilities of given actions, whichever head an algorithm trains.

use crate::engine::heads::{CategoricalHead, DeterministicHead, GaussianHead};
use crate::engine::mlp::MlpCache;
use crate::engine::params::Params;
use crate::store::Noise;

/// A policy head of one of the three kinds.
#[derive(Debug, Clone)]
pub enum PolicyHead {
    /// `m tanh(f(s))`.
    Deterministic(DeterministicHead),
    /// Gaussian with a tanh-bounded mean and a state-independent std.
    Gaussian(GaussianHead),
    /// Softmax over `n` actions.
    Categorical(CategoricalHead),
}

/// Actions of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Actions {
    /// `[B, act]`.
    Continuous(Vec<f32>),
    /// `[B]` indices.
    Discrete(Vec<u32>),
}

impl PolicyHead {
    /// Actions for `s: [B, obs]`. Deterministic: the mean (Gaussian) or the most probable
    /// action (categorical, first of ties). Otherwise a sample drawn from `noise`: Gaussian
    /// `mean + std eps` clipped to the action box; categorical by inverse CDF with one uniform
    /// per row. The deterministic head ignores `deterministic`.
    pub fn act(
        &self,
        p: &Params,
        s: &[f32],
        batch: usize,
        cache: &mut MlpCache,
        deterministic: bool,
        noise: &mut Noise,
    ) -> Actions {
        match self {
            Self::Deterministic(h) => {
                let mut a = vec![0.0; batch * h.act_dim()];
                h.forward(p, s, batch, cache, &mut a);
                Actions::Continuous(a)
            }
            Self::Gaussian(h) => {
                let d = h.act_dim();
                let mut a = vec![0.0; batch * d];
                h.mean(p, s, batch, cache, &mut a);
                if !deterministic {
                    let mut eps = vec![0.0; batch * d];
                    noise.normal_into(&mut eps);
                    for (k, (a, e)) in a.iter_mut().zip(&eps).enumerate() {
                        let std = h.log_std(p, k % d).exp();
                        *a = (*a + e * std).clamp(-h.max_action, h.max_action);
                    }
                }
                Actions::Continuous(a)
            }
            Self::Categorical(h) => {
                let n = h.n();
                let mut lp = vec![0.0; batch * n];
                h.log_probs(p, s, batch, cache, &mut lp);
                let idx = lp
                    .chunks_exact(n)
                    .map(|row| {
                        if deterministic {
                            argmax(row)
                        } else {
                            sample_row(row, noise)
                        }
                    })
                    .collect();
                Actions::Discrete(idx)
            }
        }
    }
    /// `log pi(a_b|s_b)` `[B]` of continuous actions `a: [B, act]` (Gaussian) or indices
    /// (categorical, given as `f32` row values); `None` for the deterministic head.
    pub fn log_prob(
        &self,
        p: &Params,
        s: &[f32],
        a: &[f32],
        batch: usize,
        cache: &mut MlpCache,
    ) -> Option<Vec<f32>> {
        match self {
            Self::Deterministic(_) => None,
            Self::Gaussian(h) => {
                let mut mean = vec![0.0; batch * h.act_dim()];
                let mut lp = vec![0.0; batch];
                h.mean(p, s, batch, cache, &mut mean);
                h.log_prob(p, a, cache, &mut lp);
                Some(lp)
            }
            Self::Categorical(h) => {
                let n = h.n();
                let mut lps = vec![0.0; batch * n];
                h.log_probs(p, s, batch, cache, &mut lps);
                Some(
                    a.iter()
                        .enumerate()
                        .map(|(b, &k)| lps[b * n + (k.max(0.0) as usize).min(n - 1)])
                        .collect(),
                )
            }
        }
    }
}

/// Index of the largest value (the first of ties, as candle's `argmax`).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// One index drawn from the log-probabilities `row` by inverse CDF.
fn sample_row(row: &[f32], noise: &mut Noise) -> u32 {
    let u = noise.unit() as f32;
    let mut acc = 0.0;
    for (i, &lp) in row.iter().enumerate() {
        acc += lp.exp();
        if u < acc {
            return i as u32;
        }
    }
    (row.len() - 1) as u32
}
