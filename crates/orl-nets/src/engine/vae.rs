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
}
