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
//!
//! One implementation for every backend (`Sac<B: Backend>`, `SacActor<B>`, whose actor step
//! CQL shares): the squashed Gaussian's sample and log-density
//! are `TanhGaussianHead::sample_on`, the smaller critic is picked by a mask kernel. On the CPU
//! engine the numbers are the earlier loops', bit for bit (checked over 150 updates of SAC and
//! of continuous CQL).

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::AdamConfig;
use orl_nets::engine::backend::{Backend, Bellman, Cpu, Identity, Map2, Map3, Scalar};
use orl_nets::engine::{
    Params, QBufs, QCache, QNet, TanhBufs, TanhGaussianCache, TanhGaussianHead,
};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, BatchBufs, Core, Metrics, Probe, Spec, TdBufs, check_batch, host_rows,
    mlp_layer_names, plain_policy, record_value, scalar_param, state_lists, td_mse_grad_on,
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
/// optimizers (shared by SAC and CQL), on backend `B`.
pub(crate) struct SacActor<B: Backend = Cpu> {
    pub(crate) be: B,
    pub(crate) head: TanhGaussianHead,
    pub(crate) params: B::Params,
    pub(crate) opt: B::Adam,
    pub(crate) log_alpha: B::Params,
    pub(crate) alpha_opt: B::Adam,
    pub(crate) act_dim: usize,
}

/// Buffers of the actor step.
pub(crate) struct ActorScratch<B: Backend> {
    pub(crate) pi: TanhBufs<B>,
    pub(crate) acting: TanhGaussianCache,
    q_pi: QBufs<B>,
    a: B::Buf,
    lp: B::Buf,
    qa: B::Buf,
    qb: B::Buf,
    terms: B::Buf,
    dqa: B::Buf,
    dqb: B::Buf,
    dq: B::Buf,
    da: B::Buf,
    dlp: B::Buf,
}

impl<B: Backend> Default for ActorScratch<B> {
    fn default() -> Self {
        Self {
            pi: TanhBufs::default(),
            acting: TanhGaussianCache::default(),
            q_pi: QBufs::default(),
            a: B::Buf::default(),
            lp: B::Buf::default(),
            qa: B::Buf::default(),
            qb: B::Buf::default(),
            terms: B::Buf::default(),
            dqa: B::Buf::default(),
            dqb: B::Buf::default(),
            dq: B::Buf::default(),
            da: B::Buf::default(),
            dlp: B::Buf::default(),
        }
    }
}

/// What the actor step reports.
pub(crate) struct ActorOut {
    pub(crate) loss: f64,
    pub(crate) alpha_loss: f64,
    pub(crate) entropy: f64,
    pub(crate) alpha: f64,
}

/// `alpha log pi - min(q0, q1)` (`Map3`): one row of the actor loss.
struct ActorTerm(f32);

impl Map3 for ActorTerm {
    #[inline(always)]
    fn apply<S: Scalar>(&self, lp: S, q0: S, q1: S) -> S {
        lp.scale(self.0) - q0.min(q1)
    }
}

/// `dL/dQ_0 = -1/B` where `Q_0 <= Q_1` (the smaller critic; the first on ties), else 0.
struct PickFirst(f32);

impl Map2 for PickFirst {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q0: S, q1: S) -> S {
        (q0 - q1)
            .inside(f32::NEG_INFINITY, 0.0)
            .scale(self.0)
            .shift(0.0)
    }
}

/// `dL/dQ_1 = -1/B` where `Q_0 > Q_1`, else 0.
struct PickSecond(f32);

impl Map2 for PickSecond {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q0: S, q1: S) -> S {
        (q0 - q1)
            .inside(f32::NEG_INFINITY, 0.0)
            .scale(-1.0)
            .shift(1.0)
            .scale(self.0)
            .shift(0.0)
    }
}

impl<B: Backend> SacActor<B> {
    /// The policy (`obs -> hidden -> (mean, log_std)`) drawn from `rng` and `log alpha = 0`,
    /// on backend `be`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_on(
        be: B,
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
        let log_alpha = be.place(&scalar_param("log_alpha", pb_rng)?)?;
        let params = be.place(&params)?;
        Ok(Self {
            opt: be.adam(&params, AdamConfig::with_lr(lr), None)?,
            alpha_opt: be.adam(&log_alpha, AdamConfig::with_lr(alpha_lr), None)?,
            head,
            params,
            log_alpha,
            act_dim,
            be,
        })
    }
    /// `log alpha` (read from the backend).
    pub(crate) fn log_alpha(&self) -> Result<f32> {
        Ok(self.be.host_params(&self.log_alpha)?.data()[0])
    }
    /// `alpha = exp(log alpha)`.
    pub(crate) fn alpha(&self) -> Result<f32> {
        Ok(self.log_alpha()?.exp())
    }
    /// Actor loss `E[alpha log pi(a|s) - min_i Q_i(s, a)]`, `a = pi(s; eps)` reparameterised,
    /// and temperature loss `-E[log alpha (log pi + target_entropy)]` (target `-A`), their
    /// gradients into `opt`'s and `alpha_opt`'s buffers; the critic's parameters get none.
    /// `s` `[B, obs]` and `eps` `[B, act]` on the backend.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grad(
        &mut self,
        critic: &QNet,
        critic_params: &B::Params,
        s: &B::Buf,
        eps: &B::Buf,
        bsz: usize,
        sc: &mut ActorScratch<B>,
    ) -> Result<ActorOut> {
        let ad = self.act_dim;
        let log_alpha = self.log_alpha()?;
        let alpha = log_alpha.exp();
        let be = &self.be;
        self.head.sample_on(
            be,
            &self.params,
            s,
            eps,
            bsz,
            &mut sc.pi,
            &mut sc.a,
            &mut sc.lp,
        )?;
        let q = critic.q_on(be, critic_params, s, &sc.a, bsz, 2, &mut sc.q_pi)?;
        be.rows(q, 1, 0, bsz, &mut sc.qa)?;
        be.rows(q, 1, bsz, bsz, &mut sc.qb)?;
        be.map3(&ActorTerm(alpha), &sc.lp, &sc.qa, &sc.qb, &mut sc.terms)?;
        let loss = be.map1_sum(&Identity, &sc.terms)?;
        let lp_sum = be.map1_sum(&Identity, &sc.lp)?;
        let c = -1.0 / bsz as f32;
        be.map2(&PickFirst(c), &sc.qa, &sc.qb, &mut sc.dqa)?;
        be.map2(&PickSecond(c), &sc.qa, &sc.qb, &mut sc.dqb)?;
        be.concat_rows(&[&sc.dqa, &sc.dqb], &mut sc.dq)?;
        critic.backward_on(
            be,
            critic_params,
            &mut sc.q_pi,
            &sc.dq,
            None,
            Some(&mut sc.da),
        )?;
        be.fill(&sc.lp, alpha / bsz as f32, &mut sc.dlp)?;
        let g = be.zero_grad(&mut self.opt)?;
        self.head
            .sample_backward_on(be, &self.params, s, &sc.da, &sc.dlp, &mut sc.pi, g)?;
        let target_entropy = -(ad as f64);
        let lp_mean = lp_sum / bsz as f64;
        let g = be.zero_grad(&mut self.alpha_opt)?;
        be.upload(&[(-(lp_mean + target_entropy)) as f32], 1, g)?;
        let log_alpha = f64::from(log_alpha);
        Ok(ActorOut {
            loss: loss / bsz as f64,
            alpha_loss: -log_alpha * (lp_mean + target_entropy),
            entropy: -lp_mean,
            alpha: f64::from(alpha),
        })
    }
    /// Steps the policy and the temperature from their gradient buffers.
    pub(crate) fn step(&mut self) -> Result<()> {
        self.be.adam_step(&mut self.opt, &mut self.params)?;
        self.be
            .adam_step(&mut self.alpha_opt, &mut self.log_alpha)?;
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
        let params = self.be.host_params(&self.params)?;
        if deterministic {
            self.head.deterministic(&params, &x, b, cache, &mut a);
            return Ok((Tensor::from_vec(a, (b, ad), s.device())?, None));
        }
        let mut eps = vec![0.0; b * ad];
        noise.normal_into(&mut eps);
        let mut lp = vec![0.0; b];
        self.head
            .sample(&params, &x, &eps, b, cache, &mut a, &mut lp);
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
        self.head.log_prob(
            &*self.be.host_params(&self.params)?,
            &x,
            &a,
            b,
            cache,
            &mut lp,
        );
        Ok(Tensor::from_vec(lp, b, s.device())?)
    }
    /// The exportable policy (the mean through `tanh`).
    pub(crate) fn policy_model(&self, hidden: usize, spec: &Spec) -> Result<orl_nets::PolicyModel> {
        let mut names = mlp_layer_names("trunk.", hidden);
        names.push("mean".into());
        plain_policy(
            &self.be.host_params(&self.params)?.named_tensors(""),
            &names,
            spec,
        )
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

/// SAC on backend `B`: the CPU engine by default, candle tensors with
/// [`Sac::new_on`]`(Candle, ..)`.
pub struct Sac<B: Backend = Cpu> {
    cfg: SacConfig,
    core: Core,
    actor: SacActor<B>,
    critic: QNet,
    critic_params: B::Params,
    critic_target: B::Params,
    critic_opt: B::Adam,
    scratch: Scratch<B>,
}

struct Scratch<B: Backend> {
    b: BatchBufs<B>,
    actor: ActorScratch<B>,
    q: QBufs<B>,
    q_next: QBufs<B>,
    td: TdBufs<B>,
    eps_host: Vec<f32>,
    eps_target: B::Buf,
    eps_actor: B::Buf,
    a2: B::Buf,
    lp2: B::Buf,
    q2a: B::Buf,
    q2b: B::Buf,
    v2: B::Buf,
    y: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            b: BatchBufs::default(),
            actor: ActorScratch::default(),
            q: QBufs::default(),
            q_next: QBufs::default(),
            td: TdBufs::default(),
            eps_host: Vec::new(),
            eps_target: B::Buf::default(),
            eps_actor: B::Buf::default(),
            a2: B::Buf::default(),
            lp2: B::Buf::default(),
            q2a: B::Buf::default(),
            q2b: B::Buf::default(),
            v2: B::Buf::default(),
            y: B::Buf::default(),
        }
    }
}

impl Sac<Cpu> {
    /// Builds actor, twin critics and their targets for `spec` on the CPU engine, initialised
    /// from `seed`.
    pub fn new(
        spec: Spec,
        cfg: SacConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Sac<B> {
    /// [`Sac::new`] on backend `be` (the same initial parameters on every backend).
    pub fn new_on(
        be: B,
        spec: Spec,
        cfg: SacConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let (act_dim, max_action) = spec.continuous_parts("SAC")?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let (od, h) = (spec.obs_dim, cfg.hidden.clone());
        let actor = SacActor::new_on(
            be.clone(),
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
        let critic_target = be.place(&critic_params)?;
        let critic_params = be.place(&critic_params)?;
        Ok(Self {
            critic_opt: be.adam(&critic_params, AdamConfig::with_lr(cfg.critic_lr), None)?,
            core: Core::new(spec, seed, device),
            cfg,
            actor,
            critic,
            critic_target,
            critic_params,
            scratch: Scratch::default(),
        })
    }
}

/// `y = r + [gamma^k (1 - d)] (min(q0, q1) - alpha lp)` is built in two kernels: this one gives
/// `v = min(q0, q1) - alpha lp`.
struct SoftValue(f32);

impl Map3 for SoftValue {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q0: S, q1: S, lp: S) -> S {
        q0.min(q1) - lp.scale(self.0)
    }
}

/// Soft TD loss of both critics and its gradient (`critic_opt`'s buffer), on the uploaded
/// batch: `(loss, mean Q, mean |TD|)`.
fn critic_grad<B: Backend>(t: &mut Sac<B>, bsz: usize) -> Result<(f64, f64, f64)> {
    let sc = &mut t.scratch;
    let alpha = t.actor.alpha()?;
    let be = &t.actor.be;
    t.actor.head.sample_on(
        be,
        &t.actor.params,
        &sc.b.s2,
        &sc.eps_target,
        bsz,
        &mut sc.actor.pi,
        &mut sc.a2,
        &mut sc.lp2,
    )?;
    let q2 = t.critic.q_on(
        be,
        &t.critic_target,
        &sc.b.s2,
        &sc.a2,
        bsz,
        2,
        &mut sc.q_next,
    )?;
    be.rows(q2, 1, 0, bsz, &mut sc.q2a)?;
    be.rows(q2, 1, bsz, bsz, &mut sc.q2b)?;
    be.map3(&SoftValue(alpha), &sc.q2a, &sc.q2b, &sc.lp2, &mut sc.v2)?;
    be.map3(&Bellman, &sc.b.r, &sc.b.nd, &sc.v2, &mut sc.y)?;
    let q = t
        .critic
        .q_on(be, &t.critic_params, &sc.b.s, &sc.b.a, bsz, 2, &mut sc.q)?;
    let out = td_mse_grad_on(be, q, &sc.y, 2, bsz, 0.5, &mut sc.td)?;
    let g = be.zero_grad(&mut t.critic_opt)?;
    t.critic
        .backward_on(be, &t.critic_params, &mut sc.q, &sc.td.dq, Some(g), None)?;
    Ok(out)
}

impl<B: Backend> Sac<B> {
    /// Checks and uploads the batch and draws the update's noise (target policy, then actor).
    fn prepare(&mut self, batch: &Batch) -> Result<()> {
        check_batch(batch, &self.core.spec)?;
        let (bsz, ad) = (batch.batch_size, self.actor.act_dim);
        let be = &self.actor.be;
        let sc = &mut self.scratch;
        sc.b.upload(be, batch, &self.core.spec, true)?;
        for buf in [&mut sc.eps_target, &mut sc.eps_actor] {
            sc.eps_host.resize(bsz * ad, 0.0);
            self.core.noise.normal_into(&mut sc.eps_host);
            be.upload(&sc.eps_host, ad, buf)?;
        }
        Ok(())
    }
    /// Every loss of an update and its gradients at the current parameters (the actor's at
    /// the current critic, where the update takes it after the critic's step), without
    /// changing any state. For the parity tests.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        let saved = self.core.noise.clone();
        self.prepare(batch)?;
        self.core.noise = saved;
        let (critic, ..) = critic_grad(self, batch.batch_size)?;
        let sc = &mut self.scratch;
        let out = self.actor.grad(
            &self.critic,
            &self.critic_params,
            &sc.b.s,
            &sc.eps_actor,
            batch.batch_size,
            &mut sc.actor,
        )?;
        let be = &self.actor.be;
        let mut probes = Vec::new();
        for (loss, value, net, params, opt) in [
            (
                "critic_loss",
                critic,
                "critic",
                &self.critic_params,
                &self.critic_opt,
            ),
            (
                "actor_loss",
                out.loss,
                "actor",
                &self.actor.params,
                &self.actor.opt,
            ),
            (
                "alpha_loss",
                out.alpha_loss,
                "log_alpha",
                &self.actor.log_alpha,
                &self.actor.alpha_opt,
            ),
        ] {
            let mut g = Vec::new();
            be.download(be.grad(opt), &mut g)?;
            probes.push(Probe::new(loss, value, net, &*be.host_params(params)?, &g));
        }
        Ok(probes)
    }
}

impl<B: Backend> Algorithm for Sac<B> {
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
        let step = self.core.steps;
        let bsz = batch.batch_size;
        let mut m = Metrics::new();
        self.prepare(batch)?;
        let (closs, q, td) = critic_grad(self, bsz)?;
        record_value(&mut m, step, "critic_loss", closs)?;
        record_value(&mut m, step, "q_mean", q)?;
        record_value(&mut m, step, "td_error", td)?;
        self.actor
            .be
            .adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        let sc = &mut self.scratch;
        let out = self.actor.grad(
            &self.critic,
            &self.critic_params,
            &sc.b.s,
            &sc.eps_actor,
            bsz,
            &mut sc.actor,
        )?;
        record_value(&mut m, step, "actor_loss", out.loss)?;
        record_value(&mut m, step, "alpha_loss", out.alpha_loss)?;
        record_value(&mut m, step, "entropy", out.entropy)?;
        record_value(&mut m, step, "alpha", out.alpha)?;
        self.actor.step()?;
        self.actor
            .be
            .soft_update(&mut self.critic_target, &self.critic_params, self.cfg.tau)?;
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
        Ok(Some(min_q(
            &self.critic,
            &*self.actor.be.host_params(&self.critic_params)?,
            s,
            a,
        )?))
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
