//! Candle matmul timing at the sizes of a 256x256 MLP with batch 256.

#![allow(clippy::unwrap_used)] // a throwaway timing tool: a failure should just stop it

use std::time::Instant;

use orl_nets::{DType, Device, Tensor};

fn main() {
    let d = Device::Cpu;
    for (m, k, n) in [
        (256, 256, 256),
        (256, 23, 256),
        (256, 256, 1),
        (256, 256, 256),
    ] {
        let a = Tensor::randn(0f32, 1.0, (m, k), &d).unwrap();
        let b = Tensor::randn(0f32, 1.0, (k, n), &d).unwrap();
        let bt = Tensor::randn(0f32, 1.0, (n, k), &d).unwrap().t().unwrap();
        for (name, bb) in [("plain", &b), ("transposed", &bt)] {
            let _ = a.matmul(bb).unwrap();
            let t = Instant::now();
            let reps = 2000;
            for _ in 0..reps {
                let _ = a.matmul(bb).unwrap();
            }
            let dt = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{m}x{k}x{n} {name}: {:.1} us, {:.1} GFLOP/s",
                dt * 1e6,
                2.0 * (m * k * n) as f64 / dt / 1e9
            );
        }
    }
    let x = Tensor::randn(0f32, 1.0, (256, 256), &d).unwrap();
    let t = Instant::now();
    for _ in 0..2000 {
        let _ = x.relu().unwrap();
    }
    println!(
        "relu 256x256: {:.1} us",
        t.elapsed().as_secs_f64() / 2000.0 * 1e6
    );
    let _ = DType::F32;
}
