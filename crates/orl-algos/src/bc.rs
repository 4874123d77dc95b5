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

use candle_core::Tensor;
use orl_data::Batch;
use orl_nets::{Adam, AdamConfig, CategoricalActor, DeterministicActor, GaussianActor, ParamStore};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    ActionSpec, Algorithm, BatchTensors, Core, Metrics, Spec, gather_actions, mlp_layer_names,
    plain_policy, record,
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

enum Net {
    Mse(DeterministicActor),
    Nll(GaussianActor),
    Discrete(CategoricalActor),
}

/// Behavioural cloning.
pub struct Bc {
    cfg: BcConfig,
    core: Core,
    net: Net,
    store: ParamStore,
    opt: Adam,
}

impl Bc {
    /// Builds the policy network for `spec`, initialised from `seed`.
    pub fn new(spec: Spec, cfg: BcConfig, seed: u64, device: &candle_core::Device) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut store = ParamStore::new(device.clone());
        let net = {
            let mut vb = store.builder("policy", &mut rng);
            match spec.action {
                ActionSpec::Continuous { dim, max_action } => match cfg.loss {
                    BcLoss::Mse => Net::Mse(DeterministicActor::new(
                        &mut vb,
                        spec.obs_dim,
                        dim,
                        &cfg.hidden,
                        max_action,
                    )?),
                    BcLoss::Nll => Net::Nll(GaussianActor::new(
                        &mut vb,
                        spec.obs_dim,
                        dim,
                        &cfg.hidden,
                        max_action,
                    )?),
                },
                ActionSpec::Discrete { n } => Net::Discrete(CategoricalActor::new(
                    &mut vb,
                    spec.obs_dim,
                    n,
                    &cfg.hidden,
                )?),
            }
        };
        let opt = Adam::new(&store, AdamConfig::with_lr(cfg.lr))?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            net,
            store,
            opt,
        })
    }

    /// The imitation loss on a batch (`[]` scalar).
    fn loss(&self, b: &BatchTensors) -> Result<Tensor> {
        Ok(match &self.net {
            Net::Mse(p) => (p.forward(&b.s)? - &b.a)?.sqr()?.mean_all()?,
            Net::Nll(p) => p.log_prob(&b.s, &b.a)?.neg()?.mean_all()?,
            Net::Discrete(p) => gather_actions(&p.log_probs(&b.s)?, &b.a)?
                .neg()?
                .mean_all()?,
        })
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
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let loss = self.loss(&b)?;
        let mut m = Metrics::new();
        record(&mut m, self.core.steps, "actor_loss", &loss)?;
        self.opt.backward_step(&loss)?;
        self.core.steps += 1;
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, deterministic: bool) -> Result<Tensor> {
        Ok(match &self.net {
            Net::Mse(p) => p.forward(s)?,
            Net::Nll(p) if deterministic => p.deterministic(s)?,
            Net::Nll(p) => p.sample(s, &mut self.core.act_noise)?,
            Net::Discrete(p) if deterministic => p.greedy(s)?,
            Net::Discrete(p) => {
                crate::common::sample_categorical(&p.log_probs(s)?, &mut self.core.act_noise)?
            }
        })
    }
    fn log_prob(&mut self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(match &self.net {
            Net::Mse(_) => None,
            Net::Nll(p) => Some(p.log_prob(s, a)?),
            Net::Discrete(p) => Some(gather_actions(&p.log_probs(s)?, a)?),
        })
    }
    fn q_value(&self, _s: &Tensor, _a: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("policy.net.", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.store.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    fn nets(&self) -> Vec<(&'static str, &ParamStore)> {
        vec![("policy", &self.store)]
    }
    fn optims(&self) -> Vec<(&'static str, &Adam)> {
        vec![("policy", &self.opt)]
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("policy", &mut self.opt)]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
