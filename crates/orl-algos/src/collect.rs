//! Collecting datasets by rolling behaviour policies in an environment (D4RL's recipe: whole
//! episodes, `timeout` at the registered time limit, the next observation kept on every row),
//! with each action's log-probability under the behaviour policy logged for off-policy
//! evaluation.

use orl_data::{ActionSpace, Dataset, Transition, TransitionAction, TransitionBuffer};
use orl_envs::{Env, OwnedAction, Space};

use crate::error::Result;

/// A behaviour policy: an action for a raw observation and its log-probability (`None` when the
/// policy has no density, e.g. a deterministic controller).
pub trait Behavior {
    /// Action and `log pi(a|s)`.
    fn act(&mut self, observation: &[f32]) -> Result<(OwnedAction, Option<f64>)>;
}

impl<F: FnMut(&[f32]) -> Result<(OwnedAction, Option<f64>)>> Behavior for F {
    fn act(&mut self, observation: &[f32]) -> Result<(OwnedAction, Option<f64>)> {
        self(observation)
    }
}

/// Rolls `behavior` from `reset(seed + k)` for episode `k` until at least `transitions` rows are
/// collected, then cuts the data to exactly `transitions` rows (as D4RL does: the last episode
/// may be incomplete). `terminals` mark MDP termination; `timeouts` mark the time limit.
pub fn collect(
    env: &mut dyn Env,
    behavior: &mut dyn Behavior,
    transitions: usize,
    seed: u64,
) -> Result<Dataset> {
    let od = env.observation_space().dim();
    let act_space = match env.action_space() {
        Space::Discrete { n } => ActionSpace::Discrete { n: *n },
        Space::Box { low, high, .. } => ActionSpace::Continuous {
            dim: low.len(),
            low: Some(low.clone()),
            high: Some(high.clone()),
        },
    };
    let mut buf = TransitionBuffer::for_spaces(od, act_space);
    buf.meta_mut().env_id = Some(env.id().to_string());
    buf.meta_mut().seed = Some(seed as i64);
    buf.meta_mut().max_episode_steps = env.max_episode_steps().map(|m| m as u64);
    let (mut o, mut o2) = (Vec::new(), Vec::new());
    let (mut o32, mut next32) = (Vec::new(), Vec::new());
    let mut k = 0u64;
    while buf.len() < transitions {
        env.reset_into(Some(seed + k), &mut o);
        loop {
            o32.clear();
            o32.extend(o.iter().map(|&v| v as f32));
            let (a, lp) = behavior.act(&o32)?;
            let out = env.step_into(a.as_action(), &mut o2)?;
            next32.clear();
            next32.extend(o2.iter().map(|&v| v as f32));
            buf.push(Transition {
                observation: &o32,
                action: match &a {
                    OwnedAction::Discrete(i) => TransitionAction::Discrete(*i),
                    OwnedAction::Continuous(v) => TransitionAction::Continuous(v),
                },
                reward: out.reward as f32,
                next_observation: &next32,
                terminal: out.terminated,
                timeout: out.truncated,
                log_prob: lp,
            })?;
            std::mem::swap(&mut o, &mut o2);
            if out.terminated || out.truncated || buf.len() >= transitions {
                break;
            }
        }
        buf.end_episode();
        k += 1;
    }
    Ok(buf.to_dataset()?)
}

/// A swing-up-and-balance controller for `Pendulum-v1` (energy pumping far from the top, PD
/// near it), plus Gaussian noise of std `noise` (clipped to the torque limit of 2). Returns the
/// action and its log-density under the unclipped Gaussian (exact for unclipped actions).
///
/// With the dynamics `theta'' = 15 sin(theta) + 3u`, the energy `E = theta'^2 / 2 + 15 cos(theta)`
/// (15 upright at rest) changes as `dE/dt = 3 u theta'`, so `u = k (15 - E) theta'` pumps
/// energy; near the top `u = -(10 theta + 2 theta')` stabilises.
pub fn pendulum_controller(obs: &[f32], noise: f64, z: f64) -> (f32, f64) {
    let (c, s, w) = (f64::from(obs[0]), f64::from(obs[1]), f64::from(obs[2]));
    let theta = s.atan2(c);
    let u = if c > 0.85 {
        -(10.0 * theta + 2.0 * w)
    } else {
        let e = 0.5 * w * w + 15.0 * c;
        0.5 * (15.0 - e) * w.signum().max(0.0).mul_add(2.0, -1.0)
    };
    let a = (u + noise * z).clamp(-2.0, 2.0);
    let logp = if noise > 0.0 {
        -0.5 * z * z - noise.ln() - 0.918_938_533_204_672_7
    } else {
        0.0
    };
    (a as f32, logp)
}
