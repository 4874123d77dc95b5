//! TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").
//!
//! TD3 (Fujimoto et al. 2018) with a behaviour-cloning term in the actor loss (eq. 3):
//!
//! ```text
//! critic:  y = r + gamma (1 - d) min_i Q'_i(s', clip(pi'(s') + clip(N(0, sigma), -c, c), -max, max))
//!          L(Q) = sum_i E (Q_i(s, a) - y)^2
//! actor (every `policy_freq` updates):
//!          lambda = alpha / (E_(s,a) |Q_1(s, pi(s))|)          (detached)
//!          L(pi) = -lambda E Q_1(s, pi(s)) + E ((pi(s) - a) / m)^2
//! targets: polyak with tau after each actor update
//! ```
//!
//! `m` is the action bound `max_action` (`bc_unit_actions`, the default) or 1. The paper writes
//! the BC term in raw actions, but its `alpha = 2.5` was tuned on D4RL, whose actions lie in
//! [-1, 1]; `lambda` makes the Q term independent of the reward scale, and `m` makes the BC
//! term independent of the action scale, so the same `alpha` means the same trade-off on any
//! action box (identical to the paper where `max_action = 1`). Measured on
//! pendulum-v1-medium-replay (actions in [-2, 2]): with raw actions TD3+BC stayed at BC's
//! level; in unit actions it beat BC by 9.7 +- 1.4 over 10 paired seeds
//! (`docs/benchmarks/quick-pendulum.md`).
//!
//! Continuous actions only (the method has no discrete form). The paper normalises states with
//! the dataset's mean and std: enable `normalize_observations` in the replay.

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::{Adam, AdamConfig, DeterministicActor, ParamStore, QEnsemble};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, BatchTensors, Core, Metrics, Spec, min_over_ensemble, mlp_layer_names, plain_policy,
    record, target_of, td3bc_lambda,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, RewardRecipe, defaults_of, fixed_length, parse_config, reduced_width,
    resolve,
};
use crate::validate as v;

/// TD3+BC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Td3BcConfig {
    /// Hidden sizes of actor and critics.
    pub hidden: Vec<usize>,
    /// Actor learning rate.
    pub actor_lr: f64,
    /// Critic learning rate.
    pub critic_lr: f64,
    /// Polyak coefficient of the target networks.
    pub tau: f64,
    /// `alpha` of the BC trade-off.
    pub alpha: f64,
    /// Target policy smoothing std (relative to `max_action`).
    pub policy_noise: f64,
    /// Target noise clip (relative to `max_action`).
    pub noise_clip: f64,
    /// Delayed policy updates: one actor update every `policy_freq` critic updates.
    pub policy_freq: usize,
    /// Measure the BC term in actions divided by `max_action` (see the module doc); `false`
    /// gives the paper's raw-action term literally.
    pub bc_unit_actions: bool,
}

impl Default for Td3BcConfig {
    /// The paper's table 3 / reference code: 256x256, Adam 3e-4 for both, tau 0.005,
    /// alpha 2.5, policy noise 0.2, noise clip 0.5, policy frequency 2; the BC term in unit
    /// actions (the paper's D4RL units, see the module doc).
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            actor_lr: 3e-4,
            critic_lr: 3e-4,
            tau: 0.005,
            alpha: 2.5,
            policy_noise: 0.2,
            noise_clip: 0.5,
            policy_freq: 2,
            bc_unit_actions: true,
        }
    }
}

impl AlgoConfig for Td3BcConfig {
    fn validate(&self) -> Result<()> {
        v::hidden("td3bc.hidden", &self.hidden)?;
        v::positive("td3bc.actor_lr", self.actor_lr)?;
        v::positive("td3bc.critic_lr", self.critic_lr)?;
        v::unit_open_closed("td3bc.tau", self.tau)?;
        v::non_negative("td3bc.alpha", self.alpha)?;
        v::non_negative("td3bc.policy_noise", self.policy_noise)?;
        v::non_negative("td3bc.noise_clip", self.noise_clip)?;
        v::count("td3bc.policy_freq", self.policy_freq, 1_000_000)
    }
}

/// The registry entry of TD3+BC.
pub static INFO: AlgoInfo = AlgoInfo {
    name: "td3bc",
    summary: "TD3+BC: TD3 with a behaviour-cloning term (continuous actions only)",
    discrete: false,
    continuous: true,
    // The paper's table 3: batch 256.
    batch_size: 256,
    // The paper, section 5: states normalised with the dataset's mean and std.
    normalize_observations: true,
    reward: RewardRecipe::AsStored,
    relative_cost: 10,
    defaults: defaults_of::<Td3BcConfig>,
    reduced: reduced_width,
    fit_to_run: fixed_length,
    test_config: || serde_json::json!({"hidden": [32, 32]}),
    resolve: |v| resolve::<Td3BcConfig>("td3bc", v),
    build: |spec, cfg, seed, device| {
        Ok(Box::new(Td3Bc::new(
            spec,
            parse_config("td3bc", cfg)?,
            seed,
            device,
        )?))
    },
};

/// TD3+BC.
pub struct Td3Bc {
    cfg: Td3BcConfig,
    core: Core,
    max_action: f64,
    actor: DeterministicActor,
    actor_store: ParamStore,
    actor_target: DeterministicActor,
    actor_target_store: ParamStore,
    critic: QEnsemble,
    critic_store: ParamStore,
    critic_target: QEnsemble,
    critic_target_store: ParamStore,
    actor_opt: Adam,
    critic_opt: Adam,
}

impl Td3Bc {
    /// Builds actor, twin critics and their targets for `spec`, initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: Td3BcConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let (act_dim, max_action) = spec.continuous_parts("TD3+BC")?;
        cfg.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut actor_store = ParamStore::new(device.clone());
        let actor = DeterministicActor::new(
            &mut actor_store.builder("", &mut rng),
            spec.obs_dim,
            act_dim,
            &cfg.hidden,
            max_action,
        )?;
        let mut critic_store = ParamStore::new(device.clone());
        let critic = QEnsemble::continuous(
            &mut critic_store.builder("", &mut rng),
            2,
            spec.obs_dim,
            act_dim,
            &cfg.hidden,
        )?;
        let (actor_target, actor_target_store) = target_of(&actor_store, |vb| {
            DeterministicActor::new(vb, spec.obs_dim, act_dim, &cfg.hidden, max_action)
        })?;
        let (critic_target, critic_target_store) = target_of(&critic_store, |vb| {
            QEnsemble::continuous(vb, 2, spec.obs_dim, act_dim, &cfg.hidden)
        })?;
        let actor_opt = Adam::new(&actor_store, AdamConfig::with_lr(cfg.actor_lr))?;
        let critic_opt = Adam::new(&critic_store, AdamConfig::with_lr(cfg.critic_lr))?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            max_action,
            actor,
            actor_store,
            actor_target,
            actor_target_store,
            critic,
            critic_store,
            critic_target,
            critic_target_store,
            actor_opt,
            critic_opt,
        })
    }
}

// ---- losses (pure functions of networks and a batch) ----

/// The twin-critic TD loss `sum_i E (Q_i(s,a) - y)^2` with TD3's smoothed target; returns
/// `(loss, mean Q, mean |Q_1 - y|)`. `eps: [B, act]` standard normal noise.
fn critic_loss(t: &Td3Bc, b: &BatchTensors, eps: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let y = {
        let a2 = t.actor_target.forward(&b.s2)?;
        let eps = (eps * (t.cfg.policy_noise * t.max_action))?.clamp(
            -t.cfg.noise_clip * t.max_action,
            t.cfg.noise_clip * t.max_action,
        )?;
        let a2 = (a2 + eps)?.clamp(-t.max_action, t.max_action)?;
        let q2 = min_over_ensemble(&t.critic_target.q(&b.s2, &a2)?)?;
        b.td_target(&q2)?.detach()
    };
    let q = t.critic.q(&b.s, &b.a)?; // [2, B]
    let diff = q.broadcast_sub(&y.unsqueeze(0)?)?;
    let loss = (diff.sqr()?.mean(1)?.sum_all())?;
    let td = diff.get(0)?.abs()?.mean_all()?;
    Ok((loss, q.mean_all()?, td))
}

/// `-lambda E Q_1(s, pi(s)) + E ((pi(s) - a) / m)^2` with `lambda = alpha / E|Q_1|` (detached)
/// and `m` the action bound or 1 (`bc_unit_actions`); returns `(loss, lambda, bc term)`.
fn actor_loss(t: &Td3Bc, b: &BatchTensors) -> Result<(Tensor, Tensor, Tensor)> {
    let pi = t.actor.forward(&b.s)?;
    let q1 = t.critic.q(&b.s, &pi)?.get(0)?;
    let lambda = td3bc_lambda(&q1, t.cfg.alpha)?;
    let m = if t.cfg.bc_unit_actions {
        t.max_action
    } else {
        1.0
    };
    let bc = ((&pi - &b.a)? / m)?.sqr()?.mean_all()?;
    let loss = ((q1.mean_all()? * &lambda)?.neg()? + &bc)?;
    Ok((loss, lambda, bc))
}

impl Td3Bc {
    fn update_critic(&mut self, b: &BatchTensors, m: &mut Metrics) -> Result<()> {
        let eps = self.core.noise.normal(b.a.dims())?;
        let (loss, q, td) = critic_loss(self, b, &eps)?;
        record(m, self.core.steps, "critic_loss", &loss)?;
        record(m, self.core.steps, "q_mean", &q)?;
        record(m, self.core.steps, "td_error", &td)?;
        self.critic_opt.backward_step(&loss)?;
        Ok(())
    }
    fn update_actor(&mut self, b: &BatchTensors, m: &mut Metrics) -> Result<()> {
        let (loss, lambda, bc) = actor_loss(self, b)?;
        record(m, self.core.steps, "actor_loss", &loss)?;
        record(m, self.core.steps, "lambda", &lambda)?;
        record(m, self.core.steps, "bc_mse", &bc)?;
        self.actor_opt.backward_step(&loss)?;
        self.actor_target_store
            .soft_update_from(&self.actor_store, self.cfg.tau)?;
        self.critic_target_store
            .soft_update_from(&self.critic_store, self.cfg.tau)?;
        Ok(())
    }
}

impl Algorithm for Td3Bc {
    fn name(&self) -> &'static str {
        "td3bc"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let mut m = Metrics::new();
        self.update_critic(&b, &mut m)?;
        if self.core.steps.is_multiple_of(self.cfg.policy_freq.max(1)) {
            self.update_actor(&b, &mut m)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        Ok(self.actor.forward(s)?)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(min_over_ensemble(&self.critic.q(s, a)?)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("net.", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.actor_store.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    fn nets(&self) -> Vec<(&'static str, &ParamStore)> {
        vec![
            ("actor", &self.actor_store),
            ("actor_target", &self.actor_target_store),
            ("critic", &self.critic_store),
            ("critic_target", &self.critic_target_store),
        ]
    }
    fn optims(&self) -> Vec<(&'static str, &Adam)> {
        vec![("actor", &self.actor_opt), ("critic", &self.critic_opt)]
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![
            ("actor", &mut self.actor_opt),
            ("critic", &mut self.critic_opt),
        ]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
