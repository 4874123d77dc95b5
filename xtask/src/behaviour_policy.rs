//! Behaviour policies as small files, and their inference in plain Rust.
//!
//! A dataset must come out bit for bit the same on every machine, so generation does not run
//! the policy through candle (whose matmul kernels are chosen by CPU features): the forward pass
//! here is a fixed-order loop in `f32`, and every transcendental function comes from the
//! pure-Rust `libm` crate, never the platform's. File layout (safetensors, F32):
//!
//! ```text
//! layers.<i>.weight [in, out], layers.<i>.bias [out]    ReLU after every layer ("trunk")
//! tanh_gaussian:  mean.weight/bias, log_std.weight/bias on the trunk's output
//!                 u = mean + exp(clamp(log_std, -20, 2)) eps,  a = max_action tanh(u)
//!                 log mu(a|s) = sum_j [log N(u_j) - 2 (ln 2 - u_j - softplus(-2 u_j))] - A ln max_action
//! epsilon_greedy: the last layer has no ReLU and gives Q(s, .);
//!                 a = argmax Q w.p. 1 - eps, else uniform;  mu(a|s) = 1 - eps + eps/n or eps/n
//! metadata "orl.behaviour" = {"kind", "obs_dim", "act_dim", "n_actions", "max_action", "epsilon", "source"}
//! ```
//!
//! Random policies need no file: uniform over the box (`log mu = -sum_j ln(high_j - low_j)`) or
//! over the `n` actions (`-ln n`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use orl_envs::OwnedAction;
use orl_nets::{Device, Tensor};
use rand::RngExt;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// The header stored under `orl.behaviour`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `tanh_gaussian` or `epsilon_greedy`.
    pub kind: String,
    /// Observation width.
    pub obs_dim: usize,
    /// Continuous action width (0 for discrete).
    pub act_dim: usize,
    /// Discrete actions (0 for continuous).
    pub n_actions: usize,
    /// Bound of continuous actions.
    pub max_action: f64,
    /// Exploration of the epsilon-greedy policy.
    pub epsilon: f64,
    /// Where the weights came from.
    pub source: String,
}

#[derive(Debug, Clone)]
pub struct Layer {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Layer {
    fn forward(&self, x: &[f32], relu: bool) -> Vec<f32> {
        let mut y = self.b.clone();
        for (i, &xi) in x.iter().enumerate() {
            let row = &self.w[i * self.out..(i + 1) * self.out];
            for (yj, &wij) in y.iter_mut().zip(row) {
                *yj += xi * wij;
            }
        }
        if relu {
            for v in &mut y {
                *v = v.max(0.0);
            }
        }
        y
    }
}

/// A behaviour policy, or the uniform random one.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// SAC's tanh-squashed Gaussian.
    TanhGaussian {
        /// Trunk layers.
        trunk: Vec<Layer>,
        /// Mean head.
        mean: Layer,
        /// Log-std head.
        log_std: Layer,
        /// Action bound.
        max_action: f32,
    },
    /// Epsilon-greedy over a Q-network.
    EpsilonGreedy {
        /// Q layers.
        q: Vec<Layer>,
        /// Exploration.
        epsilon: f64,
    },
    /// Uniform over `[low, high]`.
    UniformBox {
        /// Lower bounds.
        low: Vec<f32>,
        /// Upper bounds.
        high: Vec<f32>,
    },
    /// Uniform over `n` actions.
    UniformDiscrete(usize),
}

/// A standard normal draw: Box-Muller with `libm` (identical on every machine).
fn gaussian(rng: &mut Pcg64Mcg) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + libm::log1p(libm::exp(-x.abs()))
}

impl Behaviour {
    /// An action for `obs` and its log-probability under this policy.
    pub fn act(&self, obs: &[f32], rng: &mut Pcg64Mcg) -> (OwnedAction, f64) {
        match self {
            Self::TanhGaussian {
                trunk,
                mean,
                log_std,
                max_action,
            } => {
                let mut h = obs.to_vec();
                for l in trunk {
                    h = l.forward(&h, true);
                }
                let m = mean.forward(&h, false);
                let ls = log_std.forward(&h, false);
                let mut a = Vec::with_capacity(m.len());
                let mut lp = 0.0f64;
                for (mj, lj) in m.iter().zip(&ls) {
                    let lj = f64::from(lj.clamp(-20.0, 2.0));
                    let eps = gaussian(rng);
                    let u = f64::from(*mj) + libm::exp(lj) * eps;
                    lp += -0.5 * eps * eps - lj - 0.5 * libm::log(2.0 * std::f64::consts::PI);
                    lp -= 2.0 * (std::f64::consts::LN_2 - u - softplus(-2.0 * u));
                    lp -= libm::log(f64::from(*max_action));
                    a.push(max_action * libm::tanhf(u as f32));
                }
                (OwnedAction::Continuous(a), lp)
            }
            Self::EpsilonGreedy { q, epsilon } => {
                let mut h = obs.to_vec();
                for (i, l) in q.iter().enumerate() {
                    h = l.forward(&h, i + 1 < q.len());
                }
                let n = h.len();
                let greedy = (0..n)
                    .max_by(|&x, &y| h[x].total_cmp(&h[y]).then(y.cmp(&x)))
                    .unwrap_or(0);
                let explore: f64 = rng.random_range(0.0..1.0);
                let a = if explore < *epsilon {
                    rng.random_range(0..n)
                } else {
                    greedy
                };
                let p = if a == greedy {
                    1.0 - epsilon + epsilon / n as f64
                } else {
                    epsilon / n as f64
                };
                (OwnedAction::Discrete(a as i64), libm::log(p))
            }
            Self::UniformBox { low, high } => {
                let mut lp = 0.0;
                let a = low
                    .iter()
                    .zip(high)
                    .map(|(&l, &h)| {
                        lp -= libm::log(f64::from(h) - f64::from(l));
                        rng.random_range(l..h)
                    })
                    .collect();
                (OwnedAction::Continuous(a), lp)
            }
            Self::UniformDiscrete(n) => (
                OwnedAction::Discrete(rng.random_range(0..*n) as i64),
                -libm::log(*n as f64),
            ),
        }
    }
}

fn layer(t: &HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Layer> {
    let get = |k: String| -> Result<Tensor> {
        t.get(&k)
            .cloned()
            .with_context(|| format!("{}: no tensor `{k}`", path.display()))
    };
    let w = get(format!("{name}.weight"))?;
    let (inp, out) = w.dims2()?;
    Ok(Layer {
        w: w.flatten_all()?.to_vec1()?,
        b: get(format!("{name}.bias"))?.flatten_all()?.to_vec1()?,
        inp,
        out,
    })
}

/// Reads a behaviour-policy file.
pub fn load(path: &Path) -> Result<(Behaviour, Header)> {
    let (t, meta) = orl_nets::checkpoint::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let header: Header = serde_json::from_str(
        meta.get("orl.behaviour")
            .with_context(|| format!("{}: no `orl.behaviour` header", path.display()))?,
    )
    .with_context(|| format!("{}: bad `orl.behaviour` header", path.display()))?;
    let mut layers = Vec::new();
    while t.contains_key(&format!("layers.{}.weight", layers.len())) {
        layers.push(layer(&t, &format!("layers.{}", layers.len()), path)?);
    }
    if layers.is_empty() || layers[0].inp != header.obs_dim {
        bail!(
            "{}: the layers do not take {} inputs",
            path.display(),
            header.obs_dim
        );
    }
    let b = match header.kind.as_str() {
        "tanh_gaussian" => Behaviour::TanhGaussian {
            trunk: layers,
            mean: layer(&t, "mean", path)?,
            log_std: layer(&t, "log_std", path)?,
            max_action: header.max_action as f32,
        },
        "epsilon_greedy" => Behaviour::EpsilonGreedy {
            q: layers,
            epsilon: header.epsilon,
        },
        k => bail!("{}: unknown behaviour kind `{k}`", path.display()),
    };
    Ok((b, header))
}

/// Writes the acting network of a SAC or DQN checkpoint as a behaviour-policy file.
pub fn save_from_checkpoint(checkpoint: &Path, out: &Path, header: &Header) -> Result<()> {
    let (t, _) = orl_nets::checkpoint::load(checkpoint, &Device::Cpu)
        .with_context(|| format!("reading {}", checkpoint.display()))?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    match header.kind.as_str() {
        "tanh_gaussian" => {
            let mut i = 0;
            while let Some(w) = t.get(&format!("actor.trunk.{i}.weight")) {
                tensors.push((format!("layers.{i}.weight"), w.clone()));
                tensors.push((
                    format!("layers.{i}.bias"),
                    t[&format!("actor.trunk.{i}.bias")].clone(),
                ));
                i += 1;
            }
            for h in ["mean", "log_std"] {
                for p in ["weight", "bias"] {
                    let k = format!("actor.{h}.{p}");
                    let v = t
                        .get(&k)
                        .with_context(|| format!("{}: no `{k}`", checkpoint.display()))?;
                    tensors.push((format!("{h}.{p}"), v.clone()));
                }
            }
        }
        "epsilon_greedy" => {
            // Member 0 of the DQN critic ensemble: weights [1, in, out], biases [1, 1, out].
            let mut i = 0;
            while let Some(w) = t.get(&format!("critic.{i}.weight")) {
                tensors.push((format!("layers.{i}.weight"), w.get(0)?));
                tensors.push((
                    format!("layers.{i}.bias"),
                    t[&format!("critic.{i}.bias")].get(0)?.get(0)?,
                ));
                i += 1;
            }
        }
        k => bail!("unknown behaviour kind `{k}`"),
    }
    let mut meta = HashMap::new();
    meta.insert("orl.behaviour".to_string(), serde_json::to_string(header)?);
    orl_nets::checkpoint::save(out, &tensors, &meta)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
