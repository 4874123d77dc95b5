//! Behavioural cloning: supervised imitation of the dataset's actions (Pomerleau 1991).
//!
//! ```text
//! continuous, MSE:  L(pi) = E_(s,a)~D || pi(s) - a ||^2                    (deterministic actor)
//! continuous, NLL:  L(pi) = -E_(s,a)~D log pi(a|s)                        (Gaussian actor)
//! discrete:         L(pi) = -E_(s,a)~D log softmax(logits(s))[a]          (cross-entropy)
//! ```
//!
//! The baseline every offline method must beat. Defaults follow CORL `any_percent_bc.py`
//! (MSE, 256x256, Adam 3e-4).
//!
//! Gradients with respect to the network outputs (`B` rows, `A` action dimensions), which the
//! engine's heads carry back to the parameters:
//!
//! ```text
//! MSE:  dL/dpi_bj = 2 (pi_bj - a_bj) / (B A)
//! NLL:  dL/d log pi(a_b|s_b) = -1 / B          (GaussianHead::log_prob_backward)
//! CE:   dL/d log pi(a_b|s_b) = -1 / B          (CategoricalHead::log_prob_backward)
//! ```

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::engine::backend::{
    Backend, Candle, Cpu, Identity, Map2, Product, Scalar, SquaredError,
};
use orl_nets::engine::{
    CategoricalHead, DensityBufs, DeterministicHead, GaussianHead, MlpCache, Params, PolicyHead,
};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    BatchBufs,state_lists, 
    ActionSpec, Algorithm, Core, Metrics, Spec, check_batch, head_act,
    head_log_prob, mlp_layer_names, plain_policy, record_value,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, Compute, RewardRecipe, defaults_of, fixed_length, parse_config, reduced_width,
    resolve,
};
use crate::validate as v;

/// Loss for continuous actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BcLoss {
    /// Mean squared error of a deterministic policy.
    Mse,
    /// Negative log-likelihood of a Gaussian policy.
    Nll,
}

/// BC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BcConfig {
    /// Hidden layer sizes.
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub lr: f64,
    /// Continuous loss (discrete data always uses cross-entropy).
    pub loss: BcLoss,
}

impl Default for BcConfig {
    /// CORL `any_percent_bc.py`: 256x256 MLP, Adam lr 3e-4, MSE on a tanh-bounded actor.
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            lr: 3e-4,
            loss: BcLoss::Mse,
        }
    }
}

impl AlgoConfig for BcConfig {
    fn validate(&self) -> Result<()> {
        v::hidden("bc.hidden", &self.hidden)?;
        v::positive("bc.lr", self.lr)
    }
}

/// The registry entry of BC.
pub static INFO: AlgoInfo = AlgoInfo {
    name: "bc",
    summary: "behavioural cloning (MSE or Gaussian NLL; cross-entropy for discrete actions)",
    discrete: true,
    continuous: true,
    // CORL `any_percent_bc.py`: batch 256.
    batch_size: 256,
    // CORL `any_percent_bc.py` normalises states.
    normalize_observations: true,
    reward: RewardRecipe::AsStored,
    relative_cost: 3,
    defaults: defaults_of::<BcConfig>,
    reduced: reduced_width,
    fit_to_run: fixed_length,
    test_config: || serde_json::json!({"hidden": [32, 32]}),
    resolve: |v| resolve::<BcConfig>("bc", v),
    build: |spec, cfg, seed, compute| {
        let cfg = parse_config("bc", cfg)?;
        Ok(match compute {
            Compute::Engine(device) => Box::new(Bc::new(spec, cfg, seed, device)?),
            Compute::Candle(device) => Box::new(Bc::new_on(
                Candle::new(device.clone()),
                spec,
                cfg,
                seed,
                device,
            )?),
        })
    },
};

/// `dL/dpi = 2 (pi - a) / (B A)` of the MSE loss (`Map2` over the actions `pi` and `a`).
struct MseGrad {
    /// `1 / (B A)`.
    scale: f32,
}

impl Map2 for MseGrad {
    #[inline(always)]
    fn apply<S: Scalar>(&self, pi: S, a: S) -> S {
        (pi - a).scale(2.0).scale(self.scale)
    }
}

/// Buffers reused by every update (sized by the first one).
struct Scratch<B: Backend> {
    /// The batch's observations and actions (one-hot for discrete actions) on the backend.
    b: BatchBufs<B>,
    cache: B::Cache,
    /// The NLL and cross-entropy losses' log-densities.
    density: DensityBufs<B>,
    /// The policy's actions (MSE), log-densities `[B, 1]` or log-probabilities `[B, n]`.
    out: B::Buf,
    /// Log-probabilities at the data actions `[B, n]` (one-hot masked), then `[B, 1]`.
    hit: B::Buf,
    lp_a: B::Buf,
    /// `dL/dpi` (MSE) or `dL/d log pi` `[B, 1]`.
    dout: B::Buf,
    dnet: B::Buf,
}

impl<B: Backend> Default for Scratch<B> {
    fn default() -> Self {
        Self {
            b: BatchBufs::default(),
            cache: B::Cache::default(),
            density: DensityBufs::default(),
            out: B::Buf::default(),
            hit: B::Buf::default(),
            lp_a: B::Buf::default(),
            dout: B::Buf::default(),
            dnet: B::Buf::default(),
        }
    }
}

/// Behavioural cloning, on the CPU engine ([`Cpu`], the default) or another
/// [`Backend`] ([`Bc::new_on`]).
pub struct Bc<B: Backend = Cpu> {
    be: B,
    cfg: BcConfig,
    core: Core,
    net: PolicyHead,
    params: B::Params,
    opt: B::Adam,
    scratch: Scratch<B>,
    act_cache: MlpCache,
}

impl Bc<Cpu> {
    /// Builds the policy network for `spec` on the CPU engine, initialised from `seed`.
    pub fn new(spec: Spec, cfg: BcConfig, seed: u64, device: &candle_core::Device) -> Result<Self> {
        Self::new_on(Cpu, spec, cfg, seed, device)
    }
}

impl<B: Backend> Bc<B> {
    /// Builds the policy network for `spec` on backend `be`, initialised from `seed` (the same
    /// initial parameters on every backend).
    pub fn new_on(
        be: B,
        spec: Spec,
        cfg: BcConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut params = Params::new();
        let net = {
            let mut pb = params.builder("policy", &mut rng);
            match spec.action {
                ActionSpec::Continuous { dim, max_action } => match cfg.loss {
                    BcLoss::Mse => PolicyHead::Deterministic(DeterministicHead::new(
                        &mut pb,
                        spec.obs_dim,
                        dim,
                        &cfg.hidden,
                        max_action,
                    )?),
                    BcLoss::Nll => PolicyHead::Gaussian(GaussianHead::new(
                        &mut pb,
                        spec.obs_dim,
                        dim,
                        &cfg.hidden,
                        max_action,
                        // GaussianActor's default floor (CORL).
                        -20.0,
                    )?),
                },
                ActionSpec::Discrete { n } => PolicyHead::Categorical(CategoricalHead::new(
                    &mut pb,
                    spec.obs_dim,
                    n,
                    &cfg.hidden,
                )?),
            }
        };
        let params = be.place(&params)?;
        let opt = be.adam(&params, AdamConfig::with_lr(cfg.lr), None)?;
        Ok(Self {
            be,
            cfg,
            core: Core::new(spec, seed, device),
            net,
            params,
            opt,
            scratch: Scratch::default(),
            act_cache: MlpCache::new(),
        })
    }

    /// The imitation loss on `batch` at the current parameters; its gradient is left in the
    /// optimizer's gradient buffer.
    fn loss_and_grad(&mut self, batch: &Batch) -> Result<f64> {
        check_batch(batch, &self.core.spec)?;
        let bsz = batch.batch_size;
        let be = &self.be;
        let sc = &mut self.scratch;
        let p = &self.params;
        sc.b.upload(be, batch, &self.core.spec, false)?;
        let (s, a) = (&sc.b.s, &sc.b.a);
        Ok(match &self.net {
            PolicyHead::Deterministic(h) => {
                // L = mean_bj (pi_bj - a_bj)^2,  dL/dpi = 2 (pi - a) / (B A)
                let d = h.act_dim();
                h.forward_on(be, p, s, bsz, &mut sc.cache, &mut sc.out)?;
                let scale = 1.0 / (bsz * d) as f32;
                let loss = be.map2_sum(&SquaredError, &sc.out, a)?;
                be.map2(&MseGrad { scale }, &sc.out, a, &mut sc.dout)?;
                let g = be.zero_grad(&mut self.opt)?;
                h.backward_on(be, p, s, &sc.dout, &mut sc.cache, &mut sc.dnet, g)?;
                loss * f64::from(scale)
            }
            PolicyHead::Gaussian(h) => {
                // L = -mean_b log pi(a_b|s_b),  dL/d log pi_b = -1 / B
                h.log_prob_on(be, p, s, a, bsz, &mut sc.density, &mut sc.out)?;
                let loss = -be.map1_sum(&Identity, &sc.out)? / bsz as f64;
                be.fill(&sc.out, -1.0 / bsz as f32, &mut sc.dout)?;
                let g = be.zero_grad(&mut self.opt)?;
                h.log_prob_backward_on(be, p, s, a, &sc.dout, &mut sc.density, g)?;
                loss
            }
            PolicyHead::Categorical(h) => {
                // L = -mean_b log softmax(f(s_b))_(a_b),  dL/d log pi_b = -1 / B
                let n = h.n();
                h.log_probs_on(be, p, s, bsz, &mut sc.density, &mut sc.out)?;
                be.map2(&Product, &sc.out, a, &mut sc.hit)?;
                be.sum_cols(&sc.hit, n, &mut sc.lp_a)?;
                let loss = -be.map1_sum(&Identity, &sc.lp_a)? / bsz as f64;
                be.fill(&sc.lp_a, -1.0 / bsz as f32, &mut sc.dout)?;
                let g = be.zero_grad(&mut self.opt)?;
                h.log_prob_backward_on(be, p, s, a, &sc.dout, &sc.out, &mut sc.density, g)?;
                loss
            }
        })
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state: `(loss name, value, network, named parameter gradients)`. For the parity
    /// tests against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<crate::common::Probe>> {
        let loss = self.loss_and_grad(batch)?;
        let mut grad = Vec::new();
        self.be.download(self.be.grad(&self.opt), &mut grad)?;
        Ok(vec![crate::common::Probe::new(
            "actor_loss",
            loss,
            "policy",
            &*self.be.host_params(&self.params)?,
            &grad,
        )])
    }
}

impl<B: Backend> Algorithm for Bc<B> {
    fn name(&self) -> &'static str {
        "bc"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        let loss = self.loss_and_grad(batch)?;
        let mut m = Metrics::new();
        record_value(&mut m, self.core.steps, "actor_loss", loss)?;
        self.be.adam_step(&mut self.opt, &mut self.params)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        head_act(
            &self.net,
            &*self.be.host_params(&self.params)?,
            s,
            &mut self.act_cache,
            deterministic,
            &mut self.core.act_noise,
        )
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        head_log_prob(
            &self.net,
            &*self.be.host_params(&self.params)?,
            s,
            a,
            &mut self.act_cache,
        )
    }
    fn q_value(&self, _s: &Tensor, _a: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("policy.net.", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.be.host_params(&self.params)?.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    state_lists! {
        nets ["policy" => params]
        optims ["policy" => opt]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
