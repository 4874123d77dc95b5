//! Gradient updates per second (issue 4 goals), HalfCheetah shapes: obs 17, act 6, batch 256
//! (BCQ: 100), hidden 256x256 (CQL: the paper's 256x256x256 and 10 sampled actions), batches
//! presampled from a synthetic 100k-transition dataset so only the update is timed.
//!
//! Goals (updates/s on the 2-core reference machine): IQL >= 250, CQL >= 20, BCQ >= 25,
//! TD3+BC >= 300, BC >= 1000. d3rlpy 2.8.1 / CORL measured on the same machine: IQL 101 / 121,
//! CQL 13.2 / 9.0, BCQ 17.2 / -, TD3+BC 126 / 178, BC 480 / 553.
//!
//! Run: `cargo bench -p orl-benches --bench update` (`RAYON_NUM_THREADS=1` or `2` selects
//! candle's intra-op threads; `docs/performance.md` records both).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orl_algos::{AlgoKind, Spec, build};
use orl_benches::halfcheetah_like;
use orl_data::{Replay, ReplayConfig};
use orl_nets::Device;

fn updates(c: &mut Criterion) {
    let ds = halfcheetah_like(100_000, 0);
    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    for kind in [
        AlgoKind::BC,
        AlgoKind::TD3BC,
        AlgoKind::IQL,
        AlgoKind::CQL,
        AlgoKind::BCQ,
    ] {
        let mut replay = Replay::new(ds.clone(), ReplayConfig::default(), 0).expect("replay");
        let batches: Vec<_> = (0..64)
            .map(|_| replay.sample(kind.default_batch_size()))
            .collect();
        let mut algo =
            build(kind, Spec::continuous(17, 6, 1.0), None, 0, &Device::Cpu).expect("build");
        let mut i = 0;
        g.bench_function(kind.name(), |b| {
            b.iter(|| {
                i = (i + 1) % batches.len();
                black_box(algo.update(&batches[i]).expect("update"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, updates);
criterion_main!(benches);
