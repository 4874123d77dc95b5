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
//! its own random batches.

use candle_core::{D, DType, Device, Tensor};
use orl_nets::{Adam, AdamConfig, EnsembleMlp, ParamStore, Policy, finite_scalar};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::behavior::standardiser;
use crate::error::{OpeError, Result};
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
    net: EnsembleMlp,
    _store: ParamStore,
    kind: ActionKind,
    obs_dim: usize,
    members: usize,
    in_mean: Tensor,
    in_std: Tensor,
    out_mean: Tensor,
    out_std: Tensor,
    /// Final training loss.
    pub final_loss: f64,
}

const LOG_STD_MIN: f32 = -10.0;
const LOG_STD_MAX: f32 = 0.5;

impl ProbabilisticEnsemble {
    /// Rows of `x = [s, onehot(a) | a]` for `rows` of `data`.
    fn inputs(data: &Logged, rows: &[usize]) -> Vec<f32> {
        let od = data.obs_dim;
        let mut x = Vec::new();
        for &i in rows {
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
        x
    }
    /// Rows of the targets `[ds, r]`.
    fn targets(data: &Logged, rows: &[usize]) -> Vec<f32> {
        let od = data.obs_dim;
        let mut y = Vec::new();
        for &i in rows {
            for j in 0..od {
                y.push(data.next_obs[i * od + j] - data.obs[i * od + j]);
            }
            y.push(data.rewards[i] as f32);
        }
        y
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
        let all: Vec<usize> = (0..data.len()).collect();
        let (in_mean, in_std) = standardiser(&Self::inputs(data, &all), iw)?;
        let (out_mean, out_std) = standardiser(&Self::targets(data, &all), ow)?;
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut store = ParamStore::new(Device::Cpu);
        let net = EnsembleMlp::new(
            &mut store.builder("model", &mut rng),
            cfg.members,
            iw,
            &cfg.hidden,
            2 * ow + 1,
        )?;
        let mut opt = Adam::new(&store, AdamConfig::with_lr(cfg.lr))?;
        let mut m = Self {
            net,
            _store: store,
            kind: data.kind,
            obs_dim: od,
            members: cfg.members,
            in_mean,
            in_std,
            out_mean,
            out_std,
            final_loss: f64::NAN,
        };
        let (e, b, n) = (cfg.members, cfg.batch_size, data.len());
        for step in 0..cfg.steps {
            let idx: Vec<usize> = (0..e * b).map(|_| rng.random_range(0..n)).collect();
            let x = Tensor::from_vec(Self::inputs(data, &idx), (e, b, iw), &Device::Cpu)?;
            let y = Tensor::from_vec(Self::targets(data, &idx), (e, b, ow), &Device::Cpu)?
                .broadcast_sub(&m.out_mean)?
                .broadcast_div(&m.out_std)?;
            let d = Tensor::from_vec(
                idx.iter()
                    .map(|&i| if data.terminals[i] { 1f32 } else { 0.0 })
                    .collect::<Vec<_>>(),
                (e, b),
                &Device::Cpu,
            )?;
            let out = m.forward(&x)?;
            let mean = out.narrow(2, 0, ow)?;
            let ls = out.narrow(2, ow, ow)?.clamp(LOG_STD_MIN, LOG_STD_MAX)?;
            let logit = out.narrow(2, 2 * ow, 1)?.squeeze(2)?;
            let nll = ((((y - mean)? / ls.exp()?)?.sqr()? * 0.5)? + ls)?
                .sum(D::Minus1)?
                .mean_all()?;
            // Binary cross-entropy with logits: softplus(c) - d c.
            let bce = (orl_nets::softplus(&logit)? - (d * &logit)?)?.mean_all()?;
            let loss = (nll + bce)?;
            let v = finite_scalar("model", &loss).map_err(|_| OpeError::NonFinite {
                model: "dynamics model",
                name: "negative log-likelihood".into(),
                step,
            })?;
            m.final_loss = f64::from(v);
            opt.backward_step(&loss)?;
        }
        Ok(m)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x
            .broadcast_sub(&self.in_mean)?
            .broadcast_div(&self.in_std)?;
        Ok(self.net.forward(&x)?)
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
        let mut x = Vec::with_capacity(b * (od + aw));
        for i in 0..b {
            x.extend_from_slice(&obs[i * od..(i + 1) * od]);
            x.extend_from_slice(&a[i * aw..(i + 1) * aw]);
        }
        let x = Tensor::from_vec(x, (1, b, od + aw), &Device::Cpu)?
            .broadcast_as((self.members, b, od + aw))?
            .contiguous()?;
        let out = self.forward(&x)?; // [E, B, 2 ow + 1]
        let ow = od + 1;
        let mean = out
            .narrow(2, 0, ow)?
            .broadcast_mul(&self.out_std)?
            .broadcast_add(&self.out_mean)?
            .to_vec3::<f32>()?;
        let std = out
            .narrow(2, ow, ow)?
            .clamp(LOG_STD_MIN, LOG_STD_MAX)?
            .exp()?
            .broadcast_mul(&self.out_std)?
            .to_vec3::<f32>()?;
        let logit = out.narrow(2, 2 * ow, 1)?.squeeze(2)?.to_vec2::<f32>()?;
        let (mut s2, mut r, mut done) = (
            Vec::with_capacity(b * od),
            Vec::with_capacity(b),
            Vec::with_capacity(b),
        );
        for i in 0..b {
            let e = rng.random_range(0..self.members);
            for j in 0..ow {
                let z: f32 = gaussian(rng);
                let v = mean[e][i][j] + std[e][i][j] * z;
                if j < od {
                    s2.push(obs[i * od + j] + v);
                } else {
                    r.push(f64::from(v));
                }
            }
            done.push(logit[e][i] > 0.0);
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
