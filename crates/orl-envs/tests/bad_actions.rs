//! Bad actions and states return errors, never panic, and leave the environment usable:
//! wrong kind, wrong length, NaN/inf values, discrete index out of range, step before reset,
//! bad `set_state` input, unknown ids. Every registered environment of this build is covered.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use orl_envs::{Action, Env, EnvError, REGISTRY, Space, make};

fn envs() -> Vec<Box<dyn Env>> {
    REGISTRY
        .iter()
        .filter(|s| !s.needs_mujoco || orl_envs::MUJOCO_ENABLED)
        .map(|s| make(s.id).unwrap())
        .collect()
}

fn valid_action(space: &Space) -> (Option<i64>, Vec<f32>) {
    match space {
        Space::Discrete { .. } => (Some(0), Vec::new()),
        Space::Box { low, .. } => (None, vec![0.0; low.len()]),
    }
}

#[test]
fn step_before_reset_is_an_error() {
    for mut env in envs() {
        let (d, c) = valid_action(env.action_space());
        let a = d.map(Action::Discrete).unwrap_or(Action::Continuous(&c));
        assert!(
            matches!(env.step(a), Err(EnvError::NotReset { .. })),
            "{}",
            env.id()
        );
    }
}

#[test]
fn wrong_action_kind_is_an_error() {
    for mut env in envs() {
        env.reset(Some(0));
        let r = match env.action_space() {
            Space::Discrete { .. } => env.step(Action::Continuous(&[0.0])),
            Space::Box { .. } => env.step(Action::Discrete(0)),
        };
        assert!(
            matches!(r, Err(EnvError::ActionKind { .. })),
            "{}: {r:?}",
            env.id()
        );
    }
}

#[test]
fn wrong_action_length_is_an_error() {
    for mut env in envs() {
        let Space::Box { low, .. } = env.action_space().clone() else {
            continue;
        };
        env.reset(Some(0));
        for len in [0, low.len() + 1] {
            let a = vec![0.0; len];
            let r = env.step(Action::Continuous(&a));
            assert!(
                matches!(r, Err(EnvError::ActionLength { expected, found, .. }) if expected == low.len() && found == len),
                "{}: {r:?}",
                env.id()
            );
        }
    }
}

#[test]
fn non_finite_actions_are_errors_and_leave_the_state_alone() {
    for mut env in envs() {
        let Space::Box { low, .. } = env.action_space().clone() else {
            continue;
        };
        env.reset(Some(3));
        let before = env.state();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut a = vec![0.0; low.len()];
            a[low.len() - 1] = bad;
            let r = env.step(Action::Continuous(&a));
            assert!(
                matches!(r, Err(EnvError::NonFiniteAction { index, .. }) if index == low.len() - 1),
                "{}",
                env.id()
            );
        }
        assert_eq!(
            env.state(),
            before,
            "{}: state changed by a refused action",
            env.id()
        );
        let ok = vec![0.0; low.len()];
        assert!(env.step(Action::Continuous(&ok)).is_ok(), "{}", env.id());
    }
}

#[test]
fn discrete_index_out_of_range_is_an_error() {
    for mut env in envs() {
        let Space::Discrete { n } = *env.action_space() else {
            continue;
        };
        env.reset(Some(0));
        for bad in [-1, n as i64, i64::MAX, i64::MIN] {
            let r = env.step(Action::Discrete(bad));
            assert!(
                matches!(r, Err(EnvError::DiscreteOutOfRange { action, .. }) if action == bad),
                "{}: {r:?}",
                env.id()
            );
        }
        assert!(env.step(Action::Discrete(n as i64 - 1)).is_ok());
    }
}

#[test]
fn out_of_range_continuous_values_are_clipped_as_in_gymnasium() {
    // Pendulum clips the torque to [-2, 2]: a torque of 50 acts like 2.
    let mut a = make("Pendulum-v1").unwrap();
    let mut b = make("Pendulum-v1").unwrap();
    a.reset(Some(7));
    b.reset(Some(7));
    let sa = a.step(Action::Continuous(&[50.0])).unwrap();
    let sb = b.step(Action::Continuous(&[2.0])).unwrap();
    assert_eq!(sa.observation, sb.observation);
    assert_eq!(sa.reward, sb.reward);
}

#[test]
fn bad_states_are_errors() {
    for mut env in envs() {
        env.reset(Some(0));
        let n = env.state().len();
        let mut obs = Vec::new();
        assert!(matches!(
            env.set_state(&vec![0.0; n + 1], &mut obs),
            Err(EnvError::BadState { .. })
        ));
        let mut s = env.state();
        s[0] = f64::NAN;
        assert!(
            matches!(env.set_state(&s, &mut obs), Err(EnvError::BadState { .. })),
            "{}",
            env.id()
        );
    }
}

#[test]
fn unknown_ids_name_the_known_ones() {
    let err = make("CartPole-v0").err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("CartPole-v0") && msg.contains("CartPole-v1"),
        "{msg}"
    );
}

#[test]
fn same_seed_same_episode_other_seed_other_start() {
    for spec in REGISTRY
        .iter()
        .filter(|s| !s.needs_mujoco || orl_envs::MUJOCO_ENABLED)
    {
        let mut a = make(spec.id).unwrap();
        let mut b = make(spec.id).unwrap();
        let (oa, ob) = (a.reset(Some(11)), b.reset(Some(11)));
        assert_eq!(oa, ob, "{}", spec.id);
        let oc = b.reset(Some(12));
        assert_ne!(oa, oc, "{}", spec.id);
        // Reset draws lie in Gymnasium's ranges.
        let s = a.state();
        let bound = match spec.id {
            "CartPole-v1" => 0.05,
            "Acrobot-v1" => 0.1,
            "Pendulum-v1" => std::f64::consts::PI,
            _ => f64::INFINITY,
        };
        assert!(s.iter().all(|v| v.abs() <= bound), "{}: {s:?}", spec.id);
    }
}
