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
//!
//! The loss and its gradient are written once, as elementwise kernels over the engine's
//! [`Backend`] (the standardised inputs and the logged actions are assembled on the host and
//! uploaded per batch): [`BehaviorModel`] fits on the CPU engine, [`BehaviorModel::fit_on`] on
//! any backend.

use orl_nets::engine::backend::{Backend, Cpu, Map2, Map3, Product, Scalar};
use orl_nets::engine::{Activation, Input, LogSoftmaxBufs, Mlp, Params, log_softmax_on};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::fit::{Probe, Standardiser, Trained, draw_rows};
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

/// A fitted behaviour policy, on backend `B` (the CPU engine by default).
pub struct BehaviorModel<B: Backend = Cpu> {
    net: Mlp,
    be: B,
    params: B::Params,
    kind: ActionKind,
    scaler: Standardiser,
    /// Final training loss (mean negative log-likelihood).
    pub final_nll: f64,
}

impl<B: Backend> std::fmt::Debug for BehaviorModel<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BehaviorModel")
            .field("backend", &self.be.name())
            .field("net", &self.net)
            .field("kind", &self.kind)
            .field("final_nll", &self.final_nll)
            .finish_non_exhaustive()
    }
}

/// The buffers of one pass, reused from step to step.
struct Scratch<B: Backend> {
    /// Host staging of the standardised observations and of the actions (continuous) or their
    /// one-hot rows (discrete).
    host_x: Vec<f32>,
    host_a: Vec<f32>,
    x: B::Buf,
    a: B::Buf,
    cache: B::Cache,
    /// Continuous: the mean and raw log-std columns of the output, and the log-density terms.
    m: B::Buf,
    l: B::Buf,
    terms: B::Buf,
    /// Discrete: the log-softmax rows `[B, n]`, and `onehot * lsm` before its row sum.
    lsm: B::Buf,
    picked: B::Buf,
    softmax: LogSoftmaxBufs<B>,
    /// `log mu(a_b|s_b)`, `[B, 1]`.
    lp: B::Buf,
    dm: B::Buf,
    dl: B::Buf,
    dout: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            host_x: Vec::new(),
            host_a: Vec::new(),
            x: B::Buf::default(),
            a: B::Buf::default(),
            cache: B::Cache::default(),
            m: B::Buf::default(),
            l: B::Buf::default(),
            terms: B::Buf::default(),
            lsm: B::Buf::default(),
            picked: B::Buf::default(),
            softmax: LogSoftmaxBufs::default(),
            lp: B::Buf::default(),
            dm: B::Buf::default(),
            dl: B::Buf::default(),
            dout: B::Buf::default(),
        }
    }
}

impl BehaviorModel {
    /// Fits `mu_hat` to `data` (seeded) on the CPU engine.
    pub fn fit(data: &Logged, cfg: &BehaviorConfig, seed: u64) -> Result<Self> {
        Self::fit_on(Cpu, data, cfg, seed)
    }
}

impl<B: Backend> BehaviorModel<B> {
    /// Fits `mu_hat` to `data` (seeded) on backend `be`; the initial parameters and the
    /// batches are those of [`BehaviorModel::fit`].
    pub fn fit_on(be: B, data: &Logged, cfg: &BehaviorConfig, seed: u64) -> Result<Self> {
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
        let mut host = Params::new();
        let net = Mlp::new(
            &mut host.builder("behavior", &mut rng),
            od,
            &cfg.hidden,
            out,
            Activation::Identity,
        )?;
        let mut t = Trained::new(be, &host, cfg.lr)?;
        let scaler = Standardiser::of(&data.obs, od);
        let mut sc = Scratch::default();
        let mut idx = Vec::with_capacity(cfg.batch_size);
        let mut final_nll = f64::NAN;
        for step in 0..cfg.steps {
            draw_rows(&mut rng, data.len(), cfg.batch_size, &mut idx);
            final_nll = t.step(
                "behaviour model",
                "negative log-likelihood",
                step,
                |be, p, grads| loss_grad(be, &net, p, &scaler, data, &idx, &mut sc, grads),
            )?;
        }
        Ok(Self {
            net,
            be: t.be,
            params: t.params,
            kind: data.kind,
            scaler,
            final_nll,
        })
    }

    /// The negative log-likelihood of `rows` and its gradients at the current parameters,
    /// without stepping (`tests/parity.rs`).
    pub fn probe(&self, data: &Logged, rows: &[usize]) -> Result<Probe> {
        Probe::of(&self.be, &self.params, |grads| {
            let mut sc = Scratch::default();
            let nll = loss_grad(
                &self.be,
                &self.net,
                &self.params,
                &self.scaler,
                data,
                rows,
                &mut sc,
                grads,
            )?;
            Ok((nll, sc.host_x, Vec::new()))
        })
    }

    /// The network's parameters on the host (names `behavior.<l>.weight` / `.bias`, as a
    /// candle [`orl_nets::Mlp`] under the same prefix).
    pub fn params(&self) -> Result<Params> {
        Ok(self.be.host_params(&self.params)?.into_owned())
    }

    /// `log mu_hat(a_i|s_i)` for every logged row.
    pub fn log_probs(&self, data: &Logged) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(data.len());
        let mut sc = Scratch::default();
        let mut host = Vec::new();
        let all: Vec<usize> = (0..data.len()).collect();
        for rows in all.chunks(4096) {
            log_probs_of(
                &self.be,
                &self.net,
                &self.params,
                &self.scaler,
                data,
                rows,
                &mut sc,
            )?;
            self.be.download(&sc.lp, &mut host)?;
            out.extend(host.iter().map(|&v| f64::from(v)));
        }
        Ok(out)
    }
}

/// The standardised observations and the logged actions of `rows` uploaded, the forward pass,
/// and `log mu(a_i|s_i)` into `sc.lp` (`[B, 1]`; discrete: the whole log-softmax rows into
/// `sc.lsm`).
fn log_probs_of<B: Backend>(
    be: &B,
    net: &Mlp,
    p: &B::Params,
    scaler: &Standardiser,
    data: &Logged,
    rows: &[usize],
    sc: &mut Scratch<B>,
) -> Result<()> {
    let od = scaler.dim();
    sc.host_x.clear();
    sc.host_a.clear();
    for &i in rows {
        scaler.push(&data.obs[i * od..(i + 1) * od], &mut sc.host_x);
        match data.kind {
            ActionKind::Continuous(d) => sc
                .host_a
                .extend_from_slice(&data.act_f32[i * d..(i + 1) * d]),
            ActionKind::Discrete(n) => sc
                .host_a
                .extend((0..n).map(|k| f32::from(u8::from(k as u32 == data.act_u32[i])))),
        }
    }
    be.upload(&sc.host_x, od, &mut sc.x)?;
    be.mlp_forward(net, p, &sc.x, Input::Shared, rows.len(), &mut sc.cache)?;
    let out = be.mlp_output(&sc.cache);
    match data.kind {
        ActionKind::Continuous(d) => {
            be.upload(&sc.host_a, d, &mut sc.a)?;
            be.cols(out, 2 * d, 0, d, &mut sc.m)?;
            be.cols(out, 2 * d, d, d, &mut sc.l)?;
            be.map3(&GaussTerm, &sc.a, &sc.m, &sc.l, &mut sc.terms)?;
            be.sum_cols(&sc.terms, d, &mut sc.lp)?;
        }
        ActionKind::Discrete(n) => {
            be.upload(&sc.host_a, n, &mut sc.a)?;
            log_softmax_on(be, out, n, &mut sc.softmax, &mut sc.lsm)?;
            // The one-hot picks the logged action's entry: the other products are zeros.
            be.map2(&Product, &sc.a, &sc.lsm, &mut sc.picked)?;
            be.sum_cols(&sc.picked, n, &mut sc.lp)?;
        }
    }
    Ok(())
}

/// The mean negative log-likelihood of `rows`; its parameter gradients are added into
/// `grads` (module doc).
#[allow(clippy::too_many_arguments)]
fn loss_grad<B: Backend>(
    be: &B,
    net: &Mlp,
    p: &B::Params,
    scaler: &Standardiser,
    data: &Logged,
    rows: &[usize],
    sc: &mut Scratch<B>,
    grads: &mut B::Buf,
) -> Result<f64> {
    log_probs_of(be, net, p, scaler, data, rows, sc)?;
    let bsz = rows.len() as f32;
    let nll = -be.map1_sum(&orl_nets::engine::backend::Identity, &sc.lp)? / f64::from(bsz);
    match data.kind {
        ActionKind::Continuous(d) => {
            be.map3(&GaussDm(bsz), &sc.a, &sc.m, &sc.l, &mut sc.dm)?;
            be.map3(&GaussDl(bsz), &sc.a, &sc.m, &sc.l, &mut sc.dl)?;
            be.concat_cols(&sc.dm, d, &sc.dl, d, &mut sc.dout)?;
        }
        ActionKind::Discrete(_) => be.map2(&CatGrad(bsz), &sc.a, &sc.lsm, &mut sc.dout)?,
    }
    be.mlp_backward(
        net,
        p,
        &sc.x,
        Input::Shared,
        &mut sc.cache,
        &sc.dout,
        Some(grads),
        None,
    )?;
    Ok(nll)
}

// ---- the loss's elementwise kernels (one definition for every backend) ----

/// `(z, sigma)` of one output pair: `sigma = exp(clamp(l, -5, 2))`, `z = (a - m) / sigma`.
fn z_sigma<S: Scalar>(a: S, m: S, l: S) -> (S, S) {
    let sigma = l.clamp(LOG_STD_MIN, LOG_STD_MAX).exp();
    ((a - m) / sigma.clone(), sigma)
}

/// One term of `log mu`: `-z^2 / 2 - ls - log(2 pi) / 2`.
struct GaussTerm;
impl Map3 for GaussTerm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, m: S, l: S) -> S {
        let ls = l.clamp(LOG_STD_MIN, LOG_STD_MAX);
        let z = (a - m) / ls.clone().exp();
        (z.clone().scale(-0.5) * z - ls).shift(-HALF_LOG_2PI)
    }
}

/// `dL/dm = -(1/B) z / sigma`.
struct GaussDm(f32);
impl Map3 for GaussDm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, m: S, l: S) -> S {
        let (z, sigma) = z_sigma(a, m, l);
        (z.scale(-1.0) / sigma).div_by(self.0)
    }
}

/// `dL/dl = -(1/B) (z^2 - 1)` where the clamp passes it.
struct GaussDl(f32);
impl Map3 for GaussDl {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, m: S, l: S) -> S {
        let pass = l.clone().inside(LOG_STD_MIN, LOG_STD_MAX);
        let (z, _) = z_sigma(a, m, l);
        (z.clone() * z).shift(-1.0).scale(-1.0).div_by(self.0) * pass
    }
}

/// `dL/df_k = -(1/B) (1[k = a] - softmax(f)_k)`.
struct CatGrad(f32);
impl Map2 for CatGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, hit: S, lsm: S) -> S {
        (hit - lsm.exp()).scale(-1.0).div_by(self.0)
    }
}
