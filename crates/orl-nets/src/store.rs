//! Parameters: a named, ordered store of [`Var`]s, seeded initialisation, hard and polyak copies.
//!
//! Parameter names are stable: `<module path>.<param>`, e.g. `critic.0.weight` (layer 0 of the
//! critic MLP), and are the tensor names in checkpoints (`docs/checkpoints.md` lists them for
//! every algorithm). Weights of a linear layer are stored `[in, out]` (so `y = x W + b` needs no
//! transpose), ensemble weights `[E, in, out]`.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::error::{NetError, Result};

/// An ordered map from parameter name to [`Var`].
#[derive(Debug, Clone)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
    device: Device,
}

impl ParamStore {
    /// An empty store on `device`.
    pub fn new(device: Device) -> Self {
        Self {
            vars: BTreeMap::new(),
            device,
        }
    }
    /// The device parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Registers `init` as a trainable parameter called `name`.
    pub fn insert(&mut self, name: String, init: Tensor) -> Result<Var> {
        if self.vars.contains_key(&name) {
            return Err(NetError::DuplicateParam(name));
        }
        let var = Var::from_tensor(&init)?;
        self.vars.insert(name, var.clone());
        Ok(var)
    }
    /// All parameters in name order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }
    /// Parameter `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }
    /// A builder that registers parameters under `prefix` with a seeded initialiser.
    pub fn builder<'a>(&'a mut self, prefix: &str, rng: &'a mut Pcg64Mcg) -> Vb<'a> {
        Vb {
            store: self,
            rng,
            prefix: prefix.to_string(),
        }
    }
    /// A deep copy with fresh storage (for target networks).
    pub fn deep_clone(&self) -> Result<Self> {
        let mut out = Self::new(self.device.clone());
        for (k, v) in &self.vars {
            out.insert(k.clone(), v.as_tensor().copy()?)?;
        }
        Ok(out)
    }
    /// `self <- other` for every parameter (names must match).
    pub fn copy_from(&self, other: &ParamStore) -> Result<()> {
        self.soft_update_from(other, 1.0)
    }
    /// Polyak averaging `self <- tau * other + (1 - tau) * self` (Lillicrap et al. 2016).
    pub fn soft_update_from(&self, other: &ParamStore, tau: f64) -> Result<()> {
        for (k, v) in &self.vars {
            let src = other
                .vars
                .get(k)
                .ok_or_else(|| NetError::Config(format!("no parameter `{k}` to copy")))?;
            let (src, dst) = (src.as_tensor().detach(), v.as_tensor().detach());
            let new = if tau >= 1.0 {
                src.copy()?
            } else {
                ((src * tau)? + (dst * (1.0 - tau))?)?
            };
            v.set(&new)?;
        }
        Ok(())
    }
    /// The parameters as named tensors (`prefix` prepended), for checkpoints.
    pub fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.as_tensor().clone()))
            .collect()
    }
    /// Sets every parameter from `tensors[prefix + name]`; every name must be present with the
    /// same shape.
    pub fn load_named(
        &self,
        tensors: &std::collections::HashMap<String, Tensor>,
        prefix: &str,
    ) -> Result<()> {
        for (k, v) in &self.vars {
            let key = format!("{prefix}{k}");
            let t = tensors
                .get(&key)
                .ok_or_else(|| NetError::Config(format!("missing tensor `{key}`")))?;
            if t.dims() != v.dims() {
                return Err(NetError::Config(format!(
                    "tensor `{key}` has shape {:?}, expected {:?}",
                    t.dims(),
                    v.dims()
                )));
            }
            v.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}

/// A parameter builder: a store, a seeded RNG for initial values, and a name prefix
/// (candle's `VarBuilder`, but deterministic: candle's CPU RNG cannot be seeded).
pub struct Vb<'a> {
    store: &'a mut ParamStore,
    rng: &'a mut Pcg64Mcg,
    prefix: String,
}

impl Vb<'_> {
    /// A builder for the sub-module `name` (`prefix.name`).
    pub fn pp(&mut self, name: impl std::fmt::Display) -> Vb<'_> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Vb {
            store: self.store,
            rng: self.rng,
            prefix,
        }
    }
    /// The device.
    pub fn device(&self) -> Device {
        self.store.device.clone()
    }
    /// Registers `name` with values uniform in `[-bound, bound]`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(-bound..bound) as f32)
            .collect();
        let t = Tensor::from_vec(data, shape, &self.store.device)?;
        self.insert(name, t)
    }
    /// Registers `name` filled with `value`.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Var> {
        let t = (Tensor::ones(shape, DType::F32, &self.store.device)? * f64::from(value))?;
        self.insert(name, t)
    }
    fn insert(&mut self, name: &str, t: Tensor) -> Result<Var> {
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        self.store.insert(full, t)
    }
}

/// A seeded source of noise tensors (candle's CPU RNG cannot be seeded, so all randomness in
/// orl's algorithms comes from here: same seed, same numbers).
#[derive(Debug, Clone)]
pub struct Noise {
    rng: Pcg64Mcg,
    device: Device,
}

impl Noise {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64, device: Device) -> Self {
        Self {
            rng: Pcg64Mcg::seed_from_u64(seed),
            device,
        }
    }
    /// Standard normal samples of `shape` (Box-Muller; both values used).
    pub fn normal(&mut self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(n + 1);
        while data.len() < n {
            let u1: f64 = 1.0 - self.rng.random::<f64>(); // (0, 1]
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let th = std::f64::consts::TAU * u2;
            data.push((r * th.cos()) as f32);
            data.push((r * th.sin()) as f32);
        }
        data.truncate(n);
        Ok(Tensor::from_vec(data, shape, &self.device)?)
    }
    /// Fills `out` with standard normal samples: the same draws as [`Noise::normal`] of
    /// `out.len()` values, without allocating.
    pub fn normal_into(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let u1: f64 = 1.0 - self.rng.random::<f64>(); // (0, 1]
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let th = std::f64::consts::TAU * u2;
            pair[0] = (r * th.cos()) as f32;
            if let Some(second) = pair.get_mut(1) {
                *second = (r * th.sin()) as f32;
            }
        }
    }
    /// Fills `out` with uniform samples in `[low, high)`: the same draws as
    /// [`Noise::uniform`], without allocating.
    pub fn uniform_into(&mut self, out: &mut [f32], low: f32, high: f32) {
        for v in out.iter_mut() {
            *v = low + (high - low) * self.rng.random::<f32>();
        }
    }
    /// Uniform samples in `[low, high)` of `shape`.
    pub fn uniform(&mut self, shape: &[usize], low: f32, high: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| low + (high - low) * self.rng.random::<f32>())
            .collect();
        Ok(Tensor::from_vec(data, shape, &self.device)?)
    }
    /// A uniform integer in `0..n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
    /// The generator's state as JSON, for checkpoints (restored by [`Noise::restore`]).
    pub fn state_json(&self) -> String {
        serde_json::to_string(&self.rng).unwrap_or_default()
    }
    /// Restores a state saved by [`Noise::state_json`].
    pub fn restore(&mut self, json: &str) -> Result<()> {
        self.rng = serde_json::from_str(json)
            .map_err(|e| NetError::Config(format!("bad RNG state in checkpoint: {e}")))?;
        Ok(())
    }
}
