//! The CPU backend: the engine itself (flat host buffers, faer GEMM, fused loops, reused
//! caches). Every method calls the engine's own pass, so an algorithm written against
//! [`Backend`] computes on this backend exactly what the engine computes, and allocates nothing
//! once its buffers have seen the batch size.

use std::borrow::Cow;

use crate::adam::{AdamConfig, CosineSchedule};
use crate::engine::adam::FlatAdam;
use crate::engine::backend::{Backend, Map1, Map2, Map3};
use crate::engine::mlp::{Input, Mlp, MlpCache};
use crate::engine::params::Params;
use crate::engine::simd;
use crate::error::Result;

/// The engine's CPU backend (one thread per run unless `--threads` says otherwise).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu;

impl Backend for Cpu {
    type Buf = Vec<f32>;
    type Params = Params;
    type Adam = FlatAdam;
    type Cache = MlpCache;

    fn name(&self) -> &'static str {
        "cpu"
    }
    fn place(&self, host: &Params) -> Result<Params> {
        Ok(host.clone())
    }
    fn host_params<'a>(&self, p: &'a Params) -> Result<Cow<'a, Params>> {
        Ok(Cow::Borrowed(p))
    }
    fn upload(&self, host: &[f32], _cols: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend_from_slice(host);
        Ok(())
    }
    fn download(&self, b: &Vec<f32>, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend_from_slice(b);
        Ok(())
    }
    fn zeros_for(&self, p: &Params, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.resize(p.len(), 0.0);
        Ok(())
    }

    fn param_row(&self, p: &Params, offset: usize, len: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend_from_slice(&p.data()[offset..offset + len]);
        Ok(())
    }
    fn add_to_grad(&self, grad: &mut Vec<f32>, offset: usize, x: &Vec<f32>) -> Result<()> {
        for (g, &v) in grad[offset..offset + x.len()].iter_mut().zip(x) {
            *g += v;
        }
        Ok(())
    }

    fn adam(
        &self,
        p: &Params,
        cfg: AdamConfig,
        schedule: Option<CosineSchedule>,
    ) -> Result<FlatAdam> {
        let opt = FlatAdam::new(p, cfg);
        Ok(match schedule {
            Some(s) => opt.with_schedule(s),
            None => opt,
        })
    }
    fn lr(&self, opt: &FlatAdam) -> f64 {
        opt.lr()
    }
    fn zero_grad<'a>(&self, opt: &'a mut FlatAdam) -> Result<&'a mut Vec<f32>> {
        opt.zero_grad();
        Ok(opt.grad_buf_mut())
    }
    fn grad<'a>(&self, opt: &'a FlatAdam) -> &'a Vec<f32> {
        opt.grad_buf()
    }
    fn adam_step(&self, opt: &mut FlatAdam, p: &mut Params) -> Result<Option<f64>> {
        opt.step(p)
    }

    fn soft_update(&self, target: &mut Params, src: &Params, tau: f64) -> Result<()> {
        target.soft_update_from(src, tau)
    }

    fn mlp_forward_first(
        &self,
        mlp: &Mlp,
        p: &Params,
        x: &Vec<f32>,
        input: Input,
        batch: usize,
        k: usize,
        cache: &mut MlpCache,
    ) -> Result<()> {
        mlp.forward_first(p, x, input, batch, k, cache);
        Ok(())
    }
    fn mlp_output<'a>(&self, cache: &'a MlpCache) -> &'a Vec<f32> {
        cache.output_buf()
    }
    fn mlp_backward(
        &self,
        mlp: &Mlp,
        p: &Params,
        x: &Vec<f32>,
        input: Input,
        cache: &mut MlpCache,
        dout: &Vec<f32>,
        grads: Option<&mut Vec<f32>>,
        dx: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        cache.dout_mut().copy_from_slice(dout);
        let dx = dx.map(|dx| {
            let rows = match input {
                Input::Shared => cache.batch(),
                Input::PerMember => cache.active() * cache.batch(),
            };
            dx.resize(rows * mlp.input_dim(), 0.0);
            dx.as_mut_slice()
        });
        mlp.backward(p, x, input, cache, grads.map(Vec::as_mut_slice), dx);
        Ok(())
    }

    fn map1<K: Map1>(&self, k: &K, x: &Vec<f32>, out: &mut Vec<f32>) -> Result<()> {
        out.resize(x.len(), 0.0);
        simd(
            #[inline(always)]
            || {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = k.apply(x);
                }
            },
        );
        Ok(())
    }
    fn map2<K: Map2>(&self, k: &K, a: &Vec<f32>, b: &Vec<f32>, out: &mut Vec<f32>) -> Result<()> {
        out.resize(a.len(), 0.0);
        simd(
            #[inline(always)]
            || {
                for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                    *o = k.apply(a, b);
                }
            },
        );
        Ok(())
    }
    fn map3<K: Map3>(
        &self,
        k: &K,
        a: &Vec<f32>,
        b: &Vec<f32>,
        c: &Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        out.resize(a.len(), 0.0);
        simd(
            #[inline(always)]
            || {
                for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
                    *o = k.apply(a, b, c);
                }
            },
        );
        Ok(())
    }
    fn map1_sum<K: Map1>(&self, k: &K, x: &Vec<f32>) -> Result<f64> {
        Ok(x.iter().map(|&x| f64::from(k.apply(x))).sum())
    }
    fn map2_sum<K: Map2>(&self, k: &K, a: &Vec<f32>, b: &Vec<f32>) -> Result<f64> {
        Ok(a.iter()
            .zip(b)
            .map(|(&a, &b)| f64::from(k.apply(a, b)))
            .sum())
    }
    fn dot(&self, a: &Vec<f32>, b: &Vec<f32>) -> Result<f64> {
        Ok(a.iter()
            .zip(b)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum())
    }
    fn fill(&self, like: &Vec<f32>, v: f32, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.resize(like.len(), v);
        Ok(())
    }

    fn concat_cols(
        &self,
        a: &Vec<f32>,
        ca: usize,
        b: &Vec<f32>,
        cb: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let rows = a.len() / ca.max(1);
        out.resize(rows * (ca + cb), 0.0);
        for ((row, a), b) in out
            .chunks_exact_mut(ca + cb)
            .zip(a.chunks_exact(ca))
            .zip(b.chunks_exact(cb))
        {
            row[..ca].copy_from_slice(a);
            row[ca..].copy_from_slice(b);
        }
        Ok(())
    }
    fn cols(
        &self,
        x: &Vec<f32>,
        cols: usize,
        from: usize,
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let rows = x.len() / cols.max(1);
        out.resize(rows * n, 0.0);
        for (o, row) in out.chunks_exact_mut(n).zip(x.chunks_exact(cols)) {
            o.copy_from_slice(&row[from..from + n]);
        }
        Ok(())
    }
    fn rows(
        &self,
        x: &Vec<f32>,
        cols: usize,
        from: usize,
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        out.clear();
        out.extend_from_slice(&x[from * cols..(from + n) * cols]);
        Ok(())
    }
    fn sum_cols(&self, x: &Vec<f32>, cols: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend(x.chunks_exact(cols.max(1)).map(|row| {
            let mut acc = 0.0f32;
            for &v in row {
                acc += v;
            }
            acc
        }));
        Ok(())
    }
    fn max_cols(&self, x: &Vec<f32>, cols: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend(
            x.chunks_exact(cols.max(1))
                .map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max)),
        );
        Ok(())
    }
    fn sum_rows(&self, x: &Vec<f32>, cols: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.resize(cols, 0.0);
        for row in x.chunks_exact(cols.max(1)) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        Ok(())
    }
    fn argmax_onehot(&self, x: &Vec<f32>, cols: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.resize(x.len(), 0.0);
        let cols = cols.max(1);
        for (o, row) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            o[crate::engine::argmax(row) as usize] = 1.0;
        }
        Ok(())
    }
    fn tile_cols(&self, x: &Vec<f32>, k: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        for &v in x {
            out.extend(std::iter::repeat_n(v, k));
        }
        Ok(())
    }
    fn concat_rows(&self, parts: &[&Vec<f32>], out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        for p in parts {
            out.extend_from_slice(p);
        }
        Ok(())
    }
    fn repeat_rows(&self, x: &Vec<f32>, cols: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        for row in x.chunks_exact(cols.max(1)) {
            for _ in 0..n {
                out.extend_from_slice(row);
            }
        }
        Ok(())
    }
    fn transpose_blocks(
        &self,
        x: &Vec<f32>,
        a: usize,
        b: usize,
        n: usize,
        _out_cols: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        out.clear();
        for j in 0..b {
            for i in 0..a {
                let at = (i * b + j) * n;
                out.extend_from_slice(&x[at..at + n]);
            }
        }
        Ok(())
    }
    fn tile_rows(&self, x: &Vec<f32>, k: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        for _ in 0..k {
            out.extend_from_slice(x);
        }
        Ok(())
    }
}
