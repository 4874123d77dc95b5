//! Offline RL algorithms on candle: CQL, IQL, BCQ, with BC and TD3+BC as baselines, for
//! continuous and discrete actions; SAC and DQN (online) to train behaviour policies.
//!
//! One file per algorithm, read top to bottom in the paper's order: module doc with the
//! equations, `Config` (defaults cited in `impl Default`), networks, pure loss functions,
//! `update_*` steps, and `update(&Batch) -> Metrics` through the [`Algorithm`] trait.
//! Shared building blocks (ensembles, actors, Adam, polyak updates, checkpoints) live in
//! `orl-nets`. Every random draw comes from a seeded [`orl_nets::Noise`]: the same seed on CPU
//! gives the same numbers, and a checkpoint restores the full training state.
//!
//! ```
//! use orl_algos::{Algorithm, Bc, BcConfig, Spec};
//! use orl_data::Batch;
//!
//! let spec = Spec::continuous(3, 1, 1.0);
//! let mut bc = Bc::new(spec, BcConfig { hidden: vec![16], ..BcConfig::default() }, 0, &orl_nets::Device::Cpu)?;
//! let batch = Batch {
//!     batch_size: 2, obs_dim: 3, act_dim: 1,
//!     observations: vec![0.0; 6], actions: vec![0.5, -0.5], discrete_actions: vec![],
//!     rewards: vec![0.0; 2], next_observations: vec![0.0; 6], terminals: vec![0.0; 2],
//!     timeouts: vec![0.0; 2], discounts: vec![0.99; 2], indices: vec![0, 1],
//! };
//! let metrics = bc.update(&batch)?;
//! assert!(metrics["actor_loss"].is_finite());
//! # Ok::<(), orl_algos::AlgoError>(())
//! ```

mod agent;
mod collect;
mod common;
mod diagnostics;
mod dqn;
mod error;
mod online;
mod recipe;
mod registry;
mod sac;
mod trainer;
pub mod validate;

/// Declares each offline algorithm's module and lists its `INFO` in [`ALGORITHMS`].
macro_rules! algorithms {
    ($($m:ident),* $(,)?) => {
        $(mod $m;)*
        /// Every offline algorithm, in the order reports list them (the registry; see
        /// [`AlgoInfo`]).
        pub static ALGORITHMS: &[&AlgoInfo] = &[$(&$m::INFO),*];
    };
}

// The registry line: adding an algorithm is its file and its name here.
algorithms!(cql, iql, bcq, td3bc, bc);

pub use agent::{Agent, normalize_observations};
pub use bc::{Bc, BcConfig, BcLoss};
pub use bcq::{Bcq, BcqConfig};
pub use collect::{Behavior, collect, pendulum_controller};
pub use common::{
    ActionSpec, Algorithm, BatchTensors, Core, MAX_METRICS, Metrics, Probe, Spec,
    advantage_weights, cql_logsumexp, expectile_loss, gather_actions, huber_loss, mse_per_member,
    record, soft_clipped_double_q, td3bc_lambda,
};
pub use cql::{Cql, CqlConfig};
pub use diagnostics::{Diagnostics, diagnose, probe_rows, returns_to_go};
pub use dqn::{Dqn, DqnConfig};
pub use error::{AlgoError, Result};
pub use iql::{Iql, IqlConfig};
pub use online::{
    OnlineCheckpoint, OnlineConfig, OnlineEvent, OnlineReport, train_online, train_online_resumable,
};
pub use recipe::{
    DEFAULT_REPLAY_SEGMENT, DatasetRef, FINAL_EVAL, Recipe, RecipeRequest, RewardChoice, check_env,
    eval_env_of, spec_of,
};
pub use registry::{AlgoConfig, AlgoInfo, AlgoKind, Compute, RewardRecipe, build, parse_config};
pub use sac::{Sac, SacConfig};
pub use td3bc::{Td3Bc, Td3BcConfig};
pub use trainer::{
    DIAGNOSTIC_ROWS, DiagnosticProbe, EvalPlan, EvalSummary, Hooks, LogRow, NoHooks, Schedule,
    Trainer, keys,
};
