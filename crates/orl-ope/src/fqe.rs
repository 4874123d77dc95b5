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

use candle_core::{D, Device, Tensor};
use orl_nets::{Adam, AdamConfig, Mlp, ParamStore, Policy, finite_scalar};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::behavior::standardiser;
use crate::error::{OpeError, Result};
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
    store: ParamStore,
    kind: ActionKind,
    obs_dim: usize,
    k: usize,
    mean: Tensor,
    std: Tensor,
    /// Continuous: `[N * k * act]` sampled actions at `s` / `s'`. Discrete: `[N * n]` probabilities.
    at_s: Vec<f32>,
    at_s2: Vec<f32>,
    horizon: usize,
    /// Final TD loss.
    pub final_loss: f64,
    /// How the fit went.
    pub fit: Option<FqeFit>,
}

fn gather(src: &[f32], rows: &[usize], width: usize) -> Vec<f32> {
    rows.iter()
        .flat_map(|&i| src[i * width..(i + 1) * width].iter().copied())
        .collect()
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
        let (mean, std) = standardiser(&data.obs, od)?;
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut store = ParamStore::new(Device::Cpu);
        let q = Mlp::new(&mut store.builder("fqe", &mut rng), input, &cfg.hidden, out)?;
        let mut fqe = Self {
            q,
            store,
            kind: data.kind,
            obs_dim: od,
            k,
            mean,
            std,
            at_s,
            at_s2,
            horizon,
            final_loss: f64::NAN,
            fit: None,
        };
        // The target network: the same layers over a second store, copied from `Q` at step 0
        // and every `target_update_interval` steps below.
        let target_q = {
            let mut r = Pcg64Mcg::seed_from_u64(seed);
            let mut tmp = ParamStore::new(Device::Cpu);
            let net = Mlp::new(&mut tmp.builder("fqe", &mut r), input, &cfg.hidden, out)?;
            (net, tmp)
        };
        let mut opt = Adam::new(&fqe.store, AdamConfig::with_lr(cfg.lr))?;
        let n = data.len();
        let mut history: Vec<f64> = Vec::new();
        for step in 0..total {
            if step % cfg.target_update_interval == 0 {
                if step > 0 {
                    let v0 = fqe.initial_values(data)?;
                    history.push(v0.iter().sum::<f64>() / v0.len().max(1) as f64);
                }
                target_q.1.copy_from(&fqe.store)?;
            }
            let idx: Vec<usize> = (0..cfg.batch_size)
                .map(|_| rng.random_range(0..n))
                .collect();
            let r = Tensor::from_vec(
                idx.iter()
                    .map(|&i| data.rewards[i] as f32)
                    .collect::<Vec<_>>(),
                idx.len(),
                &Device::Cpu,
            )?;
            // No bootstrap past termination or the time limit.
            let nd = Tensor::from_vec(
                idx.iter()
                    .map(|&i| {
                        let cut = data.timeouts[i] || data.steps[i] as usize + 1 >= horizon;
                        if data.terminals[i] || cut {
                            0f32
                        } else {
                            gamma as f32
                        }
                    })
                    .collect::<Vec<_>>(),
                idx.len(),
                &Device::Cpu,
            )?;
            let s2 = gather(&data.next_obs, &idx, od);
            let t2: Vec<usize> = idx.iter().map(|&i| data.steps[i] as usize + 1).collect();
            let v2 = fqe
                .value_with(&target_q.0, &s2, &t2, &idx, &fqe.at_s2)?
                .detach();
            let y = (r + (nd * v2)?)?;
            let s = gather(&data.obs, &idx, od);
            let t: Vec<usize> = idx.iter().map(|&i| data.steps[i] as usize).collect();
            let q = fqe.q_logged_rows(&fqe.q, data, &s, &t, &idx)?;
            let loss = (q - y)?.sqr()?.mean_all()?;
            let v = finite_scalar("fqe", &loss).map_err(|_| OpeError::NonFinite {
                model: "FQE",
                name: "TD loss".into(),
                step,
            })?;
            fqe.final_loss = f64::from(v);
            opt.backward_step(&loss)?;
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

    /// Standardised observations with the remaining fraction of the horizon `(T - t) / T`
    /// appended: `[B, obs + 1]`.
    fn input(&self, s: &[f32], t: &[usize]) -> Result<Tensor> {
        let od = self.obs_dim;
        let x = Tensor::from_slice(s, (s.len() / od, od), &Device::Cpu)?
            .broadcast_sub(&self.mean)?
            .broadcast_div(&self.std)?;
        let h = self.horizon as f32;
        let tau: Vec<f32> = t.iter().map(|&t| (h - t as f32).max(0.0) / h).collect();
        let tau = Tensor::from_vec(tau, (t.len(), 1), &Device::Cpu)?;
        Ok(Tensor::cat(&[&x, &tau], 1)?)
    }

    /// `E_{a~pi} Q(s_i, a, t_i)` for rows `idx` with observations `s` (gathered), steps `t` and
    /// the policy's precomputed actions/probabilities `table` (`at_s` or `at_s2`): `[B]`.
    fn value_with(
        &self,
        net: &Mlp,
        s: &[f32],
        t: &[usize],
        idx: &[usize],
        table: &[f32],
    ) -> Result<Tensor> {
        let b = idx.len();
        let x = self.input(s, t)?;
        let w = self.obs_dim + 1;
        Ok(match self.kind {
            ActionKind::Continuous(d) => {
                let k = self.k;
                let a: Vec<f32> = idx
                    .iter()
                    .flat_map(|&i| table[i * k * d..(i + 1) * k * d].iter().copied())
                    .collect();
                let a = Tensor::from_vec(a, (b * k, d), &Device::Cpu)?;
                let xr = x
                    .unsqueeze(1)?
                    .broadcast_as((b, k, w))?
                    .reshape((b * k, w))?;
                net.forward(&Tensor::cat(&[&xr, &a], 1)?)?
                    .reshape((b, k))?
                    .mean(1)?
            }
            ActionKind::Discrete(n) => {
                let p = Tensor::from_vec(gather(table, idx, n), (b, n), &Device::Cpu)?;
                (net.forward(&x)? * p)?.sum(D::Minus1)?
            }
        })
    }

    /// `Q(s_i, a_i, t_i)` at the logged actions of rows `idx`: `[B]`.
    fn q_logged_rows(
        &self,
        net: &Mlp,
        data: &Logged,
        s: &[f32],
        t: &[usize],
        idx: &[usize],
    ) -> Result<Tensor> {
        let b = idx.len();
        let x = self.input(s, t)?;
        Ok(match self.kind {
            ActionKind::Continuous(d) => {
                let a = Tensor::from_vec(gather(&data.act_f32, idx, d), (b, d), &Device::Cpu)?;
                net.forward(&Tensor::cat(&[&x, &a], 1)?)?.squeeze(1)?
            }
            ActionKind::Discrete(_) => {
                let a = Tensor::from_vec(
                    idx.iter().map(|&i| data.act_u32[i]).collect::<Vec<u32>>(),
                    b,
                    &Device::Cpu,
                )?;
                net.forward(&x)?.gather(&a.unsqueeze(1)?, 1)?.squeeze(1)?
            }
        })
    }

    /// `(Q(s_t, a_t), V(s_t))` for every logged row (the inputs of DR and WDR).
    pub fn q_and_v(&self, data: &Logged) -> Result<(Vec<f64>, Vec<f64>)> {
        let od = self.obs_dim;
        let (mut q, mut v) = (
            Vec::with_capacity(data.len()),
            Vec::with_capacity(data.len()),
        );
        let mut start = 0;
        while start < data.len() {
            let end = (start + 2048).min(data.len());
            let idx: Vec<usize> = (start..end).collect();
            let t: Vec<usize> = idx.iter().map(|&i| data.steps[i] as usize).collect();
            let s = &data.obs[start * od..end * od];
            q.extend(
                self.q_logged_rows(&self.q, data, s, &t, &idx)?
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?,
            );
            v.extend(
                self.value_with(&self.q, s, &t, &idx, &self.at_s)?
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?,
            );
            start = end;
        }
        Ok((q, v))
    }

    /// `V(s0)` (at `t = 0`) of the first state of every kept episode.
    pub fn initial_values(&self, data: &Logged) -> Result<Vec<f64>> {
        let od = self.obs_dim;
        let idx: Vec<usize> = data.episodes.iter().map(|r| r.start).collect();
        let s = gather(&data.obs, &idx, od);
        let t = vec![0; idx.len()];
        Ok(self
            .value_with(&self.q, &s, &t, &idx, &self.at_s)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?)
    }
}
