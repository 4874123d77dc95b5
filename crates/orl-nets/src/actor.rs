//! Actors (policies as networks): tanh-squashed Gaussian (SAC, CQL), Gaussian with a
//! state-independent std (IQL, BC), deterministic (TD3+BC, BC), categorical (discrete).

use candle_core::{D, Tensor, Var};

use crate::error::Result;
use crate::linear::Linear;
use crate::mlp::Mlp;
use crate::store::{Noise, Vb};

const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_7;

/// `sum_j log N(x_j; mean_j, std_j)` over the last dimension: `[B, A] -> [B]`.
pub fn normal_log_prob(x: &Tensor, mean: &Tensor, log_std: &Tensor) -> Result<Tensor> {
    let z = ((x - mean)? / log_std.exp()?)?;
    let lp = ((z.sqr()? * -0.5)? - log_std)?.affine(1.0, -HALF_LOG_2PI)?;
    Ok(lp.sum(D::Minus1)?)
}

/// `log(1 + exp(x))`, computed stably as `relu(x) + log(1 + exp(-|x|))`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

/// Tanh-squashed Gaussian policy of SAC (Haarnoja et al. 2018, appendix C):
/// `u ~ N(mu(s), sigma(s))`, `a = max_action * tanh(u)`,
/// `log pi(a|s) = sum_j [log N(u_j) - log(1 - tanh(u_j)^2) - log max_action]`, the correction computed as
/// `2 (log 2 - u - softplus(-2u))` for stability. `log sigma` is clamped to `[-20, 2]`
/// (CORL `cql.py`, `LOG_STD_MIN/MAX`).
///
/// Shapes: `s: [B, obs] -> a: [B, act], log_prob: [B]`. Parameters: `<prefix>.trunk.*`,
/// `<prefix>.mean.*`, `<prefix>.log_std.*`.
#[derive(Debug, Clone)]
pub struct TanhGaussianActor {
    trunk: Mlp,
    mean: Linear,
    log_std: Linear,
    max_action: f64,
    act_dim: usize,
}

impl TanhGaussianActor {
    /// `obs_dim -> hidden... -> (mean, log_std)` of `act_dim` each.
    pub fn new(
        vb: &mut Vb<'_>,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        let last = *hidden.last().unwrap_or(&obs_dim);
        let trunk = Mlp::new(
            &mut vb.pp("trunk"),
            obs_dim,
            &hidden[..hidden.len().saturating_sub(1)],
            last,
        )?;
        Ok(Self {
            trunk,
            mean: Linear::new(&mut vb.pp("mean"), last, act_dim)?,
            log_std: Linear::new(&mut vb.pp("log_std"), last, act_dim)?,
            max_action,
            act_dim,
        })
    }
    fn heads(&self, s: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.trunk.forward(s)?.relu()?;
        Ok((
            self.mean.forward(&h)?,
            self.log_std.forward(&h)?.clamp(-20f32, 2f32)?,
        ))
    }
    /// Reparameterised sample and its log-probability.
    pub fn sample(&self, s: &Tensor, noise: &mut Noise) -> Result<(Tensor, Tensor)> {
        let eps = noise.normal(&[s.dim(0)?, self.mean_dim()])?;
        self.sample_with(s, &eps)
    }
    /// Action dimension.
    pub fn mean_dim(&self) -> usize {
        self.act_dim
    }
    /// Reparameterised sample from given standard-normal noise `eps: [B, act]`.
    pub fn sample_with(&self, s: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mean, log_std) = self.heads(s)?;
        let u = (&mean + (log_std.exp()? * eps)?)?;
        let lp = normal_log_prob(&u, &mean, &log_std)?;
        let corr = tanh_correction(&u)?;
        Ok((
            (u.tanh()? * self.max_action)?,
            ((lp - corr)? - self.log_scale())?,
        ))
    }
    /// `max_action * tanh(mu(s))`.
    pub fn deterministic(&self, s: &Tensor) -> Result<Tensor> {
        Ok((self.heads(s)?.0.tanh()? * self.max_action)?)
    }
    /// `log pi(a|s)` of given actions (clipped into the open interval to invert the tanh).
    pub fn log_prob(&self, s: &Tensor, a: &Tensor) -> Result<Tensor> {
        let (mean, log_std) = self.heads(s)?;
        let y = (a / self.max_action)?.clamp(-1.0 + 1e-6, 1.0 - 1e-6)?;
        let u = atanh(&y)?;
        Ok(((normal_log_prob(&u, &mean, &log_std)? - tanh_correction(&u)?)? - self.log_scale())?)
    }
    /// `act_dim * ln(max_action)`: the Jacobian of `a = max_action * y`, so that log-probabilities
    /// are densities of the action itself.
    fn log_scale(&self) -> f64 {
        self.act_dim as f64 * self.max_action.ln()
    }
}

/// `sum_j log(1 - tanh(u_j)^2) = sum_j 2 (log 2 - u_j - softplus(-2 u_j))`: `[B, A] -> [B]`.
fn tanh_correction(u: &Tensor) -> Result<Tensor> {
    let t = ((u.neg()? + std::f64::consts::LN_2)? - softplus(&(u * -2.0)?)?)?;
    Ok((t * 2.0)?.sum(D::Minus1)?)
}

fn atanh(y: &Tensor) -> Result<Tensor> {
    // 0.5 * ln((1 + y) / (1 - y))
    Ok((((y + 1.0)? / (y.neg()? + 1.0)?)?.log()? * 0.5)?)
}

/// Gaussian policy with a state-independent log-std and a tanh-bounded mean, as IQL's reference
/// code and CORL `iql.py` (`GaussianPolicy`): `mean = max_action * tanh(mlp(s))`,
/// `log_std` a free parameter (init 0) clamped to `[log_std_min, 2]` (`log_std_min` -20 as
/// CORL by default; [`GaussianActor::with_log_std_min`] sets another floor, e.g. IQL's -5);
/// `log pi(a|s)` is the plain Gaussian density of the data action (no tanh correction).
/// Deterministic action: the mean.
#[derive(Debug, Clone)]
pub struct GaussianActor {
    net: Mlp,
    log_std: Var,
    max_action: f64,
    log_std_min: f32,
}

impl GaussianActor {
    /// `obs_dim -> hidden... -> act_dim`, plus `<prefix>.log_std` `[act_dim]`.
    pub fn new(
        vb: &mut Vb<'_>,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::new(&mut vb.pp("net"), obs_dim, hidden, act_dim)?,
            log_std: vb.constant("log_std", &[act_dim], 0.0)?,
            max_action,
            log_std_min: -20.0,
        })
    }
    /// The same actor with `log std` clamped from below at `min` (must be below 2).
    pub fn with_log_std_min(mut self, min: f32) -> Self {
        self.log_std_min = min.min(2.0);
        self
    }
    /// `log std` as used: the parameter clamped to `[log_std_min, 2]`, `[act]`.
    pub fn log_std(&self) -> Result<Tensor> {
        Ok(self.log_std.as_tensor().clamp(self.log_std_min, 2f32)?)
    }
    /// `[B, act]` means.
    pub fn deterministic(&self, s: &Tensor) -> Result<Tensor> {
        Ok((self.net.forward(s)?.tanh()? * self.max_action)?)
    }
    /// `log pi(a|s)`: `[B]`.
    pub fn log_prob(&self, s: &Tensor, a: &Tensor) -> Result<Tensor> {
        let mean = self.deterministic(s)?;
        let log_std = self.log_std()?.broadcast_as(mean.dims())?;
        normal_log_prob(a, &mean, &log_std)
    }
    /// A sample `mean + std * eps`, clipped to `[-max_action, max_action]`.
    pub fn sample(&self, s: &Tensor, noise: &mut Noise) -> Result<Tensor> {
        let mean = self.deterministic(s)?;
        let std = self.log_std()?.exp()?;
        let eps = noise.normal(mean.dims())?;
        Ok((mean + eps.broadcast_mul(&std)?)?.clamp(-self.max_action, self.max_action)?)
    }
}

/// Deterministic policy `a = max_action * tanh(mlp(s))` (TD3, Fujimoto et al. 2018; TD3+BC).
#[derive(Debug, Clone)]
pub struct DeterministicActor {
    net: Mlp,
    max_action: f64,
}

impl DeterministicActor {
    /// `obs_dim -> hidden... -> act_dim`.
    pub fn new(
        vb: &mut Vb<'_>,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::new(&mut vb.pp("net"), obs_dim, hidden, act_dim)?,
            max_action,
        })
    }
    /// `s: [B, obs] -> a: [B, act]`.
    pub fn forward(&self, s: &Tensor) -> Result<Tensor> {
        Ok((self.net.forward(s)?.tanh()? * self.max_action)?)
    }
}

/// Categorical policy over `n` actions: `logits = mlp(s)`, `log pi(.|s) = log_softmax(logits)`.
#[derive(Debug, Clone)]
pub struct CategoricalActor {
    net: Mlp,
}

impl CategoricalActor {
    /// `obs_dim -> hidden... -> n`.
    pub fn new(
        vb: &mut Vb<'_>,
        obs_dim: usize,
        n_actions: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::new(&mut vb.pp("net"), obs_dim, hidden, n_actions)?,
        })
    }
    /// `[B, n]` logits.
    pub fn logits(&self, s: &Tensor) -> Result<Tensor> {
        self.net.forward(s)
    }
    /// `[B, n]` log-probabilities.
    pub fn log_probs(&self, s: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::log_softmax(&self.logits(s)?, D::Minus1)?)
    }
    /// `[B]` greedy actions (u32 indices).
    pub fn greedy(&self, s: &Tensor) -> Result<Tensor> {
        Ok(self.logits(s)?.argmax(D::Minus1)?)
    }
}
