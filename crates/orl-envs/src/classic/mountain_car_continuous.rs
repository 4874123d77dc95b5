//! `MountainCarContinuous-v0` (`gymnasium/envs/classic_control/continuous_mountain_car.py`).
//!
//! ```text
//! force     = clip(a, -1, 1)
//! velocity' = clip(velocity + force * 0.0015 - 0.0025 cos(3 position), -0.07, 0.07)
//! position' = clip(position + velocity', -1.2, 0.6);  velocity' = 0 if position' == -1.2 and velocity' < 0
//! terminated = position' >= 0.45 and velocity' >= 0;  reward = 100 [terminated] - 0.1 a^2
//! ```
//!
//! The dtypes follow Gymnasium exactly: the state is `float64` after reset and `float32` after
//! every step (`np.array(..., dtype=float32)`), and NumPy 2 evaluates the velocity update in
//! `float32` whenever a `float32` value meets Python floats:
//! `v += f32(f32(force * f32(0.0015)) - f32(0.0025 * cos(f64(f32(3 * pos)))))`.
//! Reset: `position ~ U[-0.6, -0.4]`, `velocity = 0` (`float64`).

use crate::env::{Env, EnvRng, Outcome, check_state};
use crate::error::Result;
use crate::space::{Action, Space, expect_continuous};

const ID: &str = "MountainCarContinuous-v0";
const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.45;
const POWER: f64 = 0.0015;

/// The state and the dtype Gymnasium holds it in.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Right after reset: `float64`.
    F64([f64; 2]),
    /// After any step: `float32`.
    F32([f32; 2]),
}

/// `MountainCarContinuous-v0` without its time limit (use [`crate::make`] for the registered version).
#[derive(Debug, Clone)]
pub struct MountainCarContinuous {
    state: Option<State>,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Default for MountainCarContinuous {
    fn default() -> Self {
        Self::new()
    }
}

impl MountainCarContinuous {
    /// A new environment; call `reset` before stepping.
    pub fn new() -> Self {
        let low = [MIN_POSITION as f32, -MAX_SPEED as f32];
        let high = [MAX_POSITION as f32, MAX_SPEED as f32];
        Self {
            state: None,
            rng: EnvRng::new(EnvRng::DEFAULT_SEED),
            obs_space: Space::box_f32(&low, &high),
            act_space: Space::box_f32(&[-1.0], &[1.0]),
        }
    }
    fn write_obs(s: State, obs: &mut Vec<f64>) {
        obs.clear();
        match s {
            State::F64(v) => obs.extend(v.map(|x| f64::from(x as f32))),
            State::F32(v) => obs.extend(v.map(f64::from)),
        }
    }
}

/// `min(max(a, -1.0), 1.0)` in Python: stays a NumPy `float32` inside the range, becomes the
/// Python float `+-1.0` (a `float64`) outside it.
enum Force {
    F32(f32),
    F64(f64),
}

fn clip_force(a: f32) -> Force {
    if a < -1.0 {
        Force::F64(-1.0)
    } else if a > 1.0 {
        Force::F64(1.0)
    } else {
        Force::F32(a)
    }
}

/// One step from a `float64` state (the first step after reset): everything in `float64`
/// except `force * power - 0.0025 cos(3 pos)`, which is `float32` when the force is.
fn step_f64(position: f64, velocity: f64, force: &Force) -> (f64, f64) {
    let gravity_term = 0.0025 * (3.0 * position).cos();
    let dv = match *force {
        Force::F32(f) => f64::from((f * POWER as f32) - gravity_term as f32),
        Force::F64(f) => f * POWER - gravity_term,
    };
    let mut velocity = velocity + dv;
    if velocity > MAX_SPEED {
        velocity = MAX_SPEED;
    }
    if velocity < -MAX_SPEED {
        velocity = -MAX_SPEED;
    }
    let mut position = position + velocity;
    if position > MAX_POSITION {
        position = MAX_POSITION;
    }
    if position < MIN_POSITION {
        position = MIN_POSITION;
    }
    if position == MIN_POSITION && velocity < 0.0 {
        velocity = 0.0;
    }
    (position, velocity)
}

/// One step from a `float32` state: the Python floats are rounded to `float32` (NEP 50) and
/// every operation with the state is `float32`.
fn step_f32(position: f32, velocity: f32, force: &Force) -> (f32, f32) {
    let cos = f64::from(3.0_f32 * position).cos();
    let dv: f32 = match *force {
        Force::F32(f) => (f * POWER as f32) - (0.0025 * cos) as f32,
        Force::F64(f) => (f * POWER - 0.0025 * cos) as f32,
    };
    let (max_speed, min_pos, max_pos) =
        (MAX_SPEED as f32, MIN_POSITION as f32, MAX_POSITION as f32);
    let mut velocity = velocity + dv;
    if velocity > max_speed {
        velocity = max_speed;
    }
    if velocity < -max_speed {
        velocity = -max_speed;
    }
    let mut position = position + velocity;
    if position > max_pos {
        position = max_pos;
    }
    if position < min_pos {
        position = min_pos;
    }
    if position == min_pos && velocity < 0.0 {
        velocity = 0.0;
    }
    (position, velocity)
}

impl Env for MountainCarContinuous {
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
        let s = State::F64([self.rng.uniform(-0.6, -0.4), 0.0]);
        self.state = Some(s);
        Self::write_obs(s, obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let a = expect_continuous(ID, &self.act_space, action)?[0];
        let state = self.state.ok_or(crate::EnvError::NotReset { env: ID })?;
        let force = clip_force(a);
        let (position, velocity, terminated) = match state {
            State::F64([p, v]) => {
                let (p, v) = step_f64(p, v, &force);
                (p as f32, v as f32, p >= GOAL_POSITION && v >= 0.0)
            }
            State::F32([p, v]) => {
                let (p, v) = step_f32(p, v, &force);
                (p, v, p >= GOAL_POSITION as f32 && v >= 0.0)
            }
        };
        let mut reward = if terminated { 100.0 } else { 0.0 };
        let a = f64::from(a);
        reward -= a * a * 0.1;
        let s = State::F32([position, velocity]);
        self.state = Some(s);
        Self::write_obs(s, obs);
        Ok(Outcome {
            reward,
            terminated,
            truncated: false,
        })
    }
    fn state(&self) -> Vec<f64> {
        match self.state {
            Some(State::F64(v)) => v.to_vec(),
            Some(State::F32(v)) => v.map(f64::from).to_vec(),
            None => Vec::new(),
        }
    }
    /// Sets a `float64` state, as after `reset` (Gymnasium's first-step arithmetic follows).
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()> {
        check_state(ID, state, 2)?;
        let s = State::F64([state[0], state[1]]);
        self.state = Some(s);
        Self::write_obs(s, obs);
        Ok(())
    }
}
