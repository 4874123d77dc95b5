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
use orl_nets::engine::{
    CategoricalHead, DeterministicHead, FlatAdam, GaussianHead, MlpCache, Params, PolicyHead,
};
use orl_nets::AdamConfig;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{state_lists, 
    ActionSpec, Algorithm, Core, Metrics, Spec, check_batch, discrete_indices, head_act,
    head_log_prob, mlp_layer_names, plain_policy, record_value,
};
use crate::error::Result;
use crate::registry::{
    AlgoConfig, AlgoInfo, RewardRecipe, defaults_of, fixed_length, parse_config, reduced_width,
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
    build: |spec, cfg, seed, device| {
        Ok(Box::new(Bc::new(
            spec,
            parse_config("bc", cfg)?,
            seed,
            device,
        )?))
    },
};

/// Buffers reused by every update (sized by the first one).
#[derive(Default)]
struct Scratch {
    cache: MlpCache,
    /// Actions, means or log-probabilities of the batch.
    out: Vec<f32>,
    /// `dL/d(output)` or `dL/d log pi`.
    dout: Vec<f32>,
    lp: Vec<f32>,
    idx: Vec<u32>,
}

/// Behavioural cloning.
pub struct Bc {
    cfg: BcConfig,
    core: Core,
    net: PolicyHead,
    params: Params,
    opt: FlatAdam,
    scratch: Scratch,
    act_cache: MlpCache,
}

impl Bc {
    /// Builds the policy network for `spec`, initialised from `seed`.
    pub fn new(spec: Spec, cfg: BcConfig, seed: u64, device: &candle_core::Device) -> Result<Self> {
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
        let opt = FlatAdam::new(&params, AdamConfig::with_lr(cfg.lr));
        Ok(Self {
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
        let (s, a) = (&batch.observations, &batch.actions);
        let sc = &mut self.scratch;
        let g = self.opt.zero_grad();
        let p = &self.params;
        Ok(match &self.net {
            PolicyHead::Deterministic(h) => {
                let d = h.act_dim();
                sc.out.resize(bsz * d, 0.0);
                sc.dout.resize(bsz * d, 0.0);
                h.forward(p, s, bsz, &mut sc.cache, &mut sc.out);
                let scale = 1.0 / (bsz * d) as f32;
                let mut loss = 0.0f64;
                for ((dout, &pi), &a) in sc.dout.iter_mut().zip(&sc.out).zip(a) {
                    let diff = pi - a;
                    loss += f64::from(diff * diff);
                    *dout = 2.0 * diff * scale;
                }
                h.backward(p, s, &sc.dout, &mut sc.cache, g);
                loss * f64::from(scale)
            }
            PolicyHead::Gaussian(h) => {
                let d = h.act_dim();
                sc.out.resize(bsz * d, 0.0);
                sc.lp.resize(bsz, 0.0);
                sc.dout.clear();
                sc.dout.resize(bsz, -1.0 / bsz as f32);
                h.mean(p, s, bsz, &mut sc.cache, &mut sc.out);
                h.log_prob(p, a, &sc.cache, &mut sc.lp);
                h.log_prob_backward(p, s, a, &sc.dout, &mut sc.cache, g);
                -sc.lp.iter().map(|&v| f64::from(v)).sum::<f64>() / bsz as f64
            }
            PolicyHead::Categorical(h) => {
                let n = h.n();
                discrete_indices(batch, n, &mut sc.idx)?;
                sc.out.resize(bsz * n, 0.0);
                sc.dout.clear();
                sc.dout.resize(bsz, -1.0 / bsz as f32);
                h.log_probs(p, s, bsz, &mut sc.cache, &mut sc.out);
                let loss = -sc
                    .idx
                    .iter()
                    .enumerate()
                    .map(|(b, &k)| f64::from(sc.out[b * n + k as usize]))
                    .sum::<f64>()
                    / bsz as f64;
                h.log_prob_backward(p, s, &sc.idx, &sc.dout, &sc.out, &mut sc.cache, g);
                loss
            }
        })
    }

    /// Every loss of an update and its gradients at the current parameters, without changing
    /// any state: `(loss name, value, network, named parameter gradients)`. For the parity
    /// tests against candle's autograd.
    pub fn probe(&mut self, batch: &Batch) -> Result<Vec<crate::common::Probe>> {
        let loss = self.loss_and_grad(batch)?;
        Ok(vec![crate::common::Probe::new(
            "actor_loss",
            loss,
            "policy",
            &self.params,
            self.opt.grad(),
        )])
    }
}

impl Algorithm for Bc {
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
        self.opt.step(&mut self.params)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        head_act(
            &self.net,
            &self.params,
            s,
            &mut self.act_cache,
            deterministic,
            &mut self.core.act_noise,
        )
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        head_log_prob(&self.net, &self.params, s, a, &mut self.act_cache)
    }
    fn q_value(&self, _s: &Tensor, _a: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("policy.net.", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.params.named_tensors(""),
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
