//! BCQ's conditional VAE on the engine (the layout and names of [`crate::Vae`]:
//! `encoder.<l>.*`, `mean.*`, `log_std.*`, `decoder.<l>.*`).
//!
//! ```text
//! h = relu(E([s | a]))   mu = W_mu h + b   l = clamp(W_l h + b, -4, 15)   sigma = e^l
//! z = mu + sigma eps     D = m tanh(f([s | z]))
//! L = mean_(B, A) (D - a)^2 + 0.5 mean_(B, latent) -0.5 (1 + 2 l - mu^2 - sigma^2)
//! dL/dD  = 2 (D - a) / (B A)                  -> decoder backward -> dL/dz (the z columns)
//! dL/dmu = dL/dz + 0.5 mu / (B latent)
//! dL/dl  = (dL/dz sigma eps + 0.5 (sigma^2 - 1) / (B latent)) 1(-4 <= l <= 15)
//! ```

use crate::engine::backend::{Backend, Map1, Map2, Map3, Scalar, Scale, SquaredError};
use crate::engine::mlp::{Activation, Input, Mlp, MlpCache};
use crate::engine::params::{Params, ParamsBuilder};
use crate::error::Result;

/// The conditional VAE.
#[derive(Debug, Clone)]
pub struct VaeNet {
    encoder: Mlp,
    mean: Mlp,
    log_std: Mlp,
    decoder: Mlp,
    obs_dim: usize,
    act_dim: usize,
    latent: usize,
    max_action: f32,
}

/// Buffers of one [`VaeNet`] at one batch size.
#[derive(Debug, Clone, Default)]
pub struct VaeCache {
    x: Vec<f32>,
    encoder: MlpCache,
    mean: MlpCache,
    log_std: MlpCache,
    decoder: MlpCache,
    /// `[s | z]` rows of the decoder.
    sz: Vec<f32>,
    eps: Vec<f32>,
    dsz: Vec<f32>,
    dh: Vec<f32>,
    dh2: Vec<f32>,
    /// The reconstruction `[B, act]`.
    pub recon: Vec<f32>,
}

const LS_MIN: f32 = -4.0;
const LS_MAX: f32 = 15.0;

impl VaeNet {
    /// Encoder and decoder with hidden sizes `hidden`, latent size `latent`.
    pub fn new(
        pb: &mut ParamsBuilder<'_>,
        obs_dim: usize,
        act_dim: usize,
        latent: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        let last = *hidden.last().unwrap_or(&(obs_dim + act_dim));
        Ok(Self {
            encoder: Mlp::new(
                &mut pb.pp("encoder"),
                obs_dim + act_dim,
                &hidden[..hidden.len().saturating_sub(1)],
                last,
                Activation::Relu,
            )?,
            mean: Mlp::linear(&mut pb.pp("mean"), last, latent, Activation::Identity)?,
            log_std: Mlp::linear(&mut pb.pp("log_std"), last, latent, Activation::Identity)?,
            decoder: Mlp::new(
                &mut pb.pp("decoder"),
                obs_dim + latent,
                hidden,
                act_dim,
                Activation::Tanh,
            )?,
            obs_dim,
            act_dim,
            latent,
            max_action: max_action as f32,
        })
    }
    /// Latent size.
    pub fn latent(&self) -> usize {
        self.latent
    }
    /// `D(s, z)` for given latents `z: [B, latent]` into `out: [B, act]`.
    pub fn decode_z(
        &self,
        p: &Params,
        s: &[f32],
        z: &[f32],
        batch: usize,
        c: &mut VaeCache,
        out: &mut [f32],
    ) {
        let (o, l) = (self.obs_dim, self.latent);
        c.sz.clear();
        for (s, z) in s.chunks_exact(o).zip(z.chunks_exact(l)).take(batch) {
            c.sz.extend_from_slice(s);
            c.sz.extend_from_slice(z);
        }
        self.decoder
            .forward(p, &c.sz, Input::Shared, batch, &mut c.decoder);
        for (a, &y) in out.iter_mut().zip(c.decoder.output()) {
            *a = self.max_action * y;
        }
    }
    /// The loss of `(s, a)` with posterior noise `eps: [B, latent]`, its gradient added into
    /// `grads`; returns the loss.
    pub fn loss_backward(
        &self,
        p: &Params,
        s: &[f32],
        a: &[f32],
        eps: &[f32],
        batch: usize,
        c: &mut VaeCache,
        grads: &mut [f32],
    ) -> f64 {
        let (o, d, l) = (self.obs_dim, self.act_dim, self.latent);
        c.x.clear();
        for (s, a) in s.chunks_exact(o).zip(a.chunks_exact(d)).take(batch) {
            c.x.extend_from_slice(s);
            c.x.extend_from_slice(a);
        }
        self.encoder
            .forward(p, &c.x, Input::Shared, batch, &mut c.encoder);
        self.mean
            .forward(p, c.encoder.output(), Input::Shared, batch, &mut c.mean);
        self.log_std
            .forward(p, c.encoder.output(), Input::Shared, batch, &mut c.log_std);
        c.eps.clear();
        c.eps.extend_from_slice(&eps[..batch * l]);
        // z = mu + sigma eps, then decode.
        let mut z = std::mem::take(&mut c.dsz);
        z.resize(batch * l, 0.0);
        let mut kl = 0.0f64;
        for k in 0..batch * l {
            let mu = c.mean.output()[k];
            let ls = c.log_std.output()[k].clamp(LS_MIN, LS_MAX);
            let var = (2.0 * ls).exp();
            z[k] = mu + ls.exp() * c.eps[k];
            kl += f64::from(-0.5 * (1.0 + var.ln() - mu * mu - var));
        }
        let mut recon = std::mem::take(&mut c.recon);
        recon.resize(batch * d, 0.0);
        self.decode_z(p, s, &z, batch, c, &mut recon);
        let scale = 1.0 / (batch * d) as f32;
        let mut rec = 0.0f64;
        {
            let m = self.max_action;
            let dout = c.decoder.dout_mut();
            for ((g, &r), &a) in dout.iter_mut().zip(&recon).zip(a) {
                let diff = r - a;
                rec += f64::from(diff * diff);
                *g = 2.0 * diff * scale * m;
            }
        }
        c.recon = recon;
        // Decoder backward, down to its input [s | z].
        let mut dsz = std::mem::take(&mut c.dh);
        dsz.resize(batch * (o + l), 0.0);
        self.decoder.backward(
            p,
            &c.sz,
            Input::Shared,
            &mut c.decoder,
            Some(grads),
            Some(&mut dsz),
        );
        let kscale = 0.5 / (batch * l) as f32;
        {
            let (ls_out, dls) = c.log_std.output_and_dout();
            let (mu_out, dmu) = c.mean.output_and_dout();
            for b in 0..batch {
                for j in 0..l {
                    let k = b * l + j;
                    let dz = dsz[b * (o + l) + o + j];
                    dmu[k] = dz + kscale * mu_out[k];
                    let raw = ls_out[k];
                    dls[k] = if (LS_MIN..=LS_MAX).contains(&raw) {
                        let sigma = raw.exp();
                        dz * sigma * c.eps[k] + kscale * (sigma * sigma - 1.0)
                    } else {
                        0.0
                    };
                }
            }
        }
        c.dh = dsz;
        c.dsz = z;
        let h = c.encoder.output().len();
        let mut d1 = std::mem::take(&mut c.dh2);
        d1.resize(h, 0.0);
        let mut d2 = std::mem::take(&mut c.sz);
        d2.resize(h, 0.0);
        self.mean.backward(
            p,
            c.encoder.output(),
            Input::Shared,
            &mut c.mean,
            Some(grads),
            Some(&mut d1),
        );
        self.log_std.backward(
            p,
            c.encoder.output(),
            Input::Shared,
            &mut c.log_std,
            Some(grads),
            Some(&mut d2),
        );
        for ((o, &x), &y) in c.encoder.dout_mut().iter_mut().zip(&d1).zip(&d2) {
            *o = x + y;
        }
        c.dh2 = d1;
        c.sz = d2;
        self.encoder
            .backward(p, &c.x, Input::Shared, &mut c.encoder, Some(grads), None);
        rec * f64::from(scale) + 0.5 * kl / (batch * l) as f64
    }

    /// [`VaeNet::decode_z`] on backend `be`: `D(s, z)` `[B, act]` into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_z_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        z: &B::Buf,
        batch: usize,
        c: &mut VaeBufs<B>,
        out: &mut B::Buf,
    ) -> Result<()> {
        self.decode_parts(be, p, s, z, batch, &mut c.sz, &mut c.decoder, out)
    }
    #[allow(clippy::too_many_arguments)]
    fn decode_parts<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        z: &B::Buf,
        batch: usize,
        sz: &mut B::Buf,
        decoder: &mut B::Cache,
        out: &mut B::Buf,
    ) -> Result<()> {
        be.concat_cols(s, self.obs_dim, z, self.latent, sz)?;
        be.mlp_forward(&self.decoder, p, sz, Input::Shared, batch, decoder)?;
        be.map1(&Scale(self.max_action), be.mlp_output(decoder), out)
    }
    /// [`VaeNet::loss_backward`] on backend `be`: the loss of `(s, a)` with posterior noise
    /// `eps` `[B, latent]`, its gradient added into `grads`; the same operations in the same
    /// order as the engine's.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        a: &B::Buf,
        eps: &B::Buf,
        batch: usize,
        c: &mut VaeBufs<B>,
        grads: &mut B::Buf,
    ) -> Result<f64> {
        let (o, d, l) = (self.obs_dim, self.act_dim, self.latent);
        be.concat_cols(s, o, a, d, &mut c.x)?;
        be.mlp_forward(&self.encoder, p, &c.x, Input::Shared, batch, &mut c.encoder)?;
        let h = be.mlp_output(&c.encoder);
        be.mlp_forward(&self.mean, p, h, Input::Shared, batch, &mut c.mean)?;
        be.mlp_forward(&self.log_std, p, h, Input::Shared, batch, &mut c.log_std)?;
        let (mu, raw) = (be.mlp_output(&c.mean), be.mlp_output(&c.log_std));
        // z = mu + sigma eps (sigma from the clamped log-std), and the KL term.
        be.map1(&ClampLs, raw, &mut c.ls)?;
        be.map3(&Reparam, mu, &c.ls, eps, &mut c.z)?;
        let kl = be.map2_sum(&Kl, mu, &c.ls)?;
        self.decode_parts(
            be,
            p,
            s,
            &c.z,
            batch,
            &mut c.sz,
            &mut c.decoder,
            &mut c.recon,
        )?;
        let scale = 1.0 / (batch * d) as f32;
        let rec = be.map2_sum(&SquaredError, &c.recon, a)?;
        let k = ReconGrad {
            scale,
            m: self.max_action,
        };
        be.map2(&k, &c.recon, a, &mut c.drecon)?;
        // Decoder backward, down to its input [s | z]; then dL/dz is its z columns.
        be.mlp_backward(
            &self.decoder,
            p,
            &c.sz,
            Input::Shared,
            &mut c.decoder,
            &c.drecon,
            Some(grads),
            Some(&mut c.dsz),
        )?;
        be.cols(&c.dsz, o + l, o, l, &mut c.dz)?;
        let kscale = 0.5 / (batch * l) as f32;
        let (mu, raw) = (be.mlp_output(&c.mean), be.mlp_output(&c.log_std));
        be.map2(&MeanGrad(kscale), &c.dz, mu, &mut c.dmu)?;
        be.map3(&LogStdGrad(kscale), &c.dz, raw, eps, &mut c.dls)?;
        let h = be.mlp_output(&c.encoder);
        be.mlp_backward(
            &self.mean,
            p,
            h,
            Input::Shared,
            &mut c.mean,
            &c.dmu,
            Some(grads),
            Some(&mut c.dh),
        )?;
        be.mlp_backward(
            &self.log_std,
            p,
            h,
            Input::Shared,
            &mut c.log_std,
            &c.dls,
            Some(grads),
            Some(&mut c.dh2),
        )?;
        be.map2(&Sum2, &c.dh, &c.dh2, &mut c.denc)?;
        be.mlp_backward(
            &self.encoder,
            p,
            &c.x,
            Input::Shared,
            &mut c.encoder,
            &c.denc,
            Some(grads),
            None,
        )?;
        Ok(rec * f64::from(scale) + 0.5 * kl / (batch * l) as f64)
    }
}

/// Buffers of a [`VaeNet`] on backend `B` ([`VaeNet::decode_z_on`], [`VaeNet::loss_backward_on`]).
pub struct VaeBufs<B: Backend> {
    x: B::Buf,
    encoder: B::Cache,
    mean: B::Cache,
    log_std: B::Cache,
    decoder: B::Cache,
    sz: B::Buf,
    ls: B::Buf,
    z: B::Buf,
    recon: B::Buf,
    drecon: B::Buf,
    dsz: B::Buf,
    dz: B::Buf,
    dmu: B::Buf,
    dls: B::Buf,
    dh: B::Buf,
    dh2: B::Buf,
    denc: B::Buf,
}

impl<B: Backend> Default for VaeBufs<B> {
    fn default() -> Self {
        Self {
            x: Default::default(),
            encoder: Default::default(),
            mean: Default::default(),
            log_std: Default::default(),
            decoder: Default::default(),
            sz: Default::default(),
            ls: Default::default(),
            z: Default::default(),
            recon: Default::default(),
            drecon: Default::default(),
            dsz: Default::default(),
            dz: Default::default(),
            dmu: Default::default(),
            dls: Default::default(),
            dh: Default::default(),
            dh2: Default::default(),
            denc: Default::default(),
        }
    }
}

// ---- the VAE's elementwise kernels ----

/// `clamp(l, -4, 15)`.
struct ClampLs;
impl Map1 for ClampLs {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.clamp(LS_MIN, LS_MAX)
    }
}

/// `z = mu + exp(ls) eps`.
struct Reparam;
impl Map3 for Reparam {
    #[inline(always)]
    fn apply<S: Scalar>(&self, mu: S, ls: S, eps: S) -> S {
        mu + ls.exp() * eps
    }
}

/// One latent's KL term `-0.5 (1 + ln var - mu^2 - var)`, `var = exp(2 ls)`.
struct Kl;
impl Map2 for Kl {
    #[inline(always)]
    fn apply<S: Scalar>(&self, mu: S, ls: S) -> S {
        let var = ls.scale(2.0).exp();
        (((var.clone().ln().shift(1.0)) - mu.clone() * mu) - var).scale(-0.5)
    }
}

/// `dL/d tanh-output = 2 (D - a) scale m`.
struct ReconGrad {
    scale: f32,
    m: f32,
}
impl Map2 for ReconGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, r: S, a: S) -> S {
        (r - a).scale(2.0).scale(self.scale).scale(self.m)
    }
}

/// `dL/dmu = dz + kscale mu`.
struct MeanGrad(f32);
impl Map2 for MeanGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, dz: S, mu: S) -> S {
        dz + mu.scale(self.0)
    }
}

/// `dL/d raw log-std = (dz sigma eps + kscale (sigma^2 - 1)) 1(-4 <= raw <= 15)`, `sigma = e^raw`.
struct LogStdGrad(f32);
impl Map3 for LogStdGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, dz: S, raw: S, eps: S) -> S {
        let sigma = raw.clone().exp();
        let v = dz * sigma.clone() * eps + (sigma.clone() * sigma).shift(-1.0).scale(self.0);
        (v * raw.inside(LS_MIN, LS_MAX)).shift(0.0)
    }
}

/// `a + b`.
struct Sum2;
impl Map2 for Sum2 {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a + b
    }
}
