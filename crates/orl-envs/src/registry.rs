//! The registry: Gymnasium ids, their time limits, and [`make`].

use crate::classic::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};
use crate::env::{Env, TimeLimit};
use crate::error::{EnvError, Result};

/// One registered environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvSpec {
    /// Gymnasium id.
    pub id: &'static str,
    /// Gymnasium's registered `max_episode_steps` (the [`TimeLimit`] `make` applies).
    pub max_episode_steps: usize,
    /// Needs the `mujoco` cargo feature.
    pub needs_mujoco: bool,
}

/// Every environment orl knows, with Gymnasium 1.4.0's registered time limits
/// (`gymnasium/envs/__init__.py`).
pub const REGISTRY: &[EnvSpec] = &[
    EnvSpec {
        id: "CartPole-v1",
        max_episode_steps: 500,
        needs_mujoco: false,
    },
    EnvSpec {
        id: "Pendulum-v1",
        max_episode_steps: 200,
        needs_mujoco: false,
    },
    EnvSpec {
        id: "MountainCar-v0",
        max_episode_steps: 200,
        needs_mujoco: false,
    },
    EnvSpec {
        id: "MountainCarContinuous-v0",
        max_episode_steps: 999,
        needs_mujoco: false,
    },
    EnvSpec {
        id: "Acrobot-v1",
        max_episode_steps: 500,
        needs_mujoco: false,
    },
    EnvSpec {
        id: "Hopper-v5",
        max_episode_steps: 1000,
        needs_mujoco: true,
    },
    EnvSpec {
        id: "HalfCheetah-v5",
        max_episode_steps: 1000,
        needs_mujoco: true,
    },
    EnvSpec {
        id: "Walker2d-v5",
        max_episode_steps: 1000,
        needs_mujoco: true,
    },
];

/// Whether this build can make MuJoCo environments (the `mujoco` feature).
pub const MUJOCO_ENABLED: bool = cfg!(feature = "mujoco");

/// The spec registered under `id`.
pub fn spec(id: &str) -> Result<&'static EnvSpec> {
    REGISTRY
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| EnvError::UnknownEnv {
            id: id.to_string(),
            known: REGISTRY.iter().map(|s| s.id).collect::<Vec<_>>().join(", "),
        })
}

/// The environment without its time limit (Gymnasium's `env.unwrapped`).
pub fn make_unwrapped(id: &str) -> Result<Box<dyn Env>> {
    let spec = spec(id)?;
    Ok(match spec.id {
        "CartPole-v1" => Box::new(CartPole::new()),
        "Pendulum-v1" => Box::new(Pendulum::new()),
        "MountainCar-v0" => Box::new(MountainCar::new()),
        "MountainCarContinuous-v0" => Box::new(MountainCarContinuous::new()),
        "Acrobot-v1" => Box::new(Acrobot::new()),
        other => make_mujoco(other)?,
    })
}

/// `gymnasium.make(id)`: the environment wrapped in its registered [`TimeLimit`].
///
/// ```
/// use orl_envs::{make, Action, Env};
/// let mut env = make("CartPole-v1")?;
/// env.reset(Some(0));
/// let step = env.step(Action::Discrete(1))?;
/// assert_eq!(step.reward, 1.0);
/// # Ok::<(), orl_envs::EnvError>(())
/// ```
pub fn make(id: &str) -> Result<Box<dyn Env>> {
    let spec = spec(id)?;
    Ok(Box::new(TimeLimit::new(
        make_unwrapped(id)?,
        spec.max_episode_steps,
    )))
}

#[cfg(feature = "mujoco")]
fn make_mujoco(id: &str) -> Result<Box<dyn Env>> {
    use crate::mujoco::{Locomotion, LocomotionKind};
    let kind = match id {
        "Hopper-v5" => LocomotionKind::Hopper,
        "HalfCheetah-v5" => LocomotionKind::HalfCheetah,
        _ => LocomotionKind::Walker2d,
    };
    Ok(Box::new(Locomotion::new(kind)?))
}

#[cfg(not(feature = "mujoco"))]
fn make_mujoco(id: &str) -> Result<Box<dyn Env>> {
    let env = REGISTRY
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.id)
        .unwrap_or("mujoco");
    Err(EnvError::Mujoco {
        env,
        reason: "this build has no MuJoCo support: build with `--features mujoco` after \
                 `cargo xtask setup-mujoco`"
            .into(),
    })
}
