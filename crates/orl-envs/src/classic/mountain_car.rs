//! `MountainCar-v0` (`gymnasium/envs/classic_control/mountain_car.py`, Moore 1990).
//!
//! State `(position, velocity)` in `float64`:
//!
//! ```text
//! velocity' = clip(velocity + (a - 1) * 0.001 + cos(3 position) * (-0.0025), -0.07, 0.07)
//! position' = clip(position + velocity', -1.2, 0.6);  velocity' = 0 if position' == -1.2 and velocity' < 0
//! reward    = -1;  terminated = position' >= 0.5 and velocity' >= 0
//! ```
//!
//! Reset: `position ~ U[-0.6, -0.4]`, `velocity = 0`.

use crate::env::{Env, EnvRng, Outcome, check_state};
use crate::error::Result;
use crate::space::{Action, Space, expect_discrete};

const ID: &str = "MountainCar-v0";
const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.5;
const FORCE: f64 = 0.001;
const GRAVITY: f64 = 0.0025;

/// `MountainCar-v0` without its time limit (use [`crate::make`] for the registered version).
#[derive(Debug, Clone)]
pub struct MountainCar {
    state: Option<[f64; 2]>,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Default for MountainCar {
    fn default() -> Self {
        Self::new()
    }
}

impl MountainCar {
    /// A new environment; call `reset` before stepping.
    pub fn new() -> Self {
        let low = [MIN_POSITION as f32, -MAX_SPEED as f32];
        let high = [MAX_POSITION as f32, MAX_SPEED as f32];
        Self {
            state: None,
            rng: EnvRng::new(EnvRng::DEFAULT_SEED),
            obs_space: Space::box_f32(&low, &high),
            act_space: Space::Discrete { n: 3 },
        }
    }
    fn write_obs(s: &[f64; 2], obs: &mut Vec<f64>) {
        obs.clear();
        obs.extend(s.iter().map(|&v| f64::from(v as f32)));
    }
}

impl Env for MountainCar {
    fn id(&self) -> &'static str {
        ID
    }
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut Vec<f64>) {
        self.rng.reseed(seed);
        let s = [self.rng.uniform(-0.6, -0.4), 0.0];
        self.state = Some(s);
        Self::write_obs(&s, obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let a = expect_discrete(ID, &self.act_space, action)?;
        let [position, velocity] = self.state.ok_or(crate::EnvError::NotReset { env: ID })?;
        let velocity = velocity + (a as f64 - 1.0) * FORCE + (3.0 * position).cos() * (-GRAVITY);
        let mut velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        let position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= 0.0;
        let s = [position, velocity];
        self.state = Some(s);
        Self::write_obs(&s, obs);
        Ok(Outcome {
            reward: -1.0,
            terminated,
            truncated: false,
        })
    }
    fn state(&self) -> Vec<f64> {
        self.state.map(|s| s.to_vec()).unwrap_or_default()
    }
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()> {
        check_state(ID, state, 2)?;
        let s = [state[0], state[1]];
        self.state = Some(s);
        Self::write_obs(&s, obs);
        Ok(())
    }
}
