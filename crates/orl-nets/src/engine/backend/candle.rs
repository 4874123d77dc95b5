//! The candle backend: every buffer a candle [`Tensor`] on one of candle's devices (CPU here;
//! CUDA and Metal behind the `cuda` / `metal` features).
//!
//! A network's parameters are one flat 1-D tensor, as [`Params`] is one flat buffer: weights
//! and biases are `narrow` + `reshape` views of it (no copies), and the gradient is one flat
//! tensor of the same layout that the backward pass adds into segment by segment. Adam then
//! runs over the whole flat tensor in a dozen tensor ops, whatever the network.
//!
//! The passes are the engine's equations (`engine/mlp.rs`) written with tensor ops:
//!
//! ```text
//! forward  (member e, layer l):  h_l = act_l(h_{l-1} W_l + b_l)
//! backward:                      d_l = g_l * act_l'(h_l);  dW_l += h_{l-1}^T d_l;
//!                                db_l += sum_rows d_l;     g_{l-1} = d_l W_l^T
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::{Add, Div, Mul, Sub};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::adam::{AdamConfig, CosineSchedule};
use crate::engine::adam::{FlatAdam, clip_scale};
use crate::engine::backend::{Backend, Map1, Map2, Map3, Scalar};
use crate::engine::mlp::{Activation, Input, Mlp};
use crate::engine::params::{Params, Segment};
use crate::error::{NetError, Result};
use crate::state::{NetState, OptimState};

/// Candle tensors on `device`.
#[derive(Debug, Clone)]
pub struct Candle {
    device: Device,
}

impl Candle {
    /// Tensors on `device`.
    pub fn new(device: Device) -> Self {
        Self { device }
    }
    /// Tensors on the CPU (the tests run the algorithms on this).
    pub fn cpu() -> Self {
        Self::new(Device::Cpu)
    }
    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// A whole tensor as a [`Scalar`]: each arithmetic operation of a kernel is one candle op. An
/// error is kept and passed on, so kernels read as plain arithmetic; [`Expr::tensor`] reports it.
#[derive(Debug, Clone)]
pub struct Expr(std::result::Result<Tensor, Arc<candle_core::Error>>);

impl Expr {
    /// The tensor, or the first error of the expression.
    pub fn tensor(self) -> Result<Tensor> {
        self.0
            .map_err(|e| NetError::Candle(candle_core::Error::Msg(e.to_string())))
    }
    fn of(t: &Tensor) -> Self {
        Self(Ok(t.clone()))
    }
    fn map(self, f: impl FnOnce(Tensor) -> candle_core::Result<Tensor>) -> Self {
        Self(self.0.and_then(|t| f(t).map_err(Arc::new)))
    }
    fn zip(
        self,
        other: Self,
        f: impl FnOnce(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    ) -> Self {
        match (self.0, other.0) {
            (Ok(a), Ok(b)) => Self(f(&a, &b).map_err(Arc::new)),
            (Err(e), _) | (_, Err(e)) => Self(Err(e)),
        }
    }
}

/// `t` read row-major as `[len / cols, cols]` (the CPU backend's view of a buffer: a `[B k, 1]`
/// output summed over groups of `k` rows, say).
fn as_cols(t: &Tensor, cols: usize) -> Result<Tensor> {
    let n = t.elem_count();
    let cols = cols.max(1);
    if t.dims2().is_ok_and(|(_, c)| c == cols) {
        Ok(t.clone())
    } else if n.is_multiple_of(cols) {
        Ok(t.reshape((n / cols, cols))?)
    } else {
        Err(NetError::Config(format!(
            "a buffer of {n} values cannot be read as rows of {cols}"
        )))
    }
}

impl Add for Expr {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a.broadcast_add(b))
    }
}
impl Sub for Expr {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a.broadcast_sub(b))
    }
}
impl Mul for Expr {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a.broadcast_mul(b))
    }
}

impl Div for Expr {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a.broadcast_div(b))
    }
}

impl Scalar for Expr {
    fn scale(self, k: f32) -> Self {
        self.map(|t| t.affine(f64::from(k), 0.0))
    }
    fn shift(self, k: f32) -> Self {
        self.map(|t| t.affine(1.0, f64::from(k)))
    }
    fn tanh(self) -> Self {
        self.map(|t| t.tanh())
    }
    fn exp(self) -> Self {
        self.map(|t| t.exp())
    }
    fn max(self, other: Self) -> Self {
        self.zip(other, |a, b| a.broadcast_maximum(b))
    }
    fn min(self, other: Self) -> Self {
        self.zip(other, |a, b| a.broadcast_minimum(b))
    }
    fn div_by(self, k: f32) -> Self {
        self.map(|t| t / f64::from(k))
    }
    fn abs(self) -> Self {
        self.map(|t| t.abs())
    }
    fn clamp(self, lo: f32, hi: f32) -> Self {
        self.map(|t| t.clamp(lo, hi))
    }
    fn ln(self) -> Self {
        self.map(|t| t.log())
    }
    fn softplus(self) -> Self {
        // max(x, 0) + ln(1 + exp(-|x|)); candle has no log1p, and ln(1 + e) differs from it by
        // less than e's f32 rounding, far below the parity tolerance.
        self.map(|t| {
            let neg_abs = t.abs()?.neg()?;
            t.relu()? + neg_abs.exp()?.affine(1.0, 1.0)?.log()?
        })
    }
    fn within(self, lo: f32, hi: f32) -> Self {
        self.map(|t| {
            let gt = t.gt(f64::from(lo))?.to_dtype(DType::F32)?;
            let lt = t.lt(f64::from(hi))?.to_dtype(DType::F32)?;
            gt * lt
        })
    }
    fn recip(self) -> Self {
        self.map(|t| t.recip())
    }
    fn inside(self, lo: f32, hi: f32) -> Self {
        self.map(|t| {
            let ge = t.ge(f64::from(lo))?.to_dtype(DType::F32)?;
            let le = t.le(f64::from(hi))?.to_dtype(DType::F32)?;
            ge * le
        })
    }
}

/// A network's parameters on a candle device: one flat tensor, and the host [`Params`] it came
/// from for the names, shapes and offsets (its values are not kept up to date; see
/// [`Backend::host_params`]).
#[derive(Debug, Clone)]
pub struct CandleParams {
    layout: Params,
    flat: Tensor,
}

impl CandleParams {
    /// Segment `s` of `flat` as a tensor of its checkpoint shape.
    fn view(flat: &Tensor, s: &Segment) -> Result<Tensor> {
        Ok(flat
            .narrow(0, s.offset, s.len)?
            .reshape(s.shape.as_slice())?)
    }
    fn host(&self) -> Result<Params> {
        let mut p = self.layout.clone();
        let v: Vec<f32> = self.flat.to_device(&Device::Cpu)?.to_vec1()?;
        p.data_mut().copy_from_slice(&v);
        Ok(p)
    }
}

impl NetState for CandleParams {
    fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.layout
            .segments()
            .iter()
            .filter_map(|s| {
                let t = Self::view(&self.flat, s)
                    .ok()?
                    .to_device(&Device::Cpu)
                    .ok()?;
                Some((format!("{prefix}{}", s.name), t))
            })
            .collect()
    }
    fn load_named(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        self.layout.load_named(tensors, prefix)?;
        self.flat = Tensor::from_slice(self.layout.data(), self.layout.len(), self.flat.device())?;
        Ok(())
    }
}

/// Adam over a [`CandleParams`]' flat tensor: the moments and the gradient are flat tensors
/// of the same layout. The step counter, learning rate schedule and checkpoint layout are a
/// host [`FlatAdam`]'s (its own moment buffers stay unused).
#[derive(Debug, Clone)]
pub struct CandleAdam {
    host: FlatAdam,
    m: Tensor,
    v: Tensor,
    grad: Option<Tensor>,
}

impl OptimState for CandleAdam {
    fn steps(&self) -> usize {
        self.host.steps()
    }
    fn named_state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in self.host.segments() {
            for (which, buf) in [("m", &self.m), ("v", &self.v)] {
                if let Some(t) = CandleParams::view(buf, s)
                    .ok()
                    .and_then(|t| t.to_device(&Device::Cpu).ok())
                {
                    out.push((format!("{prefix}{which}.{}", s.name), t));
                }
            }
        }
        out
    }
    fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        t: usize,
    ) -> Result<()> {
        self.host.load_state(tensors, prefix, t)?;
        let (m, v) = self.host.moments();
        let dev = self.m.device().clone();
        self.m = Tensor::from_slice(m, m.len(), &dev)?;
        self.v = Tensor::from_slice(v, v.len(), &dev)?;
        Ok(())
    }
}

/// What a forward pass keeps: each layer's output per member, and the whole output.
#[derive(Debug, Clone, Default)]
pub struct CandleMlpCache {
    batch: usize,
    /// `outs[l][e]`: layer `l`'s output of member `e`, `[B, o_l]`.
    outs: Vec<Vec<Tensor>>,
    out: Option<Tensor>,
}

fn tensor(b: &Option<Tensor>) -> Result<&Tensor> {
    b.as_ref().ok_or_else(|| {
        NetError::Config("candle backend: a buffer was read before it was written".into())
    })
}

/// Member `e`'s rows of a network's input.
fn member_input(x: &Tensor, input: Input, batch: usize, e: usize) -> Result<Tensor> {
    Ok(match input {
        Input::Shared => x.narrow(0, 0, batch)?,
        Input::PerMember => x.narrow(0, e * batch, batch)?,
    })
}

/// `flat[off..off + n] += t` (in place: `flat` is a gradient buffer nothing else holds).
fn add_at(flat: &Tensor, off: usize, t: &Tensor) -> Result<()> {
    let t = t.flatten_all()?;
    let sum = (flat.narrow(0, off, t.elem_count())? + t)?;
    flat.slice_set(&sum, 0, off)?;
    Ok(())
}

impl Backend for Candle {
    type Buf = Option<Tensor>;
    type Params = CandleParams;
    type Adam = CandleAdam;
    type Cache = CandleMlpCache;

    fn name(&self) -> &'static str {
        "candle"
    }
    fn place(&self, host: &Params) -> Result<CandleParams> {
        Ok(CandleParams {
            flat: Tensor::from_slice(host.data(), host.len(), &self.device)?,
            layout: host.clone(),
        })
    }
    fn host_params<'a>(&self, p: &'a CandleParams) -> Result<Cow<'a, Params>> {
        Ok(Cow::Owned(p.host()?))
    }
    fn upload(&self, host: &[f32], cols: usize, out: &mut Option<Tensor>) -> Result<()> {
        let cols = cols.max(1);
        *out = Some(Tensor::from_slice(
            host,
            (host.len() / cols, cols),
            &self.device,
        )?);
        Ok(())
    }
    fn download(&self, b: &Option<Tensor>, out: &mut Vec<f32>) -> Result<()> {
        *out = tensor(b)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        Ok(())
    }
    fn zeros_for(&self, p: &CandleParams, out: &mut Option<Tensor>) -> Result<()> {
        *out = Some(Tensor::zeros(p.layout.len(), DType::F32, &self.device)?);
        Ok(())
    }

    fn param_row(
        &self,
        p: &CandleParams,
        offset: usize,
        len: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        *out = Some(p.flat.narrow(0, offset, len)?.reshape((1, len))?);
        Ok(())
    }
    fn add_to_grad(
        &self,
        grad: &mut Option<Tensor>,
        offset: usize,
        x: &Option<Tensor>,
    ) -> Result<()> {
        add_at(tensor(grad)?, offset, tensor(x)?)
    }

    fn adam(
        &self,
        p: &CandleParams,
        cfg: AdamConfig,
        schedule: Option<CosineSchedule>,
    ) -> Result<CandleAdam> {
        let n = p.layout.len();
        let host = FlatAdam::new(&p.layout, cfg);
        Ok(CandleAdam {
            host: match schedule {
                Some(s) => host.with_schedule(s),
                None => host,
            },
            m: Tensor::zeros(n, DType::F32, &self.device)?,
            v: Tensor::zeros(n, DType::F32, &self.device)?,
            grad: None,
        })
    }
    fn lr(&self, opt: &CandleAdam) -> f64 {
        opt.host.lr()
    }
    fn zero_grad<'a>(&self, opt: &'a mut CandleAdam) -> Result<&'a mut Option<Tensor>> {
        opt.grad = Some(opt.m.zeros_like()?);
        Ok(&mut opt.grad)
    }
    fn grad<'a>(&self, opt: &'a CandleAdam) -> &'a Option<Tensor> {
        &opt.grad
    }
    /// The engine's Adam ([`FlatAdam::step`]) as tensor ops, in the same order:
    /// `g' = c g` (clipping), `m = b1 m + (1 - b1) g'`, `v = b2 v + (1 - b2) g'^2`,
    /// `p = p - (lr / bc1) m / (sqrt(v / bc2) + eps) - lr wd p`.
    fn adam_step(&self, opt: &mut CandleAdam, p: &mut CandleParams) -> Result<Option<f64>> {
        let g = tensor(&opt.grad)?.flatten_all()?;
        let (lr, t) = opt.host.begin_step();
        let cfg = opt.host.config().clone();
        let (scale, norm) = match cfg.max_grad_norm {
            Some(max) => {
                let norm = f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt();
                (clip_scale(norm, max)?, Some(norm))
            }
            None => (1.0, None),
        };
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        let g = g.affine(f64::from(scale as f32), 0.0)?;
        opt.m = (opt.m.affine(f64::from(b1 as f32), 0.0)?
            + g.affine(f64::from((1.0 - b1) as f32), 0.0)?)?;
        opt.v = (opt.v.affine(f64::from(b2 as f32), 0.0)?
            + g.sqr()?.affine(f64::from((1.0 - b2) as f32), 0.0)?)?;
        let denom = opt
            .v
            .affine(f64::from((1.0 / bc2) as f32), 0.0)?
            .sqrt()?
            .affine(1.0, f64::from(cfg.eps as f32))?;
        let update = (opt.m.affine(f64::from((lr / bc1) as f32), 0.0)? / denom)?;
        let decay = (lr * cfg.weight_decay) as f32;
        p.flat = if decay == 0.0 {
            (&p.flat - update)?
        } else {
            ((&p.flat - update)? - p.flat.affine(f64::from(decay), 0.0)?)?
        };
        Ok(norm)
    }

    fn soft_update(&self, target: &mut CandleParams, src: &CandleParams, tau: f64) -> Result<()> {
        if target.layout.segments() != src.layout.segments() {
            return Err(NetError::Config(
                "parameter buffers of different networks cannot be copied".into(),
            ));
        }
        target.flat = if tau >= 1.0 {
            src.flat.clone()
        } else {
            (src.flat.affine(tau as f32 as f64, 0.0)?
                + target.flat.affine((1.0 - tau) as f32 as f64, 0.0)?)?
        };
        Ok(())
    }

    fn mlp_forward_first(
        &self,
        mlp: &Mlp,
        p: &CandleParams,
        x: &Option<Tensor>,
        input: Input,
        batch: usize,
        k: usize,
        cache: &mut CandleMlpCache,
    ) -> Result<()> {
        let x = tensor(x)?;
        let members = k.clamp(1, mlp.members());
        cache.batch = batch;
        cache.outs.clear();
        for l in 0..mlp.depth() {
            let (w_off, b_off, i, o) = mlp.layer_layout(l);
            let mut ys = Vec::with_capacity(members);
            for e in 0..members {
                let w = p
                    .flat
                    .narrow(0, w_off + e * i * o, i * o)?
                    .reshape((i, o))?;
                let b = p.flat.narrow(0, b_off + e * o, o)?.reshape((1, o))?;
                let xe = if l == 0 {
                    member_input(x, input, batch, e)?
                } else {
                    cache.outs[l - 1][e].clone()
                };
                let y = xe.matmul(&w)?.broadcast_add(&b)?;
                ys.push(match mlp.layer_activation(l) {
                    Activation::Identity => y,
                    Activation::Relu => y.relu()?,
                    Activation::Tanh => y.tanh()?,
                });
            }
            cache.outs.push(ys);
        }
        let last = cache.outs.last().map(Vec::as_slice).unwrap_or_default();
        cache.out = Some(Tensor::cat(last, 0)?);
        Ok(())
    }
    fn mlp_output<'a>(&self, cache: &'a CandleMlpCache) -> &'a Option<Tensor> {
        &cache.out
    }
    fn mlp_backward(
        &self,
        mlp: &Mlp,
        p: &CandleParams,
        x: &Option<Tensor>,
        input: Input,
        cache: &mut CandleMlpCache,
        dout: &Option<Tensor>,
        grads: Option<&mut Option<Tensor>>,
        dx: Option<&mut Option<Tensor>>,
    ) -> Result<()> {
        let (x, dout, batch) = (tensor(x)?, tensor(dout)?, cache.batch);
        // The members the forward pass evaluated.
        let members = cache.outs.first().map_or(0, Vec::len);
        let grads = match grads {
            Some(g) => Some(tensor(g)?.clone()),
            None => None,
        };
        // g[e]: dL/d(output of the layer above), member e.
        let mut g: Vec<Tensor> = (0..members)
            .map(|e| dout.narrow(0, e * batch, batch))
            .collect::<candle_core::Result<_>>()?;
        let mut dxs = Vec::new();
        for l in (0..mlp.depth()).rev() {
            let (w_off, b_off, i, o) = mlp.layer_layout(l);
            for e in 0..members {
                let y = &cache.outs[l][e];
                let d = match mlp.layer_activation(l) {
                    Activation::Identity => g[e].clone(),
                    Activation::Relu => (&g[e] * y.gt(0.0)?.to_dtype(DType::F32)?)?,
                    Activation::Tanh => (&g[e] * y.sqr()?.affine(-1.0, 1.0)?)?,
                };
                let xe = if l == 0 {
                    member_input(x, input, batch, e)?
                } else {
                    cache.outs[l - 1][e].clone()
                };
                if let Some(gr) = &grads {
                    add_at(gr, w_off + e * i * o, &xe.t()?.matmul(&d)?)?;
                    add_at(gr, b_off + e * o, &d.sum_keepdim(0)?)?;
                }
                let w = p
                    .flat
                    .narrow(0, w_off + e * i * o, i * o)?
                    .reshape((i, o))?;
                if l > 0 || dx.is_some() {
                    let prev = d.matmul(&w.t()?)?;
                    if l > 0 {
                        g[e] = prev;
                    } else {
                        dxs.push(prev);
                    }
                }
            }
        }
        if let Some(dx) = dx {
            *dx = Some(match input {
                Input::Shared => {
                    let mut sum = dxs[0].clone();
                    for t in &dxs[1..] {
                        sum = (sum + t)?;
                    }
                    sum
                }
                Input::PerMember => Tensor::cat(&dxs, 0)?,
            });
        }
        Ok(())
    }

    fn map1<K: Map1>(&self, k: &K, x: &Option<Tensor>, out: &mut Option<Tensor>) -> Result<()> {
        *out = Some(k.apply(Expr::of(tensor(x)?)).tensor()?);
        Ok(())
    }
    fn map2<K: Map2>(
        &self,
        k: &K,
        a: &Option<Tensor>,
        b: &Option<Tensor>,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        *out = Some(
            k.apply(Expr::of(tensor(a)?), Expr::of(tensor(b)?))
                .tensor()?,
        );
        Ok(())
    }
    fn map3<K: Map3>(
        &self,
        k: &K,
        a: &Option<Tensor>,
        b: &Option<Tensor>,
        c: &Option<Tensor>,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        *out = Some(
            k.apply(
                Expr::of(tensor(a)?),
                Expr::of(tensor(b)?),
                Expr::of(tensor(c)?),
            )
            .tensor()?,
        );
        Ok(())
    }
    fn map1_sum<K: Map1>(&self, k: &K, x: &Option<Tensor>) -> Result<f64> {
        let t = k.apply(Expr::of(tensor(x)?)).tensor()?;
        Ok(f64::from(t.sum_all()?.to_scalar::<f32>()?))
    }
    fn map2_sum<K: Map2>(&self, k: &K, a: &Option<Tensor>, b: &Option<Tensor>) -> Result<f64> {
        let t = k
            .apply(Expr::of(tensor(a)?), Expr::of(tensor(b)?))
            .tensor()?;
        Ok(f64::from(t.sum_all()?.to_scalar::<f32>()?))
    }
    fn dot(&self, a: &Option<Tensor>, b: &Option<Tensor>) -> Result<f64> {
        let t = (tensor(a)? * tensor(b)?)?;
        Ok(f64::from(t.sum_all()?.to_scalar::<f32>()?))
    }
    fn fill(&self, like: &Option<Tensor>, v: f32, out: &mut Option<Tensor>) -> Result<()> {
        let like = tensor(like)?;
        *out = Some(Tensor::full(v, like.shape(), like.device())?);
        Ok(())
    }

    fn concat_cols(
        &self,
        a: &Option<Tensor>,
        _ca: usize,
        b: &Option<Tensor>,
        _cb: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        *out = Some(Tensor::cat(&[tensor(a)?, tensor(b)?], 1)?);
        Ok(())
    }
    fn cols(
        &self,
        x: &Option<Tensor>,
        _cols: usize,
        from: usize,
        n: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        *out = Some(tensor(x)?.narrow(1, from, n)?);
        Ok(())
    }
    fn rows(
        &self,
        x: &Option<Tensor>,
        _cols: usize,
        from: usize,
        n: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        *out = Some(tensor(x)?.narrow(0, from, n)?);
        Ok(())
    }
    fn sum_cols(&self, x: &Option<Tensor>, cols: usize, out: &mut Option<Tensor>) -> Result<()> {
        *out = Some(as_cols(tensor(x)?, cols)?.sum_keepdim(1)?);
        Ok(())
    }
    fn max_cols(&self, x: &Option<Tensor>, cols: usize, out: &mut Option<Tensor>) -> Result<()> {
        *out = Some(as_cols(tensor(x)?, cols)?.max_keepdim(1)?);
        Ok(())
    }
    fn sum_rows(&self, x: &Option<Tensor>, _cols: usize, out: &mut Option<Tensor>) -> Result<()> {
        *out = Some(tensor(x)?.sum_keepdim(0)?);
        Ok(())
    }
    fn argmax_onehot(
        &self,
        x: &Option<Tensor>,
        cols: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        let x = tensor(x)?;
        let idx = x.argmax_keepdim(1)?;
        let ks = Tensor::arange(0u32, cols as u32, x.device())?.reshape((1, cols))?;
        *out = Some(idx.broadcast_eq(&ks)?.to_dtype(DType::F32)?);
        Ok(())
    }
    fn tile_cols(&self, x: &Option<Tensor>, k: usize, out: &mut Option<Tensor>) -> Result<()> {
        let x = tensor(x)?;
        *out = Some(x.repeat((1, k))?);
        Ok(())
    }
    fn concat_rows(&self, parts: &[&Option<Tensor>], out: &mut Option<Tensor>) -> Result<()> {
        let ts = parts
            .iter()
            .map(|p| tensor(p))
            .collect::<Result<Vec<&Tensor>>>()?;
        *out = Some(Tensor::cat(&ts, 0)?);
        Ok(())
    }
    fn repeat_rows(
        &self,
        x: &Option<Tensor>,
        cols: usize,
        n: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        let x = tensor(x)?;
        let r = x.elem_count() / cols.max(1);
        *out = Some(
            x.reshape((r, 1, cols))?
                .broadcast_as((r, n, cols))?
                .contiguous()?
                .reshape((r * n, cols))?,
        );
        Ok(())
    }
    fn transpose_blocks(
        &self,
        x: &Option<Tensor>,
        a: usize,
        b: usize,
        n: usize,
        out_cols: usize,
        out: &mut Option<Tensor>,
    ) -> Result<()> {
        let t = tensor(x)?
            .reshape((a, b, n))?
            .transpose(0, 1)?
            .contiguous()?;
        *out = Some(t.reshape((a * b * n / out_cols.max(1), out_cols.max(1)))?);
        Ok(())
    }
    fn tile_rows(&self, x: &Option<Tensor>, k: usize, out: &mut Option<Tensor>) -> Result<()> {
        let x = tensor(x)?;
        *out = Some(Tensor::cat(&vec![x; k], 0)?);
        Ok(())
    }
}
