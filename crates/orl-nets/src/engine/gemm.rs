//! The one matrix product of the engine: `C (+)= op(A) op(B)` on row-major `f32` slices, one
//! thread, through `faer::linalg::matmul` (safe, well kept, AVX-512 kernels chosen at run
//! time). The choice against ndarray's `general_mat_mul` and candle's `gemm` was made with
//! `cargo run --release -p orl-benches --example gemm_choice` (`docs/performance.md`).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// `C = op(A) op(B)` (or `C += ...` when `accumulate`), with `op(A)`: `[m, k]`, `op(B)`:
/// `[k, n]`, `C`: `[m, n]`, all row-major. A transposed operand is stored as its transpose
/// (`A`: `[k, m]`, `B`: `[n, k]`).
///
/// Panics only when a slice is shorter than its shape, which every caller in the engine rules
/// out by construction.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    c: &mut [f32],
    a: &[f32],
    op_a: Op,
    b: &[f32],
    op_b: Op,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    let lhs = match op_a {
        Op::N => MatRef::from_row_major_slice(&a[..m * k], m, k),
        Op::T => MatRef::from_row_major_slice(&a[..m * k], k, m).transpose(),
    };
    let rhs = match op_b {
        Op::N => MatRef::from_row_major_slice(&b[..k * n], k, n),
        Op::T => MatRef::from_row_major_slice(&b[..k * n], n, k).transpose(),
    };
    let dst = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    let accum = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    matmul(dst, accum, lhs, rhs, 1.0f32, Par::Seq);
}
