//! SAC: Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
//! Applications", algorithm 1 with automatic entropy adjustment, section 5).
//!
//! ```text
//! critic:      y = r + gamma (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(s')
//!              L(Q) = sum_i 1/2 E (Q_i(s, a) - y)^2
//! actor:       L(pi) = E_s[ alpha log pi(a|s) - min_i Q_i(s, a) ],  a ~ pi(s)   (reparameterised)
//! temperature: L(alpha) = -E[ log alpha (log pi(a|s) + target_entropy) ],  target_entropy = -A
//! targets:     Q' <- polyak(Q, tau)
//! ```
//!
//! In orl, SAC trains continuous behaviour policies online (`orl_algos::train_online`); it is not an
//! offline method. Its actor and temperature step ([`SacActor`]) is also CQL's.
//!
//! Gradients with respect to the network outputs (`B` rows), which the engine carries back to
//! the parameters:
//!
//! ```text
//! critic:      dL/dQ_ib = (Q_ib - y_b) / B
//! actor:       dL/da_b = -dQ_k(s_b, a_b)/da / B  (k the smaller critic),  dL/d log pi_b = alpha / B
//!              -> orl_nets::engine::TanhGaussianHead::sample_backward
//! temperature: dL/d log alpha = -E[log pi + target_entropy]
//! ```

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::AdamConfig;
use orl_nets::engine::{FlatAdam, Params, QCache, QNet, TanhGaussianCache, TanhGaussianHead};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, Core, Metrics, Probe, Spec, check_batch, host_rows, mlp_layer_names, plain_policy,
    record_value, scalar_param, state_lists, td_mse_grad,
};
use crate::error::Result;

/// SAC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SacConfig {
    /// Hidden sizes of actor and critics.
    pub hidden: Vec<usize>,
    /// Actor learning rate.
    pub actor_lr: f64,
    /// Critic learning rate.
    pub critic_lr: f64,
    /// Temperature learning rate.
    pub alpha_lr: f64,
    /// Polyak coefficient.
    pub tau: f64,
}

impl Default for SacConfig {
    /// The paper's table 1: 256x256, Adam 3e-4 for all, tau 0.005 (target entropy `-A`).
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            actor_lr: 3e-4,
            critic_lr: 3e-4,
            alpha_lr: 3e-4,
            tau: 0.005,
        }
    }
}
/// SAC's actor with its temperature: the tanh-Gaussian policy, `log alpha`, and their
/// optimizers (shared by SAC and CQL).
pub(crate) struct SacActor {
    pub(crate) head: TanhGaussianHead,
    pub(crate) params: Params,
    pub(crate) opt: FlatAdam,
    pub(crate) log_alpha: Params,
    pub(crate) alpha_opt: FlatAdam,
    pub(crate) act_dim: usize,
}

/// Buffers of the actor step.
#[derive(Default)]
pub(crate) struct ActorScratch {
    pub(crate) pi: TanhGaussianCache,
    pub(crate) acting: TanhGaussianCache,
    q_pi: QCache,
    a: Vec<f32>,
    lp: Vec<f32>,
    da: Vec<f32>,
    dlp: Vec<f32>,
}

/// What the actor step reports.
pub(crate) struct ActorOut {
    pub(crate) loss: f64,
    pub(crate) alpha_loss: f64,
    pub(crate) entropy: f64,
    pub(crate) alpha: f64,
}

impl SacActor {
    /// The policy (`obs -> hidden -> (mean, log_std)`) drawn from `rng` and `log alpha = 0`.
    pub(crate) fn new(
        pb_rng: &mut rand_pcg::Pcg64Mcg,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        max_action: f64,
        lr: f64,
        alpha_lr: f64,
    ) -> Result<Self> {
        let mut params = Params::new();
        let head = TanhGaussianHead::new(
            &mut params.builder("", pb_rng),
            obs_dim,
            act_dim,
            hidden,
            max_action,
        )?;
        let log_alpha = scalar_param("log_alpha", pb_rng)?;
        Ok(Self {
            opt: FlatAdam::new(&params, AdamConfig::with_lr(lr)),
            alpha_opt: FlatAdam::new(&log_alpha, AdamConfig::with_lr(alpha_lr)),
            head,
            params,
            log_alpha,
            act_dim,
        })
    }
    /// `alpha = exp(log alpha)`.
    pub(crate) fn alpha(&self) -> f32 {
        self.log_alpha.data()[0].exp()
    }
    /// Actor loss `E[alpha log pi(a|s) - min_i Q_i(s, a)]`, `a = pi(s; eps)` reparameterised,
    /// and temperature loss `-E[log alpha (log pi + target_entropy)]` (target `-A`), their
    /// gradients into `opt`'s and `alpha_opt`'s buffers; the critic's parameters get none.
    pub(crate) fn grad(
        &mut self,
        critic: &QNet,
        critic_params: &Params,
        s: &[f32],
        eps: &[f32],
        bsz: usize,
        sc: &mut ActorScratch,
    ) -> ActorOut {
        let ad = self.act_dim;
        let alpha = self.alpha();
        sc.a.resize(bsz * ad, 0.0);
        sc.lp.resize(bsz, 0.0);
        self.head
            .sample(&self.params, s, eps, bsz, &mut sc.pi, &mut sc.a, &mut sc.lp);
        critic.q(critic_params, s, &sc.a, bsz, &mut sc.q_pi);
        let (mut loss, mut lp_sum) = (0.0f64, 0.0f64);
        let (q, dq) = sc.q_pi.mlp.output_and_dout();
        for b in 0..bsz {
            let (q0, q1) = (q[b], q[bsz + b]);
            loss += f64::from(alpha * sc.lp[b] - q0.min(q1));
            lp_sum += f64::from(sc.lp[b]);
            let first = q0 <= q1;
            dq[b] = if first { -1.0 / bsz as f32 } else { 0.0 };
            dq[bsz + b] = if first { 0.0 } else { -1.0 / bsz as f32 };
        }
        sc.da.resize(bsz * ad, 0.0);
        critic.backward(critic_params, &mut sc.q_pi, None, Some(&mut sc.da));
        sc.dlp.clear();
        sc.dlp.resize(bsz, alpha / bsz as f32);
        let g = self.opt.zero_grad();
        self.head
            .sample_backward(&self.params, s, &sc.da, &sc.dlp, &mut sc.pi, g);
        let target_entropy = -(ad as f64);
        let lp_mean = lp_sum / bsz as f64;
        let log_alpha = f64::from(self.log_alpha.data()[0]);
        self.alpha_opt.zero_grad()[0] = (-(lp_mean + target_entropy)) as f32;
        ActorOut {
            loss: loss / bsz as f64,
            alpha_loss: -log_alpha * (lp_mean + target_entropy),
            entropy: -lp_mean,
            alpha: f64::from(alpha),
        }
    }
    /// Steps the policy and the temperature from their gradient buffers.
    pub(crate) fn step(&mut self) -> Result<()> {
        self.opt.step(&mut self.params)?;
        self.alpha_opt.step(&mut self.log_alpha)?;
        Ok(())
    }
    /// Actions (`m tanh(mu)` when deterministic, else a sample from `noise`) and their
    /// log-probabilities (samples only) for `s: [B, obs]`.
    pub(crate) fn act(
        &self,
        s: &Tensor,
        deterministic: bool,
        noise: &mut orl_nets::Noise,
        cache: &mut TanhGaussianCache,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (x, b) = host_rows(s)?;
        let ad = self.act_dim;
        let mut a = vec![0.0; b * ad];
        if deterministic {
            self.head.deterministic(&self.params, &x, b, cache, &mut a);
            return Ok((Tensor::from_vec(a, (b, ad), s.device())?, None));
        }
        let mut eps = vec![0.0; b * ad];
        noise.normal_into(&mut eps);
        let mut lp = vec![0.0; b];
        self.head
            .sample(&self.params, &x, &eps, b, cache, &mut a, &mut lp);
        Ok((
            Tensor::from_vec(a, (b, ad), s.device())?,
            Some(Tensor::from_vec(lp, b, s.device())?),
        ))
    }
    /// `log pi(a|s)` of given actions.
    pub(crate) fn log_prob(
        &self,
        s: &Tensor,
        a: &Tensor,
        cache: &mut TanhGaussianCache,
    ) -> Result<Tensor> {
        let (x, b) = host_rows(s)?;
        let (a, _) = host_rows(a)?;
        let mut lp = vec![0.0; b];
        self.head.log_prob(&self.params, &x, &a, b, cache, &mut lp);
        Ok(Tensor::from_vec(lp, b, s.device())?)
    }
    /// The exportable policy (the mean through `tanh`).
    pub(crate) fn policy_model(&self, hidden: usize, spec: &Spec) -> Result<orl_nets::PolicyModel> {
        let mut names = mlp_layer_names("trunk.", hidden);
        names.push("mean".into());
        plain_policy(&self.params.named_tensors(""), &names, spec)
    }
}

/// `min_i Q_i(s_b, a_b)` `[B]` of a continuous twin critic.
pub(crate) fn min_q(critic: &QNet, params: &Params, s: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (x, b) = host_rows(s)?;
    let (a, _) = host_rows(a)?;
    let mut cache = QCache::default();
    let q = critic.q(params, &x, &a, b, &mut cache);
    let v: Vec<f32> = (0..b).map(|i| q[i].min(q[b + i])).collect();
    Ok(Tensor::from_vec(v, b, s.device())?)
}

/// SAC.
pub struct Sac {
    cfg: SacConfig,
    core: Core,
    actor: SacActor,
    critic: QNet,
    critic_params: Params,
    critic_target: Params,
    critic_opt: FlatAdam,
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    actor: ActorScratch,
    q: QCache,
    q_next: QCache,
    eps_target: Vec<f32>,
    eps_actor: Vec<f32>,
    a2: Vec<f32>,
    lp2: Vec<f32>,
    y: Vec<f32>,
}

impl Sac {
    /// Builds actor, twin critics and their targets for `spec`, initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: SacConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let (act_dim, max_action) = spec.continuous_parts("SAC")?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let (od, h) = (spec.obs_dim, cfg.hidden.clone());
        let actor = SacActor::new(
            &mut rng,
            od,
            act_dim,
            &h,
            max_action,
            cfg.actor_lr,
            cfg.alpha_lr,
        )?;
        let mut critic_params = Params::new();
        let critic =
            QNet::continuous(&mut critic_params.builder("", &mut rng), 2, od, act_dim, &h)?;
        Ok(Self {
            critic_opt: FlatAdam::new(&critic_params, AdamConfig::with_lr(cfg.critic_lr)),
            core: Core::new(spec, seed, device),
            cfg,
            actor,
            critic,
            critic_target: critic_params.clone(),
            critic_params,
            scratch: Scratch::default(),
        })
    }
}

/// Soft TD loss of both critics and its gradient (`critic_opt`'s buffer):
/// `(loss, mean Q, mean |TD|)`.
fn critic_grad(t: &mut Sac, batch: &Batch) -> (f64, f64, f64) {
    let bsz = batch.batch_size;
    let ad = t.actor.act_dim;
    let sc = &mut t.scratch;
    let alpha = t.actor.alpha();
    sc.a2.resize(bsz * ad, 0.0);
    sc.lp2.resize(bsz, 0.0);
    t.actor.head.sample(
        &t.actor.params,
        &batch.next_observations,
        &sc.eps_target,
        bsz,
        &mut sc.actor.pi,
        &mut sc.a2,
        &mut sc.lp2,
    );
    let q2 = t.critic.q(
        &t.critic_target,
        &batch.next_observations,
        &sc.a2,
        bsz,
        &mut sc.q_next,
    );
    sc.y.resize(bsz, 0.0);
    for b in 0..bsz {
        let v2 = q2[b].min(q2[bsz + b]) - alpha * sc.lp2[b];
        sc.y[b] = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * v2;
    }
    t.critic.q(
        &t.critic_params,
        &batch.observations,
        &batch.actions,
        bsz,
        &mut sc.q,
    );
    let (q, dq) = sc.q.mlp.output_and_dout();
    let out = td_mse_grad(q, &sc.y, dq, 0.5);
    let g = t.critic_opt.zero_grad();
    t.critic
        .backward(&t.critic_params, &mut sc.q, Some(g), None);
    out
}

impl Sac {
    fn draw(&mut self, bsz: usize) {
        let ad = self.actor.act_dim;
        let sc = &mut self.scratch;
        sc.eps_target.resize(bsz * ad, 0.0);
        self.core.noise.normal_into(&mut sc.eps_target);
        sc.eps_actor.resize(bsz * ad, 0.0);
        self.core.noise.normal_into(&mut sc.eps_actor);
    }
    /// Every loss of an update and its gradients at the current parameters (the actor's at
    /// the current critic, where the update takes it after the critic's step), without
    /// changing any state. For the parity tests.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        check_batch(batch, &self.core.spec)?;
        let saved = self.core.noise.clone();
        self.draw(batch.batch_size);
        self.core.noise = saved;
        let (critic, ..) = critic_grad(self, batch);
        let sc = &mut self.scratch;
        let out = self.actor.grad(
            &self.critic,
            &self.critic_params,
            &batch.observations,
            &sc.eps_actor,
            batch.batch_size,
            &mut sc.actor,
        );
        Ok(vec![
            Probe::new(
                "critic_loss",
                critic,
                "critic",
                &self.critic_params,
                self.critic_opt.grad(),
            ),
            Probe::new(
                "actor_loss",
                out.loss,
                "actor",
                &self.actor.params,
                self.actor.opt.grad(),
            ),
            Probe::new(
                "alpha_loss",
                out.alpha_loss,
                "log_alpha",
                &self.actor.log_alpha,
                self.actor.alpha_opt.grad(),
            ),
        ])
    }
}

impl Algorithm for Sac {
    fn name(&self) -> &'static str {
        "sac"
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        check_batch(batch, &self.core.spec)?;
        let step = self.core.steps;
        let bsz = batch.batch_size;
        let mut m = Metrics::new();
        self.draw(bsz);
        let (closs, q, td) = critic_grad(self, batch);
        record_value(&mut m, step, "critic_loss", closs)?;
        record_value(&mut m, step, "q_mean", q)?;
        record_value(&mut m, step, "td_error", td)?;
        self.critic_opt.step(&mut self.critic_params)?;
        let sc = &mut self.scratch;
        let out = self.actor.grad(
            &self.critic,
            &self.critic_params,
            &batch.observations,
            &sc.eps_actor,
            bsz,
            &mut sc.actor,
        );
        record_value(&mut m, step, "actor_loss", out.loss)?;
        record_value(&mut m, step, "alpha_loss", out.alpha_loss)?;
        record_value(&mut m, step, "entropy", out.entropy)?;
        record_value(&mut m, step, "alpha", out.alpha)?;
        self.actor.step()?;
        self.critic_target
            .soft_update_from(&self.critic_params, self.cfg.tau)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        // Online acting is part of training: it draws from the training stream.
        let (a, _) = self.actor.act(
            s,
            deterministic,
            &mut self.core.noise,
            &mut self.scratch.actor.acting,
        )?;
        Ok(a)
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.actor.log_prob(
            s,
            a,
            &mut self.scratch.actor.acting,
        )?))
    }
    /// The sample's own log-probability (from its pre-tanh value), exact even where
    /// `tanh` saturates. Online acting is part of training: it draws from the training stream.
    fn act_with_log_prob(&mut self, s: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        self.actor.act(
            s,
            false,
            &mut self.core.noise,
            &mut self.scratch.actor.acting,
        )
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(min_q(&self.critic, &self.critic_params, s, a)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        Ok(Some(
            self.actor
                .policy_model(self.cfg.hidden.len(), &self.core.spec)?,
        ))
    }
    state_lists! {
        nets [
            "actor" => actor.params,
            "critic" => critic_params,
            "critic_target" => critic_target,
            "log_alpha" => actor.log_alpha,
        ]
        optims ["actor" => actor.opt, "critic" => critic_opt, "log_alpha" => actor.alpha_opt]
    }
}
