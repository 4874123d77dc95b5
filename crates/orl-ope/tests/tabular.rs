//! Off-policy estimators on a small tabular MDP whose exact values come from dynamic
//! programming.
//!
//! States 0, 1, 2 and an absorbing terminal T; two actions; every episode starts in state 0 and
//! ends in T within three steps (0 -> {1, 2} -> {2, T} -> T). Observations are one-hot.
#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
use orl_nets::{DType, Device, Policy, Tensor};
use orl_ope::{
    DynamicsModel, Estimator, Fqe, FqeConfig, IsKind, Logged, OpeConfig, Trajectory, estimate,
    evaluate, rollout_values,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

const T: usize = 3; // terminal
const GAMMA: f64 = 0.9;
const R: [[f64; 2]; 3] = [[1.0, 0.0], [0.0, 2.0], [0.5, -1.0]];
const MU: [[f64; 2]; 3] = [[0.5, 0.5], [0.7, 0.3], [0.4, 0.6]];
const PI: [[f64; 2]; 3] = [[0.2, 0.8], [0.3, 0.7], [0.9, 0.1]];

/// `P[s][a]` over `{0, 1, 2, T}`.
type Kernel = [[[f64; 4]; 2]; 3];

const DETERMINISTIC: Kernel = [
    [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
    [[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]],
];
const STOCHASTIC: Kernel = [
    [[0.0, 0.7, 0.3, 0.0], [0.0, 0.2, 0.8, 0.0]],
    [[0.0, 0.0, 0.6, 0.4], [0.0, 0.0, 0.1, 0.9]],
    [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]],
];

/// Exact `Q^pi` (the MDP is a DAG: three sweeps suffice).
fn exact_q(p: &Kernel, pi: &[[f64; 2]; 3]) -> [[f64; 2]; 3] {
    let mut q = [[0.0; 2]; 3];
    for _ in 0..5 {
        let v: Vec<f64> = (0..3)
            .map(|s| pi[s][0] * q[s][0] + pi[s][1] * q[s][1])
            .collect();
        for s in 0..3 {
            for a in 0..2 {
                q[s][a] = R[s][a] + GAMMA * (0..3).map(|s2| p[s][a][s2] * v[s2]).sum::<f64>();
            }
        }
    }
    q
}

fn exact_v0(p: &Kernel, pi: &[[f64; 2]; 3]) -> f64 {
    let q = exact_q(p, pi);
    pi[0][0] * q[0][0] + pi[0][1] * q[0][1]
}

fn draw(rng: &mut Pcg64Mcg, probs: &[f64]) -> usize {
    let u: f64 = rng.random_range(0.0..1.0);
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.len() - 1
}

/// One episode under `MU`: `(s, a, r, s')` steps.
fn episode(p: &Kernel, rng: &mut Pcg64Mcg) -> Vec<(usize, usize, f64, usize)> {
    let mut s = 0;
    let mut out = Vec::new();
    while s != T {
        let a = draw(rng, &MU[s]);
        let s2 = draw(rng, &p[s][a]);
        out.push((s, a, R[s][a], s2));
        s = s2;
    }
    out
}

fn trajectory(steps: &[(usize, usize, f64, usize)], q: Option<&[[f64; 2]; 3]>) -> Trajectory {
    Trajectory {
        rewards: steps.iter().map(|x| x.2).collect(),
        log_ratios: steps
            .iter()
            .map(|&(s, a, _, _)| PI[s][a].ln() - MU[s][a].ln())
            .collect(),
        q: q.map_or(Vec::new(), |q| {
            steps.iter().map(|&(s, a, _, _)| q[s][a]).collect()
        }),
        v: q.map_or(Vec::new(), |q| {
            steps
                .iter()
                .map(|&(s, _, _, _)| PI[s][0] * q[s][0] + PI[s][1] * q[s][1])
                .collect()
        }),
    }
}

/// `reps` independent datasets of `n` episodes: the estimates of `kind`.
fn estimates(p: &Kernel, kind: IsKind, n: usize, reps: usize, seed: u64, with_q: bool) -> Vec<f64> {
    let q = exact_q(p, &PI);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    (0..reps)
        .map(|_| {
            let eps: Vec<Trajectory> = (0..n)
                .map(|_| trajectory(&episode(p, &mut rng), with_q.then_some(&q)))
                .collect();
            let refs: Vec<&Trajectory> = eps.iter().collect();
            estimate(kind, &refs, GAMMA, None).unwrap()
        })
        .collect()
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
    (m, v.sqrt())
}

#[test]
fn is_and_pdis_are_unbiased() {
    let truth = exact_v0(&STOCHASTIC, &PI);
    for kind in [IsKind::Is, IsKind::Pdis] {
        let est = estimates(&STOCHASTIC, kind, 20, 500, 1, false);
        let (m, sd) = mean_sd(&est);
        let se = sd / (est.len() as f64).sqrt();
        assert!(
            (m - truth).abs() < 4.0 * se,
            "{kind:?}: mean {m} vs exact {truth} (standard error {se})"
        );
    }
    // The behaviour policy's value differs, so unbiasedness is not trivial.
    assert!((exact_v0(&STOCHASTIC, &MU) - truth).abs() > 0.3);
}

#[test]
fn wis_bias_shrinks_with_data() {
    let truth = exact_v0(&STOCHASTIC, &PI);
    let bias = |n: usize| {
        let est = estimates(&STOCHASTIC, IsKind::Wis, n, 4000, 2, false);
        let (m, sd) = mean_sd(&est);
        (m - truth, sd / (est.len() as f64).sqrt())
    };
    let (b1, se1) = bias(1);
    let (b50, se50) = bias(50);
    // With one episode WIS returns its observed return: the behaviour policy's value.
    assert!(b1.abs() > 4.0 * se1, "bias with 1 episode {b1} (se {se1})");
    assert!(
        b50.abs() < b1.abs() / 4.0 && b50.abs() < 4.0 * se50 + 0.05,
        "bias with 50 episodes {b50} (se {se50}) vs 1 episode {b1}"
    );
}

#[test]
fn dr_with_exact_q_is_exact_per_episode_when_deterministic() {
    let truth = exact_v0(&DETERMINISTIC, &PI);
    let q = exact_q(&DETERMINISTIC, &PI);
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    for _ in 0..200 {
        let t = trajectory(&episode(&DETERMINISTIC, &mut rng), Some(&q));
        for kind in [IsKind::Dr, IsKind::Wdr] {
            let v = estimate(kind, &[&t], GAMMA, None).unwrap();
            assert!((v - truth).abs() < 1e-9, "{kind:?}: {v} vs {truth}");
        }
    }
    // ... while PDIS on the same episodes is not.
    let pd = estimates(&DETERMINISTIC, IsKind::Pdis, 1, 50, 3, false);
    assert!(pd.iter().any(|v| (v - truth).abs() > 0.1));
}

#[test]
fn dr_has_lower_variance_than_pdis_when_stochastic() {
    let truth = exact_v0(&STOCHASTIC, &PI);
    let dr = estimates(&STOCHASTIC, IsKind::Dr, 20, 500, 4, true);
    let pdis = estimates(&STOCHASTIC, IsKind::Pdis, 20, 500, 4, false);
    let (mdr, sdr) = mean_sd(&dr);
    let (_, spd) = mean_sd(&pdis);
    assert!(sdr < spd, "DR sd {sdr} vs PDIS sd {spd}");
    assert!((mdr - truth).abs() < 4.0 * sdr / (dr.len() as f64).sqrt());
}

/// The tabular policy `table` over one-hot observations.
struct Tabular {
    table: [[f64; 2]; 3],
    rng: Pcg64Mcg,
}

fn states(obs: &Tensor) -> Vec<usize> {
    obs.argmax(1)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
        .into_iter()
        .map(|s| s as usize)
        .collect()
}

impl Policy for Tabular {
    fn is_discrete(&self) -> bool {
        true
    }
    fn act(&mut self, obs: &Tensor, deterministic: bool) -> orl_nets::Result<Tensor> {
        let a: Vec<u32> = states(obs)
            .into_iter()
            .map(|s| {
                if deterministic {
                    u32::from(self.table[s][1] > self.table[s][0])
                } else {
                    draw(&mut self.rng, &self.table[s]) as u32
                }
            })
            .collect();
        let n = a.len();
        Ok(Tensor::from_vec(a, n, &Device::Cpu)?)
    }
    fn log_prob(&mut self, obs: &Tensor, a: &Tensor) -> orl_nets::Result<Option<Tensor>> {
        let a = a.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let lp: Vec<f32> = states(obs)
            .into_iter()
            .zip(a)
            .map(|(s, a)| self.table[s][a as usize].ln() as f32)
            .collect();
        let n = lp.len();
        Ok(Some(Tensor::from_vec(lp, n, &Device::Cpu)?))
    }
}

fn pi() -> Tabular {
    Tabular {
        table: PI,
        rng: Pcg64Mcg::seed_from_u64(7),
    }
}

fn one_hot(s: usize) -> [f32; 3] {
    let mut o = [0.0; 3];
    if s < 3 {
        o[s] = 1.0;
    }
    o
}

/// `n` behaviour episodes as a dataset, with or without the logged `log mu` column.
fn dataset(p: &Kernel, n: usize, seed: u64, logged: bool) -> Dataset {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut cols = Columns {
        observations: Vec::new(),
        next_observations: Vec::new(),
        next_valid: None,
        actions: Actions::Discrete(Vec::new()),
        rewards: Vec::new(),
        terminals: Vec::new(),
        timeouts: Vec::new(),
        behavior_log_prob: logged.then(Vec::new),
    };
    let mut acts = Vec::new();
    let mut eps = Vec::new();
    for k in 0..n {
        let ep = episode(p, &mut rng);
        eps.push((k as i64, ep.len()));
        for &(s, a, r, s2) in &ep {
            cols.observations.extend(one_hot(s));
            cols.next_observations.extend(one_hot(s2));
            acts.push(a as i64);
            cols.rewards.push(r as f32);
            cols.terminals.push(s2 == T);
            cols.timeouts.push(false);
            if let Some(lp) = cols.behavior_log_prob.as_mut() {
                lp.push(MU[s][a].ln());
            }
        }
    }
    cols.actions = Actions::Discrete(acts);
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: 3,
            low: None,
            high: None,
        },
        ActionSpace::Discrete { n: 2 },
    );
    Dataset::new(meta, cols, &eps).unwrap()
}

#[test]
fn fqe_converges_to_the_exact_q() {
    let q = exact_q(&STOCHASTIC, &PI);
    let ds = dataset(&STOCHASTIC, 2000, 5, true);
    let data = Logged::from_dataset(&ds).unwrap();
    // A linear Q over one-hot states is a table.
    let cfg = FqeConfig {
        hidden: vec![],
        steps: Some(6000),
        batch_size: 256,
        lr: 5e-3,
        target_update_interval: 100,
        action_samples: 1,
    };
    let fqe = Fqe::fit(&data, &mut pi(), GAMMA, &cfg, 0).unwrap();
    let (qhat, _) = fqe.q_and_v(&data).unwrap();
    for (i, qh) in qhat.iter().enumerate() {
        let s = (0..3).find(|&s| data.obs[i * 3 + s] == 1.0).unwrap();
        let a = data.act_u32[i] as usize;
        assert!(
            (qh - q[s][a]).abs() < 0.05,
            "Q({s}, {a}): FQE {qh} vs exact {}",
            q[s][a]
        );
    }
    let v0 = fqe.initial_values(&data).unwrap();
    let truth = exact_v0(&STOCHASTIC, &PI);
    assert!((v0[0] - truth).abs() < 0.05, "V(s0) {} vs {truth}", v0[0]);
}

/// The true model of the MDP.
struct TrueModel(Kernel);

impl DynamicsModel for TrueModel {
    fn step(
        &mut self,
        obs: &[f32],
        actions: &Tensor,
        rng: &mut Pcg64Mcg,
    ) -> orl_ope::Result<(Vec<f32>, Vec<f64>, Vec<bool>)> {
        let a = actions.to_vec1::<u32>()?;
        let (mut s2, mut r, mut d) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &a) in a.iter().enumerate() {
            let s = (0..3).find(|&s| obs[i * 3 + s] == 1.0).unwrap();
            let next = draw(rng, &self.0[s][a as usize]);
            s2.extend(one_hot(next));
            r.push(R[s][a as usize]);
            d.push(next == T);
        }
        Ok((s2, r, d))
    }
}

#[test]
fn model_based_with_the_true_model_recovers_the_value() {
    let truth = exact_v0(&STOCHASTIC, &PI);
    let vals = rollout_values(
        &mut TrueModel(STOCHASTIC),
        &mut pi(),
        &[1.0, 0.0, 0.0],
        3,
        10,
        GAMMA,
        20_000,
        0,
    )
    .unwrap();
    // One start state: the value is the mean of 20 000 rollouts; its standard error is below
    // 0.01 for returns bounded by 3 / (1 - gamma)... in practice about 0.008.
    assert!((vals[0] - truth).abs() < 0.03, "{} vs {truth}", vals[0]);
    // With deterministic dynamics and a deterministic policy the rollout is exact.
    let mut greedy = Tabular {
        table: [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]],
        rng: Pcg64Mcg::seed_from_u64(0),
    };
    let exact = exact_v0(&DETERMINISTIC, &greedy.table);
    let v = rollout_values(
        &mut TrueModel(DETERMINISTIC),
        &mut greedy,
        &[1.0, 0.0, 0.0],
        3,
        10,
        GAMMA,
        3,
        0,
    )
    .unwrap();
    assert!((v[0] - exact).abs() < 1e-12, "{} vs {exact}", v[0]);
}

#[test]
fn evaluate_runs_every_estimator_and_names_the_behaviour_source() {
    let truth = exact_v0(&STOCHASTIC, &PI);
    let mut cfg = OpeConfig {
        gamma: GAMMA,
        ..OpeConfig::default()
    };
    cfg.fqe.hidden = vec![32];
    cfg.fqe.steps = Some(1500);
    cfg.fqe.lr = 1e-2;
    cfg.fqe.target_update_interval = 50;
    cfg.model.hidden = vec![32];
    cfg.model.steps = 3000;
    cfg.model.rollouts = 20;
    cfg.behavior.steps = 800;
    let ds = dataset(&STOCHASTIC, 1000, 6, true);
    let rep = evaluate(&ds, &mut pi(), &cfg).unwrap();
    assert_eq!(rep.estimates.len(), Estimator::ALL.len());
    assert!(rep.behavior_source.starts_with("logged"));
    for e in &rep.estimates {
        let v = e
            .value
            .unwrap_or_else(|| panic!("{} undefined: {:?}", e.estimator, e.warnings));
        let ci = e.interval.unwrap();
        assert!(
            ci.low <= v && v <= ci.high,
            "{}: {v} outside {ci:?}",
            e.estimator
        );
        assert!(ci.resamples >= 190);
        // Every estimator but the model lands near the truth on 1000 episodes. The learned
        // Gaussian model cannot represent this MDP's bimodal one-hot transitions (it is built
        // for continuous dynamics; the true-model test above checks the rollout itself).
        if e.estimator != "model" {
            assert!((v - truth).abs() < 0.15, "{}: {v} vs {truth}", e.estimator);
        }
    }
    let is = &rep.estimates[0];
    assert!(is.ess.unwrap() > 10.0 && is.max_weight.unwrap() < 0.1);
    // Same data without the logged column: mu is estimated, and said so.
    let ds = dataset(&STOCHASTIC, 1000, 6, false);
    cfg.estimators = vec![Estimator::Is, Estimator::Wis];
    let rep = evaluate(&ds, &mut pi(), &cfg).unwrap();
    assert!(
        rep.behavior_source.starts_with("estimated"),
        "{}",
        rep.behavior_source
    );
    let wis = rep.estimates[1].value.unwrap();
    assert!(
        (wis - truth).abs() < 0.3,
        "WIS with estimated mu {wis} vs {truth}"
    );
}

#[test]
fn all_zero_weights_are_flagged_not_nan() {
    // A deterministic target that always takes the action mu never takes in state 0.
    let ds = {
        let mut ds = dataset(&DETERMINISTIC, 50, 8, true);
        let (meta, mut cols, _) = ds.clone().into_parts();
        if let Actions::Discrete(a) = &mut cols.actions {
            for (i, x) in a.iter_mut().enumerate() {
                if cols.observations[i * 3] == 1.0 {
                    *x = 0;
                }
            }
        }
        let eps = ds.episode_lengths_with_ids();
        ds = Dataset::new(meta, cols, &eps).unwrap();
        ds
    };
    let mut always_one = Tabular {
        table: [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],
        rng: Pcg64Mcg::seed_from_u64(0),
    };
    let cfg = OpeConfig {
        estimators: vec![
            Estimator::Is,
            Estimator::Wis,
            Estimator::Pdis,
            Estimator::Wpdis,
        ],
        ..OpeConfig::default()
    };
    let rep = evaluate(&ds, &mut always_one, &cfg).unwrap();
    for e in &rep.estimates {
        assert!(e.value.is_none(), "{}: {:?}", e.estimator, e.value);
        assert!(
            e.warnings.iter().any(|w| w.contains("zero")),
            "{}: {:?}",
            e.estimator,
            e.warnings
        );
    }
}

/// A continuous policy of the wrong width.
struct Continuous;

impl Policy for Continuous {
    fn is_discrete(&self) -> bool {
        false
    }
    fn act(&mut self, obs: &Tensor, _: bool) -> orl_nets::Result<Tensor> {
        Ok(Tensor::zeros((obs.dim(0)?, 2), DType::F32, &Device::Cpu)?)
    }
    fn log_prob(&mut self, obs: &Tensor, _: &Tensor) -> orl_nets::Result<Option<Tensor>> {
        Ok(Some(Tensor::zeros(obs.dim(0)?, DType::F32, &Device::Cpu)?))
    }
}

#[test]
fn mismatched_spaces_are_a_clear_error() {
    let ds = dataset(&STOCHASTIC, 20, 9, true);
    let err = evaluate(&ds, &mut Continuous, &OpeConfig::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("continuous") && msg.contains("discrete"),
        "{msg}"
    );
}

#[test]
fn clipping_caps_the_weights_and_is_flagged() {
    let ds = dataset(&STOCHASTIC, 300, 10, true);
    let mut cfg = OpeConfig {
        gamma: GAMMA,
        estimators: vec![Estimator::Is, Estimator::Wis],
        ..OpeConfig::default()
    };
    let free = evaluate(&ds, &mut pi(), &cfg).unwrap();
    cfg.clip = Some(1.0);
    let clipped = evaluate(&ds, &mut pi(), &cfg).unwrap();
    // With every weight capped at 1, IS can only shrink the contribution of episodes whose
    // weight exceeded 1: its estimate moves, and the warning says it is biased.
    let (a, b) = (
        free.estimates[0].value.unwrap(),
        clipped.estimates[0].value.unwrap(),
    );
    assert!((a - b).abs() > 1e-6, "{a} vs {b}");
    assert!(
        clipped.estimates[0]
            .warnings
            .iter()
            .any(|w| w.contains("clipped"))
    );
    // And the clipped trajectory weights never exceed the cap.
    let t = Trajectory {
        rewards: vec![1.0; 3],
        log_ratios: vec![1.0, 1.0, -3.0],
        ..Default::default()
    };
    assert!(
        t.log_weights(Some(2.0))
            .iter()
            .all(|&l| l <= 2f64.ln() + 1e-12)
    );
}
