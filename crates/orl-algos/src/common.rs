//! What every algorithm shares: the problem [`Spec`], batch tensors, metrics, the
//! [`Algorithm`] trait with generic checkpointing, and the small pure loss functions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use orl_data::Batch;
use orl_nets::engine::backend::{AbsError, Backend, Identity, Map2, Scalar, SquaredError};
use orl_nets::{NetState, Noise, OptimState, checkpoint};
use serde::{Deserialize, Serialize};

use crate::error::{AlgoError, Result};

/// The action space an algorithm is built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionSpec {
    /// `dim` values in `[-max_action, max_action]`.
    Continuous {
        /// Action dimension.
        dim: usize,
        /// Bound of every dimension (actions are symmetric boxes, as in D4RL).
        max_action: f64,
    },
    /// One of `n` actions.
    Discrete {
        /// Number of actions.
        n: usize,
    },
}

/// Observation dimension and action space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action space.
    pub action: ActionSpec,
}

impl Spec {
    /// Continuous actions of `dim` in `[-max_action, max_action]`.
    pub fn continuous(obs_dim: usize, dim: usize, max_action: f64) -> Self {
        Self {
            obs_dim,
            action: ActionSpec::Continuous { dim, max_action },
        }
    }
    /// `n` discrete actions.
    pub fn discrete(obs_dim: usize, n: usize) -> Self {
        Self {
            obs_dim,
            action: ActionSpec::Discrete { n },
        }
    }
    /// Checks the dimensions and the bound: `obs_dim`, the action dimension and `n` at least
    /// 1, `max_action` finite and > 0.
    pub fn validate(&self) -> Result<()> {
        crate::validate::count("spec.obs_dim", self.obs_dim, usize::MAX)?;
        match self.action {
            ActionSpec::Continuous { dim, max_action } => {
                crate::validate::count("spec.action.dim", dim, usize::MAX)?;
                crate::validate::positive("spec.action.max_action", max_action)
            }
            ActionSpec::Discrete { n } => crate::validate::count("spec.action.n", n, usize::MAX),
        }
    }
    /// Whether actions are discrete.
    pub fn is_discrete(&self) -> bool {
        matches!(self.action, ActionSpec::Discrete { .. })
    }
    /// `(act_dim, max_action)` or a configuration error naming `algo`.
    pub fn continuous_parts(&self, algo: &str) -> Result<(usize, f64)> {
        match self.action {
            ActionSpec::Continuous { dim, max_action } => Ok((dim, max_action)),
            ActionSpec::Discrete { .. } => Err(AlgoError::Config(format!(
                "{algo} needs continuous actions"
            ))),
        }
    }
    /// `n` or a configuration error naming `algo`.
    pub fn discrete_n(&self, algo: &str) -> Result<usize> {
        match self.action {
            ActionSpec::Discrete { n } => Ok(n),
            ActionSpec::Continuous { .. } => {
                Err(AlgoError::Config(format!("{algo} needs discrete actions")))
            }
        }
    }
}

/// A [`Batch`] as tensors. Shapes: `s`, `s2`: `[B, obs]`; `a`: `[B, act]` (continuous) or
/// `[B]` `u32` (discrete); `r`, `not_done`, `discount`: `[B]`.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    /// Observations.
    pub s: Tensor,
    /// Actions (`f32 [B, act]` or `u32 [B]`).
    pub a: Tensor,
    /// Rewards.
    pub r: Tensor,
    /// Next observations.
    pub s2: Tensor,
    /// `1 - terminal`: 0 where `s2` is terminal (no bootstrap). Timeouts bootstrap.
    pub not_done: Tensor,
    /// `gamma^k` of the (n-step) transition.
    pub discount: Tensor,
}

/// Checks that `batch` fits `spec`: observation width, and continuous actions of the right
/// width, or discrete ones (one per row) where `spec` is discrete.
pub fn check_batch(batch: &Batch, spec: &Spec) -> Result<()> {
    let b = batch.batch_size;
    if batch.obs_dim != spec.obs_dim
        || batch.observations.len() != b * spec.obs_dim
        || batch.next_observations.len() != b * spec.obs_dim
    {
        return Err(AlgoError::Config(format!(
            "batch has observation dimension {}, the algorithm was built for {}",
            batch.obs_dim, spec.obs_dim
        )));
    }
    match spec.action {
        ActionSpec::Continuous { dim, .. } => {
            if batch.act_dim != dim
                || batch.actions.len() != b * dim
                || !batch.discrete_actions.is_empty()
            {
                return Err(AlgoError::Config(format!(
                    "batch has action dimension {}, the algorithm was built for {dim}",
                    batch.act_dim
                )));
            }
        }
        ActionSpec::Discrete { .. } => {
            if batch.discrete_actions.len() != b {
                return Err(AlgoError::Config(
                    "the algorithm needs discrete actions; the batch has continuous ones".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The batch's discrete actions as `u32` indices into `out` (reused), each checked to lie in
/// `0..n`.
pub fn discrete_indices(batch: &Batch, n: usize, out: &mut Vec<u32>) -> Result<()> {
    out.clear();
    for &x in &batch.discrete_actions {
        if x < 0 || x as usize >= n {
            return Err(AlgoError::Config(format!(
                "discrete action {x} outside 0..{n}"
            )));
        }
        out.push(x as u32);
    }
    Ok(())
}

/// A batch on backend `B`, uploaded by [`BatchBufs::upload`]: `s`, `s'`, `a` (continuous) or
/// the data actions as a one-hot `[B, n]` (discrete), `r` and the not-done discount
/// `gamma^k (1 - d)`, each `[B, .]`.
pub(crate) struct BatchBufs<B: Backend> {
    pub s: B::Buf,
    pub s2: B::Buf,
    /// Continuous actions `[B, act]`, or the one-hot of the discrete ones `[B, n]`.
    pub a: B::Buf,
    pub r: B::Buf,
    pub nd: B::Buf,
    /// The discrete actions as indices (empty for continuous actions).
    pub idx: Vec<u32>,
    host: Vec<f32>,
}

impl<B: Backend> Default for BatchBufs<B> {
    fn default() -> Self {
        Self {
            s: B::Buf::default(),
            s2: B::Buf::default(),
            a: B::Buf::default(),
            r: B::Buf::default(),
            nd: B::Buf::default(),
            idx: Vec::new(),
            host: Vec::new(),
        }
    }
}

impl<B: Backend> BatchBufs<B> {
    /// Uploads `batch` to `be` (the caller has checked it against `spec` with
    /// [`check_batch`]; the discrete actions' range is checked here). With
    /// `transitions = false` only `s` and the actions (a behaviour-cloning batch).
    pub fn upload(&mut self, be: &B, batch: &Batch, spec: &Spec, transitions: bool) -> Result<()> {
        let o = spec.obs_dim;
        be.upload(&batch.observations, o, &mut self.s)?;
        match spec.action {
            ActionSpec::Continuous { dim, .. } => {
                self.idx.clear();
                be.upload(&batch.actions, dim, &mut self.a)?;
            }
            ActionSpec::Discrete { n } => {
                discrete_indices(batch, n, &mut self.idx)?;
                self.host.clear();
                self.host.resize(self.idx.len() * n, 0.0);
                for (row, &k) in self.host.chunks_exact_mut(n).zip(&self.idx) {
                    row[k as usize] = 1.0;
                }
                be.upload(&self.host, n, &mut self.a)?;
            }
        }
        if transitions {
            be.upload(&batch.next_observations, o, &mut self.s2)?;
            be.upload(&batch.rewards, 1, &mut self.r)?;
            self.host.clear();
            self.host.extend(
                batch
                    .discounts
                    .iter()
                    .zip(&batch.terminals)
                    .map(|(&g, &term)| g * (1.0 - term)),
            );
            be.upload(&self.host, 1, &mut self.nd)?;
        }
        Ok(())
    }
}

/// The rows of `t: [B, d]` (or `[B]`, `d = 1`) as one host buffer and `B`.
pub fn host_rows(t: &Tensor) -> Result<(Vec<f32>, usize)> {
    let b = t.dims().first().copied().unwrap_or(1);
    Ok((t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?, b))
}

impl BatchTensors {
    /// Copies `batch` to `device`.
    pub fn new(batch: &Batch, spec: &Spec, device: &Device) -> Result<Self> {
        let b = batch.batch_size;
        check_batch(batch, spec)?;
        let a = match spec.action {
            ActionSpec::Continuous { dim, .. } => {
                Tensor::from_slice(&batch.actions, (b, dim), device)?
            }
            ActionSpec::Discrete { n } => {
                let mut idx = Vec::with_capacity(b);
                discrete_indices(batch, n, &mut idx)?;
                Tensor::from_vec(idx, b, device)?
            }
        };
        let not_done: Vec<f32> = batch.terminals.iter().map(|t| 1.0 - t).collect();
        Ok(Self {
            s: Tensor::from_slice(&batch.observations, (b, spec.obs_dim), device)?,
            a,
            r: Tensor::from_slice(&batch.rewards, b, device)?,
            s2: Tensor::from_slice(&batch.next_observations, (b, spec.obs_dim), device)?,
            not_done: Tensor::from_vec(not_done, b, device)?,
            discount: Tensor::from_slice(&batch.discounts, b, device)?,
        })
    }
    /// `r + discount * not_done * v_next` (the one-step or n-step TD target), `[B]`.
    pub fn td_target(&self, v_next: &Tensor) -> Result<Tensor> {
        Ok((&self.r + ((&self.discount * &self.not_done)? * v_next)?)?)
    }
}

/// What every algorithm holds besides its networks: spaces, the seeded noise sources, the update
/// counter and the device.
#[derive(Debug, Clone)]
pub struct Core {
    /// Observation and action spaces.
    pub spec: Spec,
    /// Every random draw of training (seeded, checkpointed).
    pub noise: Noise,
    /// Every random draw of acting for evaluation (stochastic policies, BCQ's latents): apart
    /// from [`Core::noise`] so that evaluating never moves the training stream, and reseeded by
    /// whoever evaluates ([`Algorithm::reseed_acting`]) so that an evaluation's result does not
    /// depend on when or how often the policy was evaluated before. Not checkpointed.
    pub act_noise: Noise,
    /// Updates taken.
    pub steps: usize,
    /// Where the tensors live.
    pub device: Device,
}

impl Core {
    /// A fresh core: noise seeded from `seed` (decorrelated from the initialisation stream).
    pub fn new(spec: Spec, seed: u64, device: &Device) -> Self {
        Self {
            spec,
            noise: Noise::new(seed ^ 0x5eed, device.clone()),
            act_noise: Noise::new(seed ^ 0xac7, device.clone()),
            steps: 0,
            device: device.clone(),
        }
    }
}

/// Copies each row of `x: [B, d]` `n` times into `out` (reused): `[B n, d]`, row `b n + j` is
/// `x[b]` (the sampled-action batches of CQL and BCQ).
pub fn repeat_rows_into(x: &[f32], d: usize, n: usize, out: &mut Vec<f32>) {
    out.clear();
    for row in x.chunks_exact(d) {
        for _ in 0..n {
            out.extend_from_slice(row);
        }
    }
}

/// A one-parameter network `name` `[1]` = 0 (SAC's `log alpha`, CQL's `log alpha'`).
pub fn scalar_param(name: &str, rng: &mut rand_pcg::Pcg64Mcg) -> Result<orl_nets::engine::Params> {
    let mut s = orl_nets::engine::Params::new();
    s.builder("", rng).constant(name, &[1], 0.0)?;
    Ok(s)
}

/// `dL/dQ = k (Q - y) / n` (`Map2`): [`td_mse_grad_on`]'s gradient.
struct TdGrad {
    k: f32,
    n: f32,
}

impl Map2 for TdGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q: S, y: S) -> S {
        (q - y).scale(self.k).div_by(self.n)
    }
}

/// Buffers of [`td_mse_grad_on`] on backend `B`.
pub(crate) struct TdBufs<B: Backend> {
    y_tiled: B::Buf,
    q1: B::Buf,
    /// `dL/dQ` `[E * B, 1]` after [`td_mse_grad_on`].
    pub dq: B::Buf,
}

impl<B: Backend> Default for TdBufs<B> {
    fn default() -> Self {
        Self {
            y_tiled: B::Buf::default(),
            q1: B::Buf::default(),
            dq: B::Buf::default(),
        }
    }
}

/// The TD loss of an ensemble and its gradient with respect to the critics' outputs, on
/// backend `be`: `L = scale sum_e mean_b (Q_eb - y_b)^2` for `q` `[E * B, 1]` and `y` `[B, 1]`,
/// `dL/dQ_eb = 2 scale (Q_eb - y_b) / B` into `t.dq`; returns `(L, mean Q, mean |Q_1b - y_b|)`.
/// `scale` is 1 for the plain MSE of TD3+BC, BCQ, IQL and CQL, 1/2 for SAC's. On the CPU
/// backend these are the numbers of the engine's earlier hand-written loop, bit for bit (the
/// same `f32` operations, summed in `f64` in the same order).
pub(crate) fn td_mse_grad_on<B: Backend>(
    be: &B,
    q: &B::Buf,
    y: &B::Buf,
    members: usize,
    bsz: usize,
    scale: f32,
    t: &mut TdBufs<B>,
) -> Result<(f64, f64, f64)> {
    be.tile_rows(y, members, &mut t.y_tiled)?;
    let loss = be.map2_sum(&SquaredError, q, &t.y_tiled)?;
    let q_sum = be.map1_sum(&Identity, q)?;
    be.rows(q, 1, 0, bsz, &mut t.q1)?;
    let td = be.map2_sum(&AbsError, &t.q1, y)?;
    let k = TdGrad {
        k: 2.0 * scale,
        n: bsz as f32,
    };
    be.map2(&k, q, &t.y_tiled, &mut t.dq)?;
    let bs = bsz as f64;
    Ok((
        f64::from(scale) * loss / bs,
        q_sum / (members as f64 * bs),
        td / bs,
    ))
}

/// One loss of an update and the gradients of one network's parameters, computed at the
/// current parameters without stepping ([`crate::Bc::probe`] and the other engine
/// algorithms' `probe`): what the parity tests compare with candle's autograd.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The loss's metric name.
    pub loss: &'static str,
    /// Its value.
    pub value: f64,
    /// The network whose parameters the gradients are of (its checkpoint prefix).
    pub net: &'static str,
    /// `(parameter name, dL/dparameter)`, names as in checkpoints without the net prefix.
    pub grads: Vec<(String, Vec<f32>)>,
}

impl Probe {
    /// A probe of `loss = value` with the gradient buffer `grad` laid out as `params`.
    pub fn new(
        loss: &'static str,
        value: f64,
        net: &'static str,
        params: &orl_nets::engine::Params,
        grad: &[f32],
    ) -> Self {
        Self {
            loss,
            value,
            net,
            grads: params.named_values(grad),
        }
    }
}

/// Most metrics one update reports.
pub const MAX_METRICS: usize = 24;

/// Named scalar metrics of one update (losses, mean Q, alpha, ...), in insertion order.
///
/// Held inline (names are `&'static str`), so that reporting them allocates nothing: an
/// engine update allocates nothing on the heap in steady state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    len: usize,
    items: [(&'static str, f64); MAX_METRICS],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// No metrics.
    pub fn new() -> Self {
        Self {
            len: 0,
            items: [("", 0.0); MAX_METRICS],
        }
    }
    /// Sets `name = value` (replacing an earlier value; beyond [`MAX_METRICS`] names the
    /// value is dropped, which a test of every algorithm rules out).
    pub fn insert(&mut self, name: &'static str, value: f64) {
        if let Some(slot) = self.items[..self.len].iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else if self.len < MAX_METRICS {
            self.items[self.len] = (name, value);
            self.len += 1;
        }
    }
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.items[..self.len].iter().copied()
    }
    /// The values.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.iter().map(|(_, v)| v)
    }
    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// As a map from name to value.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        self.iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

impl std::ops::Index<&str> for Metrics {
    type Output = f64;
    fn index(&self, name: &str) -> &f64 {
        match self.items[..self.len].iter().find(|(k, _)| *k == name) {
            Some((_, v)) => v,
            None => panic!("no metric `{name}`"),
        }
    }
}

/// Adds `name = t` (a scalar tensor) to `m`, failing with [`AlgoError::Diverged`] when it is
/// NaN or infinite.
pub fn record(m: &mut Metrics, step: usize, name: &'static str, t: &Tensor) -> Result<()> {
    let v = t.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    record_value(m, step, name, f64::from(v))
}

/// Adds `name = v` to `m`, failing with [`AlgoError::Diverged`] when it is NaN or infinite.
pub fn record_value(m: &mut Metrics, step: usize, name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() {
        return Err(AlgoError::Diverged {
            step,
            name: name.to_string(),
            value: v as f32,
        });
    }
    m.insert(name, v);
    Ok(())
}

/// Asymmetric L2 of IQL (Kostrikov et al. 2021, eq. 5): `|tau - 1(u < 0)| u^2`, averaged.
pub fn expectile_loss(u: &Tensor, tau: f64) -> Result<Tensor> {
    let neg = u.lt(0.0)?.to_dtype(DType::F32)?; // 1 where u < 0
    let w = (neg.affine(1.0 - 2.0 * tau, tau)?).abs()?; // tau - 1(u<0), in absolute value
    Ok((w * u.sqr()?)?.mean_all()?)
}

/// Mean squared TD error of each ensemble member: `q: [E, B]`, `y: [B]` -> `[E]` with
/// `L_i = mean_b (q_ib - y_b)^2` (a plain MSE, no 1/2: PyTorch's `mse_loss`, as rlkit, CORL and
/// d3rlpy write every critic loss orl implements).
pub fn mse_per_member(q: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(q.broadcast_sub(&y.unsqueeze(0)?)?.sqr()?.mean(1)?)
}

/// IQL's advantage weights (Kostrikov et al. 2021, eq. 7): `min(exp(beta A), max_weight)`.
pub fn advantage_weights(adv: &Tensor, beta: f64, max_weight: f64) -> Result<Tensor> {
    Ok((adv * beta)?.exp()?.clamp(0.0, max_weight)?)
}

/// BCQ's soft clipped double Q (Fujimoto et al. 2019, eq. 13): `q: [2, N]` ->
/// `lambda min(q_1, q_2) + (1 - lambda) max(q_1, q_2)`, `[N]`.
pub fn soft_clipped_double_q(q: &Tensor, lambda: f64) -> Result<Tensor> {
    let (qmin, qmax) = (q.min(0)?, q.max(0)?);
    Ok(((qmin * lambda)? + (qmax * (1.0 - lambda))?)?)
}

/// TD3+BC's `lambda = alpha / mean |Q(s, pi(s))|` (Fujimoto & Gu 2021, eq. 3), detached:
/// `q: [B]` -> scalar.
pub fn td3bc_lambda(q: &Tensor, alpha: f64) -> Result<Tensor> {
    Ok((q.abs()?.mean_all()?.detach().recip()? * alpha)?)
}

/// CQL(H)'s importance-sampled `T log sum_a exp(Q(s, a) / T)` (Kumar et al. 2020, appendix F)
/// over `3 N` actions per state: `N` uniform (density `exp(log_unif)`), `N` from `pi(.|s')`
/// and `N` from `pi(.|s)`, each value divided by its proposal density:
/// `T logsumexp_j ((Q(s, a_j) - log mu(a_j)) / T)`. Shapes: `q_*: [E, B * N]` (rows
/// `b * N + j`), `lp_*: [B * N]` -> `[E, B]`.
#[allow(clippy::too_many_arguments)]
pub fn cql_logsumexp(
    q_rand: &Tensor,
    q_next: &Tensor,
    q_cur: &Tensor,
    lp_next: &Tensor,
    lp_cur: &Tensor,
    log_unif: f64,
    n: usize,
    temperature: f64,
) -> Result<Tensor> {
    let (e, bn) = q_rand.dims2()?;
    let bsz = bn / n.max(1);
    let cat = Tensor::cat(
        &[
            (q_rand - log_unif)?,
            q_next.broadcast_sub(&lp_next.detach().unsqueeze(0)?)?,
            q_cur.broadcast_sub(&lp_cur.detach().unsqueeze(0)?)?,
        ],
        1,
    )?; // [E, 3*B*N] laid out source-major; regroup per state:
    let cat = cat
        .reshape((e, 3, bsz, n))?
        .transpose(1, 2)?
        .reshape((e, bsz, 3 * n))?;
    Ok(((cat / temperature)?.log_sum_exp(candle_core::D::Minus1)? * temperature)?)
}

/// Huber loss with threshold 1 (PyTorch's `smooth_l1_loss`), averaged.
pub fn huber_loss(x: &Tensor, target: &Tensor) -> Result<Tensor> {
    let d = (x - target)?;
    let ad = d.abs()?;
    let quad = (d.sqr()? * 0.5)?;
    let lin = (&ad - 0.5)?;
    let mask = ad.lt(1.0)?;
    Ok(mask.where_cond(&quad, &lin)?.mean_all()?)
}

/// `x[b, a[b]]` for `x: [B, n]`, `a: [B]` u32 -> `[B]`.
pub fn gather_actions(x: &Tensor, a: &Tensor) -> Result<Tensor> {
    Ok(x.gather(&a.unsqueeze(1)?, 1)?.squeeze(1)?)
}

/// Writes an algorithm's [`Algorithm::nets`], [`Algorithm::nets_mut`], [`Algorithm::optims`]
/// and [`Algorithm::optims_mut`] from one list each of `"name" => field.path` entries (the
/// checkpoint prefixes), so that the shared and the mutable lists cannot drift apart. A part
/// that only some action kinds have (an `Option` field) adds its entries with
/// `if let Some(x) = field { "name" => x.path, ... }` after the list:
///
/// ```text
/// state_lists! {
///     nets ["critic" => critic_params, "critic_target" => critic_target]
///     if let Some(c) = cont { "actor" => c.actor_params }
///     optims ["critic" => critic_opt]
///     if let Some(c) = cont { "actor" => c.actor_opt }
/// }
/// ```
macro_rules! state_lists {
    (
        nets [$($n:literal => $($np:ident).+),* $(,)?]
        $(if let Some($nb:ident) = $nopt:ident { $($on:literal => $($onp:ident).+),* $(,)? })*
        optims [$($m:literal => $($mp:ident).+),* $(,)?]
        $(if let Some($mb:ident) = $mopt:ident { $($om:literal => $($omp:ident).+),* $(,)? })*
    ) => {
        #[allow(unused_mut, clippy::vec_init_then_push)]
        fn nets(&self) -> Vec<(&'static str, &dyn orl_nets::NetState)> {
            let mut v: Vec<(&'static str, &dyn orl_nets::NetState)> =
                vec![$(($n, &self.$($np).+)),*];
            $(if let Some($nb) = &self.$nopt { $(v.push(($on, &$($onp).+));)* })*
            v
        }
        #[allow(unused_mut, clippy::vec_init_then_push)]
        fn nets_mut(&mut self) -> Vec<(&'static str, &mut dyn orl_nets::NetState)> {
            let mut v: Vec<(&'static str, &mut dyn orl_nets::NetState)> =
                vec![$(($n, &mut self.$($np).+)),*];
            $(if let Some($nb) = &mut self.$nopt { $(v.push(($on, &mut $($onp).+));)* })*
            v
        }
        #[allow(unused_mut, clippy::vec_init_then_push)]
        fn optims(&self) -> Vec<(&'static str, &dyn orl_nets::OptimState)> {
            let mut v: Vec<(&'static str, &dyn orl_nets::OptimState)> =
                vec![$(($m, &self.$($mp).+)),*];
            $(if let Some($mb) = &self.$mopt { $(v.push(($om, &$($omp).+));)* })*
            v
        }
        #[allow(unused_mut, clippy::vec_init_then_push)]
        fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn orl_nets::OptimState)> {
            let mut v: Vec<(&'static str, &mut dyn orl_nets::OptimState)> =
                vec![$(($m, &mut self.$($mp).+)),*];
            $(if let Some($mb) = &mut self.$mopt { $(v.push(($om, &mut $($omp).+));)* })*
            v
        }
    };
}
pub(crate) use state_lists;

/// An algorithm: updates from batches, acts, and saves/restores its complete training state.
///
/// Observations given to [`Algorithm::act`] are in the same space as the batches' (normalised if
/// the replay normalised them); [`crate::Agent`] adds normalisation of raw observations.
pub trait Algorithm: Send {
    /// Short name (`"cql"`, `"iql"`, ...).
    fn name(&self) -> &'static str;
    /// The state every algorithm has: spaces, noise, update counter, device.
    fn core(&self) -> &Core;
    /// Mutable [`Algorithm::core`].
    fn core_mut(&mut self) -> &mut Core;
    /// Observation and action spaces.
    fn spec(&self) -> &Spec {
        &self.core().spec
    }
    /// The configuration as JSON (recorded in checkpoints and run folders).
    fn config_json(&self) -> String;
    /// Updates taken so far.
    fn steps(&self) -> usize {
        self.core().steps
    }
    /// One gradient update from `batch`; returns the losses and diagnostics. A NaN/inf loss
    /// returns [`AlgoError::Diverged`] before any parameter is changed by that loss.
    fn update(&mut self, batch: &Batch) -> Result<Metrics>;
    /// Actions for `s: [B, obs]`: `f32 [B, act]` or `u32 [B]`.
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor>;
    /// `log pi(a|s)` `[B]` where the policy has a density.
    fn log_prob(&mut self, _s: &Tensor, _a: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// A sample `a ~ pi(.|s)` with its own log-probability, for logging behaviour
    /// probabilities. The default recomputes it with [`Algorithm::log_prob`]; policies whose
    /// samples can saturate (tanh-squashed Gaussians) return the sample's exact value instead,
    /// since inverting a clamped `tanh` is wrong at the bounds.
    fn act_with_log_prob(&mut self, s: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let a = self.act(s, false)?;
        let lp = self.log_prob(s, &a)?;
        Ok((a, lp))
    }
    /// Restarts the acting stream ([`Core::act_noise`]) from `seed`.
    fn reseed_acting(&mut self, seed: u64) {
        let device = self.core().device.clone();
        self.core_mut().act_noise = Noise::new(seed, device);
    }
    /// The critic's value `Q(s, a)` `[B]` (minimum over the ensemble), if the algorithm has one.
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>>;

    /// The acting networks for `orl export` (`None` where the algorithm cannot be exported).
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        Ok(None)
    }

    /// Networks by name (tensor prefix in checkpoints). Implementations write the four
    /// lists with `state_lists!` (one declaration).
    fn nets(&self) -> Vec<(&'static str, &dyn NetState)>;
    /// Networks by name, mutable (restoring), in the order of [`Algorithm::nets`].
    fn nets_mut(&mut self) -> Vec<(&'static str, &mut dyn NetState)>;
    /// Optimizers by name.
    fn optims(&self) -> Vec<(&'static str, &dyn OptimState)>;
    /// Optimizers by name, mutable (restoring).
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn OptimState)>;
    /// The algorithm's noise source.
    fn noise(&self) -> &Noise {
        &self.core().noise
    }
    /// Mutable noise source (restoring).
    fn noise_mut(&mut self) -> &mut Noise {
        &mut self.core_mut().noise
    }
    /// Sets the update counter (restoring).
    fn set_steps(&mut self, steps: usize) {
        self.core_mut().steps = steps;
    }

    /// Saves networks, optimizer moments, RNG state, step and config atomically, plus `extra`
    /// metadata (the caller's: observation statistics, dataset, ...).
    fn save(&self, path: &Path, extra: &HashMap<String, String>) -> Result<()> {
        let mut tensors = Vec::new();
        for (name, store) in self.nets() {
            tensors.extend(store.named_tensors(&format!("{name}.")));
        }
        let mut meta = extra.clone();
        for (name, opt) in self.optims() {
            tensors.extend(opt.named_state(&format!("optim.{name}.")));
            meta.insert(format!("orl.optim.{name}.t"), opt.steps().to_string());
        }
        meta.insert("orl.algo".into(), self.name().into());
        meta.insert("orl.config".into(), self.config_json());
        meta.insert(
            "orl.spec".into(),
            serde_json::to_string(self.spec()).unwrap_or_default(),
        );
        meta.insert("orl.steps".into(), self.steps().to_string());
        meta.insert("orl.noise".into(), self.noise().state_json());
        meta.insert("orl.version".into(), env!("CARGO_PKG_VERSION").into());
        checkpoint::save(path, &tensors, &meta)?;
        Ok(())
    }

    /// Restores everything [`Algorithm::save`] wrote; returns the metadata. The checkpoint must
    /// come from the same algorithm, spaces and configuration.
    fn load(&mut self, path: &Path) -> Result<HashMap<String, String>> {
        let (tensors, meta) = checkpoint::load(path, &Device::Cpu)?;
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| AlgoError::checkpoint(path, format!("no `{k}` in its metadata")))
        };
        let algo = get("orl.algo")?;
        if algo != self.name() {
            return Err(AlgoError::checkpoint(
                path,
                format!("holds {algo}, not {}", self.name()),
            ));
        }
        let spec: Spec = serde_json::from_str(&get("orl.spec")?)
            .map_err(|e| AlgoError::checkpoint(path, format!("bad `orl.spec`: {e}")))?;
        if &spec != self.spec() {
            return Err(AlgoError::checkpoint(
                path,
                format!("spaces {spec:?} differ from {:?}", self.spec()),
            ));
        }
        for (name, store) in self.nets_mut() {
            store.load_named(&tensors, &format!("{name}."))?;
        }
        let mut ts = Vec::new();
        for (name, _) in self.optims() {
            let key = format!("orl.optim.{name}.t");
            let t: usize = get(&key)?
                .parse()
                .map_err(|_| AlgoError::checkpoint(path, format!("`{key}` is not a step count")))?;
            ts.push(t);
        }
        for ((name, opt), t) in self.optims_mut().into_iter().zip(ts) {
            opt.load_state(&tensors, &format!("optim.{name}."), t)?;
        }
        self.noise_mut().restore(&get("orl.noise")?)?;
        let steps = get("orl.steps")?
            .parse()
            .map_err(|_| AlgoError::checkpoint(path, "`orl.steps` is not a step count"))?;
        self.set_steps(steps);
        Ok(meta)
    }
}

/// An exportable plain policy network: `tanh` head for continuous specs (the network gives the
/// pre-tanh mean), `argmax` for discrete ones. `names`: its layers, input first.
pub fn plain_policy(
    tensors: &[(String, Tensor)],
    names: &[String],
    spec: &Spec,
) -> Result<orl_nets::PolicyModel> {
    let net = orl_nets::ReluNet::from_named(tensors, "", names)?;
    Ok(match spec.action {
        ActionSpec::Continuous { max_action, .. } => {
            orl_nets::PolicyModel::Tanh { net, max_action }
        }
        ActionSpec::Discrete { .. } => orl_nets::PolicyModel::Argmax { net },
    })
}

/// The names `0..layers` of an MLP's layers under `prefix` (for [`orl_nets::ReluNet`]).
pub fn mlp_layer_names(prefix: &str, layers: usize) -> Vec<String> {
    (0..layers).map(|i| format!("{prefix}{i}")).collect()
}

/// [`Algorithm::act`] of an engine policy head: `s: [B, obs]` -> `f32 [B, act]` or `u32 [B]`.
pub fn head_act(
    head: &orl_nets::engine::PolicyHead,
    params: &orl_nets::engine::Params,
    s: &Tensor,
    cache: &mut orl_nets::engine::MlpCache,
    deterministic: bool,
    noise: &mut Noise,
) -> Result<Tensor> {
    let (x, b) = host_rows(s)?;
    Ok(match head.act(params, &x, b, cache, deterministic, noise) {
        orl_nets::engine::Actions::Continuous(a) => {
            let d = a.len() / b.max(1);
            Tensor::from_vec(a, (b, d), s.device())?
        }
        orl_nets::engine::Actions::Discrete(i) => Tensor::from_vec(i, b, s.device())?,
    })
}

/// [`Algorithm::log_prob`] of an engine policy head (`None` for a deterministic one).
pub fn head_log_prob(
    head: &orl_nets::engine::PolicyHead,
    params: &orl_nets::engine::Params,
    s: &Tensor,
    a: &Tensor,
    cache: &mut orl_nets::engine::MlpCache,
) -> Result<Option<Tensor>> {
    let (x, b) = host_rows(s)?;
    let (a, _) = host_rows(a)?;
    Ok(match head.log_prob(params, &x, &a, b, cache) {
        Some(lp) => Some(Tensor::from_vec(lp, b, s.device())?),
        None => None,
    })
}
