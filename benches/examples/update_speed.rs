//! Quick timing of updates/s without criterion: `cargo run --release -p orl-benches --example update_speed -- ALGO N [JSON config]`.

use std::time::Instant;

use orl_algos::{AlgoKind, Spec, build};
use orl_benches::halfcheetah_like;
use orl_data::{Replay, ReplayConfig};
use orl_nets::Device;

fn main() {
    // `RAYON_NUM_THREADS=2`: this thread and one more, as `orl train --threads 2` runs.
    orl_nets::threads::init_pool(orl_nets::threads::resolve_threads(None));
    let args: Vec<String> = std::env::args().collect();
    let kind: AlgoKind = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("bc")
        .parse()
        .expect("algo");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let ds = halfcheetah_like(20_000, 0);
    let mut replay = Replay::new(ds, ReplayConfig::default(), 0).expect("replay");
    let batches: Vec<_> = (0..32)
        .map(|_| replay.sample(kind.default_batch_size()))
        .collect();
    let config: Option<serde_json::Value> = args
        .get(3)
        .map(|s| serde_json::from_str(s).expect("JSON config"));
    let mut algo = build(
        kind,
        Spec::continuous(17, 6, 1.0),
        config.as_ref(),
        0,
        &Device::Cpu,
    )
    .expect("build");
    for b in batches.iter().take(5) {
        algo.update(b).expect("update");
    }
    let t = Instant::now();
    for i in 0..n {
        algo.update(&batches[i % batches.len()]).expect("update");
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{}: {:.1} updates/s ({:.3} ms/update)",
        kind.name(),
        n as f64 / dt,
        1e3 * dt / n as f64
    );
}
