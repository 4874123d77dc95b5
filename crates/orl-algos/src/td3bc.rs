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
use orl_nets::engine::backend::{
    Abs, Backend, Candle, Cpu, Identity, Map2, Map3, Min, Scalar, SquaredError,
};
use orl_nets::engine::{DeterministicHead, MlpCache, Params, QBufs, QCache, QNet};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, BatchBufs, Core, Metrics, Probe, Spec, TdBufs, check_batch, host_rows, mlp_layer_names,
    plain_policy, record_value, state_lists, td_mse_grad_on,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, Compute, AlgoInfo, RewardRecipe, defaults_of, fixed_length, parse_config, reduced_width,
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
        let cfg = parse_config("td3bc", cfg)?;
        Ok(match compute {
            Compute::Engine(device) => Box::new(Td3Bc::new(spec, cfg, seed, device)?),
            Compute::Candle(device) => Box::new(Td3Bc::new_on(
                Candle::new(device.clone()),
                spec,
                cfg,
                seed,
                device,
            )?),
        })
    },
};

/// TD3+BC on backend `B`: the CPU engine by default, candle tensors with
/// [`Td3Bc::new_on`]`(Candle, ..)`.
pub struct Td3Bc<B: Backend = Cpu> {
    be: B,
    cfg: Td3BcConfig,
    core: Core,
    max_action: f32,
    actor: DeterministicHead,
    critic: QNet,
    actor_params: B::Params,
    actor_target: B::Params,
    critic_params: B::Params,
    critic_target: B::Params,
    actor_opt: B::Adam,
    critic_opt: B::Adam,
    scratch: Scratch<B>,
    /// Acting runs on the host copy of the actor.
    acting: MlpCache,
}

/// Buffers reused by every update (sized by the first one).
struct Scratch<B: Backend> {
    b: BatchBufs<B>,
    /// The target-smoothing draws, on the host, then on the backend.
    eps_host: Vec<f32>,
    eps: B::Buf,
    actor: B::Cache,
    actor_next: B::Cache,
    q: QBufs<B>,
    q_next: QBufs<B>,
    q_pi: QBufs<B>,
    td: TdBufs<B>,
    /// `pi'(s')`, then the smoothed target action.
    a2: B::Buf,
    a2s: B::Buf,
    q2a: B::Buf,
    q2b: B::Buf,
    q2: B::Buf,
    y: B::Buf,
    pi: B::Buf,
    dq1: B::Buf,
    /// `dL/dpi` through `Q_1`, then with the BC term added.
    dpi_q: B::Buf,
    dpi: B::Buf,
    dnet: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            b: BatchBufs::default(),
            eps_host: Vec::new(),
            eps: Default::default(),
            actor: Default::default(),
            actor_next: Default::default(),
            q: QBufs::default(),
            q_next: QBufs::default(),
            q_pi: QBufs::default(),
            td: TdBufs::default(),
            a2: Default::default(),
            a2s: Default::default(),
            q2a: Default::default(),
            q2b: Default::default(),
            q2: Default::default(),
            y: Default::default(),
            pi: Default::default(),
            dq1: Default::default(),
            dpi_q: Default::default(),
            dpi: Default::default(),
            dnet: Default::default(),
        }
    }
}

impl Td3Bc<Cpu> {
    /// Builds actor, twin critics and their targets for `spec` on the CPU engine, initialised
    /// from `seed`.
    pub fn new(
        spec: Spec,
        cfg: Td3BcConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Td3Bc<B> {
    /// [`Td3Bc::new`] on backend `be` (the same initial parameters on every backend).
    pub fn new_on(
        be: B,
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
        // Targets start as copies (placed separately: nothing is shared on any backend).
        let actor_target = be.place(&actor_params)?;
        let critic_target = be.place(&critic_params)?;
        let actor_params = be.place(&actor_params)?;
        let critic_params = be.place(&critic_params)?;
        let actor_opt = be.adam(&actor_params, AdamConfig::with_lr(cfg.actor_lr), None)?;
        let critic_opt = be.adam(&critic_params, AdamConfig::with_lr(cfg.critic_lr), None)?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            max_action: max_action as f32,
            actor,
            critic,
            actor_target,
            critic_target,
            actor_params,
            critic_params,
            actor_opt,
            critic_opt,
            scratch: Scratch::default(),
            acting: MlpCache::new(),
            be,
        })
    }
}

// ---- losses and their gradients (into the optimizers' gradient buffers) ----

/// TD3's target action `clip(a' + clip(sigma eps, -c, c), -m, m)` (`Map2` of `a'` and `eps`).
struct Smooth {
    sigma: f32,
    clip: f32,
    m: f32,
}

impl Map2 for Smooth {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, eps: S) -> S {
        (a + eps.scale(self.sigma).clamp(-self.clip, self.clip)).clamp(-self.m, self.m)
    }
}

/// The TD target `y = r + [gamma^k (1 - d)] q` (`Map3` of `r`, the not-done discount, `q`).
struct Bellman;

impl Map3 for Bellman {
    #[inline(always)]
    fn apply<S: Scalar>(&self, r: S, nd: S, q: S) -> S {
        r + nd * q
    }
}

/// `dL/dpi = g + k (pi - a)` (`Map3`): the BC term's gradient `2 (pi - a) / (m^2 B A)` added
/// to the gradient `g` through `Q_1`.
struct AddBcGrad {
    k: f32,
}

impl Map3 for AddBcGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, g: S, pi: S, a: S) -> S {
        g + (pi - a).scale(self.k)
    }
}

/// Critic loss and its gradient (`critic_opt`'s buffer) with TD3's smoothed target, the noise
/// drawn from the training stream; uploads the batch; returns `(loss, mean Q, mean |Q_1 - y|)`.
fn critic_grad<B: Backend>(t: &mut Td3Bc<B>, batch: &Batch) -> Result<(f64, f64, f64)> {
    let bsz = batch.batch_size;
    let d = t.actor.act_dim();
    let m = t.max_action;
    let (be, sc) = (&t.be, &mut t.scratch);
    sc.b.upload(be, batch, &t.core.spec, true)?;
    sc.eps_host.resize(bsz * d, 0.0);
    t.core.noise.normal_into(&mut sc.eps_host);
    be.upload(&sc.eps_host, d, &mut sc.eps)?;
    // y = r + gamma^k (1 - d) min_i Q'_i(s', clip(pi'(s') + clip(sigma m eps, -c m, c m), -m, m))
    t.actor
        .forward_on(be, &t.actor_target, &sc.b.s2, bsz, &mut sc.actor_next, &mut sc.a2)?;
    let smooth = Smooth {
        sigma: (t.cfg.policy_noise as f32) * m,
        clip: (t.cfg.noise_clip as f32) * m,
        m,
    };
    be.map2(&smooth, &sc.a2, &sc.eps, &mut sc.a2s)?;
    let q2 = t
        .critic
        .q_on(be, &t.critic_target, &sc.b.s2, &sc.a2s, bsz, 2, &mut sc.q_next)?;
    be.rows(q2, 1, 0, bsz, &mut sc.q2a)?;
    be.rows(q2, 1, bsz, bsz, &mut sc.q2b)?;
    be.map2(&Min, &sc.q2a, &sc.q2b, &mut sc.q2)?;
    be.map3(&Bellman, &sc.b.r, &sc.b.nd, &sc.q2, &mut sc.y)?;
    // L = sum_e mean_b (Q_eb - y_b)^2,  dL/dQ_eb = 2 (Q_eb - y_b) / B
    let q = t
        .critic
        .q_on(be, &t.critic_params, &sc.b.s, &sc.b.a, bsz, 2, &mut sc.q)?;
    let out = td_mse_grad_on(be, q, &sc.y, 2, bsz, 1.0, &mut sc.td)?;
    let g = be.zero_grad(&mut t.critic_opt)?;
    t.critic
        .backward_on(be, &t.critic_params, &mut sc.q, &sc.td.dq, Some(g), None)?;
    Ok(out)
}

/// Actor loss `-lambda E Q_1(s, pi(s)) + E ((pi(s) - a) / m)^2` and its gradient
/// (`actor_opt`'s buffer), `lambda = alpha / E|Q_1|` held fixed, on the batch
/// [`critic_grad`] uploaded; returns `(loss, lambda, bc term)`.
fn actor_grad<B: Backend>(t: &mut Td3Bc<B>, batch: &Batch) -> Result<(f64, f64, f64)> {
    let bsz = batch.batch_size;
    let d = t.actor.act_dim();
    let (be, sc) = (&t.be, &mut t.scratch);
    t.actor
        .forward_on(be, &t.actor_params, &sc.b.s, bsz, &mut sc.actor, &mut sc.pi)?;
    // Q_1 alone: the second critic takes no part in the actor loss.
    let q1 = t
        .critic
        .q_on(be, &t.critic_params, &sc.b.s, &sc.pi, bsz, 1, &mut sc.q_pi)?;
    let abs_mean = be.map1_sum(&Abs, q1)? / bsz as f64;
    let lambda = t.cfg.alpha / abs_mean;
    let q_mean = be.map1_sum(&Identity, q1)? / bsz as f64;
    // dL/dQ_1b = -lambda / B, carried to dL/dpi (no critic parameter gradients).
    be.fill(q1, (-lambda / bsz as f64) as f32, &mut sc.dq1)?;
    t.critic
        .backward_on(be, &t.critic_params, &mut sc.q_pi, &sc.dq1, None, Some(&mut sc.dpi_q))?;
    let m = if t.cfg.bc_unit_actions {
        f64::from(t.max_action)
    } else {
        1.0
    };
    let scale = 1.0 / (m * m * (bsz * d) as f64);
    let bc = be.map2_sum(&SquaredError, &sc.pi, &sc.b.a)? * scale;
    let k = AddBcGrad {
        k: (2.0 * scale) as f32,
    };
    be.map3(&k, &sc.dpi_q, &sc.pi, &sc.b.a, &mut sc.dpi)?;
    let g = be.zero_grad(&mut t.actor_opt)?;
    t.actor
        .backward_on(be, &t.actor_params, &sc.b.s, &sc.dpi, &mut sc.actor, &mut sc.dnet, g)?;
    Ok((-lambda * q_mean + bc, lambda, bc))
}

impl<B: Backend> Td3Bc<B> {
    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state (the critic's noise is drawn from a copy of the training stream). For the
    /// parity tests against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        check_batch(batch, &self.core.spec)?;
        let saved = self.core.noise.clone();
        let (critic_loss, ..) = critic_grad(self, batch)?;
        self.core.noise = saved;
        let (actor_loss, ..) = actor_grad(self, batch)?;
        let (mut gc, mut ga) = (Vec::new(), Vec::new());
        self.be.download(self.be.grad(&self.critic_opt), &mut gc)?;
        self.be.download(self.be.grad(&self.actor_opt), &mut ga)?;
        Ok(vec![
            Probe::new(
                "critic_loss",
                critic_loss,
                "critic",
                &*self.be.host_params(&self.critic_params)?,
                &gc,
            ),
            Probe::new(
                "actor_loss",
                actor_loss,
                "actor",
                &*self.be.host_params(&self.actor_params)?,
                &ga,
            ),
        ])
    }
}

impl<B: Backend> Algorithm for Td3Bc<B> {
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
        let (loss, q, td) = critic_grad(self, batch)?;
        record_value(&mut m, step, "critic_loss", loss)?;
        record_value(&mut m, step, "q_mean", q)?;
        record_value(&mut m, step, "td_error", td)?;
        let be = &self.be;
        be.adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        if step.is_multiple_of(self.cfg.policy_freq.max(1)) {
            let (loss, lambda, bc) = actor_grad(self, batch)?;
            record_value(&mut m, step, "actor_loss", loss)?;
            record_value(&mut m, step, "lambda", lambda)?;
            record_value(&mut m, step, "bc_mse", bc)?;
            let be = &self.be;
            be.adam_step(&mut self.actor_opt, &mut self.actor_params)?;
            be.soft_update(&mut self.actor_target, &self.actor_params, self.cfg.tau)?;
            be.soft_update(&mut self.critic_target, &self.critic_params, self.cfg.tau)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        let (x, b) = host_rows(s)?;
        let d = self.actor.act_dim();
        let mut a = vec![0.0; b * d];
        let p = self.be.host_params(&self.actor_params)?;
        self.actor.forward(&p, &x, b, &mut self.acting, &mut a);
        Ok(Tensor::from_vec(a, (b, d), s.device())?)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        let (x, b) = host_rows(s)?;
        let (a, _) = host_rows(a)?;
        let mut cache = QCache::default();
        let p = self.be.host_params(&self.critic_params)?;
        let q = self.critic.q(&p, &x, &a, b, &mut cache);
        let min: Vec<f32> = (0..b).map(|i| q[i].min(q[b + i])).collect();
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
