//! BCQ: Batch-Constrained deep Q-learning.
//!
//! Continuous (Fujimoto, Meger & Precup 2019, "Off-Policy Deep Reinforcement Learning without
//! Exploration", algorithm 1): a conditional VAE `G_w` models the data's actions; a perturbation
//! network `xi_phi(s, a) in [-Phi, Phi]` adjusts them; twin critics are trained with the soft
//! clipped double-Q target over `n` sampled actions:
//!
//! ```text
//! VAE:      L(w) = ||D(s, z) - a||^2 + 0.5 KL(N(mu, sigma) || N(0, I))            (see orl_nets::Vae)
//! target:   {a_j} = a_j~G(s') + xi'(s', a_j), j = 1..n
//!           y = r + gamma (1 - d) max_j [ lambda min(Q'_1, Q'_2)(s', a_j) + (1 - lambda) max(Q'_1, Q'_2)(s', a_j) ]
//! critics:  L(theta) = sum_i E (Q_i(s, a) - y)^2
//! actor:    L(phi) = -E Q_1(s, a + xi_phi(s, a)),  a ~ G(s)
//! act:      argmax_j Q_1(s, a_j) over a_j ~ G(s) + xi(s, .)   (100 samples in the reference code)
//! ```
//!
//! with `xi(s, a) = Phi max_action tanh(mlp(s, a))` and `a + xi` clipped to the action box.
//!
//! Discrete (Fujimoto, Conti, Ghavamzadeh & Pineau 2019, "Benchmarking Batch Deep Reinforcement
//! Learning Algorithms", algorithm 1): a Q-network and an imitation network `G(a|s)`; only
//! actions with `G(a|s) / max_a' G(a'|s) > tau` may be chosen:
//!
//! ```text
//! a' = argmax_{a: G(a|s')/max G(.|s') > tau} Q(s', a)
//! L = huber(Q(s, a), r + gamma (1 - d) Q'(s', a')) - log G(a|s) + 0.01 E[logits^2]
//! ```

use candle_core::{D, DType, Tensor};
use orl_data::Batch;
use orl_nets::{NetState, OptimState};
use orl_nets::{Adam, AdamConfig, CategoricalActor, Mlp, ParamStore, QEnsemble, Vae, Vb};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchTensors, Core, Metrics, Spec, gather_actions, huber_loss,
    mlp_layer_names, record, repeat_rows, soft_clipped_double_q, target_of,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, RewardRecipe, defaults_of, fixed_length, parse_config, resolve,
};
use crate::validate as v;

/// BCQ settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BcqConfig {
    /// Hidden sizes of the perturbation actor and the critics (continuous), or of the
    /// Q-network and imitation network (discrete).
    pub hidden: Vec<usize>,
    /// Hidden sizes of the VAE's encoder and decoder.
    pub vae_hidden: Vec<usize>,
    /// Actor learning rate.
    pub actor_lr: f64,
    /// Critic learning rate (also the discrete Q-network's and imitation network's).
    pub critic_lr: f64,
    /// VAE learning rate.
    pub vae_lr: f64,
    /// Polyak coefficient of the targets.
    pub tau: f64,
    /// Maximum perturbation `Phi` (relative to `max_action`).
    pub phi: f64,
    /// Soft clipped double-Q weight `lambda`.
    pub lambda: f64,
    /// Actions sampled from the VAE for the target.
    pub n_samples: usize,
    /// Actions sampled from the VAE when acting.
    pub n_act_samples: usize,
    /// Discrete: relative-probability threshold `tau`.
    pub threshold: f64,
}

impl Default for BcqConfig {
    /// The continuous paper's appendix D / reference code: actor and critics 400x300, VAE
    /// 750x750 with latent `2 * act_dim`, Adam 1e-3 for all three, tau 0.005, Phi 0.05,
    /// lambda 0.75, 10 target samples, 100 samples when acting. Discrete: threshold 0.3 and the
    /// "regular" (non-Atari) settings of the discrete paper's code: Adam 3e-4, polyak 0.005,
    /// `hidden` as the Q and imitation networks.
    fn default() -> Self {
        Self {
            hidden: vec![400, 300],
            vae_hidden: vec![750, 750],
            actor_lr: 1e-3,
            critic_lr: 1e-3,
            vae_lr: 1e-3,
            tau: 0.005,
            phi: 0.05,
            lambda: 0.75,
            n_samples: 10,
            n_act_samples: 100,
            threshold: 0.3,
        }
    }
}

impl AlgoConfig for BcqConfig {
    fn validate(&self) -> Result<()> {
        v::hidden("bcq.hidden", &self.hidden)?;
        v::hidden("bcq.vae_hidden", &self.vae_hidden)?;
        v::positive("bcq.actor_lr", self.actor_lr)?;
        v::positive("bcq.critic_lr", self.critic_lr)?;
        v::positive("bcq.vae_lr", self.vae_lr)?;
        v::unit_open_closed("bcq.tau", self.tau)?;
        v::non_negative("bcq.phi", self.phi)?;
        v::unit_closed("bcq.lambda", self.lambda)?;
        v::count("bcq.n_samples", self.n_samples, v::MAX_SAMPLES)?;
        v::count("bcq.n_act_samples", self.n_act_samples, v::MAX_SAMPLES)?;
        v::unit_closed("bcq.threshold", self.threshold)
    }
}

/// The registry entry of BCQ.
pub static INFO: AlgoInfo = AlgoInfo {
    name: "bcq",
    summary: "batch-constrained Q-learning (VAE-generated, perturbed actions)",
    discrete: true,
    continuous: true,
    // Fujimoto et al. 2019, appendix D: batch 100.
    batch_size: 100,
    // The reference code (`sfujim/BCQ`) uses raw states.
    normalize_observations: false,
    reward: RewardRecipe::AsStored,
    relative_cost: 40,
    defaults: defaults_of::<BcqConfig>,
    reduced: |h, _| serde_json::json!({"hidden": [h, h], "vae_hidden": [h, h]}),
    fit_to_run: fixed_length,
    test_config: || serde_json::json!({"hidden": [32, 32], "vae_hidden": [32, 32], "n_act_samples": 10}),
    resolve: |v| resolve::<BcqConfig>("bcq", v),
    build: |spec, cfg, seed, device| {
        Ok(Box::new(Bcq::new(
            spec,
            parse_config("bcq", cfg)?,
            seed,
            device,
        )?))
    },
};

/// BCQ's perturbation model `xi(s, a) = Phi max_action tanh(mlp(s, a))`; returns `clip(a + xi)`.
#[derive(Debug, Clone)]
struct Perturbation {
    net: Mlp,
    phi: f64,
    max_action: f64,
}

impl Perturbation {
    fn new(
        vb: &mut Vb<'_>,
        od: usize,
        ad: usize,
        hidden: &[usize],
        phi: f64,
        max_action: f64,
    ) -> orl_nets::Result<Self> {
        Ok(Self {
            net: Mlp::new(vb, od + ad, hidden, ad)?,
            phi,
            max_action,
        })
    }
    fn forward(&self, s: &Tensor, a: &Tensor) -> Result<Tensor> {
        let xi =
            (self.net.forward(&Tensor::cat(&[s, a], 1)?)?.tanh()? * (self.phi * self.max_action))?;
        Ok((a + xi)?.clamp(-self.max_action, self.max_action)?)
    }
}

struct Continuous {
    act_dim: usize,
    actor: Perturbation,
    actor_store: ParamStore,
    actor_target: Perturbation,
    actor_target_store: ParamStore,
    actor_opt: Adam,
    vae: Vae,
    vae_store: ParamStore,
    vae_opt: Adam,
}

struct Discrete {
    imitation: CategoricalActor,
    imitation_store: ParamStore,
    imitation_opt: Adam,
}

/// BCQ.
pub struct Bcq {
    cfg: BcqConfig,
    core: Core,
    cont: Option<Continuous>,
    disc: Option<Discrete>,
    critic: QEnsemble,
    critic_store: ParamStore,
    critic_target: QEnsemble,
    critic_target_store: ParamStore,
    critic_opt: Adam,
}

impl Bcq {
    /// Builds the networks for `spec`, initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: BcqConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let od = spec.obs_dim;
        let h = cfg.hidden.clone();
        let mut critic_store = ParamStore::new(device.clone());
        let (critic, critic_target, critic_target_store, cont, disc) = match spec.action {
            ActionSpec::Continuous { dim, max_action } => {
                let mut actor_store = ParamStore::new(device.clone());
                let actor = Perturbation::new(
                    &mut actor_store.builder("", &mut rng),
                    od,
                    dim,
                    &h,
                    cfg.phi,
                    max_action,
                )?;
                let (actor_target, actor_target_store) = target_of(&actor_store, |vb| {
                    Perturbation::new(vb, od, dim, &h, cfg.phi, max_action)
                })?;
                let critic =
                    QEnsemble::continuous(&mut critic_store.builder("", &mut rng), 2, od, dim, &h)?;
                let (ct, cts) = target_of(&critic_store, |vb| {
                    QEnsemble::continuous(vb, 2, od, dim, &h)
                })?;
                let mut vae_store = ParamStore::new(device.clone());
                let vae = Vae::new(
                    &mut vae_store.builder("", &mut rng),
                    od,
                    dim,
                    2 * dim,
                    &cfg.vae_hidden,
                    max_action,
                )?;
                let c = Continuous {
                    act_dim: dim,
                    actor_opt: Adam::new(&actor_store, AdamConfig::with_lr(cfg.actor_lr))?,
                    actor,
                    actor_store,
                    actor_target,
                    actor_target_store,
                    vae_opt: Adam::new(&vae_store, AdamConfig::with_lr(cfg.vae_lr))?,
                    vae,
                    vae_store,
                };
                (critic, ct, cts, Some(c), None)
            }
            ActionSpec::Discrete { n } => {
                let critic =
                    QEnsemble::discrete(&mut critic_store.builder("", &mut rng), 1, od, n, &h)?;
                let (ct, cts) =
                    target_of(&critic_store, |vb| QEnsemble::discrete(vb, 1, od, n, &h))?;
                let mut imitation_store = ParamStore::new(device.clone());
                let imitation =
                    CategoricalActor::new(&mut imitation_store.builder("", &mut rng), od, n, &h)?;
                let d = Discrete {
                    imitation_opt: Adam::new(&imitation_store, AdamConfig::with_lr(cfg.critic_lr))?,
                    imitation,
                    imitation_store,
                };
                (critic, ct, cts, None, Some(d))
            }
        };
        let critic_opt = Adam::new(&critic_store, AdamConfig::with_lr(cfg.critic_lr))?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            cont,
            disc,
            critic,
            critic_store,
            critic_target,
            critic_target_store,
            critic_opt,
        })
    }
}

// ---- continuous losses ----

/// Twin-critic loss with the soft clipped double-Q target over `n` VAE samples per `s'`:
/// `(loss, mean Q, mean |TD|)`. `z_next: [B*n, latent]` are the decoder's latents.
fn critic_loss(
    t: &Bcq,
    c: &Continuous,
    b: &BatchTensors,
    z_next: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n = t.cfg.n_samples;
    let bsz = b.s.dim(0)?;
    let y = {
        let s2 = repeat_rows(&b.s2, n)?;
        let a2 = c.actor_target.forward(&s2, &c.vae.decode_z(&s2, z_next)?)?;
        let q2 = t.critic_target.q(&s2, &a2)?; // [2, B*n]
        let soft = soft_clipped_double_q(&q2, t.cfg.lambda)?;
        let v2 = soft.reshape((bsz, n))?.max(1)?;
        b.td_target(&v2)?.detach()
    };
    let q = t.critic.q(&b.s, &b.a)?;
    let diff = q.broadcast_sub(&y.unsqueeze(0)?)?;
    Ok((
        diff.sqr()?.mean(1)?.sum_all()?,
        q.mean_all()?,
        diff.get(0)?.abs()?.mean_all()?,
    ))
}

/// `-E Q_1(s, xi(s, a~G(s)))` with `z: [B, latent]` the decoder's latents.
fn actor_loss(t: &Bcq, c: &Continuous, b: &BatchTensors, z: &Tensor) -> Result<Tensor> {
    let sampled = c.vae.decode_z(&b.s, z)?.detach();
    let a = c.actor.forward(&b.s, &sampled)?;
    Ok(t.critic.q(&b.s, &a)?.get(0)?.mean_all()?.neg()?)
}

// ---- discrete loss ----

/// `(loss, mean Q, mean |TD|, imitation NLL)` of discrete BCQ.
fn discrete_loss(
    t: &Bcq,
    d: &Discrete,
    b: &BatchTensors,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let y = {
        let q2 = t.critic.q_all(&b.s2)?.get(0)?; // [B, n]
        let a2 = masked_argmax(&q2, &d.imitation.log_probs(&b.s2)?, t.cfg.threshold)?;
        let q2t = gather_actions(&t.critic_target.q_all(&b.s2)?.get(0)?, &a2)?;
        b.td_target(&q2t)?.detach()
    };
    let q = gather_actions(&t.critic.q_all(&b.s)?.get(0)?, &b.a)?;
    let logits = d.imitation.logits(&b.s)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let nll = gather_actions(&log_probs, &b.a)?.neg()?.mean_all()?;
    let loss = ((huber_loss(&q, &y)? + &nll)? + (logits.sqr()?.mean_all()? * 1e-2)?)?;
    Ok((loss, q.mean_all()?, (&q - &y)?.abs()?.mean_all()?, nll))
}

/// `argmax_a Q(s, a)` over actions with `G(a|s) / max G(.|s) > tau`: `u32 [B]`.
fn masked_argmax(q: &Tensor, log_probs: &Tensor, tau: f64) -> Result<Tensor> {
    let ratio = log_probs
        .broadcast_sub(&log_probs.max_keepdim(D::Minus1)?)?
        .exp()?;
    let allowed = ratio.gt(tau)?;
    let very_low = (q.ones_like()? * -1e8)?;
    Ok(allowed.where_cond(q, &very_low)?.argmax(D::Minus1)?)
}

impl Bcq {
    /// Continuous BCQ's action (eq. 12) with given latents `z: [B*n, latent]` (row `b*n + i`
    /// is state `b`'s `i`-th candidate): `argmax_i Q_1(s, xi(s, D(s, z_i)))`. `[B, act]`.
    pub fn act_with_latents(&self, s: &Tensor, z: &Tensor) -> Result<Tensor> {
        let c = self
            .cont
            .as_ref()
            .ok_or_else(|| crate::AlgoError::Config("discrete BCQ has no latents".into()))?;
        let bsz = s.dim(0)?;
        let n = z.dim(0)? / bsz.max(1);
        let sr = repeat_rows(s, n)?;
        let a = c.actor.forward(&sr, &c.vae.decode_z(&sr, z)?)?; // [B*n, act]
        let q1 = self.critic.q(&sr, &a)?.get(0)?.reshape((bsz, n))?;
        let best = q1.argmax(1)?; // [B]
        let offsets = Tensor::arange(0u32, bsz as u32, s.device())?.affine(n as f64, 0.0)?;
        let rows = (best.to_dtype(DType::U32)? + offsets)?;
        Ok(a.index_select(&rows, 0)?.reshape((bsz, c.act_dim))?)
    }

    fn update_continuous(&mut self, b: &BatchTensors, m: &mut Metrics) -> Result<()> {
        let Some(c) = self.cont.as_ref() else {
            return Ok(());
        };
        let (bsz, lat) = (b.s.dim(0)?, c.vae.latent());
        // VAE step.
        let out = c.vae.forward(&b.s, &b.a, &mut self.core.noise)?;
        let vae_loss = Vae::loss(&out, &b.a)?;
        record(m, self.core.steps, "vae_loss", &vae_loss)?;
        // Critic step.
        let z_next = self
            .core
            .noise
            .normal(&[bsz * self.cfg.n_samples, lat])?
            .clamp(-0.5f32, 0.5f32)?;
        let (closs, q, td) = critic_loss(self, c, b, &z_next)?;
        record(m, self.core.steps, "critic_loss", &closs)?;
        record(m, self.core.steps, "q_mean", &q)?;
        record(m, self.core.steps, "td_error", &td)?;
        let z = self
            .core
            .noise
            .normal(&[bsz, lat])?
            .clamp(-0.5f32, 0.5f32)?;
        let c = self
            .cont
            .as_mut()
            .ok_or_else(|| crate::AlgoError::Config("no VAE".into()))?;
        c.vae_opt.backward_step(&vae_loss)?;
        self.critic_opt.backward_step(&closs)?;
        // Actor step (after the critic, as in algorithm 1).
        let c = self
            .cont
            .as_ref()
            .ok_or_else(|| crate::AlgoError::Config("no actor".into()))?;
        let aloss = actor_loss(self, c, b, &z)?;
        record(m, self.core.steps, "actor_loss", &aloss)?;
        let c = self
            .cont
            .as_mut()
            .ok_or_else(|| crate::AlgoError::Config("no actor".into()))?;
        c.actor_opt.backward_step(&aloss)?;
        c.actor_target_store
            .soft_update_from(&c.actor_store, self.cfg.tau)?;
        self.critic_target_store
            .soft_update_from(&self.critic_store, self.cfg.tau)?;
        Ok(())
    }
    fn update_discrete(&mut self, b: &BatchTensors, m: &mut Metrics) -> Result<()> {
        let Some(d) = self.disc.as_ref() else {
            return Ok(());
        };
        let (loss, q, td, nll) = discrete_loss(self, d, b)?;
        record(m, self.core.steps, "critic_loss", &loss)?;
        record(m, self.core.steps, "q_mean", &q)?;
        record(m, self.core.steps, "td_error", &td)?;
        record(m, self.core.steps, "imitation_nll", &nll)?;
        let grads = loss.backward()?;
        self.critic_opt.step(&grads)?;
        if let Some(d) = self.disc.as_mut() {
            d.imitation_opt.step(&grads)?;
        }
        self.critic_target_store
            .soft_update_from(&self.critic_store, self.cfg.tau)?;
        Ok(())
    }
}

impl Algorithm for Bcq {
    fn name(&self) -> &'static str {
        "bcq"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let mut m = Metrics::new();
        if self.cont.is_some() {
            self.update_continuous(&b, &mut m)?;
        } else {
            self.update_discrete(&b, &mut m)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        if let Some(d) = &self.disc {
            let q = self.critic.q_all(s)?.get(0)?;
            return masked_argmax(&q, &d.imitation.log_probs(s)?, self.cfg.threshold);
        }
        let c = self
            .cont
            .as_ref()
            .ok_or_else(|| crate::AlgoError::Config("no actor".into()))?;
        let (bsz, n) = (s.dim(0)?, self.cfg.n_act_samples);
        let z = self
            .core
            .act_noise
            .normal(&[bsz * n, c.vae.latent()])?
            .clamp(-0.5f32, 0.5f32)?;
        self.act_with_latents(s, &z)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(match &self.cont {
            Some(_) => self.critic.q(s, a)?.min(0)?,
            None => gather_actions(&self.critic.q_all(s)?.get(0)?, a)?,
        }))
    }
    /// BCQ's policy is an argmax over generated actions: no density (discrete BCQ's imitation
    /// network models the behaviour policy, not BCQ's own).
    fn log_prob(&mut self, _s: &Tensor, _a: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// The export stores one draw of `n_act_samples` latents (from a copy of the acting noise
    /// stream), so the exported policy is deterministic; `Agent::act` draws fresh ones per call.
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let h = self.cfg.hidden.len();
        let critic_t = self.critic_store.named_tensors("");
        let critic = orl_nets::ReluNet::from_named(&critic_t, "", &mlp_layer_names("", h + 1))?;
        Ok(Some(match (&self.cont, &self.disc) {
            (Some(c), _) => {
                let max_action = self.core.spec.continuous_parts("BCQ")?.1;
                let latents = self
                    .core
                    .act_noise
                    .clone()
                    .normal(&[self.cfg.n_act_samples, c.vae.latent()])?
                    .clamp(-0.5f32, 0.5f32)?;
                orl_nets::PolicyModel::Bcq {
                    decoder: orl_nets::ReluNet::from_named(
                        &c.vae_store.named_tensors(""),
                        "",
                        &mlp_layer_names("decoder.", self.cfg.vae_hidden.len() + 1),
                    )?,
                    perturbation: orl_nets::ReluNet::from_named(
                        &c.actor_store.named_tensors(""),
                        "",
                        &mlp_layer_names("", h + 1),
                    )?,
                    critic,
                    latents,
                    phi: self.cfg.phi,
                    max_action,
                }
            }
            (None, Some(d)) => orl_nets::PolicyModel::BcqDiscrete {
                critic,
                imitation: orl_nets::ReluNet::from_named(
                    &d.imitation_store.named_tensors(""),
                    "",
                    &mlp_layer_names("net.", h + 1),
                )?,
                threshold: self.cfg.threshold,
            },
            (None, None) => return Ok(None),
        }))
    }
    fn nets(&self) -> Vec<(&'static str, &dyn NetState)> {
        let mut v: Vec<(&'static str, &dyn NetState)> = vec![
            ("critic", &self.critic_store),
            ("critic_target", &self.critic_target_store),
        ];
        if let Some(c) = &self.cont {
            v.push(("actor", &c.actor_store));
            v.push(("actor_target", &c.actor_target_store));
            v.push(("vae", &c.vae_store));
        }
        if let Some(d) = &self.disc {
            v.push(("imitation", &d.imitation_store));
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
            v.push(("actor_target", &mut c.actor_target_store));
            v.push(("vae", &mut c.vae_store));
        }
        if let Some(d) = &mut self.disc {
            v.push(("imitation", &mut d.imitation_store));
        }
        v
    }
    fn optims(&self) -> Vec<(&'static str, &dyn OptimState)> {
        let mut v: Vec<(&'static str, &dyn OptimState)> = vec![("critic", &self.critic_opt)];
        if let Some(c) = &self.cont {
            v.push(("actor", &c.actor_opt));
            v.push(("vae", &c.vae_opt));
        }
        if let Some(d) = &self.disc {
            v.push(("imitation", &d.imitation_opt));
        }
        v
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn OptimState)> {
        let mut v: Vec<(&'static str, &mut dyn OptimState)> = vec![("critic", &mut self.critic_opt)];
        if let Some(c) = &mut self.cont {
            v.push(("actor", &mut c.actor_opt));
            v.push(("vae", &mut c.vae_opt));
        }
        if let Some(d) = &mut self.disc {
            v.push(("imitation", &mut d.imitation_opt));
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
