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

use candle_core::{D, Tensor};
use orl_data::Batch;
use orl_nets::{NetState, OptimState};
use orl_nets::{Adam, AdamConfig, ParamStore, QEnsemble, TanhGaussianActor};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchTensors, Core, Metrics, Spec, cql_logsumexp, gather_actions,
    huber_loss, min_over_ensemble, mlp_layer_names, mse_per_member, plain_policy, record,
    repeat_rows, target_of,
};
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
    build: |spec, cfg, seed, device| {
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

struct Continuous {
    act_dim: usize,
    max_action: f64,
    actor: TanhGaussianActor,
    actor_store: ParamStore,
    actor_opt: Adam,
    log_alpha: ParamStore,
    alpha_opt: Adam,
    log_alpha_prime: ParamStore,
    alpha_prime_opt: Adam,
}

/// CQL.
pub struct Cql {
    cfg: CqlConfig,
    core: Core,
    cont: Option<Continuous>,
    critic: QEnsemble,
    critic_store: ParamStore,
    critic_target: QEnsemble,
    critic_target_store: ParamStore,
    critic_opt: Adam,
}

fn scalar_param(
    device: &candle_core::Device,
    name: &str,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> Result<ParamStore> {
    let mut s = ParamStore::new(device.clone());
    s.builder("", rng).constant(name, &[1], 0.0)?;
    Ok(s)
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
        let mut critic_store = ParamStore::new(device.clone());
        let (critic, cont, critic_target, critic_target_store) = match spec.action {
            ActionSpec::Continuous { dim, max_action } => {
                let mut actor_store = ParamStore::new(device.clone());
                let actor = TanhGaussianActor::new(
                    &mut actor_store.builder("", &mut rng),
                    od,
                    dim,
                    &h,
                    max_action,
                )?;
                let critic =
                    QEnsemble::continuous(&mut critic_store.builder("", &mut rng), 2, od, dim, &h)?;
                let (t, ts) = target_of(&critic_store, |vb| {
                    QEnsemble::continuous(vb, 2, od, dim, &h)
                })?;
                let actor_opt = Adam::new(&actor_store, AdamConfig::with_lr(cfg.actor_lr))?;
                let log_alpha = scalar_param(device, "log_alpha", &mut rng)?;
                let alpha_opt = Adam::new(&log_alpha, AdamConfig::with_lr(cfg.alpha_lr))?;
                let log_alpha_prime = scalar_param(device, "log_alpha_prime", &mut rng)?;
                let alpha_prime_opt =
                    Adam::new(&log_alpha_prime, AdamConfig::with_lr(cfg.alpha_lr))?;
                let c = Continuous {
                    act_dim: dim,
                    max_action,
                    actor,
                    actor_store,
                    actor_opt,
                    log_alpha,
                    alpha_opt,
                    log_alpha_prime,
                    alpha_prime_opt,
                };
                (critic, Some(c), t, ts)
            }
            ActionSpec::Discrete { n } => {
                let critic =
                    QEnsemble::discrete(&mut critic_store.builder("", &mut rng), 1, od, n, &h)?;
                let (t, ts) = target_of(&critic_store, |vb| QEnsemble::discrete(vb, 1, od, n, &h))?;
                (critic, None, t, ts)
            }
        };
        let critic_opt = Adam::new(&critic_store, AdamConfig::with_lr(cfg.critic_lr))?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            cont,
            critic,
            critic_store,
            critic_target,
            critic_target_store,
            critic_opt,
        })
    }
}

fn param(store: &ParamStore, name: &str) -> Result<Tensor> {
    store
        .get(name)
        .map(|v| v.as_tensor().clone())
        .ok_or_else(|| crate::AlgoError::Config(format!("missing parameter {name}")))
}

// ---- continuous losses ----

/// Random draws one continuous update needs, made up front from the seeded noise so that the
/// loss functions stay pure: `(eps for pi(s'), eps for pi(s) x N, eps for pi(s') x N,
/// uniform actions x N, eps for the actor step)`.
struct Draws {
    target: Tensor,
    cur: Tensor,
    next: Tensor,
    uniform: Tensor,
    actor: Tensor,
}

/// Critic loss of both members: TD + CQL(H) regulariser. Returns `(loss, mean Q, mean |TD|,
/// cql gap (logsumexp - data Q, averaged), lagrange loss or None)`.
fn critic_loss(
    t: &Cql,
    c: &Continuous,
    b: &BatchTensors,
    d: &Draws,
) -> Result<(Tensor, Tensor, Tensor, Tensor, Option<Tensor>)> {
    let n = t.cfg.n_actions;
    let alpha = param(&c.log_alpha, "log_alpha")?.exp()?.detach();
    // TD target.
    let y = {
        let (a2, lp2) = c.actor.sample_with(&b.s2, &d.target)?;
        let mut v2 = min_over_ensemble(&t.critic_target.q(&b.s2, &a2)?)?;
        if t.cfg.backup_entropy {
            v2 = (v2 - lp2.broadcast_mul(&alpha)?)?;
        }
        b.td_target(&v2)?.detach()
    };
    let q = t.critic.q(&b.s, &b.a)?; // [2, B]
    let diff = q.broadcast_sub(&y.unsqueeze(0)?)?;
    let td_loss = mse_per_member(&q, &y)?; // [2]: MSE per member (rlkit, CORL, d3rlpy)
    // CQL(H): Q at 3N sampled actions per state.
    let s_rep = repeat_rows(&b.s, n)?; // [B*N, obs]
    let s2_rep = repeat_rows(&b.s2, n)?;
    let (a_cur, lp_cur) = c.actor.sample_with(&s_rep, &d.cur)?;
    let (a_next, lp_next) = c.actor.sample_with(&s2_rep, &d.next)?;
    let q_rand = t.critic.q(&s_rep, &d.uniform)?; // [2, B*N]
    let q_cur = t.critic.q(&s_rep, &a_cur.detach())?;
    let q_next = t.critic.q(&s_rep, &a_next.detach())?;
    let log_unif = (c.act_dim as f64) * (0.5f64 / c.max_action).ln();
    let lse = cql_logsumexp(
        &q_rand,
        &q_next,
        &q_cur,
        &lp_next,
        &lp_cur,
        log_unif,
        n,
        t.cfg.temperature,
    )?; // [2, B]
    let gap = (lse - &q)?.mean(1)?; // [2]
    let (penalty, lagrange) = match t.cfg.target_action_gap {
        None => ((&gap * t.cfg.cql_alpha)?, None),
        Some(target) => {
            let ap = param(&c.log_alpha_prime, "log_alpha_prime")?
                .exp()?
                .clamp(0.0, 1e6)?;
            let pen = ((&gap - target)?.broadcast_mul(&ap.detach())? * t.cfg.cql_alpha)?;
            // alpha' ascends the penalty: minimise its negation, with Q fixed.
            let lag = ((gap.detach() - target)?.broadcast_mul(&ap)? * (-0.5 * t.cfg.cql_alpha))?
                .sum_all()?;
            (pen, Some(lag))
        }
    };
    let loss = (td_loss + penalty)?.sum_all()?;
    Ok((
        loss,
        q.mean_all()?,
        diff.get(0)?.abs()?.mean_all()?,
        gap.mean_all()?,
        lagrange,
    ))
}

/// SAC actor and temperature losses: `(actor loss, alpha loss, entropy estimate)`.
fn actor_loss(
    t: &Cql,
    c: &Continuous,
    b: &BatchTensors,
    d: &Draws,
) -> Result<(Tensor, Tensor, Tensor)> {
    let log_alpha = param(&c.log_alpha, "log_alpha")?;
    let (a, lp) = c.actor.sample_with(&b.s, &d.actor)?;
    let q = min_over_ensemble(&t.critic.q(&b.s, &a)?)?;
    let alpha = log_alpha.exp()?.detach();
    let actor = (lp.broadcast_mul(&alpha)? - q)?.mean_all()?;
    let target_entropy = -(c.act_dim as f64);
    let alpha_loss = (log_alpha
        .broadcast_mul(&(lp.detach() + target_entropy)?)?
        .neg()?)
    .mean_all()?;
    Ok((actor, alpha_loss, lp.neg()?.mean_all()?))
}

// ---- discrete loss ----

/// Double-DQN Huber TD loss plus `alpha (logsumexp_a Q(s,a) - Q(s,a_data))`:
/// `(loss, mean Q, mean |TD|, gap)`.
fn discrete_loss(t: &Cql, b: &BatchTensors) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let q_all = t.critic.q_all(&b.s)?.get(0)?; // [B, n]
    let q = gather_actions(&q_all, &b.a)?;
    let y = {
        let a2 = t.critic.q_all(&b.s2)?.get(0)?.argmax(D::Minus1)?;
        let q2 = gather_actions(&t.critic_target.q_all(&b.s2)?.get(0)?, &a2)?;
        b.td_target(&q2)?.detach()
    };
    let td = huber_loss(&q, &y)?;
    let gap = (q_all.log_sum_exp(D::Minus1)? - &q)?.mean_all()?;
    let loss = (td + (&gap * t.cfg.discrete_cql_alpha)?)?;
    Ok((loss, q.mean_all()?, (&q - &y)?.abs()?.mean_all()?, gap))
}

impl Cql {
    fn draws(&mut self, bsz: usize) -> Result<Draws> {
        let Some(c) = &self.cont else {
            return Err(crate::AlgoError::Config(
                "continuous draws for discrete CQL".into(),
            ));
        };
        let (a, n, m) = (c.act_dim, self.cfg.n_actions, c.max_action as f32);
        Ok(Draws {
            target: self.core.noise.normal(&[bsz, a])?,
            cur: self.core.noise.normal(&[bsz * n, a])?,
            next: self.core.noise.normal(&[bsz * n, a])?,
            uniform: self.core.noise.uniform(&[bsz * n, a], -m, m)?,
            actor: self.core.noise.normal(&[bsz, a])?,
        })
    }
    /// One SAC + CQL(H) step. All losses (critic with the regulariser, Lagrange multiplier,
    /// actor, temperature) are built from the same parameters and their gradients computed before
    /// any optimizer steps, as the reference code does (CORL `cql.py`, `ContinuousCQL.train`: the
    /// policy, alpha and Q losses are formed first, then each optimizer steps).
    fn update_continuous(&mut self, b: &BatchTensors, d: &Draws, m: &mut Metrics) -> Result<()> {
        let Some(c) = &self.cont else { return Ok(()) };
        let (critic, q, td, gap, lag) = critic_loss(self, c, b, d)?;
        let (actor, alpha_loss, entropy) = actor_loss(self, c, b, d)?;
        let step = self.core.steps;
        record(m, step, "critic_loss", &critic)?;
        record(m, step, "q_mean", &q)?;
        record(m, step, "td_error", &td)?;
        record(m, step, "cql_gap", &gap)?;
        if let Some(lag) = &lag {
            record(m, step, "alpha_prime_loss", lag)?;
        }
        record(m, step, "actor_loss", &actor)?;
        record(m, step, "alpha_loss", &alpha_loss)?;
        record(m, step, "entropy", &entropy)?;
        record(
            m,
            step,
            "alpha",
            &param(&c.log_alpha, "log_alpha")?.exp()?.sum_all()?,
        )?;
        // Gradients first, then steps: no loss sees another's update.
        let g_critic = critic.backward()?;
        let g_lag = lag.as_ref().map(Tensor::backward).transpose()?;
        let g_actor = actor.backward()?;
        let g_alpha = alpha_loss.backward()?;
        self.critic_opt.step(&g_critic)?;
        let c = self
            .cont
            .as_mut()
            .ok_or_else(|| crate::AlgoError::Config("no actor".into()))?;
        c.actor_opt.step(&g_actor)?;
        c.alpha_opt.step(&g_alpha)?;
        if let Some(g) = g_lag {
            c.alpha_prime_opt.step(&g)?;
        }
        self.critic_target_store
            .soft_update_from(&self.critic_store, self.cfg.tau)?;
        Ok(())
    }
    fn update_discrete(&mut self, b: &BatchTensors, m: &mut Metrics) -> Result<()> {
        let (loss, q, td, gap) = discrete_loss(self, b)?;
        record(m, self.core.steps, "critic_loss", &loss)?;
        record(m, self.core.steps, "q_mean", &q)?;
        record(m, self.core.steps, "td_error", &td)?;
        record(m, self.core.steps, "cql_gap", &gap)?;
        self.critic_opt.backward_step(&loss)?;
        if (self.core.steps + 1).is_multiple_of(self.cfg.target_update_interval.max(1)) {
            self.critic_target_store.copy_from(&self.critic_store)?;
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
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let mut m = Metrics::new();
        if self.cont.is_some() {
            let d = self.draws(batch.batch_size)?;
            self.update_continuous(&b, &d, &mut m)?;
        } else {
            self.update_discrete(&b, &mut m)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        match &self.cont {
            Some(c) if deterministic => Ok(c.actor.deterministic(s)?),
            Some(c) => {
                let eps = self.core.act_noise.normal(&[s.dim(0)?, c.act_dim])?;
                Ok(c.actor.sample_with(s, &eps)?.0)
            }
            None => Ok(self.critic.q_all(s)?.get(0)?.argmax(D::Minus1)?),
        }
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(match &self.cont {
            Some(c) => Some(c.actor.log_prob(s, a)?),
            None => None,
        })
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(match &self.cont {
            Some(_) => min_over_ensemble(&self.critic.q(s, a)?)?,
            None => gather_actions(&self.critic.q_all(s)?.get(0)?, a)?,
        }))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let h = self.cfg.hidden.len();
        Ok(Some(match &self.cont {
            Some(c) => {
                let mut names = mlp_layer_names("trunk.", h);
                names.push("mean".into());
                plain_policy(&c.actor_store.named_tensors(""), &names, &self.core.spec)?
            }
            None => plain_policy(
                &self.critic_store.named_tensors(""),
                &mlp_layer_names("", h + 1),
                &self.core.spec,
            )?,
        }))
    }
    fn nets(&self) -> Vec<(&'static str, &dyn NetState)> {
        let mut v: Vec<(&'static str, &dyn NetState)> = vec![
            ("critic", &self.critic_store),
            ("critic_target", &self.critic_target_store),
        ];
        if let Some(c) = &self.cont {
            v.push(("actor", &c.actor_store));
            v.push(("log_alpha", &c.log_alpha));
            v.push(("log_alpha_prime", &c.log_alpha_prime));
        }
        v
    }
    fn nets_mut(&mut self) -> Vec<(&'static str, &mut dyn NetState)> {
        let mut v: Vec<(&'static str, &mut dyn NetState)> = vec![
            ("critic", &mut self.critic_store),
            ("critic_target", &mut self.critic_target_store),
        ];
        if let Some(c) = &mut self.cont {
            v.push(("actor", &mut c.actor_store));
            v.push(("log_alpha", &mut c.log_alpha));
            v.push(("log_alpha_prime", &mut c.log_alpha_prime));
        }
        v
    }
    fn optims(&self) -> Vec<(&'static str, &dyn OptimState)> {
        let mut v: Vec<(&'static str, &dyn OptimState)> = vec![("critic", &self.critic_opt)];
        if let Some(c) = &self.cont {
            v.push(("actor", &c.actor_opt));
            v.push(("log_alpha", &c.alpha_opt));
            v.push(("log_alpha_prime", &c.alpha_prime_opt));
        }
        v
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn OptimState)> {
        let mut v: Vec<(&'static str, &mut dyn OptimState)> = vec![("critic", &mut self.critic_opt)];
        if let Some(c) = &mut self.cont {
            v.push(("actor", &mut c.actor_opt));
            v.push(("log_alpha", &mut c.alpha_opt));
            v.push(("log_alpha_prime", &mut c.alpha_prime_opt));
        }
        v
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
