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
    let mut dst = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    // Long products run in blocks of BLOCK rows (or BLOCK terms of the inner sum): faer reaches
    // about 143 GFLOP/s at 256x256x256 on one AVX-512 core but under 100 at CQL's 7 936 rows
    // (`gemm_choice`), so the large products are cut into the shape it is fastest at.
    for k0 in (0..k).step_by(BLOCK) {
        let kl = BLOCK.min(k - k0);
        let accum = if accumulate || k0 > 0 {
            Accum::Add
        } else {
            Accum::Replace
        };
        for m0 in (0..m).step_by(BLOCK) {
            let ml = BLOCK.min(m - m0);
            matmul(
                dst.as_mut().subrows_mut(m0, ml),
                accum,
                lhs.subrows(m0, ml).subcols(k0, kl),
                rhs.subrows(k0, kl),
                1.0f32,
                Par::Seq,
            );
        }
    }
}

/// Rows (and inner-sum terms) per block of a long product.
const BLOCK: usize = 256;
