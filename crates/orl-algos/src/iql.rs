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

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::{
    Activation, CategoricalHead, FlatAdam, GaussianHead, Input, Mlp, MlpCache, Params,
    PolicyHead, QCache, QNet,
};
use orl_nets::{AdamConfig, CosineSchedule};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{state_lists, 
    ActionSpec, Algorithm, Core, Metrics, Probe, Spec, check_batch, discrete_indices, head_act,
    head_log_prob, host_rows, mlp_layer_names, plain_policy, record_value,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, RewardRecipe, defaults_of, parse_config, reduced_width, resolve,
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
        let device = compute.engine_device("iql")?;
        Ok(Box::new(Iql::new(
            spec,
            parse_config("iql", cfg)?,
            seed,
            device,
        )?))
    },
};

/// IQL.
pub struct Iql {
    cfg: IqlConfig,
    core: Core,
    actor: PolicyHead,
    critic: QNet,
    value: Mlp,
    actor_params: Params,
    critic_params: Params,
    critic_target: Params,
    value_params: Params,
    actor_opt: FlatAdam,
    critic_opt: FlatAdam,
    value_opt: FlatAdam,
    scratch: Scratch,
}

/// Buffers reused by every update (sized by the first one), split by the two halves of an
/// update that may run on two threads (`Iql::grads`).
#[derive(Default)]
struct Scratch {
    acting: MlpCache,
    /// Discrete: the data actions as indices (empty for continuous actions).
    idx: Vec<u32>,
    /// `V(s')` before the value step.
    v_next: Vec<f32>,
    critic: CriticScratch,
    value_actor: ValueActorScratch,
}

/// The critic step's buffers.
#[derive(Default)]
struct CriticScratch {
    q: QCache,
    /// Gathered `Q_e(s_b, a_b)` `[E, B]`.
    q_sa: Vec<f32>,
}

/// The value and policy steps' buffers.
#[derive(Default)]
struct ValueActorScratch {
    value: MlpCache,
    actor: MlpCache,
    q_target: QCache,
    /// Gathered `Q'_e(s_b, a_b)` `[E, B]`.
    q_sa: Vec<f32>,
    adv: Vec<f32>,
    w: Vec<f32>,
    out: Vec<f32>,
    lp: Vec<f32>,
}

/// What both halves of an update read: the networks' structure, the settings and the batch's
/// prepared columns.
struct Shared<'a> {
    cfg: &'a IqlConfig,
    critic: &'a QNet,
    value: &'a Mlp,
    actor: &'a PolicyHead,
    batch: &'a Batch,
    idx: &'a [u32],
    v_next: &'a [f32],
}

impl Iql {
    /// Builds policy, twin Q, target Q and V for `spec`, initialised from `seed`.
    pub fn new(
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
        let mut actor_opt = FlatAdam::new(&actor_params, AdamConfig::with_lr(cfg.actor_lr));
        if let Some(total) = cfg.actor_cosine_steps {
            actor_opt = actor_opt.with_schedule(CosineSchedule { total_steps: total });
        }
        let critic_opt = FlatAdam::new(&critic_params, AdamConfig::with_lr(cfg.critic_lr));
        let value_opt = FlatAdam::new(&value_params, AdamConfig::with_lr(cfg.value_lr));
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            actor,
            critic,
            value,
            critic_target: critic_params.clone(),
            actor_params,
            critic_params,
            value_params,
            actor_opt,
            critic_opt,
            value_opt,
            scratch: Scratch::default(),
        })
    }
}

/// `Q_e(s_b, a_b)` of every member into `out: [E, B]` (discrete: gathered at the data
/// action, whose indices are `idx`).
fn q_members(
    critic: &QNet,
    params: &Params,
    batch: &Batch,
    idx: &[u32],
    cache: &mut QCache,
    out: &mut Vec<f32>,
) {
    let bsz = batch.batch_size;
    let e = critic.members();
    out.resize(e * bsz, 0.0);
    if idx.is_empty() {
        let q = critic.q(params, &batch.observations, &batch.actions, bsz, cache);
        out.copy_from_slice(&q[..e * bsz]);
    } else {
        let q = critic.q_all(params, &batch.observations, bsz, cache);
        let n = q.len() / (e * bsz);
        for m in 0..e {
            for b in 0..bsz {
                out[m * bsz + b] = q[(m * bsz + b) * n + idx[b] as usize];
            }
        }
    }
}

// ---- losses and their gradients (into the optimizers' gradient buffers) ----

/// Eq. 5: expectile regression of `V(s)` on `min_i Q'_i(s, a)`; leaves the advantage
/// `u = min Q' - V(s)` (before the value step) in the scratch; returns `(loss, mean u)`.
fn value_grad(
    sh: &Shared<'_>,
    target: &Params,
    vp: &Params,
    sc: &mut ValueActorScratch,
    g: &mut [f32],
) -> (f64, f64) {
    let batch = sh.batch;
    let bsz = batch.batch_size;
    q_members(sh.critic, target, batch, sh.idx, &mut sc.q_target, &mut sc.q_sa);
    sh.value.forward(vp, &batch.observations, Input::Shared, bsz, &mut sc.value);
    sc.adv.resize(bsz, 0.0);
    let tau = sh.cfg.expectile as f32;
    let (mut loss, mut adv_sum) = (0.0f64, 0.0f64);
    let (v, dv) = sc.value.output_and_dout();
    for b in 0..bsz {
        let u = sc.q_sa[b].min(sc.q_sa[bsz + b]) - v[b];
        sc.adv[b] = u;
        let w = if u < 0.0 { 1.0 - tau } else { tau };
        loss += f64::from(w * u * u);
        adv_sum += f64::from(u);
        dv[b] = -2.0 * w * u / bsz as f32;
    }
    sh.value.backward(vp, &batch.observations, Input::Shared, &mut sc.value, Some(g), None);
    (loss / bsz as f64, adv_sum / bsz as f64)
}

/// Eq. 6: `sum_i E (Q_i(s,a) - (r + gamma (1-d) V(s')))^2` with `V(s')` read before the
/// value step; returns `(loss, mean Q, mean |Q_1 - y|)`.
fn critic_grad(
    sh: &Shared<'_>,
    cp: &Params,
    sc: &mut CriticScratch,
    g: &mut [f32],
) -> (f64, f64, f64) {
    let batch = sh.batch;
    let bsz = batch.batch_size;
    q_members(sh.critic, cp, batch, sh.idx, &mut sc.q, &mut sc.q_sa);
    let discrete = !sh.idx.is_empty();
    let dq = sc.q.mlp.dout_mut();
    let n = dq.len() / (2 * bsz);
    if discrete {
        dq.iter_mut().for_each(|v| *v = 0.0);
    }
    let (mut loss, mut q_sum, mut td) = (0.0f64, 0.0f64, 0.0f64);
    for e in 0..2 {
        for b in 0..bsz {
            let y = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * sh.v_next[b];
            let q = sc.q_sa[e * bsz + b];
            let diff = q - y;
            loss += f64::from(diff * diff);
            q_sum += f64::from(q);
            if e == 0 {
                td += f64::from(diff.abs());
            }
            let grad = 2.0 * diff / bsz as f32;
            if discrete {
                dq[(e * bsz + b) * n + sh.idx[b] as usize] = grad;
            } else {
                dq[e * bsz + b] = grad;
            }
        }
    }
    if discrete {
        sh.critic.backward_all(cp, &batch.observations, &mut sc.q, g);
    } else {
        sh.critic.backward(cp, &mut sc.q, Some(g), None);
    }
    (loss / bsz as f64, q_sum / (2 * bsz) as f64, td / bsz as f64)
}

/// Eq. 7: `-E min(exp(beta u), max_weight) log pi(a|s)` with the advantage of
/// [`value_grad`]; returns `(loss, mean weight)`.
fn actor_grad(sh: &Shared<'_>, p: &Params, sc: &mut ValueActorScratch, g: &mut [f32]) -> (f64, f64) {
    let batch = sh.batch;
    let bsz = batch.batch_size;
    let (beta, cap) = (sh.cfg.beta as f32, sh.cfg.max_weight as f32);
    sc.w.resize(bsz, 0.0);
    sc.lp.resize(bsz, 0.0);
    let mut w_sum = 0.0f64;
    for (w, &u) in sc.w.iter_mut().zip(&sc.adv) {
        let wb = (beta * u).exp().clamp(0.0, cap);
        w_sum += f64::from(wb);
        *w = -wb / bsz as f32;
    }
    let s = &batch.observations;
    match sh.actor {
        PolicyHead::Gaussian(h) => {
            sc.out.resize(bsz * h.act_dim(), 0.0);
            h.mean(p, s, bsz, &mut sc.actor, &mut sc.out);
            h.log_prob(p, &batch.actions, &sc.actor, &mut sc.lp);
            h.log_prob_backward(p, s, &batch.actions, &sc.w, &mut sc.actor, g);
        }
        PolicyHead::Categorical(h) => {
            let n = h.n();
            sc.out.resize(bsz * n, 0.0);
            h.log_probs(p, s, bsz, &mut sc.actor, &mut sc.out);
            for b in 0..bsz {
                sc.lp[b] = sc.out[b * n + sh.idx[b] as usize];
            }
            h.log_prob_backward(p, s, sh.idx, &sc.w, &sc.out, &mut sc.actor, g);
        }
        PolicyHead::Deterministic(_) => {}
    }
    let loss = sc
        .w
        .iter()
        .zip(&sc.lp)
        .map(|(&w, &lp)| f64::from(w) * f64::from(lp))
        .sum::<f64>();
    (loss, w_sum / bsz as f64)
}

/// The losses of one update: `(value loss, mean advantage)`, `(critic loss, mean Q, TD
/// error)`, `(actor loss, mean weight)`.
type Losses = ((f64, f64), (f64, f64, f64), (f64, f64));

impl Iql {
    /// Checks the batch, gathers its discrete actions and reads `V(s')` (before any step).
    fn prepare(&mut self, batch: &Batch) -> Result<()> {
        check_batch(batch, &self.core.spec)?;
        let sc = &mut self.scratch;
        match self.core.spec.action {
            ActionSpec::Discrete { n } => discrete_indices(batch, n, &mut sc.idx)?,
            ActionSpec::Continuous { .. } => sc.idx.clear(),
        }
        let bsz = batch.batch_size;
        let cache = &mut sc.value_actor.value;
        self.value.forward(
            &self.value_params,
            &batch.next_observations,
            Input::Shared,
            bsz,
            cache,
        );
        sc.v_next.clear();
        sc.v_next.extend_from_slice(cache.output());
        Ok(())
    }

    /// Every gradient of an update, into the optimizers' buffers, from the parameters before
    /// any step. After `V(s')` is read, the critic's loss needs nothing of the value and
    /// policy steps, and they nothing of it (the paper's order changes no number): with more
    /// than one thread in rayon's pool the critic half runs beside the value-and-policy half
    /// (`rayon::join`; one thread, the default, runs them one after the other). Either way the
    /// numbers are the same.
    fn grads(&mut self, batch: &Batch) -> Losses {
        let sh = Shared {
            cfg: &self.cfg,
            critic: &self.critic,
            value: &self.value,
            actor: &self.actor,
            batch,
            idx: &self.scratch.idx,
            v_next: &self.scratch.v_next,
        };
        let (cs, vs) = (&mut self.scratch.critic, &mut self.scratch.value_actor);
        let (target, cp, vp, ap) = (
            &self.critic_target,
            &self.critic_params,
            &self.value_params,
            &self.actor_params,
        );
        let (cg, vg, ag) = (
            self.critic_opt.zero_grad(),
            self.value_opt.zero_grad(),
            self.actor_opt.zero_grad(),
        );
        let sh = &sh;
        let mut critic_half = move || critic_grad(sh, cp, cs, cg);
        let mut value_actor_half = move || {
            let value = value_grad(sh, target, vp, vs, vg);
            (value, actor_grad(sh, ap, vs, ag))
        };
        let (critic, (value, actor)) = if rayon::current_num_threads() > 1 {
            rayon::join(critic_half, value_actor_half)
        } else {
            let c = critic_half();
            (c, value_actor_half())
        };
        (value, critic, actor)
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state. For the parity tests against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        let ((value_loss, _), (critic_loss, ..), (actor_loss, _)) = self.grads(batch);
        Ok(vec![
            Probe::new("value_loss", value_loss, "value", &self.value_params, self.value_opt.grad()),
            Probe::new("critic_loss", critic_loss, "critic", &self.critic_params, self.critic_opt.grad()),
            Probe::new("actor_loss", actor_loss, "actor", &self.actor_params, self.actor_opt.grad()),
        ])
    }
}

impl Algorithm for Iql {
    fn name(&self) -> &'static str {
        "iql"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        self.prepare(batch)?;
        let step = self.core.steps;
        let ((v_loss, adv), (c_loss, q, td), (a_loss, w)) = self.grads(batch);
        // Every loss is checked before any parameter moves.
        let mut m = Metrics::new();
        record_value(&mut m, step, "value_loss", v_loss)?;
        record_value(&mut m, step, "advantage_mean", adv)?;
        record_value(&mut m, step, "critic_loss", c_loss)?;
        record_value(&mut m, step, "q_mean", q)?;
        record_value(&mut m, step, "td_error", td)?;
        record_value(&mut m, step, "actor_loss", a_loss)?;
        record_value(&mut m, step, "adv_weight_mean", w)?;
        m.insert("actor_lr", self.actor_opt.lr());
        self.value_opt.step(&mut self.value_params)?;
        self.critic_opt.step(&mut self.critic_params)?;
        self.critic_target
            .soft_update_from(&self.critic_params, self.cfg.tau)?;
        self.actor_opt.step(&mut self.actor_params)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        head_act(
            &self.actor,
            &self.actor_params,
            s,
            &mut self.scratch.acting,
            deterministic,
            &mut self.core.act_noise,
        )
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        head_log_prob(&self.actor, &self.actor_params, s, a, &mut self.scratch.acting)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        let (x, b) = host_rows(s)?;
        let (a, _) = host_rows(a)?;
        let mut cache = QCache::default();
        let min: Vec<f32> = match self.core.spec.action {
            ActionSpec::Continuous { .. } => {
                let q = self.critic.q(&self.critic_params, &x, &a, b, &mut cache);
                (0..b).map(|i| q[i].min(q[b + i])).collect()
            }
            ActionSpec::Discrete { n } => {
                let q = self.critic.q_all(&self.critic_params, &x, b, &mut cache);
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
            &self.actor_params.named_tensors(""),
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
