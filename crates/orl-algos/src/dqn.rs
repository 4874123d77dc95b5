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
//!
//! One implementation for every backend (`Dqn<B: Backend>`; [`td_grad`], generic too, is also
//! discrete CQL's): the data action and the greedy
//! target action are gathered through one-hots, the Huber loss and its derivative are kernels
//! (`Huber`, `HuberGrad`, `DqGrad`). On the CPU engine the numbers are the earlier loop's, bit
//! for bit (checked over 200 updates of DQN, plain and double, and of discrete CQL).

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::AdamConfig;
use orl_nets::engine::backend::{
    Abs, Backend, Bellman, Cpu, Difference, ExpShift, Identity, LogSumExp, Map1, Map2, Map3,
    Product, Scalar,
};
use orl_nets::engine::{Params, QBufs, QCache, QNet, argmax};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, BatchBufs, Core, Metrics, Probe, Spec, check_batch, host_rows, mlp_layer_names,
    plain_policy, record_value, state_lists,
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
/// DQN on backend `B`: the CPU engine by default, candle tensors with
/// [`Dqn::new_on`]`(Candle, ..)`.
pub struct Dqn<B: Backend = Cpu> {
    be: B,
    cfg: DqnConfig,
    core: Core,
    q: QNet,
    q_params: B::Params,
    q_target: B::Params,
    opt: B::Adam,
    b: BatchBufs<B>,
    scratch: TdScratch<B>,
}

/// Buffers of [`td_grad`] on backend `B`.
pub(crate) struct TdScratch<B: Backend> {
    q: QBufs<B>,
    q_online: QBufs<B>,
    q_next: QBufs<B>,
    pick: B::Buf,
    hit: B::Buf,
    v2: B::Buf,
    y: B::Buf,
    q_sa: B::Buf,
    d: B::Buf,
    dh: B::Buf,
    dh_t: B::Buf,
    mx: B::Buf,
    mx_t: B::Buf,
    e: B::Buf,
    sum: B::Buf,
    sum_t: B::Buf,
    lse: B::Buf,
    probs: B::Buf,
    dq: B::Buf,
}

impl<B: Backend> Default for TdScratch<B> {
    fn default() -> Self {
        Self {
            q: QBufs::default(),
            q_online: QBufs::default(),
            q_next: QBufs::default(),
            pick: Default::default(),
            hit: Default::default(),
            v2: Default::default(),
            y: Default::default(),
            q_sa: Default::default(),
            d: Default::default(),
            dh: Default::default(),
            dh_t: Default::default(),
            mx: Default::default(),
            mx_t: Default::default(),
            e: Default::default(),
            sum: Default::default(),
            sum_t: Default::default(),
            lse: Default::default(),
            probs: Default::default(),
            dq: Default::default(),
        }
    }
}

/// What [`td_grad`] reports.
pub(crate) struct TdOut {
    pub(crate) loss: f64,
    pub(crate) q_mean: f64,
    pub(crate) td: f64,
    /// `mean_b logsumexp_a Q(s_b, a) - Q(s_b, a_b)`.
    pub(crate) gap: f64,
}

/// The Huber loss `0.5 d^2` for `|d| < 1`, `|d| - 0.5` otherwise, through the mask of `|d| <= 1`
/// (both branches give 0.5 at `|d| = 1`).
struct Huber;

impl Map1 for Huber {
    #[inline(always)]
    fn apply<S: Scalar>(&self, d: S) -> S {
        let m = d.clone().inside(-1.0, 1.0);
        let quad = d.clone().scale(0.5) * d.clone();
        let lin = d.abs().shift(-0.5);
        m.clone() * quad + m.scale(-1.0).shift(1.0) * lin
    }
}

/// `huber'(d) = clamp(d, -1, 1)`.
struct HuberGrad;

impl Map1 for HuberGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, d: S) -> S {
        d.clamp(-1.0, 1.0)
    }
}

/// `dL/dQ(s_b, k) = (huber'(d_b) 1(k = a_b) + alpha (softmax_k - 1(k = a_b))) / B` (`Map3` of the
/// one-hot, the tiled `huber'` and the softmax; `alpha = 0` drops the regulariser's term).
struct DqGrad {
    alpha: f32,
    bsz: f32,
}

impl Map3 for DqGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, hit: S, dh: S, p: S) -> S {
        let reg = if self.alpha > 0.0 {
            (p - hit.clone()).scale(self.alpha)
        } else {
            p.scale(0.0)
        };
        (dh * hit + reg).div_by(self.bsz)
    }
}

/// `a / b`.
struct Quotient;

impl Map2 for Quotient {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a / b
    }
}

/// The (double-)DQN Huber loss, plus `cql_alpha (logsumexp_a Q(s, a) - Q(s, a_data))`, and its
/// gradient into `grad`, on backend `be` (`b`: the uploaded batch, its actions one-hot over
/// `n`). On the CPU engine the same operations in the same order as the engine's loop before
/// the backend trait.
#[allow(clippy::too_many_arguments)]
pub(crate) fn td_grad<B: Backend>(
    be: &B,
    q_net: &QNet,
    params: &B::Params,
    target: &B::Params,
    b: &BatchBufs<B>,
    bsz: usize,
    n: usize,
    double: bool,
    cql_alpha: f32,
    sc: &mut TdScratch<B>,
    grad: &mut B::Buf,
) -> Result<TdOut> {
    // y = r + gamma^k (1 - d) Q'(s', argmax_a Q(s', a))  (double)  or  max_a Q'(s', a)
    let q_t = q_net.q_all_on(be, target, &b.s2, bsz, &mut sc.q_next)?;
    if double {
        let q_o = q_net.q_all_on(be, params, &b.s2, bsz, &mut sc.q_online)?;
        be.argmax_onehot(q_o, n, &mut sc.pick)?;
        be.map2(&Product, q_t, &sc.pick, &mut sc.hit)?;
        be.sum_cols(&sc.hit, n, &mut sc.v2)?;
    } else {
        be.max_cols(q_t, n, &mut sc.v2)?;
    }
    be.map3(&Bellman, &b.r, &b.nd, &sc.v2, &mut sc.y)?;
    // d_b = Q(s_b, a_b) - y_b, the data action gathered through the one-hot.
    let q = q_net.q_all_on(be, params, &b.s, bsz, &mut sc.q)?;
    be.map2(&Product, q, &b.a, &mut sc.hit)?;
    be.sum_cols(&sc.hit, n, &mut sc.q_sa)?;
    be.map2(&Difference, &sc.q_sa, &sc.y, &mut sc.d)?;
    let huber = be.map1_sum(&Huber, &sc.d)?;
    let q_sum = be.map1_sum(&Identity, &sc.q_sa)?;
    let td = be.map1_sum(&Abs, &sc.d)?;
    // logsumexp_a Q(s_b, a) = max + ln sum exp(Q - max), and the softmax.
    be.max_cols(q, n, &mut sc.mx)?;
    be.tile_cols(&sc.mx, n, &mut sc.mx_t)?;
    be.map2(&ExpShift, q, &sc.mx_t, &mut sc.e)?;
    be.sum_cols(&sc.e, n, &mut sc.sum)?;
    be.map2(&LogSumExp, &sc.mx, &sc.sum, &mut sc.lse)?;
    let gap = be.map2_sum(&Difference, &sc.lse, &sc.q_sa)?;
    be.tile_cols(&sc.sum, n, &mut sc.sum_t)?;
    be.map2(&Quotient, &sc.e, &sc.sum_t, &mut sc.probs)?;
    be.map1(&HuberGrad, &sc.d, &mut sc.dh)?;
    be.tile_cols(&sc.dh, n, &mut sc.dh_t)?;
    let k = DqGrad {
        alpha: cql_alpha,
        bsz: bsz as f32,
    };
    be.map3(&k, &b.a, &sc.dh_t, &sc.probs, &mut sc.dq)?;
    q_net.backward_all_on(be, params, &b.s, &mut sc.q, &sc.dq, grad)?;
    let bs = bsz as f64;
    let gap = gap / bs;
    Ok(TdOut {
        loss: huber / bs + f64::from(cql_alpha) * gap,
        q_mean: q_sum / bs,
        td: td / bs,
        gap,
    })
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

impl Dqn<Cpu> {
    /// Builds the Q-network and its target for `spec` on the CPU engine, initialised from
    /// `seed`.
    pub fn new(
        spec: Spec,
        cfg: DqnConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Dqn<B> {
    /// [`Dqn::new`] on backend `be` (the same initial parameters on every backend).
    pub fn new_on(
        be: B,
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
        let q_target = be.place(&q_params)?;
        let q_params = be.place(&q_params)?;
        let opt = be.adam(&q_params, AdamConfig::with_lr(cfg.lr), None)?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            q,
            q_target,
            q_params,
            opt,
            b: BatchBufs::default(),
            scratch: TdScratch::default(),
            be,
        })
    }
    /// Checks and uploads the batch; the loss and its gradient (into the optimizer's buffer).
    fn loss_and_grad(&mut self, batch: &Batch) -> Result<TdOut> {
        check_batch(batch, &self.core.spec)?;
        let n = self.core.spec.discrete_n("DQN")?;
        let be = &self.be;
        self.b.upload(be, batch, &self.core.spec, true)?;
        let g = be.zero_grad(&mut self.opt)?;
        td_grad(
            be,
            &self.q,
            &self.q_params,
            &self.q_target,
            &self.b,
            batch.batch_size,
            n,
            self.cfg.double,
            0.0,
            &mut self.scratch,
            g,
        )
    }
    /// The loss and its gradient at the current parameters, without changing any state. For
    /// the parity tests.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        let out = self.loss_and_grad(batch)?;
        let mut g = Vec::new();
        self.be.download(self.be.grad(&self.opt), &mut g)?;
        Ok(vec![Probe::new(
            "critic_loss",
            out.loss,
            "critic",
            &*self.be.host_params(&self.q_params)?,
            &g,
        )])
    }
}

impl<B: Backend> Algorithm for Dqn<B> {
    fn name(&self) -> &'static str {
        "dqn"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        let step = self.core.steps;
        let mut m = Metrics::new();
        let out = self.loss_and_grad(batch)?;
        record_value(&mut m, step, "critic_loss", out.loss)?;
        record_value(&mut m, step, "q_mean", out.q_mean)?;
        record_value(&mut m, step, "td_error", out.td)?;
        self.be.adam_step(&mut self.opt, &mut self.q_params)?;
        self.core.steps += 1;
        if self
            .core
            .steps
            .is_multiple_of(self.cfg.target_update_interval.max(1))
        {
            self.be
                .soft_update(&mut self.q_target, &self.q_params, 1.0)?;
        }
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        greedy(&self.q, &*self.be.host_params(&self.q_params)?, s)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(q_at(
            &self.q,
            &*self.be.host_params(&self.q_params)?,
            s,
            a,
        )?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.be.host_params(&self.q_params)?.named_tensors(""),
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
