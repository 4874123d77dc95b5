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
//!
//! Discrete actions: `Q(s, .)` heads, a categorical policy, the same three losses with
//! `Q(s, a)` gathered at the data action (orl's addition; the paper is continuous only).

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::{NetState, OptimState};
use orl_nets::{
    Adam, AdamConfig, CategoricalActor, CosineSchedule, GaussianActor, Mlp, ParamStore, QEnsemble,
};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchTensors, Core, Metrics, Spec, advantage_weights, expectile_loss,
    gather_actions, min_over_ensemble, mlp_layer_names, mse_per_member, plain_policy, record,
    sample_categorical, target_of,
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
    build: |spec, cfg, seed, device| {
        Ok(Box::new(Iql::new(
            spec,
            parse_config("iql", cfg)?,
            seed,
            device,
        )?))
    },
};

/// Builds a critic ensemble of the right shape (for the target network).
type CriticBuilder = Box<dyn Fn(&mut orl_nets::Vb<'_>) -> orl_nets::Result<QEnsemble>>;

enum Actor {
    Gaussian(GaussianActor),
    Categorical(CategoricalActor),
}

/// IQL.
pub struct Iql {
    cfg: IqlConfig,
    core: Core,
    actor: Actor,
    actor_store: ParamStore,
    critic: QEnsemble,
    critic_store: ParamStore,
    critic_target: QEnsemble,
    critic_target_store: ParamStore,
    value: Mlp,
    value_store: ParamStore,
    actor_opt: Adam,
    critic_opt: Adam,
    value_opt: Adam,
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
        let mut actor_store = ParamStore::new(device.clone());
        let mut critic_store = ParamStore::new(device.clone());
        let mut value_store = ParamStore::new(device.clone());
        let (actor, critic, build_critic): (Actor, QEnsemble, CriticBuilder) = match spec.action {
            ActionSpec::Continuous { dim, max_action } => (
                Actor::Gaussian(
                    GaussianActor::new(
                        &mut actor_store.builder("", &mut rng),
                        od,
                        dim,
                        &h,
                        max_action,
                    )?
                    .with_log_std_min(cfg.log_std_min as f32),
                ),
                QEnsemble::continuous(&mut critic_store.builder("", &mut rng), 2, od, dim, &h)?,
                Box::new(move |vb| QEnsemble::continuous(vb, 2, od, dim, &h)),
            ),
            ActionSpec::Discrete { n } => (
                Actor::Categorical(CategoricalActor::new(
                    &mut actor_store.builder("", &mut rng),
                    od,
                    n,
                    &h,
                )?),
                QEnsemble::discrete(&mut critic_store.builder("", &mut rng), 2, od, n, &h)?,
                Box::new(move |vb| QEnsemble::discrete(vb, 2, od, n, &h)),
            ),
        };
        let value = Mlp::new(&mut value_store.builder("", &mut rng), od, &cfg.hidden, 1)?;
        let (critic_target, critic_target_store) = target_of(&critic_store, |vb| build_critic(vb))?;
        let mut actor_opt = Adam::new(&actor_store, AdamConfig::with_lr(cfg.actor_lr))?;
        if let Some(total) = cfg.actor_cosine_steps {
            actor_opt = actor_opt.with_schedule(CosineSchedule { total_steps: total });
        }
        let critic_opt = Adam::new(&critic_store, AdamConfig::with_lr(cfg.critic_lr))?;
        let value_opt = Adam::new(&value_store, AdamConfig::with_lr(cfg.value_lr))?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            actor,
            actor_store,
            critic,
            critic_store,
            critic_target,
            critic_target_store,
            value,
            value_store,
            actor_opt,
            critic_opt,
            value_opt,
        })
    }

    /// `Q_i(s, a)` of every member `[E, B]` (continuous: `Q(s, a)`; discrete: gathered).
    fn q_members(&self, q: &QEnsemble, s: &Tensor, a: &Tensor) -> Result<Tensor> {
        Ok(match self.actor {
            Actor::Gaussian(_) => q.q(s, a)?,
            Actor::Categorical(_) => {
                let all = q.q_all(s)?; // [E, B, n]
                let (e, b, _) = all.dims3()?;
                let idx = a
                    .unsqueeze(0)?
                    .unsqueeze(2)?
                    .broadcast_as((e, b, 1))?
                    .contiguous()?;
                all.gather(&idx, 2)?.squeeze(2)?
            }
        })
    }
    fn v(&self, s: &Tensor) -> Result<Tensor> {
        Ok(self.value.forward(s)?.squeeze(1)?)
    }
}

// ---- losses ----

/// Eq. 5: expectile regression of `V(s)` on `min_i Q'_i(s, a)`; returns `(loss, advantage)`
/// with the advantage `min Q' - V` detached for the policy step.
fn value_loss(t: &Iql, b: &BatchTensors) -> Result<(Tensor, Tensor)> {
    let q_target = min_over_ensemble(&t.q_members(&t.critic_target, &b.s, &b.a)?)?.detach();
    let v = t.v(&b.s)?;
    let adv = (q_target - &v)?;
    Ok((expectile_loss(&adv, t.cfg.expectile)?, adv.detach()))
}

/// Eq. 6: `sum_i E (Q_i(s,a) - (r + gamma (1-d) V(s')))^2`; returns `(loss, mean Q, mean |TD|)`.
fn critic_loss(t: &Iql, b: &BatchTensors, v_next: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let y = b.td_target(v_next)?.detach();
    let q = t.q_members(&t.critic, &b.s, &b.a)?;
    let diff = q.broadcast_sub(&y.unsqueeze(0)?)?;
    Ok((
        mse_per_member(&q, &y)?.sum_all()?,
        q.mean_all()?,
        diff.get(0)?.abs()?.mean_all()?,
    ))
}

/// Eq. 7: advantage-weighted log-likelihood; returns `(loss, mean weight)`.
fn actor_loss(t: &Iql, b: &BatchTensors, adv: &Tensor) -> Result<(Tensor, Tensor)> {
    let w = advantage_weights(adv, t.cfg.beta, t.cfg.max_weight)?;
    let log_prob = match &t.actor {
        Actor::Gaussian(p) => p.log_prob(&b.s, &b.a)?,
        Actor::Categorical(p) => gather_actions(&p.log_probs(&b.s)?, &b.a)?,
    };
    Ok(((&w * log_prob)?.neg()?.mean_all()?, w.mean_all()?))
}

impl Iql {
    fn update_value(&mut self, b: &BatchTensors, m: &mut Metrics) -> Result<Tensor> {
        let (loss, adv) = value_loss(self, b)?;
        record(m, self.core.steps, "value_loss", &loss)?;
        record(m, self.core.steps, "advantage_mean", &adv.mean_all()?)?;
        self.value_opt.backward_step(&loss)?;
        Ok(adv)
    }
    fn update_critic(&mut self, b: &BatchTensors, v_next: &Tensor, m: &mut Metrics) -> Result<()> {
        let (loss, q, td) = critic_loss(self, b, v_next)?;
        record(m, self.core.steps, "critic_loss", &loss)?;
        record(m, self.core.steps, "q_mean", &q)?;
        record(m, self.core.steps, "td_error", &td)?;
        self.critic_opt.backward_step(&loss)?;
        self.critic_target_store
            .soft_update_from(&self.critic_store, self.cfg.tau)?;
        Ok(())
    }
    fn update_actor(&mut self, b: &BatchTensors, adv: &Tensor, m: &mut Metrics) -> Result<()> {
        let (loss, w) = actor_loss(self, b, adv)?;
        record(m, self.core.steps, "actor_loss", &loss)?;
        record(m, self.core.steps, "adv_weight_mean", &w)?;
        m.insert("actor_lr", self.actor_opt.lr());
        self.actor_opt.backward_step(&loss)?;
        Ok(())
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
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let mut m = Metrics::new();
        let v_next = self.v(&b.s2)?.detach();
        let adv = self.update_value(&b, &mut m)?;
        self.update_critic(&b, &v_next, &mut m)?;
        self.update_actor(&b, &adv, &mut m)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        Ok(match &self.actor {
            Actor::Gaussian(p) if deterministic => p.deterministic(s)?,
            Actor::Gaussian(p) => p.sample(s, &mut self.core.act_noise)?,
            Actor::Categorical(p) if deterministic => p.greedy(s)?,
            Actor::Categorical(p) => {
                sample_categorical(&p.log_probs(s)?, &mut self.core.act_noise)?
            }
        })
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(match &self.actor {
            Actor::Gaussian(p) => p.log_prob(s, a)?,
            Actor::Categorical(p) => gather_actions(&p.log_probs(s)?, a)?,
        }))
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(min_over_ensemble(&self.q_members(
            &self.critic,
            s,
            a,
        )?)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("net.", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.actor_store.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    fn nets(&self) -> Vec<(&'static str, &dyn NetState)> {
        vec![
            ("actor", &self.actor_store),
            ("critic", &self.critic_store),
            ("critic_target", &self.critic_target_store),
            ("value", &self.value_store),
        ]
    }
    fn nets_mut(&mut self) -> Vec<(&'static str, &mut dyn NetState)> {
        vec![
            ("actor", &mut self.actor_store),
            ("critic", &mut self.critic_store),
            ("critic_target", &mut self.critic_target_store),
            ("value", &mut self.value_store),
        ]
    }
    fn optims(&self) -> Vec<(&'static str, &dyn OptimState)> {
        vec![
            ("actor", &self.actor_opt),
            ("critic", &self.critic_opt),
            ("value", &self.value_opt),
        ]
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn OptimState)> {
        vec![
            ("actor", &mut self.actor_opt),
            ("critic", &mut self.critic_opt),
            ("value", &mut self.value_opt),
        ]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
