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

use orl_nets::engine::{Activation, FlatAdam, Input, Mlp, MlpCache, Params};
use orl_nets::{AdamConfig, Policy};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::error::{OpeError, Result};
use crate::fit::{Probe, Standardiser, check_finite, draw_rows};
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
/// logged state and next state.
#[derive(Debug)]
pub struct Fqe {
    q: Mlp,
    params: Params,
    target: Params,
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

/// The buffers of one pass, reused from step to step.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    x2: Vec<f32>,
    y: Vec<f32>,
    v: Vec<f32>,
    cache: MlpCache,
    target: MlpCache,
}

/// Which table of the policy's actions a value is taken over.
#[derive(Debug, Clone, Copy)]
enum At {
    S,
    S2,
}

impl Fqe {
    /// Fits `Q^pi` on `data` (seeded).
    pub fn fit(
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
        let mut params = Params::new();
        let q = Mlp::new(
            &mut params.builder("fqe", &mut rng),
            input,
            &cfg.hidden,
            out,
            Activation::Identity,
        )?;
        let mut opt = FlatAdam::new(&params, AdamConfig::with_lr(cfg.lr));
        let mut fqe = Self {
            q,
            target: params.clone(),
            params,
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
                    let v0 = fqe.initial_values(data)?;
                    history.push(v0.iter().sum::<f64>() / v0.len().max(1) as f64);
                }
                fqe.target.copy_from(&fqe.params)?;
            }
            draw_rows(&mut rng, data.len(), cfg.batch_size, &mut idx);
            let loss = fqe.loss_grad(data, &idx, &mut sc, opt.zero_grad());
            fqe.final_loss = check_finite(loss, "FQE", "TD loss", step)?;
            opt.step(&mut fqe.params)?;
        }
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

    /// `E_{a~pi} Q(s_i, a, t_i)` of `net` (parameters `p`) into `out` for the rows `idx`, with
    /// observations `obs` (`obs_at(i)` the observation of row `i`), steps `t(i)` and the policy's
    /// precomputed actions/probabilities at those states (`at`).
    #[allow(clippy::too_many_arguments)]
    fn values(
        &self,
        p: &Params,
        obs: &[f32],
        idx: &[usize],
        step_of: impl Fn(usize) -> usize,
        at: At,
        x: &mut Vec<f32>,
        cache: &mut MlpCache,
        out: &mut Vec<f32>,
    ) {
        let od = self.obs_dim;
        let table = match at {
            At::S => &self.at_s,
            At::S2 => &self.at_s2,
        };
        let b = idx.len();
        x.clear();
        out.clear();
        match self.kind {
            ActionKind::Continuous(d) => {
                let k = self.k;
                for &i in idx {
                    for j in 0..k {
                        let a = &table[(i * k + j) * d..(i * k + j + 1) * d];
                        self.push_input(&obs[i * od..(i + 1) * od], step_of(i), a, x);
                    }
                }
                self.q.forward(p, x, Input::Shared, b * k, cache);
                out.extend(
                    cache
                        .output()
                        .chunks_exact(k)
                        .map(|c| c.iter().sum::<f32>() / k as f32),
                );
            }
            ActionKind::Discrete(n) => {
                for &i in idx {
                    self.push_input(&obs[i * od..(i + 1) * od], step_of(i), &[], x);
                }
                self.q.forward(p, x, Input::Shared, b, cache);
                out.extend(
                    idx.iter()
                        .zip(cache.output().chunks_exact(n))
                        .map(|(&i, q)| {
                            q.iter()
                                .zip(&table[i * n..(i + 1) * n])
                                .map(|(q, p)| q * p)
                                .sum::<f32>()
                        }),
                );
            }
        }
    }

    /// The TD target `y_i = r_i + gamma (1 - cut_i) E_{a'~pi} Q_k(s'_i, a', t_i + 1)` of the
    /// rows `idx` into `sc.y`, where `cut_i` is a termination, a time limit after the row, or
    /// `t_i + 1 = T` (no bootstrap past the horizon).
    fn targets(&self, data: &Logged, idx: &[usize], sc: &mut Scratch) {
        let Scratch {
            x2, v, target, y, ..
        } = sc;
        self.values(
            &self.target,
            &data.next_obs,
            idx,
            |i| data.steps[i] as usize + 1,
            At::S2,
            x2,
            target,
            v,
        );
        y.clear();
        y.extend(idx.iter().zip(v.iter()).map(|(&i, &v2)| {
            let cut =
                data.terminals[i] || data.timeouts[i] || data.steps[i] as usize + 1 >= self.horizon;
            let nd = if cut { 0.0 } else { self.gamma };
            data.rewards[i] as f32 + nd * v2
        }));
    }

    /// The TD loss `L = (1/B) sum_i (Q(s_i, a_i, t_i) - y_i)^2` of the rows `idx` at the logged
    /// actions; `dL/dQ_i = 2 (Q_i - y_i) / B` is back-propagated and the parameter gradients
    /// are added into `grads`. Discrete: `Q(s, .)` has one output per action and only the
    /// logged action's output receives a gradient.
    fn loss_grad(&self, data: &Logged, idx: &[usize], sc: &mut Scratch, grads: &mut [f32]) -> f64 {
        self.targets(data, idx, sc);
        self.logged_inputs(data, idx, &mut sc.x);
        let b = idx.len();
        self.q
            .forward(&self.params, &sc.x, Input::Shared, b, &mut sc.cache);
        let width = self.q.output_dim();
        let (out, dout) = sc.cache.output_and_dout();
        dout.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0f64;
        for (r, (&i, &y)) in idx.iter().zip(&sc.y).enumerate() {
            let col = self.logged_column(data, i);
            let e = out[r * width + col] - y;
            loss += f64::from(e * e);
            dout[r * width + col] = 2.0 * e / b as f32;
        }
        self.q.backward(
            &self.params,
            &sc.x,
            Input::Shared,
            &mut sc.cache,
            Some(grads),
            None,
        );
        loss / b as f64
    }

    /// The TD loss of `rows` and its gradients at the current parameters and target network,
    /// without stepping (`tests/parity.rs`); the probe's `target` holds each row's `y`.
    pub fn probe(&self, data: &Logged, rows: &[usize]) -> Probe {
        Probe::of(&self.params, |grads| {
            let mut sc = Scratch::default();
            let loss = self.loss_grad(data, rows, &mut sc, grads);
            (loss, sc.x, sc.y)
        })
    }

    /// The network's parameters (names `fqe.<l>.weight` / `.bias`, as a candle
    /// [`orl_nets::Mlp`] under the same prefix).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `E_{a~pi} Q(s, a, t)` of the rows `idx` with the current network, in chunks.
    fn values_of(
        &self,
        data: &Logged,
        idx: &[usize],
        step_of: impl Fn(usize) -> usize + Copy,
    ) -> Vec<f64> {
        let (mut x, mut cache, mut v) = (Vec::new(), MlpCache::new(), Vec::new());
        let mut out = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(2048) {
            self.values(
                &self.params,
                &data.obs,
                chunk,
                step_of,
                At::S,
                &mut x,
                &mut cache,
                &mut v,
            );
            out.extend(v.iter().map(|&v| f64::from(v)));
        }
        out
    }

    /// `(Q(s_t, a_t), V(s_t))` for every logged row (the inputs of DR and WDR).
    pub fn q_and_v(&self, data: &Logged) -> Result<(Vec<f64>, Vec<f64>)> {
        let width = self.q.output_dim();
        let mut q = Vec::with_capacity(data.len());
        let (mut x, mut cache) = (Vec::new(), MlpCache::new());
        let all: Vec<usize> = (0..data.len()).collect();
        for chunk in all.chunks(2048) {
            self.logged_inputs(data, chunk, &mut x);
            self.q
                .forward(&self.params, &x, Input::Shared, chunk.len(), &mut cache);
            let out = cache.output();
            q.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(r, &i)| f64::from(out[r * width + self.logged_column(data, i)])),
            );
        }
        let v = self.values_of(data, &all, |i| data.steps[i] as usize);
        Ok((q, v))
    }

    /// `V(s0)` (at `t = 0`) of the first state of every kept episode.
    pub fn initial_values(&self, data: &Logged) -> Result<Vec<f64>> {
        let idx: Vec<usize> = data.episodes.iter().map(|r| r.start).collect();
        Ok(self.values_of(data, &idx, |_| 0))
    }
}
