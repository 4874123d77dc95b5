//! What a checkpoint needs of a network and of an optimizer, whichever implementation holds
//! them: candle's [`ParamStore`] / [`Adam`] or the engine's [`Params`] / [`FlatAdam`]. Both
//! write the same names and layouts, so a checkpoint does not say which one wrote it.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::engine::{FlatAdam, Params};
use crate::error::Result;
use crate::{Adam, ParamStore};

/// A network's parameters as named tensors.
pub trait NetState {
    /// The parameters as named tensors (`prefix` prepended).
    fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)>;
    /// Sets every parameter from `tensors[prefix + name]` (same shapes).
    fn load_named(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()>;
}

/// An optimizer's state: moments as named tensors and a step counter.
pub trait OptimState {
    /// Steps taken.
    fn steps(&self) -> usize;
    /// Moment tensors (`<prefix>m.<param>`, `<prefix>v.<param>`).
    fn named_state(&self, prefix: &str) -> Vec<(String, Tensor)>;
    /// Restores moments and the step counter.
    fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        t: usize,
    ) -> Result<()>;
}

impl NetState for ParamStore {
    fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        ParamStore::named_tensors(self, prefix)
    }
    fn load_named(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        ParamStore::load_named(self, tensors, prefix)
    }
}

impl NetState for Params {
    fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        Params::named_tensors(self, prefix)
    }
    fn load_named(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        Params::load_named(self, tensors, prefix)
    }
}

impl OptimState for Adam {
    fn steps(&self) -> usize {
        Adam::steps(self)
    }
    fn named_state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        Adam::named_state(self, prefix)
    }
    fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        t: usize,
    ) -> Result<()> {
        Adam::load_state(self, tensors, prefix, t)
    }
}

impl OptimState for FlatAdam {
    fn steps(&self) -> usize {
        FlatAdam::steps(self)
    }
    fn named_state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        FlatAdam::named_state(self, prefix)
    }
    fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        t: usize,
    ) -> Result<()> {
        FlatAdam::load_state(self, tensors, prefix, t)
    }
}
