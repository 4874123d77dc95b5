//! Backends: where an algorithm's buffers live and what runs its network passes.
//!
//! ```text
//! algorithm (losses, written once)          Backend
//!   Map1 / Map2 kernels over S: Scalar  ->  Cpu:    S = f32, one fused pass over flat buffers
//!   mlp_forward / mlp_backward          ->          the engine's Mlp (faer GEMM, reused caches)
//!   adam_step                           ->          FlatAdam, in place
//!                                           Candle: S = Expr (a whole tensor per op),
//!                                                   candle matmuls on any candle device
//! ```
//!
//! Why the trait sits at the level of networks and kernels, not single tensor ops: the CPU
//! engine is fast because it fuses (bias and activation in one pass, a loss and its gradient
//! in one loop) and reuses every buffer, and a per-op trait would force it back into one
//! pass and one buffer per op. So each backend implements whole network passes and the
//! optimizer, and the elementwise parts of the losses are written once as kernels generic over
//! [`Scalar`]: the CPU backend applies a kernel element by element inside one loop, the candle
//! backend applies it to whole tensors (one candle op per arithmetic operation), so the same
//! algorithm code runs on candle's devices (CPU in the tests; CUDA and Metal behind the
//! `cuda` / `metal` features).
//!
//! Both backends start from the same [`Params`] (same initial draws), and the parity tests check
//! that they compute the same passes, gradients and updates.
//!
//! ```
//! use orl_nets::engine::backend::{Backend, Candle, Cpu, Map2, Scalar};
//! use orl_nets::engine::{Activation, Input, Mlp, Params};
//! use rand::SeedableRng;
//!
//! /// `dL/dy` of `L = mean((y - t)^2)` over `n` values.
//! struct MseGrad(f32);
//! impl Map2 for MseGrad {
//!     fn apply<S: Scalar>(&self, y: S, t: S) -> S {
//!         (y - t).scale(2.0 * self.0)
//!     }
//! }
//!
//! fn grad_norm<B: Backend>(be: &B, host: &Params, mlp: &Mlp) -> f64 {
//!     let p = be.place(host).unwrap();
//!     let (mut x, mut t, mut dy, mut g) = Default::default();
//!     be.upload(&[0.5, -1.0, 0.25, 2.0], 2, &mut x).unwrap(); // 2 rows of 2
//!     be.upload(&[1.0, -1.0], 1, &mut t).unwrap();
//!     let mut cache = B::Cache::default();
//!     be.mlp_forward(mlp, &p, &x, Input::Shared, 2, &mut cache).unwrap();
//!     be.map2(&MseGrad(0.5), be.mlp_output(&cache), &t, &mut dy).unwrap();
//!     be.zeros_for(&p, &mut g).unwrap();
//!     be.mlp_backward(mlp, &p, &x, Input::Shared, &mut cache, &dy, Some(&mut g), None).unwrap();
//!     let mut host_g = Vec::new();
//!     be.download(&g, &mut host_g).unwrap();
//!     host_g.iter().map(|&v| f64::from(v * v)).sum::<f64>().sqrt()
//! }
//!
//! let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
//! let mut host = Params::new();
//! let mlp = Mlp::new(&mut host.builder("net", &mut rng), 2, &[8], 1, Activation::Identity).unwrap();
//! let (cpu, candle) = (grad_norm(&Cpu, &host, &mlp), grad_norm(&Candle::cpu(), &host, &mlp));
//! assert!((cpu - candle).abs() <= 1e-5 * cpu.max(1.0));
//! ```

use std::borrow::Cow;
use std::ops::{Add, Div, Mul, Sub};

use crate::adam::{AdamConfig, CosineSchedule};
use crate::engine::mlp::{Input, Mlp};
use crate::engine::params::Params;
use crate::error::Result;
use crate::state::{NetState, OptimState};

mod candle;
mod cpu;

pub use self::candle::{Candle, CandleAdam, CandleMlpCache, CandleParams, Expr};
pub use self::cpu::Cpu;

/// The arithmetic a loss kernel may use: implemented by `f32` (one element) and by [`Expr`]
/// (a whole candle tensor). Write a kernel once against it.
pub trait Scalar:
    Clone + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// `self * k`.
    fn scale(self, k: f32) -> Self;
    /// `self + k`.
    fn shift(self, k: f32) -> Self;
    /// `tanh(self)`.
    fn tanh(self) -> Self;
    /// `exp(self)`.
    fn exp(self) -> Self;
    /// `max(self, other)`.
    fn max(self, other: Self) -> Self;
    /// `min(self, other)`.
    fn min(self, other: Self) -> Self;
    /// `self / k` (a true division, not a product with `1 / k`, on the CPU backend).
    fn div_by(self, k: f32) -> Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// `self` clamped to `[lo, hi]`.
    fn clamp(self, lo: f32, hi: f32) -> Self;
    /// `ln(self)`.
    fn ln(self) -> Self;
    /// `1` where `lo <= self <= hi`, else `0` (where a clamp passes its gradient).
    fn inside(self, lo: f32, hi: f32) -> Self;
    /// `ln(1 + exp(self))`, computed stably as `max(x, 0) + ln(1 + exp(-|x|))`.
    fn softplus(self) -> Self;
    /// `1` where `lo < self < hi` (strictly), else `0`.
    fn within(self, lo: f32, hi: f32) -> Self;
    /// `1 / self` (a true division on the CPU backend).
    fn recip(self) -> Self;
}

impl Scalar for f32 {
    #[inline(always)]
    fn scale(self, k: f32) -> Self {
        self * k
    }
    #[inline(always)]
    fn shift(self, k: f32) -> Self {
        self + k
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        f32::min(self, other)
    }
    #[inline(always)]
    fn div_by(self, k: f32) -> Self {
        self / k
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        f32::clamp(self, lo, hi)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline(always)]
    fn inside(self, lo: f32, hi: f32) -> Self {
        if self >= lo && self <= hi { 1.0 } else { 0.0 }
    }
    #[inline(always)]
    fn softplus(self) -> Self {
        self.max(0.0) + (-self.abs()).exp().ln_1p()
    }
    #[inline(always)]
    fn within(self, lo: f32, hi: f32) -> Self {
        if self > lo && self < hi { 1.0 } else { 0.0 }
    }
    #[inline(always)]
    fn recip(self) -> Self {
        1.0 / self
    }
}

/// An elementwise kernel of one input: `out_i = apply(x_i)`.
pub trait Map1 {
    /// The kernel, for one element or one whole tensor.
    fn apply<S: Scalar>(&self, x: S) -> S;
}

/// An elementwise kernel of two inputs of the same shape: `out_i = apply(a_i, b_i)`.
pub trait Map2 {
    /// The kernel, for one element or one whole tensor.
    fn apply<S: Scalar>(&self, a: S, b: S) -> S;
}

/// An elementwise kernel of three inputs of the same shape: `out_i = apply(a_i, b_i, c_i)`.
pub trait Map3 {
    /// The kernel, for one element or one whole tensor.
    fn apply<S: Scalar>(&self, a: S, b: S, c: S) -> S;
}

/// The identity (`Map1`): with [`Backend::map1_sum`], a buffer's sum.
#[derive(Debug, Clone, Copy)]
pub struct Identity;

impl Map1 for Identity {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x
    }
}

/// `|x|` (`Map1`).
#[derive(Debug, Clone, Copy)]
pub struct Abs;

impl Map1 for Abs {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.abs()
    }
}

/// `min(a, b)` (`Map2`): the clipped double-Q target's smaller critic.
#[derive(Debug, Clone, Copy)]
pub struct Min;

impl Map2 for Min {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a.min(b)
    }
}

/// `a * b` (`Map2`): a mask, a one-hot gather.
#[derive(Debug, Clone, Copy)]
pub struct Product;

impl Map2 for Product {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a * b
    }
}

/// `a - b` (`Map2`).
#[derive(Debug, Clone, Copy)]
pub struct Difference;

impl Map2 for Difference {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a - b
    }
}

/// `a + b` (`Map2`).
#[derive(Debug, Clone, Copy)]
pub struct Sum2;

impl Map2 for Sum2 {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a + b
    }
}

/// `y = r + nd v` (`Map3`): a Bellman target from the reward, the not-done mask (times the
/// discount) and the next value.
#[derive(Debug, Clone, Copy)]
pub struct Bellman;

impl Map3 for Bellman {
    #[inline(always)]
    fn apply<S: Scalar>(&self, r: S, nd: S, v: S) -> S {
        r + nd * v
    }
}

/// `exp(x - max)` (`Map2`): the shifted exponentials of a row-wise logsumexp or softmax.
#[derive(Debug, Clone, Copy)]
pub struct ExpShift;

impl Map2 for ExpShift {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S, max: S) -> S {
        (x - max).exp()
    }
}

/// `max + ln(sum)` (`Map2`): a row's logsumexp from its max and its sum of [`ExpShift`]s.
#[derive(Debug, Clone, Copy)]
pub struct LogSumExp;

impl Map2 for LogSumExp {
    #[inline(always)]
    fn apply<S: Scalar>(&self, max: S, sum: S) -> S {
        max + sum.ln()
    }
}

/// `(a - b)^2` (`Map2`).
#[derive(Debug, Clone, Copy)]
pub struct SquaredError;

impl Map2 for SquaredError {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        let d = a - b;
        d.clone() * d
    }
}

/// `|a - b|` (`Map2`).
#[derive(Debug, Clone, Copy)]
pub struct AbsError;

impl Map2 for AbsError {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        (a - b).abs()
    }
}

/// Multiplies by a constant (`Map1`): the action bound of a tanh head, a loss's `1/B`.
#[derive(Debug, Clone, Copy)]
pub struct Scale(pub f32);

impl Map1 for Scale {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.scale(self.0)
    }
}

/// Where an algorithm's buffers live and what runs its network passes (see the module doc).
///
/// Buffers are row-major `f32` arrays: a batch `[B, d]`, a network's output `[E, B, out]`
/// (stored as `E * B` rows), a gradient laid out as its network's [`Params`]. Every method writes
/// into a destination the caller owns, so the CPU backend reuses its buffers and allocates
/// nothing in steady state, while the candle backend replaces the tensor a destination holds.
pub trait Backend: Clone + Send + Sync + 'static {
    /// A row-major `f32` buffer on this backend.
    type Buf: Default + Send + Sync;
    /// A network's parameters on this backend (checkpoint names and layout as [`Params`]).
    type Params: NetState + Send + Sync + 'static;
    /// Adam's state for one network, with its gradient buffer.
    type Adam: OptimState + Send + Sync + 'static;
    /// What an [`Mlp`]'s forward pass keeps for its backward pass.
    type Cache: Default + Send + Sync;

    /// A short name for messages and records (`"cpu"`, `"candle"`).
    fn name(&self) -> &'static str;
    /// `host`'s parameters placed on this backend.
    fn place(&self, host: &Params) -> Result<Self::Params>;
    /// The parameters as a host [`Params`] (borrowed on the CPU backend, copied from the device
    /// on others): for acting, exporting and the parity tests.
    fn host_params<'a>(&self, p: &'a Self::Params) -> Result<Cow<'a, Params>>;
    /// `out <- host` (`cols` values per row).
    fn upload(&self, host: &[f32], cols: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out <- b`, row-major.
    fn download(&self, b: &Self::Buf, out: &mut Vec<f32>) -> Result<()>;
    /// `out <- 0`, shaped as `p`'s gradient.
    fn zeros_for(&self, p: &Self::Params, out: &mut Self::Buf) -> Result<()>;
    /// `out <- p[offset..offset + len]` as one row `[1, len]` (a free parameter vector such as
    /// a Gaussian head's `log_std`).
    fn param_row(
        &self,
        p: &Self::Params,
        offset: usize,
        len: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `grad[offset..offset + len] += x` (`x` of `len` values): a free parameter's gradient.
    fn add_to_grad(&self, grad: &mut Self::Buf, offset: usize, x: &Self::Buf) -> Result<()>;

    /// Adam for `p` (its moments and gradient zero), with a cosine decay of the learning
    /// rate when `schedule` is given.
    fn adam(
        &self,
        p: &Self::Params,
        cfg: AdamConfig,
        schedule: Option<CosineSchedule>,
    ) -> Result<Self::Adam>;
    /// The learning rate of the optimizer's next step.
    fn lr(&self, opt: &Self::Adam) -> f64;
    /// The optimizer's gradient buffer, zeroed: backward passes add into it.
    fn zero_grad<'a>(&self, opt: &'a mut Self::Adam) -> Result<&'a mut Self::Buf>;
    /// The optimizer's gradient buffer as it is.
    fn grad<'a>(&self, opt: &'a Self::Adam) -> &'a Self::Buf;
    /// One Adam step on `p` from the optimizer's gradient; the gradient's norm when the
    /// configuration clips it.
    fn adam_step(&self, opt: &mut Self::Adam, p: &mut Self::Params) -> Result<Option<f64>>;

    /// Polyak averaging `target <- tau * src + (1 - tau) * target` ([`Params::soft_update_from`]).
    fn soft_update(&self, target: &mut Self::Params, src: &Self::Params, tau: f64) -> Result<()>;

    /// [`Mlp::forward`]: `x` `[B, in]` (shared) or `[E * B, in]` (per member).
    fn mlp_forward(
        &self,
        mlp: &Mlp,
        p: &Self::Params,
        x: &Self::Buf,
        input: Input,
        batch: usize,
        cache: &mut Self::Cache,
    ) -> Result<()> {
        self.mlp_forward_first(mlp, p, x, input, batch, mlp.members(), cache)
    }
    /// [`Mlp::forward_first`]: the first `k` members only (output `[k * B, out]`); the backward
    /// pass then runs over the same members.
    #[allow(clippy::too_many_arguments)]
    fn mlp_forward_first(
        &self,
        mlp: &Mlp,
        p: &Self::Params,
        x: &Self::Buf,
        input: Input,
        batch: usize,
        k: usize,
        cache: &mut Self::Cache,
    ) -> Result<()>;
    /// The last forward pass's output `[E * B, out]`.
    fn mlp_output<'a>(&self, cache: &'a Self::Cache) -> &'a Self::Buf;
    /// [`Mlp::backward`] from `dout = dL/d(output)`: adds the parameter gradients into `grads`
    /// when given and writes `dL/dx` into `dx` when given.
    #[allow(clippy::too_many_arguments)]
    fn mlp_backward(
        &self,
        mlp: &Mlp,
        p: &Self::Params,
        x: &Self::Buf,
        input: Input,
        cache: &mut Self::Cache,
        dout: &Self::Buf,
        grads: Option<&mut Self::Buf>,
        dx: Option<&mut Self::Buf>,
    ) -> Result<()>;

    /// `out <- k(x)` elementwise.
    fn map1<K: Map1>(&self, k: &K, x: &Self::Buf, out: &mut Self::Buf) -> Result<()>;
    /// `out <- k(a, b)` elementwise (`a` and `b` of one shape).
    fn map2<K: Map2>(&self, k: &K, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf)
    -> Result<()>;
    /// `out <- k(a, b, c)` elementwise (one shape).
    fn map3<K: Map3>(
        &self,
        k: &K,
        a: &Self::Buf,
        b: &Self::Buf,
        c: &Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `sum_i k(x_i)`, accumulated in `f64` in element order on the CPU backend.
    fn map1_sum<K: Map1>(&self, k: &K, x: &Self::Buf) -> Result<f64>;
    /// `sum_i k(a_i, b_i)`, accumulated in `f64` in element order on the CPU backend.
    fn map2_sum<K: Map2>(&self, k: &K, a: &Self::Buf, b: &Self::Buf) -> Result<f64>;
    /// `sum_i a_i b_i`, each product formed and accumulated in `f64` on the CPU backend.
    fn dot(&self, a: &Self::Buf, b: &Self::Buf) -> Result<f64>;
    /// `out <- v` everywhere, shaped as `like`.
    fn fill(&self, like: &Self::Buf, v: f32, out: &mut Self::Buf) -> Result<()>;

    /// `out <- [a | b]`: the rows of `a` `[R, ca]` and `b` `[R, cb]` side by side, `[R, ca + cb]`.
    fn concat_cols(
        &self,
        a: &Self::Buf,
        ca: usize,
        b: &Self::Buf,
        cb: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out <- x[:, from..from + n]` of `x` `[R, cols]`.
    fn cols(
        &self,
        x: &Self::Buf,
        cols: usize,
        from: usize,
        n: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out <- x[from..from + n, :]` of `x` `[R, cols]` (member `e` of an `[E * B, out]` output:
    /// `from = e * B`, `n = B`).
    fn rows(
        &self,
        x: &Self::Buf,
        cols: usize,
        from: usize,
        n: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out <- sum_j x[r, j]`, `[R, 1]` (summed in `f32` from 0 in column order on the CPU
    /// backend).
    fn sum_cols(&self, x: &Self::Buf, cols: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out <- max_j x[r, j]`, `[R, 1]`.
    fn max_cols(&self, x: &Self::Buf, cols: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out <- sum_r x[r, j]`, `[1, cols]` (summed in `f32` from 0 in row order on the CPU
    /// backend).
    fn sum_rows(&self, x: &Self::Buf, cols: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out <- ` the one-hot `[R, cols]` of each row's first largest entry (the engine's
    /// [`crate::engine::argmax`]).
    fn argmax_onehot(&self, x: &Self::Buf, cols: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out[r, j] <- x[r]`: a column `[R, 1]` repeated `k` times across, `[R, k]`.
    fn tile_cols(&self, x: &Self::Buf, k: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out <- [parts_0; parts_1; ...]`: the parts' rows one after the other (one width).
    fn concat_rows(&self, parts: &[&Self::Buf], out: &mut Self::Buf) -> Result<()>;
    /// `out <-` each row of `x` `[R, cols]` repeated `n` times in place, `[R n, cols]` (row `r`'s
    /// copies at `r n .. r n + n`: CQL's states beside their `n` sampled actions).
    fn repeat_rows(&self, x: &Self::Buf, cols: usize, n: usize, out: &mut Self::Buf) -> Result<()>;
    /// `out <-` `x` read as `[a, b, n]` and written as `[b, a, n]` (the first two axes
    /// swapped), shaped `[a b n / out_cols, out_cols]`: CQL's proposals, stored per proposal
    /// kind, regrouped per state (and back).
    #[allow(clippy::too_many_arguments)]
    fn transpose_blocks(
        &self,
        x: &Self::Buf,
        a: usize,
        b: usize,
        n: usize,
        out_cols: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out <- [x; k]`: `x` repeated `k` times along the rows (a `[B, .]` target beside an
    /// `[E * B, .]` ensemble output).
    fn tile_rows(&self, x: &Self::Buf, k: usize, out: &mut Self::Buf) -> Result<()>;
}
