//! Shared helpers of the algorithm tests: synthetic datasets and small configurations.

#![allow(dead_code, clippy::unwrap_used)]

use orl_algos::AlgoKind;
use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
use rand::{RngExt, SeedableRng};

/// `episodes` episodes of `len` steps with random observations in [-1, 1]; continuous actions
/// (`act_dim` in [-1, 1]) or discrete (`n` actions); reward `-|a - 0.5 s_0|` or `1[a == 1]`.
pub fn synthetic(
    obs_dim: usize,
    action: ActionSpace,
    episodes: usize,
    len: usize,
    seed: u64,
) -> Dataset {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let n = episodes * len;
    let mut obs: Vec<f32> = (0..n * obs_dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut next = obs[obs_dim..].to_vec();
    next.extend((0..obs_dim).map(|_| rng.random_range(-1.0f32..1.0)));
    obs.truncate(n * obs_dim);
    let (actions, rewards) = match &action {
        ActionSpace::Continuous { dim, .. } => {
            let a: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let r = (0..n)
                .map(|i| -(a[i * dim] - 0.5 * obs[i * obs_dim]).abs())
                .collect();
            (
                Actions::Continuous {
                    dim: *dim,
                    values: a,
                },
                r,
            )
        }
        ActionSpace::Discrete { n: k } => {
            let a: Vec<i64> = (0..n).map(|_| rng.random_range(0..*k as i64)).collect();
            let r = a.iter().map(|&x| if x == 1 { 1.0 } else { 0.0 }).collect();
            (Actions::Discrete(a), r)
        }
    };
    let terminals: Vec<bool> = (0..n)
        .map(|i| i % len == len - 1 && (i / len).is_multiple_of(2))
        .collect();
    let timeouts: Vec<bool> = (0..n)
        .map(|i| i % len == len - 1 && !(i / len).is_multiple_of(2))
        .collect();
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: obs_dim,
            low: None,
            high: None,
        },
        action,
    );
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions,
        rewards,
        terminals,
        timeouts,
        behavior_log_prob: None,
    };
    let eps: Vec<(i64, usize)> = (0..episodes).map(|k| (k as i64, len)).collect();
    Dataset::new(meta, cols, &eps).unwrap()
}

/// Small networks so that tests run in seconds (each algorithm's `AlgoInfo::test_config`).
pub fn small_config(kind: AlgoKind) -> serde_json::Value {
    (kind.info().test_config)()
}

/// Every (algorithm, discrete?) pair orl supports.
/// Every case of [`cases`] with the backend that runs it: each on the CPU engine, and again on
/// candle tensors (on the CPU) wherever the algorithm builds there (so far BC, TD3+BC, IQL and CQL; an
/// algorithm joins by building on `Compute::Candle`).
pub fn backend_cases() -> Vec<(AlgoKind, bool, orl_algos::Compute)> {
    use candle_core::Device;
    use orl_algos::{Compute, Spec};
    let mut v = Vec::new();
    for (kind, discrete) in cases() {
        v.push((kind, discrete, Compute::Engine(Device::Cpu)));
        let spec = if discrete {
            Spec::discrete(4, 3)
        } else {
            Spec::continuous(4, 2, 1.0)
        };
        let candle = Compute::Candle(Device::Cpu);
        if kind
            .build_on(spec, Some(&small_config(kind)), 0, &candle)
            .is_ok()
        {
            v.push((kind, discrete, candle));
        }
    }
    v
}

pub fn cases() -> Vec<(AlgoKind, bool)> {
    let mut v = Vec::new();
    for k in AlgoKind::all() {
        v.push((k, false));
        if k.supports_discrete() {
            v.push((k, true));
        }
    }
    v
}

/// The algorithm's deterministic actions at `obs`, flattened to `f32`.
pub fn greedy_actions(algo: &mut dyn orl_algos::Algorithm, obs: &candle_core::Tensor) -> Vec<f32> {
    algo.act(obs, true)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}
