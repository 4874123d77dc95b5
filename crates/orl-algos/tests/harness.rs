//! One harness for every algorithm, continuous and discrete: finite losses over a few hundred
//! updates, save -> load -> identical actions, resume equals an uninterrupted run, and seeded
//! determinism.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use orl_algos::{AlgoKind, Algorithm, Compute, Spec, build};
use orl_data::{ActionSpace, Batch, Replay, ReplayConfig};

fn setup(kind: AlgoKind, discrete: bool, seed: u64) -> (Box<dyn Algorithm>, Replay) {
    setup_on(kind, discrete, seed, &Compute::Engine(Device::Cpu))
}

fn setup_on(
    kind: AlgoKind,
    discrete: bool,
    seed: u64,
    compute: &Compute,
) -> (Box<dyn Algorithm>, Replay) {
    let (spec, space) = if discrete {
        (Spec::discrete(4, 3), ActionSpace::Discrete { n: 3 })
    } else {
        (
            Spec::continuous(4, 2, 1.0),
            ActionSpace::Continuous {
                dim: 2,
                low: None,
                high: None,
            },
        )
    };
    let ds = common::synthetic(4, space, 20, 25, 7);
    let replay = Replay::new(ds, ReplayConfig::default(), 11).unwrap();
    let algo = kind
        .build_on(spec, Some(&common::small_config(kind)), seed, compute)
        .unwrap();
    (algo, replay)
}

fn batches(replay: &mut Replay, n: usize) -> Vec<Batch> {
    (0..n).map(|_| replay.sample(32)).collect()
}

fn probe_obs() -> Tensor {
    let v: Vec<f32> = (0..5 * 4)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
        .collect();
    Tensor::from_vec(v, (5, 4), &Device::Cpu).unwrap()
}

/// Actions at the probe with the acting stream restarted from a fixed seed (BCQ draws latents
/// even when greedy; the acting stream is not part of a checkpoint, evaluators reseed it).
fn actions(algo: &mut Box<dyn Algorithm>) -> Vec<f32> {
    algo.reseed_acting(7);
    common::greedy_actions(&mut **algo, &probe_obs())
}

fn params(algo: &dyn Algorithm) -> Vec<(String, Vec<f32>)> {
    algo.nets()
        .into_iter()
        .flat_map(|(n, s)| s.named_tensors(&format!("{n}.")))
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

/// The harness below runs on both backends: the candle backend's cases are those that build
/// there, and BC's MSE loss is one of them (the harness would otherwise test the engine alone).
#[test]
fn the_harness_covers_the_candle_backend() {
    let on_candle: Vec<_> = common::backend_cases()
        .into_iter()
        .filter(|(_, _, c)| matches!(c, Compute::Candle(_)))
        .map(|(k, d, _)| (k, d))
        .collect();
    for case in [
        (AlgoKind::BC, false),
        (AlgoKind::BC, true),
        (AlgoKind::TD3BC, false),
        (AlgoKind::IQL, false),
        (AlgoKind::IQL, true),
        (AlgoKind::CQL, false),
        (AlgoKind::CQL, true),
        (AlgoKind::BCQ, false),
        (AlgoKind::BCQ, true),
    ] {
        assert!(on_candle.contains(&case), "{case:?} not in {on_candle:?}");
    }
}

#[test]
fn losses_stay_finite_over_a_few_hundred_updates() {
    for (kind, discrete, compute) in common::backend_cases() {
        let (mut algo, mut replay) = setup_on(kind, discrete, 0, &compute);
        let mut last = None;
        for _ in 0..300 {
            let m = algo
                .update(&replay.sample(32))
                .unwrap_or_else(|e| panic!("{kind:?} discrete={discrete} {compute:?}: {e}"));
            assert!(!m.is_empty());
            assert!(
                m.values().all(|v| v.is_finite()),
                "{kind:?} discrete={discrete} {compute:?}: {m:?}"
            );
            last = Some(m);
        }
        assert_eq!(algo.steps(), 300);
        eprintln!("{kind:?} discrete={discrete} {compute:?}: {last:?}");
    }
}

#[test]
fn save_then_load_gives_identical_actions() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, discrete, compute) in common::backend_cases() {
        let (mut algo, mut replay) = setup_on(kind, discrete, 1, &compute);
        for b in batches(&mut replay, 20) {
            algo.update(&b).unwrap();
        }
        let path = dir
            .path()
            .join(format!("{}-{discrete}.safetensors", kind.name()));
        algo.save(&path, &HashMap::new()).unwrap();
        let (mut other, _) = setup_on(kind, discrete, 99, &compute);
        assert_ne!(
            params(&*other),
            params(&*algo),
            "{kind:?}: different seeds must differ before loading"
        );
        other.load(&path).unwrap();
        assert_eq!(
            params(&*other),
            params(&*algo),
            "{kind:?} discrete={discrete} {compute:?}"
        );
        assert_eq!(
            actions(&mut other),
            actions(&mut algo),
            "{kind:?} discrete={discrete} {compute:?}"
        );
        assert_eq!(other.steps(), 20);
    }
}

#[test]
fn resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, discrete, compute) in common::backend_cases() {
        let (mut full, mut replay) = setup_on(kind, discrete, 2, &compute);
        let bs = batches(&mut replay, 30);
        let mut full_metrics = Vec::new();
        for b in &bs {
            full_metrics.push(full.update(b).unwrap());
        }
        let (mut first, _) = setup_on(kind, discrete, 2, &compute);
        for b in &bs[..15] {
            first.update(b).unwrap();
        }
        let path = dir.path().join("mid.safetensors");
        first.save(&path, &HashMap::new()).unwrap();
        let (mut resumed, _) = setup_on(kind, discrete, 3, &compute);
        resumed.load(&path).unwrap();
        let mut resumed_metrics = Vec::new();
        for b in &bs[15..] {
            resumed_metrics.push(resumed.update(b).unwrap());
        }
        assert_eq!(
            resumed_metrics,
            full_metrics[15..].to_vec(),
            "{kind:?} discrete={discrete} {compute:?}: metrics"
        );
        assert_eq!(
            params(&*resumed),
            params(&*full),
            "{kind:?} discrete={discrete} {compute:?}: parameters"
        );
    }
}

/// One thread or two in rayon's pool: the same numbers (IQL's update halves and the engine's
/// ensemble members run in parallel only with two). The small configurations exercise IQL's
/// halves; TD3+BC, CQL and IQL at 256x256 and batch 256 exercise the parallel member passes,
/// with and without input gradients (actors through critics).
#[test]
fn one_thread_and_two_threads_give_the_same_numbers() {
    let in_pool = |threads: usize, f: &(dyn Fn() -> Vec<(String, Vec<f32>)> + Sync)| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    };
    for (kind, discrete) in common::cases() {
        let run = || {
            let (mut algo, mut replay) = setup(kind, discrete, 5);
            for b in batches(&mut replay, 6) {
                algo.update(&b).unwrap();
            }
            params(&*algo)
        };
        assert_eq!(
            in_pool(1, &run),
            in_pool(2, &run),
            "{kind:?} discrete={discrete}"
        );
    }
    for kind in [AlgoKind::TD3BC, AlgoKind::CQL, AlgoKind::IQL] {
        let run = || {
            let cfg = if kind == AlgoKind::CQL {
                serde_json::json!({"hidden": [256, 256], "n_actions": 2})
            } else {
                serde_json::json!({"hidden": [256, 256]})
            };
            let mut algo = build(
                kind,
                Spec::continuous(4, 2, 1.0),
                Some(&cfg),
                5,
                &Device::Cpu,
            )
            .unwrap();
            let ds = common::synthetic(
                4,
                ActionSpace::Continuous {
                    dim: 2,
                    low: None,
                    high: None,
                },
                20,
                25,
                7,
            );
            let mut replay = Replay::new(ds, ReplayConfig::default(), 11).unwrap();
            for _ in 0..3 {
                algo.update(&replay.sample(256)).unwrap();
            }
            params(&*algo)
        };
        assert_eq!(in_pool(1, &run), in_pool(2, &run), "{kind:?} at 256x256");
    }
}

#[test]
fn same_seed_same_numbers_other_seed_other_numbers() {
    for (kind, discrete, compute) in common::backend_cases() {
        let run = |seed| {
            let (mut algo, mut replay) = setup_on(kind, discrete, seed, &compute);
            batches(&mut replay, 10)
                .iter()
                .map(|b| algo.update(b).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5), "{kind:?} discrete={discrete} {compute:?}");
        assert_ne!(run(5), run(6), "{kind:?} discrete={discrete} {compute:?}");
    }
}

#[test]
fn loading_another_algorithms_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (iql, _) = setup(AlgoKind::IQL, false, 0);
    let path = dir.path().join("iql.safetensors");
    iql.save(&path, &HashMap::new()).unwrap();
    let (mut cql, _) = setup(AlgoKind::CQL, false, 0);
    let err = cql.load(&path).unwrap_err().to_string();
    assert!(err.contains("iql"), "{err}");
    let (mut disc, _) = setup(AlgoKind::IQL, true, 0);
    assert!(disc.load(&path).is_err(), "spaces differ");
}

#[test]
fn exported_policies_act_like_the_trained_ones() {
    // `orl export`'s path: networks -> fold observation statistics -> file -> plain inference.
    let dir = tempfile::tempdir().unwrap();
    let (mean, std) = (vec![0.5f32, -0.2, 1.0, 0.0], vec![2.0f32, 0.5, 1.5, 1.0]);
    let raw = probe_obs();
    let normed = raw
        .broadcast_sub(&Tensor::new(mean.as_slice(), &Device::Cpu).unwrap())
        .unwrap()
        .broadcast_div(&Tensor::new(std.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    for (kind, discrete, compute) in common::backend_cases() {
        let (mut algo, mut replay) = setup_on(kind, discrete, 3, &compute);
        for b in batches(&mut replay, 20) {
            algo.update(&b).unwrap();
        }
        let mut model = algo.policy_model().unwrap().expect("exportable");
        model.fold_normalization(&mean, &std).unwrap();
        let header = orl_nets::ExportHeader::for_model(
            &model,
            kind.name(),
            4,
            if discrete { 3 } else { 0 },
            "test",
        );
        let path = dir
            .path()
            .join(format!("{}-{discrete}.safetensors", kind.name()));
        orl_nets::save_export(&path, &model, &header).unwrap();
        let exported = orl_nets::ExportedPolicy::load(&path).unwrap();
        let got = exported.act_batch(&raw).unwrap();
        let want = match exported.model() {
            // BCQ draws fresh latents per call: compare with the same candidates.
            orl_nets::PolicyModel::Bcq { latents, .. } => {
                let cfg: orl_algos::BcqConfig =
                    serde_json::from_value(common::small_config(kind)).unwrap();
                let mut bcq =
                    orl_algos::Bcq::new(Spec::continuous(4, 2, 1.0), cfg, 3, &Device::Cpu).unwrap();
                let mut replay = setup_on(kind, discrete, 3, &compute).1;
                for b in batches(&mut replay, 20) {
                    bcq.update(&b).unwrap();
                }
                let (n, lat) = latents.dims2().unwrap();
                let z = latents
                    .unsqueeze(0)
                    .unwrap()
                    .broadcast_as((5, n, lat))
                    .unwrap()
                    .reshape((5 * n, lat))
                    .unwrap();
                bcq.act_with_latents(&normed, &z).unwrap()
            }
            _ => algo.act(&normed, true).unwrap(),
        };
        let (g, w): (Vec<f32>, Vec<f32>) = (
            got.to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
            want.to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
        );
        assert_eq!(g.len(), w.len(), "{kind:?} discrete={discrete} {compute:?}");
        for (a, b) in g.iter().zip(&w) {
            assert!(
                (a - b).abs() < 1e-4,
                "{kind:?} discrete={discrete} {compute:?}: exported {g:?} vs trained {w:?}"
            );
        }
    }
}

#[test]
fn iql_scales_rewards_only_where_the_return_range_is_defined() {
    let space = ActionSpace::Continuous {
        dim: 2,
        low: None,
        high: None,
    };
    let ds = common::synthetic(4, space, 20, 25, 7);
    let (lo, hi) = ds.return_range().unwrap();
    assert!(hi > lo, "the synthetic episodes differ in return");
    assert_eq!(
        AlgoKind::IQL.reward_transform(&ds, 200),
        orl_data::RewardTransform::ReturnRange {
            max_episode_steps: 200.0
        }
    );
    assert_eq!(
        AlgoKind::CQL.reward_transform(&ds, 200),
        orl_data::RewardTransform::None
    );
    // Every episode with the same return (e.g. a buffer that never reached the goal): the
    // scaling is undefined, so the rewards stay as stored instead of failing the run.
    let (meta, mut cols, eps) = ds.clone().into_parts();
    cols.rewards.iter_mut().for_each(|r| *r = -1.0);
    let flat = orl_data::Dataset::new(meta, cols, &eps).unwrap();
    let (lo, hi) = flat.return_range().unwrap();
    assert_eq!(lo, hi);
    assert_eq!(
        AlgoKind::IQL.reward_transform(&flat, 200),
        orl_data::RewardTransform::None
    );
    Replay::new(
        flat,
        ReplayConfig {
            reward_transform: AlgoKind::IQL.reward_transform(&ds, 200),
            ..ReplayConfig::default()
        },
        0,
    )
    .expect_err("an explicit return-range request on equal returns is an error");
}

/// TD3+BC's BC term is measured in actions divided by the action bound: on a [-2, 2] box it is a
/// quarter of the raw-action term (`bc_unit_actions = false`), on D4RL's [-1, 1] the two agree.
#[test]
fn td3bc_measures_its_bc_term_in_unit_actions() {
    let space = ActionSpace::Continuous {
        dim: 2,
        low: None,
        high: None,
    };
    let ds = common::synthetic(4, space, 20, 25, 7);
    let batch = Replay::new(ds, ReplayConfig::default(), 11)
        .unwrap()
        .sample(32);
    let bc_term = |max_action: f64, unit: bool| {
        let cfg = serde_json::json!({"hidden": [32, 32], "bc_unit_actions": unit});
        let spec = Spec::continuous(4, 2, max_action);
        let mut a = build(AlgoKind::TD3BC, spec, Some(&cfg), 3, &Device::Cpu).unwrap();
        a.update(&batch).unwrap()["bc_mse"]
    };
    let (unit, raw) = (bc_term(2.0, true), bc_term(2.0, false));
    assert!(unit > 0.0);
    assert!(
        (raw - 4.0 * unit).abs() < 1e-5 * raw,
        "raw {raw} vs 4 x unit {unit}"
    );
    assert_eq!(bc_term(1.0, true), bc_term(1.0, false));
}
