//! candle building blocks for orl's algorithms.
//!
//! One concern per file, shapes in the doc comments:
//!
//! - [`ParamStore`] and [`Vb`]: named parameters with stable names, seeded initialisation
//!   (candle's CPU RNG cannot be seeded), hard copies and polyak updates for target networks.
//! - [`Noise`]: the seeded source of every random tensor the algorithms draw.
//! - [`Linear`], [`EnsembleLinear`], [`Mlp`], [`EnsembleMlp`], [`QEnsemble`]: layers; an
//!   ensemble of `E` critics runs as one batched matmul.
//! - Actors: [`TanhGaussianActor`] (SAC, CQL), [`GaussianActor`] (IQL, BC),
//!   [`DeterministicActor`] (TD3+BC), [`CategoricalActor`] (discrete); [`Vae`] (BCQ).
//! - [`Adam`] (Adam/AdamW, gradient clipping, [`CosineSchedule`]) with saveable state.
//! - [`engine`]: the explicit-gradient training engine (flat buffers, fused forward/backward,
//!   allocation-free updates) that every algorithm trains with; the candle modules above are
//!   its oracle in the parity tests and the GPU path.
//! - [`NetState`] / [`OptimState`]: what checkpoints need of either implementation.
//! - [`checkpoint`]: atomic safetensors files with metadata.
//! - [`Policy`]: acting and log-probabilities, used by evaluation and off-policy evaluation.
//! - [`ExportedPolicy`]: a policy exported as one safetensors file of plain MLPs with a JSON header, runnable
//!   without any training code.
//!
//! CPU by default; the `cuda` and `metal` features are forwarded to candle. This crate knows
//! nothing of Arrow or datasets.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use orl_nets::{Adam, AdamConfig, ParamStore, QEnsemble};
//! use rand::SeedableRng;
//!
//! let mut store = ParamStore::new(Device::Cpu);
//! let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
//! let critics = QEnsemble::continuous(&mut store.builder("critic", &mut rng), 2, 3, 1, &[32, 32])?;
//! let mut opt = Adam::new(&store, AdamConfig::default())?;
//! let s = Tensor::zeros((8, 3), candle_core::DType::F32, &Device::Cpu)?;
//! let a = Tensor::ones((8, 1), candle_core::DType::F32, &Device::Cpu)?;
//! let q = critics.q(&s, &a)?; // [2, 8]: both critics in one batched matmul
//! let loss = (q - 1.0)?.sqr()?.mean_all()?;
//! opt.backward_step(&loss)?;
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
