//! In steady state an engine update allocates nothing on the heap: after a few warm-up
//! updates have sized every buffer, `update` neither allocates nor reallocates.
//!
//! Its own binary without the test harness (`harness = false`): the harness's threads would
//! allocate beside the measured region under the counting global allocator.

#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;

use candle_core::Device;
use orl_algos::{AlgoKind, Algorithm, Dqn, DqnConfig, Sac, SacConfig, Spec, build};
use orl_data::{ActionSpace, Batch, Replay, ReplayConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// Engine cases checked.
const CASES: usize = 11;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    // The counter counts: one boxed value is one allocation.
    let region = Region::new(GLOBAL);
    let boxed = std::hint::black_box(Box::new(7u64));
    assert_eq!(region.change().allocations, 1);
    drop(boxed);
    // One thread in rayon's pool, the default of every run (`--threads 1`): IQL's two update
    // halves then run one after the other on this thread.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .unwrap();
    // The counter is global: wait until the pool's worker has started (its start-up allocates
    // its queues, about 5 KB), so that it never does so inside a measured window.
    rayon::broadcast(|_| ());
    let cases: [(AlgoKind, bool, serde_json::Value); CASES] = [
        (AlgoKind::BC, false, serde_json::json!({"hidden": [64, 64]})),
        (
            AlgoKind::BC,
            false,
            serde_json::json!({"hidden": [64, 64], "loss": "nll"}),
        ),
        (AlgoKind::BC, true, serde_json::json!({"hidden": [64, 64]})),
        (
            AlgoKind::TD3BC,
            false,
            serde_json::json!({"hidden": [64, 64]}),
        ),
        (
            AlgoKind::IQL,
            false,
            serde_json::json!({"hidden": [64, 64]}),
        ),
        (AlgoKind::IQL, true, serde_json::json!({"hidden": [64, 64]})),
        (
            AlgoKind::CQL,
            false,
            serde_json::json!({"hidden": [64, 64], "n_actions": 10}),
        ),
        (
            AlgoKind::CQL,
            false,
            serde_json::json!({"hidden": [64, 64], "target_action_gap": 1.0}),
        ),
        (AlgoKind::CQL, true, serde_json::json!({"hidden": [64, 64]})),
        (
            AlgoKind::BCQ,
            false,
            serde_json::json!({"hidden": [64, 64], "vae_hidden": [64, 64]}),
        ),
        (AlgoKind::BCQ, true, serde_json::json!({"hidden": [64, 64]})),
    ];
    for (kind, discrete, cfg) in cases {
        let (spec, space) = if discrete {
            (Spec::discrete(6, 3), ActionSpace::Discrete { n: 3 })
        } else {
            (
                Spec::continuous(6, 2, 1.0),
                ActionSpace::Continuous {
                    dim: 2,
                    low: None,
                    high: None,
                },
            )
        };
        let ds = common::synthetic(6, space, 20, 30, 1);
        let mut replay = Replay::new(ds, ReplayConfig::default(), 2).unwrap();
        let batches: Vec<_> = (0..8).map(|_| replay.sample(128)).collect();
        let mut algo = build(kind, spec, Some(&cfg), 0, &Device::Cpu).unwrap();
        check(
            &mut *algo,
            &batches,
            &format!("{kind:?} discrete={discrete}"),
        );
    }
    // The online learners (not in the offline registry).
    let online: [(Box<dyn Algorithm>, bool); 2] = [
        (
            Box::new(
                Sac::new(
                    Spec::continuous(6, 2, 1.0),
                    SacConfig {
                        hidden: vec![64, 64],
                        ..SacConfig::default()
                    },
                    0,
                    &Device::Cpu,
                )
                .unwrap(),
            ),
            false,
        ),
        (
            Box::new(
                Dqn::new(
                    Spec::discrete(6, 3),
                    DqnConfig {
                        hidden: vec![64, 64],
                        ..DqnConfig::default()
                    },
                    0,
                    &Device::Cpu,
                )
                .unwrap(),
            ),
            true,
        ),
    ];
    for (mut algo, discrete) in online {
        let space = if discrete {
            ActionSpace::Discrete { n: 3 }
        } else {
            ActionSpace::Continuous {
                dim: 2,
                low: None,
                high: None,
            }
        };
        let ds = common::synthetic(6, space, 20, 30, 1);
        let mut replay = Replay::new(ds, ReplayConfig::default(), 2).unwrap();
        let batches: Vec<_> = (0..8).map(|_| replay.sample(128)).collect();
        let name = algo.name();
        check(&mut *algo, &batches, name);
    }
    println!("alloc: {n} passed, 0 failed", n = CASES + 2);
}

/// Warms `algo` up on half the batches, then requires no allocation over all of them.
fn check(algo: &mut dyn Algorithm, batches: &[Batch], case: &str) {
    {
        for b in batches.iter().take(4) {
            algo.update(b).unwrap();
        }
        let region = Region::new(GLOBAL);
        let mut last = 0.0;
        for b in batches {
            let m = algo.update(b).unwrap();
            last = m.values().sum::<f64>();
        }
        let stats = region.change();
        assert!(last.is_finite());
        assert_eq!(
            (stats.allocations, stats.reallocations),
            (0, 0),
            "{case}: {stats:?} over {} updates",
            batches.len()
        );
        println!("{case}: no allocation over {} updates", batches.len());
    }
}
