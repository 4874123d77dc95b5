//! Exported policies: one safetensors file holding a plain ReLU MLP, with a JSON header, and a
//! small inference API that needs none of the training code.
//!
//! ```text
//! tensors   layers.<i>.weight  [in, out]      layers.<i>.bias  [out]        (F32)
//! metadata  "orl.export" = {"format_version": "1", "algo", "obs_dim", "head", "max_action", "n_actions", "source"}
//! act(s)    h = relu(... relu(s W_0 + b_0) ...) W_L + b_L
//!           head "tanh":   a = max_action * tanh(h)          (continuous)
//!           head "argmax": a = argmax_j h_j                  (discrete)
//! ```
//!
//! The observation normalisation used in training is folded into the first layer:
//! `W_0' = diag(1/std) W_0`, `b_0' = b_0 - (mean/std) W_0`, so the file acts on raw observations.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{NetError, Result};

/// Version of the export format.
pub const EXPORT_FORMAT_VERSION: &str = "1";

/// How the last layer's output becomes an action.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// `max_action * tanh(h)`.
    Tanh,
    /// `argmax_j h_j`.
    Argmax,
}

/// The header stored under `orl.export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT_VERSION`].
    pub format_version: String,
    /// The algorithm that trained the policy.
    pub algo: String,
    /// Observation dimension.
    pub obs_dim: usize,
    /// Output transform.
    pub head: Head,
    /// Bound of continuous actions (`Tanh` head).
    pub max_action: f64,
    /// Number of discrete actions (`Argmax` head), else 0.
    pub n_actions: usize,
    /// The checkpoint it came from.
    pub source: String,
}

/// A policy as a plain MLP: layers `(W [in, out], b [out])` with ReLU between them.
#[derive(Debug, Clone)]
pub struct PolicyMlp {
    /// The layers, input first.
    pub layers: Vec<(Tensor, Tensor)>,
    /// Output transform.
    pub head: Head,
    /// Bound of continuous actions.
    pub max_action: f64,
}

impl PolicyMlp {
    /// Reads layers `<prefix><name>.weight/.bias` for each name of `names` from `tensors`;
    /// ensemble weights `[E, in, out]` take member 0.
    pub fn from_named(
        tensors: &[(String, Tensor)],
        prefix: &str,
        names: &[String],
        head: Head,
        max_action: f64,
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
        Ok(Self {
            layers,
            head,
            max_action,
        })
    }
    /// Folds `(s - mean) / std` into the first layer.
    pub fn fold_normalization(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        let Some((w, b)) = self.layers.first_mut() else {
            return Ok(());
        };
        let dev = w.device().clone();
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        let inv_t = Tensor::from_vec(inv.clone(), (inv.len(), 1), &dev)?;
        let shift: Vec<f32> = mean.iter().zip(&inv).map(|(m, i)| m * i).collect();
        let shift_t = Tensor::from_vec(shift, (1, mean.len()), &dev)?;
        let new_b = (&*b - shift_t.matmul(w)?.flatten_all()?)?;
        *w = w.broadcast_mul(&inv_t)?;
        *b = new_b;
        Ok(())
    }
    /// `s: [B, obs]` -> actions: `f32 [B, act]` (tanh) or `u32 [B]` (argmax).
    pub fn forward(&self, s: &Tensor) -> Result<Tensor> {
        let mut h = s.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w)?.broadcast_add(b)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(match self.head {
            Head::Tanh => (h.tanh()? * self.max_action)?,
            Head::Argmax => h.argmax(D::Minus1)?,
        })
    }
}

/// Writes `mlp` with `header` to `path` (atomically).
pub fn save_export(path: &Path, mlp: &PolicyMlp, header: &ExportHeader) -> Result<()> {
    let mut tensors = Vec::new();
    for (i, (w, b)) in mlp.layers.iter().enumerate() {
        tensors.push((format!("layers.{i}.weight"), w.clone()));
        tensors.push((format!("layers.{i}.bias"), b.clone()));
    }
    let meta = HashMap::from([(
        "orl.export".to_string(),
        serde_json::to_string(header).map_err(|e| NetError::Config(e.to_string()))?,
    )]);
    checkpoint::save(path, &tensors, &meta)
}

/// A loaded exported policy.
#[derive(Debug, Clone)]
pub struct ExportedPolicy {
    /// The header.
    pub header: ExportHeader,
    mlp: PolicyMlp,
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
        let mut layers = Vec::new();
        for i in 0.. {
            let (Some(w), Some(b)) = (
                tensors.get(&format!("layers.{i}.weight")),
                tensors.get(&format!("layers.{i}.bias")),
            ) else {
                break;
            };
            layers.push((w.clone(), b.clone()));
        }
        if layers.is_empty() {
            return Err(bad("no `layers.0.weight`".into()));
        }
        let mlp = PolicyMlp {
            layers,
            head: header.head,
            max_action: header.max_action,
        };
        Ok(Self { header, mlp })
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
        let a = self.mlp.forward(&s)?;
        Ok(match self.header.head {
            Head::Tanh => a.flatten_all()?.to_vec1()?,
            Head::Argmax => a.to_vec1::<u32>()?.into_iter().map(|i| i as f32).collect(),
        })
    }
}
