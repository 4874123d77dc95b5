//! DQN (Mnih et al. 2015) with the double-DQN target (van Hasselt, Guez & Silver 2016).
//!
//! ```text
//! y = r + gamma (1 - d) Q'(s', argmax_a Q(s', a))        (double)   or   max_a Q'(s', a)   (plain)
//! L = huber(Q(s, a), y)
//! Q' <- Q every `target_update_interval` updates
//! ```
//!
//! In orl, DQN trains discrete behaviour policies online (`orl_algos::train_online`) and serves as
//! the unconstrained baseline in the extrapolation tests: trained offline, it over-values
//! actions the data never takes, which is what CQL, IQL and BCQ are built to avoid. Discrete CQL
//! is this loss plus its regulariser ([`td_grad`] with `cql_alpha > 0`).
//!
//! Gradient with respect to the network output (`B` rows, `n` actions, `d_b = Q(s_b, a_b) - y_b`):
//!
//! ```text
//! dL/dQ(s_b, k) = huber'(d_b) 1(k = a_b) / B        huber'(d) = d if |d| < 1 else sign(d)
//!   (+ cql_alpha (softmax_k(Q(s_b, .)) - 1(k = a_b)) / B for discrete CQL)
//! ```

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::AdamConfig;
use orl_nets::engine::{FlatAdam, Params, QCache, QNet, argmax};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, Core, Metrics, Probe, Spec, check_batch, discrete_indices, host_rows,
    mlp_layer_names, plain_policy, record_value, state_lists,
};
use crate::error::Result;

/// DQN settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DqnConfig {
    /// Hidden sizes of the Q-network.
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub lr: f64,
    /// Hard target update interval (updates).
    pub target_update_interval: usize,
    /// Double-DQN target (argmax by the online network).
    pub double: bool,
}

impl Default for DqnConfig {
    /// 256x256 (rl-zoo's CartPole network), Adam 1e-3 and a hard target update every 1000
    /// updates, double-DQN target (van Hasselt et al. 2016). rl-zoo's lr 2.3e-3 with a target
    /// update every 10 steps assumes 128 updates per 256 steps; with one update per step, as
    /// `train_online` does, it did not learn CartPole here (mean return 9.5 over the last 10 of
    /// 20 000 steps), while 1e-3 / 1000 reached 167 (64x64, `benches/examples/online_check.rs`).
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            lr: 1e-3,
            target_update_interval: 1000,
            double: true,
        }
    }
}
/// DQN.
pub struct Dqn {
    cfg: DqnConfig,
    core: Core,
    q: QNet,
    q_params: Params,
    q_target: Params,
    opt: FlatAdam,
    scratch: TdScratch,
}

/// Buffers of [`td_grad`].
#[derive(Default)]
pub(crate) struct TdScratch {
    pub(crate) q: QCache,
    q_online: QCache,
    q_next: QCache,
    y: Vec<f32>,
    pub(crate) idx: Vec<u32>,
}

/// What [`td_grad`] reports.
pub(crate) struct TdOut {
    pub(crate) loss: f64,
    pub(crate) q_mean: f64,
    pub(crate) td: f64,
    /// `mean_b logsumexp_a Q(s_b, a) - Q(s_b, a_b)`.
    pub(crate) gap: f64,
}

/// The (double-)DQN Huber loss, plus `cql_alpha (logsumexp_a Q(s, a) - Q(s, a_data))`, and its
/// gradient into `grad` (the data actions in `sc.idx`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn td_grad(
    q_net: &QNet,
    params: &Params,
    target: &Params,
    batch: &Batch,
    double: bool,
    cql_alpha: f32,
    sc: &mut TdScratch,
    grad: &mut [f32],
) -> TdOut {
    let bsz = batch.batch_size;
    let s2 = &batch.next_observations;
    let q_t = q_net.q_all(target, s2, bsz, &mut sc.q_next);
    let n = q_t.len() / bsz;
    sc.y.resize(bsz, 0.0);
    let online = if double {
        Some(q_net.q_all(params, s2, bsz, &mut sc.q_online))
    } else {
        None
    };
    for b in 0..bsz {
        let row = &q_t[b * n..(b + 1) * n];
        let v2 = match online {
            Some(o) => row[argmax(&o[b * n..(b + 1) * n]) as usize],
            None => row.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        };
        sc.y[b] = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * v2;
    }
    q_net.q_all(params, &batch.observations, bsz, &mut sc.q);
    let (q, dq) = sc.q.mlp.output_and_dout();
    let (mut huber, mut q_sum, mut td, mut gap) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for b in 0..bsz {
        let row = &q[b * n..(b + 1) * n];
        let k = sc.idx[b] as usize;
        let d = row[k] - sc.y[b];
        let ad = d.abs();
        huber += f64::from(if ad < 1.0 { 0.5 * d * d } else { ad - 0.5 });
        q_sum += f64::from(row[k]);
        td += f64::from(ad);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        gap += f64::from(max + sum.ln() - row[k]);
        let dh = if ad < 1.0 { d } else { d.signum() };
        for (j, g) in dq[b * n..(b + 1) * n].iter_mut().enumerate() {
            let hit = if j == k { 1.0 } else { 0.0 };
            let reg = if cql_alpha > 0.0 {
                cql_alpha * ((row[j] - max).exp() / sum - hit)
            } else {
                0.0
            };
            *g = (dh * hit + reg) / bsz as f32;
        }
    }
    q_net.backward_all(params, &batch.observations, &mut sc.q, grad);
    let bs = bsz as f64;
    let gap = gap / bs;
    TdOut {
        loss: huber / bs + f64::from(cql_alpha) * gap,
        q_mean: q_sum / bs,
        td: td / bs,
        gap,
    }
}

/// The greedy actions `argmax_a Q(s, a)` and the values `Q(s, a)` of a discrete Q-network.
pub(crate) fn greedy(q_net: &QNet, params: &Params, s: &Tensor) -> Result<Tensor> {
    let (x, b) = host_rows(s)?;
    let mut cache = QCache::default();
    let q = q_net.q_all(params, &x, b, &mut cache);
    let n = q.len() / b.max(1);
    let idx: Vec<u32> = q.chunks_exact(n).map(argmax).collect();
    Ok(Tensor::from_vec(idx, b, s.device())?)
}

/// `Q(s_b, a_b)` `[B]` of a one-member discrete Q-network.
pub(crate) fn q_at(q_net: &QNet, params: &Params, s: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (x, b) = host_rows(s)?;
    let (a, _) = host_rows(a)?;
    let mut cache = QCache::default();
    let q = q_net.q_all(params, &x, b, &mut cache);
    let n = q.len() / b.max(1);
    let v: Vec<f32> = (0..b)
        .map(|i| q[i * n + (a[i].max(0.0) as usize).min(n - 1)])
        .collect();
    Ok(Tensor::from_vec(v, b, s.device())?)
}

impl Dqn {
    /// Builds the Q-network and its target for `spec`, initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: DqnConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let n = spec.discrete_n("DQN")?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let (od, h) = (spec.obs_dim, cfg.hidden.clone());
        let mut q_params = Params::new();
        let q = QNet::discrete(&mut q_params.builder("", &mut rng), 1, od, n, &h)?;
        let opt = FlatAdam::new(&q_params, AdamConfig::with_lr(cfg.lr));
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            q,
            q_target: q_params.clone(),
            q_params,
            opt,
            scratch: TdScratch::default(),
        })
    }
    fn prepare(&mut self, batch: &Batch) -> Result<usize> {
        check_batch(batch, &self.core.spec)?;
        let n = self.core.spec.discrete_n("DQN")?;
        discrete_indices(batch, n, &mut self.scratch.idx)?;
        Ok(n)
    }
    /// The loss and its gradient at the current parameters, without changing any state. For
    /// the parity tests.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        let g = self.opt.zero_grad();
        let out = td_grad(
            &self.q,
            &self.q_params,
            &self.q_target,
            batch,
            self.cfg.double,
            0.0,
            &mut self.scratch,
            g,
        );
        Ok(vec![Probe::new(
            "critic_loss",
            out.loss,
            "critic",
            &self.q_params,
            self.opt.grad(),
        )])
    }
}

impl Algorithm for Dqn {
    fn name(&self) -> &'static str {
        "dqn"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        self.prepare(batch)?;
        let step = self.core.steps;
        let mut m = Metrics::new();
        let g = self.opt.zero_grad();
        let out = td_grad(
            &self.q,
            &self.q_params,
            &self.q_target,
            batch,
            self.cfg.double,
            0.0,
            &mut self.scratch,
            g,
        );
        record_value(&mut m, step, "critic_loss", out.loss)?;
        record_value(&mut m, step, "q_mean", out.q_mean)?;
        record_value(&mut m, step, "td_error", out.td)?;
        self.opt.step(&mut self.q_params)?;
        self.core.steps += 1;
        if self
            .core
            .steps
            .is_multiple_of(self.cfg.target_update_interval.max(1))
        {
            self.q_target.copy_from(&self.q_params)?;
        }
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        greedy(&self.q, &self.q_params, s)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(q_at(&self.q, &self.q_params, s, a)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.q_params.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    state_lists! {
        nets ["critic" => q_params, "critic_target" => q_target]
        optims ["critic" => opt]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
