//! The extrapolation error of offline RL (Fujimoto et al. 2019; Levine et al. 2020, section 4):
//! actions the data never takes must not be chosen on the strength of made-up Q-values.
//!
//! Discrete: a two-state, three-action MDP. States are one-hot; every action moves to the other
//! state (no terminals, gamma 0.9). Action 0 pays -1, action 1 pays -0.5, action 2 pays -2 (the
//! worst), but the data (uniform over actions 0 and 1) never takes action 2. The optimal value is
//! `Q*(s, 1) = -5`, `Q*(s, 2) = -2 - 4.5 = -6.5`. Plain DQN on this data over-values action 2
//! (it is never corrected, and its own bootstrapped max inflates everything); CQL, IQL and BCQ
//! never choose it, and CQL's Q for it ends below the data actions'.
//!
//! Continuous: rewards grow with the action (`r = sum(a)`), but the data's actions lie in the
//! sub-box `[-0.3, 0.3]^2`; an unconstrained maximiser would leave it. The learned policies of
//! CQL, IQL and BCQ stay inside (within 0.1).

#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Device, Tensor};
use orl_algos::{AlgoKind, Algorithm, Dqn, DqnConfig, Spec, build};
use orl_data::{
    ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace, Replay, ReplayConfig,
};
use rand::{RngExt, SeedableRng};

const GAMMA: f64 = 0.9;

fn two_state_dataset(n: usize) -> Dataset {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
    let mut obs = Vec::new();
    let mut next = Vec::new();
    let mut actions = Vec::new();
    let mut rewards = Vec::new();
    let mut s = 0usize;
    for _ in 0..n {
        let a: i64 = rng.random_range(0..2);
        obs.extend(if s == 0 { [1.0f32, 0.0] } else { [0.0, 1.0] });
        let s2 = 1 - s;
        next.extend(if s2 == 0 { [1.0f32, 0.0] } else { [0.0, 1.0] });
        actions.push(a);
        rewards.push(if a == 0 { -1.0 } else { -0.5 });
        s = s2;
    }
    let mut timeouts = vec![false; n];
    timeouts[n - 1] = true;
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: 2,
            low: None,
            high: None,
        },
        ActionSpace::Discrete { n: 3 },
    );
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions: Actions::Discrete(actions),
        rewards,
        terminals: vec![false; n],
        timeouts,
        behavior_log_prob: None,
    };
    Dataset::new(meta, cols, &[(0, n)]).unwrap()
}

fn replay(ds: Dataset) -> Replay {
    Replay::new(
        ds,
        ReplayConfig {
            gamma: GAMMA as f32,
            ..ReplayConfig::default()
        },
        0,
    )
    .unwrap()
}

fn states() -> Tensor {
    Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], (2, 2), &Device::Cpu).unwrap()
}

fn train(algo: &mut dyn Algorithm, replay: &mut Replay, steps: usize) {
    for _ in 0..steps {
        algo.update(&replay.sample(64)).unwrap();
    }
}

fn greedy(algo: &mut dyn Algorithm) -> Vec<u32> {
    algo.act(&states(), true)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn q_of(algo: &dyn Algorithm, action: u32) -> Vec<f32> {
    let a = Tensor::from_vec(vec![action; 2], 2, &Device::Cpu).unwrap();
    algo.q_value(&states(), &a)
        .unwrap()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn discrete_unseen_action_is_overvalued_by_dqn_and_avoided_by_offline_methods() {
    let steps = 1500;
    // Plain DQN: Q(s, 2) is never trained, so it keeps a made-up value far above Q*(s, 2).
    let mut dqn = Dqn::new(
        Spec::discrete(2, 3),
        DqnConfig {
            hidden: vec![32, 32],
            lr: 1e-3,
            target_update_interval: 50,
            double: false,
        },
        0,
        &Device::Cpu,
    )
    .unwrap();
    train(&mut dqn, &mut replay(two_state_dataset(2000)), steps);
    let q2 = q_of(&dqn, 2);
    let q1 = q_of(&dqn, 1);
    eprintln!(
        "DQN: Q(s,1) = {q1:?}, Q(s,2) = {q2:?}, greedy = {:?}",
        greedy(&mut dqn)
    );
    let q_star_2 = -2.0 + GAMMA * (-0.5 / (1.0 - GAMMA));
    for (s, q) in q2.iter().enumerate() {
        assert!(
            f64::from(*q) > q_star_2 + 2.0,
            "DQN should over-value the unseen action in state {s}: {q}"
        );
    }

    for kind in [AlgoKind::CQL, AlgoKind::IQL, AlgoKind::BCQ] {
        let cfg = match kind.name() {
            "cql" => {
                serde_json::json!({"hidden": [32, 32], "critic_lr": 1e-3, "discrete_cql_alpha": 1.0, "target_update_interval": 50})
            }
            "iql" => serde_json::json!({"hidden": [32, 32], "actor_cosine_steps": null}),
            _ => serde_json::json!({"hidden": [32, 32], "critic_lr": 1e-3}),
        };
        let mut algo = build(kind, Spec::discrete(2, 3), Some(&cfg), 0, &Device::Cpu).unwrap();
        train(&mut *algo, &mut replay(two_state_dataset(2000)), steps);
        let g = greedy(&mut *algo);
        eprintln!(
            "{kind:?}: greedy = {g:?}, Q(s,0) = {:?}, Q(s,1) = {:?}, Q(s,2) = {:?}",
            q_of(&*algo, 0),
            q_of(&*algo, 1),
            q_of(&*algo, 2)
        );
        assert!(
            g.iter().all(|&a| a != 2),
            "{kind:?} chose the unseen action: {g:?}"
        );
        if kind == AlgoKind::CQL {
            let (q0, q1, q2) = (q_of(&*algo, 0), q_of(&*algo, 1), q_of(&*algo, 2));
            for s in 0..2 {
                assert!(
                    q2[s] < q0[s] && q2[s] < q1[s],
                    "CQL: Q(s{s}, 2) = {} not below the data actions' ({}, {})",
                    q2[s],
                    q0[s],
                    q1[s]
                );
            }
        }
    }
}

fn subbox_dataset(n: usize) -> Dataset {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let (od, ad, len) = (3, 2, 50);
    let obs: Vec<f32> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut next = obs[od..].to_vec();
    next.extend([0.0; 3]);
    let a: Vec<f32> = (0..n * ad).map(|_| rng.random_range(-0.3..0.3)).collect();
    let rewards: Vec<f32> = (0..n).map(|i| a[i * ad] + a[i * ad + 1]).collect();
    let timeouts: Vec<bool> = (0..n).map(|i| i % len == len - 1).collect();
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: od,
            low: None,
            high: None,
        },
        ActionSpace::Continuous {
            dim: ad,
            low: Some(vec![-1.0; ad]),
            high: Some(vec![1.0; ad]),
        },
    );
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions: Actions::Continuous { dim: ad, values: a },
        rewards,
        terminals: vec![false; n],
        timeouts,
        behavior_log_prob: None,
    };
    let eps: Vec<(i64, usize)> = (0..n / len).map(|k| (k as i64, len)).collect();
    Dataset::new(meta, cols, &eps).unwrap()
}

#[test]
fn continuous_policies_stay_inside_the_data_sub_box() {
    let probe: Vec<f32> = (0..20 * 3)
        .map(|i| ((i * 7919 % 200) as f32 / 100.0) - 1.0)
        .collect();
    let probe = Tensor::from_vec(probe, (20, 3), &Device::Cpu).unwrap();
    for kind in [AlgoKind::CQL, AlgoKind::IQL, AlgoKind::BCQ] {
        let cfg = match kind.name() {
            "cql" => {
                serde_json::json!({"hidden": [64, 64], "n_actions": 4, "actor_lr": 3e-4})
            }
            "iql" => serde_json::json!({"hidden": [64, 64], "actor_cosine_steps": null}),
            _ => {
                serde_json::json!({"hidden": [64, 64], "vae_hidden": [64, 64], "n_act_samples": 10})
            }
        };
        let mut algo = build(
            kind,
            Spec::continuous(3, 2, 1.0),
            Some(&cfg),
            0,
            &Device::Cpu,
        )
        .unwrap();
        let mut r = Replay::new(subbox_dataset(5000), ReplayConfig::default(), 0).unwrap();
        train(&mut *algo, &mut r, 1500);
        let a: Vec<f32> = algo
            .act(&probe, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let worst = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        eprintln!("{kind:?}: largest |action| = {worst}");
        assert!(
            worst <= 0.4,
            "{kind:?} left the data's sub-box [-0.3, 0.3]: |a| = {worst}"
        );
    }
}

#[test]
fn an_unconstrained_actor_leaves_the_sub_box() {
    // The control for the test above: with the BC term switched off (alpha huge), TD3+BC is
    // plain TD3 and its actor chases the extrapolated Q-values out of the data's box.
    let probe = Tensor::from_vec(vec![0.0f32; 3], (1, 3), &Device::Cpu).unwrap();
    let cfg = serde_json::json!({"hidden": [64, 64], "alpha": 1e6});
    let mut algo = build(
        AlgoKind::TD3BC,
        Spec::continuous(3, 2, 1.0),
        Some(&cfg),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let mut r = Replay::new(subbox_dataset(5000), ReplayConfig::default(), 0).unwrap();
    train(&mut *algo, &mut r, 1500);
    let a: Vec<f32> = algo
        .act(&probe, true)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    eprintln!("TD3 without BC: action {a:?}");
    assert!(
        a.iter().any(|v| v.abs() > 0.5),
        "an unconstrained actor should leave the box: {a:?}"
    );
}
