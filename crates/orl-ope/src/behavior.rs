//! The behaviour policy estimated by maximum likelihood on the logged data, as regression
//! importance sampling prescribes (Hanna, Niekum & Stone 2019, "Importance Sampling Policy
//! Evaluation with an Estimated Behavior Policy", ICML, section 4: `mu_hat = argmax_mu
//! sum_(s,a) in D log mu(a|s)` over the same data that is evaluated).
//!
//! - discrete: a categorical MLP, `log mu(a|s) = log_softmax(mlp(s))_a`, cross-entropy loss;
//! - continuous: a Gaussian MLP with state-dependent mean and log-std (clamped to `[-5, 2]`),
//!   `log mu(a|s) = sum_j log N(a_j; m_j(s), sigma_j(s))`, negative log-likelihood loss.
//!
//! Observations are standardised with the data's mean and std before the network.

use candle_core::{D, DType, Device, Tensor};
use orl_nets::{Adam, AdamConfig, Mlp, ParamStore, finite_scalar, normal_log_prob};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::logged::{ActionKind, Logged};

/// Settings of the behaviour model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BehaviorConfig {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Gradient steps.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for BehaviorConfig {
    /// Hanna et al. (2019) fit their continuous behaviour models with Adam on two hidden layers;
    /// the widths, 5 000 steps, batch 256 and lr 1e-3 (PyTorch's Adam default) are orl's choice,
    /// enough for the likelihood to level off on the classic-control datasets.
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            steps: 5_000,
            batch_size: 256,
            lr: 1e-3,
        }
    }
}

/// A fitted behaviour policy.
#[derive(Debug)]
pub struct BehaviorModel {
    net: Mlp,
    kind: ActionKind,
    mean: Tensor,
    std: Tensor,
    /// Final training loss (mean negative log-likelihood).
    pub final_nll: f64,
}

/// Per-dimension mean and std (`+1e-3`) of row-major `x` with `dim` columns, as `[1, dim]`.
pub(crate) fn standardiser(x: &[f32], dim: usize) -> Result<(Tensor, Tensor)> {
    let n = (x.len() / dim).max(1) as f64;
    let mut mean = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += f64::from(v);
            sq[j] += f64::from(v) * f64::from(v);
        }
    }
    let m: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
    let s: Vec<f32> = sq
        .iter()
        .zip(&mean)
        .map(|(q, s)| (((q / n) - (s / n).powi(2)).max(0.0).sqrt() + 1e-3) as f32)
        .collect();
    Ok((
        Tensor::from_vec(m, (1, dim), &Device::Cpu)?,
        Tensor::from_vec(s, (1, dim), &Device::Cpu)?,
    ))
}

impl BehaviorModel {
    /// Fits `mu_hat` to `data` (seeded).
    pub fn fit(data: &Logged, cfg: &BehaviorConfig, seed: u64) -> Result<Self> {
        if cfg.steps == 0 || cfg.batch_size == 0 {
            return Err(OpeError::Config(
                "behaviour model: steps and batch_size must be positive".into(),
            ));
        }
        let od = data.obs_dim;
        let (mean, std) = standardiser(&data.obs, od)?;
        let out = match data.kind {
            ActionKind::Continuous(d) => 2 * d,
            ActionKind::Discrete(n) => n,
        };
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut store = ParamStore::new(Device::Cpu);
        let net = Mlp::new(
            &mut store.builder("behavior", &mut rng),
            od,
            &cfg.hidden,
            out,
        )?;
        let mut opt = Adam::new(&store, AdamConfig::with_lr(cfg.lr))?;
        let mut model = Self {
            net,
            kind: data.kind,
            mean,
            std,
            final_nll: f64::NAN,
        };
        let n = data.len();
        for step in 0..cfg.steps {
            let idx: Vec<usize> = (0..cfg.batch_size)
                .map(|_| rng.random_range(0..n))
                .collect();
            let obs: Vec<f32> = idx
                .iter()
                .flat_map(|&i| data.obs[i * od..(i + 1) * od].iter().copied())
                .collect();
            let s = Tensor::from_vec(obs, (idx.len(), od), &Device::Cpu)?;
            let a = match data.kind {
                ActionKind::Continuous(d) => Tensor::from_vec(
                    idx.iter()
                        .flat_map(|&i| data.act_f32[i * d..(i + 1) * d].iter().copied())
                        .collect::<Vec<f32>>(),
                    (idx.len(), d),
                    &Device::Cpu,
                )?,
                ActionKind::Discrete(_) => Tensor::from_vec(
                    idx.iter().map(|&i| data.act_u32[i]).collect::<Vec<u32>>(),
                    idx.len(),
                    &Device::Cpu,
                )?,
            };
            let loss = model.log_prob_tensor(&s, &a)?.mean_all()?.neg()?;
            let v = finite_scalar("nll", &loss).map_err(|_| OpeError::NonFinite {
                model: "behaviour model",
                name: "negative log-likelihood".into(),
                step,
            })?;
            model.final_nll = f64::from(v);
            opt.backward_step(&loss)?;
        }
        Ok(model)
    }

    fn log_prob_tensor(&self, s: &Tensor, a: &Tensor) -> Result<Tensor> {
        let x = s.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let out = self.net.forward(&x)?;
        Ok(match self.kind {
            ActionKind::Continuous(d) => {
                let m = out.narrow(1, 0, d)?;
                let ls = out.narrow(1, d, d)?.clamp(-5f32, 2f32)?;
                normal_log_prob(a, &m, &ls)?
            }
            ActionKind::Discrete(_) => {
                let lp = candle_nn::ops::log_softmax(&out, D::Minus1)?;
                lp.gather(&a.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?
                    .squeeze(1)?
            }
        })
    }

    /// `log mu_hat(a_i|s_i)` for every logged row.
    pub fn log_probs(&self, data: &Logged) -> Result<Vec<f64>> {
        let od = data.obs_dim;
        let mut out = Vec::with_capacity(data.len());
        let mut start = 0;
        while start < data.len() {
            let end = (start + 4096).min(data.len());
            let s = Tensor::from_slice(
                &data.obs[start * od..end * od],
                (end - start, od),
                &Device::Cpu,
            )?;
            let a = data.actions_tensor(start..end)?;
            out.extend(
                self.log_prob_tensor(&s, &a)?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?,
            );
            start = end;
        }
        Ok(out)
    }
}
