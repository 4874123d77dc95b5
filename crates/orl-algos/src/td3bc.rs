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
//!
//! Gradients with respect to the network outputs (`B` rows, `A` action dimensions, `E = 2`
//! critics), which the engine carries back to the parameters:
//!
//! ```text
//! critic:  dL/dQ_eb = 2 (Q_eb - y_b) / B                         (y held fixed)
//! actor:   dL/dQ_1b = -lambda / B   -> through Q_1 (no critic parameter gradients) -> dL/dpi
//!          dL/dpi_bj += 2 (pi_bj - a_bj) / (m^2 B A)              (the BC term)
//! ```

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::{DeterministicHead, FlatAdam, MlpCache, Params, QCache, QNet};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{state_lists, 
    Algorithm, Core, Metrics, Probe, Spec, check_batch, host_rows, mlp_layer_names, plain_policy,
    record_value, td_mse_grad,
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
    build: |spec, cfg, seed, compute| {
        let device = compute.engine_device("td3bc")?;
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
    max_action: f32,
    actor: DeterministicHead,
    critic: QNet,
    actor_params: Params,
    actor_target: Params,
    critic_params: Params,
    critic_target: Params,
    actor_opt: FlatAdam,
    critic_opt: FlatAdam,
    scratch: Scratch,
}

/// Buffers reused by every update (sized by the first one).
#[derive(Default)]
struct Scratch {
    actor: MlpCache,
    actor_next: MlpCache,
    acting: MlpCache,
    q: QCache,
    q_next: QCache,
    q_pi: QCache,
    /// `[B, act]`: target actions, then the actor's actions.
    a2: Vec<f32>,
    eps: Vec<f32>,
    pi: Vec<f32>,
    dpi: Vec<f32>,
    y: Vec<f32>,
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
        let mut actor_params = Params::new();
        let actor = DeterministicHead::new(
            &mut actor_params.builder("", &mut rng),
            spec.obs_dim,
            act_dim,
            &cfg.hidden,
            max_action,
        )?;
        let mut critic_params = Params::new();
        let critic = QNet::continuous(
            &mut critic_params.builder("", &mut rng),
            2,
            spec.obs_dim,
            act_dim,
            &cfg.hidden,
        )?;
        let actor_opt = FlatAdam::new(&actor_params, AdamConfig::with_lr(cfg.actor_lr));
        let critic_opt = FlatAdam::new(&critic_params, AdamConfig::with_lr(cfg.critic_lr));
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            max_action: max_action as f32,
            actor,
            critic,
            actor_target: actor_params.clone(),
            critic_target: critic_params.clone(),
            actor_params,
            critic_params,
            actor_opt,
            critic_opt,
            scratch: Scratch::default(),
        })
    }
}

// ---- losses and their gradients (into the optimizers' gradient buffers) ----

/// Critic loss and its gradient (`critic_opt`'s buffer) with TD3's smoothed target, the noise
/// drawn from the training stream; returns `(loss, mean Q, mean |Q_1 - y|)`.
fn critic_grad(t: &mut Td3Bc, batch: &Batch) -> (f64, f64, f64) {
    let bsz = batch.batch_size;
    let d = t.actor.act_dim();
    let m = t.max_action;
    let sc = &mut t.scratch;
    // y = r + gamma^k (1 - d) min_i Q'_i(s', clip(pi'(s') + clip(sigma m eps, -c m, c m), -m, m))
    sc.a2.resize(bsz * d, 0.0);
    sc.eps.resize(bsz * d, 0.0);
    t.core.noise.normal_into(&mut sc.eps);
    t.actor.forward(&t.actor_target, &batch.next_observations, bsz, &mut sc.actor_next, &mut sc.a2);
    let (sigma, clip) = ((t.cfg.policy_noise as f32) * m, (t.cfg.noise_clip as f32) * m);
    for (a, &e) in sc.a2.iter_mut().zip(&sc.eps) {
        *a = (*a + (e * sigma).clamp(-clip, clip)).clamp(-m, m);
    }
    let q2 = t.critic.q(&t.critic_target, &batch.next_observations, &sc.a2, bsz, &mut sc.q_next);
    sc.y.resize(bsz, 0.0);
    for b in 0..bsz {
        let q2b = q2[b].min(q2[bsz + b]);
        sc.y[b] = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * q2b;
    }
    // L = sum_e mean_b (Q_eb - y_b)^2,  dL/dQ_eb = 2 (Q_eb - y_b) / B
    t.critic.q(&t.critic_params, &batch.observations, &batch.actions, bsz, &mut sc.q);
    let (q, dq) = sc.q.mlp.output_and_dout();
    let out = td_mse_grad(q, &sc.y, dq, 1.0);
    let g = t.critic_opt.zero_grad();
    t.critic.backward(&t.critic_params, &mut sc.q, Some(g), None);
    out
}

/// Actor loss `-lambda E Q_1(s, pi(s)) + E ((pi(s) - a) / m)^2` and its gradient
/// (`actor_opt`'s buffer), `lambda = alpha / E|Q_1|` held fixed; returns
/// `(loss, lambda, bc term)`.
fn actor_grad(t: &mut Td3Bc, batch: &Batch) -> (f64, f64, f64) {
    let bsz = batch.batch_size;
    let d = t.actor.act_dim();
    let sc = &mut t.scratch;
    sc.pi.resize(bsz * d, 0.0);
    sc.dpi.resize(bsz * d, 0.0);
    t.actor.forward(&t.actor_params, &batch.observations, bsz, &mut sc.actor, &mut sc.pi);
    // Q_1 alone: the second critic takes no part in the actor loss.
    t.critic
        .q_first(&t.critic_params, &batch.observations, &sc.pi, bsz, 1, &mut sc.q_pi);
    let (q1, dq1) = sc.q_pi.mlp.output_and_dout();
    let abs_mean = q1.iter().map(|&v| f64::from(v.abs())).sum::<f64>() / bsz as f64;
    let lambda = t.cfg.alpha / abs_mean;
    let q_mean = q1.iter().map(|&v| f64::from(v)).sum::<f64>() / bsz as f64;
    // dL/dQ_1b = -lambda / B.
    dq1.iter_mut().for_each(|v| *v = (-lambda / bsz as f64) as f32);
    t.critic.backward(&t.critic_params, &mut sc.q_pi, None, Some(&mut sc.dpi));
    let m = if t.cfg.bc_unit_actions {
        f64::from(t.max_action)
    } else {
        1.0
    };
    let scale = 1.0 / (m * m * (bsz * d) as f64);
    let mut bc = 0.0f64;
    for ((g, &pi), &a) in sc.dpi.iter_mut().zip(&sc.pi).zip(&batch.actions) {
        let diff = f64::from(pi - a);
        bc += diff * diff;
        *g += (2.0 * diff * scale) as f32;
    }
    let bc = bc * scale;
    let g = t.actor_opt.zero_grad();
    t.actor.backward(&t.actor_params, &batch.observations, &sc.dpi, &mut sc.actor, g);
    (-lambda * q_mean + bc, lambda, bc)
}

impl Td3Bc {
    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state (the critic's noise is drawn from a copy of the training stream). For the
    /// parity tests against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        check_batch(batch, &self.core.spec)?;
        let saved = self.core.noise.clone();
        let (critic_loss, ..) = critic_grad(self, batch);
        self.core.noise = saved;
        let (actor_loss, ..) = actor_grad(self, batch);
        Ok(vec![
            Probe::new("critic_loss", critic_loss, "critic", &self.critic_params, self.critic_opt.grad()),
            Probe::new("actor_loss", actor_loss, "actor", &self.actor_params, self.actor_opt.grad()),
        ])
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
        check_batch(batch, &self.core.spec)?;
        let step = self.core.steps;
        let mut m = Metrics::new();
        let (loss, q, td) = critic_grad(self, batch);
        record_value(&mut m, step, "critic_loss", loss)?;
        record_value(&mut m, step, "q_mean", q)?;
        record_value(&mut m, step, "td_error", td)?;
        self.critic_opt.step(&mut self.critic_params)?;
        if step.is_multiple_of(self.cfg.policy_freq.max(1)) {
            let (loss, lambda, bc) = actor_grad(self, batch);
            record_value(&mut m, step, "actor_loss", loss)?;
            record_value(&mut m, step, "lambda", lambda)?;
            record_value(&mut m, step, "bc_mse", bc)?;
            self.actor_opt.step(&mut self.actor_params)?;
            self.actor_target
                .soft_update_from(&self.actor_params, self.cfg.tau)?;
            self.critic_target
                .soft_update_from(&self.critic_params, self.cfg.tau)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        let (x, b) = host_rows(s)?;
        let d = self.actor.act_dim();
        let mut a = vec![0.0; b * d];
        self.actor.forward(&self.actor_params, &x, b, &mut self.scratch.acting, &mut a);
        Ok(Tensor::from_vec(a, (b, d), s.device())?)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        let (x, b) = host_rows(s)?;
        let (a, _) = host_rows(a)?;
        let mut cache = QCache::default();
        let q = self.critic.q(&self.critic_params, &x, &a, b, &mut cache);
        let min: Vec<f32> = (0..b).map(|i| q[i].min(q[b + i])).collect();
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
            "actor_target" => actor_target,
            "critic" => critic_params,
            "critic_target" => critic_target,
        ]
        optims ["actor" => actor_opt, "critic" => critic_opt]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
