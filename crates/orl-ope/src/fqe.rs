//! Fitted Q evaluation (Le, Voloshin & Yue 2019, "Batch Policy Learning under Constraints",
//! algorithm 3): repeated regression of `Q` on the policy's Bellman target over the logged data,
//!
//! ```text
//! Q_{k+1} = argmin_Q  E_(s,a,r,s',d)~D [ (Q(s,a) - r - gamma (1 - d) E_{a'~pi(.|s')} Q_k(s',a'))^2 ]
//! V_hat(pi) = E_{s0 ~ D_0} E_{a~pi(.|s0)} Q(s0, a)
//! ```
//!
//! done as d3rlpy's `FQE` does it: one Adam step per batch, `Q_k` a target network copied every
//! `target_update_interval` steps. The expectation over `pi` is exact for discrete actions
//! (`sum_a pi(a|s') Q(s',a)`) and a mean over `action_samples` actions drawn once per row for
//! continuous ones (the samples are drawn before training, so the policy is queried once).
//!
//! **What it estimates.** Every estimator of `orl-ope` values the same quantity: the expected
//! discounted return of the first `T` steps (`T` the time limit, [`Logged::horizon`]), which is
//! what the importance-sampling family and the model rollouts measure on episodes cut at `T`.
//! FQE therefore learns the time-limited `Q(s, a, t)`: its input carries the remaining fraction
//! of the horizon `(T - t) / T`, and it does not bootstrap past a time limit
//! (`y = r` where the episode was cut after the row, or `t + 1 = T`). Bootstrapping through time
//! limits, as d3rlpy's FQE does, estimates the infinite-horizon value instead: on 200-step
//! Pendulum at gamma 0.99 about 1.15 times the time-limited one.
//!
//! **Convergence.** Value propagates one step per target copy, so the default number of steps
//! (`steps = None`) gives `min(T, ln(1e-3) / ln(gamma)) + 10%` copies (every reward that carries
//! more than 0.1% of the weight of the first is reached), at least 10 000 steps. The mean
//! initial value is recorded at every copy; the fit counts as converged when it moved by less
//! than 1% (relative) over the last tenth of the copies ([`FqeFit`]).
//!
//! Shapes: continuous `Q: [B, obs + 1 + act] -> [B]`, discrete `Q: [B, obs + 1] -> [B, n]`.
//!
//! The network inputs (standardised states, horizon fraction, the policy's precomputed actions)
//! are assembled on the host and uploaded per batch; the expectation over `pi`, the target and
//! the loss's gradient are written once, as kernels over the engine's [`Backend`]:
//! [`Fqe::fit`] runs on the CPU engine, [`Fqe::fit_on`] on any backend.

use orl_nets::Policy;
use orl_nets::engine::backend::{Backend, Bellman, Cpu, Map1, Map3, Product, Scalar};
use orl_nets::engine::{Activation, Input, Mlp, Params};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::fit::{Probe, Standardiser, Trained, draw_rows};
use crate::logged::{ActionKind, Logged, action_probs, sample_actions};

/// Settings of FQE.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FqeConfig {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Gradient steps (`None`: enough target copies for the discount's horizon, see the
    /// module doc).
    pub steps: Option<usize>,
    /// Batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Steps between copies of `Q` into the target `Q_k` (one FQE iteration).
    pub target_update_interval: usize,
    /// Actions sampled per state for `E_{a~pi}` (continuous actions only).
    pub action_samples: usize,
}

impl Default for FqeConfig {
    /// d3rlpy 2.x `FQEConfig`: learning rate 1e-4, batch size 100, target update interval 100,
    /// and its default 256x256 encoder. d3rlpy leaves the number of steps to the caller; orl
    /// derives it from the discount and the horizon (module doc) and takes 4 action samples,
    /// its own choice.
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            steps: None,
            batch_size: 100,
            lr: 1e-4,
            target_update_interval: 100,
            action_samples: 4,
        }
    }
}

/// How an FQE fit went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FqeFit {
    /// Gradient steps taken.
    pub steps: usize,
    /// Target copies (FQE iterations).
    pub iterations: usize,
    /// The horizon `T` the value is cut at.
    pub horizon: usize,
    /// Relative change of the mean initial value over the last tenth of the iterations.
    pub last_change: f64,
    /// `last_change < 1%`.
    pub converged: bool,
    /// Final TD loss.
    pub final_loss: f64,
}

impl FqeFit {
    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "FQE {}: {} steps ({} target copies), the mean initial value moved {:.2}% over the last tenth{}",
            if self.converged {
                "converged"
            } else {
                "did not converge"
            },
            self.steps,
            self.iterations,
            100.0 * self.last_change,
            if self.converged {
                ""
            } else {
                " (raise fqe.steps or the learning rate)"
            }
        )
    }
}

/// The default number of FQE steps for discount `gamma` and horizon `horizon` (module doc).
pub fn default_steps(gamma: f64, horizon: usize, target_update_interval: usize) -> usize {
    let reach = if gamma > 0.0 && gamma < 1.0 {
        ((1e-3f64).ln() / gamma.ln()).ceil() as usize
    } else {
        horizon
    };
    let copies = reach.min(horizon).max(1);
    let copies = copies + copies.div_ceil(10);
    (copies * target_update_interval.max(1)).max(10_000)
}

/// A fitted Q-function of the evaluated policy, with the policy's action distribution at every
/// logged state and next state, on backend `B` (the CPU engine by default).
pub struct Fqe<B: Backend = Cpu> {
    q: Mlp,
    be: B,
    params: B::Params,
    target: B::Params,
    kind: ActionKind,
    obs_dim: usize,
    k: usize,
    scaler: Standardiser,
    /// Continuous: `[N * k * act]` sampled actions at `s` / `s'`. Discrete: `[N * n]` probabilities.
    at_s: Vec<f32>,
    at_s2: Vec<f32>,
    horizon: usize,
    gamma: f32,
    /// Final TD loss.
    pub final_loss: f64,
    /// How the fit went.
    pub fit: Option<FqeFit>,
}

impl<B: Backend> std::fmt::Debug for Fqe<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fqe")
            .field("backend", &self.be.name())
            .field("q", &self.q)
            .field("kind", &self.kind)
            .field("horizon", &self.horizon)
            .field("final_loss", &self.final_loss)
            .field("fit", &self.fit)
            .finish_non_exhaustive()
    }
}

/// The buffers of `E_{a~pi} Q` over some rows ([`Fqe::values`]).
struct ValueBufs<B: Backend> {
    host_x: Vec<f32>,
    host_p: Vec<f32>,
    x: B::Buf,
    p: B::Buf,
    cache: B::Cache,
    weighted: B::Buf,
    sum: B::Buf,
    /// `[B, 1]`.
    v: B::Buf,
}

impl<B: Backend> Default for ValueBufs<B> {
    fn default() -> Self {
        Self {
            host_x: Vec::new(),
            host_p: Vec::new(),
            x: B::Buf::default(),
            p: B::Buf::default(),
            cache: B::Cache::default(),
            weighted: B::Buf::default(),
            sum: B::Buf::default(),
            v: B::Buf::default(),
        }
    }
}

/// The buffers of one TD step, reused from step to step.
struct Scratch<B: Backend> {
    next: ValueBufs<B>,
    host_x: Vec<f32>,
    host_r: Vec<f32>,
    host_nd: Vec<f32>,
    host_mask: Vec<f32>,
    x: B::Buf,
    r: B::Buf,
    nd: B::Buf,
    mask: B::Buf,
    cache: B::Cache,
    /// `[B, 1]`.
    y: B::Buf,
    y_wide: B::Buf,
    err: B::Buf,
    dout: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            next: ValueBufs::default(),
            host_x: Vec::new(),
            host_r: Vec::new(),
            host_nd: Vec::new(),
            host_mask: Vec::new(),
            x: B::Buf::default(),
            r: B::Buf::default(),
            nd: B::Buf::default(),
            mask: B::Buf::default(),
            cache: B::Cache::default(),
            y: B::Buf::default(),
            y_wide: B::Buf::default(),
            err: B::Buf::default(),
            dout: B::Buf::default(),
        }
    }
}

/// Which table of the policy's actions a value is taken over.
#[derive(Debug, Clone, Copy)]
enum At {
    S,
    S2,
}

impl Fqe {
    /// Fits `Q^pi` on `data` (seeded) on the CPU engine.
    pub fn fit(
        data: &Logged,
        policy: &mut dyn Policy,
        gamma: f64,
        cfg: &FqeConfig,
        seed: u64,
    ) -> Result<Self> {
        Self::fit_on(Cpu, data, policy, gamma, cfg, seed)
    }
}

impl<B: Backend> Fqe<B> {
    /// Fits `Q^pi` on `data` (seeded) on backend `be`; the initial parameters, the policy's
    /// samples and the batches are those of [`Fqe::fit`].
    pub fn fit_on(
        be: B,
        data: &Logged,
        policy: &mut dyn Policy,
        gamma: f64,
        cfg: &FqeConfig,
        seed: u64,
    ) -> Result<Self> {
        if cfg.steps == Some(0) || cfg.batch_size == 0 || cfg.target_update_interval == 0 {
            return Err(OpeError::Config(
                "FQE: steps, batch_size and target_update_interval must be positive".into(),
            ));
        }
        let horizon = data.horizon.max(1);
        let total = cfg
            .steps
            .unwrap_or_else(|| default_steps(gamma, horizon, cfg.target_update_interval));
        let od = data.obs_dim;
        let k = cfg.action_samples.max(1);
        let (at_s, at_s2, input, out) = match data.kind {
            ActionKind::Continuous(d) => {
                let a = sample_actions(policy, &data.obs, od, k)?;
                let a2 = sample_actions(policy, &data.next_obs, od, k)?;
                (
                    a.flatten_all()?.to_vec1::<f32>()?,
                    a2.flatten_all()?.to_vec1::<f32>()?,
                    od + 1 + d,
                    1,
                )
            }
            ActionKind::Discrete(n) => {
                let p = action_probs(policy, &data.obs, od, n)?;
                let p2 = action_probs(policy, &data.next_obs, od, n)?;
                (
                    p.into_iter().map(|x| x as f32).collect(),
                    p2.into_iter().map(|x| x as f32).collect(),
                    od + 1,
                    n,
                )
            }
        };
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut host = Params::new();
        let q = Mlp::new(
            &mut host.builder("fqe", &mut rng),
            input,
            &cfg.hidden,
            out,
            Activation::Identity,
        )?;
        let mut t = Trained::new(be, &host, cfg.lr)?;
        let mut fqe = Self {
            q,
            target: t.be.place(&host)?,
            params: t.be.place(&host)?,
            be: t.be.clone(),
            kind: data.kind,
            obs_dim: od,
            k,
            scaler: Standardiser::of(&data.obs, od),
            at_s,
            at_s2,
            horizon,
            gamma: gamma as f32,
            final_loss: f64::NAN,
            fit: None,
        };
        let mut sc = Scratch::default();
        let mut idx = Vec::with_capacity(cfg.batch_size);
        let mut history: Vec<f64> = Vec::new();
        for step in 0..total {
            if step % cfg.target_update_interval == 0 {
                if step > 0 {
                    let v0 = fqe.initial_values_with(data, &t.params)?;
                    history.push(v0.iter().sum::<f64>() / v0.len().max(1) as f64);
                }
                t.be.soft_update(&mut fqe.target, &t.params, 1.0)?;
            }
            draw_rows(&mut rng, data.len(), cfg.batch_size, &mut idx);
            fqe.final_loss = t.step("FQE", "TD loss", step, |be, p, grads| {
                fqe.loss_grad(be, p, data, &idx, &mut sc, grads)
            })?;
        }
        fqe.params = t.params;
        let v0 = fqe.initial_values(data)?;
        history.push(v0.iter().sum::<f64>() / v0.len().max(1) as f64);
        let window = (history.len() / 10).max(1).min(history.len() - 1);
        let last = history[history.len() - 1];
        let before = history[history.len() - 1 - window.min(history.len() - 1)];
        let last_change = if history.len() < 2 {
            f64::INFINITY
        } else {
            (last - before).abs() / last.abs().max(before.abs()).max(1e-12)
        };
        fqe.fit = Some(FqeFit {
            steps: total,
            iterations: total.div_ceil(cfg.target_update_interval),
            horizon,
            last_change,
            converged: last_change < 0.01,
            final_loss: fqe.final_loss,
        });
        Ok(fqe)
    }

    /// Appends the network input of one row to `x`: the standardised observation `s`, the
    /// remaining fraction of the horizon `(T - t) / T`, then the action `a` (continuous; empty
    /// for discrete).
    fn push_input(&self, s: &[f32], t: usize, a: &[f32], x: &mut Vec<f32>) {
        self.scaler.push(s, x);
        let h = self.horizon as f32;
        x.push((h - t as f32).max(0.0) / h);
        x.extend_from_slice(a);
    }

    /// The network inputs of rows `idx` at their logged steps and actions into `x` (cleared).
    fn logged_inputs(&self, data: &Logged, idx: &[usize], x: &mut Vec<f32>) {
        let od = self.obs_dim;
        x.clear();
        for &i in idx {
            let a: &[f32] = match self.kind {
                ActionKind::Continuous(d) => &data.act_f32[i * d..(i + 1) * d],
                ActionKind::Discrete(_) => &[],
            };
            self.push_input(
                &data.obs[i * od..(i + 1) * od],
                data.steps[i] as usize,
                a,
                x,
            );
        }
    }

    /// The output column of `Q` at row `i`'s logged action (0 for continuous actions).
    fn logged_column(&self, data: &Logged, i: usize) -> usize {
        match self.kind {
            ActionKind::Continuous(_) => 0,
            ActionKind::Discrete(_) => data.act_u32[i] as usize,
        }
    }

    /// `E_{a~pi} Q(s_i, a, t_i)` of the network with parameters `p` into `c.v` (`[B, 1]`) for
    /// the rows `idx`, with observations `obs`, steps `step_of(i)` and the policy's precomputed
    /// actions/probabilities at those states (`at`): the mean of `Q` over the `k` sampled
    /// actions (continuous), `sum_a pi(a|s) Q(s, a)` (discrete).
    #[allow(clippy::too_many_arguments)]
    fn values(
        &self,
        be: &B,
        p: &B::Params,
        obs: &[f32],
        idx: &[usize],
        step_of: impl Fn(usize) -> usize,
        at: At,
        c: &mut ValueBufs<B>,
    ) -> Result<()> {
        let od = self.obs_dim;
        let table = match at {
            At::S => &self.at_s,
            At::S2 => &self.at_s2,
        };
        let b = idx.len();
        c.host_x.clear();
        let width = self.q.input_dim();
        match self.kind {
            ActionKind::Continuous(d) => {
                let k = self.k;
                for &i in idx {
                    for j in 0..k {
                        let a = &table[(i * k + j) * d..(i * k + j + 1) * d];
                        self.push_input(&obs[i * od..(i + 1) * od], step_of(i), a, &mut c.host_x);
                    }
                }
                be.upload(&c.host_x, width, &mut c.x)?;
                be.mlp_forward(&self.q, p, &c.x, Input::Shared, b * k, &mut c.cache)?;
                // The `[B k, 1]` output read as `[B, k]`: one row per state.
                be.sum_cols(be.mlp_output(&c.cache), k, &mut c.sum)?;
                be.map1(&DivBy(k as f32), &c.sum, &mut c.v)?;
            }
            ActionKind::Discrete(n) => {
                c.host_p.clear();
                for &i in idx {
                    self.push_input(&obs[i * od..(i + 1) * od], step_of(i), &[], &mut c.host_x);
                    c.host_p.extend_from_slice(&table[i * n..(i + 1) * n]);
                }
                be.upload(&c.host_x, width, &mut c.x)?;
                be.upload(&c.host_p, n, &mut c.p)?;
                be.mlp_forward(&self.q, p, &c.x, Input::Shared, b, &mut c.cache)?;
                be.map2(&Product, be.mlp_output(&c.cache), &c.p, &mut c.weighted)?;
                be.sum_cols(&c.weighted, n, &mut c.v)?;
            }
        }
        Ok(())
    }

    /// The TD target `y_i = r_i + gamma (1 - cut_i) E_{a'~pi} Q_k(s'_i, a', t_i + 1)` of the
    /// rows `idx` into `sc.y`, where `cut_i` is a termination, a time limit after the row, or
    /// `t_i + 1 = T` (no bootstrap past the horizon).
    fn targets(&self, be: &B, data: &Logged, idx: &[usize], sc: &mut Scratch<B>) -> Result<()> {
        self.values(
            be,
            &self.target,
            &data.next_obs,
            idx,
            |i| data.steps[i] as usize + 1,
            At::S2,
            &mut sc.next,
        )?;
        sc.host_r.clear();
        sc.host_nd.clear();
        for &i in idx {
            let cut =
                data.terminals[i] || data.timeouts[i] || data.steps[i] as usize + 1 >= self.horizon;
            sc.host_r.push(data.rewards[i] as f32);
            sc.host_nd.push(if cut { 0.0 } else { self.gamma });
        }
        be.upload(&sc.host_r, 1, &mut sc.r)?;
        be.upload(&sc.host_nd, 1, &mut sc.nd)?;
        Ok(be.map3(&Bellman, &sc.r, &sc.nd, &sc.next.v, &mut sc.y)?)
    }

    /// The TD loss `L = (1/B) sum_i (Q(s_i, a_i, t_i) - y_i)^2` of the rows `idx` at the logged
    /// actions and parameters `p`; `dL/dQ_i = 2 (Q_i - y_i) / B` is back-propagated and the
    /// parameter gradients are added into `grads`. Discrete: `Q(s, .)` has one output per
    /// action and only the logged action's output receives a gradient (a one-hot mask `m`:
    /// `e = (Q - y) m`, `L = (1/B) sum e^2`, `dL/dQ = 2 e / B`).
    fn loss_grad(
        &self,
        be: &B,
        p: &B::Params,
        data: &Logged,
        idx: &[usize],
        sc: &mut Scratch<B>,
        grads: &mut B::Buf,
    ) -> Result<f64> {
        self.targets(be, data, idx, sc)?;
        self.logged_inputs(data, idx, &mut sc.host_x);
        let b = idx.len();
        let width = self.q.output_dim();
        sc.host_mask.clear();
        for &i in idx {
            let col = self.logged_column(data, i);
            sc.host_mask
                .extend((0..width).map(|j| f32::from(u8::from(j == col))));
        }
        be.upload(&sc.host_x, self.q.input_dim(), &mut sc.x)?;
        be.upload(&sc.host_mask, width, &mut sc.mask)?;
        be.mlp_forward(&self.q, p, &sc.x, Input::Shared, b, &mut sc.cache)?;
        be.tile_cols(&sc.y, width, &mut sc.y_wide)?;
        be.map3(
            &MaskedError,
            be.mlp_output(&sc.cache),
            &sc.y_wide,
            &sc.mask,
            &mut sc.err,
        )?;
        let loss = be.map1_sum(&Square, &sc.err)?;
        be.map1(&TdGrad(b as f32), &sc.err, &mut sc.dout)?;
        be.mlp_backward(
            &self.q,
            p,
            &sc.x,
            Input::Shared,
            &mut sc.cache,
            &sc.dout,
            Some(grads),
            None,
        )?;
        Ok(loss / b as f64)
    }

    /// The TD loss of `rows` and its gradients at the current parameters and target network,
    /// without stepping (`tests/parity.rs`); the probe's `target` holds each row's `y`.
    pub fn probe(&self, data: &Logged, rows: &[usize]) -> Result<Probe> {
        Probe::of(&self.be, &self.params, |grads| {
            let mut sc = Scratch::default();
            let loss = self.loss_grad(&self.be, &self.params, data, rows, &mut sc, grads)?;
            let mut y = Vec::new();
            self.be.download(&sc.y, &mut y)?;
            Ok((loss, sc.host_x, y))
        })
    }

    /// The network's parameters on the host (names `fqe.<l>.weight` / `.bias`, as a candle
    /// [`orl_nets::Mlp`] under the same prefix).
    pub fn params(&self) -> Result<Params> {
        Ok(self.be.host_params(&self.params)?.into_owned())
    }

    /// `E_{a~pi} Q(s, a, t)` of the rows `idx` with parameters `p`, in chunks.
    fn values_of(
        &self,
        p: &B::Params,
        data: &Logged,
        idx: &[usize],
        step_of: impl Fn(usize) -> usize + Copy,
    ) -> Result<Vec<f64>> {
        let mut c = ValueBufs::default();
        let mut host = Vec::new();
        let mut out = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(2048) {
            self.values(&self.be, p, &data.obs, chunk, step_of, At::S, &mut c)?;
            self.be.download(&c.v, &mut host)?;
            out.extend(host.iter().map(|&v| f64::from(v)));
        }
        Ok(out)
    }

    /// `(Q(s_t, a_t), V(s_t))` for every logged row (the inputs of DR and WDR).
    pub fn q_and_v(&self, data: &Logged) -> Result<(Vec<f64>, Vec<f64>)> {
        let width = self.q.output_dim();
        let mut q = Vec::with_capacity(data.len());
        let (mut host_x, mut x, mut cache, mut out) = (
            Vec::new(),
            B::Buf::default(),
            B::Cache::default(),
            Vec::new(),
        );
        let all: Vec<usize> = (0..data.len()).collect();
        for chunk in all.chunks(2048) {
            self.logged_inputs(data, chunk, &mut host_x);
            self.be.upload(&host_x, self.q.input_dim(), &mut x)?;
            self.be.mlp_forward(
                &self.q,
                &self.params,
                &x,
                Input::Shared,
                chunk.len(),
                &mut cache,
            )?;
            self.be.download(self.be.mlp_output(&cache), &mut out)?;
            q.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(r, &i)| f64::from(out[r * width + self.logged_column(data, i)])),
            );
        }
        let v = self.values_of(&self.params, data, &all, |i| data.steps[i] as usize)?;
        Ok((q, v))
    }

    /// `V(s0)` (at `t = 0`) of the first state of every kept episode.
    pub fn initial_values(&self, data: &Logged) -> Result<Vec<f64>> {
        self.initial_values_with(data, &self.params)
    }

    /// [`Fqe::initial_values`] with parameters `p` (the network being fitted).
    fn initial_values_with(&self, data: &Logged, p: &B::Params) -> Result<Vec<f64>> {
        let idx: Vec<usize> = data.episodes.iter().map(|r| r.start).collect();
        self.values_of(p, data, &idx, |_| 0)
    }
}

// ---- the elementwise kernels (one definition for every backend) ----

/// `x / k`.
struct DivBy(f32);
impl Map1 for DivBy {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.div_by(self.0)
    }
}

/// `e = (q - y) m`.
struct MaskedError;
impl Map3 for MaskedError {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q: S, y: S, m: S) -> S {
        (q - y) * m
    }
}

/// `e^2`.
struct Square;
impl Map1 for Square {
    #[inline(always)]
    fn apply<S: Scalar>(&self, e: S) -> S {
        e.clone() * e
    }
}

/// `dL/dQ = 2 e / B`.
struct TdGrad(f32);
impl Map1 for TdGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, e: S) -> S {
        e.scale(2.0).div_by(self.0)
    }
}
