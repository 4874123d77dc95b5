//! Gymnasium 1.4.0 MuJoCo locomotion v5 (`hopper_v5.py`, `half_cheetah_v5.py`, `walker2d_v5.py`)
//! through `mujoco-rs` 7.0.0 (MuJoCo 3.17.0), with Gymnasium's default constructor arguments.
//!
//! A step does what `MujocoEnv` does: `ctrl = action`, `mj_step` `frame_skip` times,
//! `mj_rnePostConstraint`. Then, with `dt = timestep * frame_skip`:
//!
//! ```text
//! x_velocity = (qpos[0]' - qpos[0]) / dt
//! ctrl_cost  = f32(f32(w) * sum_f32(a_i * a_i))            (w = 1e-3 Hopper/Walker2d, 0.1 HalfCheetah)
//! reward     = (x_velocity + healthy * [not HalfCheetah]) - ctrl_cost      (float64)
//! obs        = qpos[1:] ++ qvel       (qvel clipped to [-10, 10] for Hopper and Walker2d)
//! terminated = not healthy            (never for HalfCheetah)
//! ```
//!
//! Healthy: Hopper needs `qpos[2:] ++ qvel` in `(-100, 100)`, `z > 0.7`, `|angle| < 0.2`;
//! Walker2d needs `0.8 < z < 2` and `|angle| < 1`. Reset (`mj_resetData`, then `mj_forward` on
//! the noisy state): `qpos = qpos0 + U[-s, s]`, `qvel = U[-s, s]` with `s = 0.005` for Hopper and
//! Walker2d; HalfCheetah uses `s = 0.1` for `qpos` and `0.1 * N(0, 1)` for `qvel`. The noise is
//! drawn as Gymnasium draws it, bit for bit (`crate::np_random`: `uniform`, `standard_normal`).

use std::sync::Arc;

use mujoco_rs::wrappers::{MjData, MjModel};

use crate::env::{Env, EnvRng, Outcome, check_state};
use crate::error::{EnvError, Result};
use crate::space::{Action, Dtype, Space, expect_continuous};

/// Which locomotion task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocomotionKind {
    /// `Hopper-v5`.
    Hopper,
    /// `HalfCheetah-v5`.
    HalfCheetah,
    /// `Walker2d-v5`.
    Walker2d,
}

impl LocomotionKind {
    fn id(self) -> &'static str {
        match self {
            Self::Hopper => "Hopper-v5",
            Self::HalfCheetah => "HalfCheetah-v5",
            Self::Walker2d => "Walker2d-v5",
        }
    }
    /// The model XML Gymnasium ships (MIT; see `assets/LICENSE-gymnasium.txt`).
    fn xml(self) -> &'static str {
        match self {
            Self::Hopper => include_str!("../../assets/hopper.xml"),
            Self::HalfCheetah => include_str!("../../assets/half_cheetah.xml"),
            Self::Walker2d => include_str!("../../assets/walker2d_v5.xml"),
        }
    }
    fn frame_skip(self) -> usize {
        match self {
            Self::HalfCheetah => 5,
            _ => 4,
        }
    }
    fn ctrl_cost_weight(self) -> f64 {
        match self {
            Self::HalfCheetah => 0.1,
            _ => 1e-3,
        }
    }
    fn reset_noise_scale(self) -> f64 {
        match self {
            Self::HalfCheetah => 0.1,
            _ => 5e-3,
        }
    }
}

/// A MuJoCo locomotion environment (without its time limit; use [`crate::make`]).
pub struct Locomotion {
    kind: LocomotionKind,
    data: MjData<Arc<MjModel>>,
    init_qpos: Vec<f64>,
    init_qvel: Vec<f64>,
    dt: f64,
    nq: usize,
    nv: usize,
    reset_done: bool,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
}

impl Locomotion {
    /// Loads the model and allocates the simulation data.
    pub fn new(kind: LocomotionKind) -> Result<Self> {
        let env = kind.id();
        let model = MjModel::from_xml_string(kind.xml()).map_err(|e| EnvError::Mujoco {
            env,
            reason: e.to_string(),
        })?;
        let model = Arc::new(model);
        let (nq, nv, nu) = (
            model.nq() as usize,
            model.nv() as usize,
            model.nu() as usize,
        );
        let dt = model.opt().timestep * kind.frame_skip() as f64;
        let ranges = model.actuator_ctrlrange();
        let low: Vec<f32> = ranges.iter().map(|r| r[0] as f32).collect();
        let high: Vec<f32> = ranges.iter().map(|r| r[1] as f32).collect();
        debug_assert_eq!(low.len(), nu);
        let data = MjData::try_new(model.clone()).map_err(|e| EnvError::Mujoco {
            env,
            reason: e.to_string(),
        })?;
        let init_qpos = data.qpos().to_vec();
        let init_qvel = data.qvel().to_vec();
        let obs_dim = nq - 1 + nv;
        Ok(Self {
            kind,
            data,
            init_qpos,
            init_qvel,
            dt,
            nq,
            nv,
            reset_done: false,
            rng: EnvRng::new(EnvRng::DEFAULT_SEED),
            obs_space: Space::Box {
                low: vec![f64::NEG_INFINITY; obs_dim],
                high: vec![f64::INFINITY; obs_dim],
                dtype: Dtype::F64,
            },
            act_space: Space::box_f32(&low, &high),
        })
    }

    /// The control time step `timestep * frame_skip`.
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// Current `qpos[0]` (Gymnasium's `info["x_position"]`).
    pub fn x_position(&self) -> f64 {
        self.data.qpos()[0]
    }

    fn write_obs(&self, obs: &mut Vec<f64>) {
        obs.clear();
        obs.extend_from_slice(&self.data.qpos()[1..]);
        match self.kind {
            LocomotionKind::HalfCheetah => obs.extend_from_slice(self.data.qvel()),
            _ => obs.extend(self.data.qvel().iter().map(|v| v.clamp(-10.0, 10.0))),
        }
    }

    fn is_healthy(&self) -> bool {
        let qpos = self.data.qpos();
        let (z, angle) = (qpos[1], qpos[2]);
        match self.kind {
            LocomotionKind::Hopper => {
                let state_ok = qpos[2..]
                    .iter()
                    .chain(self.data.qvel())
                    .all(|&v| -100.0 < v && v < 100.0);
                state_ok && 0.7 < z && z < f64::INFINITY && -0.2 < angle && angle < 0.2
            }
            LocomotionKind::Walker2d => 0.8 < z && z < 2.0 && -1.0 < angle && angle < 1.0,
            LocomotionKind::HalfCheetah => true,
        }
    }

    /// `MujocoEnv.set_state`: `mj_resetData` was done by the caller; set `qpos`/`qvel`, `mj_forward`.
    fn put_state(&mut self, qpos: &[f64], qvel: &[f64]) {
        self.data.qpos_mut().copy_from_slice(qpos);
        self.data.qvel_mut().copy_from_slice(qvel);
        self.data.forward();
        self.reset_done = true;
    }
}

impl Env for Locomotion {
    fn id(&self) -> &'static str {
        self.kind.id()
    }
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut Vec<f64>) {
        self.rng.reseed(seed);
        self.data.reset();
        let s = self.kind.reset_noise_scale();
        let qpos: Vec<f64> = self
            .init_qpos
            .iter()
            .map(|&q| q + self.rng.uniform(-s, s))
            .collect();
        let qvel: Vec<f64> = match self.kind {
            LocomotionKind::HalfCheetah => self
                .init_qvel
                .iter()
                .map(|&v| v + s * self.rng.standard_normal())
                .collect(),
            _ => self
                .init_qvel
                .iter()
                .map(|&v| v + self.rng.uniform(-s, s))
                .collect(),
        };
        self.put_state(&qpos, &qvel);
        self.write_obs(obs);
    }
    fn step_into(&mut self, action: Action<'_>, obs: &mut Vec<f64>) -> Result<Outcome> {
        let env = self.kind.id();
        let a = expect_continuous(env, &self.act_space, action)?;
        if !self.reset_done {
            return Err(EnvError::NotReset { env });
        }
        let x_before = self.data.qpos()[0];
        for (c, &v) in self.data.ctrl_mut().iter_mut().zip(a) {
            *c = f64::from(v);
        }
        for _ in 0..self.kind.frame_skip() {
            self.data.step();
        }
        self.data.rne_post_constraint();
        let x_velocity = (self.data.qpos()[0] - x_before) / self.dt;
        // np.sum(np.square(action)) over float32, sequential for fewer than 8 values.
        let sum_sq = a.iter().fold(0.0_f32, |acc, &v| acc + v * v);
        let ctrl_cost = (self.kind.ctrl_cost_weight() as f32) * sum_sq;
        let healthy = self.is_healthy();
        let reward = match self.kind {
            LocomotionKind::HalfCheetah => x_velocity - f64::from(ctrl_cost),
            _ => (x_velocity + if healthy { 1.0 } else { 0.0 }) - f64::from(ctrl_cost),
        };
        self.write_obs(obs);
        Ok(Outcome {
            reward,
            terminated: !healthy,
            truncated: false,
        })
    }
    fn state(&self) -> Vec<f64> {
        let mut s = self.data.qpos().to_vec();
        s.extend_from_slice(self.data.qvel());
        s
    }
    /// `state` is `qpos` (nq values) followed by `qvel` (nv values).
    fn set_state(&mut self, state: &[f64], obs: &mut Vec<f64>) -> Result<()> {
        check_state(self.kind.id(), state, self.nq + self.nv)?;
        self.data.reset();
        let (qpos, qvel) = state.split_at(self.nq);
        self.put_state(qpos, qvel);
        self.write_obs(obs);
        Ok(())
    }
}
