//! Adam / AdamW over one flat [`Params`] buffer, in place (the engine's [`crate::Adam`]).
//!
//! ```text
//! g   <- grad * min(1, max_norm / ||grad||_2)         (if clipping)
//! m   <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
//! p   <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) - lr wd p
//! ```
//!
//! One pass over the buffer per step; the gradient buffer lives here too (zeroed by
//! [`FlatAdam::zero_grad`], filled by the networks' backward passes). Moments are saved under
//! `<prefix>m.<param>` / `<prefix>v.<param>` as [`crate::Adam`] saves them, so checkpoints of
//! either load into the other.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::adam::{AdamConfig, CosineSchedule};
use crate::engine::params::{Params, Segment};
use crate::engine::simd;
use crate::error::{NetError, Result};

/// Adam over one [`Params`] buffer.
#[derive(Debug, Clone)]
pub struct FlatAdam {
    cfg: AdamConfig,
    segments: Vec<Segment>,
    m: Vec<f32>,
    v: Vec<f32>,
    grad: Vec<f32>,
    t: usize,
    schedule: Option<CosineSchedule>,
}

impl FlatAdam {
    /// An optimizer over every parameter of `params`, moments zero.
    pub fn new(params: &Params, cfg: AdamConfig) -> Self {
        let n = params.len();
        Self {
            cfg,
            segments: params.segments().to_vec(),
            m: vec![0.0; n],
            v: vec![0.0; n],
            grad: vec![0.0; n],
            t: 0,
            schedule: None,
        }
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
    /// Zeroes the gradient buffer and returns it for the backward passes to add into.
    pub fn zero_grad(&mut self) -> &mut [f32] {
        self.grad.iter_mut().for_each(|g| *g = 0.0);
        &mut self.grad
    }
    /// The gradient buffer itself (the CPU backend's gradient type).
    pub(crate) fn grad_buf(&self) -> &Vec<f32> {
        &self.grad
    }
    /// The gradient buffer itself, mutable.
    pub(crate) fn grad_buf_mut(&mut self) -> &mut Vec<f32> {
        &mut self.grad
    }
    /// The segments it was built for.
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
    /// The first and second moments.
    pub(crate) fn moments(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }
    /// The settings.
    pub(crate) fn config(&self) -> &AdamConfig {
        &self.cfg
    }
    /// Counts a step taken elsewhere (the candle backend's): returns this step's learning rate
    /// and the new step count, as [`FlatAdam::step`] uses them.
    pub(crate) fn begin_step(&mut self) -> (f64, usize) {
        let lr = self.lr();
        self.t += 1;
        (lr, self.t)
    }
    /// The gradient buffer (as the last backward passes left it).
    pub fn grad(&self) -> &[f32] {
        &self.grad
    }
    /// The gradient buffer, mutable.
    pub fn grad_mut(&mut self) -> &mut [f32] {
        &mut self.grad
    }
    /// One step of `params` from the gradient buffer. Returns the global gradient norm
    /// (before clipping) when clipping is configured; fails on a non-finite norm then.
    pub fn step(&mut self, params: &mut Params) -> Result<Option<f64>> {
        let lr = self.lr();
        self.t += 1;
        let (scale, norm) = match self.cfg.max_grad_norm {
            Some(max) => {
                let sq: f64 = self.grad.iter().map(|&g| f64::from(g) * f64::from(g)).sum();
                let norm = sq.sqrt();
                (clip_scale(norm, max)?, Some(norm))
            }
            None => (1.0, None),
        };
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        let (scale, b1f, b2f) = (scale as f32, b1 as f32, b2 as f32);
        let (c1, c2) = ((1.0 - b1) as f32, (1.0 - b2) as f32);
        let step = (lr / bc1) as f32;
        let inv_bc2 = (1.0 / bc2) as f32;
        let eps = self.cfg.eps as f32;
        let decay = (lr * self.cfg.weight_decay) as f32;
        let p = params.data_mut();
        let (ms, vs, gs) = (&mut self.m, &mut self.v, &self.grad);
        simd(
            #[inline(always)]
            || {
                for (((p, m), v), &g) in p.iter_mut().zip(ms.iter_mut()).zip(vs.iter_mut()).zip(gs)
                {
                    let g = g * scale;
                    *m = *m * b1f + g * c1;
                    *v = *v * b2f + g * g * c2;
                    let update = *m * step / ((*v * inv_bc2).sqrt() + eps);
                    *p = *p - update - *p * decay;
                }
            },
        );
        Ok(norm)
    }
    /// Moment tensors named `<prefix>m.<param>` and `<prefix>v.<param>`.
    pub fn named_state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.segments {
            for (which, buf) in [("m", &self.m), ("v", &self.v)] {
                if let Ok(t) = Tensor::from_slice(
                    &buf[s.offset..s.offset + s.len],
                    s.shape.as_slice(),
                    &Device::Cpu,
                ) {
                    out.push((format!("{prefix}{which}.{}", s.name), t));
                }
            }
        }
        out
    }
    /// Restores moments saved by [`FlatAdam::named_state`] (or [`crate::Adam`]) and the step
    /// counter `t`.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        t: usize,
    ) -> Result<()> {
        for s in &self.segments {
            for (which, buf) in [("m", &mut self.m), ("v", &mut self.v)] {
                let key = format!("{prefix}{which}.{}", s.name);
                let x = tensors
                    .get(&key)
                    .ok_or_else(|| NetError::Config(format!("missing tensor `{key}`")))?;
                if x.dims() != s.shape.as_slice() {
                    return Err(NetError::Config(format!(
                        "tensor `{key}` has shape {:?}, expected {:?}",
                        x.dims(),
                        s.shape
                    )));
                }
                let vals: Vec<f32> = x
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1()?;
                buf[s.offset..s.offset + s.len].copy_from_slice(&vals);
            }
        }
        self.t = t;
        Ok(())
    }
}

/// The factor that clips a gradient of global L2 norm `norm` to `max` (1 when it is within),
/// or an error when the norm is not finite. Shared by [`FlatAdam::step`] and the candle
/// backend's Adam.
pub(crate) fn clip_scale(norm: f64, max: f64) -> Result<f64> {
    if !norm.is_finite() {
        return Err(NetError::NonFinite {
            name: "gradient norm".into(),
            value: norm as f32,
        });
    }
    Ok(if norm > max { max / (norm + 1e-6) } else { 1.0 })
}
