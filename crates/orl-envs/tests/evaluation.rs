//! Policy evaluation: statistics, normalised scores, thread independence, time limits, errors.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use orl_envs::{EnvError, EvalConfig, OwnedAction, RefScores, evaluate, make, run_episode};

fn bang_bang() -> impl FnMut(&[f32]) -> OwnedAction {
    |obs: &[f32]| OwnedAction::Discrete(i64::from(obs[2] + 0.5 * obs[3] > 0.0))
}

#[test]
fn report_matches_episodes_run_one_by_one() {
    let cfg = EvalConfig {
        episodes: 5,
        seed: 100,
        threads: 2,
        reference: Some(RefScores {
            min: 0.0,
            max: 500.0,
        }),
    };
    let r = evaluate(|| make("CartPole-v1"), bang_bang, &cfg).unwrap();
    let mut env = make("CartPole-v1").unwrap();
    let mut p = bang_bang();
    let manual: Vec<(f64, usize)> = (0..5)
        .map(|i| run_episode(&mut env, &mut p, 100 + i as u64, i).unwrap())
        .collect();
    assert_eq!(r.returns, manual.iter().map(|m| m.0).collect::<Vec<_>>());
    assert_eq!(r.lengths, manual.iter().map(|m| m.1).collect::<Vec<_>>());
    let mean = r.returns.iter().sum::<f64>() / 5.0;
    assert!((r.mean - mean).abs() < 1e-12);
    let var = r.returns.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
    assert!((r.std - var.sqrt()).abs() < 1e-9);
    assert_eq!(
        r.min,
        r.returns.iter().cloned().fold(f64::INFINITY, f64::min)
    );
    assert_eq!(
        r.max,
        r.returns.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
    );
    assert!((r.normalized_mean.unwrap() - mean / 5.0).abs() < 1e-9);
    // CartPole pays 1 per step: the return is the length.
    for (ret, len) in r.returns.iter().zip(&r.lengths) {
        assert_eq!(*ret, *len as f64);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let policy = || {
        |obs: &[f32]| OwnedAction::Continuous(vec![(-2.0 * obs[1] - 0.5 * obs[2]).clamp(-2.0, 2.0)])
    };
    let run = |threads| {
        evaluate(
            || make("Pendulum-v1"),
            policy,
            &EvalConfig {
                episodes: 7,
                seed: 3,
                threads,
                reference: None,
            },
        )
        .unwrap()
    };
    let (one, two, many) = (run(1), run(2), run(16));
    assert_eq!(one, two);
    assert_eq!(one, many);
    // Pendulum never terminates: every episode ends at the 200-step TimeLimit.
    assert!(one.lengths.iter().all(|&l| l == 200));
}

#[test]
fn d4rl_references_normalise_as_published() {
    let h = RefScores::d4rl("Hopper-v5").unwrap();
    assert_eq!((h.min, h.max), (-20.272305, 3234.3));
    assert!((h.normalize(3234.3) - 100.0).abs() < 1e-12);
    assert!(h.normalize(-20.272305).abs() < 1e-12);
    assert_eq!(RefScores::d4rl("halfcheetah").unwrap().max, 12135.0);
    assert_eq!(RefScores::d4rl("walker2d-medium-v2").unwrap().min, 1.629008);
    assert!(RefScores::d4rl("CartPole-v1").is_none());
}

#[test]
fn zero_episodes_and_failing_policies_are_errors() {
    let cfg = EvalConfig {
        episodes: 0,
        ..EvalConfig::default()
    };
    assert!(matches!(
        evaluate(|| make("CartPole-v1"), bang_bang, &cfg),
        Err(EnvError::InvalidConfig(_))
    ));
    // A policy emitting a wrong-sized action: the environment's error comes back.
    let cfg = EvalConfig {
        episodes: 2,
        ..EvalConfig::default()
    };
    let bad = || |_: &[f32]| OwnedAction::Continuous(vec![0.0, 0.0]);
    let err = evaluate(|| make("Pendulum-v1"), bad, &cfg).unwrap_err();
    assert!(matches!(err, EnvError::ActionLength { .. }), "{err}");
}
