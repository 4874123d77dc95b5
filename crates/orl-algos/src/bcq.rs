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
//!
//! Gradients with respect to the network outputs (`B` rows, perturbation output
//! `f = tanh(mlp(s, a))`, `xi = Phi m f`), which the engine carries back to the parameters:
//!
//! ```text
//! critics:  dL/dQ_ib = 2 (Q_ib - y_b) / B
//! actor:    dL/dQ_1b = -1 / B -> through Q_1 -> dL/d(a + xi) -> * 1(|a + xi| < m) -> dL/dxi
//! VAE:      see orl_nets::engine::VaeNet
//! discrete: dL/dQ(s_b, a_b) = huber'(Q_b - y_b) / B
//!           dL/dlogits_bk = (softmax_bk - 1(k = a_b)) / B + 0.02 logits_bk / (B n)
//! ```

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::{
    Activation, CategoricalHead, FlatAdam, Input, Mlp, MlpCache, Params, ParamsBuilder, QCache,
    QNet, VaeCache, VaeNet,
};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{state_lists, 
    ActionSpec, Algorithm, Core, Metrics, Probe, Spec, check_batch, discrete_indices, host_rows,
    mlp_layer_names, record_value, repeat_rows_into, td_mse_grad,
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
    build: |spec, cfg, seed, compute| {
        let device = compute.engine_device("bcq")?;
        Ok(Box::new(Bcq::new(
            spec,
            parse_config("bcq", cfg)?,
            seed,
            device,
        )?))
    },
};

/// BCQ's perturbation model `xi(s, a) = Phi max_action tanh(mlp(s, a))`: `clip(a + xi)`.
#[derive(Debug, Clone)]
struct Perturbation {
    net: Mlp,
    phi: f32,
    max_action: f32,
    obs_dim: usize,
    act_dim: usize,
}

/// Buffers of one [`Perturbation`] at one batch size.
#[derive(Debug, Clone, Default)]
struct PerturbCache {
    x: Vec<f32>,
    mlp: MlpCache,
    /// `clip(a + xi)` `[B, act]`.
    out: Vec<f32>,
}

impl Perturbation {
    fn new(
        pb: &mut ParamsBuilder<'_>,
        od: usize,
        ad: usize,
        hidden: &[usize],
        phi: f64,
        max_action: f64,
    ) -> orl_nets::Result<Self> {
        Ok(Self {
            net: Mlp::new(pb, od + ad, hidden, ad, Activation::Tanh)?,
            phi: phi as f32,
            max_action: max_action as f32,
            obs_dim: od,
            act_dim: ad,
        })
    }
    fn forward(&self, p: &Params, s: &[f32], a: &[f32], batch: usize, c: &mut PerturbCache) {
        let (o, d) = (self.obs_dim, self.act_dim);
        c.x.clear();
        for (s, a) in s.chunks_exact(o).zip(a.chunks_exact(d)).take(batch) {
            c.x.extend_from_slice(s);
            c.x.extend_from_slice(a);
        }
        self.net.forward(p, &c.x, Input::Shared, batch, &mut c.mlp);
        c.out.resize(batch * d, 0.0);
        let (scale, m) = (self.phi * self.max_action, self.max_action);
        for ((o, &f), &a) in c.out.iter_mut().zip(c.mlp.output()).zip(a) {
            *o = (a + scale * f).clamp(-m, m);
        }
    }
    /// Backward from `dout = dL/d clip(a + xi)`; the gradient does not pass the clip.
    fn backward(&self, p: &Params, dout: &[f32], c: &mut PerturbCache, grads: &mut [f32]) {
        let (scale, m) = (self.phi * self.max_action, self.max_action);
        let (out, d) = (&c.out, c.mlp.dout_mut());
        for ((d, &g), &o) in d.iter_mut().zip(dout).zip(out) {
            *d = if o > -m && o < m { g * scale } else { 0.0 };
        }
        self.net.backward(p, &c.x, Input::Shared, &mut c.mlp, Some(grads), None);
    }
}

struct Continuous {
    act_dim: usize,
    actor: Perturbation,
    actor_params: Params,
    actor_target: Params,
    actor_opt: FlatAdam,
    vae: VaeNet,
    vae_params: Params,
    vae_opt: FlatAdam,
}

struct Discrete {
    imitation: CategoricalHead,
    imitation_params: Params,
    imitation_opt: FlatAdam,
}

/// BCQ.
pub struct Bcq {
    cfg: BcqConfig,
    core: Core,
    cont: Option<Continuous>,
    disc: Option<Discrete>,
    critic: QNet,
    critic_params: Params,
    critic_target: Params,
    critic_opt: FlatAdam,
    scratch: Scratch,
}

/// Buffers reused by every update (sized by the first one).
#[derive(Default)]
struct Scratch {
    vae: VaeCache,
    pert: PerturbCache,
    q: QCache,
    q_next: QCache,
    q_pi: QCache,
    imitation: MlpCache,
    eps: Vec<f32>,
    z_next: Vec<f32>,
    z: Vec<f32>,
    s2_rep: Vec<f32>,
    decoded: Vec<f32>,
    y: Vec<f32>,
    da: Vec<f32>,
    lp: Vec<f32>,
    idx: Vec<u32>,
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
        let mut critic_params = Params::new();
        let (critic, cont, disc) = match spec.action {
            ActionSpec::Continuous { dim, max_action } => {
                let mut actor_params = Params::new();
                let actor = Perturbation::new(
                    &mut actor_params.builder("", &mut rng),
                    od,
                    dim,
                    &h,
                    cfg.phi,
                    max_action,
                )?;
                let critic =
                    QNet::continuous(&mut critic_params.builder("", &mut rng), 2, od, dim, &h)?;
                let mut vae_params = Params::new();
                let vae = VaeNet::new(
                    &mut vae_params.builder("", &mut rng),
                    od,
                    dim,
                    2 * dim,
                    &cfg.vae_hidden,
                    max_action,
                )?;
                let c = Continuous {
                    act_dim: dim,
                    actor_opt: FlatAdam::new(&actor_params, AdamConfig::with_lr(cfg.actor_lr)),
                    actor,
                    actor_target: actor_params.clone(),
                    actor_params,
                    vae_opt: FlatAdam::new(&vae_params, AdamConfig::with_lr(cfg.vae_lr)),
                    vae,
                    vae_params,
                };
                (critic, Some(c), None)
            }
            ActionSpec::Discrete { n } => {
                let critic =
                    QNet::discrete(&mut critic_params.builder("", &mut rng), 1, od, n, &h)?;
                let mut imitation_params = Params::new();
                let imitation =
                    CategoricalHead::new(&mut imitation_params.builder("", &mut rng), od, n, &h)?;
                let d = Discrete {
                    imitation_opt: FlatAdam::new(
                        &imitation_params,
                        AdamConfig::with_lr(cfg.critic_lr),
                    ),
                    imitation,
                    imitation_params,
                };
                (critic, None, Some(d))
            }
        };
        let critic_opt = FlatAdam::new(&critic_params, AdamConfig::with_lr(cfg.critic_lr));
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            cont,
            disc,
            critic,
            critic_target: critic_params.clone(),
            critic_params,
            critic_opt,
            scratch: Scratch::default(),
        })
    }
}

/// `clip(N(0, 1), -0.5, 0.5)` latents into `out` (resized to `len`).
fn clipped_latents(noise: &mut orl_nets::Noise, out: &mut Vec<f32>, len: usize) {
    out.resize(len, 0.0);
    noise.normal_into(out);
    out.iter_mut().for_each(|z| *z = z.clamp(-0.5, 0.5));
}

// ---- continuous losses and their gradients ----

/// The VAE loss and its gradient (`vae_opt`'s buffer), the posterior noise drawn from the
/// training stream.
fn vae_grad(t: &mut Bcq, batch: &Batch) -> f64 {
    let Some(c) = &mut t.cont else { return 0.0 };
    let bsz = batch.batch_size;
    let sc = &mut t.scratch;
    sc.eps.resize(bsz * c.vae.latent(), 0.0);
    t.core.noise.normal_into(&mut sc.eps);
    let g = c.vae_opt.zero_grad();
    c.vae.loss_backward(&c.vae_params, &batch.observations, &batch.actions, &sc.eps, bsz, &mut sc.vae, g)
}

/// Twin-critic loss with the soft clipped double-Q target over `n` VAE samples per `s'` and
/// its gradient (`critic_opt`'s buffer): `(loss, mean Q, mean |TD|)`.
fn critic_grad(t: &mut Bcq, batch: &Batch) -> (f64, f64, f64) {
    let Some(c) = &t.cont else { return (0.0, 0.0, 0.0) };
    let bsz = batch.batch_size;
    let (n, od, ad, lat) = (t.cfg.n_samples, t.core.spec.obs_dim, c.act_dim, c.vae.latent());
    let sc = &mut t.scratch;
    clipped_latents(&mut t.core.noise, &mut sc.z_next, bsz * n * lat);
    repeat_rows_into(&batch.next_observations, od, n, &mut sc.s2_rep);
    sc.decoded.resize(bsz * n * ad, 0.0);
    c.vae.decode_z(&c.vae_params, &sc.s2_rep, &sc.z_next, bsz * n, &mut sc.vae, &mut sc.decoded);
    c.actor.forward(&c.actor_target, &sc.s2_rep, &sc.decoded, bsz * n, &mut sc.pert);
    let q2 = t.critic.q(&t.critic_target, &sc.s2_rep, &sc.pert.out, bsz * n, &mut sc.q_next);
    let lambda = t.cfg.lambda as f32;
    sc.y.resize(bsz, 0.0);
    let bn = bsz * n;
    for b in 0..bsz {
        let mut best = f32::NEG_INFINITY;
        for j in 0..n {
            let (q1, q2v) = (q2[b * n + j], q2[bn + b * n + j]);
            let soft = lambda * q1.min(q2v) + (1.0 - lambda) * q1.max(q2v);
            best = best.max(soft);
        }
        sc.y[b] = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * best;
    }
    t.critic.q(&t.critic_params, &batch.observations, &batch.actions, bsz, &mut sc.q);
    let (q, dq) = sc.q.mlp.output_and_dout();
    let out = td_mse_grad(q, &sc.y, dq, 1.0);
    let g = t.critic_opt.zero_grad();
    t.critic.backward(&t.critic_params, &mut sc.q, Some(g), None);
    out
}

/// `-E Q_1(s, xi(s, a~G(s)))` and its gradient (`actor_opt`'s buffer), with latents `z` drawn
/// by [`Bcq::update_continuous`] before any step.
fn actor_grad(t: &mut Bcq, batch: &Batch) -> f64 {
    let Some(c) = &mut t.cont else { return 0.0 };
    let bsz = batch.batch_size;
    let ad = c.act_dim;
    let sc = &mut t.scratch;
    let s = &batch.observations;
    sc.decoded.resize(bsz * ad, 0.0);
    c.vae.decode_z(&c.vae_params, s, &sc.z, bsz, &mut sc.vae, &mut sc.decoded);
    c.actor.forward(&c.actor_params, s, &sc.decoded, bsz, &mut sc.pert);
    t.critic.q_first(&t.critic_params, s, &sc.pert.out, bsz, 1, &mut sc.q_pi);
    let (q1, dq) = sc.q_pi.mlp.output_and_dout();
    let loss = -q1.iter().map(|&v| f64::from(v)).sum::<f64>() / bsz as f64;
    dq.iter_mut().for_each(|v| *v = -1.0 / bsz as f32);
    sc.da.resize(bsz * ad, 0.0);
    t.critic.backward(&t.critic_params, &mut sc.q_pi, None, Some(&mut sc.da));
    let g = c.actor_opt.zero_grad();
    c.actor.backward(&c.actor_params, &sc.da, &mut sc.pert, g);
    loss
}

// ---- discrete loss and its gradient ----

/// `argmax_a Q(s, a)` over actions with `G(a|s) / max G(.|s) > tau` (first of ties).
fn masked_argmax(q: &[f32], lp: &[f32], tau: f32) -> u32 {
    let max_lp = lp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut best = 0;
    let mut best_q = f32::NEG_INFINITY;
    for (k, (&qk, &l)) in q.iter().zip(lp).enumerate() {
        let v = if (l - max_lp).exp() > tau { qk } else { -1e8 };
        if v > best_q {
            best_q = v;
            best = k;
        }
    }
    best as u32
}

/// `(loss, mean Q, mean |TD|, imitation NLL)` of discrete BCQ and the gradients of the one
/// loss for the Q-network (`critic_opt`) and the imitation network (`imitation_opt`).
fn discrete_grad(t: &mut Bcq, batch: &Batch) -> (f64, f64, f64, f64) {
    let Some(d) = &mut t.disc else { return (0.0, 0.0, 0.0, 0.0) };
    let bsz = batch.batch_size;
    let n = d.imitation.n();
    let sc = &mut t.scratch;
    let tau = t.cfg.threshold as f32;
    // y = r + gamma^k (1 - d) Q'(s', argmax over allowed actions of Q(s', .)).
    sc.lp.resize(bsz * n, 0.0);
    d.imitation.log_probs(&d.imitation_params, &batch.next_observations, bsz, &mut sc.imitation, &mut sc.lp);
    let q_online = t.critic.q_all(&t.critic_params, &batch.next_observations, bsz, &mut sc.q_pi);
    sc.da.resize(bsz, 0.0);
    for b in 0..bsz {
        sc.da[b] = masked_argmax(&q_online[b * n..(b + 1) * n], &sc.lp[b * n..(b + 1) * n], tau) as f32;
    }
    let q_t = t.critic.q_all(&t.critic_target, &batch.next_observations, bsz, &mut sc.q_next);
    sc.y.resize(bsz, 0.0);
    for b in 0..bsz {
        let q2 = q_t[b * n + sc.da[b] as usize];
        sc.y[b] = batch.rewards[b] + batch.discounts[b] * (1.0 - batch.terminals[b]) * q2;
    }
    // Q part: Huber at the data action.
    t.critic.q_all(&t.critic_params, &batch.observations, bsz, &mut sc.q);
    let (q, dq) = sc.q.mlp.output_and_dout();
    dq.iter_mut().for_each(|v| *v = 0.0);
    let (mut huber, mut q_sum, mut td) = (0.0f64, 0.0f64, 0.0f64);
    for b in 0..bsz {
        let k = sc.idx[b] as usize;
        let diff = q[b * n + k] - sc.y[b];
        let ad = diff.abs();
        huber += f64::from(if ad < 1.0 { 0.5 * diff * diff } else { ad - 0.5 });
        q_sum += f64::from(q[b * n + k]);
        td += f64::from(ad);
        dq[b * n + k] = (if ad < 1.0 { diff } else { diff.signum() }) / bsz as f32;
    }
    let g = t.critic_opt.zero_grad();
    t.critic.backward_all(&t.critic_params, &batch.observations, &mut sc.q, g);
    // Imitation part: NLL of the data action plus 0.01 mean(logits^2).
    let s = &batch.observations;
    d.imitation.net.forward(&d.imitation_params, s, Input::Shared, bsz, &mut sc.imitation);
    let (logits, dl) = sc.imitation.output_and_dout();
    let (mut nll, mut sq) = (0.0f64, 0.0f64);
    for b in 0..bsz {
        let row = &logits[b * n..(b + 1) * n];
        let k = sc.idx[b] as usize;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        let lse = max + sum.ln();
        nll -= f64::from(row[k] - lse);
        for (j, g) in dl[b * n..(b + 1) * n].iter_mut().enumerate() {
            let hit = if j == k { 1.0 } else { 0.0 };
            sq += f64::from(row[j] * row[j]);
            *g = (((row[j] - max).exp() / sum) - hit) / bsz as f32
                + 0.02 * row[j] / (bsz * n) as f32;
        }
    }
    let g = d.imitation_opt.zero_grad();
    d.imitation.net.backward(&d.imitation_params, s, Input::Shared, &mut sc.imitation, Some(g), None);
    let bs = bsz as f64;
    let nll = nll / bs;
    (huber / bs + nll + 0.01 * sq / (bs * n as f64), q_sum / bs, td / bs, nll)
}

impl Bcq {
    fn prepare(&mut self, batch: &Batch) -> Result<()> {
        check_batch(batch, &self.core.spec)?;
        match self.core.spec.action {
            ActionSpec::Discrete { n } => discrete_indices(batch, n, &mut self.scratch.idx),
            ActionSpec::Continuous { .. } => Ok(()),
        }
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state (noise from a copy of the training stream; the actor's at the current VAE
    /// and critic, where the update takes it after their steps). For the parity tests.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        if self.cont.is_none() {
            let (loss, ..) = discrete_grad(self, batch);
            let mut out = vec![Probe::new("critic_loss", loss, "critic", &self.critic_params, self.critic_opt.grad())];
            if let Some(d) = &self.disc {
                out.push(Probe::new("critic_loss", loss, "imitation", &d.imitation_params, d.imitation_opt.grad()));
            }
            return Ok(out);
        }
        let saved = self.core.noise.clone();
        let vae = vae_grad(self, batch);
        let (critic, ..) = critic_grad(self, batch);
        let lat = self.cont.as_ref().map_or(0, |c| c.vae.latent());
        clipped_latents(&mut self.core.noise, &mut self.scratch.z, batch.batch_size * lat);
        self.core.noise = saved;
        let actor = actor_grad(self, batch);
        let mut out = vec![Probe::new("critic_loss", critic, "critic", &self.critic_params, self.critic_opt.grad())];
        if let Some(c) = &self.cont {
            out.push(Probe::new("vae_loss", vae, "vae", &c.vae_params, c.vae_opt.grad()));
            out.push(Probe::new("actor_loss", actor, "actor", &c.actor_params, c.actor_opt.grad()));
        }
        Ok(out)
    }

    /// Continuous BCQ's action (eq. 12) with given latents `z: [B n, latent]` (row `b n + i`
    /// is state `b`'s `i`-th candidate): `argmax_i Q_1(s, xi(s, D(s, z_i)))`. `[B, act]`.
    pub fn act_with_latents(&mut self, s: &Tensor, z: &Tensor) -> Result<Tensor> {
        let Some(c) = &self.cont else {
            return Err(crate::AlgoError::Config("discrete BCQ has no latents".into()));
        };
        let (x, bsz) = host_rows(s)?;
        let (z, rows) = host_rows(z)?;
        let n = rows / bsz.max(1);
        let (od, ad) = (self.core.spec.obs_dim, c.act_dim);
        let mut sr = Vec::new();
        repeat_rows_into(&x, od, n, &mut sr);
        let mut vc = VaeCache::default();
        let mut pc = PerturbCache::default();
        let mut qc = QCache::default();
        let mut decoded = vec![0.0; bsz * n * ad];
        c.vae.decode_z(&c.vae_params, &sr, &z, bsz * n, &mut vc, &mut decoded);
        c.actor.forward(&c.actor_params, &sr, &decoded, bsz * n, &mut pc);
        let q1 = self.critic.q_first(&self.critic_params, &sr, &pc.out, bsz * n, 1, &mut qc);
        let mut out = Vec::with_capacity(bsz * ad);
        for b in 0..bsz {
            let row = &q1[b * n..(b + 1) * n];
            let best = orl_nets::engine::argmax(row) as usize;
            out.extend_from_slice(&pc.out[(b * n + best) * ad..(b * n + best + 1) * ad]);
        }
        Ok(Tensor::from_vec(out, (bsz, ad), s.device())?)
    }

    fn update_continuous(&mut self, batch: &Batch, m: &mut Metrics) -> Result<()> {
        let step = self.core.steps;
        let lat = self.cont.as_ref().map_or(0, |c| c.vae.latent());
        let vae = vae_grad(self, batch);
        record_value(m, step, "vae_loss", vae)?;
        let (critic, q, td) = critic_grad(self, batch);
        record_value(m, step, "critic_loss", critic)?;
        record_value(m, step, "q_mean", q)?;
        record_value(m, step, "td_error", td)?;
        clipped_latents(&mut self.core.noise, &mut self.scratch.z, batch.batch_size * lat);
        if let Some(c) = &mut self.cont {
            c.vae_opt.step(&mut c.vae_params)?;
        }
        self.critic_opt.step(&mut self.critic_params)?;
        // Actor step (after the critic, as in algorithm 1).
        let actor = actor_grad(self, batch);
        record_value(m, step, "actor_loss", actor)?;
        let Some(c) = &mut self.cont else { return Ok(()) };
        c.actor_opt.step(&mut c.actor_params)?;
        c.actor_target.soft_update_from(&c.actor_params, self.cfg.tau)?;
        self.critic_target
            .soft_update_from(&self.critic_params, self.cfg.tau)?;
        Ok(())
    }
    fn update_discrete(&mut self, batch: &Batch, m: &mut Metrics) -> Result<()> {
        let step = self.core.steps;
        let (loss, q, td, nll) = discrete_grad(self, batch);
        record_value(m, step, "critic_loss", loss)?;
        record_value(m, step, "q_mean", q)?;
        record_value(m, step, "td_error", td)?;
        record_value(m, step, "imitation_nll", nll)?;
        self.critic_opt.step(&mut self.critic_params)?;
        if let Some(d) = &mut self.disc {
            d.imitation_opt.step(&mut d.imitation_params)?;
        }
        self.critic_target
            .soft_update_from(&self.critic_params, self.cfg.tau)?;
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
        self.prepare(batch)?;
        let mut m = Metrics::new();
        if self.cont.is_some() {
            self.update_continuous(batch, &mut m)?;
        } else {
            self.update_discrete(batch, &mut m)?;
        }
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        if let Some(d) = &self.disc {
            let (x, b) = host_rows(s)?;
            let n = d.imitation.n();
            let mut lp = vec![0.0; b * n];
            let mut mc = MlpCache::new();
            d.imitation.log_probs(&d.imitation_params, &x, b, &mut mc, &mut lp);
            let mut qc = QCache::default();
            let q = self.critic.q_all(&self.critic_params, &x, b, &mut qc);
            let tau = self.cfg.threshold as f32;
            let idx: Vec<u32> = (0..b)
                .map(|r| masked_argmax(&q[r * n..(r + 1) * n], &lp[r * n..(r + 1) * n], tau))
                .collect();
            return Ok(Tensor::from_vec(idx, b, s.device())?);
        }
        let lat = self.cont.as_ref().map_or(0, |c| c.vae.latent());
        let (bsz, n) = (s.dim(0)?, self.cfg.n_act_samples);
        let z = self
            .core
            .act_noise
            .normal(&[bsz * n, lat])?
            .clamp(-0.5f32, 0.5f32)?;
        self.act_with_latents(s, &z)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        let (x, b) = host_rows(s)?;
        let (a, _) = host_rows(a)?;
        let mut cache = QCache::default();
        let v: Vec<f32> = match &self.cont {
            Some(_) => {
                let q = self.critic.q(&self.critic_params, &x, &a, b, &mut cache);
                (0..b).map(|i| q[i].min(q[b + i])).collect()
            }
            None => {
                let q = self.critic.q_all(&self.critic_params, &x, b, &mut cache);
                let n = q.len() / b.max(1);
                (0..b)
                    .map(|i| q[i * n + (a[i].max(0.0) as usize).min(n - 1)])
                    .collect()
            }
        };
        Ok(Some(Tensor::from_vec(v, b, s.device())?))
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
        let critic_t = self.critic_params.named_tensors("");
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
                        &c.vae_params.named_tensors(""),
                        "",
                        &mlp_layer_names("decoder.", self.cfg.vae_hidden.len() + 1),
                    )?,
                    perturbation: orl_nets::ReluNet::from_named(
                        &c.actor_params.named_tensors(""),
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
                    &d.imitation_params.named_tensors(""),
                    "",
                    &mlp_layer_names("net.", h + 1),
                )?,
                threshold: self.cfg.threshold,
            },
            (None, None) => return Ok(None),
        }))
    }
    state_lists! {
        nets ["critic" => critic_params, "critic_target" => critic_target]
        if let Some(c) = cont {
            "actor" => c.actor_params,
            "actor_target" => c.actor_target,
            "vae" => c.vae_params,
        }
        if let Some(d) = disc { "imitation" => d.imitation_params }
        optims ["critic" => critic_opt]
        if let Some(c) = cont { "actor" => c.actor_opt, "vae" => c.vae_opt }
        if let Some(d) = disc { "imitation" => d.imitation_opt }
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
