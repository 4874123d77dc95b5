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

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::backend::{Backend, Cpu};
use orl_nets::engine::{
    FlatAdam, Params, QCache, QNet, TanhGaussianCache,
};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{state_lists, BatchBufs,
    ActionSpec, Algorithm, Core, Metrics, Probe, Spec, check_batch,
    mlp_layer_names, plain_policy, record_value, repeat_rows_into, scalar_param,
};
use crate::dqn::{TdScratch, greedy, q_at, td_grad};
use crate::sac::{ActorScratch, SacActor, min_q};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, RewardRecipe, defaults_of, fixed_length, parse_config, resolve,
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
        let device = compute.engine_device("cql")?;
        Ok(Box::new(Cql::new(
            spec,
            parse_config("cql", cfg)?,
            seed,
            device,
        )?))
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
struct Continuous {
    act_dim: usize,
    max_action: f64,
    sac: SacActor,
    log_alpha_prime: Params,
    alpha_prime_opt: FlatAdam,
}

/// CQL.
pub struct Cql {
    cfg: CqlConfig,
    core: Core,
    cont: Option<Continuous>,
    critic: QNet,
    critic_params: Params,
    critic_target: Params,
    critic_opt: FlatAdam,
    scratch: Scratch,
}

/// Buffers reused by every update (sized by the first one).
#[derive(Default)]
struct Scratch {
    /// SAC's actor step, its acting cache and the target policy's samples.
    actor: ActorScratch<Cpu>,
    /// The target policy's samples, and those of the `3 N` proposals.
    pi_t: TanhGaussianCache,
    pi_rep: TanhGaussianCache,
    q: QCache,
    q_next: QCache,
    eps_target: Vec<f32>,
    eps_cur: Vec<f32>,
    eps_next: Vec<f32>,
    uniform: Vec<f32>,
    eps_actor: Vec<f32>,
    /// `[B (1 + 3N), obs]` and `[B (1 + 3N), act]`: the critic's whole input.
    s_all: Vec<f32>,
    a_all: Vec<f32>,
    s_rep: Vec<f32>,
    lp_cur: Vec<f32>,
    lp_next: Vec<f32>,
    a2: Vec<f32>,
    lp2: Vec<f32>,
    y: Vec<f32>,
    lse: Vec<f32>,
    /// Discrete CQL's TD step (DQN's, on the engine) and its batch.
    td: TdScratch<Cpu>,
    b: BatchBufs<Cpu>,
}

impl Cql {
    /// Builds the networks for `spec` (SAC actor-critic for continuous actions, a double-DQN
    /// Q-network for discrete ones), initialised from `seed`.
    pub fn new(
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
                let sac =
                    SacActor::new_on(
                        Cpu, &mut rng, od, dim, &h, max_action, cfg.actor_lr, cfg.alpha_lr,
                    )?;
                let critic =
                    QNet::continuous(&mut critic_params.builder("", &mut rng), 2, od, dim, &h)?;
                let log_alpha_prime = scalar_param("log_alpha_prime", &mut rng)?;
                let alpha_prime_opt =
                    FlatAdam::new(&log_alpha_prime, AdamConfig::with_lr(cfg.alpha_lr));
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
        let critic_opt = FlatAdam::new(&critic_params, AdamConfig::with_lr(cfg.critic_lr));
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            cont,
            critic,
            critic_target: critic_params.clone(),
            critic_params,
            critic_opt,
            scratch: Scratch::default(),
        })
    }
}

// ---- continuous losses and their gradients ----

/// The random draws of one continuous update, in the order the reference implementation (and
/// orl's before the engine) draws them: target-policy noise `[B, A]`, `pi(s)` noise `[B N, A]`,
/// `pi(s')` noise `[B N, A]`, uniform actions `[B N, A]`, actor noise `[B, A]`.
fn draw(t: &mut Cql, bsz: usize) {
    let Some(c) = &t.cont else { return };
    let (a, n, m) = (c.act_dim, t.cfg.n_actions, c.max_action as f32);
    let sc = &mut t.scratch;
    for (buf, rows) in [
        (&mut sc.eps_target, bsz),
        (&mut sc.eps_cur, bsz * n),
        (&mut sc.eps_next, bsz * n),
    ] {
        buf.resize(rows * a, 0.0);
        t.core.noise.normal_into(buf);
    }
    sc.uniform.resize(bsz * n * a, 0.0);
    t.core.noise.uniform_into(&mut sc.uniform, -m, m);
    sc.eps_actor.resize(bsz * a, 0.0);
    t.core.noise.normal_into(&mut sc.eps_actor);
}

/// What the continuous critic step reports.
struct CriticOut {
    loss: f64,
    q_mean: f64,
    td: f64,
    gap: f64,
    lagrange: Option<f64>,
}

/// Critic loss of both members (TD + CQL(H)) and its gradient into `critic_opt`'s buffer, the
/// Lagrange loss's into `alpha_prime_opt`'s.
fn critic_grad(t: &mut Cql, batch: &Batch) -> Result<CriticOut> {
    let Some(c) = &mut t.cont else {
        return Ok(CriticOut { loss: 0.0, q_mean: 0.0, td: 0.0, gap: 0.0, lagrange: None });
    };
    let bsz = batch.batch_size;
    let (od, ad, n) = (t.core.spec.obs_dim, c.act_dim, t.cfg.n_actions);
    let sc = &mut t.scratch;
    let p = &c.sac.params;
    let alpha = c.sac.alpha()?;
    // TD target y = r + gamma^k (1 - d) (min_i Q'_i(s', a') [- alpha log pi(a'|s')]), a' ~ pi(s').
    sc.a2.resize(bsz * ad, 0.0);
    sc.lp2.resize(bsz, 0.0);
    c.sac.head.sample(p, &batch.next_observations, &sc.eps_target, bsz, &mut sc.pi_t, &mut sc.a2, &mut sc.lp2);
    let q2 = t.critic.q(&t.critic_target, &batch.next_observations, &sc.a2, bsz, &mut sc.q_next);
    sc.y.resize(bsz, 0.0);
    for b in 0..bsz {
        let mut v2 = q2[b].min(q2[bsz + b]);
        if t.cfg.backup_entropy {
            v2 -= alpha * sc.lp2[b];
        }
        sc.y[b] = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * v2;
    }
    // The critic's input: data rows, then per proposal B N rows (uniform, pi(s), pi(s')).
    let rows = bsz * (1 + 3 * n);
    sc.s_all.clear();
    sc.s_all.extend_from_slice(&batch.observations);
    repeat_rows_into(&batch.observations, od, n, &mut sc.s_rep);
    for _ in 0..3 {
        sc.s_all.extend_from_slice(&sc.s_rep);
    }
    sc.a_all.resize(rows * ad, 0.0);
    sc.a_all[..bsz * ad].copy_from_slice(&batch.actions);
    let bn = bsz * n;
    sc.a_all[bsz * ad..(bsz + bn) * ad].copy_from_slice(&sc.uniform);
    sc.lp_cur.resize(bn, 0.0);
    sc.lp_next.resize(bn, 0.0);
    {
        let (cur, rest) = sc.a_all[(bsz + bn) * ad..].split_at_mut(bn * ad);
        c.sac.head.sample(p, &sc.s_rep, &sc.eps_cur, bn, &mut sc.pi_rep, cur, &mut sc.lp_cur);
        repeat_rows_into(&batch.next_observations, od, n, &mut sc.a2);
        c.sac.head.sample(p, &sc.a2, &sc.eps_next, bn, &mut sc.pi_rep, rest, &mut sc.lp_next);
    }
    t.critic.q(&t.critic_params, &sc.s_all, &sc.a_all, rows, &mut sc.q);
    let (q, dq) = sc.q.mlp.output_and_dout();
    // Per member and state: T logsumexp_j ((Q_j - log mu_j) / T) over the 3N samples.
    let log_unif = (ad as f64 * (0.5 / c.max_action).ln()) as f32;
    let temp = t.cfg.temperature as f32;
    let (mut td_loss, mut q_sum, mut td_abs) = (0.0f64, 0.0f64, 0.0f64);
    let mut gaps = [0.0f64; 2];
    sc.lse.resize(3 * n, 0.0);
    let ap = c.log_alpha_prime.data()[0].exp().clamp(0.0, 1e6);
    let weight = match t.cfg.target_action_gap {
        None => t.cfg.cql_alpha as f32,
        Some(_) => (t.cfg.cql_alpha as f32) * ap,
    };
    for e in 0..2 {
        let qe = &q[e * rows..(e + 1) * rows];
        let dqe = &mut dq[e * rows..(e + 1) * rows];
        for b in 0..bsz {
            let qd = qe[b];
            let diff = qd - sc.y[b];
            td_loss += f64::from(diff * diff);
            q_sum += f64::from(qd);
            if e == 0 {
                td_abs += f64::from(diff.abs());
            }
            // the 3N proposal values of state b
            for (src, slot) in sc.lse.chunks_exact_mut(n).enumerate() {
                for (j, v) in slot.iter_mut().enumerate() {
                    let r = bsz + src * bn + b * n + j;
                    let lmu = match src {
                        0 => log_unif,
                        1 => sc.lp_cur[b * n + j],
                        _ => sc.lp_next[b * n + j],
                    };
                    *v = (qe[r] - lmu) / temp;
                }
            }
            let max = sc.lse.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = sc.lse.iter().map(|&v| (v - max).exp()).sum();
            let lse = temp * (max + sum.ln());
            gaps[e] += f64::from(lse - qd);
            dqe[b] = 2.0 * diff / bsz as f32 - weight / bsz as f32;
            for (src, slot) in sc.lse.chunks_exact(n).enumerate() {
                for (j, &v) in slot.iter().enumerate() {
                    let r = bsz + src * bn + b * n + j;
                    dqe[r] = weight / bsz as f32 * ((v - max).exp() / sum);
                }
            }
        }
    }
    let gaps = [gaps[0] / bsz as f64, gaps[1] / bsz as f64];
    let (penalty, lagrange) = match t.cfg.target_action_gap {
        None => (t.cfg.cql_alpha * (gaps[0] + gaps[1]), None),
        Some(target) => {
            let (a, apd) = (t.cfg.cql_alpha, f64::from(ap));
            let pen = a * apd * ((gaps[0] - target) + (gaps[1] - target));
            let lag = -0.5 * a * apd * ((gaps[0] - target) + (gaps[1] - target));
            let raw = c.log_alpha_prime.data()[0];
            let g = c.alpha_prime_opt.zero_grad();
            // d/d log alpha' of clamp(exp(log alpha'), 0, 1e6): exp where unclamped.
            g[0] = if raw.exp() <= 1e6 { lag as f32 } else { 0.0 };
            (pen, Some(lag))
        }
    };
    let g = t.critic_opt.zero_grad();
    t.critic.backward(&t.critic_params, &mut sc.q, Some(g), None);
    Ok(CriticOut {
        loss: td_loss / bsz as f64 + penalty,
        q_mean: q_sum / (2 * bsz) as f64,
        td: td_abs / bsz as f64,
        gap: 0.5 * (gaps[0] + gaps[1]),
        lagrange,
    })
}

impl Cql {
    /// Discrete CQL: DQN's double-DQN Huber loss plus the regulariser ([`td_grad`]), the
    /// gradient into `critic_opt`'s buffer: `(loss, mean Q, mean |TD|, gap)`.
    fn discrete_grad(&mut self, batch: &Batch) -> Result<(f64, f64, f64, f64)> {
        let n = self.core.spec.discrete_n("discrete CQL")?;
        let g = Cpu.zero_grad(&mut self.critic_opt)?;
        let o = td_grad(
            &Cpu,
            &self.critic,
            &self.critic_params,
            &self.critic_target,
            &self.scratch.b,
            batch.batch_size,
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
        match self.core.spec.action {
            ActionSpec::Discrete { .. } => {
                self.scratch
                    .b
                    .upload(&Cpu, batch, &self.core.spec, true)
            }
            ActionSpec::Continuous { .. } => Ok(()),
        }
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state (the noise is drawn from a copy of the training stream). For the parity tests
    /// against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        if self.cont.is_none() {
            let (loss, ..) = self.discrete_grad(batch)?;
            return Ok(vec![Probe::new("critic_loss", loss, "critic", &self.critic_params, self.critic_opt.grad())]);
        }
        let saved = self.core.noise.clone();
        draw(self, batch.batch_size);
        self.core.noise = saved;
        let co = critic_grad(self, batch)?;
        let mut out = vec![Probe::new("critic_loss", co.loss, "critic", &self.critic_params, self.critic_opt.grad())];
        let sc = &mut self.scratch;
        if let Some(c) = &mut self.cont {
            let a = c.sac.grad(&self.critic, &self.critic_params, &batch.observations, &sc.eps_actor, batch.batch_size, &mut sc.actor)?;
            out.push(Probe::new("actor_loss", a.loss, "actor", &c.sac.params, c.sac.opt.grad()));
            out.push(Probe::new("alpha_loss", a.alpha_loss, "log_alpha", &c.sac.log_alpha, c.sac.alpha_opt.grad()));
            if let Some(l) = co.lagrange {
                out.push(Probe::new("alpha_prime_loss", l, "log_alpha_prime", &c.log_alpha_prime, c.alpha_prime_opt.grad()));
            }
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
        draw(self, batch.batch_size);
        let co = critic_grad(self, batch)?;
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
            &batch.observations,
            &sc.eps_actor,
            batch.batch_size,
            &mut sc.actor,
        )?;
        record_value(m, step, "actor_loss", a.loss)?;
        record_value(m, step, "alpha_loss", a.alpha_loss)?;
        record_value(m, step, "entropy", a.entropy)?;
        record_value(m, step, "alpha", a.alpha)?;
        self.critic_opt.step(&mut self.critic_params)?;
        c.sac.step()?;
        if co.lagrange.is_some() {
            c.alpha_prime_opt.step(&mut c.log_alpha_prime)?;
        }
        self.critic_target
            .soft_update_from(&self.critic_params, self.cfg.tau)?;
        Ok(())
    }
    fn update_discrete(&mut self, batch: &Batch, m: &mut Metrics) -> Result<()> {
        let step = self.core.steps;
        let (loss, q, td, gap) = self.discrete_grad(batch)?;
        record_value(m, step, "critic_loss", loss)?;
        record_value(m, step, "q_mean", q)?;
        record_value(m, step, "td_error", td)?;
        record_value(m, step, "cql_gap", gap)?;
        self.critic_opt.step(&mut self.critic_params)?;
        if (step + 1).is_multiple_of(self.cfg.target_update_interval.max(1)) {
            self.critic_target.copy_from(&self.critic_params)?;
        }
        Ok(())
    }
}

impl Algorithm for Cql {
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
            None => greedy(&self.critic, &self.critic_params, s),
        }
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        match &self.cont {
            Some(c) => Ok(Some(c.sac.log_prob(s, a, &mut self.scratch.actor.acting)?)),
            None => Ok(None),
        }
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        if self.cont.is_some() {
            return Ok(Some(min_q(&self.critic, &self.critic_params, s, a)?));
        }
        Ok(Some(q_at(&self.critic, &self.critic_params, s, a)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let h = self.cfg.hidden.len();
        Ok(Some(match &self.cont {
            Some(c) => c.sac.policy_model(h, &self.core.spec)?,
            None => plain_policy(
                &self.critic_params.named_tensors(""),
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
