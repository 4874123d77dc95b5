//! The [`Env`] trait in Gymnasium's shape, and the [`TimeLimit`] wrapper.

use crate::error::Result;
use crate::space::{Action, Space};

/// What one step returns besides the observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The reward, as the Python float (or NumPy scalar) Gymnasium returns, widened to `f64`.
    pub reward: f64,
    /// The MDP reached a terminal state (Gymnasium's `terminated`).
    pub terminated: bool,
    /// The episode was cut by a time limit (Gymnasium's `truncated`).
    pub truncated: bool,
}

/// One step's full result, the allocating counterpart of [`Env::step_into`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The next observation. Values are exact in the observation space's dtype: an `f32`
    /// environment's values are `f32` numbers stored in `f64`.
    pub observation: Vec<f64>,
    /// Reward of the transition.
    pub reward: f64,
    /// Terminal state reached.
    pub terminated: bool,
    /// Cut by a time limit.
    pub truncated: bool,
}

/// A Gymnasium-style environment.
///
/// Observations are written as `f64` so that both `float32` (classic control) and `float64`
/// (MuJoCo) observation spaces are represented exactly; [`Space::Box`]'s `dtype` says which.
/// The `*_into` methods reuse the caller's buffer and allocate nothing per step.
pub trait Env: Send {
    /// The Gymnasium id, e.g. `"Hopper-v5"`.
    fn id(&self) -> &'static str;
    /// The observation space.
    fn observation_space(&self) -> &Space;
    /// The action space.
    fn action_space(&self) -> &Space;
    /// The registered `max_episode_steps` if this environment is wrapped in a [`TimeLimit`].
    fn max_episode_steps(&self) -> Option<usize> {
        None
    }
    /// Starts an episode. `Some(seed)` re-seeds the environment's RNG first (as
    /// `env.reset(seed=...)`); `None` continues the current RNG stream. Writes the initial
    /// observation into `obs` (cleared first).
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut Vec<f64>);
    /// Applies `action` and writes the next observation into `obs` (cleared first).
    ///
    /// A bad action (wrong kind or length, NaN/inf, discrete index out of range) returns an
    /// error and leaves the state unchanged.
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome>;
    /// The simulator state that [`Env::set_state`] accepts (Gymnasium's `env.unwrapped.state`,
    /// or `qpos` followed by `qvel` for MuJoCo).
    fn state(&self) -> Vec<f64>;
    /// Puts the environment in `state` as the start of a new episode and writes the matching
    /// observation into `obs`. Used to replay recorded episodes.
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()>;

    /// Allocating form of [`Env::reset_into`].
    fn reset(&mut self, seed: Option<u64>) -> Vec<f64> {
        let mut obs = Vec::new();
        self.reset_into(seed, &mut obs);
        obs
    }
    /// Allocating form of [`Env::step_into`].
    fn step(&mut self, action: Action<'_>) -> Result<Step> {
        let mut observation = Vec::new();
        let o = self.step_into(action, &mut observation)?;
        Ok(Step {
            observation,
            reward: o.reward,
            terminated: o.terminated,
            truncated: o.truncated,
        })
    }
}

/// Gymnasium's `TimeLimit`: `truncated` becomes true on the step that reaches
/// `max_episode_steps` since the last reset (or `set_state`).
pub struct TimeLimit<E> {
    inner: E,
    max_episode_steps: usize,
    elapsed: usize,
}

impl<E: Env> TimeLimit<E> {
    /// Wraps `inner` with a limit of `max_episode_steps`.
    pub fn new(inner: E, max_episode_steps: usize) -> Self {
        Self {
            inner,
            max_episode_steps,
            elapsed: 0,
        }
    }
    /// Steps taken since the last reset.
    pub fn elapsed_steps(&self) -> usize {
        self.elapsed
    }
    /// The wrapped environment.
    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Env> Env for TimeLimit<E> {
    fn id(&self) -> &'static str {
        self.inner.id()
    }
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }
    fn action_space(&self) -> &Space {
        self.inner.action_space()
    }
    fn max_episode_steps(&self) -> Option<usize> {
        Some(self.max_episode_steps)
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut Vec<f64>) {
        self.elapsed = 0;
        self.inner.reset_into(seed, obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let mut o = self.inner.step_into(action, obs)?;
        self.elapsed += 1;
        if self.elapsed >= self.max_episode_steps {
            o.truncated = true;
        }
        Ok(o)
    }
    fn state(&self) -> Vec<f64> {
        self.inner.state()
    }
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()> {
        self.inner.set_state(state, obs)?;
        self.elapsed = 0;
        Ok(())
    }
}

impl Env for Box<dyn Env> {
    fn id(&self) -> &'static str {
        (**self).id()
    }
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn max_episode_steps(&self) -> Option<usize> {
        (**self).max_episode_steps()
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut Vec<f64>) {
        (**self).reset_into(seed, obs)
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        (**self).step_into(action, obs)
    }
    fn state(&self) -> Vec<f64> {
        (**self).state()
    }
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()> {
        (**self).set_state(state, obs)
    }
}

/// Checks a `set_state` argument: expected length and all values finite.
pub(crate) fn check_state(env: &'static str, state: &[f64], expected: usize) -> Result<()> {
    if state.len() != expected {
        return Err(crate::EnvError::BadState {
            env,
            reason: format!("expected {expected} values, got {}", state.len()),
        });
    }
    if let Some(i) = state.iter().position(|v| !v.is_finite()) {
        return Err(crate::EnvError::BadState {
            env,
            reason: format!("value {i} is not finite"),
        });
    }
    Ok(())
}

/// The environments' seeded RNG: Gymnasium's own, NumPy's `Generator(PCG64(SeedSequence(seed)))`
/// ([`crate::np_random`]), re-seeded by `reset(Some(seed))`, so that `reset(seed)` draws
/// exactly the start state Gymnasium's `reset(seed=seed)` draws.
#[derive(Debug, Clone)]
pub(crate) struct EnvRng(crate::np_random::NpRandom);

impl EnvRng {
    /// Seed used when `reset(None)` is called before any seed was given (Gymnasium seeds from
    /// the OS then; orl stays reproducible).
    pub(crate) const DEFAULT_SEED: u64 = 0;

    pub(crate) fn new(seed: u64) -> Self {
        Self(crate::np_random::NpRandom::from_seed(seed))
    }
    pub(crate) fn reseed(&mut self, seed: Option<u64>) {
        if let Some(s) = seed {
            *self = Self::new(s);
        }
    }
    /// NumPy's `uniform(low, high)`: `low + (high - low) * U[0, 1)`.
    pub(crate) fn uniform(&mut self, low: f64, high: f64) -> f64 {
        self.0.uniform(low, high)
    }
    /// NumPy's `standard_normal()` (its ziggurat, `NpRandom::standard_normal`).
    #[cfg_attr(not(feature = "mujoco"), allow(dead_code))]
    pub(crate) fn standard_normal(&mut self) -> f64 {
        self.0.standard_normal()
    }
}
