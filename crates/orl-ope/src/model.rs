//! Model-based evaluation: roll the policy out in a model of the environment from the
//! dataset's initial states and average the discounted returns (as in the DOPE benchmark's
//! model-based baseline, Fu et al. 2021, section 5, and MOPO's probabilistic ensemble,
//! Yu et al. 2020, section 4.3):
//!
//! ```text
//! V_hat(pi) = E_{s0 ~ D_0} E [ sum_{t<H} gamma^t r_t ],  a_t ~ pi(.|s_t),
//! (s_{t+1} - s_t, r_t) ~ N(m_e(s_t, a_t), diag sigma_e(s_t, a_t)^2),  e ~ U{1..E} per step,
//! the rollout stops when sigmoid(c_e(s_t, a_t)) > 0.5 (predicted termination).
//! ```
//!
//! [`DynamicsModel`] is the seam: the learned [`ProbabilisticEnsemble`] is one model; a test can
//! plug in the true one. Ensemble shapes: input `[E, B, obs + act]` (discrete actions one-hot),
//! output `[E, B, 2 (obs + 1) + 1]` = means of `(ds, r)`, their log-stds, and the termination
//! logit; trained by Gaussian negative log-likelihood plus binary cross-entropy, each member on
//! its own random batches. Inputs and targets are standardised with the data's statistics.
//!
//! Loss over `E` members and `B` rows each (`y` the standardised target, `m`, `l` and `c` the
//! mean, raw log-std and logit outputs, `ls = clamp(l, -10, 0.5)`, `z = (y - m) / exp(ls)`,
//! `d` the logged termination), and its gradient with respect to the outputs:
//!
//! ```text
//! L = (1/EB) sum_{e,b} [ sum_j (z_j^2 / 2 + ls_j) + softplus(c) - d c ]
//! dL/dm_j = -(1/EB) z_j / exp(ls_j)
//! dL/dl_j =  (1/EB) (1 - z_j^2)      where -10 <= l_j <= 0.5, else 0 (the clamp)
//! dL/dc   =  (1/EB) (sigmoid(c) - d)
//! ```
//!
//! The loss and its gradient are written once, as kernels over the engine's [`Backend`] (inputs
//! and targets are standardised on the host and uploaded per batch): [`ProbabilisticEnsemble::fit`]
//! runs on the CPU engine, [`ProbabilisticEnsemble::fit_on`] on any backend. Rollouts download
//! the ensemble's output and draw the next states on the host.

use candle_core::{DType, Tensor};
use orl_nets::Policy;
use orl_nets::engine::backend::{Backend, Cpu, Identity, Map2, Map3, Scalar};
use orl_nets::engine::{Activation, Input, Mlp, Params};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::fit::{Probe, Standardiser, Trained, draw_rows};
use crate::logged::{ActionKind, Logged, obs_tensor};

/// One batched step of an environment model.
pub trait DynamicsModel {
    /// From row-major observations `obs` (`[B * obs_dim]`) and the policy's actions (`[B, act]`
    /// f32 or `[B]` u32): next observations `[B * obs_dim]`, rewards `[B]`, terminations `[B]`.
    fn step(
        &mut self,
        obs: &[f32],
        actions: &Tensor,
        rng: &mut Pcg64Mcg,
    ) -> Result<(Vec<f32>, Vec<f64>, Vec<bool>)>;
}

/// Discounted returns of `rollouts` rollouts of `horizon` steps of `policy` in `model` from each
/// initial state (`[S * obs_dim]`): one mean return per initial state.
#[allow(clippy::too_many_arguments)]
pub fn rollout_values(
    model: &mut dyn DynamicsModel,
    policy: &mut dyn Policy,
    initial: &[f32],
    obs_dim: usize,
    horizon: usize,
    gamma: f64,
    rollouts: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let starts = initial.len() / obs_dim;
    let r = rollouts.max(1);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut s: Vec<f32> = Vec::with_capacity(starts * r * obs_dim);
    for i in 0..starts {
        for _ in 0..r {
            s.extend_from_slice(&initial[i * obs_dim..(i + 1) * obs_dim]);
        }
    }
    let n = starts * r;
    let mut ret = vec![0f64; n];
    let mut alive = vec![true; n];
    let mut disc = 1.0;
    for _ in 0..horizon {
        let live: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
        if live.is_empty() {
            break;
        }
        let sl: Vec<f32> = live
            .iter()
            .flat_map(|&i| s[i * obs_dim..(i + 1) * obs_dim].iter().copied())
            .collect();
        let a = policy.act(&obs_tensor(&sl, obs_dim)?, false)?;
        let (s2, rew, done) = model.step(&sl, &a, &mut rng)?;
        for (j, &i) in live.iter().enumerate() {
            ret[i] += disc * rew[j];
            s[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(&s2[j * obs_dim..(j + 1) * obs_dim]);
            if done[j] {
                alive[i] = false;
            }
        }
        disc *= gamma;
    }
    Ok(ret
        .chunks(r)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect())
}

/// Settings of the learned ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Ensemble members.
    pub members: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Gradient steps.
    pub steps: usize,
    /// Batch size per member.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Rollout horizon `H`; `None`: the dataset's time limit (`Logged::horizon`), so that the
    /// estimate is the time-limited value every estimator reports.
    pub horizon: Option<usize>,
    /// Rollouts per initial state.
    pub rollouts: usize,
}

impl Default for ModelConfig {
    /// MOPO (Yu et al. 2020, appendix): an ensemble of probabilistic networks (7 there, 5 here as
    /// in MBPO's elite count) trained with Adam; widths 200x200x200x200 there, 256x256 here to
    /// keep evaluation fast on CPU; lr 1e-3, batch 256; 10 000 steps, horizon of the data's
    /// episodes and 5 rollouts per start are orl's choices.
    fn default() -> Self {
        Self {
            members: 5,
            hidden: vec![256, 256],
            steps: 10_000,
            batch_size: 256,
            lr: 1e-3,
            horizon: None,
            rollouts: 5,
        }
    }
}

/// The learned probabilistic ensemble, on backend `B` (the CPU engine by default).
pub struct ProbabilisticEnsemble<B: Backend = Cpu> {
    net: Mlp,
    be: B,
    params: B::Params,
    kind: ActionKind,
    obs_dim: usize,
    members: usize,
    inputs: Standardiser,
    outputs: Standardiser,
    /// The rollouts' forward buffers, reused from step to step.
    rollout: Rollout<B>,
    /// Final training loss.
    pub final_loss: f64,
}

impl<B: Backend> std::fmt::Debug for ProbabilisticEnsemble<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbabilisticEnsemble")
            .field("backend", &self.be.name())
            .field("net", &self.net)
            .field("kind", &self.kind)
            .field("members", &self.members)
            .field("final_loss", &self.final_loss)
            .finish_non_exhaustive()
    }
}

const LOG_STD_MIN: f32 = -10.0;
const LOG_STD_MAX: f32 = 0.5;

/// The buffers of one rollout step.
struct Rollout<B: Backend> {
    x: B::Buf,
    cache: B::Cache,
    out: Vec<f32>,
}

impl<B: Backend> Default for Rollout<B> {
    fn default() -> Self {
        Self {
            x: B::Buf::default(),
            cache: B::Cache::default(),
            out: Vec::new(),
        }
    }
}

/// The buffers of one training pass, reused from step to step.
struct Scratch<B: Backend> {
    host_x: Vec<f32>,
    host_y: Vec<f32>,
    host_d: Vec<f32>,
    /// One row's raw input and target before standardisation.
    raw_x: Vec<f32>,
    raw_y: Vec<f32>,
    x: B::Buf,
    y: B::Buf,
    d: B::Buf,
    cache: B::Cache,
    /// The output's mean, raw log-std and logit columns.
    m: B::Buf,
    l: B::Buf,
    c: B::Buf,
    terms: B::Buf,
    rows: B::Buf,
    dm: B::Buf,
    dl: B::Buf,
    dc: B::Buf,
    dml: B::Buf,
    dout: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            host_x: Vec::new(),
            host_y: Vec::new(),
            host_d: Vec::new(),
            raw_x: Vec::new(),
            raw_y: Vec::new(),
            x: B::Buf::default(),
            y: B::Buf::default(),
            d: B::Buf::default(),
            cache: B::Cache::default(),
            m: B::Buf::default(),
            l: B::Buf::default(),
            c: B::Buf::default(),
            terms: B::Buf::default(),
            rows: B::Buf::default(),
            dm: B::Buf::default(),
            dl: B::Buf::default(),
            dc: B::Buf::default(),
            dml: B::Buf::default(),
            dout: B::Buf::default(),
        }
    }
}

/// Appends `x = [s, onehot(a) | a]` of row `i` of `data` (raw, not standardised).
fn push_raw_input(data: &Logged, i: usize, x: &mut Vec<f32>) {
    let od = data.obs_dim;
    x.extend_from_slice(&data.obs[i * od..(i + 1) * od]);
    match data.kind {
        ActionKind::Continuous(d) => x.extend_from_slice(&data.act_f32[i * d..(i + 1) * d]),
        ActionKind::Discrete(n) => {
            x.extend((0..n).map(|a| f32::from(u8::from(a as u32 == data.act_u32[i]))))
        }
    }
}

/// Appends the raw target `[s' - s, r]` of row `i`.
fn push_raw_target(data: &Logged, i: usize, y: &mut Vec<f32>) {
    let od = data.obs_dim;
    y.extend((0..od).map(|j| data.next_obs[i * od + j] - data.obs[i * od + j]));
    y.push(data.rewards[i] as f32);
}

fn in_width(kind: ActionKind, od: usize) -> usize {
    od + match kind {
        ActionKind::Continuous(d) => d,
        ActionKind::Discrete(n) => n,
    }
}

impl ProbabilisticEnsemble {
    /// Fits the ensemble to `data` (seeded) on the CPU engine.
    pub fn fit(data: &Logged, cfg: &ModelConfig, seed: u64) -> Result<Self> {
        Self::fit_on(Cpu, data, cfg, seed)
    }
}

impl<B: Backend> ProbabilisticEnsemble<B> {
    /// Fits the ensemble to `data` (seeded) on backend `be`; the initial parameters and the
    /// batches are those of [`ProbabilisticEnsemble::fit`].
    pub fn fit_on(be: B, data: &Logged, cfg: &ModelConfig, seed: u64) -> Result<Self> {
        if cfg.steps == 0 || cfg.batch_size == 0 || cfg.members == 0 {
            return Err(OpeError::Config(
                "model: members, steps and batch_size must be positive".into(),
            ));
        }
        let od = data.obs_dim;
        let iw = in_width(data.kind, od);
        let ow = od + 1;
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in 0..data.len() {
            push_raw_input(data, i, &mut xs);
            push_raw_target(data, i, &mut ys);
        }
        let (inputs, outputs) = (Standardiser::of(&xs, iw), Standardiser::of(&ys, ow));
        drop((xs, ys));
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut host = Params::new();
        let net = Mlp::ensemble(
            &mut host.builder("model", &mut rng),
            cfg.members,
            iw,
            &cfg.hidden,
            2 * ow + 1,
            Activation::Identity,
        )?;
        let mut t = Trained::new(be, &host, cfg.lr)?;
        let mut m = Self {
            net,
            params: t.be.place(&host)?,
            be: t.be.clone(),
            kind: data.kind,
            obs_dim: od,
            members: cfg.members,
            inputs,
            outputs,
            rollout: Rollout::default(),
            final_loss: f64::NAN,
        };
        let mut sc = Scratch::default();
        let mut idx = Vec::with_capacity(cfg.members * cfg.batch_size);
        for step in 0..cfg.steps {
            draw_rows(&mut rng, data.len(), cfg.members * cfg.batch_size, &mut idx);
            m.final_loss = t.step(
                "dynamics model",
                "negative log-likelihood",
                step,
                |be, p, grads| m.loss_grad(be, p, data, &idx, &mut sc, grads),
            )?;
        }
        m.params = t.params;
        Ok(m)
    }

    /// The loss of the module doc on `rows` (`E * B` of them: member `e` takes the `e`-th
    /// block of `B`) at parameters `p`; its parameter gradients are added into `grads`.
    fn loss_grad(
        &self,
        be: &B,
        p: &B::Params,
        data: &Logged,
        rows: &[usize],
        sc: &mut Scratch<B>,
        grads: &mut B::Buf,
    ) -> Result<f64> {
        let (e, ow) = (self.members, self.obs_dim + 1);
        let b = rows.len() / e;
        sc.host_x.clear();
        sc.host_y.clear();
        sc.host_d.clear();
        for &i in rows {
            sc.raw_x.clear();
            sc.raw_y.clear();
            push_raw_input(data, i, &mut sc.raw_x);
            push_raw_target(data, i, &mut sc.raw_y);
            self.inputs.push(&sc.raw_x, &mut sc.host_x);
            self.outputs.push(&sc.raw_y, &mut sc.host_y);
            sc.host_d.push(f32::from(u8::from(data.terminals[i])));
        }
        be.upload(&sc.host_x, self.inputs.dim(), &mut sc.x)?;
        be.upload(&sc.host_y, ow, &mut sc.y)?;
        be.upload(&sc.host_d, 1, &mut sc.d)?;
        be.mlp_forward(&self.net, p, &sc.x, Input::PerMember, b, &mut sc.cache)?;
        let w = 2 * ow + 1;
        let out = be.mlp_output(&sc.cache);
        be.cols(out, w, 0, ow, &mut sc.m)?;
        be.cols(out, w, ow, ow, &mut sc.l)?;
        be.cols(out, w, 2 * ow, 1, &mut sc.c)?;
        be.map3(&NllTerm, &sc.y, &sc.m, &sc.l, &mut sc.terms)?;
        be.sum_cols(&sc.terms, ow, &mut sc.rows)?;
        let nll = be.map1_sum(&Identity, &sc.rows)?;
        let bce = be.map2_sum(&Bce, &sc.c, &sc.d)?;
        let n = (e * b) as f32;
        be.map3(&NllDm(n), &sc.y, &sc.m, &sc.l, &mut sc.dm)?;
        be.map3(&NllDl(n), &sc.y, &sc.m, &sc.l, &mut sc.dl)?;
        be.map2(&BceDc(n), &sc.c, &sc.d, &mut sc.dc)?;
        be.concat_cols(&sc.dm, ow, &sc.dl, ow, &mut sc.dml)?;
        be.concat_cols(&sc.dml, 2 * ow, &sc.dc, 1, &mut sc.dout)?;
        be.mlp_backward(
            &self.net,
            p,
            &sc.x,
            Input::PerMember,
            &mut sc.cache,
            &sc.dout,
            Some(grads),
            None,
        )?;
        Ok((nll + bce) / f64::from(n))
    }

    /// The loss on `rows` (`members * B` of them, member `e` the `e`-th block) and its
    /// gradients at the current parameters, without stepping (`tests/parity.rs`); the probe's
    /// `target` holds the standardised targets `[E, B, obs + 1]`.
    pub fn probe(&self, data: &Logged, rows: &[usize]) -> Result<Probe> {
        Probe::of(&self.be, &self.params, |grads| {
            let mut sc = Scratch::default();
            let loss = self.loss_grad(&self.be, &self.params, data, rows, &mut sc, grads)?;
            Ok((loss, sc.host_x, sc.host_y))
        })
    }

    /// The ensemble's parameters on the host (names `model.<l>.weight` `[E, in, out]` /
    /// `.bias` `[E, 1, out]`, as a candle [`orl_nets::EnsembleMlp`] under the same prefix).
    pub fn params(&self) -> Result<Params> {
        Ok(self.be.host_params(&self.params)?.into_owned())
    }
}

// ---- the loss's elementwise kernels (one definition for every backend) ----

/// `(z, sigma)` of one output pair: `sigma = exp(clamp(l, -10, 0.5))`, `z = (y - m) / sigma`.
fn z_sigma<S: Scalar>(y: S, m: S, l: S) -> (S, S) {
    let sigma = l.clamp(LOG_STD_MIN, LOG_STD_MAX).exp();
    ((y - m) / sigma.clone(), sigma)
}

/// `z^2 / 2 + ls`.
struct NllTerm;
impl Map3 for NllTerm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, y: S, m: S, l: S) -> S {
        let ls = l.clamp(LOG_STD_MIN, LOG_STD_MAX);
        let z = (y - m) / ls.clone().exp();
        z.clone().scale(0.5) * z + ls
    }
}

/// `softplus(c) - d c`.
struct Bce;
impl Map2 for Bce {
    #[inline(always)]
    fn apply<S: Scalar>(&self, c: S, d: S) -> S {
        c.clone().softplus() - d * c
    }
}

/// `dL/dm = -(1/EB) z / sigma`.
struct NllDm(f32);
impl Map3 for NllDm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, y: S, m: S, l: S) -> S {
        let (z, sigma) = z_sigma(y, m, l);
        (z.scale(-1.0) / sigma).div_by(self.0)
    }
}

/// `dL/dl = (1/EB) (1 - z^2)` where the clamp passes it.
struct NllDl(f32);
impl Map3 for NllDl {
    #[inline(always)]
    fn apply<S: Scalar>(&self, y: S, m: S, l: S) -> S {
        let pass = l.clone().inside(LOG_STD_MIN, LOG_STD_MAX);
        let (z, _) = z_sigma(y, m, l);
        (z.clone() * z).scale(-1.0).shift(1.0).div_by(self.0) * pass
    }
}

/// `dL/dc = (1/EB) (sigmoid(c) - d)`, `sigmoid(c) = 1 / (1 + exp(-c))`.
struct BceDc(f32);
impl Map2 for BceDc {
    #[inline(always)]
    fn apply<S: Scalar>(&self, c: S, d: S) -> S {
        (c.scale(-1.0).exp().shift(1.0).recip() - d).div_by(self.0)
    }
}

impl<B: Backend> DynamicsModel for ProbabilisticEnsemble<B> {
    fn step(
        &mut self,
        obs: &[f32],
        actions: &Tensor,
        rng: &mut Pcg64Mcg,
    ) -> Result<(Vec<f32>, Vec<f64>, Vec<bool>)> {
        let od = self.obs_dim;
        let b = obs.len() / od;
        let a: Vec<f32> = match self.kind {
            ActionKind::Continuous(_) => actions.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            ActionKind::Discrete(n) => actions
                .to_dtype(DType::U32)?
                .flatten_all()?
                .to_vec1::<u32>()?
                .into_iter()
                .flat_map(|i| (0..n).map(move |k| if k as u32 == i { 1.0 } else { 0.0 }))
                .collect(),
        };
        let aw = a.len() / b.max(1);
        if od + aw != self.inputs.dim() {
            return Err(OpeError::Mismatch(format!(
                "dynamics model: inputs of width {} (observation {od} + action {aw}), the model was fitted on {}",
                od + aw,
                self.inputs.dim()
            )));
        }
        let mut x = Vec::with_capacity(b * (od + aw));
        let mut raw = Vec::with_capacity(od + aw);
        for i in 0..b {
            raw.clear();
            raw.extend_from_slice(&obs[i * od..(i + 1) * od]);
            raw.extend_from_slice(&a[i * aw..(i + 1) * aw]);
            self.inputs.push(&raw, &mut x);
        }
        // One input shared by every member: output [E, B, 2 ow + 1].
        let r = &mut self.rollout;
        self.be.upload(&x, od + aw, &mut r.x)?;
        self.be.mlp_forward(
            &self.net,
            &self.params,
            &r.x,
            Input::Shared,
            b,
            &mut r.cache,
        )?;
        self.be.download(self.be.mlp_output(&r.cache), &mut r.out)?;
        let out = &self.rollout.out;
        let ow = od + 1;
        let w = 2 * ow + 1;
        let (mut s2, mut r, mut done) = (
            Vec::with_capacity(b * od),
            Vec::with_capacity(b),
            Vec::with_capacity(b),
        );
        for i in 0..b {
            let e = rng.random_range(0..self.members);
            let f = &out[(e * b + i) * w..(e * b + i + 1) * w];
            for j in 0..ow {
                let z: f32 = gaussian(rng);
                let mean = f[j] * self.outputs.std[j] + self.outputs.mean[j];
                let std = f[ow + j].clamp(LOG_STD_MIN, LOG_STD_MAX).exp() * self.outputs.std[j];
                let v = mean + std * z;
                if j < od {
                    s2.push(obs[i * od + j] + v);
                } else {
                    r.push(f64::from(v));
                }
            }
            done.push(f[2 * ow] > 0.0);
        }
        Ok((s2, r, done))
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut Pcg64Mcg) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
