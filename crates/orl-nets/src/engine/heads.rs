//! Actor heads on engine MLPs, with their log-densities' gradients written out.
//!
//! - [`DeterministicHead`]: `a = m tanh(f(s))` (TD3, TD3+BC, BC-MSE);
//!   `dL/df = dL/da * m (1 - tanh^2)`.
//! - [`GaussianHead`]: IQL's / CORL's `GaussianPolicy`: `mu = m tanh(f(s))`, a free,
//!   state-independent `log sigma` clamped to `[log_std_min, 2]`,
//!   `log pi(a|s) = sum_j -z_j^2 / 2 - log sigma_j - log(2 pi) / 2`, `z = (a - mu) / sigma`;
//!   `d log pi / d mu_j = z_j / sigma_j`, `d log pi / d log sigma_j = z_j^2 - 1` (zero outside
//!   the clamp).
//! - [`CategoricalHead`]: `log pi(.|s) = log_softmax(f(s))`;
//!   `d/d logits_k of log pi(a|s) = 1(k = a) - softmax_k`.
//!
//! Parameter names and initial draws are those of [`crate::DeterministicActor`],
//! [`crate::GaussianActor`] and [`crate::CategoricalActor`] (`net.<l>.*`, `log_std`).

use crate::engine::mlp::{Activation, Input, Mlp, MlpCache};
use crate::engine::params::{Params, ParamsBuilder};
use crate::error::Result;

const HALF_LOG_2PI: f32 = 0.918_938_5;

/// `a = max_action * tanh(f(s))`.
#[derive(Debug, Clone)]
pub struct DeterministicHead {
    /// The network `f` (tanh output).
    pub net: Mlp,
    /// The action bound `m`.
    pub max_action: f32,
}

impl DeterministicHead {
    /// `obs_dim -> hidden... -> act_dim`, parameters `net.<l>.*`.
    pub fn new(
        pb: &mut ParamsBuilder<'_>,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::new(
                &mut pb.pp("net"),
                obs_dim,
                hidden,
                act_dim,
                Activation::Tanh,
            )?,
            max_action: max_action as f32,
        })
    }
    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        self.net.output_dim()
    }
    /// Actions of `s: [B, obs]` into `a: [B, act]`.
    pub fn forward(
        &self,
        p: &Params,
        s: &[f32],
        batch: usize,
        cache: &mut MlpCache,
        a: &mut [f32],
    ) {
        self.net.forward(p, s, Input::Shared, batch, cache);
        for (a, &y) in a.iter_mut().zip(cache.output()) {
            *a = self.max_action * y;
        }
    }
    /// Backward from `da = dL/da` `[B, act]` after [`DeterministicHead::forward`].
    pub fn backward(
        &self,
        p: &Params,
        s: &[f32],
        da: &[f32],
        cache: &mut MlpCache,
        grads: &mut [f32],
    ) {
        for (d, &g) in cache.dout_mut().iter_mut().zip(da) {
            *d = g * self.max_action;
        }
        self.net
            .backward(p, s, Input::Shared, cache, Some(grads), None);
    }
}

/// Gaussian policy with a tanh-bounded mean and a state-independent, clamped log-std.
#[derive(Debug, Clone)]
pub struct GaussianHead {
    /// The mean network `f` (tanh output).
    pub net: Mlp,
    log_std: usize,
    act_dim: usize,
    /// The action bound `m`.
    pub max_action: f32,
    /// Lower clamp of `log sigma` (the upper one is 2).
    pub log_std_min: f32,
}

impl GaussianHead {
    /// `obs_dim -> hidden... -> act_dim` (`net.<l>.*`) and `log_std` `[act_dim]` (init 0).
    pub fn new(
        pb: &mut ParamsBuilder<'_>,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
        log_std_min: f32,
    ) -> Result<Self> {
        let net = Mlp::new(
            &mut pb.pp("net"),
            obs_dim,
            hidden,
            act_dim,
            Activation::Tanh,
        )?;
        let log_std = pb.constant("log_std", &[act_dim], 0.0)?;
        Ok(Self {
            net,
            log_std,
            act_dim,
            max_action: max_action as f32,
            log_std_min: log_std_min.min(2.0),
        })
    }
    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        self.act_dim
    }
    /// `log sigma_j` as used (clamped).
    pub fn log_std(&self, p: &Params, j: usize) -> f32 {
        p.data()[self.log_std + j].clamp(self.log_std_min, 2.0)
    }
    /// Means `m tanh(f(s))` into `mean: [B, act]`.
    pub fn mean(
        &self,
        p: &Params,
        s: &[f32],
        batch: usize,
        cache: &mut MlpCache,
        mean: &mut [f32],
    ) {
        self.net.forward(p, s, Input::Shared, batch, cache);
        for (m, &y) in mean.iter_mut().zip(cache.output()) {
            *m = self.max_action * y;
        }
    }
    /// `log pi(a_b|s_b)` into `lp: [B]` after [`GaussianHead::mean`] (reads the cached
    /// means).
    pub fn log_prob(&self, p: &Params, a: &[f32], cache: &MlpCache, lp: &mut [f32]) {
        let d = self.act_dim;
        for (b, lp) in lp.iter_mut().enumerate() {
            let mut acc = 0.0;
            for j in 0..d {
                let ls = self.log_std(p, j);
                let mu = self.max_action * cache.output()[b * d + j];
                let z = (a[b * d + j] - mu) / ls.exp();
                acc += -0.5 * z * z - ls - HALF_LOG_2PI;
            }
            *lp = acc;
        }
    }
    /// Backward of `L = sum_b w_b log pi(a_b|s_b)` (`w = dL/d log pi`, `[B]`) after
    /// [`GaussianHead::mean`] on the same `s`.
    pub fn log_prob_backward(
        &self,
        p: &Params,
        s: &[f32],
        a: &[f32],
        w: &[f32],
        cache: &mut MlpCache,
        grads: &mut [f32],
    ) {
        let d = self.act_dim;
        let batch = cache.batch();
        let m = self.max_action;
        {
            let (y, dout) = cache.output_and_dout();
            for b in 0..batch {
                for j in 0..d {
                    let raw = p.data()[self.log_std + j];
                    let ls = raw.clamp(self.log_std_min, 2.0);
                    let inv = (-ls).exp();
                    let yk = y[b * d + j];
                    let z = (a[b * d + j] - m * yk) * inv;
                    // d lp / d mu = z / sigma; mu = m y
                    dout[b * d + j] = w[b] * z * inv * m;
                    if raw >= self.log_std_min && raw <= 2.0 {
                        grads[self.log_std + j] += w[b] * (z * z - 1.0);
                    }
                }
            }
        }
        self.net
            .backward(p, s, Input::Shared, cache, Some(grads), None);
    }
}

/// Categorical policy `log pi(.|s) = log_softmax(f(s))`.
#[derive(Debug, Clone)]
pub struct CategoricalHead {
    /// The logits network `f`.
    pub net: Mlp,
}

impl CategoricalHead {
    /// `obs_dim -> hidden... -> n` (`net.<l>.*`).
    pub fn new(
        pb: &mut ParamsBuilder<'_>,
        obs_dim: usize,
        n: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::new(&mut pb.pp("net"), obs_dim, hidden, n, Activation::Identity)?,
        })
    }
    /// Number of actions.
    pub fn n(&self) -> usize {
        self.net.output_dim()
    }
    /// Log-probabilities of every action into `lp: [B, n]`.
    pub fn log_probs(
        &self,
        p: &Params,
        s: &[f32],
        batch: usize,
        cache: &mut MlpCache,
        lp: &mut [f32],
    ) {
        self.net.forward(p, s, Input::Shared, batch, cache);
        let n = self.n();
        for (row, out) in cache.output().chunks_exact(n).zip(lp.chunks_exact_mut(n)) {
            log_softmax(row, out);
        }
    }
    /// Backward of `L = sum_b w_b log pi(a_b|s_b)` after [`CategoricalHead::log_probs`],
    /// whose output `lp` it reads.
    pub fn log_prob_backward(
        &self,
        p: &Params,
        s: &[f32],
        a: &[u32],
        w: &[f32],
        lp: &[f32],
        cache: &mut MlpCache,
        grads: &mut [f32],
    ) {
        let n = self.n();
        for (b, d) in cache.dout_mut().chunks_exact_mut(n).enumerate() {
            for (k, d) in d.iter_mut().enumerate() {
                let hit = if k as u32 == a[b] { 1.0 } else { 0.0 };
                *d = w[b] * (hit - lp[b * n + k].exp());
            }
        }
        self.net
            .backward(p, s, Input::Shared, cache, Some(grads), None);
    }
}

/// `out = x - logsumexp(x)` for one row.
pub fn log_softmax(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + x.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v - lse;
    }
}
