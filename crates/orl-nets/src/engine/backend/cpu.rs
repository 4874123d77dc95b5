//! The CPU backend: the engine itself (flat host buffers, faer GEMM, fused loops, reused
//! caches). Every method calls the engine's own pass, so an algorithm written against
//! [`Backend`] computes on this backend exactly what the engine computes, and allocates nothing
//! once its buffers have seen the batch size.

use std::borrow::Cow;

use crate::adam::AdamConfig;
use crate::engine::adam::FlatAdam;
use crate::engine::backend::{Backend, Map1, Map2};
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

    fn adam(&self, p: &Params, cfg: AdamConfig) -> Result<FlatAdam> {
        Ok(FlatAdam::new(p, cfg))
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

    fn mlp_forward(
        &self,
        mlp: &Mlp,
        p: &Params,
        x: &Vec<f32>,
        input: Input,
        batch: usize,
        cache: &mut MlpCache,
    ) -> Result<()> {
        mlp.forward(p, x, input, batch, cache);
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
                Input::PerMember => mlp.members() * cache.batch(),
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
    fn map2_sum<K: Map2>(&self, k: &K, a: &Vec<f32>, b: &Vec<f32>) -> Result<f64> {
        Ok(a.iter()
            .zip(b)
            .map(|(&a, &b)| f64::from(k.apply(a, b)))
            .sum())
    }
}
