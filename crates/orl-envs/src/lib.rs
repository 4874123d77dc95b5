//! Gymnasium-exact environments for orl, and policy evaluation.
//!
//! Offline RL never touches an environment while learning, but scoring a learned policy and
//! generating D4RL-style datasets both need one. `orl-envs` ports Gymnasium 1.4.0's
//! environments so that a score earned here means what it means in Python:
//!
//! - **Classic control, pure Rust** ([`classic`]): `CartPole-v1`, `Pendulum-v1`,
//!   `MountainCar-v0`, `MountainCarContinuous-v0`, `Acrobot-v1`, with Gymnasium's dynamics and
//!   NumPy 2's `float32`/`float64` arithmetic, so observations match bit for bit.
//! - **MuJoCo locomotion** (feature `mujoco`): `Hopper-v5`, `HalfCheetah-v5`, `Walker2d-v5`
//!   through `mujoco-rs` 7.0.0 / MuJoCo 3.17.0 (`cargo xtask setup-mujoco` fetches the library).
//! - [`Env`] in Gymnasium's shape, [`TimeLimit`], a registry ([`make`], [`REGISTRY`]).
//! - [`evaluate`]: a [`Policy`] over plain `&[f32]` observations run for K episodes across
//!   threads, with D4RL-normalised scores ([`RefScores`]).
//!
//! Resets draw Gymnasium's distributions from orl's own seeded RNG (`Pcg64Mcg`): the same seed
//! gives the same episode on every machine, but not NumPy's bits yet ([`np_random`] is NumPy's
//! exact `SeedSequence` + PCG64 + `uniform`, bit for bit, for that switch). Replaying a
//! recorded episode goes through [`Env::set_state`]. This crate never depends on candle or Arrow.
//!
//! ```
//! use orl_envs::{evaluate, make, EvalConfig, OwnedAction};
//!
//! // A bang-bang controller for CartPole, evaluated over 4 episodes on 2 threads.
//! let report = evaluate(
//!     || make("CartPole-v1"),
//!     || |obs: &[f32]| OwnedAction::Discrete(i64::from(obs[2] + obs[3] > 0.0)),
//!     &EvalConfig { episodes: 4, threads: 2, ..EvalConfig::default() },
//! )?;
//! assert!(report.mean > 100.0);
//! # Ok::<(), orl_envs::EnvError>(())
//! ```

pub mod classic;
mod env;
mod error;
mod eval;
#[cfg(feature = "mujoco")]
pub mod mujoco;
pub mod np_random;
mod registry;
mod space;

pub use env::{Env, Outcome, Step, TimeLimit};
pub use error::{EnvError, Result};
pub use eval::{EvalConfig, EvalReport, Policy, RefScores, evaluate, run_episode};
pub use registry::{EnvSpec, MUJOCO_ENABLED, REGISTRY, make, make_unwrapped, spec};
pub use space::{Action, Dtype, OwnedAction, Space, validate_action};
