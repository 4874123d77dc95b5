//! The conditional VAE of BCQ (Fujimoto, Meger & Precup 2019, section 4 and appendix D):
//! a generative model `G_w(s)` of the behaviour policy's actions.
//!
//! ```text
//! encoder  E(s, a) -> (mu, log_sigma)   [B, latent] each, log_sigma clamped to [-4, 15]
//! z = mu + sigma * eps                  eps ~ N(0, I)
//! decoder  D(s, z) = max_action * tanh(mlp(s, z))
//! loss     = ||D(s, z) - a||^2 + 0.5 * KL(N(mu, sigma) || N(0, I))
//! sampling z ~ clip(N(0, I), -0.5, 0.5)
//! ```
//! Hidden layers 750 x 750 and latent size `2 * act_dim` in the paper's code.

use candle_core::Tensor;

use crate::error::Result;
use crate::linear::Linear;
use crate::mlp::Mlp;
use crate::store::{Noise, Vb};

/// BCQ's conditional VAE. Parameters `<prefix>.encoder.*`, `<prefix>.mean.*`,
/// `<prefix>.log_std.*`, `<prefix>.decoder.*`.
#[derive(Debug, Clone)]
pub struct Vae {
    encoder: Mlp,
    mean: Linear,
    log_std: Linear,
    decoder: Mlp,
    latent: usize,
    max_action: f64,
}

/// What one VAE forward pass gives for the loss.
#[derive(Debug, Clone)]
pub struct VaeOutput {
    /// `[B, act]` reconstruction.
    pub recon: Tensor,
    /// `[B, latent]` posterior mean.
    pub mean: Tensor,
    /// `[B, latent]` posterior std.
    pub std: Tensor,
}

impl Vae {
    /// Builds encoder and decoder with hidden sizes `hidden`.
    pub fn new(
        vb: &mut Vb<'_>,
        obs_dim: usize,
        act_dim: usize,
        latent: usize,
        hidden: &[usize],
        max_action: f64,
    ) -> Result<Self> {
        let last = *hidden.last().unwrap_or(&(obs_dim + act_dim));
        Ok(Self {
            encoder: Mlp::new(
                &mut vb.pp("encoder"),
                obs_dim + act_dim,
                &hidden[..hidden.len().saturating_sub(1)],
                last,
            )?,
            mean: Linear::new(&mut vb.pp("mean"), last, latent)?,
            log_std: Linear::new(&mut vb.pp("log_std"), last, latent)?,
            decoder: Mlp::new(&mut vb.pp("decoder"), obs_dim + latent, hidden, act_dim)?,
            latent,
            max_action,
        })
    }
    /// Encodes `(s, a)`, samples `z`, decodes.
    pub fn forward(&self, s: &Tensor, a: &Tensor, noise: &mut Noise) -> Result<VaeOutput> {
        let h = self.encoder.forward(&Tensor::cat(&[s, a], 1)?)?.relu()?;
        let mean = self.mean.forward(&h)?;
        let std = self.log_std.forward(&h)?.clamp(-4f32, 15f32)?.exp()?;
        let z = (&mean + (&std * noise.normal(mean.dims())?)?)?;
        Ok(VaeOutput {
            recon: self.decode_z(s, &z)?,
            mean,
            std,
        })
    }
    /// `D(s, z)` for given latents.
    pub fn decode_z(&self, s: &Tensor, z: &Tensor) -> Result<Tensor> {
        Ok((self.decoder.forward(&Tensor::cat(&[s, z], 1)?)?.tanh()? * self.max_action)?)
    }
    /// Samples actions `D(s, z)` with `z ~ clip(N(0, I), -0.5, 0.5)`.
    pub fn decode(&self, s: &Tensor, noise: &mut Noise) -> Result<Tensor> {
        let b = s.dim(0)?;
        let z = noise.normal(&[b, self.latent])?.clamp(-0.5f32, 0.5f32)?;
        self.decode_z(s, &z)
    }
    /// `mean_B ||recon - a||^2 / act  + 0.5 * mean_B KL`, BCQ's loss (the reference code's
    /// `F.mse_loss(recon, a) + 0.5 * KL_loss` with KL averaged over the batch and latents).
    pub fn loss(out: &VaeOutput, a: &Tensor) -> Result<Tensor> {
        let recon = (&out.recon - a)?.sqr()?.mean_all()?;
        // KL = -0.5 * (1 + log(std^2) - mean^2 - std^2), averaged over everything.
        let var = out.std.sqr()?;
        let kl = ((((var.log()? + 1.0)? - out.mean.sqr()?)? - &var)? * -0.5)?.mean_all()?;
        Ok((recon + (kl * 0.5)?)?)
    }
    /// Latent size.
    pub fn latent(&self) -> usize {
        self.latent
    }
}
