//! What the three fitted networks of `orl-ope` (the behaviour model, FQE, the dynamics
//! ensemble) share: input standardisation, random row batches and the [`Probe`] of a loss.
//!
//! The networks themselves run on `orl-nets`' training engine ([`orl_nets::engine`]):
//! explicit forward and backward passes over flat buffers reused from step to step, so a fit
//! spends its time in the matrix products rather than in per-op allocation. Each model file
//! writes its loss and the loss's gradient with respect to the network output once, with the
//! derivation in its doc, against the engine's [`Backend`] trait: the same code runs on the
//! CPU engine ([`Cpu`](orl_nets::engine::backend::Cpu), the default) and on candle tensors
//! ([`Candle`](orl_nets::engine::backend::Candle), any candle device). `tests/parity.rs` checks
//! every loss and gradient against candle's autograd on both backends.

use orl_nets::AdamConfig;
use orl_nets::engine::Params;
use orl_nets::engine::backend::Backend;
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};

/// Per-column mean and standard deviation (`+ 1e-3`) of a row-major matrix, and
/// `x -> (x - mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Standardiser {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardiser {
    /// The statistics of row-major `x` with `dim` columns (accumulated in `f64`).
    pub fn of(x: &[f32], dim: usize) -> Self {
        let n = (x.len() / dim.max(1)).max(1) as f64;
        let mut mean = vec![0f64; dim];
        let mut sq = vec![0f64; dim];
        for row in x.chunks_exact(dim.max(1)) {
            for (j, &v) in row.iter().enumerate() {
                mean[j] += f64::from(v);
                sq[j] += f64::from(v) * f64::from(v);
            }
        }
        Self {
            mean: mean.iter().map(|s| (s / n) as f32).collect(),
            std: sq
                .iter()
                .zip(&mean)
                .map(|(q, s)| (((q / n) - (s / n).powi(2)).max(0.0).sqrt() + 1e-3) as f32)
                .collect(),
        }
    }
    /// Width.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }
    /// Appends the standardised `row` to `out`.
    pub fn push(&self, row: &[f32], out: &mut Vec<f32>) {
        out.extend(
            row.iter()
                .zip(self.mean.iter().zip(&self.std))
                .map(|(&x, (&m, &s))| (x - m) / s),
        );
    }
}

/// `count` row indices drawn uniformly from `0..n` into `idx` (cleared first).
pub(crate) fn draw_rows(rng: &mut Pcg64Mcg, n: usize, count: usize, idx: &mut Vec<usize>) {
    idx.clear();
    idx.extend((0..count).map(|_| rng.random_range(0..n)));
}

/// Fails with [`OpeError::NonFinite`] unless `loss` is finite.
pub(crate) fn check_finite(
    loss: f64,
    model: &'static str,
    name: &'static str,
    step: usize,
) -> Result<f64> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(OpeError::NonFinite {
            model,
            name: name.into(),
            step,
        })
    }
}

/// One loss of a fitted model and its parameter gradients at the current parameters, on given
/// rows, without stepping: what `tests/parity.rs` compares with candle's autograd.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The loss.
    pub loss: f64,
    /// `(parameter name, dL/dparameter)`, names as in [`Params::named_tensors`].
    pub grads: Vec<(String, Vec<f32>)>,
    /// The network's input rows, row-major, exactly as the network saw them (standardised).
    pub input: Vec<f32>,
    /// The regression target of each row where the loss has one (FQE's `y`), else empty.
    pub target: Vec<f32>,
}

impl Probe {
    /// Runs `loss_grad` on a zeroed gradient buffer laid out as `params` on backend `be`; it
    /// returns the loss, the input rows and the targets (or an empty vector).
    pub(crate) fn of<B: Backend>(
        be: &B,
        params: &B::Params,
        loss_grad: impl FnOnce(&mut B::Buf) -> Result<(f64, Vec<f32>, Vec<f32>)>,
    ) -> Result<Self> {
        let mut grad = B::Buf::default();
        be.zeros_for(params, &mut grad)?;
        let (loss, input, target) = loss_grad(&mut grad)?;
        let mut host = Vec::new();
        be.download(&grad, &mut host)?;
        Ok(Self {
            loss,
            grads: be.host_params(params)?.named_values(&host),
            input,
            target,
        })
    }
}

/// One network of a fitted model with its Adam state, on backend `B`: what the fit loops of
/// the three models share.
pub(crate) struct Trained<B: Backend> {
    pub be: B,
    pub params: B::Params,
    opt: B::Adam,
}

impl<B: Backend> Trained<B> {
    /// `host`'s parameters placed on `be`, with Adam at learning rate `lr`.
    pub fn new(be: B, host: &Params, lr: f64) -> Result<Self> {
        let params = be.place(host)?;
        let opt = be.adam(&params, AdamConfig::with_lr(lr), None)?;
        Ok(Self { be, params, opt })
    }
    /// One step: `loss_grad` adds the gradient of its loss into the zeroed gradient buffer and
    /// returns the loss, which must be finite (`model`, `name` and `step` name it otherwise).
    pub fn step(
        &mut self,
        model: &'static str,
        name: &'static str,
        step: usize,
        loss_grad: impl FnOnce(&B, &B::Params, &mut B::Buf) -> Result<f64>,
    ) -> Result<f64> {
        let grads = self.be.zero_grad(&mut self.opt)?;
        let loss = check_finite(loss_grad(&self.be, &self.params, grads)?, model, name, step)?;
        self.be.adam_step(&mut self.opt, &mut self.params)?;
        Ok(loss)
    }
}
