//! The [`Policy`] trait: what evaluation and off-policy evaluation need of a learned policy.

use candle_core::Tensor;

use crate::error::Result;

/// A policy over batches of observations.
///
/// Observations are `[B, obs_dim]` `f32` tensors, raw (any normalisation the policy was trained
/// with is applied inside). Continuous actions are `[B, act_dim]` `f32`; discrete actions are
/// `[B]` `u32` indices.
pub trait Policy {
    /// Whether actions are discrete.
    fn is_discrete(&self) -> bool;
    /// The action the policy takes: its mode (deterministic) or a sample.
    fn act(&mut self, observations: &Tensor, deterministic: bool) -> Result<Tensor>;
    /// `log pi(a|s)` for given actions, `[B]`; `None` for deterministic policies (TD3+BC, BC with
    /// MSE), whose density is not defined.
    fn log_prob(&mut self, observations: &Tensor, actions: &Tensor) -> Result<Option<Tensor>>;
}
