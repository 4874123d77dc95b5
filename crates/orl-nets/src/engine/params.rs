//! Flat parameter buffers with named segments.
//!
//! All parameters of one network live in one `Vec<f32>`; a table maps each name
//! (`0.weight`, `trunk.1.bias`, ...) to its shape and offset. Adam, polyak averaging and gradient
//! accumulation then run as single loops over the whole buffer, and a checkpoint writes every
//! segment under the same name and `[in, out]` / `[E, in, out]` / `[E, 1, out]` layout as
//! [`crate::ParamStore`] (`docs/checkpoints.md`), so old checkpoints load into engine networks.
//!
//! Initial values are drawn exactly as [`crate::Vb`] draws them (same RNG calls in the same
//! order), so an engine network and a candle network built from the same seed start equal.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

use crate::error::{NetError, Result};

/// One named parameter inside a [`Params`] buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Full name, e.g. `net.0.weight`.
    pub name: String,
    /// Shape as stored in checkpoints.
    pub shape: Vec<usize>,
    /// First element in the flat buffer.
    pub offset: usize,
    /// Element count.
    pub len: usize,
}

/// The parameters of one network: a flat `f32` buffer and its named segments (in registration
/// order; checkpoints are keyed by name, so the order only fixes the layout in memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    data: Vec<f32>,
    segments: Vec<Segment>,
}

impl Params {
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            data: Vec::new(),
            segments: Vec::new(),
        }
    }
    /// All values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// All values, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// Number of scalar parameters.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// The segments in registration order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
    /// The values of segment `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.segments
            .iter()
            .find(|s| s.name == name)
            .map(|s| &self.data[s.offset..s.offset + s.len])
    }
    /// A builder registering parameters under `prefix`, drawing initial values from `rng`.
    pub fn builder<'a>(&'a mut self, prefix: &str, rng: &'a mut Pcg64Mcg) -> ParamsBuilder<'a> {
        ParamsBuilder {
            params: self,
            rng,
            prefix: prefix.to_string(),
        }
    }
    fn push(
        &mut self,
        name: String,
        shape: &[usize],
        values: impl Iterator<Item = f32>,
    ) -> Result<usize> {
        if self.segments.iter().any(|s| s.name == name) {
            return Err(NetError::DuplicateParam(name));
        }
        let offset = self.data.len();
        self.data.extend(values);
        let len = self.data.len() - offset;
        self.segments.push(Segment {
            name,
            shape: shape.to_vec(),
            offset,
            len,
        });
        Ok(offset)
    }
    /// `self <- other` (same layout).
    pub fn copy_from(&mut self, other: &Params) -> Result<()> {
        self.check_layout(other)?;
        self.data.copy_from_slice(&other.data);
        Ok(())
    }
    /// Polyak averaging `self <- tau * other + (1 - tau) * self` (Lillicrap et al. 2016), in
    /// place, one pass.
    pub fn soft_update_from(&mut self, other: &Params, tau: f64) -> Result<()> {
        self.check_layout(other)?;
        if tau >= 1.0 {
            self.data.copy_from_slice(&other.data);
            return Ok(());
        }
        let (t, u) = (tau as f32, (1.0 - tau) as f32);
        let (dst, src) = (&mut self.data, &other.data);
        crate::engine::simd(
            #[inline(always)]
            || {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s * t + *d * u;
                }
            },
        );
        Ok(())
    }
    fn check_layout(&self, other: &Params) -> Result<()> {
        if self.segments != other.segments {
            return Err(NetError::Config(
                "parameter buffers of different networks cannot be copied".into(),
            ));
        }
        Ok(())
    }
    /// The parameters as named tensors (`prefix` prepended), for checkpoints.
    pub fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.segments
            .iter()
            .filter_map(|s| {
                Tensor::from_slice(
                    &self.data[s.offset..s.offset + s.len],
                    s.shape.as_slice(),
                    &Device::Cpu,
                )
                .ok()
                .map(|t| (format!("{prefix}{}", s.name), t))
            })
            .collect()
    }
    /// A buffer laid out as these parameters (a gradient, a moment) split into its named
    /// segments: `(name, values)` in registration order.
    pub fn named_values(&self, buf: &[f32]) -> Vec<(String, Vec<f32>)> {
        self.segments
            .iter()
            .map(|s| (s.name.clone(), buf[s.offset..s.offset + s.len].to_vec()))
            .collect()
    }
    /// Sets every parameter from `tensors[prefix + name]`; every name must be present with the
    /// same shape.
    pub fn load_named(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for s in &self.segments {
            let key = format!("{prefix}{}", s.name);
            let t = tensors
                .get(&key)
                .ok_or_else(|| NetError::Config(format!("missing tensor `{key}`")))?;
            if t.dims() != s.shape.as_slice() {
                return Err(NetError::Config(format!(
                    "tensor `{key}` has shape {:?}, expected {:?}",
                    t.dims(),
                    s.shape
                )));
            }
            let v: Vec<f32> = t
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1()?;
            self.data[s.offset..s.offset + s.len].copy_from_slice(&v);
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers parameters under a name prefix with seeded initial values (the engine's
/// [`crate::Vb`]).
pub struct ParamsBuilder<'a> {
    params: &'a mut Params,
    rng: &'a mut Pcg64Mcg,
    prefix: String,
}

impl ParamsBuilder<'_> {
    /// A builder for the sub-module `name` (`prefix.name`).
    pub fn pp(&mut self, name: impl std::fmt::Display) -> ParamsBuilder<'_> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        ParamsBuilder {
            params: self.params,
            rng: self.rng,
            prefix,
        }
    }
    /// Registers `name` with values uniform in `[-bound, bound)`; returns its offset.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<usize> {
        let n: usize = shape.iter().product();
        let full = self.full(name);
        let rng = &mut *self.rng;
        self.params.push(
            full,
            shape,
            (0..n).map(|_| rng.random_range(-bound..bound) as f32),
        )
    }
    /// Registers `name` filled with `value`; returns its offset.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<usize> {
        let n: usize = shape.iter().product();
        let full = self.full(name);
        self.params.push(full, shape, std::iter::repeat_n(value, n))
    }
    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }
}
