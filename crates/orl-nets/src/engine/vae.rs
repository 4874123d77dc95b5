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
use crate::engine::heads::TwoHeadsBufs;
use crate::engine::mlp::{Activation, Input, Mlp};
use crate::engine::params::ParamsBuilder;
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
    /// `D(s, z)` on backend `be` for given latents `z` `[B, latent]`: `[B, act]` into `out`.
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
    /// The loss of `(s, a)` on backend `be` with posterior noise `eps` `[B, latent]` (the
    /// module doc's `L`), its gradient added into `grads`; returns the loss.
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
        let nets = [&self.encoder, &self.mean, &self.log_std];
        let (mu, raw) = c.heads.forward_on(be, nets, p, &c.x, batch)?;
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
        let (mu, raw) = (
            be.mlp_output(&c.heads.mean),
            be.mlp_output(&c.heads.log_std),
        );
        be.map2(&MeanGrad(kscale), &c.dz, mu, &mut c.dmu)?;
        be.map3(&LogStdGrad(kscale), &c.dz, raw, eps, &mut c.dls)?;
        let nets = [&self.encoder, &self.mean, &self.log_std];
        c.heads
            .backward_on(be, nets, p, &c.x, &c.dmu, &c.dls, grads)?;
        Ok(rec * f64::from(scale) + 0.5 * kl / (batch * l) as f64)
    }
}

/// Buffers of a [`VaeNet`] on backend `B` ([`VaeNet::decode_z_on`], [`VaeNet::loss_backward_on`]).
pub struct VaeBufs<B: Backend> {
    x: B::Buf,
    heads: TwoHeadsBufs<B>,
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
}

impl<B: Backend> Default for VaeBufs<B> {
    fn default() -> Self {
        Self {
            x: Default::default(),
            heads: TwoHeadsBufs::default(),
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
