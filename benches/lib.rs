//! Shared helpers for the criterion benches: synthetic D4RL-shaped datasets, and the global
//! allocator every bench and example uses (mimalloc, as the `orl` and `xtask` binaries do;
//! `docs/performance.md` has the before/after).

/// mimalloc: candle allocates a fresh buffer for every op's output; glibc's malloc returns
/// large freed blocks to the OS and pays page faults again on the next one.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// `n` transitions with HalfCheetah's shapes (obs 17, act 6) in 1000-step timeout episodes,
/// random values (which barely compress: a worst case for load speed), and logged log-probs.
pub fn halfcheetah_like(n: usize, seed: u64) -> Dataset {
    let (od, ad) = (17, 6);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut f = |k: usize, scale: f32| {
        (0..k)
            .map(|_| rng.random_range(-scale..scale))
            .collect::<Vec<f32>>()
    };
    let obs = f(n * od, 5.0);
    let mut next = obs[od..].to_vec();
    next.extend(f(od, 5.0));
    let actions = f(n * ad, 1.0);
    let rewards = f(n, 3.0);
    let lp: Vec<f64> = f(n, 4.0).into_iter().map(f64::from).collect();
    let ep_len = 1000;
    let episodes: Vec<(i64, usize)> = (0..n.div_ceil(ep_len))
        .map(|k| (k as i64, ep_len.min(n - k * ep_len)))
        .collect();
    let timeouts: Vec<bool> = (0..n).map(|i| i % ep_len == ep_len - 1).collect();
    let mut meta = DatasetMeta::new(
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
    meta.env_id = Some("HalfCheetah-v5".into());
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions: Actions::Continuous {
            dim: ad,
            values: actions,
        },
        rewards,
        terminals: vec![false; n],
        timeouts,
        behavior_log_prob: Some(lp),
    };
    Dataset::new(meta, cols, &episodes).expect("valid synthetic dataset")
}
