//! Adam / AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) with optional gradient clipping by
//! global norm and an optional cosine learning-rate schedule. The moment estimates are kept as
//! named tensors so that checkpoints restore an optimizer exactly (resume equals an
//! uninterrupted run).
//!
//! ```text
//! g   <- grad * min(1, max_norm / ||grad||_2)         (if clipping)
//! m   <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
//! p   <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) - lr wd p
//! ```

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{NetError, Result};
use crate::store::ParamStore;

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// `beta1`.
    pub beta1: f64,
    /// `beta2`.
    pub beta2: f64,
    /// `epsilon`.
    pub eps: f64,
    /// Decoupled weight decay (AdamW); 0 gives plain Adam.
    pub weight_decay: f64,
    /// Clip the gradient's global L2 norm to this value, if set.
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamConfig {
    /// PyTorch's `torch.optim.Adam` defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no decay),
    /// which the papers' reference code uses unless it says otherwise.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: None,
        }
    }
}

impl AdamConfig {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn with_lr(lr: f64) -> Self {
        Self {
            lr,
            ..Self::default()
        }
    }
}

/// Cosine decay of the learning rate from `lr` to 0 over `total_steps` (IQL's actor schedule,
/// `CosineAnnealingLR(T_max = max_steps)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// Steps until the rate reaches 0.
    pub total_steps: usize,
}

impl CosineSchedule {
    /// Multiplier of the base rate at `step`.
    pub fn factor(&self, step: usize) -> f64 {
        let t = (step.min(self.total_steps)) as f64 / self.total_steps.max(1) as f64;
        0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// Adam over the parameters of one or more [`ParamStore`]s.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    schedule: Option<CosineSchedule>,
}

impl Adam {
    /// An optimizer over every parameter of `store`.
    pub fn new(store: &ParamStore, cfg: AdamConfig) -> Result<Self> {
        let params: Vec<(String, Var)> = store
            .vars()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let m = params
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let v = params
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            cfg,
            params,
            m,
            v,
            t: 0,
            schedule: None,
        })
    }
    /// Adds a cosine schedule.
    pub fn with_schedule(mut self, schedule: CosineSchedule) -> Self {
        self.schedule = Some(schedule);
        self
    }
    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.t
    }
    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.cfg.lr * self.schedule.map_or(1.0, |s| s.factor(self.t))
    }
    /// Back-propagates `loss` and takes one step; returns the gradient norm before clipping
    /// when clipping is configured.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<Option<f64>> {
        let grads = loss.backward()?;
        self.step(&grads)
    }
    /// One step from computed gradients; parameters without a gradient are left alone.
    /// Returns the global gradient norm (before clipping) when clipping is configured (computing
    /// it costs a reduction per parameter, so it is skipped otherwise).
    pub fn step(&mut self, grads: &GradStore) -> Result<Option<f64>> {
        let lr = self.lr();
        self.t += 1;
        let gs: Vec<Option<&Tensor>> = self
            .params
            .iter()
            .map(|(_, p)| grads.get(p.as_tensor()))
            .collect();
        let (scale, norm) = match self.cfg.max_grad_norm {
            Some(max) => {
                let mut sq = 0.0f64;
                for g in gs.iter().flatten() {
                    sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
                }
                let norm = sq.sqrt();
                if !norm.is_finite() {
                    return Err(NetError::NonFinite {
                        name: "gradient norm".into(),
                        value: norm as f32,
                    });
                }
                (
                    if norm > max { max / (norm + 1e-6) } else { 1.0 },
                    Some(norm),
                )
            }
            None => (1.0, None),
        };
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for (i, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if scale != 1.0 {
                (g * scale)?
            } else {
                g.clone()
            };
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let p = self.params[i].1.as_tensor();
            let denom = ((&v * (1.0 / bc2))?.sqrt()? + self.cfg.eps)?;
            let update = ((&m * (lr / bc1))? / denom)?;
            let mut new = (p - update)?;
            if self.cfg.weight_decay > 0.0 {
                new = (new - (p * (lr * self.cfg.weight_decay))?)?;
            }
            self.params[i].1.set(&new.detach())?;
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(norm)
    }
    /// Moment tensors named `<prefix>m.<param>` and `<prefix>v.<param>`; the step counter
    /// ([`Adam::steps`]) goes in the checkpoint's metadata.
    pub fn named_state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{prefix}m.{name}"), self.m[i].clone()));
            out.push((format!("{prefix}v.{name}"), self.v[i].clone()));
        }
        out
    }
    /// Restores moments saved by [`Adam::named_state`] and the step counter `t`.
    pub fn load_state(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        prefix: &str,
        t: usize,
    ) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (which, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}{which}.{name}");
                let x = tensors
                    .get(&key)
                    .ok_or_else(|| NetError::Config(format!("missing tensor `{key}`")))?;
                if x.dims() != p.dims() {
                    return Err(NetError::Config(format!(
                        "tensor `{key}` has shape {:?}, expected {:?}",
                        x.dims(),
                        p.dims()
                    )));
                }
                *slot = x.to_device(p.device())?;
            }
        }
        self.t = t;
        Ok(())
    }
}
