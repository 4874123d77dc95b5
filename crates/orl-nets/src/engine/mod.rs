//! The training engine: explicit-gradient networks over flat `f32` buffers.
//!
//! Why not candle's autograd for training? orl's networks are small (2-3 layers of 256 at
//! batch 256), where an update's time goes to per-op overhead, not arithmetic: every autograd
//! op allocates its output, backward computes gradients nobody needs (the input gradient of
//! every first layer) and accumulates each one through fresh zeros. Here each network is
//! written out once, forward and backward:
//!
//! - [`Params`]: one flat buffer per network with named segments (checkpoint names and layout
//!   as [`crate::ParamStore`]); polyak averaging in place.
//! - [`Mlp`] (ReLU hidden layers, identity or tanh output; `E` members on a leading axis):
//!   forward keeps its activations in an [`MlpCache`], backward takes `dL/d(output)`, adds the
//!   parameter gradients and returns `dL/d(input)` only when asked for.
//! - [`QNet`]: critic ensembles over `concat(s, a)` or with one output per discrete action.
//! - Heads: [`DeterministicHead`], [`GaussianHead`], [`CategoricalHead`].
//! - [`VaeNet`]: BCQ's conditional VAE.
//! - [`FlatAdam`]: Adam in place over a flat buffer, with the gradient buffer.
//! - [`gemm`]: the one matrix product (`faer`, one thread).
//! - [`backend`]: the same algorithm code on this engine ([`backend::Cpu`]) or on candle
//!   tensors on any candle device ([`backend::Candle`]).
//!
//! Caches are sized on first use and reused: after the first update at a batch size, an
//! update allocates nothing (`crates/orl-algos/tests/alloc.rs` counts). The losses and their
//! gradients with respect to the network outputs live in each algorithm's file in
//! `orl-algos`; candle's autograd checks them in the parity tests.

// The losses and heads walk several parallel row-major buffers by row and column index, and
// their backward passes take every buffer they touch as an argument: clearer as written.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

mod adam;
pub mod backend;
mod critic;
pub mod gemm;
mod heads;
mod mlp;
mod params;
mod policy;
mod vae;

pub use adam::FlatAdam;

/// Runs `f` compiled for the best instruction set this CPU has (AVX-512, AVX2+FMA, or the
/// baseline), chosen at run time: the engine's elementwise loops are written once as plain
/// iterator code and vectorised by the compiler for each level (`pulp`'s dispatch; no
/// `unsafe` here). Without it they would run at the SSE2 width of a portable build.
#[inline(always)]
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
pub use critic::{QBufs, QCache, QNet};
pub use heads::{
    CategoricalHead, DensityBufs, DeterministicHead, GaussianHead, LogSoftmaxBufs, TanhBufs,
    TanhGaussianCache, TanhGaussianHead, log_softmax, log_softmax_on,
};
pub use mlp::{Activation, Input, Mlp, MlpCache};
pub use params::{Params, ParamsBuilder, Segment};
pub use policy::{Actions, PolicyHead, argmax};
pub use vae::{VaeBufs, VaeNet};
