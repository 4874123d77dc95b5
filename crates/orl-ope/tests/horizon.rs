//! The estimators value the same quantity: the discounted return up to the time limit. On
//! episodes cut at `T = 10` with reward 1 per step and gamma 0.9, that is
//! `(1 - 0.9^10) / (1 - 0.9) = 6.51`, where bootstrapping through the time limit would give the
//! infinite-horizon 10. FQE's default fit converges there and says so.

#![allow(clippy::unwrap_used)]

use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
use orl_nets::{Device, Policy, Tensor};
use orl_ope::{Estimator, OpeConfig, evaluate};
use rand::{RngExt, SeedableRng};

const T: usize = 10;
const GAMMA: f64 = 0.9;

/// Uniform over two actions.
struct Uniform;
impl Policy for Uniform {
    fn is_discrete(&self) -> bool {
        true
    }
    fn act(&mut self, obs: &Tensor, _: bool) -> orl_nets::Result<Tensor> {
        let n = obs.dim(0)?;
        Ok(Tensor::from_vec(vec![0u32; n], n, &Device::Cpu)?)
    }
    fn log_prob(&mut self, obs: &Tensor, _: &Tensor) -> orl_nets::Result<Option<Tensor>> {
        let n = obs.dim(0)?;
        Ok(Some(Tensor::from_vec(
            vec![0.5f32.ln(); n],
            n,
            &Device::Cpu,
        )?))
    }
}

/// 60 episodes of `T` steps, reward 1 per step, the last cut by the time limit; observations
/// are noise the reward does not depend on; uniform actions with their logged probability.
fn dataset() -> Dataset {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let n = 60 * T;
    let obs: Vec<f32> = (0..n * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut next = obs[2..].to_vec();
    next.extend([0.0, 0.0]);
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions: Actions::Discrete((0..n).map(|_| rng.random_range(0..2)).collect()),
        rewards: vec![1.0; n],
        terminals: vec![false; n],
        timeouts: (0..n).map(|i| i % T == T - 1).collect(),
        behavior_log_prob: Some(vec![0.5f64.ln(); n]),
    };
    let mut meta = DatasetMeta::new(
        ObservationSpace {
            dim: 2,
            low: None,
            high: None,
        },
        ActionSpace::Discrete { n: 2 },
    );
    meta.max_episode_steps = Some(T as u64);
    let eps: Vec<(i64, usize)> = (0..60).map(|k| (k, T)).collect();
    Dataset::new(meta, cols, &eps).unwrap()
}

#[test]
fn fqe_wis_and_wdr_estimate_the_time_limited_value() {
    let truth = (1.0 - GAMMA.powi(T as i32)) / (1.0 - GAMMA);
    let mut cfg = OpeConfig {
        gamma: GAMMA,
        estimators: vec![Estimator::Wis, Estimator::Fqe, Estimator::Wdr],
        resamples: 20,
        ..OpeConfig::default()
    };
    cfg.fqe.hidden = vec![32, 32];
    cfg.fqe.lr = 3e-3;
    let rep = evaluate(&dataset(), &mut Uniform, &cfg).unwrap();
    assert_eq!(rep.horizon, T);
    assert!(rep.target.contains("first 10 steps"), "{}", rep.target);
    let fit = rep.fqe_fit.clone().unwrap();
    assert!(fit.converged, "{fit:?}");
    for e in &rep.estimates {
        let v = e.value.unwrap();
        assert!(
            (v - truth).abs() < 0.05 * truth,
            "{}: {v} vs the time-limited value {truth} (infinite horizon: 10)",
            e.estimator
        );
    }
    let fqe = rep.estimates.iter().find(|e| e.estimator == "fqe").unwrap();
    assert!(
        fqe.warnings.iter().any(|w| w.starts_with("FQE converged")),
        "{:?}",
        fqe.warnings
    );
}

/// Too few steps to propagate the value: the report says the fit did not converge.
#[test]
fn an_unconverged_fit_is_reported() {
    let mut cfg = OpeConfig {
        gamma: GAMMA,
        estimators: vec![Estimator::Fqe],
        resamples: 20,
        ..OpeConfig::default()
    };
    cfg.fqe.hidden = vec![16];
    cfg.fqe.steps = Some(300);
    let rep = evaluate(&dataset(), &mut Uniform, &cfg).unwrap();
    let fit = rep.fqe_fit.unwrap();
    assert!(!fit.converged, "{fit:?}");
    assert!(
        rep.estimates[0]
            .warnings
            .iter()
            .any(|w| w.contains("did not converge"))
    );
}
