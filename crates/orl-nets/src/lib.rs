//! Networks for orl's algorithms: the training engine and its candle counterparts.
//!
//! Why two implementations of the same networks? orl's networks are small (two or three layers
//! of 256 at batch 256), where a training step's time goes to per-op overhead rather than
//! arithmetic: candle's autograd allocates every op's output, computes gradients nobody needs and
//! accumulates each through fresh zeros. The [`engine`] writes each network's forward and
//! backward pass out once over flat buffers that are sized on first use and reused, so an update
//! allocates nothing, and every algorithm trains with it. The candle modules stay as the engine's
//! oracle (the parity tests compute every loss and gradient with candle's autograd from the same
//! parameters and require agreement), for exported policies, and for the networks of `orl-ope`.
//! Both write the same checkpoint tensor names and layouts ([`NetState`], [`OptimState`]).
//!
//! One concern per file, shapes in the doc comments:
//!
//! - [`engine`]: [`engine::Params`], [`engine::Mlp`] (ensembles on a leading axis),
//!   [`engine::QNet`], the actor heads, BCQ's [`engine::VaeNet`], [`engine::FlatAdam`],
//!   [`engine::gemm`] (faer, one thread).
//! - [`ParamStore`] and [`Vb`]: named parameters with stable names, seeded initialisation
//!   (candle's CPU RNG cannot be seeded), hard copies and polyak updates for target networks.
//! - [`Noise`]: the seeded source of every random draw (tensors or plain buffers).
//! - [`Linear`], [`EnsembleLinear`], [`Mlp`], [`EnsembleMlp`], [`QEnsemble`]: layers; an
//!   ensemble of `E` critics runs as one batched matmul.
//! - Actors: [`TanhGaussianActor`] (SAC, CQL), [`GaussianActor`] (IQL, BC),
//!   [`DeterministicActor`] (TD3+BC), [`CategoricalActor`] (discrete); [`Vae`] (BCQ).
//! - [`Adam`] (Adam/AdamW, gradient clipping, [`CosineSchedule`]) with saveable state.
//! - [`NetState`] / [`OptimState`]: what checkpoints need of either implementation.
//! - [`checkpoint`]: atomic safetensors files with metadata.
//! - [`Policy`]: acting and log-probabilities, used by evaluation and off-policy evaluation.
//! - [`ExportedPolicy`]: a policy exported as one safetensors file of plain MLPs with a JSON header, runnable
//!   without any training code.
//! - [`threads`]: one intra-op thread per run.
//!
//! CPU by default; the `cuda` and `metal` features are forwarded to candle (the engine itself
//! runs on the CPU). This crate knows nothing of Arrow or datasets.
//!
//! Two critics regressed on a target with the engine, one Adam step:
//!
//! ```
//! use orl_nets::engine::{FlatAdam, Params, QCache, QNet};
//! use orl_nets::AdamConfig;
//! use rand::SeedableRng;
//!
//! let mut params = Params::new();
//! let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
//! let critics = QNet::continuous(&mut params.builder("", &mut rng), 2, 3, 1, &[32, 32])?;
//! let mut opt = FlatAdam::new(&params, AdamConfig::default());
//! let (s, a) = (vec![0.0f32; 8 * 3], vec![1.0f32; 8]);
//! let mut cache = QCache::default();
//! let q = critics.q(&params, &s, &a, 8, &mut cache).to_vec(); // [2, 8]: both critics
//! // L = mean (Q - 1)^2 over both: dL/dQ = 2 (Q - 1) / 16
//! for (d, q) in cache.mlp.dout_mut().iter_mut().zip(&q) {
//!     *d = 2.0 * (q - 1.0) / 16.0;
//! }
//! critics.backward(&params, &mut cache, Some(opt.zero_grad()), None);
//! opt.step(&mut params)?;
//! # Ok::<(), orl_nets::NetError>(())
//! ```

mod actor;
mod adam;
pub mod checkpoint;
pub mod engine;
mod error;
mod export;
mod linear;
mod mlp;
mod policy;
mod state;
mod store;
pub mod threads;
mod vae;

pub use actor::{
    CategoricalActor, DeterministicActor, GaussianActor, TanhGaussianActor, normal_log_prob,
    softplus,
};
pub use adam::{Adam, AdamConfig, CosineSchedule};
pub use error::{NetError, Result};
pub use export::{
    EXPORT_FORMAT_VERSION, ExportHeader, ExportedPolicy, Head, PolicyModel, ReluNet, save_export,
};
pub use linear::{EnsembleLinear, Linear};
pub use mlp::{EnsembleMlp, Mlp, QEnsemble};
pub use policy::Policy;
pub use state::{NetState, OptimState};
pub use store::{Noise, ParamStore, Vb};
pub use vae::{Vae, VaeOutput};

/// Re-exported so users need not depend on candle directly for the basics.
pub use candle_core::{DType, Device, Tensor};

/// Fails with [`NetError::NonFinite`] when the scalar tensor `t` is NaN or infinite; returns its
/// value otherwise. The divergence guard of every algorithm.
pub fn finite_scalar(name: &str, t: &Tensor) -> Result<f32> {
    let v = t.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(NetError::NonFinite {
            name: name.to_string(),
            value: v,
        })
    }
}
