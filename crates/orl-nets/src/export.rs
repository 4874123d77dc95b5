//! Exported policies: one safetensors file holding the acting networks (plain ReLU MLPs) with a
//! JSON header, and a small inference API that needs none of the training code.
//!
//! ```text
//! metadata  "orl.export" = {"format_version", "algo", "obs_dim", "head", "max_action",
//!                           "n_actions", "source"[, "phi"][, "threshold"]}
//! net(x)    h = relu(... relu(x W_0 + b_0) ...) W_L + b_L          W_i [in, out], b_i [out] (F32)
//!
//! head "tanh"          tensors layers.<i>.*                  a = max_action * tanh(net(s))
//! head "argmax"        tensors layers.<i>.*                  a = argmax_j net(s)_j
//! head "bcq"           tensors decoder.layers.<i>.*, perturbation.layers.<i>.*,
//!                      critic.layers.<i>.*, latents [n, latent]
//!                      for each stored latent z_i (i < n):
//!                        g_i = max_action * tanh(decoder([s, z_i]))               (VAE decoder)
//!                        a_i = clip(g_i + phi * max_action * tanh(perturbation([s, g_i])))
//!                      a = a_argmax_i critic([s, a_i])                         (BCQ, eq. 12)
//! head "bcq_discrete"  tensors critic.layers.<i>.*, imitation.layers.<i>.*
//!                      a = argmax_{j : exp(l_j - max_k l_k) > threshold} critic(s)_j
//!                      with l = imitation(s) the behaviour model's logits    (discrete BCQ)
//! ```
//!
//! BCQ acts by sampling `n` latents `z ~ clip(N(0, I), -0.5, 0.5)` per call; the export stores
//! one such draw (`latents`, drawn from the training run's seeded noise), so the exported policy
//! is deterministic: the same observation always gives the same action.
//!
//! The observation normalisation used in training is folded into the first layer of every
//! network, over the rows that read the observation: `W_0[:obs]' = diag(1/std) W_0[:obs]`,
//! `b_0' = b_0 - (mean/std) W_0[:obs]`, so the file acts on raw observations.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{NetError, Result};

/// Version of the export format ("2" added the BCQ heads; "1" files load unchanged).
pub const EXPORT_FORMAT_VERSION: &str = "2";

/// How the networks' outputs become an action.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// `max_action * tanh(net(s))`.
    Tanh,
    /// `argmax_j net(s)_j`.
    Argmax,
    /// Continuous BCQ: the best of the perturbed VAE samples under the critic.
    Bcq,
    /// Discrete BCQ: the best action under the critic among those the behaviour model allows.
    BcqDiscrete,
}

/// The header stored under `orl.export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT_VERSION`] of the writer.
    pub format_version: String,
    /// The algorithm that trained the policy.
    pub algo: String,
    /// Observation dimension.
    pub obs_dim: usize,
    /// Output transform.
    pub head: Head,
    /// Bound of continuous actions.
    pub max_action: f64,
    /// Number of discrete actions, else 0.
    pub n_actions: usize,
    /// The checkpoint it came from.
    pub source: String,
    /// BCQ's perturbation scale `Phi` (head `bcq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phi: Option<f64>,
    /// Discrete BCQ's relative-probability threshold `tau` (head `bcq_discrete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl ExportHeader {
    /// The header for `model`: head, action bound, `phi` and `threshold` come from the model.
    pub fn for_model(
        model: &PolicyModel,
        algo: &str,
        obs_dim: usize,
        n_actions: usize,
        source: &str,
    ) -> Self {
        let (max_action, phi, threshold) = match model {
            PolicyModel::Tanh { max_action, .. } => (*max_action, None, None),
            PolicyModel::Argmax { .. } => (0.0, None, None),
            PolicyModel::Bcq {
                phi, max_action, ..
            } => (*max_action, Some(*phi), None),
            PolicyModel::BcqDiscrete { threshold, .. } => (0.0, None, Some(*threshold)),
        };
        Self {
            format_version: EXPORT_FORMAT_VERSION.into(),
            algo: algo.into(),
            obs_dim,
            head: model.head(),
            max_action,
            n_actions,
            source: source.into(),
            phi,
            threshold,
        }
    }
}

/// A ReLU MLP as plain tensors: layers `(W [in, out], b [out])`, ReLU between them, linear
/// output.
#[derive(Debug, Clone)]
pub struct ReluNet {
    /// The layers, input first.
    pub layers: Vec<(Tensor, Tensor)>,
}

impl ReluNet {
    /// Reads layers `<prefix><name>.weight/.bias` for each name of `names` from `tensors`;
    /// ensemble weights `[E, in, out]` take member 0.
    pub fn from_named(
        tensors: &[(String, Tensor)],
        prefix: &str,
        names: &[String],
    ) -> Result<Self> {
        let map: HashMap<&str, &Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let get = |k: String| -> Result<Tensor> {
            let t = map
                .get(k.as_str())
                .ok_or_else(|| NetError::Config(format!("no tensor `{k}` to export")))?;
            Ok(match t.rank() {
                3 => t.get(0)?,
                _ => (*t).clone(),
            })
        };
        let layers = names
            .iter()
            .map(|n| {
                Ok((
                    get(format!("{prefix}{n}.weight"))?,
                    get(format!("{prefix}{n}.bias"))?.flatten_all()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }
    /// `x: [B, in]` -> `[B, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w)?.broadcast_add(b)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
    /// Folds `(s - mean) / std` into the first layer's first `mean.len()` input rows (the
    /// observation; any rows after it, such as an action or a latent, are left alone).
    pub fn fold_normalization(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        let Some((w, b)) = self.layers.first_mut() else {
            return Ok(());
        };
        let (obs, input) = (mean.len(), w.dim(0)?);
        if std.len() != obs || input < obs {
            return Err(NetError::Config(format!(
                "cannot fold {obs}-dimensional observation statistics into a layer with {input} inputs"
            )));
        }
        let dev = w.device().clone();
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        let inv_t = Tensor::from_vec(inv.clone(), (obs, 1), &dev)?;
        let shift: Vec<f32> = mean.iter().zip(&inv).map(|(m, i)| m * i).collect();
        let shift_t = Tensor::from_vec(shift, (1, obs), &dev)?;
        let ws = w.narrow(0, 0, obs)?;
        let new_b = (&*b - shift_t.matmul(&ws)?.flatten_all()?)?;
        let scaled = ws.broadcast_mul(&inv_t)?;
        *w = if input > obs {
            Tensor::cat(&[&scaled, &w.narrow(0, obs, input - obs)?], 0)?
        } else {
            scaled
        };
        *b = new_b;
        Ok(())
    }
    fn named(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        for (i, (w, b)) in self.layers.iter().enumerate() {
            out.push((format!("{prefix}layers.{i}.weight"), w.clone()));
            out.push((format!("{prefix}layers.{i}.bias"), b.clone()));
        }
    }
    fn load(tensors: &HashMap<String, Tensor>, prefix: &str) -> Option<Self> {
        let mut layers = Vec::new();
        for i in 0.. {
            let (Some(w), Some(b)) = (
                tensors.get(&format!("{prefix}layers.{i}.weight")),
                tensors.get(&format!("{prefix}layers.{i}.bias")),
            ) else {
                break;
            };
            layers.push((w.clone(), b.clone()));
        }
        (!layers.is_empty()).then_some(Self { layers })
    }
}

/// The acting networks of a policy, ready to export.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PolicyModel {
    /// `max_action * tanh(net(s))`.
    Tanh {
        /// The policy network (its mean, for stochastic actors).
        net: ReluNet,
        /// Action bound.
        max_action: f64,
    },
    /// `argmax_j net(s)_j`.
    Argmax {
        /// Action values or logits.
        net: ReluNet,
    },
    /// Continuous BCQ (see the module doc).
    Bcq {
        /// VAE decoder `[s, z] -> pre-tanh action`.
        decoder: ReluNet,
        /// Perturbation network `[s, a] -> pre-tanh perturbation`.
        perturbation: ReluNet,
        /// The first critic `[s, a] -> Q`.
        critic: ReluNet,
        /// `[n, latent]` latents, one candidate action each.
        latents: Tensor,
        /// Perturbation scale.
        phi: f64,
        /// Action bound.
        max_action: f64,
    },
    /// Discrete BCQ (see the module doc).
    BcqDiscrete {
        /// `s -> Q [n_actions]`.
        critic: ReluNet,
        /// `s -> behaviour logits [n_actions]`.
        imitation: ReluNet,
        /// Relative-probability threshold.
        threshold: f64,
    },
}

impl PolicyModel {
    /// The output transform.
    pub fn head(&self) -> Head {
        match self {
            Self::Tanh { .. } => Head::Tanh,
            Self::Argmax { .. } => Head::Argmax,
            Self::Bcq { .. } => Head::Bcq,
            Self::BcqDiscrete { .. } => Head::BcqDiscrete,
        }
    }
    fn nets_mut(&mut self) -> Vec<&mut ReluNet> {
        match self {
            Self::Tanh { net, .. } | Self::Argmax { net } => vec![net],
            Self::Bcq {
                decoder,
                perturbation,
                critic,
                ..
            } => vec![decoder, perturbation, critic],
            Self::BcqDiscrete {
                critic, imitation, ..
            } => vec![critic, imitation],
        }
    }
    fn nets(&self) -> Vec<&ReluNet> {
        match self {
            Self::Tanh { net, .. } | Self::Argmax { net } => vec![net],
            Self::Bcq {
                decoder,
                perturbation,
                critic,
                ..
            } => vec![decoder, perturbation, critic],
            Self::BcqDiscrete {
                critic, imitation, ..
            } => vec![critic, imitation],
        }
    }
    /// Number of layers over all networks.
    pub fn layer_count(&self) -> usize {
        self.nets().iter().map(|n| n.layers.len()).sum()
    }
    /// Folds `(s - mean) / std` into every network's first layer.
    pub fn fold_normalization(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        for net in self.nets_mut() {
            net.fold_normalization(mean, std)?;
        }
        Ok(())
    }
    /// `s: [B, obs]` -> actions: `f32 [B, act]` (continuous heads) or `u32 [B]` (discrete).
    pub fn forward(&self, s: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Tanh { net, max_action } => (net.forward(s)?.tanh()? * *max_action)?,
            Self::Argmax { net } => net.forward(s)?.argmax(D::Minus1)?,
            Self::Bcq {
                decoder,
                perturbation,
                critic,
                latents,
                phi,
                max_action,
            } => {
                let ((bsz, od), (n, lat)) = (s.dims2()?, latents.dims2()?);
                // Row b * n + i pairs observation b with latent i.
                let sr = s
                    .unsqueeze(1)?
                    .broadcast_as((bsz, n, od))?
                    .reshape((bsz * n, od))?;
                let z = latents
                    .unsqueeze(0)?
                    .broadcast_as((bsz, n, lat))?
                    .reshape((bsz * n, lat))?;
                let g = (decoder.forward(&Tensor::cat(&[&sr, &z], 1)?)?.tanh()? * *max_action)?;
                let xi = (perturbation.forward(&Tensor::cat(&[&sr, &g], 1)?)?.tanh()?
                    * (*phi * *max_action))?;
                let a = (g + xi)?.clamp(-*max_action, *max_action)?; // [B*n, act]
                let q = critic
                    .forward(&Tensor::cat(&[&sr, &a], 1)?)?
                    .reshape((bsz, n))?;
                let best = q.argmax(1)?.to_dtype(DType::U32)?;
                let offsets =
                    Tensor::arange(0u32, bsz as u32, s.device())?.affine(n as f64, 0.0)?;
                a.index_select(&(best + offsets)?, 0)?
            }
            Self::BcqDiscrete {
                critic,
                imitation,
                threshold,
            } => {
                let q = critic.forward(s)?;
                let l = imitation.forward(s)?;
                let ratio = l.broadcast_sub(&l.max_keepdim(D::Minus1)?)?.exp()?;
                let very_low = (q.ones_like()? * -1e8)?;
                ratio
                    .gt(*threshold)?
                    .where_cond(&q, &very_low)?
                    .argmax(D::Minus1)?
            }
        })
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        match self {
            Self::Tanh { net, .. } | Self::Argmax { net } => net.named("", &mut out),
            Self::Bcq {
                decoder,
                perturbation,
                critic,
                latents,
                ..
            } => {
                decoder.named("decoder.", &mut out);
                perturbation.named("perturbation.", &mut out);
                critic.named("critic.", &mut out);
                out.push(("latents".into(), latents.clone()));
            }
            Self::BcqDiscrete {
                critic, imitation, ..
            } => {
                critic.named("critic.", &mut out);
                imitation.named("imitation.", &mut out);
            }
        }
        out
    }
    fn from_tensors(
        header: &ExportHeader,
        t: &HashMap<String, Tensor>,
    ) -> std::result::Result<Self, String> {
        let net = |prefix: &str| {
            ReluNet::load(t, prefix).ok_or_else(|| format!("no `{prefix}layers.0.weight`"))
        };
        let field = |v: Option<f64>, name: &str| {
            v.ok_or_else(|| format!("head `{:?}` needs header field `{name}`", header.head))
        };
        Ok(match header.head {
            Head::Tanh => Self::Tanh {
                net: net("")?,
                max_action: header.max_action,
            },
            Head::Argmax => Self::Argmax { net: net("")? },
            Head::Bcq => Self::Bcq {
                decoder: net("decoder.")?,
                perturbation: net("perturbation.")?,
                critic: net("critic.")?,
                latents: t
                    .get("latents")
                    .cloned()
                    .ok_or_else(|| "no `latents` tensor".to_string())?,
                phi: field(header.phi, "phi")?,
                max_action: header.max_action,
            },
            Head::BcqDiscrete => Self::BcqDiscrete {
                critic: net("critic.")?,
                imitation: net("imitation.")?,
                threshold: field(header.threshold, "threshold")?,
            },
        })
    }
}

/// Writes `model` with `header` to `path` (atomically). The header's `head` must be the model's.
pub fn save_export(path: &Path, model: &PolicyModel, header: &ExportHeader) -> Result<()> {
    if header.head != model.head() {
        return Err(NetError::Config(format!(
            "export header says head {:?} but the model is {:?}",
            header.head,
            model.head()
        )));
    }
    let meta = HashMap::from([(
        "orl.export".to_string(),
        serde_json::to_string(header).map_err(|e| NetError::Config(e.to_string()))?,
    )]);
    checkpoint::save(path, &model.named_tensors(), &meta)
}

/// A loaded exported policy.
#[derive(Debug, Clone)]
pub struct ExportedPolicy {
    /// The header.
    pub header: ExportHeader,
    model: PolicyModel,
}

impl ExportedPolicy {
    /// Loads an export written by [`save_export`] (or `orl export`).
    pub fn load(path: &Path) -> Result<Self> {
        let (tensors, meta) = checkpoint::load(path, &Device::Cpu)?;
        let bad = |reason: String| NetError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let header: ExportHeader = serde_json::from_str(
            meta.get("orl.export")
                .ok_or_else(|| bad("no `orl.export` header: not an orl policy export".into()))?,
        )
        .map_err(|e| bad(format!("bad `orl.export` header: {e}")))?;
        if !["1", "2"].contains(&header.format_version.as_str()) {
            return Err(bad(format!(
                "export format version {} is newer than this reader's ({EXPORT_FORMAT_VERSION})",
                header.format_version
            )));
        }
        let model = PolicyModel::from_tensors(&header, &tensors).map_err(bad)?;
        Ok(Self { header, model })
    }
    /// The networks.
    pub fn model(&self) -> &PolicyModel {
        &self.model
    }
    /// Actions for observations `s: [B, obs]`: `f32 [B, act]` or `u32 [B]`.
    pub fn act_batch(&self, s: &Tensor) -> Result<Tensor> {
        self.model.forward(s)
    }
    /// The action for one raw observation: the continuous vector, or `[index]` for discrete.
    pub fn act(&self, observation: &[f32]) -> Result<Vec<f32>> {
        if observation.len() != self.header.obs_dim {
            return Err(NetError::Config(format!(
                "observation has {} values, the policy expects {}",
                observation.len(),
                self.header.obs_dim
            )));
        }
        let s = Tensor::from_slice(observation, (1, observation.len()), &Device::Cpu)?;
        let a = self.model.forward(&s)?;
        Ok(match a.dtype() {
            DType::U32 => a.to_vec1::<u32>()?.into_iter().map(|i| i as f32).collect(),
            _ => a.flatten_all()?.to_vec1()?,
        })
    }
}
