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
use orl_nets::engine::backend::{Bellman, 
    Abs, Backend, Candle, Cpu, Difference, ExpShift, Identity, LogSumExp, Map1, Map2, Map3, Product, Scalar,
};
use orl_nets::engine::{
    Activation, CategoricalHead, DensityBufs, Input, Mlp, MlpCache, Params, ParamsBuilder, QBufs,
    QCache, QNet, VaeBufs, VaeNet,
};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchBufs, Core, Metrics, Probe, Spec, TdBufs, check_batch, host_rows,
    mlp_layer_names, record_value, repeat_rows_into, state_lists, td_mse_grad_on,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, Compute, RewardRecipe, defaults_of, fixed_length, parse_config, resolve,
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
        let cfg = parse_config("bcq", cfg)?;
        Ok(match compute {
            Compute::Engine(device) => Box::new(Bcq::new(spec, cfg, seed, device)?),
            Compute::Candle(device) => Box::new(Bcq::new_on(
                Candle::new(device.clone()),
                spec,
                cfg,
                seed,
                device,
            )?),
        })
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

/// The host buffers of the perturbation network (acting).
#[derive(Debug, Clone, Default)]
struct PerturbCache {
    x: Vec<f32>,
    mlp: MlpCache,
    out: Vec<f32>,
}

/// The perturbation network's buffers on backend `B`.
struct PerturbBufs<B: Backend> {
    x: B::Buf,
    mlp: B::Cache,
    out: B::Buf,
    d: B::Buf,
}

impl<B: Backend> Default for PerturbBufs<B> {
    fn default() -> Self {
        Self {
            x: B::Buf::default(),
            mlp: B::Cache::default(),
            out: B::Buf::default(),
            d: B::Buf::default(),
        }
    }
}

/// `clip(a + Phi m f, -m, m)`.
struct Perturb {
    scale: f32,
    m: f32,
}

impl Map2 for Perturb {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, f: S) -> S {
        (a + f.scale(self.scale)).clamp(-self.m, self.m)
    }
}

/// `dL/df = g Phi m` where the clip passes (`-m < out < m`), else 0.
struct PerturbGrad {
    scale: f32,
    m: f32,
}

impl Map2 for PerturbGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, g: S, out: S) -> S {
        (g.scale(self.scale) * out.within(-self.m, self.m)).shift(0.0)
    }
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
        let k = Perturb {
            scale: self.phi * self.max_action,
            m: self.max_action,
        };
        for ((o, &f), &a) in c.out.iter_mut().zip(c.mlp.output()).zip(a) {
            *o = k.apply(a, f);
        }
    }
    /// [`Perturbation::forward`] on backend `be`: `clip(a + xi(s, a))` into `c.out`.
    #[allow(clippy::too_many_arguments)]
    fn forward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        a: &B::Buf,
        batch: usize,
        c: &mut PerturbBufs<B>,
    ) -> Result<()> {
        be.concat_cols(s, self.obs_dim, a, self.act_dim, &mut c.x)?;
        be.mlp_forward(&self.net, p, &c.x, Input::Shared, batch, &mut c.mlp)?;
        let k = Perturb {
            scale: self.phi * self.max_action,
            m: self.max_action,
        };
        be.map2(&k, a, be.mlp_output(&c.mlp), &mut c.out)?;
        Ok(())
    }
    /// Backward from `dout = dL/d clip(a + xi)`; the gradient does not pass the clip.
    fn backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        dout: &B::Buf,
        c: &mut PerturbBufs<B>,
        grads: &mut B::Buf,
    ) -> Result<()> {
        let k = PerturbGrad {
            scale: self.phi * self.max_action,
            m: self.max_action,
        };
        be.map2(&k, dout, &c.out, &mut c.d)?;
        be.mlp_backward(&self.net, p, &c.x, Input::Shared, &mut c.mlp, &c.d, Some(grads), None)?;
        Ok(())
    }
}

struct Continuous<B: Backend> {
    act_dim: usize,
    actor: Perturbation,
    actor_params: B::Params,
    actor_target: B::Params,
    actor_opt: B::Adam,
    vae: VaeNet,
    vae_params: B::Params,
    vae_opt: B::Adam,
}

struct Discrete<B: Backend> {
    imitation: CategoricalHead,
    imitation_params: B::Params,
    imitation_opt: B::Adam,
}

/// BCQ on backend `B`: the CPU engine by default, candle tensors with
/// [`Bcq::new_on`]`(Candle, ..)`.
pub struct Bcq<B: Backend = Cpu> {
    be: B,
    cfg: BcqConfig,
    core: Core,
    cont: Option<Continuous<B>>,
    disc: Option<Discrete<B>>,
    critic: QNet,
    critic_params: B::Params,
    critic_target: B::Params,
    critic_opt: B::Adam,
    scratch: Scratch<B>,
}

/// Buffers reused by every update (sized by the first one).
struct Scratch<B: Backend> {
    b: BatchBufs<B>,
    /// The VAE's and the perturbation's passes at batch size `B` (VAE step, actor step) and,
    /// apart, at `B n` (the target): one buffer set per size, so that neither is resized (and
    /// re-zeroed) twice an update.
    vae: VaeBufs<B>,
    vae_next: VaeBufs<B>,
    pert: PerturbBufs<B>,
    pert_next: PerturbBufs<B>,
    q: QBufs<B>,
    q_next: QBufs<B>,
    q_pi: QBufs<B>,
    imitation: B::Cache,
    host: Vec<f32>,
    eps: B::Buf,
    z_next: B::Buf,
    z: B::Buf,
    s2_rep: B::Buf,
    decoded: B::Buf,
    q2a: B::Buf,
    q2b: B::Buf,
    soft: B::Buf,
    soft_rows: B::Buf,
    best: B::Buf,
    y: B::Buf,
    td: TdBufs<B>,
    dq1: B::Buf,
    da: B::Buf,
    // Discrete BCQ.
    density: DensityBufs<B>,
    lp: B::Buf,
    lmax: B::Buf,
    lmax_t: B::Buf,
    allowed: B::Buf,
    pick: B::Buf,
    hit: B::Buf,
    v2: B::Buf,
    q_sa: B::Buf,
    d: B::Buf,
    dh_t: B::Buf,
    dq: B::Buf,
    mx: B::Buf,
    mx_t: B::Buf,
    e: B::Buf,
    sum: B::Buf,
    sum_t: B::Buf,
    lse: B::Buf,
    probs: B::Buf,
    dl: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            b: BatchBufs::default(),
            vae: VaeBufs::default(),
            vae_next: VaeBufs::default(),
            pert: PerturbBufs::default(),
            pert_next: PerturbBufs::default(),
            q: QBufs::default(),
            q_next: QBufs::default(),
            q_pi: QBufs::default(),
            imitation: B::Cache::default(),
            host: Vec::new(),
            eps: Default::default(),
            z_next: Default::default(),
            z: Default::default(),
            s2_rep: Default::default(),
            decoded: Default::default(),
            q2a: Default::default(),
            q2b: Default::default(),
            soft: Default::default(),
            soft_rows: Default::default(),
            best: Default::default(),
            y: Default::default(),
            td: TdBufs::default(),
            dq1: Default::default(),
            da: Default::default(),
            density: DensityBufs::default(),
            lp: Default::default(),
            lmax: Default::default(),
            lmax_t: Default::default(),
            allowed: Default::default(),
            pick: Default::default(),
            hit: Default::default(),
            v2: Default::default(),
            q_sa: Default::default(),
            d: Default::default(),
            dh_t: Default::default(),
            dq: Default::default(),
            mx: Default::default(),
            mx_t: Default::default(),
            e: Default::default(),
            sum: Default::default(),
            sum_t: Default::default(),
            lse: Default::default(),
            probs: Default::default(),
            dl: Default::default(),
        }
    }
}

impl Bcq<Cpu> {
    /// Builds the networks for `spec` on the CPU engine, initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: BcqConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Bcq<B> {
    /// [`Bcq::new`] on backend `be` (the same initial parameters on every backend).
    pub fn new_on(
        be: B,
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
                let actor_target = be.place(&actor_params)?;
                let actor_params = be.place(&actor_params)?;
                let vae_params = be.place(&vae_params)?;
                let c = Continuous {
                    act_dim: dim,
                    actor_opt: be.adam(&actor_params, AdamConfig::with_lr(cfg.actor_lr), None)?,
                    actor,
                    actor_target,
                    actor_params,
                    vae_opt: be.adam(&vae_params, AdamConfig::with_lr(cfg.vae_lr), None)?,
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
                let imitation_params = be.place(&imitation_params)?;
                let d = Discrete {
                    imitation_opt: be.adam(
                        &imitation_params,
                        AdamConfig::with_lr(cfg.critic_lr),
                        None,
                    )?,
                    imitation,
                    imitation_params,
                };
                (critic, None, Some(d))
            }
        };
        let critic_target = be.place(&critic_params)?;
        let critic_params = be.place(&critic_params)?;
        let critic_opt = be.adam(&critic_params, AdamConfig::with_lr(cfg.critic_lr), None)?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            cont,
            disc,
            critic,
            critic_target,
            critic_params,
            critic_opt,
            scratch: Scratch::default(),
            be,
        })
    }
}

/// `clip(N(0, 1), -0.5, 0.5)` latents into `host` (resized to `len`), uploaded to `out`.
fn clipped_latents<B: Backend>(
    be: &B,
    noise: &mut orl_nets::Noise,
    host: &mut Vec<f32>,
    cols: usize,
    len: usize,
    out: &mut B::Buf,
) -> Result<()> {
    host.resize(len, 0.0);
    noise.normal_into(host);
    host.iter_mut().for_each(|z| *z = z.clamp(-0.5, 0.5));
    be.upload(host, cols, out)?;
    Ok(())
}

// ---- continuous losses and their gradients ----

/// The VAE loss and its gradient (`vae_opt`'s buffer), the posterior noise drawn from the
/// training stream.
fn vae_grad<B: Backend>(t: &mut Bcq<B>, bsz: usize) -> Result<f64> {
    let Some(c) = &mut t.cont else { return Ok(0.0) };
    let (be, sc) = (&t.be, &mut t.scratch);
    let lat = c.vae.latent();
    sc.host.resize(bsz * lat, 0.0);
    t.core.noise.normal_into(&mut sc.host);
    be.upload(&sc.host, lat, &mut sc.eps)?;
    let g = be.zero_grad(&mut c.vae_opt)?;
    Ok(c.vae.loss_backward_on(be, &c.vae_params, &sc.b.s, &sc.b.a, &sc.eps, bsz, &mut sc.vae, g)?)
}

/// `lambda min(q1, q2) + (1 - lambda) max(q1, q2)`: the soft clipped double-Q value.
struct SoftClip(f32);

impl Map2 for SoftClip {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q1: S, q2: S) -> S {
        q1.clone().min(q2.clone()).scale(self.0) + q1.max(q2).scale(1.0 - self.0)
    }
}


/// Twin-critic loss with the soft clipped double-Q target over `n` VAE samples per `s'` and
/// its gradient (`critic_opt`'s buffer): `(loss, mean Q, mean |TD|)`.
fn critic_grad<B: Backend>(t: &mut Bcq<B>, bsz: usize) -> Result<(f64, f64, f64)> {
    let Some(c) = &t.cont else { return Ok((0.0, 0.0, 0.0)) };
    let (n, od, lat) = (t.cfg.n_samples, t.core.spec.obs_dim, c.vae.latent());
    let (be, sc) = (&t.be, &mut t.scratch);
    let bn = bsz * n;
    clipped_latents(be, &mut t.core.noise, &mut sc.host, lat, bn * lat, &mut sc.z_next)?;
    be.repeat_rows(&sc.b.s2, od, n, &mut sc.s2_rep)?;
    c.vae
        .decode_z_on(be, &c.vae_params, &sc.s2_rep, &sc.z_next, bn, &mut sc.vae_next, &mut sc.decoded)?;
    c.actor
        .forward_on(be, &c.actor_target, &sc.s2_rep, &sc.decoded, bn, &mut sc.pert_next)?;
    let q2 = t
        .critic
        .q_on(be, &t.critic_target, &sc.s2_rep, &sc.pert_next.out, bn, 2, &mut sc.q_next)?;
    be.rows(q2, 1, 0, bn, &mut sc.q2a)?;
    be.rows(q2, 1, bn, bn, &mut sc.q2b)?;
    be.map2(&SoftClip(t.cfg.lambda as f32), &sc.q2a, &sc.q2b, &mut sc.soft)?;
    // max_j over each state's n samples (rows b n .. b n + n).
    be.transpose_blocks(&sc.soft, 1, bsz, n, n, &mut sc.soft_rows)?;
    be.max_cols(&sc.soft_rows, n, &mut sc.best)?;
    be.map3(&Bellman, &sc.b.r, &sc.b.nd, &sc.best, &mut sc.y)?;
    let q = t
        .critic
        .q_on(be, &t.critic_params, &sc.b.s, &sc.b.a, bsz, 2, &mut sc.q)?;
    let out = td_mse_grad_on(be, q, &sc.y, 2, bsz, 1.0, &mut sc.td)?;
    let g = be.zero_grad(&mut t.critic_opt)?;
    t.critic
        .backward_on(be, &t.critic_params, &mut sc.q, &sc.td.dq, Some(g), None)?;
    Ok(out)
}

/// `-E Q_1(s, xi(s, a~G(s)))` and its gradient (`actor_opt`'s buffer), with latents `z` drawn
/// by [`Bcq::update_continuous`] before any step.
fn actor_grad<B: Backend>(t: &mut Bcq<B>, bsz: usize) -> Result<f64> {
    let Some(c) = &mut t.cont else { return Ok(0.0) };
    let (be, sc) = (&t.be, &mut t.scratch);
    let s = &sc.b.s;
    c.vae
        .decode_z_on(be, &c.vae_params, s, &sc.z, bsz, &mut sc.vae, &mut sc.decoded)?;
    c.actor
        .forward_on(be, &c.actor_params, s, &sc.decoded, bsz, &mut sc.pert)?;
    let q1 = t
        .critic
        .q_on(be, &t.critic_params, s, &sc.pert.out, bsz, 1, &mut sc.q_pi)?;
    let loss = -be.map1_sum(&Identity, q1)? / bsz as f64;
    be.fill(q1, -1.0 / bsz as f32, &mut sc.dq1)?;
    t.critic
        .backward_on(be, &t.critic_params, &mut sc.q_pi, &sc.dq1, None, Some(&mut sc.da))?;
    let g = be.zero_grad(&mut c.actor_opt)?;
    c.actor.backward_on(be, &c.actor_params, &sc.da, &mut sc.pert, g)?;
    Ok(loss)
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

/// `Q` where `exp(lp - max lp) > tau`, else `-1e8` (`Map3` of `q`, `lp` and the row's max).
struct Allowed(f32);

impl Map3 for Allowed {
    #[inline(always)]
    fn apply<S: Scalar>(&self, q: S, lp: S, max: S) -> S {
        let ok = (lp - max).exp().within(self.0, f32::INFINITY);
        q * ok.clone() + ok.scale(-1.0).shift(1.0).scale(-1e8)
    }
}

/// The Huber loss `0.5 d^2` for `|d| < 1`, `|d| - 0.5` otherwise.
struct Huber;

impl Map1 for Huber {
    #[inline(always)]
    fn apply<S: Scalar>(&self, d: S) -> S {
        let m = d.clone().inside(-1.0, 1.0);
        let quad = d.clone().scale(0.5) * d.clone();
        let lin = d.abs().shift(-0.5);
        m.clone() * quad + m.scale(-1.0).shift(1.0) * lin
    }
}

/// `huber'(d) / B` at the data action (`Map2` of the one-hot and the tiled `d`), else 0.
struct HuberGradAt(f32);

impl Map2 for HuberGradAt {
    #[inline(always)]
    fn apply<S: Scalar>(&self, hit: S, d: S) -> S {
        (d.clamp(-1.0, 1.0).div_by(self.0) * hit).shift(0.0)
    }
}



/// `dL/dlogit = ((e / sum) - hit) / B + 0.02 logit / (B n)` (`Map3` of `e / sum`... given as
/// the softmax `p`, the one-hot and the logit).
struct ImitationGrad {
    bsz: f32,
    bn: f32,
}

impl Map3 for ImitationGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, p: S, hit: S, logit: S) -> S {
        (p - hit).div_by(self.bsz) + logit.scale(0.02).div_by(self.bn)
    }
}

/// `e / sum`.
struct Quotient;

impl Map2 for Quotient {
    #[inline(always)]
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        a / b
    }
}

/// `x^2`.
struct Square;

impl Map1 for Square {
    #[inline(always)]
    fn apply<S: Scalar>(&self, x: S) -> S {
        x.clone() * x
    }
}

/// `(loss, mean Q, mean |TD|, imitation NLL)` of discrete BCQ and the gradients of the one
/// loss for the Q-network (`critic_opt`) and the imitation network (`imitation_opt`).
fn discrete_grad<B: Backend>(t: &mut Bcq<B>, bsz: usize) -> Result<(f64, f64, f64, f64)> {
    let Some(d) = &mut t.disc else { return Ok((0.0, 0.0, 0.0, 0.0)) };
    let n = d.imitation.n();
    let (be, sc) = (&t.be, &mut t.scratch);
    let tau = t.cfg.threshold as f32;
    // y = r + gamma^k (1 - d) Q'(s', argmax over allowed actions of Q(s', .)).
    d.imitation
        .log_probs_on(be, &d.imitation_params, &sc.b.s2, bsz, &mut sc.density, &mut sc.lp)?;
    let q_online = t
        .critic
        .q_all_on(be, &t.critic_params, &sc.b.s2, bsz, &mut sc.q_pi)?;
    be.max_cols(&sc.lp, n, &mut sc.lmax)?;
    be.tile_cols(&sc.lmax, n, &mut sc.lmax_t)?;
    be.map3(&Allowed(tau), q_online, &sc.lp, &sc.lmax_t, &mut sc.allowed)?;
    be.argmax_onehot(&sc.allowed, n, &mut sc.pick)?;
    let q_t = t
        .critic
        .q_all_on(be, &t.critic_target, &sc.b.s2, bsz, &mut sc.q_next)?;
    be.map2(&Product, q_t, &sc.pick, &mut sc.hit)?;
    be.sum_cols(&sc.hit, n, &mut sc.v2)?;
    be.map3(&Bellman, &sc.b.r, &sc.b.nd, &sc.v2, &mut sc.y)?;
    // Q part: Huber at the data action.
    let q = t
        .critic
        .q_all_on(be, &t.critic_params, &sc.b.s, bsz, &mut sc.q)?;
    be.map2(&Product, q, &sc.b.a, &mut sc.hit)?;
    be.sum_cols(&sc.hit, n, &mut sc.q_sa)?;
    be.map2(&Difference, &sc.q_sa, &sc.y, &mut sc.d)?;
    let huber = be.map1_sum(&Huber, &sc.d)?;
    let q_sum = be.map1_sum(&Identity, &sc.q_sa)?;
    let td = be.map1_sum(&Abs, &sc.d)?;
    be.tile_cols(&sc.d, n, &mut sc.dh_t)?;
    be.map2(&HuberGradAt(bsz as f32), &sc.b.a, &sc.dh_t, &mut sc.dq)?;
    let g = be.zero_grad(&mut t.critic_opt)?;
    t.critic
        .backward_all_on(be, &t.critic_params, &sc.b.s, &mut sc.q, &sc.dq, g)?;
    // Imitation part: NLL of the data action plus 0.01 mean(logits^2).
    let s = &sc.b.s;
    be.mlp_forward(&d.imitation.net, &d.imitation_params, s, Input::Shared, bsz, &mut sc.imitation)?;
    let logits = be.mlp_output(&sc.imitation);
    be.max_cols(logits, n, &mut sc.mx)?;
    be.tile_cols(&sc.mx, n, &mut sc.mx_t)?;
    be.map2(&ExpShift, logits, &sc.mx_t, &mut sc.e)?;
    be.sum_cols(&sc.e, n, &mut sc.sum)?;
    be.map2(&LogSumExp, &sc.mx, &sc.sum, &mut sc.lse)?;
    be.map2(&Product, logits, &sc.b.a, &mut sc.hit)?;
    be.sum_cols(&sc.hit, n, &mut sc.lp)?;
    let nll = -be.map2_sum(&Difference, &sc.lp, &sc.lse)?;
    let sq = be.map1_sum(&Square, logits)?;
    be.tile_cols(&sc.sum, n, &mut sc.sum_t)?;
    be.map2(&Quotient, &sc.e, &sc.sum_t, &mut sc.probs)?;
    let k = ImitationGrad {
        bsz: bsz as f32,
        bn: (bsz * n) as f32,
    };
    be.map3(&k, &sc.probs, &sc.b.a, logits, &mut sc.dl)?;
    let g = be.zero_grad(&mut d.imitation_opt)?;
    be.mlp_backward(&d.imitation.net, &d.imitation_params, s, Input::Shared, &mut sc.imitation, &sc.dl, Some(g), None)?;
    let bs = bsz as f64;
    let nll = nll / bs;
    Ok((huber / bs + nll + 0.01 * sq / (bs * n as f64), q_sum / bs, td / bs, nll))
}

impl<B: Backend> Bcq<B> {
    fn prepare(&mut self, batch: &Batch) -> Result<()> {
        check_batch(batch, &self.core.spec)?;
        self.scratch
            .b
            .upload(&self.be, batch, &self.core.spec, true)
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state (noise from a copy of the training stream; the actor's at the current VAE
    /// and critic, where the update takes it after their steps). For the parity tests.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<Probe>> {
        self.prepare(batch)?;
        let bsz = batch.batch_size;
        let mut losses: Vec<(&'static str, f64, &'static str, u8)> = Vec::new();
        if self.cont.is_none() {
            let (loss, ..) = discrete_grad(self, bsz)?;
            losses.push(("critic_loss", loss, "critic", 0));
            losses.push(("critic_loss", loss, "imitation", 3));
        } else {
            let saved = self.core.noise.clone();
            let vae = vae_grad(self, bsz)?;
            let (critic, ..) = critic_grad(self, bsz)?;
            let lat = self.cont.as_ref().map_or(0, |c| c.vae.latent());
            let sc = &mut self.scratch;
            clipped_latents(&self.be, &mut self.core.noise, &mut sc.host, lat, bsz * lat, &mut sc.z)?;
            self.core.noise = saved;
            let actor = actor_grad(self, bsz)?;
            losses.push(("critic_loss", critic, "critic", 0));
            losses.push(("vae_loss", vae, "vae", 1));
            losses.push(("actor_loss", actor, "actor", 2));
        }
        let be = &self.be;
        let mut out = Vec::new();
        for (loss, value, net, which) in losses {
            let (params, opt) = match (which, &self.cont, &self.disc) {
                (1, Some(c), _) => (&c.vae_params, &c.vae_opt),
                (2, Some(c), _) => (&c.actor_params, &c.actor_opt),
                (3, _, Some(d)) => (&d.imitation_params, &d.imitation_opt),
                _ => (&self.critic_params, &self.critic_opt),
            };
            let mut g = Vec::new();
            be.download(be.grad(opt), &mut g)?;
            out.push(Probe::new(loss, value, net, &*be.host_params(params)?, &g));
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
        let mut vc = VaeBufs::<Cpu>::default();
        let mut pc = PerturbCache::default();
        let mut qc = QCache::default();
        let mut decoded = Vec::new();
        let be = &self.be;
        let vp = be.host_params(&c.vae_params)?;
        c.vae.decode_z_on(&Cpu, &vp, &sr, &z, bsz * n, &mut vc, &mut decoded)?;
        c.actor.forward(&*be.host_params(&c.actor_params)?, &sr, &decoded, bsz * n, &mut pc);
        let cp = be.host_params(&self.critic_params)?;
        let q1 = self.critic.q_first(&cp, &sr, &pc.out, bsz * n, 1, &mut qc);
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
        let bsz = batch.batch_size;
        let lat = self.cont.as_ref().map_or(0, |c| c.vae.latent());
        let vae = vae_grad(self, bsz)?;
        record_value(m, step, "vae_loss", vae)?;
        let (critic, q, td) = critic_grad(self, bsz)?;
        record_value(m, step, "critic_loss", critic)?;
        record_value(m, step, "q_mean", q)?;
        record_value(m, step, "td_error", td)?;
        let sc = &mut self.scratch;
        clipped_latents(&self.be, &mut self.core.noise, &mut sc.host, lat, bsz * lat, &mut sc.z)?;
        let be = &self.be;
        if let Some(c) = &mut self.cont {
            be.adam_step(&mut c.vae_opt, &mut c.vae_params)?;
        }
        be.adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        // Actor step (after the critic, as in algorithm 1).
        let actor = actor_grad(self, bsz)?;
        record_value(m, step, "actor_loss", actor)?;
        let be = &self.be;
        let Some(c) = &mut self.cont else { return Ok(()) };
        be.adam_step(&mut c.actor_opt, &mut c.actor_params)?;
        be.soft_update(&mut c.actor_target, &c.actor_params, self.cfg.tau)?;
        be.soft_update(&mut self.critic_target, &self.critic_params, self.cfg.tau)?;
        Ok(())
    }
    fn update_discrete(&mut self, batch: &Batch, m: &mut Metrics) -> Result<()> {
        let step = self.core.steps;
        let (loss, q, td, nll) = discrete_grad(self, batch.batch_size)?;
        record_value(m, step, "critic_loss", loss)?;
        record_value(m, step, "q_mean", q)?;
        record_value(m, step, "td_error", td)?;
        record_value(m, step, "imitation_nll", nll)?;
        let be = &self.be;
        be.adam_step(&mut self.critic_opt, &mut self.critic_params)?;
        if let Some(d) = &mut self.disc {
            be.adam_step(&mut d.imitation_opt, &mut d.imitation_params)?;
        }
        be.soft_update(&mut self.critic_target, &self.critic_params, self.cfg.tau)?;
        Ok(())
    }
}

impl<B: Backend> Algorithm for Bcq<B> {
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
            let be = &self.be;
            d.imitation
                .log_probs(&*be.host_params(&d.imitation_params)?, &x, b, &mut mc, &mut lp);
            let mut qc = QCache::default();
            let cp = be.host_params(&self.critic_params)?;
            let q = self.critic.q_all(&cp, &x, b, &mut qc);
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
        let cp = self.be.host_params(&self.critic_params)?;
        let v: Vec<f32> = match &self.cont {
            Some(_) => {
                let q = self.critic.q(&cp, &x, &a, b, &mut cache);
                (0..b).map(|i| q[i].min(q[b + i])).collect()
            }
            None => {
                let q = self.critic.q_all(&cp, &x, b, &mut cache);
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
        let be = &self.be;
        let critic_t = be.host_params(&self.critic_params)?.named_tensors("");
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
                        &be.host_params(&c.vae_params)?.named_tensors(""),
                        "",
                        &mlp_layer_names("decoder.", self.cfg.vae_hidden.len() + 1),
                    )?,
                    perturbation: orl_nets::ReluNet::from_named(
                        &be.host_params(&c.actor_params)?.named_tensors(""),
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
                    &be.host_params(&d.imitation_params)?.named_tensors(""),
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
