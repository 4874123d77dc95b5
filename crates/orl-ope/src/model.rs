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

use candle_core::{DType, Tensor};
use orl_nets::engine::{Activation, FlatAdam, Input, Mlp, MlpCache, Params};
use orl_nets::{AdamConfig, Policy};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::fit::{Probe, Standardiser, check_finite, draw_rows};
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

/// The learned probabilistic ensemble.
#[derive(Debug)]
pub struct ProbabilisticEnsemble {
    net: Mlp,
    params: Params,
    kind: ActionKind,
    obs_dim: usize,
    members: usize,
    inputs: Standardiser,
    outputs: Standardiser,
    /// The rollouts' forward buffers, reused from step to step.
    rollout: MlpCache,
    /// Final training loss.
    pub final_loss: f64,
}

const LOG_STD_MIN: f32 = -10.0;
const LOG_STD_MAX: f32 = 0.5;

/// `log(1 + exp(x))`, stably.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The buffers of one pass, reused from step to step.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    y: Vec<f32>,
    /// One row's raw input and target before standardisation.
    raw_x: Vec<f32>,
    raw_y: Vec<f32>,
    cache: MlpCache,
}

impl ProbabilisticEnsemble {
    /// Appends `x = [s, onehot(a) | a]` of row `i` of `data` (raw, not standardised).
    fn push_raw_input(data: &Logged, i: usize, x: &mut Vec<f32>) {
        let od = data.obs_dim;
        x.extend_from_slice(&data.obs[i * od..(i + 1) * od]);
        match data.kind {
            ActionKind::Continuous(d) => x.extend_from_slice(&data.act_f32[i * d..(i + 1) * d]),
            ActionKind::Discrete(n) => x.extend((0..n).map(|a| {
                if a as u32 == data.act_u32[i] {
                    1.0
                } else {
                    0.0
                }
            })),
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

    /// Fits the ensemble to `data` (seeded).
    pub fn fit(data: &Logged, cfg: &ModelConfig, seed: u64) -> Result<Self> {
        if cfg.steps == 0 || cfg.batch_size == 0 || cfg.members == 0 {
            return Err(OpeError::Config(
                "model: members, steps and batch_size must be positive".into(),
            ));
        }
        let od = data.obs_dim;
        let iw = Self::in_width(data.kind, od);
        let ow = od + 1;
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in 0..data.len() {
            Self::push_raw_input(data, i, &mut xs);
            Self::push_raw_target(data, i, &mut ys);
        }
        let (inputs, outputs) = (Standardiser::of(&xs, iw), Standardiser::of(&ys, ow));
        drop((xs, ys));
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut params = Params::new();
        let net = Mlp::ensemble(
            &mut params.builder("model", &mut rng),
            cfg.members,
            iw,
            &cfg.hidden,
            2 * ow + 1,
            Activation::Identity,
        )?;
        let mut opt = FlatAdam::new(&params, AdamConfig::with_lr(cfg.lr));
        let mut m = Self {
            net,
            params,
            kind: data.kind,
            obs_dim: od,
            members: cfg.members,
            inputs,
            outputs,
            rollout: MlpCache::new(),
            final_loss: f64::NAN,
        };
        let mut sc = Scratch::default();
        let mut idx = Vec::with_capacity(cfg.members * cfg.batch_size);
        for step in 0..cfg.steps {
            draw_rows(&mut rng, data.len(), cfg.members * cfg.batch_size, &mut idx);
            let loss = m.loss_grad(data, &idx, &mut sc, opt.zero_grad());
            m.final_loss = check_finite(loss, "dynamics model", "negative log-likelihood", step)?;
            opt.step(&mut m.params)?;
        }
        Ok(m)
    }

    /// The loss of the module doc on `rows` (`E * B` of them: member `e` takes the `e`-th
    /// block of `B`); its parameter gradients are added into `grads`.
    fn loss_grad(&self, data: &Logged, rows: &[usize], sc: &mut Scratch, grads: &mut [f32]) -> f64 {
        let (e, ow) = (self.members, self.obs_dim + 1);
        let b = rows.len() / e;
        sc.x.clear();
        sc.y.clear();
        for &i in rows {
            sc.raw_x.clear();
            sc.raw_y.clear();
            Self::push_raw_input(data, i, &mut sc.raw_x);
            Self::push_raw_target(data, i, &mut sc.raw_y);
            self.inputs.push(&sc.raw_x, &mut sc.x);
            self.outputs.push(&sc.raw_y, &mut sc.y);
        }
        self.net
            .forward(&self.params, &sc.x, Input::PerMember, b, &mut sc.cache);
        let n = (e * b) as f32;
        let w = 2 * ow + 1;
        let (out, dout) = sc.cache.output_and_dout();
        let (mut nll, mut bce) = (0f64, 0f64);
        for (r, &i) in rows.iter().enumerate() {
            let f = &out[r * w..(r + 1) * w];
            let g = &mut dout[r * w..(r + 1) * w];
            let y = &sc.y[r * ow..(r + 1) * ow];
            let mut row = 0f32;
            for j in 0..ow {
                let raw = f[ow + j];
                let ls = raw.clamp(LOG_STD_MIN, LOG_STD_MAX);
                let sigma = ls.exp();
                let z = (y[j] - f[j]) / sigma;
                row += 0.5 * z * z + ls;
                g[j] = -z / sigma / n;
                g[ow + j] = if (LOG_STD_MIN..=LOG_STD_MAX).contains(&raw) {
                    (1.0 - z * z) / n
                } else {
                    0.0
                };
            }
            nll += f64::from(row);
            let c = f[2 * ow];
            let d = if data.terminals[i] { 1.0 } else { 0.0 };
            bce += f64::from(softplus(c) - d * c);
            g[2 * ow] = (1.0 / (1.0 + (-c).exp()) - d) / n;
        }
        self.net.backward(
            &self.params,
            &sc.x,
            Input::PerMember,
            &mut sc.cache,
            Some(grads),
            None,
        );
        (nll + bce) / f64::from(n)
    }

    /// The loss on `rows` (`members * B` of them, member `e` the `e`-th block) and its
    /// gradients at the current parameters, without stepping (`tests/parity.rs`); the probe's
    /// `target` holds the standardised targets `[E, B, obs + 1]`.
    pub fn probe(&self, data: &Logged, rows: &[usize]) -> Probe {
        Probe::of(&self.params, |grads| {
            let mut sc = Scratch::default();
            let loss = self.loss_grad(data, rows, &mut sc, grads);
            (loss, sc.x, sc.y)
        })
    }

    /// The ensemble's parameters (names `model.<l>.weight` `[E, in, out]` / `.bias`
    /// `[E, 1, out]`, as a candle [`orl_nets::EnsembleMlp`] under the same prefix).
    pub fn params(&self) -> &Params {
        &self.params
    }
}

impl DynamicsModel for ProbabilisticEnsemble {
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
        self.net
            .forward(&self.params, &x, Input::Shared, b, &mut self.rollout);
        let out = self.rollout.output();
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
