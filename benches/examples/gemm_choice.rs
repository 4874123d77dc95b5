//! The GEMM choice of the training engine (issue 15): `faer::linalg::matmul` against ndarray's
//! `general_mat_mul` (matrixmultiply's kernels) and candle's `matmul` (the `gemm` crate), one
//! thread, at the shapes orl trains with:
//!
//! - `256x256x256`: a hidden layer of a 2x256 network at batch 256, forward (`NN`), weight
//!   gradient `x^T dy` (`TN`) and input gradient `dy W^T` (`NT`);
//! - `256x23x256`: the first critic layer (HalfCheetah obs 17 + act 6);
//! - `256x256x1`: a critic's output layer;
//! - `7936x256x256` and `7936x23x256`: CQL's critic batch (256 + 3 x 10 x 256 rows).
//!
//! `cargo run --release -p orl-benches --example gemm_choice [REPS_SCALE]`; prints one line per
//! (shape, layout, library) with microseconds per product and GFLOP/s.

#![allow(clippy::unwrap_used)] // a timing tool: a failure should just stop it

use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use orl_nets::{Device, Tensor};

/// Which operand is transposed: `NN` = `A B`, `TN` = `A^T B`, `NT` = `A B^T`.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Nn,
    Tn,
    Nt,
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            (x % 1000) as f32 / 1000.0 - 0.5
        })
        .collect()
}

/// Row-major views of `A` (`m x k` as used) and `B` (`k x n` as used) for `layout`.
fn operands(m: usize, k: usize, n: usize, layout: Layout) -> (Vec<f32>, Vec<f32>) {
    let _ = layout; // the stored element counts are the same for every layout
    (data(m * k, 1), data(k * n, 2))
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn faer_run(m: usize, k: usize, n: usize, layout: Layout, reps: usize) -> f64 {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let (a, b) = operands(m, k, n, layout);
    let mut c = vec![0f32; m * n];
    time(reps, || {
        let lhs = match layout {
            Layout::Tn => MatRef::from_row_major_slice(&a, k, m).transpose(),
            _ => MatRef::from_row_major_slice(&a, m, k),
        };
        let rhs = match layout {
            Layout::Nt => MatRef::from_row_major_slice(&b, n, k).transpose(),
            _ => MatRef::from_row_major_slice(&b, k, n),
        };
        let dst = MatMut::from_row_major_slice_mut(&mut c, m, n);
        matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
    })
}

fn ndarray_run(m: usize, k: usize, n: usize, layout: Layout, reps: usize) -> f64 {
    let (a, b) = operands(m, k, n, layout);
    let mut c = vec![0f32; m * n];
    time(reps, || {
        let lhs = match layout {
            Layout::Tn => ArrayView2::from_shape((m, k).strides((1, m)), &a).unwrap(),
            _ => ArrayView2::from_shape((m, k), &a).unwrap(),
        };
        let rhs = match layout {
            Layout::Nt => ArrayView2::from_shape((k, n).strides((1, k)), &b).unwrap(),
            _ => ArrayView2::from_shape((k, n), &b).unwrap(),
        };
        let mut dst = ArrayViewMut2::from_shape((m, n), &mut c).unwrap();
        general_mat_mul(1.0, &lhs, &rhs, 0.0, &mut dst);
    })
}

fn candle_run(m: usize, k: usize, n: usize, layout: Layout, reps: usize) -> f64 {
    let (a, b) = operands(m, k, n, layout);
    let d = Device::Cpu;
    let lhs = match layout {
        Layout::Tn => Tensor::from_vec(a, (k, m), &d).unwrap().t().unwrap(),
        _ => Tensor::from_vec(a, (m, k), &d).unwrap(),
    };
    let rhs = match layout {
        Layout::Nt => Tensor::from_vec(b, (n, k), &d).unwrap().t().unwrap(),
        _ => Tensor::from_vec(b, (k, n), &d).unwrap(),
    };
    time(reps, || {
        let _ = lhs.matmul(&rhs).unwrap();
    })
}

fn main() {
    let scale: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    println!("shape layout library us GFLOP/s");
    for (m, k, n) in [
        (256, 256, 256),
        (256, 23, 256),
        (256, 256, 1),
        (7936, 256, 256),
        (7936, 23, 256),
        (7936, 256, 1),
    ] {
        let flop = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flop) * scale).clamp(20.0, 20_000.0) as usize;
        for layout in [Layout::Nn, Layout::Tn, Layout::Nt] {
            for (lib, f) in [
                (
                    "faer",
                    faer_run as fn(usize, usize, usize, Layout, usize) -> f64,
                ),
                ("ndarray", ndarray_run),
                ("candle", candle_run),
            ] {
                let dt = f(m, k, n, layout, reps);
                println!(
                    "{m}x{k}x{n} {layout:?} {lib} {:.1} {:.1}",
                    dt * 1e6,
                    flop / dt / 1e9
                );
            }
        }
    }
}
