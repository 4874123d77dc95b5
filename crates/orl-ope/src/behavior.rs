//! The behaviour policy estimated by maximum likelihood on the logged data, as regression
//! importance sampling prescribes (Hanna, Niekum & Stone 2019, "Importance Sampling Policy
//! Evaluation with an Estimated Behavior Policy", ICML, section 4: `mu_hat = argmax_mu
//! sum_(s,a) in D log mu(a|s)` over the same data that is evaluated).
//!
//! - discrete: a categorical MLP, `log mu(a|s) = log_softmax(f(s))_a`, cross-entropy loss;
//! - continuous: a Gaussian MLP with state-dependent mean and log-std,
//!   `f(s) = [m(s), l(s)]`, `ls = clamp(l, -5, 2)`, `sigma = exp(ls)`,
//!   `log mu(a|s) = sum_j log N(a_j; m_j(s), sigma_j(s))`, negative log-likelihood loss.
//!
//! Observations are standardised with the data's mean and std before the network.
//!
//! Loss over a batch of `B` rows and its gradient with respect to the network output
//! (`z = (a - m) / sigma`):
//!
//! ```text
//! continuous  L = -(1/B) sum_b sum_j [ -z^2/2 - ls - log(2 pi)/2 ]
//!             dL/dm_j = -(1/B) z_j / sigma_j
//!             dL/dl_j = -(1/B) (z_j^2 - 1)     where -5 <= l_j <= 2, else 0 (the clamp)
//! discrete    L = -(1/B) sum_b log_softmax(f)_{a_b}
//!             dL/df_k = -(1/B) (1[k = a_b] - softmax(f)_k)
//! ```
//!
//! Shapes: `f: [B, obs] -> [B, 2 act]` (continuous) or `[B, n]` (discrete).

use orl_nets::AdamConfig;
use orl_nets::engine::{Activation, FlatAdam, Input, Mlp, MlpCache, Params, log_softmax};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::fit::{Probe, Standardiser, check_finite, draw_rows};
use crate::logged::{ActionKind, Logged};

const HALF_LOG_2PI: f32 = 0.918_938_5;
const LOG_STD_MIN: f32 = -5.0;
const LOG_STD_MAX: f32 = 2.0;

/// Settings of the behaviour model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BehaviorConfig {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Gradient steps.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for BehaviorConfig {
    /// Hanna et al. (2019) fit their continuous behaviour models with Adam on two hidden layers;
    /// the widths, 5 000 steps, batch 256 and lr 1e-3 (PyTorch's Adam default) are orl's choice,
    /// enough for the likelihood to level off on the classic-control datasets.
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            steps: 5_000,
            batch_size: 256,
            lr: 1e-3,
        }
    }
}

/// A fitted behaviour policy.
#[derive(Debug)]
pub struct BehaviorModel {
    net: Mlp,
    params: Params,
    kind: ActionKind,
    scaler: Standardiser,
    /// Final training loss (mean negative log-likelihood).
    pub final_nll: f64,
}

/// The buffers of one pass, reused from step to step.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    lp: Vec<f32>,
    /// Discrete: the log-softmax rows `[B, n]` behind `lp`, which the gradient reads.
    lsm: Vec<f32>,
    cache: MlpCache,
}

impl BehaviorModel {
    /// Fits `mu_hat` to `data` (seeded).
    pub fn fit(data: &Logged, cfg: &BehaviorConfig, seed: u64) -> Result<Self> {
        if cfg.steps == 0 || cfg.batch_size == 0 {
            return Err(OpeError::Config(
                "behaviour model: steps and batch_size must be positive".into(),
            ));
        }
        let od = data.obs_dim;
        let out = match data.kind {
            ActionKind::Continuous(d) => 2 * d,
            ActionKind::Discrete(n) => n,
        };
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut params = Params::new();
        let net = Mlp::new(
            &mut params.builder("behavior", &mut rng),
            od,
            &cfg.hidden,
            out,
            Activation::Identity,
        )?;
        let mut opt = FlatAdam::new(&params, AdamConfig::with_lr(cfg.lr));
        let mut model = Self {
            net,
            params,
            kind: data.kind,
            scaler: Standardiser::of(&data.obs, od),
            final_nll: f64::NAN,
        };
        let mut sc = Scratch::default();
        let mut idx = Vec::with_capacity(cfg.batch_size);
        for step in 0..cfg.steps {
            draw_rows(&mut rng, data.len(), cfg.batch_size, &mut idx);
            let nll = model.loss_grad(data, &idx, &mut sc, opt.zero_grad());
            model.final_nll =
                check_finite(nll, "behaviour model", "negative log-likelihood", step)?;
            opt.step(&mut model.params)?;
        }
        Ok(model)
    }

    /// The standardised observations of `rows` of `data` into `sc.x`, then the forward pass.
    fn forward(&self, data: &Logged, rows: &[usize], sc: &mut Scratch) {
        let od = self.scaler.dim();
        sc.x.clear();
        for &i in rows {
            self.scaler.push(&data.obs[i * od..(i + 1) * od], &mut sc.x);
        }
        self.net.forward(
            &self.params,
            &sc.x,
            Input::Shared,
            rows.len(),
            &mut sc.cache,
        );
    }

    /// `log mu(a_i|s_i)` of `rows` (their logged actions) after [`BehaviorModel::forward`] on
    /// their observations, into `sc.lp` (`[B]`; discrete: the whole log-softmax rows into
    /// `sc.lsm`).
    fn log_probs_of(&self, data: &Logged, rows: &[usize], sc: &mut Scratch) {
        let out = sc.cache.output();
        sc.lp.clear();
        match self.kind {
            ActionKind::Continuous(d) => {
                for (b, &i) in rows.iter().enumerate() {
                    let f = &out[b * 2 * d..(b + 1) * 2 * d];
                    let a = &data.act_f32[i * d..(i + 1) * d];
                    let mut acc = 0f32;
                    for j in 0..d {
                        let ls = f[d + j].clamp(LOG_STD_MIN, LOG_STD_MAX);
                        let z = (a[j] - f[j]) / ls.exp();
                        acc += -0.5 * z * z - ls - HALF_LOG_2PI;
                    }
                    sc.lp.push(acc);
                }
            }
            ActionKind::Discrete(n) => {
                sc.lsm.resize(rows.len() * n, 0.0);
                for (b, &i) in rows.iter().enumerate() {
                    let row = &mut sc.lsm[b * n..(b + 1) * n];
                    log_softmax(&out[b * n..(b + 1) * n], row);
                    sc.lp.push(row[data.act_u32[i] as usize]);
                }
            }
        }
    }

    /// The mean negative log-likelihood of `rows`; its parameter gradients are added into
    /// `grads` (module doc).
    fn loss_grad(&self, data: &Logged, rows: &[usize], sc: &mut Scratch, grads: &mut [f32]) -> f64 {
        self.forward(data, rows, sc);
        self.log_probs_of(data, rows, sc);
        let bsz = rows.len() as f32;
        let nll = -sc.lp.iter().map(|&v| f64::from(v)).sum::<f64>() / f64::from(bsz);
        let (out, dout) = sc.cache.output_and_dout();
        match self.kind {
            ActionKind::Continuous(d) => {
                for (b, &i) in rows.iter().enumerate() {
                    let f = &out[b * 2 * d..(b + 1) * 2 * d];
                    let g = &mut dout[b * 2 * d..(b + 1) * 2 * d];
                    let a = &data.act_f32[i * d..(i + 1) * d];
                    for j in 0..d {
                        let raw = f[d + j];
                        let sigma = raw.clamp(LOG_STD_MIN, LOG_STD_MAX).exp();
                        let z = (a[j] - f[j]) / sigma;
                        g[j] = -z / sigma / bsz;
                        g[d + j] = if (LOG_STD_MIN..=LOG_STD_MAX).contains(&raw) {
                            -(z * z - 1.0) / bsz
                        } else {
                            0.0
                        };
                    }
                }
            }
            ActionKind::Discrete(n) => {
                for (b, &i) in rows.iter().enumerate() {
                    let row = &sc.lsm[b * n..(b + 1) * n];
                    let a = data.act_u32[i] as usize;
                    for (k, g) in dout[b * n..(b + 1) * n].iter_mut().enumerate() {
                        let hit = if k == a { 1.0 } else { 0.0 };
                        *g = -(hit - row[k].exp()) / bsz;
                    }
                }
            }
        }
        self.net.backward(
            &self.params,
            &sc.x,
            Input::Shared,
            &mut sc.cache,
            Some(grads),
            None,
        );
        nll
    }

    /// The negative log-likelihood of `rows` and its gradients at the current parameters,
    /// without stepping (`tests/parity.rs`).
    pub fn probe(&self, data: &Logged, rows: &[usize]) -> Probe {
        Probe::of(&self.params, |grads| {
            let mut sc = Scratch::default();
            let nll = self.loss_grad(data, rows, &mut sc, grads);
            (nll, sc.x, Vec::new())
        })
    }

    /// The network's parameters (names `behavior.<l>.weight` / `.bias`, as a candle
    /// [`orl_nets::Mlp`] under the same prefix).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `log mu_hat(a_i|s_i)` for every logged row.
    pub fn log_probs(&self, data: &Logged) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(data.len());
        let mut sc = Scratch::default();
        let all: Vec<usize> = (0..data.len()).collect();
        for rows in all.chunks(4096) {
            self.forward(data, rows, &mut sc);
            self.log_probs_of(data, rows, &mut sc);
            out.extend(sc.lp.iter().map(|&v| f64::from(v)));
        }
        Ok(out)
    }
}
