//! Data-layer benchmarks (issue 2 goals, 2-core reference machine):
//!
//! * `parquet_load_1m`: `Dataset::open` of 1M HalfCheetah-shaped transitions; goal < 0.5 s.
//! * `sample_256`: uniform batches of 256 from 1M transitions; goal >= 5M transitions/s
//!   (d3rlpy: ~2.7 ms per batch of 256 on the same machine).
//! * `convert_d4rl_1m`: `orl convert` of a 1M-transition D4RL-layout HDF5 (gzip level 4 chunks,
//!   as D4RL writes them) to Parquet, including the source sha256; goal < 5 s.
//!
//! Run: `cargo bench -p orl-benches --bench data`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orl_benches::halfcheetah_like;
use orl_data::convert::{self, ConvertOptions, Format, OutputFormat};
use orl_data::{Batch, Dataset, Replay, ReplayConfig, WriteOptions, write_parquet};

const N: usize = 1_000_000;

fn load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("hc.parquet");
    write_parquet(&halfcheetah_like(N, 0), &p, &WriteOptions::default()).expect("write");
    let mut g = c.benchmark_group("data");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("parquet_load_1m", |b| {
        b.iter(|| black_box(Dataset::open(&p).expect("open")))
    });
    g.finish();
}

fn sample(c: &mut Criterion) {
    let mut replay =
        Replay::new(halfcheetah_like(N, 1), ReplayConfig::default(), 0).expect("replay");
    let mut batch = Batch::default();
    let mut g = c.benchmark_group("data");
    g.throughput(Throughput::Elements(256));
    g.bench_function("sample_256", |b| {
        b.iter(|| {
            replay.sample_into(&mut batch, 256);
            black_box(&batch);
        })
    });
    g.finish();
}

fn convert_d4rl(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("hc.hdf5");
    convert::write(&halfcheetah_like(N, 2), &src, OutputFormat::D4rlHdf5).expect("write hdf5");
    let out = dir.path().join("hc.parquet");
    let mut g = c.benchmark_group("data");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("convert_d4rl_1m", |b| {
        b.iter(|| {
            let ds = convert::read(&src, Format::D4rl, &ConvertOptions::default()).expect("read");
            convert::write(&ds, &out, OutputFormat::Parquet).expect("write");
        })
    });
    g.finish();
}

criterion_group!(benches, load, sample, convert_d4rl);
criterion_main!(benches);
