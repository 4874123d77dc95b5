//! Actor heads on engine MLPs, with their log-densities' gradients written out.
//!
//! - [`DeterministicHead`]: `a = m tanh(f(s))` (TD3, TD3+BC, BC-MSE);
//!   `dL/df = dL/da * m (1 - tanh^2)`.
//! - [`GaussianHead`]: IQL's / CORL's `GaussianPolicy`: `mu = m tanh(f(s))`, a free,
//!   state-independent `log sigma` clamped to `[log_std_min, 2]`,
//!   `log pi(a|s) = sum_j -z_j^2 / 2 - log sigma_j - log(2 pi) / 2`, `z = (a - mu) / sigma`;
//!   `d log pi / d mu_j = z_j / sigma_j`, `d log pi / d log sigma_j = z_j^2 - 1` (zero outside
//!   the clamp).
//! - [`TanhGaussianHead`]: SAC's squashed Gaussian, `u = mu(s) + sigma(s) eps`,
//!   `a = m tanh(u)`, log-density `sum_j [-eps_j^2 / 2 - log sigma_j - log(2 pi) / 2 -
//!   log(1 - tanh(u_j)^2)] - A log m`; with `u` reparameterised its derivative is `2 tanh(u_j)`
//!   in `u_j` and `-1` in `log sigma_j` directly, and `du/dmu = 1`, `du/d log sigma = sigma eps`
//!   (`log sigma` clamped to `[-20, 2]`).
//! - [`CategoricalHead`]: `log pi(.|s) = log_softmax(f(s))`;
//!   `d/d logits_k of log pi(a|s) = 1(k = a) - softmax_k`.
//!
//! Parameter names and initial draws are those of [`crate::DeterministicActor`],
//! [`crate::GaussianActor`] and [`crate::CategoricalActor`] (`net.<l>.*`, `log_std`).

use crate::engine::backend::{
    Backend, Difference, ExpShift, LogSumExp, Map1, Map2, Map3, Product, Scalar, Scale, Sum2,
};
use crate::engine::mlp::{Activation, Input, Mlp, MlpCache};
use crate::engine::params::{Params, ParamsBuilder};
use crate::error::Result;

const HALF_LOG_2PI: f32 = 0.918_938_5;

/// `out = m tanh(f(s))` for a tanh-output `net` (the deterministic action, the Gaussian's mean).
fn bounded_forward(
    net: &Mlp,
    m: f32,
    p: &Params,
    s: &[f32],
    batch: usize,
    cache: &mut MlpCache,
    out: &mut [f32],
) {
    net.forward(p, s, Input::Shared, batch, cache);
    for (o, &y) in out.iter_mut().zip(cache.output()) {
        *o = m * y;
    }
}

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
        bounded_forward(&self.net, self.max_action, p, s, batch, cache, a);
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
    /// [`DeterministicHead::forward`] on backend `be`: `a = m * f(s)`.
    pub fn forward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        batch: usize,
        cache: &mut B::Cache,
        a: &mut B::Buf,
    ) -> Result<()> {
        be.mlp_forward(&self.net, p, s, Input::Shared, batch, cache)?;
        be.map1(&Scale(self.max_action), be.mlp_output(cache), a)
    }
    /// [`DeterministicHead::backward`] on backend `be`: `dL/df = m * da` (into `dnet`), then the
    /// network's backward pass, adding into `grads`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        da: &B::Buf,
        cache: &mut B::Cache,
        dnet: &mut B::Buf,
        grads: &mut B::Buf,
    ) -> Result<()> {
        be.map1(&Scale(self.max_action), da, dnet)?;
        be.mlp_backward(
            &self.net,
            p,
            s,
            Input::Shared,
            cache,
            dnet,
            Some(grads),
            None,
        )
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
        bounded_forward(&self.net, self.max_action, p, s, batch, cache, mean);
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

    /// `log pi(a_b|s_b)` into `lp: [B, 1]` on backend `be` (forward pass included):
    /// `mu = m f(s)`, `z = (a - mu) / exp(ls)`, `lp_b = sum_j (-z_bj^2 / 2 - ls_j - log(2 pi) / 2)`
    /// with `ls = clamp(log_std, log_std_min, 2)`; the same operations in the same order as
    /// [`GaussianHead::log_prob`].
    #[allow(clippy::too_many_arguments)]
    pub fn log_prob_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        a: &B::Buf,
        batch: usize,
        c: &mut DensityBufs<B>,
        lp: &mut B::Buf,
    ) -> Result<()> {
        let d = self.act_dim;
        be.mlp_forward(&self.net, p, s, Input::Shared, batch, &mut c.mlp)?;
        be.param_row(p, self.log_std, d, &mut c.raw)?;
        be.map1(&ClampK(self.log_std_min, 2.0), &c.raw, &mut c.ls)?;
        be.tile_rows(&c.ls, batch, &mut c.ls_t)?;
        let k = GaussTerm { m: self.max_action };
        be.map3(&k, a, be.mlp_output(&c.mlp), &c.ls_t, &mut c.t)?;
        be.sum_cols(&c.t, d, lp)
    }
    /// Backward of `L = sum_b w_b log pi(a_b|s_b)` (`w = dL/d log pi`, `[B, 1]`) after
    /// [`GaussianHead::log_prob_on`] on the same `s` and `a`, into `grads`:
    /// `dL/dmu_bj = w_b z_bj / sigma_j`, `dL/d log_std_j = sum_b w_b (z_bj^2 - 1)` where the
    /// clamp passes it (as [`GaussianHead::log_prob_backward`]).
    #[allow(clippy::too_many_arguments)]
    pub fn log_prob_backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        a: &B::Buf,
        w: &B::Buf,
        c: &mut DensityBufs<B>,
        grads: &mut B::Buf,
    ) -> Result<()> {
        let d = self.act_dim;
        let m = self.max_action;
        be.map1(&NegExp, &c.ls_t, &mut c.inv)?;
        be.map3(&GaussZ { m }, a, be.mlp_output(&c.mlp), &c.inv, &mut c.z)?;
        be.tile_cols(w, d, &mut c.w_t)?;
        be.map3(&GaussDmu { m }, &c.w_t, &c.z, &c.inv, &mut c.dout)?;
        be.map2(&GaussDls, &c.w_t, &c.z, &mut c.t)?;
        be.sum_rows(&c.t, d, &mut c.col)?;
        be.map1(&InsideK(self.log_std_min, 2.0), &c.raw, &mut c.mask)?;
        be.map2(&Product, &c.col, &c.mask, &mut c.colm)?;
        be.add_to_grad(grads, self.log_std, &c.colm)?;
        be.mlp_backward(
            &self.net,
            p,
            s,
            Input::Shared,
            &mut c.mlp,
            &c.dout,
            Some(grads),
            None,
        )
    }
}

/// Tanh-squashed Gaussian policy of SAC / CQL: a ReLU trunk and two linear heads `mean` and
/// `log_std` (names `trunk.<l>.*`, `mean.*`, `log_std.*`, as [`crate::TanhGaussianActor`]).
#[derive(Debug, Clone)]
pub struct TanhGaussianHead {
    trunk: Mlp,
    mean: Mlp,
    log_std: Mlp,
    act_dim: usize,
    /// The action bound `m`.
    pub max_action: f32,
}

/// Buffers of one [`TanhGaussianHead`] at one batch size.
#[derive(Debug, Clone, Default)]
pub struct TanhGaussianCache {
    trunk: MlpCache,
    mean: MlpCache,
    log_std: MlpCache,
}

const LOG_STD_MIN: f32 = -20.0;
const LOG_STD_MAX: f32 = 2.0;

impl TanhGaussianHead {
    /// `obs_dim -> hidden... -> (mean, log_std)` of `act_dim` each.
    pub fn new(
        pb: &mut ParamsBuilder<'_>,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        let last = *hidden.last().unwrap_or(&obs_dim);
        let trunk = Mlp::new(
            &mut pb.pp("trunk"),
            obs_dim,
            &hidden[..hidden.len().saturating_sub(1)],
            last,
            Activation::Relu,
        )?;
        Ok(Self {
            trunk,
            mean: Mlp::linear(&mut pb.pp("mean"), last, act_dim, Activation::Identity)?,
            log_std: Mlp::linear(&mut pb.pp("log_std"), last, act_dim, Activation::Identity)?,
            act_dim,
            max_action: max_action as f32,
        })
    }
    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        self.act_dim
    }
    fn heads(&self, p: &Params, s: &[f32], batch: usize, c: &mut TanhGaussianCache) {
        self.trunk.forward(p, s, Input::Shared, batch, &mut c.trunk);
        self.mean
            .forward(p, c.trunk.output(), Input::Shared, batch, &mut c.mean);
        self.log_std
            .forward(p, c.trunk.output(), Input::Shared, batch, &mut c.log_std);
    }
    /// `m tanh(mu(s))` into `a: [B, act]`.
    pub fn deterministic(
        &self,
        p: &Params,
        s: &[f32],
        batch: usize,
        c: &mut TanhGaussianCache,
        a: &mut [f32],
    ) {
        self.heads(p, s, batch, c);
        for (a, &mu) in a.iter_mut().zip(c.mean.output()) {
            *a = self.max_action * mu.tanh();
        }
    }
    /// Reparameterised samples from standard-normal `eps: [B, act]`: actions into `a`,
    /// log-probabilities into `lp: [B]`.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        p: &Params,
        s: &[f32],
        eps: &[f32],
        batch: usize,
        c: &mut TanhGaussianCache,
        a: &mut [f32],
        lp: &mut [f32],
    ) {
        self.heads(p, s, batch, c);
        let d = self.act_dim;
        let log_scale = d as f32 * self.max_action.ln();
        let (mu, ls) = (c.mean.output(), c.log_std.output());
        for b in 0..batch {
            let mut acc = -log_scale;
            for j in 0..d {
                let k = b * d + j;
                let l = ls[k].clamp(LOG_STD_MIN, LOG_STD_MAX);
                let u = mu[k] + l.exp() * eps[k];
                a[k] = self.max_action * u.tanh();
                // log N(u; mu, sigma) - log(1 - tanh(u)^2), the latter as 2 (log 2 - u - softplus(-2u)).
                let z = (u - mu[k]) / l.exp();
                acc += -0.5 * z * z
                    - l
                    - HALF_LOG_2PI
                    - 2.0 * (std::f32::consts::LN_2 - u - softplus(-2.0 * u));
            }
            lp[b] = acc;
        }
    }
    /// [`TanhGaussianHead::sample`] on backend `be`: from standard-normal `eps` `[B, act]`,
    /// actions into `a` `[B, act]` and log-probabilities into `lp` `[B, 1]`, the same
    /// operations in the same order (the log-density's sum starts from `-A log m`, as the
    /// engine's does).
    #[allow(clippy::too_many_arguments)]
    pub fn sample_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        eps: &B::Buf,
        batch: usize,
        c: &mut TanhBufs<B>,
        a: &mut B::Buf,
        lp: &mut B::Buf,
    ) -> Result<()> {
        let nets = [&self.trunk, &self.mean, &self.log_std];
        let (mu, raw) = c.heads.forward_on(be, nets, p, s, batch)?;
        self.squash_on(be, mu, raw, eps, &mut c.tail, a, lp)
    }
    /// `n` samples per state: as [`TanhGaussianHead::sample_on`] on `s` with each row
    /// repeated `n` times in place (`[B n, obs]`, row `b`'s copies at `b n .. b n + n`, as
    /// [`Backend::repeat_rows`] lays them out), with `eps` `[B n, act]`, but the trunk and the
    /// heads run on the `B` distinct states and their outputs are repeated: `1/n` of the
    /// products (CQL's `N` proposals per state). Forward only: no
    /// [`TanhGaussianHead::sample_backward_on`] after it.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_repeated_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        eps: &B::Buf,
        batch: usize,
        n: usize,
        c: &mut TanhBufs<B>,
        a: &mut B::Buf,
        lp: &mut B::Buf,
    ) -> Result<()> {
        let d = self.act_dim;
        let nets = [&self.trunk, &self.mean, &self.log_std];
        let (mu, raw) = c.heads.forward_on(be, nets, p, s, batch)?;
        be.repeat_rows(mu, d, n, &mut c.mu_rep)?;
        be.repeat_rows(raw, d, n, &mut c.raw_rep)?;
        self.squash_on(be, &c.mu_rep, &c.raw_rep, eps, &mut c.tail, a, lp)
    }
    /// The sampling after the heads: `l = clamp(raw)`, `u = mu + exp(l) eps`, `a = m tanh u`,
    /// `lp = -A log m + sum_j (log N(u_j; mu_j, e^l_j) - log(1 - tanh^2 u_j))`.
    #[allow(clippy::too_many_arguments)]
    fn squash_on<B: Backend>(
        &self,
        be: &B,
        mu: &B::Buf,
        raw: &B::Buf,
        eps: &B::Buf,
        c: &mut SquashBufs<B>,
        a: &mut B::Buf,
        lp: &mut B::Buf,
    ) -> Result<()> {
        let d = self.act_dim;
        be.map1(&ClampK(LOG_STD_MIN, LOG_STD_MAX), raw, &mut c.l)?;
        be.map3(&Reparam, mu, &c.l, eps, &mut c.u)?;
        be.map1(&Squash(self.max_action), &c.u, a)?;
        be.map3(&SquashedTerm, &c.u, mu, &c.l, &mut c.terms)?;
        be.fill(
            lp_like(be, &c.u, d, &mut c.col)?,
            -(d as f32 * self.max_action.ln()),
            &mut c.start,
        )?;
        be.concat_cols(&c.start, 1, &c.terms, d, &mut c.all)?;
        be.sum_cols(&c.all, d + 1, lp)?;
        be.map1(&crate::engine::backend::Identity, eps, &mut c.eps)
    }
    /// Backward of `L` on backend `be`: `da = dL/da` `[B, act]`,
    /// `dlp = dL/d log pi` `[B, 1]`, after [`TanhGaussianHead::sample_on`]:
    /// `dL/du = da m (1 - tanh^2 u) + dlp 2 tanh u` into the mean head, `dL/du sigma eps - dlp`
    /// into the log-std head where its clamp passes, their input gradients summed into the
    /// trunk's.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        da: &B::Buf,
        dlp: &B::Buf,
        c: &mut TanhBufs<B>,
        grads: &mut B::Buf,
    ) -> Result<()> {
        let d = self.act_dim;
        be.tile_cols(dlp, d, &mut c.dlp_t)?;
        be.map3(
            &SquashGrad(self.max_action),
            da,
            &c.tail.u,
            &c.dlp_t,
            &mut c.gu,
        )?;
        be.map3(
            &LogStdPath,
            &c.gu,
            be.mlp_output(&c.heads.log_std),
            &c.tail.eps,
            &mut c.v,
        )?;
        be.map3(
            &LogStdGrad,
            &c.v,
            &c.dlp_t,
            be.mlp_output(&c.heads.log_std),
            &mut c.dls,
        )?;
        let nets = [&self.trunk, &self.mean, &self.log_std];
        c.heads.backward_on(be, nets, p, s, &c.gu, &c.dls, grads)
    }
    /// `log pi(a|s)` of given actions into `lp: [B]` (`a / m` clipped into the open interval
    /// to invert the tanh), as [`crate::TanhGaussianActor::log_prob`].
    pub fn log_prob(
        &self,
        p: &Params,
        s: &[f32],
        a: &[f32],
        batch: usize,
        c: &mut TanhGaussianCache,
        lp: &mut [f32],
    ) {
        self.heads(p, s, batch, c);
        let d = self.act_dim;
        let log_scale = d as f32 * self.max_action.ln();
        let (mu, ls) = (c.mean.output(), c.log_std.output());
        for b in 0..batch {
            let mut acc = -log_scale;
            for j in 0..d {
                let k = b * d + j;
                let l = ls[k].clamp(LOG_STD_MIN, LOG_STD_MAX);
                let y = (a[k] / self.max_action).clamp(-1.0 + 1e-6, 1.0 - 1e-6);
                let u = 0.5 * ((1.0 + y) / (1.0 - y)).ln();
                let z = (u - mu[k]) / l.exp();
                acc += -0.5 * z * z
                    - l
                    - HALF_LOG_2PI
                    - 2.0 * (std::f32::consts::LN_2 - u - softplus(-2.0 * u));
            }
            lp[b] = acc;
        }
    }
}

/// `log(1 + exp(x))`, stably (the one definition: [`Scalar::softplus`]).
fn softplus(x: f32) -> f32 {
    Scalar::softplus(x)
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

    /// Log-probabilities of every action into `lp: [B, n]` on backend `be` (forward pass
    /// included): `lp = x - (max_k x_k + ln sum_k exp(x_k - max_k x_k))`, as [`log_softmax`].
    pub fn log_probs_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        batch: usize,
        c: &mut DensityBufs<B>,
        lp: &mut B::Buf,
    ) -> Result<()> {
        be.mlp_forward(&self.net, p, s, Input::Shared, batch, &mut c.mlp)?;
        log_softmax_on(be, be.mlp_output(&c.mlp), self.n(), &mut c.lsm, lp)
    }
    /// Backward of `L = sum_b w_b log pi(a_b|s_b)` (`w` `[B, 1]`, the data actions as a one-hot
    /// `[B, n]`) after [`CategoricalHead::log_probs_on`], whose output `lp` it reads:
    /// `dL/dx_bk = w_b (1(k = a_b) - exp(lp_bk))`.
    #[allow(clippy::too_many_arguments)]
    pub fn log_prob_backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        onehot: &B::Buf,
        w: &B::Buf,
        lp: &B::Buf,
        c: &mut DensityBufs<B>,
        grads: &mut B::Buf,
    ) -> Result<()> {
        be.tile_cols(w, self.n(), &mut c.w_t)?;
        be.map3(&CatGrad, &c.w_t, onehot, lp, &mut c.dout)?;
        be.mlp_backward(
            &self.net,
            p,
            s,
            Input::Shared,
            &mut c.mlp,
            &c.dout,
            Some(grads),
            None,
        )
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

/// `out <- log_softmax(x)` row by row for `x` `[R, n]` on backend `be`:
/// `out = x - (max_k x_k + ln sum_k exp(x_k - max_k x_k))`, the same operations in the same
/// order as [`log_softmax`] on the CPU backend.
pub fn log_softmax_on<B: Backend>(
    be: &B,
    x: &B::Buf,
    n: usize,
    c: &mut LogSoftmaxBufs<B>,
    out: &mut B::Buf,
) -> Result<()> {
    be.max_cols(x, n, &mut c.max)?;
    be.tile_cols(&c.max, n, &mut c.wide)?;
    be.map2(&ExpShift, x, &c.wide, &mut c.exp)?;
    be.sum_cols(&c.exp, n, &mut c.sum)?;
    be.map2(&LogSumExp, &c.max, &c.sum, &mut c.lse)?;
    be.tile_cols(&c.lse, n, &mut c.wide)?;
    be.map2(&Difference, x, &c.wide, out)
}

/// The scratch buffers of [`log_softmax_on`].
pub struct LogSoftmaxBufs<B: Backend> {
    max: B::Buf,
    wide: B::Buf,
    exp: B::Buf,
    sum: B::Buf,
    lse: B::Buf,
}

impl<B: Backend> Default for LogSoftmaxBufs<B> {
    fn default() -> Self {
        Self {
            max: B::Buf::default(),
            wide: B::Buf::default(),
            exp: B::Buf::default(),
            sum: B::Buf::default(),
            lse: B::Buf::default(),
        }
    }
}

/// Buffers of a head's log-density and its backward pass on backend `B`
/// ([`GaussianHead::log_prob_on`], [`CategoricalHead::log_probs_on`]).
pub struct DensityBufs<B: Backend> {
    /// The head network's activations.
    pub mlp: B::Cache,
    raw: B::Buf,
    ls: B::Buf,
    ls_t: B::Buf,
    inv: B::Buf,
    z: B::Buf,
    t: B::Buf,
    w_t: B::Buf,
    dout: B::Buf,
    col: B::Buf,
    colm: B::Buf,
    mask: B::Buf,
    lsm: LogSoftmaxBufs<B>,
}

impl<B: Backend> Default for DensityBufs<B> {
    fn default() -> Self {
        Self {
            mlp: B::Cache::default(),
            raw: B::Buf::default(),
            ls: B::Buf::default(),
            ls_t: B::Buf::default(),
            inv: B::Buf::default(),
            z: B::Buf::default(),
            t: B::Buf::default(),
            w_t: B::Buf::default(),
            dout: B::Buf::default(),
            col: B::Buf::default(),
            colm: B::Buf::default(),
            mask: B::Buf::default(),
            lsm: LogSoftmaxBufs::default(),
        }
    }
}

// ---- the heads' elementwise kernels (one definition for every backend) ----

struct ClampK(f32, f32);
impl Map1 for ClampK {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.clamp(self.0, self.1)
    }
}

struct InsideK(f32, f32);
impl Map1 for InsideK {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.inside(self.0, self.1)
    }
}

/// `exp(-x)`.
struct NegExp;
impl Map1 for NegExp {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.scale(-1.0).exp()
    }
}

/// One term of the Gaussian log-density, `-z^2 / 2 - ls - log(2 pi) / 2`, `z = (a - m y) / exp(ls)`.
struct GaussTerm {
    m: f32,
}
impl Map3 for GaussTerm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, y: S, ls: S) -> S {
        let z = (a - y.scale(self.m)) / ls.clone().exp();
        (z.clone().scale(-0.5) * z - ls).shift(-HALF_LOG_2PI)
    }
}

/// `z = (a - m y) / sigma`, written with `inv = exp(-ls)` as the engine's backward writes it.
struct GaussZ {
    m: f32,
}
impl Map3 for GaussZ {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, y: S, inv: S) -> S {
        (a - y.scale(self.m)) * inv
    }
}

/// `dL/df = w z inv m` (through `mu = m f`).
struct GaussDmu {
    m: f32,
}
impl Map3 for GaussDmu {
    #[inline(always)]
    fn apply<S: Scalar>(&self, w: S, z: S, inv: S) -> S {
        (w * z * inv).scale(self.m)
    }
}

/// `w (z^2 - 1)`: one row's part of `dL/d log_std`.
struct GaussDls;
impl Map2 for GaussDls {
    #[inline(always)]
    fn apply<S: Scalar>(&self, w: S, z: S) -> S {
        w * (z.clone() * z).shift(-1.0)
    }
}

/// `w (hit - exp(lp))`.
struct CatGrad;
impl Map3 for CatGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, w: S, hit: S, lp: S) -> S {
        w * (hit - lp.exp())
    }
}

/// `like`'s rows as a one-column buffer (the shape of a per-row value), in `col`.
fn lp_like<'c, B: Backend>(
    be: &B,
    like: &B::Buf,
    cols: usize,
    col: &'c mut B::Buf,
) -> Result<&'c B::Buf> {
    be.cols(like, cols, 0, 1, col)?;
    Ok(col)
}

/// Buffers of a [`TanhGaussianHead`] on backend `B` ([`TanhGaussianHead::sample_on`]).
pub struct TanhBufs<B: Backend> {
    heads: TwoHeadsBufs<B>,
    tail: SquashBufs<B>,
    mu_rep: B::Buf,
    raw_rep: B::Buf,
    dlp_t: B::Buf,
    gu: B::Buf,
    v: B::Buf,
    dls: B::Buf,
}

impl<B: Backend> Default for TanhBufs<B> {
    fn default() -> Self {
        Self {
            heads: TwoHeadsBufs::default(),
            tail: SquashBufs::default(),
            mu_rep: B::Buf::default(),
            raw_rep: B::Buf::default(),
            dlp_t: B::Buf::default(),
            gu: B::Buf::default(),
            v: B::Buf::default(),
            dls: B::Buf::default(),
        }
    }
}

/// What the sampling after the heads keeps (`TanhGaussianHead::squash_on`): the clamped
/// log-std `l`, the pre-squash `u` and `eps` (backward reads both), the log-density's terms.
struct SquashBufs<B: Backend> {
    l: B::Buf,
    u: B::Buf,
    eps: B::Buf,
    terms: B::Buf,
    col: B::Buf,
    start: B::Buf,
    all: B::Buf,
}

impl<B: Backend> Default for SquashBufs<B> {
    fn default() -> Self {
        Self {
            l: B::Buf::default(),
            u: B::Buf::default(),
            eps: B::Buf::default(),
            terms: B::Buf::default(),
            col: B::Buf::default(),
            start: B::Buf::default(),
            all: B::Buf::default(),
        }
    }
}

/// `u = mu + exp(l) eps`.
struct Reparam;
impl Map3 for Reparam {
    #[inline(always)]
    fn apply<S: Scalar>(&self, mu: S, l: S, eps: S) -> S {
        mu + l.exp() * eps
    }
}

/// `a = m tanh(u)`.
struct Squash(f32);
impl Map1 for Squash {
    #[inline(always)]
    fn apply<S: Scalar>(&self, u: S) -> S {
        u.tanh().scale(self.0)
    }
}

/// One term of the squashed Gaussian's log-density: `-z^2 / 2 - l - log(2 pi) / 2 -
/// 2 (log 2 - u - softplus(-2u))`, `z = (u - mu) / exp(l)`.
struct SquashedTerm;
impl Map3 for SquashedTerm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, u: S, mu: S, l: S) -> S {
        let z = (u.clone() - mu) / l.clone().exp();
        let det = (u.clone().scale(-1.0).shift(std::f32::consts::LN_2) - u.scale(-2.0).softplus())
            .scale(2.0);
        (z.clone().scale(-0.5) * z - l).shift(-HALF_LOG_2PI) - det
    }
}

/// `dL/du = da m (1 - tanh(u)^2) + dlp 2 tanh(u)`.
struct SquashGrad(f32);
impl Map3 for SquashGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, da: S, u: S, dlp: S) -> S {
        let t = u.tanh();
        da.scale(self.0) * (t.clone() * t.clone()).scale(-1.0).shift(1.0) + dlp.scale(2.0) * t
    }
}

/// `dL/du exp(raw) eps` (the path through `sigma`, before the clamp's mask).
struct LogStdPath;
impl Map3 for LogStdPath {
    #[inline(always)]
    fn apply<S: Scalar>(&self, gu: S, raw: S, eps: S) -> S {
        gu * raw.exp() * eps
    }
}

/// `dL/d raw log_std = (v - dlp) 1(raw in [-20, 2])` (`+ 0` keeps the engine's `+0` outside).
struct LogStdGrad;
impl Map3 for LogStdGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, v: S, dlp: S, raw: S) -> S {
        ((v - dlp) * raw.inside(LOG_STD_MIN, LOG_STD_MAX)).shift(0.0)
    }
}

// ---- a trunk with a mean head and a log-std head (the tanh-Gaussian actor, the VAE's encoder) ----

/// Buffers of a trunk `h = T(x)` with two heads on `h`, `mu = M(h)` and the raw log-std
/// `l = L(h)`, on backend `B`: the three networks' activations and the input gradients.
pub(crate) struct TwoHeadsBufs<B: Backend> {
    pub(crate) trunk: B::Cache,
    pub(crate) mean: B::Cache,
    pub(crate) log_std: B::Cache,
    dh: B::Buf,
    dh2: B::Buf,
    dtrunk: B::Buf,
}

impl<B: Backend> Default for TwoHeadsBufs<B> {
    fn default() -> Self {
        Self {
            trunk: B::Cache::default(),
            mean: B::Cache::default(),
            log_std: B::Cache::default(),
            dh: B::Buf::default(),
            dh2: B::Buf::default(),
            dtrunk: B::Buf::default(),
        }
    }
}

impl<B: Backend> TwoHeadsBufs<B> {
    /// Forward of `nets = [T, M, L]` on `x` `[B, in]`: returns `(mu, l)`, each `[B, out]`.
    pub(crate) fn forward_on<'a>(
        &'a mut self,
        be: &B,
        nets: [&Mlp; 3],
        p: &B::Params,
        x: &B::Buf,
        batch: usize,
    ) -> Result<(&'a B::Buf, &'a B::Buf)> {
        let [trunk, mean, log_std] = nets;
        be.mlp_forward(trunk, p, x, Input::Shared, batch, &mut self.trunk)?;
        let h = be.mlp_output(&self.trunk);
        be.mlp_forward(mean, p, h, Input::Shared, batch, &mut self.mean)?;
        be.mlp_forward(log_std, p, h, Input::Shared, batch, &mut self.log_std)?;
        Ok((be.mlp_output(&self.mean), be.mlp_output(&self.log_std)))
    }
    /// Backward after [`TwoHeadsBufs::forward_on`] from `dmu = dL/dmu` and `dls = dL/dl`:
    /// both heads' parameter gradients, then the trunk's from `dL/dh = M^T dmu + L^T dls`
    /// (no gradient of `x`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_on(
        &mut self,
        be: &B,
        nets: [&Mlp; 3],
        p: &B::Params,
        x: &B::Buf,
        dmu: &B::Buf,
        dls: &B::Buf,
        grads: &mut B::Buf,
    ) -> Result<()> {
        let [trunk, mean, log_std] = nets;
        let h = be.mlp_output(&self.trunk);
        let (dh, dh2) = (&mut self.dh, &mut self.dh2);
        be.mlp_backward(
            mean,
            p,
            h,
            Input::Shared,
            &mut self.mean,
            dmu,
            Some(grads),
            Some(dh),
        )?;
        be.mlp_backward(
            log_std,
            p,
            h,
            Input::Shared,
            &mut self.log_std,
            dls,
            Some(grads),
            Some(dh2),
        )?;
        be.map2(&Sum2, &self.dh, &self.dh2, &mut self.dtrunk)?;
        be.mlp_backward(
            trunk,
            p,
            x,
            Input::Shared,
            &mut self.trunk,
            &self.dtrunk,
            Some(grads),
            None,
        )
    }
}
