//! The training recipe and loop: defaults that follow the papers, settings that follow the
//! run, evaluation start states per training seed, and evaluation that never moves training.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use orl_algos::{
    AlgoKind, Algorithm, EvalPlan, FINAL_EVAL, NoHooks, Recipe, RecipeRequest, Schedule, Spec,
    Trainer, build, collect, pendulum_controller,
};
use orl_data::{ActionSpace, Dataset, Replay, ReplayConfig};
use orl_envs::{OwnedAction, make};

/// 600 rows of the noisy Pendulum swing-up controller (`env_id` Pendulum-v1).
fn pendulum() -> Dataset {
    let mut env = make("Pendulum-v1").unwrap();
    let mut k = 0u32;
    let mut policy = |o: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
        k = k.wrapping_add(1);
        let z = ((k * 7919 % 1000) as f64 / 500.0) - 1.0;
        let (a, lp) = pendulum_controller(o, 0.5, z);
        Ok((OwnedAction::Continuous(vec![a]), Some(lp)))
    };
    collect(&mut *env, &mut policy, 600, 0).unwrap()
}

fn request(kind: AlgoKind, steps: usize, seed: u64) -> RecipeRequest {
    RecipeRequest {
        protocol: Some((kind.info().test_config)()),
        ..RecipeRequest::new(steps, seed)
    }
}

/// Discrete CQL's conservative weight is d3rlpy's `DiscreteCQLConfig.alpha = 1.0`: training
/// with the defaults equals training with 1.0 set explicitly, and differs from 5.0.
#[test]
fn discrete_cql_default_alpha_is_one() {
    let ds = common::synthetic(4, ActionSpace::Discrete { n: 3 }, 10, 20, 3);
    let run = |extra: serde_json::Value| {
        let mut cfg = (AlgoKind::CQL.info().test_config)();
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let mut algo = build(
            AlgoKind::CQL,
            Spec::discrete(4, 3),
            Some(&cfg),
            0,
            &Device::Cpu,
        )
        .unwrap();
        let mut replay = Replay::new(ds.clone(), ReplayConfig::default(), 1).unwrap();
        (0..5)
            .map(|_| algo.update(&replay.sample(32)).unwrap()["critic_loss"])
            .collect::<Vec<f64>>()
    };
    let default = run(serde_json::json!({}));
    assert_eq!(default, run(serde_json::json!({"discrete_cql_alpha": 1.0})));
    assert_ne!(default, run(serde_json::json!({"discrete_cql_alpha": 5.0})));
    let full = (AlgoKind::CQL.info().defaults)();
    assert_eq!(full["discrete_cql_alpha"], 1.0);
    assert_eq!(full["cql_alpha"], 5.0);
}

/// IQL's cosine schedule spans the run (`--steps`), unless the user fixes it.
#[test]
fn iql_schedule_follows_the_run_length() {
    let ds = pendulum();
    let r = Recipe::new(AlgoKind::IQL, &ds, &RecipeRequest::new(1234, 0)).unwrap();
    assert_eq!(r.config["actor_cosine_steps"], 1234);
    let req = RecipeRequest {
        config: Some(serde_json::json!({"actor_cosine_steps": 500})),
        ..RecipeRequest::new(1234, 0)
    };
    let r = Recipe::new(AlgoKind::IQL, &ds, &req).unwrap();
    assert_eq!(r.config["actor_cosine_steps"], 500);
    // IQL's reward recipe with Pendulum's horizon, the others' rewards as stored.
    assert_eq!(r.horizon, 200);
    assert!(matches!(
        r.reward_transform,
        orl_data::RewardTransform::ReturnRange { max_episode_steps } if max_episode_steps == 200.0
    ));
    let c = Recipe::new(AlgoKind::CQL, &ds, &RecipeRequest::new(10, 0)).unwrap();
    assert_eq!(c.reward_transform, orl_data::RewardTransform::None);
    // A recipe survives its JSON form (run.json, checkpoints) unchanged.
    assert_eq!(Recipe::from_json(&r.to_json()).unwrap(), r);
}

/// Two training seeds are evaluated from different start states; two algorithms with the same
/// seed from the same ones (a paired comparison).
#[test]
fn evaluation_start_states_differ_per_training_seed() {
    let ds = pendulum();
    let r0 = Recipe::new(AlgoKind::BC, &ds, &request(AlgoKind::BC, 5, 0)).unwrap();
    let r1 = Recipe::new(AlgoKind::BC, &ds, &request(AlgoKind::BC, 5, 1)).unwrap();
    let q0 = Recipe::new(AlgoKind::IQL, &ds, &request(AlgoKind::IQL, 5, 0)).unwrap();
    assert_ne!(r0.eval_seed(FINAL_EVAL), r1.eval_seed(FINAL_EVAL));
    // Not just shifted by one: the ten episodes of seed 1 share no start with seed 0's.
    let s0: Vec<u64> = (0..10).map(|i| r0.eval_seed(FINAL_EVAL) + i).collect();
    assert!((0..10).all(|i| !s0.contains(&(r1.eval_seed(FINAL_EVAL) + i))));
    assert_eq!(r0.eval_seed(FINAL_EVAL), q0.eval_seed(FINAL_EVAL));
    assert_ne!(r0.eval_seed(1000), r0.eval_seed(2000));
    let mut t = Trainer::new(r1.clone(), ds, &Device::Cpu).unwrap();
    let e = t.evaluate(2, FINAL_EVAL).unwrap().unwrap();
    assert_eq!(e.first_seed, r1.eval_seed(FINAL_EVAL));
    assert_eq!(e.returns.len(), 2);
}

fn params(algo: &dyn Algorithm) -> Vec<Vec<f32>> {
    algo.nets()
        .into_iter()
        .flat_map(|(n, s)| s.named_tensors(&format!("{n}.")))
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

/// BCQ acts by sampling latents. Evaluating during training draws from the acting stream, not
/// the training one: a run evaluated every 5 updates ends with the parameters of a run never
/// evaluated, and an evaluation's returns do not depend on the evaluations before it.
#[test]
fn evaluation_never_moves_training_and_does_not_depend_on_its_schedule() {
    let ds = pendulum();
    let recipe = Recipe::new(AlgoKind::BCQ, &ds, &request(AlgoKind::BCQ, 20, 0)).unwrap();
    let mut evaluated = Trainer::new(recipe.clone(), ds.clone(), &Device::Cpu).unwrap();
    let schedule = Schedule {
        eval: Some(EvalPlan {
            every: 5,
            episodes: 1,
        }),
        ..Schedule::quiet(20)
    };
    evaluated.run(&schedule, &mut NoHooks).unwrap();
    let mut plain = Trainer::new(recipe, ds, &Device::Cpu).unwrap();
    plain.run(&Schedule::quiet(20), &mut NoHooks).unwrap();
    assert_eq!(
        params(&*evaluated.agent().algo),
        params(&*plain.agent().algo)
    );
    let a = evaluated.evaluate(2, FINAL_EVAL).unwrap().unwrap();
    let b = plain.evaluate(2, FINAL_EVAL).unwrap().unwrap();
    assert_eq!(a.returns, b.returns);
}

/// IQL's Gaussian policy floors its log-std at -5 (the authors' code, d3rlpy), so a collapsed
/// std cannot give the data actions densities of e^20.
#[test]
fn iql_log_std_floor_is_minus_five() {
    let mut algo = build(
        AlgoKind::IQL,
        Spec::continuous(3, 2, 1.0),
        Some(&serde_json::json!({"hidden": [8]})),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let (_, store) = algo
        .nets_mut()
        .into_iter()
        .find(|(n, _)| *n == "actor")
        .unwrap();
    let mut tensors: HashMap<String, Tensor> = store.named_tensors("").into_iter().collect();
    tensors.insert(
        "log_std".into(),
        Tensor::from_slice(&[-10f32, -10.0], 2, &Device::Cpu).unwrap(),
    );
    store.load_named(&tensors, "").unwrap();
    let s = Tensor::from_slice(&[0.1f32, -0.2, 0.3], (1, 3), &Device::Cpu).unwrap();
    let a = algo.act(&s, true).unwrap();
    let lp: Vec<f32> = algo.log_prob(&s, &a).unwrap().unwrap().to_vec1().unwrap();
    // At the mean: -sum(log_std) - A/2 log(2 pi) with log_std clamped to -5.
    let want = 2.0 * (5.0 - 0.918_938_5);
    assert!((f64::from(lp[0]) - want).abs() < 1e-4, "{lp:?} vs {want}");
}

/// Every config key is checked: an out-of-range value is an error naming `algo.key`.
#[test]
fn out_of_range_settings_name_their_key() {
    for (kind, key, value) in [
        (AlgoKind::IQL, "expectile", serde_json::json!(1.0)),
        (AlgoKind::CQL, "n_actions", serde_json::json!(0)),
        (AlgoKind::TD3BC, "tau", serde_json::json!(0.0)),
        (AlgoKind::BC, "lr", serde_json::json!(f64::MAX)),
        (AlgoKind::BCQ, "vae_hidden", serde_json::json!([])),
        (AlgoKind::BC, "hidden", serde_json::json!([0])),
    ] {
        let cfg = serde_json::json!({ key: value });
        let err = match build(
            kind,
            Spec::continuous(3, 1, 1.0),
            Some(&cfg),
            0,
            &Device::Cpu,
        ) {
            Ok(_) if key == "lr" => continue, // f64::MAX is finite and > 0: accepted
            Ok(_) => panic!("{kind}.{key} = {value} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&format!("{kind}.{key}")), "{err}");
    }
}
