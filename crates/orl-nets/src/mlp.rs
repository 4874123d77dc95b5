//! Multi-layer perceptrons: a single MLP and an ensemble of MLPs (critics).

use candle_core::Tensor;

use crate::error::Result;
use crate::linear::{EnsembleLinear, Linear};
use crate::store::Vb;

/// `in -> hidden[0] -> ... -> out` with ReLU between layers and no output activation.
///
/// Parameter names: `<prefix>.<i>.weight`, `<prefix>.<i>.bias` for layer `i`.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Builds the layers `input -> hidden... -> output`.
    pub fn new(vb: &mut Vb<'_>, input: usize, hidden: &[usize], output: usize) -> Result<Self> {
        let mut dims = vec![input];
        dims.extend_from_slice(hidden);
        dims.push(output);
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear::new(&mut vb.pp(i), w[0], w[1]))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
    /// `x: [B, in] -> [B, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
    /// The hidden features before the last layer, and the last layer (for multi-head actors).
    pub fn trunk(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers[..self.layers.len() - 1] {
            h = l.forward(&h)?.relu()?;
        }
        Ok(h)
    }
}

/// `E` MLPs of the same shape evaluated together: every layer is one [`EnsembleLinear`].
///
/// Parameter names: `<prefix>.<i>.weight` `[E, in, out]`, `<prefix>.<i>.bias` `[E, 1, out]`.
#[derive(Debug, Clone)]
pub struct EnsembleMlp {
    members: usize,
    layers: Vec<EnsembleLinear>,
}

impl EnsembleMlp {
    /// Builds `members` MLPs `input -> hidden... -> output`.
    pub fn new(
        vb: &mut Vb<'_>,
        members: usize,
        input: usize,
        hidden: &[usize],
        output: usize,
    ) -> Result<Self> {
        let mut dims = vec![input];
        dims.extend_from_slice(hidden);
        dims.push(output);
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| EnsembleLinear::new(&mut vb.pp(i), members, w[0], w[1]))
            .collect::<Result<_>>()?;
        Ok(Self { members, layers })
    }
    /// Number of members `E`.
    pub fn members(&self) -> usize {
        self.members
    }
    /// `x: [B, in]` (shared by all members) or `[E, B, in]` -> `[E, B, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = if x.rank() == 2 {
            let (b, d) = x.dims2()?;
            x.unsqueeze(0)?.broadcast_as((self.members, b, d))?
        } else {
            x.clone()
        };
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// An ensemble of `E` Q-functions `Q_e(s, a)`: input `concat(s, a)`, output `[E, B]`
/// (continuous actions), or `Q_e(s, .)`: input `s`, output `[E, B, n]` (discrete actions).
#[derive(Debug, Clone)]
pub struct QEnsemble {
    net: EnsembleMlp,
}

impl QEnsemble {
    /// `E` critics over `concat(s, a)` (`obs_dim + act_dim` inputs, one output).
    pub fn continuous(
        vb: &mut Vb<'_>,
        members: usize,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            net: EnsembleMlp::new(vb, members, obs_dim + act_dim, hidden, 1)?,
        })
    }
    /// `E` critics over `s` with one output per discrete action.
    pub fn discrete(
        vb: &mut Vb<'_>,
        members: usize,
        obs_dim: usize,
        n_actions: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            net: EnsembleMlp::new(vb, members, obs_dim, hidden, n_actions)?,
        })
    }
    /// Number of members.
    pub fn members(&self) -> usize {
        self.net.members()
    }
    /// `s: [B, obs], a: [B, act] -> Q: [E, B]`.
    pub fn q(&self, s: &Tensor, a: &Tensor) -> Result<Tensor> {
        let x = Tensor::cat(&[s, a], 1)?;
        Ok(self.net.forward(&x)?.squeeze(2)?)
    }
    /// `s: [B, obs] -> Q: [E, B, n]` (discrete).
    pub fn q_all(&self, s: &Tensor) -> Result<Tensor> {
        self.net.forward(s)
    }
}
