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
//! offline method.

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::{Adam, AdamConfig, ParamStore, QEnsemble, TanhGaussianActor};
use orl_nets::{NetState, OptimState};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, BatchTensors, Core, Metrics, Spec, min_over_ensemble, mlp_layer_names, plain_policy,
    record, target_of,
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

/// SAC.
pub struct Sac {
    cfg: SacConfig,
    core: Core,
    act_dim: usize,
    actor: TanhGaussianActor,
    actor_store: ParamStore,
    critic: QEnsemble,
    critic_store: ParamStore,
    critic_target: QEnsemble,
    critic_target_store: ParamStore,
    log_alpha: ParamStore,
    actor_opt: Adam,
    critic_opt: Adam,
    alpha_opt: Adam,
}

impl Sac {
    /// Builds actor, twin critics, target critics and the temperature for `spec`.
    pub fn new(
        spec: Spec,
        cfg: SacConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let (act_dim, max_action) = spec.continuous_parts("SAC")?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let (od, h) = (spec.obs_dim, cfg.hidden.clone());
        let mut actor_store = ParamStore::new(device.clone());
        let actor = TanhGaussianActor::new(
            &mut actor_store.builder("", &mut rng),
            od,
            act_dim,
            &h,
            max_action,
        )?;
        let mut critic_store = ParamStore::new(device.clone());
        let critic =
            QEnsemble::continuous(&mut critic_store.builder("", &mut rng), 2, od, act_dim, &h)?;
        let (critic_target, critic_target_store) = target_of(&critic_store, |vb| {
            QEnsemble::continuous(vb, 2, od, act_dim, &h)
        })?;
        let mut log_alpha = ParamStore::new(device.clone());
        log_alpha
            .builder("", &mut rng)
            .constant("log_alpha", &[1], 0.0)?;
        Ok(Self {
            actor_opt: Adam::new(&actor_store, AdamConfig::with_lr(cfg.actor_lr))?,
            critic_opt: Adam::new(&critic_store, AdamConfig::with_lr(cfg.critic_lr))?,
            alpha_opt: Adam::new(&log_alpha, AdamConfig::with_lr(cfg.alpha_lr))?,
            core: Core::new(spec, seed, device),
            cfg,
            act_dim,
            actor,
            actor_store,
            critic,
            critic_store,
            critic_target,
            critic_target_store,
            log_alpha,
        })
    }
    fn log_alpha(&self) -> Result<Tensor> {
        self.log_alpha
            .get("log_alpha")
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| crate::AlgoError::Config("missing log_alpha".into()))
    }
}

/// Soft TD loss of both critics: `(loss, mean Q, mean |TD|)`. `eps: [B, act]` standard normal.
fn critic_loss(t: &Sac, b: &BatchTensors, eps: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let alpha = t.log_alpha()?.exp()?.detach();
    let y = {
        let (a2, lp2) = t.actor.sample_with(&b.s2, eps)?;
        let v2 =
            (min_over_ensemble(&t.critic_target.q(&b.s2, &a2)?)? - lp2.broadcast_mul(&alpha)?)?;
        b.td_target(&v2)?.detach()
    };
    let q = t.critic.q(&b.s, &b.a)?;
    let diff = q.broadcast_sub(&y.unsqueeze(0)?)?;
    Ok((
        (diff.sqr()?.mean(1)? * 0.5)?.sum_all()?,
        q.mean_all()?,
        diff.get(0)?.abs()?.mean_all()?,
    ))
}

/// Actor and temperature losses: `(actor, alpha loss, entropy)`.
fn actor_loss(t: &Sac, b: &BatchTensors, eps: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let log_alpha = t.log_alpha()?;
    let (a, lp) = t.actor.sample_with(&b.s, eps)?;
    let q = min_over_ensemble(&t.critic.q(&b.s, &a)?)?;
    let actor = (lp.broadcast_mul(&log_alpha.exp()?.detach())? - q)?.mean_all()?;
    let alpha_loss = log_alpha
        .broadcast_mul(&(lp.detach() - t.act_dim as f64)?)?
        .neg()?
        .mean_all()?;
    Ok((actor, alpha_loss, lp.neg()?.mean_all()?))
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
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let mut m = Metrics::new();
        let bsz = batch.batch_size;
        let eps_target = self.core.noise.normal(&[bsz, self.act_dim])?;
        let eps_actor = self.core.noise.normal(&[bsz, self.act_dim])?;
        let (closs, q, td) = critic_loss(self, &b, &eps_target)?;
        record(&mut m, self.core.steps, "critic_loss", &closs)?;
        record(&mut m, self.core.steps, "q_mean", &q)?;
        record(&mut m, self.core.steps, "td_error", &td)?;
        self.critic_opt.backward_step(&closs)?;
        let (aloss, alpha_loss, entropy) = actor_loss(self, &b, &eps_actor)?;
        record(&mut m, self.core.steps, "actor_loss", &aloss)?;
        record(&mut m, self.core.steps, "alpha_loss", &alpha_loss)?;
        record(&mut m, self.core.steps, "entropy", &entropy)?;
        record(
            &mut m,
            self.core.steps,
            "alpha",
            &self.log_alpha()?.exp()?.sum_all()?,
        )?;
        self.actor_opt.backward_step(&aloss)?;
        self.alpha_opt.backward_step(&alpha_loss)?;
        self.critic_target_store
            .soft_update_from(&self.critic_store, self.cfg.tau)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        if deterministic {
            return Ok(self.actor.deterministic(s)?);
        }
        let eps = self.core.noise.normal(&[s.dim(0)?, self.act_dim])?;
        Ok(self.actor.sample_with(s, &eps)?.0)
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.actor.log_prob(s, a)?))
    }
    /// The sample's own log-probability (from its pre-tanh value), exact even where
    /// `tanh` saturates. Online acting is part of training: it draws from the training stream.
    fn act_with_log_prob(&mut self, s: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let eps = self.core.noise.normal(&[s.dim(0)?, self.act_dim])?;
        let (a, lp) = self.actor.sample_with(s, &eps)?;
        Ok((a, Some(lp)))
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(min_over_ensemble(&self.critic.q(s, a)?)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let mut names = mlp_layer_names("trunk.", self.cfg.hidden.len());
        names.push("mean".into());
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
            ("log_alpha", &self.log_alpha),
        ]
    }
    fn nets_mut(&mut self) -> Vec<(&'static str, &mut dyn NetState)> {
        vec![
            ("actor", &mut self.actor_store),
            ("critic", &mut self.critic_store),
            ("critic_target", &mut self.critic_target_store),
            ("log_alpha", &mut self.log_alpha),
        ]
    }
    fn optims(&self) -> Vec<(&'static str, &dyn OptimState)> {
        vec![
            ("actor", &self.actor_opt),
            ("critic", &self.critic_opt),
            ("log_alpha", &self.alpha_opt),
        ]
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn OptimState)> {
        vec![
            ("actor", &mut self.actor_opt),
            ("critic", &mut self.critic_opt),
            ("log_alpha", &mut self.alpha_opt),
        ]
    }
}
