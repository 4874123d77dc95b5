//! CQL: Conservative Q-Learning (Kumar, Zhou, Tucker & Levine 2020).
//!
//! Continuous actions: SAC (Haarnoja et al. 2018) with automatic entropy tuning, whose critic
//! loss gains the CQL(H) regulariser (eq. 4), estimated with importance sampling as in the
//! paper's appendix F and reference code. For each `s` in the batch, with `N` actions drawn
//! from `Unif(-1, 1)^A`, `N` from `pi(.|s)` and `N` from `pi(.|s')`:
//!
//! ```text
//! logsumexp_a Q(s, a) ~= T log sum_j exp( (Q(s, a_j) - log mu(a_j)) / T )   over the 3N samples
//!     with log mu = log 0.5^A (uniform), log pi(a_j|s) or log pi(a_j|s') (detached)
//! R_CQL(Q_i) = alpha_cql * E_s[ logsumexp_a Q_i(s, a) - E_(a~D) Q_i(s, a) ]
//! L(Q_i) = E (Q_i(s, a) - y)^2 + R_CQL(Q_i),   y = r + gamma (1 - d) min_k Q'_k(s', a'), a' ~ pi(s')
//! Lagrange (optional, eq. 5): alpha_cql = clip(exp(log alpha'), 0, 1e6) * (gap - target_action_gap),
//!     log alpha' maximises the penalty
//! actor: L(pi) = E_s[ alpha log pi(a|s) - min_i Q_i(s, a) ],  a ~ pi(s)
//! temperature: L(alpha) = -E[ log alpha * (log pi(a|s) + target_entropy) ],  target = -A
//! ```
//!
//! The regulariser is a term of the critic loss (as the paper defines it), not a change to the
//! TD target. The TD loss is the plain MSE of rlkit (`nn.MSELoss`), CORL (`F.mse_loss`) and
//! d3rlpy, so that `cql_alpha` means what it means there (an earlier orl halved the TD loss,
//! which doubled the regulariser's effective weight). Choices checked against the references:
//! the backup action is a sample `a' ~ pi(s')` (rlkit `new_next_actions`, CORL and d3rlpy
//! alike; only the deterministic-backup variants use `tanh(mu(s'))`); initialisation is
//! PyTorch's `nn.Linear` default, as d3rlpy (rlkit draws the last layers from `U(-3e-3, 3e-3)`,
//! CORL uses orthogonal init: not replicated); `n_actions` is the paper's 10 also in the
//! benchmarks' reduced protocol (they used 4 to save time until this version). Discrete actions: CQL on a double-DQN critic (the paper's section 4 with a
//! QR-DQN base; orl uses the mean-value Q-network d3rlpy ships as `DiscreteCQL`):
//! `L = huber(Q(s, a), r + gamma (1 - d) Q'(s', argmax_a Q(s', a))) + alpha (logsumexp_a Q(s, a) - Q(s, a_data))`.
//!
//! Gradients with respect to the network outputs (`B` rows, `N` samples of each of the three
//! proposals, `alpha_c = cql_alpha`, times `alpha'` with the Lagrange variant), which the
//! engine carries back to the parameters. All critic inputs (the data actions and the `3 N B`
//! sampled ones) go through the critic as one batch of `B (1 + 3 N)` rows:
//!
//! ```text
//! critic:  dL/dQ_i(s_b, a_b)   = 2 (Q_ib - y_b) / B - alpha_c / B
//!          dL/dQ_i(s_b, a_bj)  = alpha_c / B * softmax_j((Q_i(s_b, a_bj) - log mu_j) / T)
//! alpha':  dL/d log alpha'     = -alpha_c / 2 * sum_i (gap_i - target) * alpha'
//! actor:   dL/da_b = -dQ_k(s_b, a_b)/da / B  (k the smaller critic),  dL/d log pi_b = alpha / B
//! alpha:   dL/d log alpha      = -E[log pi + target_entropy]
//! discrete: dL/dQ(s_b, k) = (huber'(Q_b - y_b) (1(k = a_b)) + alpha_c (softmax_k - 1(k = a_b))) / B
//! ```
//!
//! One implementation for every backend (`Cql<B: Backend>`): the critic's `B (1 + 3N)` rows
//! are assembled with `repeat_rows` / `concat_rows`, each state's `3N` proposals are regrouped
//! from kind-major to state-major rows (`transpose_blocks`) for the tempered logsumexp, and
//! their gradients are regrouped back. On the CPU engine the numbers are the earlier loop's,
//! bit for bit (checked over 120 updates: plain, with the Lagrange multiplier, the entropy
//! backup and a temperature, and discrete).

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::backend::{Bellman, 
    AbsError, Backend, Candle, Cpu, Difference, ExpShift, Identity, Map2, Map3, Scalar, SquaredError,
};
use orl_nets::engine::{Params, QBufs, QNet, TanhBufs};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchBufs, Core, Metrics, Probe, Spec, check_batch, mlp_layer_names,
    plain_policy, record_value, scalar_param, state_lists,
};
use crate::dqn::{TdScratch, greedy, q_at, td_grad};
use crate::sac::{ActorScratch, SacActor, min_q};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, Compute, RewardRecipe, defaults_of, fixed_length, parse_config, resolve,
};
use crate::validate as v;

/// CQL settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CqlConfig {
    /// Hidden sizes of actor and critics (continuous) or of the Q-network (discrete).
    pub hidden: Vec<usize>,
    /// Policy learning rate.
    pub actor_lr: f64,
    /// Critic learning rate.
    pub critic_lr: f64,
    /// Learning rate of the entropy temperature and of the Lagrange multiplier.
    pub alpha_lr: f64,
    /// Polyak coefficient of the target critics (continuous).
    pub tau: f64,
    /// Weight `alpha` of the CQL regulariser (fixed-alpha version), continuous actions, in the
    /// units of a TD loss that is a plain mean squared error.
    pub cql_alpha: f64,
    /// Weight `alpha` of the CQL regulariser for discrete actions.
    pub discrete_cql_alpha: f64,
    /// Sampled actions per source (uniform, pi(s), pi(s')).
    pub n_actions: usize,
    /// Temperature `T` of the logsumexp.
    pub temperature: f64,
    /// Use the Lagrange version with this target action gap (`None`: fixed alpha).
    pub target_action_gap: Option<f64>,
    /// Subtract `alpha log pi` in the TD target (SAC's soft backup).
    pub backup_entropy: bool,
    /// Hard target update interval of the discrete Q-network (updates).
    pub target_update_interval: usize,
}

impl Default for CqlConfig {
    /// Continuous: the paper's Gym-MuJoCo settings and reference code (rlkit `cql`):
    /// 256x256x256 networks, policy lr 1e-4, critic lr 3e-4, tau 0.005, alpha 5.0, 10 sampled
    /// actions, temperature 1, fixed alpha, no entropy backup; the temperature's lr is the
    /// policy's. Alpha 5.0 is rlkit's `min_q_weight` for Gym-MuJoCo and d3rlpy's
    /// `CQLConfig.conservative_weight`, both beside an MSE TD loss (`nn.MSELoss`,
    /// `F.mse_loss`), the convention used here (CORL's 10.0 is the same loss with a heavier
    /// weight). Discrete: alpha 1.0 and a target update every 8000 updates (d3rlpy
    /// `DiscreteCQLConfig.alpha`, `target_update_interval`); the critic uses `critic_lr`.
    fn default() -> Self {
        Self {
            hidden: vec![256, 256, 256],
            actor_lr: 1e-4,
            critic_lr: 3e-4,
            alpha_lr: 1e-4,
            tau: 0.005,
            cql_alpha: 5.0,
            discrete_cql_alpha: 1.0,
            n_actions: 10,
            temperature: 1.0,
            target_action_gap: None,
            backup_entropy: false,
            target_update_interval: 8000,
        }
    }
}

impl AlgoConfig for CqlConfig {
    fn validate(&self) -> Result<()> {
        v::hidden("cql.hidden", &self.hidden)?;
        v::positive("cql.actor_lr", self.actor_lr)?;
        v::positive("cql.critic_lr", self.critic_lr)?;
        v::positive("cql.alpha_lr", self.alpha_lr)?;
        v::unit_open_closed("cql.tau", self.tau)?;
        v::non_negative("cql.cql_alpha", self.cql_alpha)?;
        v::non_negative("cql.discrete_cql_alpha", self.discrete_cql_alpha)?;
        v::count("cql.n_actions", self.n_actions, v::MAX_SAMPLES)?;
        v::positive("cql.temperature", self.temperature)?;
        if let Some(g) = self.target_action_gap {
            v::finite("cql.target_action_gap", g)?;
        }
        v::count(
            "cql.target_update_interval",
            self.target_update_interval,
            usize::MAX,
        )
    }
}

/// The registry entry of CQL.
pub static INFO: AlgoInfo = AlgoInfo {
    name: "cql",
    summary: "conservative Q-learning (SAC with the CQL(H) regulariser; DQN-based for discrete)",
    discrete: true,
    continuous: true,
    // The paper's reference code (rlkit) and CORL `cql.py`: batch 256.
    batch_size: 256,
    // CORL `cql.py` (`normalize: True`) standardises states.
    normalize_observations: true,
    reward: RewardRecipe::AsStored,
    relative_cost: 120,
    defaults: defaults_of::<CqlConfig>,
    reduced: reduced_protocol,
    fit_to_run: fixed_length,
    test_config: || serde_json::json!({"hidden": [32, 32], "n_actions": 4, "target_update_interval": 20}),
    resolve: |v| resolve::<CqlConfig>("cql", v),
    build: |spec, cfg, seed, compute| {
        let cfg = parse_config("cql", cfg)?;
        Ok(match compute {
            Compute::Engine(device) => Box::new(Cql::new(spec, cfg, seed, device)?),
            Compute::Candle(device) => Box::new(Cql::new_on(
                Candle::new(device.clone()),
                spec,
                cfg,
                seed,
                device,
            )?),
        })
    },
};

/// The reduced protocol's CQL: `hidden` x `hidden` networks and the paper's 10 sampled actions;
/// discrete CQL copies its target every `steps / 10` updates, at most d3rlpy's 8000 (sized for
/// Atari runs of millions of updates: at 10 000 updates it copies once, and CQL stayed at BC's
/// level on cartpole-v1-medium-replay; `docs/benchmarks/classic-medium-replay.md`).
fn reduced_protocol(hidden: usize, steps: usize) -> serde_json::Value {
    serde_json::json!({
        "hidden": [hidden, hidden],
        "target_update_interval": (steps / 10).clamp(1, 8000),
    })
}
/// The actor side of continuous CQL: SAC's actor and temperature ([`SacActor`]) and the
/// Lagrange multiplier.
struct Continuous<B: Backend> {
    act_dim: usize,
    max_action: f64,
    sac: SacActor<B>,
    log_alpha_prime: B::Params,
    alpha_prime_opt: B::Adam,
}

/// CQL on backend `B`: the CPU engine by default, candle tensors with
/// [`Cql::new_on`]`(Candle, ..)`.
pub struct Cql<B: Backend = Cpu> {
    be: B,
    cfg: CqlConfig,
    core: Core,
    cont: Option<Continuous<B>>,
    critic: QNet,
    critic_params: B::Params,
    critic_target: B::Params,
    critic_opt: B::Adam,
    scratch: Scratch<B>,
}

/// Buffers reused by every update (sized by the first one).
struct Scratch<B: Backend> {
    b: BatchBufs<B>,
    /// SAC's actor step and its acting cache.
    actor: ActorScratch<B>,
    /// The target policy's samples, and those of the `3 N` proposals.
    pi_t: TanhBufs<B>,
    pi_rep: TanhBufs<B>,
    q: QBufs<B>,
    q_next: QBufs<B>,
    /// The update's draws on the host, then on the backend.
    host: Vec<f32>,
    eps_target: B::Buf,
    eps_cur: B::Buf,
    eps_next: B::Buf,
    uniform: B::Buf,
    eps_actor: B::Buf,
    /// `[B (1 + 3N), obs]` and `[B (1 + 3N), act]`: the critic's whole input.
    s_all: B::Buf,
    a_all: B::Buf,
    s_rep: B::Buf,
    a_cur: B::Buf,
    a_next: B::Buf,
    lp_cur: B::Buf,
    lp_next: B::Buf,
    lp_unif: B::Buf,
    /// `log mu` of the `3 N B` proposals `[3 B N, 1]`, kind-major.
    lmu: B::Buf,
    a2: B::Buf,
    lp2: B::Buf,
    q2a: B::Buf,
    q2b: B::Buf,
    v2: B::Buf,
    y: B::Buf,
    y2: B::Buf,
    /// Per member: its rows, the data rows, the proposals (kind-major, then per state
    /// `[B, 3N]`), the softmax parts and the gradients.
    qe: B::Buf,
    qd: [B::Buf; 2],
    qd_both: B::Buf,
    qp: B::Buf,
    v: B::Buf,
    vs: B::Buf,
    mx: B::Buf,
    mx_t: B::Buf,
    e: B::Buf,
    sum: B::Buf,
    sum_t: B::Buf,
    lse: B::Buf,
    dqp_s: B::Buf,
    dqp: [B::Buf; 2],
    dqd_m: [B::Buf; 2],
    dq: B::Buf,
    /// Discrete CQL's TD step (DQN's).
    td: TdScratch<B>,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            b: BatchBufs::default(),
            actor: ActorScratch::default(),
            pi_t: TanhBufs::default(),
            pi_rep: TanhBufs::default(),
            q: QBufs::default(),
            q_next: QBufs::default(),
            host: Vec::new(),
            eps_target: Default::default(),
            eps_cur: Default::default(),
            eps_next: Default::default(),
            uniform: Default::default(),
            eps_actor: Default::default(),
            s_all: Default::default(),
            a_all: Default::default(),
            s_rep: Default::default(),
            a_cur: Default::default(),
            a_next: Default::default(),
            lp_cur: Default::default(),
            lp_next: Default::default(),
            lp_unif: Default::default(),
            lmu: Default::default(),
            a2: Default::default(),
            lp2: Default::default(),
            q2a: Default::default(),
            q2b: Default::default(),
            v2: Default::default(),
            y: Default::default(),
            y2: Default::default(),
            qe: Default::default(),
            qd: Default::default(),
            qd_both: Default::default(),
            qp: Default::default(),
            v: Default::default(),
            vs: Default::default(),
            mx: Default::default(),
            mx_t: Default::default(),
            e: Default::default(),
            sum: Default::default(),
            sum_t: Default::default(),
            lse: Default::default(),
            dqp_s: Default::default(),
            dqp: Default::default(),
            dqd_m: Default::default(),
            dq: Default::default(),
            td: TdScratch::default(),
        }
    }
}

impl Cql<Cpu> {
    /// Builds the networks for `spec` (SAC actor-critic for continuous actions, a double-DQN
    /// Q-network for discrete ones) on the CPU engine, initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: CqlConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Cql<B> {
    /// [`Cql::new`] on backend `be` (the same initial parameters on every backend).
    pub fn new_on(
        be: B,
        spec: Spec,
        cfg: CqlConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let od = spec.obs_dim;
        let h = cfg.hidden.clone();
        let mut critic_params = Params::new();
        let (critic, cont) = match spec.action {
            ActionSpec::Continuous { dim, max_action } => {
                let sac = SacActor::new_on(
                    be.clone(),
                    &mut rng,
                    od,
                    dim,
                    &h,
                    max_action,
                    cfg.actor_lr,
                    cfg.alpha_lr,
                )?;
                let critic =
                    QNet::continuous(&mut critic_params.builder("", &mut rng), 2, od, dim, &h)?;
                let log_alpha_prime = be.place(&scalar_param("log_alpha_prime", &mut rng)?)?;
                let alpha_prime_opt =
                    be.adam(&log_alpha_prime, AdamConfig::with_lr(cfg.alpha_lr), None)?;
                let c = Continuous {
                    act_dim: dim,
                    max_action,
                    sac,
                    log_alpha_prime,
                    alpha_prime_opt,
                };
                (critic, Some(c))
            }
            ActionSpec::Discrete { n } => (
                QNet::discrete(&mut critic_params.builder("", &mut rng), 1, od, n, &h)?,
                None,
            ),
        };
        let critic_target = be.place(&critic_params)?;
        let critic_params = be.place(&critic_params)?;
        let critic_opt = be.adam(&critic_params, AdamConfig::with_lr(cfg.critic_lr), None)?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            cont,
            critic,
            critic_target,
            critic_params,
            critic_opt,
            scratch: Scratch::default(),
            be,
        })
    }
}

// ---- continuous losses and their gradients ----

/// The random draws of one continuous update, in the order the reference implementation (and
/// orl's before the engine) draws them: target-policy noise `[B, A]`, `pi(s)` noise `[B N, A]`,
/// `pi(s')` noise `[B N, A]`, uniform actions `[B N, A]`, actor noise `[B, A]`; uploaded.
fn draw<B: Backend>(t: &mut Cql<B>, bsz: usize) -> Result<()> {
    let Some(c) = &t.cont else { return Ok(()) };
    let (a, n, m) = (c.act_dim, t.cfg.n_actions, c.max_action as f32);
    let (be, sc) = (&t.be, &mut t.scratch);
    for (buf, rows) in [
        (&mut sc.eps_target, bsz),
        (&mut sc.eps_cur, bsz * n),
        (&mut sc.eps_next, bsz * n),
    ] {
        sc.host.resize(rows * a, 0.0);
        t.core.noise.normal_into(&mut sc.host);
        be.upload(&sc.host, a, buf)?;
    }
    sc.host.resize(bsz * n * a, 0.0);
    t.core.noise.uniform_into(&mut sc.host, -m, m);
    be.upload(&sc.host, a, &mut sc.uniform)?;
    sc.host.resize(bsz * a, 0.0);
    t.core.noise.normal_into(&mut sc.host);
    be.upload(&sc.host, a, &mut sc.eps_actor)?;
    Ok(())
}

/// What the continuous critic step reports.
struct CriticOut {
    loss: f64,
    q_mean: f64,
    td: f64,
    gap: f64,
    lagrange: Option<f64>,
}

/// `min(q0, q1) - alpha lp` (`Map3`; `alpha = 0` without the entropy backup).
struct SoftValue(f32);

impl Map3 for SoftValue {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q0: S, q1: S, lp: S) -> S {
        let v = q0.min(q1);
        if self.0 == 0.0 { v } else { v - lp.scale(self.0) }
    }
}


/// `(q - log mu) / T`.
struct Tempered(f32);

impl Map2 for Tempered {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q: S, lmu: S) -> S {
        (q - lmu).div_by(self.0)
    }
}

/// `T (max + ln sum)`: the tempered logsumexp.
struct TemperedLse(f32);

impl Map2 for TemperedLse {
    #[inline(always)]
    fn apply<S: Scalar>(&self, max: S, sum: S) -> S {
        (max + sum.ln()).scale(self.0)
    }
}


/// `dL/dQ(s_b, a_b) = 2 (Q - y) / B - w / B`.
struct DataGrad {
    bsz: f32,
    w: f32,
}

impl Map2 for DataGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q: S, y: S) -> S {
        (q - y).scale(2.0).div_by(self.bsz).shift(-(self.w / self.bsz))
    }
}

/// `dL/dQ(s_b, a_bj) = (w / B) softmax_j = (w / B) (e / sum)`.
struct ProposalGrad(f32);

impl Map2 for ProposalGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, e: S, sum: S) -> S {
        (e / sum).scale(self.0)
    }
}

/// Critic loss of both members (TD + CQL(H)) and its gradient into `critic_opt`'s buffer, the
/// Lagrange loss's into `alpha_prime_opt`'s, on the uploaded batch and draws.
fn critic_grad<B: Backend>(t: &mut Cql<B>, bsz: usize) -> Result<CriticOut> {
    let Some(c) = &mut t.cont else {
        return Ok(CriticOut { loss: 0.0, q_mean: 0.0, td: 0.0, gap: 0.0, lagrange: None });
    };
    let (od, ad, n) = (t.core.spec.obs_dim, c.act_dim, t.cfg.n_actions);
    let (be, sc) = (&t.be, &mut t.scratch);
    let p = &c.sac.params;
    let alpha = c.sac.alpha()?;
    // TD target y = r + gamma^k (1 - d) (min_i Q'_i(s', a') [- alpha log pi(a'|s')]), a' ~ pi(s').
    c.sac
        .head
        .sample_on(be, p, &sc.b.s2, &sc.eps_target, bsz, &mut sc.pi_t, &mut sc.a2, &mut sc.lp2)?;
    let q2 = t
        .critic
        .q_on(be, &t.critic_target, &sc.b.s2, &sc.a2, bsz, 2, &mut sc.q_next)?;
    be.rows(q2, 1, 0, bsz, &mut sc.q2a)?;
    be.rows(q2, 1, bsz, bsz, &mut sc.q2b)?;
    let backup = if t.cfg.backup_entropy { alpha } else { 0.0 };
    be.map3(&SoftValue(backup), &sc.q2a, &sc.q2b, &sc.lp2, &mut sc.v2)?;
    be.map3(&Bellman, &sc.b.r, &sc.b.nd, &sc.v2, &mut sc.y)?;
    // The critic's input: data rows, then per proposal B N rows (uniform, pi(s), pi(s')).
    let rows = bsz * (1 + 3 * n);
    let bn = bsz * n;
    // The N proposals per state from pi(s) and pi(s'): the actor's trunk runs once per state
    // and its outputs are repeated (the same numbers as on the repeated states, 1/N the work).
    be.repeat_rows(&sc.b.s, od, n, &mut sc.s_rep)?;
    be.concat_rows(&[&sc.b.s, &sc.s_rep, &sc.s_rep, &sc.s_rep], &mut sc.s_all)?;
    c.sac.head.sample_repeated_on(
        be, p, &sc.b.s, &sc.eps_cur, bsz, n, &mut sc.pi_rep, &mut sc.a_cur, &mut sc.lp_cur,
    )?;
    c.sac.head.sample_repeated_on(
        be, p, &sc.b.s2, &sc.eps_next, bsz, n, &mut sc.pi_rep, &mut sc.a_next, &mut sc.lp_next,
    )?;
    be.concat_rows(&[&sc.b.a, &sc.uniform, &sc.a_cur, &sc.a_next], &mut sc.a_all)?;
    let q = t
        .critic
        .q_on(be, &t.critic_params, &sc.s_all, &sc.a_all, rows, 2, &mut sc.q)?;
    // log mu of the 3N proposals, kind-major like the critic's rows.
    let log_unif = (ad as f64 * (0.5 / c.max_action).ln()) as f32;
    be.fill(&sc.lp_cur, log_unif, &mut sc.lp_unif)?;
    be.concat_rows(&[&sc.lp_unif, &sc.lp_cur, &sc.lp_next], &mut sc.lmu)?;
    let temp = t.cfg.temperature as f32;
    let ap = c.sac.be.host_params(&c.log_alpha_prime)?.data()[0];
    let ap_raw = ap;
    let ap = ap.exp().clamp(0.0, 1e6);
    let weight = match t.cfg.target_action_gap {
        None => t.cfg.cql_alpha as f32,
        Some(_) => (t.cfg.cql_alpha as f32) * ap,
    };
    // Per member: T logsumexp_j ((Q_j - log mu_j) / T) over each state's 3N samples.
    let mut gaps = [0.0f64; 2];
    for (e, gap) in gaps.iter_mut().enumerate() {
        be.rows(q, 1, e * rows, rows, &mut sc.qe)?;
        be.rows(&sc.qe, 1, 0, bsz, &mut sc.qd[e])?;
        be.rows(&sc.qe, 1, bsz, 3 * bn, &mut sc.qp)?;
        be.map2(&Tempered(temp), &sc.qp, &sc.lmu, &mut sc.v)?;
        be.transpose_blocks(&sc.v, 3, bsz, n, 3 * n, &mut sc.vs)?;
        be.max_cols(&sc.vs, 3 * n, &mut sc.mx)?;
        be.tile_cols(&sc.mx, 3 * n, &mut sc.mx_t)?;
        be.map2(&ExpShift, &sc.vs, &sc.mx_t, &mut sc.e)?;
        be.sum_cols(&sc.e, 3 * n, &mut sc.sum)?;
        be.map2(&TemperedLse(temp), &sc.mx, &sc.sum, &mut sc.lse)?;
        *gap = be.map2_sum(&Difference, &sc.lse, &sc.qd[e])?;
        be.map2(
            &DataGrad {
                bsz: bsz as f32,
                w: weight,
            },
            &sc.qd[e],
            &sc.y,
            &mut sc.dqd_m[e],
        )?;
        be.tile_cols(&sc.sum, 3 * n, &mut sc.sum_t)?;
        be.map2(&ProposalGrad(weight / bsz as f32), &sc.e, &sc.sum_t, &mut sc.dqp_s)?;
        be.transpose_blocks(&sc.dqp_s, bsz, 3, n, 1, &mut sc.dqp[e])?;
    }
    be.concat_rows(&[&sc.dqd_m[0], &sc.dqp[0], &sc.dqd_m[1], &sc.dqp[1]], &mut sc.dq)?;
    // The TD part over both members' data rows, in the engine's order.
    be.concat_rows(&[&sc.qd[0], &sc.qd[1]], &mut sc.qd_both)?;
    be.tile_rows(&sc.y, 2, &mut sc.y2)?;
    let td_loss = be.map2_sum(&SquaredError, &sc.qd_both, &sc.y2)?;
    let q_sum = be.map1_sum(&Identity, &sc.qd_both)?;
    let td_abs = be.map2_sum(&AbsError, &sc.qd[0], &sc.y)?;
    let gaps = [gaps[0] / bsz as f64, gaps[1] / bsz as f64];
    let (penalty, lagrange) = match t.cfg.target_action_gap {
        None => (t.cfg.cql_alpha * (gaps[0] + gaps[1]), None),
        Some(target) => {
            let (a, apd) = (t.cfg.cql_alpha, f64::from(ap));
            let pen = a * apd * ((gaps[0] - target) + (gaps[1] - target));
            let lag = -0.5 * a * apd * ((gaps[0] - target) + (gaps[1] - target));
            // d/d log alpha' of clamp(exp(log alpha'), 0, 1e6): exp where unclamped.
            let gv = if ap_raw.exp() <= 1e6 { lag as f32 } else { 0.0 };
            let g = be.zero_grad(&mut c.alpha_prime_opt)?;
            be.upload(&[gv], 1, g)?;
            (pen, Some(lag))
        }
    };
    let g = be.zero_grad(&mut t.critic_opt)?;
    t.critic
        .backward_on(be, &t.critic_params, &mut sc.q, &sc.dq, Some(g), None)?;
    Ok(CriticOut {
        loss: td_loss / bsz as f64 + penalty,
        q_mean: q_sum / (2 * bsz) as f64,
        td: td_abs / bsz as f64,
        gap: 0.5 * (gaps[0] + gaps[1]),
        lagrange,
    })
}

impl<B: Backend> Cql<B> {
    /// Discrete CQL: DQN's double-DQN Huber loss plus the regulariser ([`td_grad`]), the
    /// gradient into `critic_opt`'s buffer: `(loss, mean Q, mean |TD|, gap)`.
    fn discrete_grad(&mut self, bsz: usize) -> Result<(f64, f64, f64, f64)> {
        let n = self.core.spec.discrete_n("discrete CQL")?;
        let be = &self.be;
        let g = be.zero_grad(&mut self.critic_opt)?;
        let o = td_grad(
            be,
            &self.critic,
            &self.critic_params,
            &self.critic_target,
            &self.scratch.b,
            bsz,
            n,
            true,
            self.cfg.discrete_cql_alpha as f32,
            &mut self.scratch.td,
            g,
        )?;
        Ok((o.loss, o.q_mean, o.td, o.gap))
    }
    fn prepare(&mut self, batch: &Batch) -> Result<()> {
        check_batch(batch, &self.core.spec)?;
        self.scratch
            .b
            .upload(&self.be, batch, &self.core.spec, true)
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state (the noise is drawn from a copy of the training stream). For the parity tests
    /// against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        let bsz = batch.batch_size;
        let mut grads: Vec<(&'static str, f64, &'static str, u8)> = Vec::new();
        if self.cont.is_none() {
            let (loss, ..) = self.discrete_grad(bsz)?;
            grads.push(("critic_loss", loss, "critic", 0));
        } else {
            let saved = self.core.noise.clone();
            draw(self, bsz)?;
            self.core.noise = saved;
            let co = critic_grad(self, bsz)?;
            grads.push(("critic_loss", co.loss, "critic", 0));
            let sc = &mut self.scratch;
            if let Some(c) = &mut self.cont {
                let a = c.sac.grad(&self.critic, &self.critic_params, &sc.b.s, &sc.eps_actor, bsz, &mut sc.actor)?;
                grads.push(("actor_loss", a.loss, "actor", 1));
                grads.push(("alpha_loss", a.alpha_loss, "log_alpha", 2));
                if let Some(l) = co.lagrange {
                    grads.push(("alpha_prime_loss", l, "log_alpha_prime", 3));
                }
            }
        }
        let be = &self.be;
        let mut out = Vec::new();
        for (loss, value, net, which) in grads {
            let (params, opt) = match (which, &self.cont) {
                (1, Some(c)) => (&c.sac.params, &c.sac.opt),
                (2, Some(c)) => (&c.sac.log_alpha, &c.sac.alpha_opt),
                (3, Some(c)) => (&c.log_alpha_prime, &c.alpha_prime_opt),
                _ => (&self.critic_params, &self.critic_opt),
            };
            let mut g = Vec::new();
            be.download(be.grad(opt), &mut g)?;
            out.push(Probe::new(loss, value, net, &*be.host_params(params)?, &g));
        }
        Ok(out)
    }

    /// One SAC + CQL(H) step. All losses (critic with the regulariser, Lagrange multiplier,
    /// actor, temperature) are built from the same parameters and their gradients computed
    /// before any optimizer steps, as the reference code does (CORL `cql.py`,
    /// `ContinuousCQL.train`: the policy, alpha and Q losses are formed first, then each
    /// optimizer steps).
    fn update_continuous(&mut self, batch: &Batch, m: &mut Metrics) -> Result<()> {
        let step = self.core.steps;
        let bsz = batch.batch_size;
        draw(self, bsz)?;
        let co = critic_grad(self, bsz)?;
        record_value(m, step, "critic_loss", co.loss)?;
        record_value(m, step, "q_mean", co.q_mean)?;
        record_value(m, step, "td_error", co.td)?;
        record_value(m, step, "cql_gap", co.gap)?;
        if let Some(lag) = co.lagrange {
            record_value(m, step, "alpha_prime_loss", lag)?;
        }
        let sc = &mut self.scratch;
        let Some(c) = &mut self.cont else { return Ok(()) };
        let a = c.sac.grad(
            &self.critic,
            &self.critic_params,
            &sc.b.s,
            &sc.eps_actor,
            bsz,
            &mut sc.actor,
        )?;
        record_value(m, step, "actor_loss", a.loss)?;
        record_value(m, step, "alpha_loss", a.alpha_loss)?;
        record_value(m, step, "entropy", a.entropy)?;
        record_value(m, step, "alpha", a.alpha)?;
        let be = &self.be;
        be.adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        c.sac.step()?;
        if co.lagrange.is_some() {
            be.adam_step(&mut c.alpha_prime_opt, &mut c.log_alpha_prime)?;
        }
        be.soft_update(&mut self.critic_target, &self.critic_params, self.cfg.tau)?;
        Ok(())
    }
    fn update_discrete(&mut self, batch: &Batch, m: &mut Metrics) -> Result<()> {
        let step = self.core.steps;
        let (loss, q, td, gap) = self.discrete_grad(batch.batch_size)?;
        record_value(m, step, "critic_loss", loss)?;
        record_value(m, step, "q_mean", q)?;
        record_value(m, step, "td_error", td)?;
        record_value(m, step, "cql_gap", gap)?;
        let be = &self.be;
        be.adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        if (step + 1).is_multiple_of(self.cfg.target_update_interval.max(1)) {
            be.soft_update(&mut self.critic_target, &self.critic_params, 1.0)?;
        }
        Ok(())
    }
}

impl<B: Backend> Algorithm for Cql<B> {
    fn name(&self) -> &'static str {
        "cql"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        self.prepare(batch)?;
        let mut m = Metrics::new();
        if self.cont.is_some() {
            self.update_continuous(batch, &mut m)?;
        } else {
            self.update_discrete(batch, &mut m)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        match &self.cont {
            Some(c) => Ok(c
                .sac
                .act(
                    s,
                    deterministic,
                    &mut self.core.act_noise,
                    &mut self.scratch.actor.acting,
                )?
                .0),
            None => greedy(&self.critic, &*self.be.host_params(&self.critic_params)?, s),
        }
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        match &self.cont {
            Some(c) => Ok(Some(c.sac.log_prob(s, a, &mut self.scratch.actor.acting)?)),
            None => Ok(None),
        }
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        let p = self.be.host_params(&self.critic_params)?;
        if self.cont.is_some() {
            return Ok(Some(min_q(&self.critic, &p, s, a)?));
        }
        Ok(Some(q_at(&self.critic, &p, s, a)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let h = self.cfg.hidden.len();
        Ok(Some(match &self.cont {
            Some(c) => c.sac.policy_model(h, &self.core.spec)?,
            None => plain_policy(
                &self.be.host_params(&self.critic_params)?.named_tensors(""),
                &mlp_layer_names("", h + 1),
                &self.core.spec,
            )?,
        }))
    }
    state_lists! {
        nets ["critic" => critic_params, "critic_target" => critic_target]
        if let Some(c) = cont {
            "actor" => c.sac.params,
            "log_alpha" => c.sac.log_alpha,
            "log_alpha_prime" => c.log_alpha_prime,
        }
        optims ["critic" => critic_opt]
        if let Some(c) = cont {
            "actor" => c.sac.opt,
            "log_alpha" => c.sac.alpha_opt,
            "log_alpha_prime" => c.alpha_prime_opt,
        }
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
