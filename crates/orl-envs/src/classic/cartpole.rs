//! `CartPole-v1` (`gymnasium/envs/classic_control/cartpole.py`, Barto, Sutton & Anderson 1983).
//!
//! State `(x, x_dot, theta, theta_dot)` in `float64`; observation the same cast to `float32`.
//! Euler integration with `tau = 0.02`; reward 1 per step (also on the terminating step);
//! terminated when `|x| > 2.4` or `|theta| > 12 degrees`. Reset: each state value uniform in
//! `[-0.05, 0.05]`.

use crate::env::{Env, EnvRng, Outcome, check_state};
use crate::error::Result;
use crate::space::{Action, Space, expect_discrete};

const ID: &str = "CartPole-v1";
const GRAVITY: f64 = 9.8;
const MASSCART: f64 = 1.0;
const MASSPOLE: f64 = 0.1;
const LENGTH: f64 = 0.5;
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02;
const X_THRESHOLD: f64 = 2.4;

/// `CartPole-v1` without its time limit (use [`crate::make`] for the registered version).
#[derive(Debug, Clone)]
pub struct CartPole {
    state: Option<[f64; 4]>,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// A new environment; call `reset` before stepping.
    pub fn new() -> Self {
        let theta = theta_threshold();
        let high = [
            (X_THRESHOLD * 2.0) as f32,
            f32::INFINITY,
            (theta * 2.0) as f32,
            f32::INFINITY,
        ];
        let low = high.map(|v| -v);
        Self {
            state: None,
            rng: EnvRng::new(EnvRng::DEFAULT_SEED),
            obs_space: Space::box_f32(&low, &high),
            act_space: Space::Discrete { n: 2 },
        }
    }

    fn write_obs(s: &[f64; 4], obs: &mut Vec<f64>) {
        obs.clear();
        obs.extend(s.iter().map(|&v| f64::from(v as f32)));
    }
}

fn theta_threshold() -> f64 {
    12.0 * 2.0 * std::f64::consts::PI / 360.0
}

impl Env for CartPole {
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
        let s = std::array::from_fn(|_| self.rng.uniform(-0.05, 0.05));
        self.state = Some(s);
        Self::write_obs(&s, obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let a = expect_discrete(ID, &self.act_space, action)?;
        let [x, x_dot, theta, theta_dot] =
            self.state.ok_or(crate::EnvError::NotReset { env: ID })?;
        let force = if a == 1 { FORCE_MAG } else { -FORCE_MAG };
        let total_mass = MASSPOLE + MASSCART;
        let polemass_length = MASSPOLE * LENGTH;
        let costheta = theta.cos();
        let sintheta = theta.sin();
        let temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;
        let x = x + TAU * x_dot;
        let x_dot = x_dot + TAU * xacc;
        let theta = theta + TAU * theta_dot;
        let theta_dot = theta_dot + TAU * thetaacc;
        let s = [x, x_dot, theta, theta_dot];
        self.state = Some(s);
        let th = theta_threshold();
        let terminated = x < -X_THRESHOLD || x > X_THRESHOLD || theta < -th || theta > th;
        Self::write_obs(&s, obs);
        // Gymnasium pays 1.0 on every step, including the terminating one.
        Ok(Outcome {
            reward: 1.0,
            terminated,
            truncated: false,
        })
    }
    fn state(&self) -> Vec<f64> {
        self.state.map(|s| s.to_vec()).unwrap_or_default()
    }
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()> {
        check_state(ID, state, 4)?;
        let s = [state[0], state[1], state[2], state[3]];
        self.state = Some(s);
        Self::write_obs(&s, obs);
        Ok(())
    }
}
