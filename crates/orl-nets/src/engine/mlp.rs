//! MLPs and ensembles of MLPs with explicit forward and backward passes.
//!
//! ```text
//! layer l of member e:   h_l[e] = act_l(h_{l-1}[e] W_l[e] + b_l[e])      act: ReLU, last: out_act
//! backward (g_l = dL/dh_l):
//!   d_l    = g_l * act_l'(h_l)            ReLU: 1(h_l > 0)    tanh: 1 - h_l^2    identity: 1
//!   dW_l  += h_{l-1}^T d_l                db_l += sum_rows d_l
//!   g_{l-1} = d_l W_l^T                    (for l = 0 only when dL/dx is asked for)
//! ```
//!
//! Shapes: input `x: [B, in]` shared by all members, or `[E, B, in]` one slice per member;
//! output `[E, B, out]` (`E = 1` for a plain MLP). Weights `[in, out]` (`[E, in, out]`), biases
//! `[out]` (`[E, 1, out]`): the layout and names of [`crate::Mlp`] and [`crate::EnsembleMlp`]
//! (`<prefix>.<l>.weight`, `<prefix>.<l>.bias`), initialised with the same draws
//! (PyTorch's `U(-1/sqrt(in), 1/sqrt(in))`).
//!
//! The bias and the activation are applied in one pass over the product's output, and every buffer lives in an [`MlpCache`]
//! that is sized on first use and reused after: a forward and backward pass allocates nothing
//! once the cache has seen the batch size.

use rayon::prelude::*;

use crate::engine::gemm::{Op, gemm};
use crate::engine::params::{Params, ParamsBuilder};
use crate::engine::simd;
use crate::error::Result;

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// `y = act(y + b)` row by row (`b` one row): the bias and the activation in one pass.
    fn bias_apply(self, y: &mut [f32], b: &[f32]) {
        let o = b.len();
        simd(
            #[inline(always)]
            || {
                if o == 1 {
                    let b = b[0];
                    match self {
                        Self::Identity => y.iter_mut().for_each(|v| *v += b),
                        Self::Relu => y.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
                        Self::Tanh => y.iter_mut().for_each(|v| *v = (*v + b).tanh()),
                    }
                    return;
                }
                for row in y.chunks_exact_mut(o) {
                    let pairs = row.iter_mut().zip(b);
                    match self {
                        Self::Identity => pairs.for_each(|(v, &b)| *v += b),
                        Self::Relu => pairs.for_each(|(v, &b)| *v = (*v + b).max(0.0)),
                        Self::Tanh => pairs.for_each(|(v, &b)| *v = (*v + b).tanh()),
                    }
                }
            },
        )
    }
    /// `g *= act'(.)` written through the activation's output `y`.
    fn backward(self, g: &mut [f32], y: &[f32]) {
        simd(
            #[inline(always)]
            || match self {
                Self::Identity => {}
                Self::Relu => g
                    .iter_mut()
                    .zip(y)
                    .for_each(|(g, &y)| *g = if y > 0.0 { *g } else { 0.0 }),
                Self::Tanh => g.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
            },
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Layer {
    w: usize,
    b: usize,
    input: usize,
    output: usize,
}

/// `E` MLPs `in -> hidden... -> out` (ReLU between layers, `out_act` after the last).
#[derive(Debug, Clone)]
pub struct Mlp {
    members: usize,
    layers: Vec<Layer>,
    out_act: Activation,
}

/// Where a forward pass reads its input from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// One `[B, in]` input shared by every member.
    Shared,
    /// `[E, B, in]`: member `e` reads slice `e`.
    PerMember,
}

/// The activations and gradient buffers of one [`Mlp`] at one batch size.
#[derive(Debug, Clone, Default)]
pub struct MlpCache {
    batch: usize,
    /// Members the last forward pass evaluated (the first `active`).
    active: usize,
    outs: Vec<Vec<f32>>,
    deltas: Vec<Vec<f32>>,
}

impl MlpCache {
    /// An empty cache (sized by the first forward pass).
    pub fn new() -> Self {
        Self::default()
    }
    /// The batch size of the last forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Members the last forward pass evaluated ([`Mlp::forward_first`]'s `k`).
    pub fn active(&self) -> usize {
        self.active
    }
    /// The last forward pass's output `[E, B, out]`.
    pub fn output(&self) -> &[f32] {
        self.outs.last().map_or(&[], Vec::as_slice)
    }
    /// The last forward pass's output buffer itself (the CPU backend's buffer type).
    pub(crate) fn output_buf(&self) -> &Vec<f32> {
        static EMPTY: Vec<f32> = Vec::new();
        self.outs.last().unwrap_or(&EMPTY)
    }
    /// The buffer for `dL/d(output)` `[E, B, out]`: fill it, then call [`Mlp::backward`].
    pub fn dout_mut(&mut self) -> &mut [f32] {
        self.deltas.last_mut().map_or(&mut [], Vec::as_mut_slice)
    }
    /// The output and the `dL/d(output)` buffer together.
    pub fn output_and_dout(&mut self) -> (&[f32], &mut [f32]) {
        match (self.outs.last(), self.deltas.last_mut()) {
            (Some(o), Some(d)) => (o.as_slice(), d.as_mut_slice()),
            _ => (&[], &mut []),
        }
    }
    fn prepare(&mut self, mlp: &Mlp, batch: usize, active: usize) {
        let n = mlp.layers.len();
        self.outs.resize_with(n, Vec::new);
        self.deltas.resize_with(n, Vec::new);
        self.active = active;
        for (l, layer) in mlp.layers.iter().enumerate() {
            let len = active * batch * layer.output;
            self.outs[l].resize(len, 0.0);
            self.deltas[l].resize(len, 0.0);
        }
        self.batch = batch;
    }
}

impl Mlp {
    /// A plain MLP (`E = 1`), parameters `<l>.weight` `[in, out]` and `<l>.bias` `[out]`.
    pub fn new(
        pb: &mut ParamsBuilder<'_>,
        input: usize,
        hidden: &[usize],
        output: usize,
        out_act: Activation,
    ) -> Result<Self> {
        Self::build(pb, None, input, hidden, output, out_act)
    }
    /// `members` MLPs, parameters `<l>.weight` `[E, in, out]` and `<l>.bias` `[E, 1, out]`.
    pub fn ensemble(
        pb: &mut ParamsBuilder<'_>,
        members: usize,
        input: usize,
        hidden: &[usize],
        output: usize,
        out_act: Activation,
    ) -> Result<Self> {
        Self::build(pb, Some(members), input, hidden, output, out_act)
    }
    /// One linear layer `input -> output` named `weight` `[in, out]` and `bias` `[out]` at the
    /// builder's prefix itself (the layout of [`crate::Linear`]).
    pub fn linear(
        pb: &mut ParamsBuilder<'_>,
        input: usize,
        output: usize,
        out_act: Activation,
    ) -> Result<Self> {
        let bound = 1.0 / (input as f64).sqrt();
        let w = pb.uniform("weight", &[input, output], bound)?;
        let b = pb.uniform("bias", &[output], bound)?;
        Ok(Self {
            members: 1,
            layers: vec![Layer {
                w,
                b,
                input,
                output,
            }],
            out_act,
        })
    }
    fn build(
        pb: &mut ParamsBuilder<'_>,
        members: Option<usize>,
        input: usize,
        hidden: &[usize],
        output: usize,
        out_act: Activation,
    ) -> Result<Self> {
        let mut dims = vec![input];
        dims.extend_from_slice(hidden);
        dims.push(output);
        let mut layers = Vec::with_capacity(dims.len() - 1);
        for (l, w) in dims.windows(2).enumerate() {
            let (i, o) = (w[0], w[1]);
            let bound = 1.0 / (i as f64).sqrt();
            let mut lb = pb.pp(l);
            let (w_off, b_off) = match members {
                None => (
                    lb.uniform("weight", &[i, o], bound)?,
                    lb.uniform("bias", &[o], bound)?,
                ),
                Some(e) => (
                    lb.uniform("weight", &[e, i, o], bound)?,
                    lb.uniform("bias", &[e, 1, o], bound)?,
                ),
            };
            layers.push(Layer {
                w: w_off,
                b: b_off,
                input: i,
                output: o,
            });
        }
        Ok(Self {
            members: members.unwrap_or(1),
            layers,
            out_act,
        })
    }
    /// Members `E`.
    pub fn members(&self) -> usize {
        self.members
    }
    /// Input width.
    pub fn input_dim(&self) -> usize {
        self.layers[0].input
    }
    /// Output width.
    pub fn output_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].output
    }
    /// Number of linear layers.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }
    /// Layer `l`'s weight and bias offsets in its [`Params`] and its widths `(w, b, in, out)`
    /// (member `e`'s weight at `w + e * in * out`, its bias at `b + e * out`).
    pub(crate) fn layer_layout(&self, l: usize) -> (usize, usize, usize, usize) {
        let x = self.layers[l];
        (x.w, x.b, x.input, x.output)
    }
    /// Layer `l`'s activation (ReLU, or the output activation for the last).
    pub(crate) fn layer_activation(&self, l: usize) -> Activation {
        self.activation(l, self.layers.len() - 1)
    }

    /// Forward pass of `batch` rows; the output is `cache.output()`, `[E, B, out]`.
    pub fn forward(&self, p: &Params, x: &[f32], input: Input, batch: usize, cache: &mut MlpCache) {
        self.forward_first(p, x, input, batch, self.members, cache);
    }

    /// [`Mlp::forward`] of the first `k` members only (output `[k, B, out]`; TD3's actor
    /// reads `Q_1` alone); [`Mlp::backward`] then runs over the same members.
    pub fn forward_first(
        &self,
        p: &Params,
        x: &[f32],
        input: Input,
        batch: usize,
        k: usize,
        cache: &mut MlpCache,
    ) {
        let k = k.clamp(1, self.members);
        cache.prepare(self, batch, k);
        if self.parallel_members(batch, k) {
            let members = member_slices(&mut cache.outs, &self.layers, batch, k);
            members
                .into_par_iter()
                .enumerate()
                .for_each(|(e, mut outs)| self.member_forward(p, x, input, batch, e, &mut outs));
            return;
        }
        let data = p.data();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (done, rest) = cache.outs.split_at_mut(l);
            let y = &mut rest[0];
            let (i, o) = (layer.input, layer.output);
            for e in 0..k {
                let w = &data[layer.w + e * i * o..layer.w + (e + 1) * i * o];
                let b = &data[layer.b + e * o..layer.b + (e + 1) * o];
                let ye = &mut y[e * batch * o..(e + 1) * batch * o];
                let xe = if l == 0 {
                    member_input(x, input, batch, i, e)
                } else {
                    &done[l - 1][e * batch * i..(e + 1) * batch * i]
                };
                gemm(ye, xe, Op::N, w, Op::N, batch, i, o, false);
                self.activation(l, last).bias_apply(ye, b);
            }
        }
    }

    /// Whether a pass over the first `k` members at `batch` rows runs its members on
    /// rayon's threads: only when the run has more than one (`--threads`), there is more than
    /// one member, and each member's pass is long enough (`PAR_MIN_MACS`) for the hand-off to
    /// cost nothing in comparison. Members are independent, so either way gives the same
    /// numbers.
    pub fn parallel_members(&self, batch: usize, k: usize) -> bool {
        let macs: usize = self.layers.iter().map(|l| l.input * l.output).sum();
        k > 1 && batch * macs >= PAR_MIN_MACS && rayon::current_num_threads() > 1
    }

    fn activation(&self, l: usize, last: usize) -> Activation {
        if l == last {
            self.out_act
        } else {
            Activation::Relu
        }
    }

    /// The whole forward pass of member `e`, its layer outputs in `outs` (`[B, o_l]` each).
    fn member_forward(
        &self,
        p: &Params,
        x: &[f32],
        input: Input,
        batch: usize,
        e: usize,
        outs: &mut [&mut [f32]],
    ) {
        let data = p.data();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (i, o) = (layer.input, layer.output);
            let w = &data[layer.w + e * i * o..layer.w + (e + 1) * i * o];
            let b = &data[layer.b + e * o..layer.b + (e + 1) * o];
            let (done, rest) = outs.split_at_mut(l);
            let xe: &[f32] = if l == 0 {
                member_input(x, input, batch, i, e)
            } else {
                &*done[l - 1]
            };
            let ye = &mut *rest[0];
            gemm(ye, xe, Op::N, w, Op::N, batch, i, o, false);
            self.activation(l, last).bias_apply(ye, b);
        }
    }

    /// Backward pass after [`Mlp::forward`] on the same `x`, with `dL/d(output)` written into
    /// `cache.dout_mut()` (it is consumed). Adds the parameter gradients into `grads` (laid out
    /// as `p`) when given, and writes `dL/dx` into `dx` when given (`[B, in]` summed over the
    /// members for a shared input, `[E, B, in]` otherwise). Gradients nobody asked for are not
    /// computed: with `grads = None` only the chain down to `dx` runs.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        p: &Params,
        x: &[f32],
        input: Input,
        cache: &mut MlpCache,
        mut grads: Option<&mut [f32]>,
        mut dx: Option<&mut [f32]>,
    ) {
        let batch = cache.batch;
        // Members run in parallel unless their input gradients add up into one buffer.
        let summed_dx = dx.is_some() && input == Input::Shared;
        if !summed_dx && self.parallel_members(batch, cache.active) {
            self.backward_parallel(p, x, input, cache, grads, dx);
            return;
        }
        let data = p.data();
        let last = self.layers.len() - 1;
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let (i, o) = (layer.input, layer.output);
            let (lower, upper) = cache.deltas.split_at_mut(l);
            let d = &mut upper[0];
            self.activation(l, last).backward(d, &cache.outs[l]);
            for e in 0..cache.active {
                let de = &d[e * batch * o..(e + 1) * batch * o];
                let w = &data[layer.w + e * i * o..layer.w + (e + 1) * i * o];
                let xe = if l == 0 {
                    member_input(x, input, batch, i, e)
                } else {
                    &cache.outs[l - 1][e * batch * i..(e + 1) * batch * i]
                };
                if let Some(g) = grads.as_deref_mut() {
                    // Weights before biases in the buffer (registration order).
                    let (lo, hi) = g.split_at_mut(layer.b);
                    let gw = &mut lo[layer.w + e * i * o..layer.w + (e + 1) * i * o];
                    let gb = &mut hi[e * o..(e + 1) * o];
                    weight_grads(gw, gb, xe, de, batch, i, o);
                }
                if l > 0 {
                    let prev = &mut lower[l - 1][e * batch * i..(e + 1) * batch * i];
                    gemm(prev, de, Op::N, w, Op::T, batch, o, i, false);
                } else if let Some(dx) = dx.as_deref_mut() {
                    match input {
                        Input::Shared => gemm(
                            &mut dx[..batch * i],
                            de,
                            Op::N,
                            w,
                            Op::T,
                            batch,
                            o,
                            i,
                            e > 0,
                        ),
                        Input::PerMember => gemm(
                            &mut dx[e * batch * i..(e + 1) * batch * i],
                            de,
                            Op::N,
                            w,
                            Op::T,
                            batch,
                            o,
                            i,
                            false,
                        ),
                    }
                }
            }
        }
    }

    /// [`Mlp::backward`] with each member's whole pass on its own rayon task (the same
    /// operations per member as the sequential loop, so the same numbers).
    fn backward_parallel(
        &self,
        p: &Params,
        x: &[f32],
        input: Input,
        cache: &mut MlpCache,
        grads: Option<&mut [f32]>,
        dx: Option<&mut [f32]>,
    ) {
        let (batch, k) = (cache.batch, cache.active);
        let outs: Vec<Vec<&[f32]>> = (0..k)
            .map(|e| {
                self.layers
                    .iter()
                    .zip(&cache.outs)
                    .map(|(l, o)| &o[e * batch * l.output..(e + 1) * batch * l.output])
                    .collect()
            })
            .collect();
        let deltas = member_slices(&mut cache.deltas, &self.layers, batch, k);
        let grads = match grads {
            Some(g) => member_grads(g, &self.layers, self.members, k)
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..k).map(|_| None).collect::<Vec<_>>(),
        };
        let mut dxs: Vec<Option<&mut [f32]>> = match dx {
            Some(dx) => dx
                .chunks_mut(batch * self.layers[0].input)
                .take(k)
                .map(Some)
                .collect(),
            None => (0..k).map(|_| None).collect(),
        };
        dxs.resize_with(k, || None);
        let data = p.data();
        let last = self.layers.len() - 1;
        deltas
            .into_par_iter()
            .zip(outs)
            .zip(grads)
            .zip(dxs)
            .enumerate()
            .for_each(|(e, (((mut d, outs), mut g), mut dx))| {
                for l in (0..self.layers.len()).rev() {
                    let layer = self.layers[l];
                    let (i, o) = (layer.input, layer.output);
                    let (lower, upper) = d.split_at_mut(l);
                    let de = &mut *upper[0];
                    self.activation(l, last).backward(de, outs[l]);
                    let w = &data[layer.w + e * i * o..layer.w + (e + 1) * i * o];
                    let xe = if l == 0 {
                        member_input(x, input, batch, i, e)
                    } else {
                        outs[l - 1]
                    };
                    if let Some(g) = g.as_mut() {
                        let (gw, gb) = &mut g[l];
                        weight_grads(gw, gb, xe, de, batch, i, o);
                    }
                    if l > 0 {
                        gemm(lower[l - 1], de, Op::N, w, Op::T, batch, o, i, false);
                    } else if let Some(dx) = dx.as_deref_mut() {
                        gemm(dx, de, Op::N, w, Op::T, batch, o, i, false);
                    }
                }
            });
    }
}

/// Member passes shorter than this many multiply-adds stay on one thread.
const PAR_MIN_MACS: usize = 1 << 24;

/// Member `e`'s slice of the input.
fn member_input(x: &[f32], input: Input, batch: usize, i: usize, e: usize) -> &[f32] {
    match input {
        Input::Shared => &x[..batch * i],
        Input::PerMember => &x[e * batch * i..(e + 1) * batch * i],
    }
}

/// `dW += x^T d`, `db += sum_rows d` of one member's layer.
fn weight_grads(
    gw: &mut [f32],
    gb: &mut [f32],
    xe: &[f32],
    de: &[f32],
    batch: usize,
    i: usize,
    o: usize,
) {
    gemm(gw, xe, Op::T, de, Op::N, i, batch, o, true);
    simd(
        #[inline(always)]
        || {
            for row in de.chunks_exact(o) {
                for (gb, &r) in gb.iter_mut().zip(row) {
                    *gb += r;
                }
            }
        },
    );
}

/// Each layer buffer `[E, B, o_l]` cut into its first `k` members' slices: `out[e][l]`.
fn member_slices<'a>(
    bufs: &'a mut [Vec<f32>],
    layers: &[Layer],
    batch: usize,
    k: usize,
) -> Vec<Vec<&'a mut [f32]>> {
    let mut per: Vec<Vec<&mut [f32]>> = (0..k).map(|_| Vec::with_capacity(layers.len())).collect();
    for (buf, layer) in bufs.iter_mut().zip(layers) {
        let n = batch * layer.output;
        for (e, chunk) in buf[..k * n].chunks_mut(n).enumerate() {
            per[e].push(chunk);
        }
    }
    per
}

/// The gradient buffer cut into each of the first `k` members' `(dW_l, db_l)` per layer.
/// Layers are registered in order, weight before bias, so the regions ascend.
fn member_grads<'a>(
    g: &'a mut [f32],
    layers: &[Layer],
    members: usize,
    k: usize,
) -> Vec<Vec<(&'a mut [f32], &'a mut [f32])>> {
    let mut per: Vec<Vec<(&mut [f32], &mut [f32])>> =
        (0..k).map(|_| Vec::with_capacity(layers.len())).collect();
    let mut rest = g;
    let mut base = 0;
    for layer in layers {
        let (wl, bl) = (layer.input * layer.output, layer.output);
        let (_, tail) = rest.split_at_mut(layer.w - base);
        let (wreg, tail) = tail.split_at_mut(members * wl);
        let (_, tail) = tail.split_at_mut(layer.b - layer.w - members * wl);
        let (breg, tail) = tail.split_at_mut(members * bl);
        rest = tail;
        base = layer.b + members * bl;
        for (e, (gw, gb)) in wreg
            .chunks_mut(wl)
            .zip(breg.chunks_mut(bl))
            .take(k)
            .enumerate()
        {
            per[e].push((gw, gb));
        }
    }
    per
}
