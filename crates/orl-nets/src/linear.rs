//! Linear layers: one layer, and an ensemble of `E` layers evaluated in one batched matmul.

use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::store::Vb;

/// `y = x W + b`, `x: [B, in]`, `W: [in, out]`, `b: [out]`, `y: [B, out]`.
///
/// Initialised as PyTorch's `nn.Linear` (`kaiming_uniform_(a = sqrt(5))`, which reduces to
/// `U(-1/sqrt(in), 1/sqrt(in))` for the weight, and the same bound for the bias), the default
/// of every reference implementation orl follows (CORL, d3rlpy, the papers' code).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// Registers `weight` `[in, out]` and `bias` `[out]` under `vb`'s prefix.
    pub fn new(vb: &mut Vb<'_>, input: usize, output: usize) -> Result<Self> {
        let bound = 1.0 / (input as f64).sqrt();
        Ok(Self {
            weight: vb.uniform("weight", &[input, output], bound)?,
            bias: vb.uniform("bias", &[output], bound)?,
        })
    }
    /// As [`Linear::new`] with weights and biases in `[-bound, bound]` (small output layers).
    pub fn with_bound(vb: &mut Vb<'_>, input: usize, output: usize, bound: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.uniform("weight", &[input, output], bound)?,
            bias: vb.uniform("bias", &[output], bound)?,
        })
    }
    /// `x: [B, in] -> [B, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

/// `E` independent linear layers: `y[e] = x[e] W[e] + b[e]`, `x: [E, B, in]`, `W: [E, in, out]`,
/// `b: [E, 1, out]`, `y: [E, B, out]`, one batched matmul for all members (the ensemble trick of
/// EDAC/SAC-N; orl uses it for twin critics and CQL/IQL/BCQ/TD3+BC Q ensembles).
#[derive(Debug, Clone)]
pub struct EnsembleLinear {
    weight: Var,
    bias: Var,
}

impl EnsembleLinear {
    /// Registers `weight` `[E, in, out]` and `bias` `[E, 1, out]`, each member initialised as
    /// [`Linear`].
    pub fn new(vb: &mut Vb<'_>, members: usize, input: usize, output: usize) -> Result<Self> {
        let bound = 1.0 / (input as f64).sqrt();
        Ok(Self {
            weight: vb.uniform("weight", &[members, input, output], bound)?,
            bias: vb.uniform("bias", &[members, 1, output], bound)?,
        })
    }
    /// `x: [E, B, in] -> [E, B, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}
