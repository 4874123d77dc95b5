//! IQL: Implicit Q-Learning (Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning
//! with Implicit Q-Learning").
//!
//! Never queries Q at actions outside the dataset. With `L_2^tau(u) = |tau - 1(u < 0)| u^2`:
//!
//! ```text
//! value (eq. 5):    L(psi)   = E_(s,a)~D L_2^tau( min_i Q'_i(s, a) - V_psi(s) )
//! critic (eq. 6):   L(theta) = sum_i E_(s,a,r,s')~D ( r + gamma (1 - d) V_psi(s') - Q_i(s, a) )^2
//! policy (eq. 7):   L(phi)   = -E_(s,a)~D min(exp(beta (min_i Q'_i(s,a) - V_psi(s))), 100) log pi_phi(a|s)
//! targets:          Q' <- polyak(Q, tau) after every critic step
//! ```
//!
//! Order within an update follows the reference code and CORL `iql.py`: `V(s')` is read before
//! the value step, the advantage uses `V(s)` before the value step, then critic, then policy.
//! None of the three losses reads what another step changes (the critic's target `V(s')` and
//! the policy's advantage are taken before the value step), so all three gradients are
//! computed from the parameters before any step, on two threads when the run has them
//! (`Iql::grads`).
//!
//! Discrete actions: `Q(s, .)` heads, a categorical policy, the same three losses with
//! `Q(s, a)` gathered at the data action (orl's addition; the paper is continuous only).
//!
//! Gradients with respect to the network outputs (`B` rows, `E = 2` critics), which the
//! engine carries back to the parameters (`u_b = min_i Q'_i(s_b, a_b) - V(s_b)`,
//! `w_b = |tau - 1(u_b < 0)|`):
//!
//! ```text
//! value:   dL/dV_b  = -2 w_b u_b / B
//! critic:  dL/dQ_eb = 2 (Q_eb - y_b) / B          (discrete: at the data action, 0 elsewhere)
//! policy:  dL/d log pi(a_b|s_b) = -min(exp(beta u_b), 100) / B
//! ```
//!
//! One implementation for every backend (`Iql<B: Backend>`, `orl_nets::engine::backend`): the
//! losses' elementwise parts are the kernels below (`Expectile`, `ExpectileGrad`, `AwrWeight`,
//! `Bellman`, the shared TD loss); discrete actions are gathered and scattered through their
//! one-hot. On the CPU engine every number is the earlier hand-written loops', bit for bit
//! (checked over 200 updates, both action kinds, losses and final parameters).

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::backend::{Bellman, 
    Backend, Candle, Cpu, Difference, Identity, Map1, Min, Product, Scalar,
};
use orl_nets::engine::{
    Activation, CategoricalHead, DensityBufs, GaussianHead, Input, Mlp, MlpCache, Params,
    PolicyHead, QBufs, QCache, QNet,
};
use orl_nets::{AdamConfig, CosineSchedule};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchBufs, Core, Metrics, Probe, Spec, TdBufs, check_batch, head_act,
    head_log_prob, host_rows, mlp_layer_names, plain_policy, record_value, state_lists,
    td_mse_grad_on,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, Compute, RewardRecipe, defaults_of, parse_config, reduced_width, resolve,
};
use crate::validate as v;

/// IQL settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IqlConfig {
    /// Hidden sizes of every network.
    pub hidden: Vec<usize>,
    /// Policy learning rate.
    pub actor_lr: f64,
    /// Q learning rate.
    pub critic_lr: f64,
    /// V learning rate.
    pub value_lr: f64,
    /// Polyak coefficient of the target Q.
    pub tau: f64,
    /// Expectile `tau` of the value loss.
    pub expectile: f64,
    /// Inverse temperature `beta` of advantage weighting.
    pub beta: f64,
    /// Cap of `exp(beta * A)`.
    pub max_weight: f64,
    /// Cosine decay of the policy learning rate over this many updates (`None`: constant). A
    /// training [`crate::Recipe`] sets it to the run's length unless it is given explicitly.
    pub actor_cosine_steps: Option<usize>,
    /// Floor of the policy's state-independent `log std`.
    pub log_std_min: f64,
}

impl Default for IqlConfig {
    /// The paper's locomotion settings (appendix B): 256x256, Adam 3e-4 everywhere, tau 0.005,
    /// expectile 0.7, beta 3.0, weights capped at 100, cosine policy schedule over 1M steps
    /// (also CORL `iql.py`); `log std` floored at -5 as the authors' code
    /// (`implicit_q_learning/learner.py`, `log_std_min=-5.0`) and d3rlpy's IQL (CORL uses -20,
    /// which lets the std collapse and the importance weights of OPE explode).
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            actor_lr: 3e-4,
            critic_lr: 3e-4,
            value_lr: 3e-4,
            tau: 0.005,
            expectile: 0.7,
            beta: 3.0,
            max_weight: 100.0,
            actor_cosine_steps: Some(1_000_000),
            log_std_min: -5.0,
        }
    }
}

impl AlgoConfig for IqlConfig {
    fn validate(&self) -> Result<()> {
        v::hidden("iql.hidden", &self.hidden)?;
        v::positive("iql.actor_lr", self.actor_lr)?;
        v::positive("iql.critic_lr", self.critic_lr)?;
        v::positive("iql.value_lr", self.value_lr)?;
        v::unit_open_closed("iql.tau", self.tau)?;
        v::unit_open("iql.expectile", self.expectile)?;
        v::non_negative("iql.beta", self.beta)?;
        v::positive("iql.max_weight", self.max_weight)?;
        if let Some(n) = self.actor_cosine_steps {
            v::count("iql.actor_cosine_steps", n, usize::MAX)?;
        }
        v::ordered("iql.log_std_min", self.log_std_min, 2.0)
    }
}

/// The registry entry of IQL.
pub static INFO: AlgoInfo = AlgoInfo {
    name: "iql",
    summary: "implicit Q-learning (expectile value, advantage-weighted regression)",
    discrete: true,
    continuous: true,
    // The paper's appendix B and CORL `iql.py`: batch 256.
    batch_size: 256,
    // CORL `iql.py` (`normalize: True`) and the authors' code standardise states.
    normalize_observations: true,
    // Appendix B: rewards scaled by 1000 / (max return - min return) on locomotion.
    reward: RewardRecipe::ReturnRange,
    relative_cost: 18,
    defaults: defaults_of::<IqlConfig>,
    reduced: reduced_width,
    // The authors and CORL anneal the policy's learning rate over the run's own length.
    fit_to_run: |cfg, steps| {
        if let Some(m) = cfg.as_object_mut() {
            m.entry("actor_cosine_steps")
                .or_insert(serde_json::json!(steps));
        }
    },
    test_config: || serde_json::json!({"hidden": [32, 32], "actor_cosine_steps": 1000}),
    resolve: |v| resolve::<IqlConfig>("iql", v),
    build: |spec, cfg, seed, compute| {
        let cfg = parse_config("iql", cfg)?;
        Ok(match compute {
            Compute::Engine(device) => Box::new(Iql::new(spec, cfg, seed, device)?),
            Compute::Candle(device) => Box::new(Iql::new_on(
                Candle::new(device.clone()),
                spec,
                cfg,
                seed,
                device,
            )?),
        })
    },
};

/// IQL on backend `B`: the CPU engine by default, candle tensors with
/// [`Iql::new_on`]`(Candle, ..)`.
pub struct Iql<B: Backend = Cpu> {
    be: B,
    cfg: IqlConfig,
    core: Core,
    actor: PolicyHead,
    critic: QNet,
    value: Mlp,
    actor_params: B::Params,
    critic_params: B::Params,
    critic_target: B::Params,
    value_params: B::Params,
    actor_opt: B::Adam,
    critic_opt: B::Adam,
    value_opt: B::Adam,
    scratch: Scratch<B>,
    /// Acting runs on the host copy of the policy.
    acting: MlpCache,
}

/// Buffers reused by every update (sized by the first one), split by the two halves of an
/// update that may run on two threads (`Iql::grads`).
struct Scratch<B: Backend> {
    b: BatchBufs<B>,
    /// Discrete: the one-hot of the data actions for both critics, `[2B, n]`.
    onehot2: B::Buf,
    /// `V(s')` before the value step.
    v_next: B::Buf,
    critic: CriticScratch<B>,
    value_actor: ValueActorScratch<B>,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            b: BatchBufs::default(),
            onehot2: B::Buf::default(),
            v_next: B::Buf::default(),
            critic: CriticScratch::default(),
            value_actor: ValueActorScratch::default(),
        }
    }
}

/// `Q_e(s_b, a_b)` of both critics: the network's buffers and the gathered values.
struct QMembers<B: Backend> {
    q: QBufs<B>,
    /// Discrete: `Q_e(s_b, .)` masked by the one-hot, before the row sum.
    hit: B::Buf,
    /// Gathered `Q_e(s_b, a_b)` `[2B, 1]`.
    q_sa: B::Buf,
}

impl<B: Backend> Default for QMembers<B> {
    fn default() -> Self {
        Self {
            q: QBufs::default(),
            hit: B::Buf::default(),
            q_sa: B::Buf::default(),
        }
    }
}

/// The critic step's buffers.
struct CriticScratch<B: Backend> {
    q: QMembers<B>,
    y: B::Buf,
    td: TdBufs<B>,
    /// Discrete: `dL/dQ` at the data action, tiled and masked to `[2B, n]`.
    dq_t: B::Buf,
    dq_all: B::Buf,
}

impl<B: Backend> Default for CriticScratch<B> {
    fn default() -> Self {
        Self {
            q: QMembers::default(),
            y: B::Buf::default(),
            td: TdBufs::default(),
            dq_t: B::Buf::default(),
            dq_all: B::Buf::default(),
        }
    }
}

/// The value and policy steps' buffers.
struct ValueActorScratch<B: Backend> {
    value: B::Cache,
    q_target: QMembers<B>,
    qa: B::Buf,
    qb: B::Buf,
    qmin: B::Buf,
    /// `u = min Q' - V(s)`, `[B, 1]`.
    adv: B::Buf,
    dv: B::Buf,
    /// `dL/d log pi = -min(exp(beta u), cap) / B` and the weights themselves.
    w: B::Buf,
    weights: B::Buf,
    density: DensityBufs<B>,
    /// `log pi(a|s)` `[B, 1]` (and, discrete, `log pi(.|s)` `[B, n]` with its masked copy).
    lp: B::Buf,
    lp_all: B::Buf,
    hit: B::Buf,
}

impl<B: Backend> Default for ValueActorScratch<B> {
    fn default() -> Self {
        Self {
            value: B::Cache::default(),
            q_target: QMembers::default(),
            qa: B::Buf::default(),
            qb: B::Buf::default(),
            qmin: B::Buf::default(),
            adv: B::Buf::default(),
            dv: B::Buf::default(),
            w: B::Buf::default(),
            weights: B::Buf::default(),
            density: DensityBufs::default(),
            lp: B::Buf::default(),
            lp_all: B::Buf::default(),
            hit: B::Buf::default(),
        }
    }
}

/// What both halves of an update read: the backend, the networks' structure, the settings and
/// the batch on the backend.
struct Shared<'a, B: Backend> {
    be: &'a B,
    cfg: &'a IqlConfig,
    critic: &'a QNet,
    value: &'a Mlp,
    actor: &'a PolicyHead,
    b: &'a BatchBufs<B>,
    onehot2: &'a B::Buf,
    v_next: &'a B::Buf,
    bsz: usize,
    /// Discrete actions' count (0 for continuous actions).
    n: usize,
}

impl Iql<Cpu> {
    /// Builds policy, twin Q, target Q and V for `spec` on the CPU engine, initialised from
    /// `seed`.
    pub fn new(
        spec: Spec,
        cfg: IqlConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Iql<B> {
    /// [`Iql::new`] on backend `be` (the same initial parameters on every backend).
    pub fn new_on(
        be: B,
        spec: Spec,
        cfg: IqlConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let h = cfg.hidden.clone();
        let od = spec.obs_dim;
        let mut actor_params = Params::new();
        let mut critic_params = Params::new();
        let mut value_params = Params::new();
        let (actor, critic) = match spec.action {
            ActionSpec::Continuous { dim, max_action } => (
                PolicyHead::Gaussian(GaussianHead::new(
                    &mut actor_params.builder("", &mut rng),
                    od,
                    dim,
                    &h,
                    max_action,
                    cfg.log_std_min as f32,
                )?),
                QNet::continuous(&mut critic_params.builder("", &mut rng), 2, od, dim, &h)?,
            ),
            ActionSpec::Discrete { n } => (
                PolicyHead::Categorical(CategoricalHead::new(
                    &mut actor_params.builder("", &mut rng),
                    od,
                    n,
                    &h,
                )?),
                QNet::discrete(&mut critic_params.builder("", &mut rng), 2, od, n, &h)?,
            ),
        };
        let value = Mlp::new(
            &mut value_params.builder("", &mut rng),
            od,
            &h,
            1,
            Activation::Identity,
        )?;
        let schedule = cfg
            .actor_cosine_steps
            .map(|total| CosineSchedule { total_steps: total });
        let critic_target = be.place(&critic_params)?;
        let (actor_params, critic_params, value_params) = (
            be.place(&actor_params)?,
            be.place(&critic_params)?,
            be.place(&value_params)?,
        );
        let actor_opt = be.adam(&actor_params, AdamConfig::with_lr(cfg.actor_lr), schedule)?;
        let critic_opt = be.adam(&critic_params, AdamConfig::with_lr(cfg.critic_lr), None)?;
        let value_opt = be.adam(&value_params, AdamConfig::with_lr(cfg.value_lr), None)?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            actor,
            critic,
            value,
            critic_target,
            actor_params,
            critic_params,
            value_params,
            actor_opt,
            critic_opt,
            value_opt,
            scratch: Scratch::default(),
            acting: MlpCache::new(),
            be,
        })
    }
}

/// `Q_e(s_b, a_b)` of both members into `out.q_sa: [2B, 1]` (discrete: gathered at the data
/// action through its one-hot).
fn q_members<'o, B: Backend>(
    sh: &Shared<'_, B>,
    params: &B::Params,
    out: &'o mut QMembers<B>,
) -> Result<&'o B::Buf> {
    let be = sh.be;
    if sh.n == 0 {
        let q = sh
            .critic
            .q_on(be, params, &sh.b.s, &sh.b.a, sh.bsz, 2, &mut out.q)?;
        be.map1(&Identity, q, &mut out.q_sa)?;
    } else {
        let q = sh.critic.q_all_on(be, params, &sh.b.s, sh.bsz, &mut out.q)?;
        be.map2(&Product, q, sh.onehot2, &mut out.hit)?;
        be.sum_cols(&out.hit, sh.n, &mut out.q_sa)?;
    }
    Ok(&out.q_sa)
}

// ---- losses and their gradients (into the optimizers' gradient buffers) ----

/// The expectile loss `L_2^tau(u) = |tau - 1(u < 0)| u^2`, written with `u+ = max(u, 0)` and
/// `u- = min(u, 0)` (one of them is zero) so that it needs no comparison: `tau u+ u+ +
/// (1 - tau) u- u-`, the engine's `w u u` exactly.
struct Expectile {
    tau: f32,
}

impl Map1 for Expectile {
    #[inline(always)]
    fn apply<S: Scalar>(&self, u: S) -> S {
        let (p, n) = (u.clone().clamp(0.0, f32::INFINITY), u.clamp(f32::NEG_INFINITY, 0.0));
        p.clone().scale(self.tau) * p + n.clone().scale(1.0 - self.tau) * n
    }
}

/// `dL/dV = -2 w u / B` of the expectile loss (`w` as in [`Expectile`]).
struct ExpectileGrad {
    tau: f32,
    bsz: f32,
}

impl Map1 for ExpectileGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, u: S) -> S {
        let (p, n) = (u.clone().clamp(0.0, f32::INFINITY), u.clamp(f32::NEG_INFINITY, 0.0));
        (p.scale(-2.0 * self.tau) + n.scale(-2.0 * (1.0 - self.tau))).div_by(self.bsz)
    }
}

/// The advantage weight `min(exp(beta u), cap)` (and `>= 0`).
struct AwrWeight {
    beta: f32,
    cap: f32,
}

impl Map1 for AwrWeight {
    #[inline(always)]
    fn apply<S: Scalar>(&self, u: S) -> S {
        u.scale(self.beta).exp().clamp(0.0, self.cap)
    }
}

/// `-x / B`.
struct NegMean(f32);

impl Map1 for NegMean {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.scale(-1.0).div_by(self.0)
    }
}

/// Eq. 5: expectile regression of `V(s)` on `min_i Q'_i(s, a)`; leaves the advantage
/// `u = min Q' - V(s)` (before the value step) in the scratch; returns `(loss, mean u)`.
fn value_grad<B: Backend>(
    sh: &Shared<'_, B>,
    target: &B::Params,
    vp: &B::Params,
    sc: &mut ValueActorScratch<B>,
    g: &mut B::Buf,
) -> Result<(f64, f64)> {
    let (be, bsz) = (sh.be, sh.bsz);
    let q = q_members(sh, target, &mut sc.q_target)?;
    be.rows(q, 1, 0, bsz, &mut sc.qa)?;
    be.rows(q, 1, bsz, bsz, &mut sc.qb)?;
    be.map2(&Min, &sc.qa, &sc.qb, &mut sc.qmin)?;
    be.mlp_forward(sh.value, vp, &sh.b.s, Input::Shared, bsz, &mut sc.value)?;
    be.map2(&Difference, &sc.qmin, be.mlp_output(&sc.value), &mut sc.adv)?;
    let tau = sh.cfg.expectile as f32;
    let loss = be.map1_sum(&Expectile { tau }, &sc.adv)?;
    let adv_sum = be.map1_sum(&Identity, &sc.adv)?;
    let k = ExpectileGrad {
        tau,
        bsz: bsz as f32,
    };
    be.map1(&k, &sc.adv, &mut sc.dv)?;
    be.mlp_backward(sh.value, vp, &sh.b.s, Input::Shared, &mut sc.value, &sc.dv, Some(g), None)?;
    Ok((loss / bsz as f64, adv_sum / bsz as f64))
}

/// Eq. 6: `sum_i E (Q_i(s,a) - (r + gamma (1-d) V(s')))^2` with `V(s')` read before the
/// value step; returns `(loss, mean Q, mean |Q_1 - y|)`.
fn critic_grad<B: Backend>(
    sh: &Shared<'_, B>,
    cp: &B::Params,
    sc: &mut CriticScratch<B>,
    g: &mut B::Buf,
) -> Result<(f64, f64, f64)> {
    let (be, bsz) = (sh.be, sh.bsz);
    be.map3(&Bellman, &sh.b.r, &sh.b.nd, sh.v_next, &mut sc.y)?;
    let q = q_members(sh, cp, &mut sc.q)?;
    let out = td_mse_grad_on(be, q, &sc.y, 2, bsz, 1.0, &mut sc.td)?;
    if sh.n == 0 {
        sh.critic
            .backward_on(be, cp, &mut sc.q.q, &sc.td.dq, Some(g), None)?;
    } else {
        // dL/dQ_e(s_b, .) is dL/dQ_eb at the data action and zero elsewhere.
        be.tile_cols(&sc.td.dq, sh.n, &mut sc.dq_t)?;
        be.map2(&Product, &sc.dq_t, sh.onehot2, &mut sc.dq_all)?;
        sh.critic
            .backward_all_on(be, cp, &sh.b.s, &mut sc.q.q, &sc.dq_all, g)?;
    }
    Ok(out)
}

/// Eq. 7: `-E min(exp(beta u), max_weight) log pi(a|s)` with the advantage of
/// [`value_grad`]; returns `(loss, mean weight)`.
fn actor_grad<B: Backend>(
    sh: &Shared<'_, B>,
    p: &B::Params,
    sc: &mut ValueActorScratch<B>,
    g: &mut B::Buf,
) -> Result<(f64, f64)> {
    let (be, bsz) = (sh.be, sh.bsz);
    let k = AwrWeight {
        beta: sh.cfg.beta as f32,
        cap: sh.cfg.max_weight as f32,
    };
    be.map1(&k, &sc.adv, &mut sc.weights)?;
    let w_sum = be.map1_sum(&Identity, &sc.weights)?;
    be.map1(&NegMean(bsz as f32), &sc.weights, &mut sc.w)?;
    let (s, a) = (&sh.b.s, &sh.b.a);
    match sh.actor {
        PolicyHead::Gaussian(h) => {
            h.log_prob_on(be, p, s, a, bsz, &mut sc.density, &mut sc.lp)?;
            h.log_prob_backward_on(be, p, s, a, &sc.w, &mut sc.density, g)?;
        }
        PolicyHead::Categorical(h) => {
            h.log_probs_on(be, p, s, bsz, &mut sc.density, &mut sc.lp_all)?;
            be.map2(&Product, &sc.lp_all, a, &mut sc.hit)?;
            be.sum_cols(&sc.hit, h.n(), &mut sc.lp)?;
            h.log_prob_backward_on(be, p, s, a, &sc.w, &sc.lp_all, &mut sc.density, g)?;
        }
        PolicyHead::Deterministic(_) => {
            return Err(crate::error::AlgoError::Config(
                "iql: the policy is Gaussian or categorical".into(),
            ));
        }
    }
    Ok((be.dot(&sc.w, &sc.lp)?, w_sum / bsz as f64))
}


/// The losses of one update: `(value loss, mean advantage)`, `(critic loss, mean Q, TD
/// error)`, `(actor loss, mean weight)`.
type Losses = ((f64, f64), (f64, f64, f64), (f64, f64));

impl<B: Backend> Iql<B> {
    /// Checks and uploads the batch and reads `V(s')` (before any step).
    fn prepare(&mut self, batch: &Batch) -> Result<()> {
        check_batch(batch, &self.core.spec)?;
        let (be, sc) = (&self.be, &mut self.scratch);
        sc.b.upload(be, batch, &self.core.spec, true)?;
        if let ActionSpec::Discrete { .. } = self.core.spec.action {
            be.tile_rows(&sc.b.a, 2, &mut sc.onehot2)?;
        }
        let cache = &mut sc.value_actor.value;
        be.mlp_forward(
            &self.value,
            &self.value_params,
            &sc.b.s2,
            Input::Shared,
            batch.batch_size,
            cache,
        )?;
        be.map1(&Identity, be.mlp_output(cache), &mut sc.v_next)?;
        Ok(())
    }

    /// Every gradient of an update, into the optimizers' buffers, from the parameters before
    /// any step. After `V(s')` is read, the critic's loss needs nothing of the value and
    /// policy steps, and they nothing of it (the paper's order changes no number): with more
    /// than one thread in rayon's pool the critic half runs beside the value-and-policy half
    /// (`rayon::join`; one thread, the default, runs them one after the other). Either way the
    /// numbers are the same.
    fn grads(&mut self, batch: &Batch) -> Result<Losses> {
        let n = match self.core.spec.action {
            ActionSpec::Discrete { n } => n,
            ActionSpec::Continuous { .. } => 0,
        };
        let be = &self.be;
        let sh = Shared {
            be,
            cfg: &self.cfg,
            critic: &self.critic,
            value: &self.value,
            actor: &self.actor,
            b: &self.scratch.b,
            onehot2: &self.scratch.onehot2,
            v_next: &self.scratch.v_next,
            bsz: batch.batch_size,
            n,
        };
        let (cs, vs) = (&mut self.scratch.critic, &mut self.scratch.value_actor);
        let (target, cp, vp, ap) = (
            &self.critic_target,
            &self.critic_params,
            &self.value_params,
            &self.actor_params,
        );
        let (cg, vg, ag) = (
            be.zero_grad(&mut self.critic_opt)?,
            be.zero_grad(&mut self.value_opt)?,
            be.zero_grad(&mut self.actor_opt)?,
        );
        let sh = &sh;
        let mut critic_half = move || critic_grad(sh, cp, cs, cg);
        let mut value_actor_half = move || -> Result<_> {
            let value = value_grad(sh, target, vp, vs, vg)?;
            Ok((value, actor_grad(sh, ap, vs, ag)?))
        };
        let (critic, value_actor) = if rayon::current_num_threads() > 1 {
            rayon::join(critic_half, value_actor_half)
        } else {
            let c = critic_half();
            (c, value_actor_half())
        };
        let (value, actor) = value_actor?;
        Ok((value, critic?, actor))
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state. For the parity tests against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        let ((value_loss, _), (critic_loss, ..), (actor_loss, _)) = self.grads(batch)?;
        let be = &self.be;
        let mut out = Vec::new();
        for (loss, value, net, params, opt) in [
            ("value_loss", value_loss, "value", &self.value_params, &self.value_opt),
            ("critic_loss", critic_loss, "critic", &self.critic_params, &self.critic_opt),
            ("actor_loss", actor_loss, "actor", &self.actor_params, &self.actor_opt),
        ] {
            let mut g = Vec::new();
            be.download(be.grad(opt), &mut g)?;
            out.push(Probe::new(loss, value, net, &*be.host_params(params)?, &g));
        }
        Ok(out)
    }
}

impl<B: Backend> Algorithm for Iql<B> {
    fn name(&self) -> &'static str {
        "iql"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        self.prepare(batch)?;
        let step = self.core.steps;
        let ((v_loss, adv), (c_loss, q, td), (a_loss, w)) = self.grads(batch)?;
        // Every loss is checked before any parameter moves.
        let mut m = Metrics::new();
        record_value(&mut m, step, "value_loss", v_loss)?;
        record_value(&mut m, step, "advantage_mean", adv)?;
        record_value(&mut m, step, "critic_loss", c_loss)?;
        record_value(&mut m, step, "q_mean", q)?;
        record_value(&mut m, step, "td_error", td)?;
        record_value(&mut m, step, "actor_loss", a_loss)?;
        record_value(&mut m, step, "adv_weight_mean", w)?;
        let be = &self.be;
        m.insert("actor_lr", be.lr(&self.actor_opt));
        be.adam_step(&mut self.value_opt, &mut self.value_params)?;
        be.adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        be.soft_update(&mut self.critic_target, &self.critic_params, self.cfg.tau)?;
        be.adam_step(&mut self.actor_opt, &mut self.actor_params)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        head_act(
            &self.actor,
            &*self.be.host_params(&self.actor_params)?,
            s,
            &mut self.acting,
            deterministic,
            &mut self.core.act_noise,
        )
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        head_log_prob(
            &self.actor,
            &*self.be.host_params(&self.actor_params)?,
            s,
            a,
            &mut self.acting,
        )
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        let (x, b) = host_rows(s)?;
        let (a, _) = host_rows(a)?;
        let mut cache = QCache::default();
        let p = self.be.host_params(&self.critic_params)?;
        let min: Vec<f32> = match self.core.spec.action {
            ActionSpec::Continuous { .. } => {
                let q = self.critic.q(&p, &x, &a, b, &mut cache);
                (0..b).map(|i| q[i].min(q[b + i])).collect()
            }
            ActionSpec::Discrete { n } => {
                let q = self.critic.q_all(&p, &x, b, &mut cache);
                (0..b)
                    .map(|i| {
                        let k = (a[i].max(0.0) as usize).min(n - 1);
                        q[i * n + k].min(q[(b + i) * n + k])
                    })
                    .collect()
            }
        };
        Ok(Some(Tensor::from_vec(min, b, s.device())?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("net.", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.be.host_params(&self.actor_params)?.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    state_lists! {
        nets [
            "actor" => actor_params,
            "critic" => critic_params,
            "critic_target" => critic_target,
            "value" => value_params,
        ]
        optims ["actor" => actor_opt, "critic" => critic_opt, "value" => value_opt]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
