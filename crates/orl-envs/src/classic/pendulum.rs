//! `Pendulum-v1` (`gymnasium/envs/classic_control/pendulum.py`).
//!
//! State `(theta, theta_dot)` in `float64`; observation `(cos theta, sin theta, theta_dot)` as
//! `float32`. With `u = clip(a, -2, 2)` a `float32` scalar (NumPy 2 keeps it `float32`):
//!
//! ```text
//! cost      = normalize(theta)^2 + 0.1 theta_dot^2 + f32(f32(0.001) * powf(u, 2))
//! theta_dot'= clip(theta_dot + (15 sin(theta) + f32(f32(3) * u)) * 0.05, -8, 8)
//! theta'    = theta + theta_dot' * 0.05
//! reward    = -cost
//! ```
//!
//! Reset: `theta ~ U[-pi, pi]`, `theta_dot ~ U[-1, 1]`.

use crate::env::{Env, EnvRng, Outcome, check_state};
use crate::error::Result;
use crate::space::{Action, Space, expect_continuous};
use std::f64::consts::PI;

const ID: &str = "Pendulum-v1";
const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const G: f64 = 10.0;
const M: f64 = 1.0;
const L: f64 = 1.0;

/// `Pendulum-v1` without its time limit (use [`crate::make`] for the registered version).
#[derive(Debug, Clone)]
pub struct Pendulum {
    state: Option<[f64; 2]>,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Pendulum {
    /// A new environment; call `reset` before stepping.
    pub fn new() -> Self {
        Self {
            state: None,
            rng: EnvRng::new(EnvRng::DEFAULT_SEED),
            obs_space: Space::box_f32(&[-1.0, -1.0, -8.0], &[1.0, 1.0, 8.0]),
            act_space: Space::box_f32(&[-MAX_TORQUE], &[MAX_TORQUE]),
        }
    }
    fn write_obs(s: &[f64; 2], obs: &mut Vec<f64>) {
        obs.clear();
        obs.extend([s[0].cos() as f32, s[0].sin() as f32, s[1] as f32].map(f64::from));
    }
}

/// Gymnasium's `angle_normalize`: `((x + pi) % (2 pi)) - pi` with Python's floor-modulo.
fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

impl Env for Pendulum {
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
        let s = [self.rng.uniform(-PI, PI), self.rng.uniform(-1.0, 1.0)];
        self.state = Some(s);
        Self::write_obs(&s, obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let a = expect_continuous(ID, &self.act_space, action)?;
        let [th, thdot] = self.state.ok_or(crate::EnvError::NotReset { env: ID })?;
        let u: f32 = a[0].clamp(-MAX_TORQUE, MAX_TORQUE);
        // float32 scalar arithmetic, as NumPy 2 does it; `powf` is C's, as numpy's `u**2`.
        let ctrl_cost: f32 = 0.001_f32 * libm::powf(u, 2.0);
        let an = angle_normalize(th);
        let costs = an * an + 0.1 * (thdot * thdot) + f64::from(ctrl_cost);
        let torque_term: f32 = (3.0 / (M * L * L)) as f32 * u;
        let newthdot = thdot + (3.0 * G / (2.0 * L) * th.sin() + f64::from(torque_term)) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        let s = [newth, newthdot];
        self.state = Some(s);
        Self::write_obs(&s, obs);
        Ok(Outcome {
            reward: -costs,
            terminated: false,
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
