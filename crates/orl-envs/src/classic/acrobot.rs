//! `Acrobot-v1` (`gymnasium/envs/classic_control/acrobot.py`, Sutton 1996; "book" dynamics).
//!
//! State `(theta1, theta2, dtheta1, dtheta2)`: `float32` after reset, `float64` after a step
//! (`np.append` of the torque promotes it). One step integrates the equations of motion with a
//! single classical RK4 step of `dt = 0.2` on `(s, torque)`, torque in `{-1, 0, +1}`, then wraps
//! the angles into `[-pi, pi]` and bounds the velocities to `4 pi` and `9 pi`. Observation
//! `(cos t1, sin t1, cos t2, sin t2, dt1, dt2)` as `float32`; reward `-1` until
//! `-cos(t1) - cos(t2 + t1) > 1`, then `0` and terminated. Reset: each value `U[-0.1, 0.1]`
//! rounded to `float32`.

use crate::env::{Env, EnvRng, Outcome, check_state};
use crate::error::Result;
use crate::space::{Action, Space, expect_discrete};
use std::f64::consts::PI;

const ID: &str = "Acrobot-v1";
const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];

fn max_vel_1() -> f64 {
    4.0 * PI
}
fn max_vel_2() -> f64 {
    9.0 * PI
}

/// `Acrobot-v1` without its time limit (use [`crate::make`] for the registered version).
#[derive(Debug, Clone)]
pub struct Acrobot {
    state: Option<[f64; 4]>,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Default for Acrobot {
    fn default() -> Self {
        Self::new()
    }
}

impl Acrobot {
    /// A new environment; call `reset` before stepping.
    pub fn new() -> Self {
        let high = [1.0, 1.0, 1.0, 1.0, max_vel_1() as f32, max_vel_2() as f32];
        let low = high.map(|v| -v);
        Self {
            state: None,
            rng: EnvRng::new(EnvRng::DEFAULT_SEED),
            obs_space: Space::box_f32(&low, &high),
            act_space: Space::Discrete { n: 3 },
        }
    }
    fn write_obs(s: &[f64; 4], obs: &mut Vec<f64>) {
        obs.clear();
        let o = [s[0].cos(), s[0].sin(), s[1].cos(), s[1].sin(), s[2], s[3]];
        obs.extend(o.map(|v| f64::from(v as f32)));
    }
}

/// Gymnasium's `_dsdt` ("book" variant), the operations in Python's order.
fn dsdt(s: &[f64; 5]) -> [f64; 5] {
    let (m1, m2, l1, lc1, lc2, i1, i2) = (
        LINK_MASS_1,
        LINK_MASS_2,
        LINK_LENGTH_1,
        LINK_COM_POS_1,
        LINK_COM_POS_2,
        LINK_MOI,
        LINK_MOI,
    );
    let g = 9.8;
    let a = s[4];
    let (theta1, theta2, dtheta1, dtheta2) = (s[0], s[1], s[2], s[3]);
    let d1 =
        m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
    let d2 = m2 * (lc2 * lc2 + l1 * lc2 * theta2.cos()) + i2;
    let phi2 = m2 * lc2 * g * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * theta2.sin()
        - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
        + (m1 * lc1 + m2 * l1) * g * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * theta2.sin() - phi2)
        / (m2 * (lc2 * lc2) + i2 - (d2 * d2) / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2, 0.0]
}

/// Gymnasium's `rk4` over `t = [0, dt]`: one classical Runge-Kutta step.
fn rk4(y0: [f64; 5]) -> [f64; 5] {
    let dt = DT - 0.0;
    let dt2 = dt / 2.0;
    let add = |k: &[f64; 5], h: f64| std::array::from_fn::<f64, 5, _>(|i| y0[i] + h * k[i]);
    let k1 = dsdt(&y0);
    let k2 = dsdt(&add(&k1, dt2));
    let k3 = dsdt(&add(&k2, dt2));
    let k4 = dsdt(&add(&k3, dt));
    std::array::from_fn(|i| y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
}

/// Gymnasium's `wrap(x, -pi, pi)`.
fn wrap(mut x: f64, m: f64, big_m: f64) -> f64 {
    let diff = big_m - m;
    while x > big_m {
        x -= diff;
    }
    while x < m {
        x += diff;
    }
    x
}

/// Gymnasium's `bound(x, m, M)`: Python's `min(max(x, m), M)`.
fn bound(x: f64, m: f64, big_m: f64) -> f64 {
    let x = if m > x { m } else { x };
    if big_m < x { big_m } else { x }
}

impl Env for Acrobot {
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
        let s = std::array::from_fn(|_| f64::from(self.rng.uniform(-0.1, 0.1) as f32));
        self.state = Some(s);
        Self::write_obs(&s, obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let a = expect_discrete(ID, &self.act_space, action)?;
        let s = self.state.ok_or(crate::EnvError::NotReset { env: ID })?;
        let ns = rk4([s[0], s[1], s[2], s[3], AVAIL_TORQUE[a]]);
        let ns = [
            wrap(ns[0], -PI, PI),
            wrap(ns[1], -PI, PI),
            bound(ns[2], -max_vel_1(), max_vel_1()),
            bound(ns[3], -max_vel_2(), max_vel_2()),
        ];
        self.state = Some(ns);
        let terminated = -ns[0].cos() - (ns[1] + ns[0]).cos() > 1.0;
        Self::write_obs(&ns, obs);
        Ok(Outcome {
            reward: if terminated { 0.0 } else { -1.0 },
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
