//! The algorithm registry: every offline algorithm orl trains, each described once by the
//! [`AlgoInfo`] its own file declares, and listed here by one line.
//!
//! Everything that differs per algorithm outside its update (its name, whether it handles
//! discrete actions, the reference batch size, observation normalisation, the reward recipe,
//! the settings of the reduced benchmark protocol, how run-length-dependent settings follow
//! `--steps`, a small test configuration, the relative cost used for scheduling, and how to
//! build it from a JSON configuration) lives in that [`AlgoInfo`], so that the CLI, the
//! benchmarks and the tests ask the registry instead of matching on names. Adding an
//! algorithm is one new file with its `INFO` and its module name in the `algorithms!` line of
//! `lib.rs`, which declares the module and lists it in [`crate::ALGORITHMS`]
//! (`docs/ARCHITECTURE.md`, "Adding an algorithm").

use candle_core::Device;
use serde_json::Value;

use crate::ALGORITHMS;
use crate::common::{Algorithm, Spec};
use crate::error::{AlgoError, Result};

/// How the published recipe of an algorithm treats rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardRecipe {
    /// Rewards as stored.
    AsStored,
    /// `r * T / (G_max - G_min)` with `T` the episode horizon (IQL, Kostrikov et al. 2021,
    /// appendix B; CORL `iql.py` `modify_reward`; d3rlpy's `ReturnBasedRewardScaler`), falling
    /// back to the stored rewards where every complete episode has the same return.
    ReturnRange,
}

/// `(spec, config, seed, compute) -> algorithm`: how a registry entry builds its algorithm.
pub type BuildFn = fn(Spec, &Value, u64, &Compute) -> Result<Box<dyn Algorithm>>;

/// What runs an algorithm's updates (`orl_nets::engine::backend`).
#[derive(Debug, Clone)]
pub enum Compute {
    /// The CPU engine (fused, allocation-free); actions and metrics as tensors on `Device`.
    Engine(Device),
    /// candle tensors on `Device` (CPU in the tests; CUDA or Metal behind the `cuda` / `metal`
    /// features). Every algorithm is written once against the backend trait and builds on both.
    Candle(Device),
}

/// What the registry knows of one algorithm. Each algorithm file declares its own
/// `pub static INFO: AlgoInfo`.
#[derive(Debug)]
pub struct AlgoInfo {
    /// The CLI name (`--algo`), lowercase.
    pub name: &'static str,
    /// One line for help texts.
    pub summary: &'static str,
    /// Whether it trains on discrete actions.
    pub discrete: bool,
    /// Whether it trains on continuous actions.
    pub continuous: bool,
    /// Batch size of the reference implementation.
    pub batch_size: usize,
    /// Whether the reference implementation standardises observations.
    pub normalize_observations: bool,
    /// The reward transform of the published recipe.
    pub reward: RewardRecipe,
    /// Rough cost of one update relative to the others (scheduling only, TD3+BC = 10).
    pub relative_cost: u32,
    /// The default configuration as JSON (`Config::default()`).
    pub defaults: fn() -> Value,
    /// Overrides of the reduced protocol the benchmarks run: `hidden` x `hidden` networks and
    /// whatever else that algorithm changes at that size (`steps`: the run's length).
    pub reduced: fn(hidden: usize, steps: usize) -> Value,
    /// Settings that follow the run's length (IQL's cosine schedule), applied to a JSON config
    /// unless the user set them: `(config, steps)`.
    pub fit_to_run: fn(&mut Value, usize),
    /// A small configuration that trains in seconds (tests).
    pub test_config: fn() -> Value,
    /// The full configuration (defaults overridden by the JSON object), validated, without
    /// building networks; the error names the key.
    pub resolve: fn(&Value) -> Result<Value>,
    /// Builds the algorithm for `spec` from a configuration (defaults overridden by the JSON
    /// object; unknown keys are errors) and a seed.
    pub build: BuildFn,
}

/// A registered algorithm: a handle on its [`AlgoInfo`]. Compared and hashed by name.
#[derive(Clone, Copy)]
pub struct AlgoKind(pub &'static AlgoInfo);

impl AlgoKind {
    /// Conservative Q-learning (shortcut for code that names it).
    pub const CQL: AlgoKind = AlgoKind(&crate::cql::INFO);
    /// Implicit Q-learning.
    pub const IQL: AlgoKind = AlgoKind(&crate::iql::INFO);
    /// Batch-constrained Q-learning.
    pub const BCQ: AlgoKind = AlgoKind(&crate::bcq::INFO);
    /// TD3+BC.
    pub const TD3BC: AlgoKind = AlgoKind(&crate::td3bc::INFO);
    /// Behavioural cloning.
    pub const BC: AlgoKind = AlgoKind(&crate::bc::INFO);

    /// Every registered algorithm, in [`crate::ALGORITHMS`] order.
    pub fn all() -> Vec<AlgoKind> {
        ALGORITHMS.iter().map(|i| AlgoKind(i)).collect()
    }
    /// The names of every registered algorithm (the CLI's possible values).
    pub fn names() -> Vec<&'static str> {
        ALGORITHMS.iter().map(|i| i.name).collect()
    }
    /// The registry entry.
    pub fn info(self) -> &'static AlgoInfo {
        self.0
    }
    /// The CLI name.
    pub fn name(self) -> &'static str {
        self.0.name
    }
    /// Whether the algorithm handles discrete actions.
    pub fn supports_discrete(self) -> bool {
        self.0.discrete
    }
    /// Whether the algorithm handles the action kind of `spec`.
    pub fn supports(self, spec: &Spec) -> bool {
        if spec.is_discrete() {
            self.0.discrete
        } else {
            self.0.continuous
        }
    }
    /// Batch size of the reference implementation.
    pub fn default_batch_size(self) -> usize {
        self.0.batch_size
    }
    /// Whether the reference implementation standardises observations.
    pub fn normalizes_observations(self) -> bool {
        self.0.normalize_observations
    }
    /// The reward transform of the algorithm's published recipe for `ds`, whose episodes last
    /// at most `horizon` steps ([`RewardRecipe`]).
    pub fn reward_transform(
        self,
        ds: &orl_data::Dataset,
        horizon: usize,
    ) -> orl_data::RewardTransform {
        match (self.0.reward, ds.return_range()) {
            (RewardRecipe::ReturnRange, Some((lo, hi))) if hi > lo => {
                orl_data::RewardTransform::ReturnRange {
                    max_episode_steps: horizon as f32,
                }
            }
            _ => orl_data::RewardTransform::None,
        }
    }
    /// Settings of the reduced benchmark protocol ([`AlgoInfo::reduced`]).
    pub fn reduced_config(self, hidden: usize, steps: usize) -> Value {
        (self.0.reduced)(hidden, steps)
    }
    /// Builds the algorithm ([`AlgoInfo::build`]) on the CPU engine; `config` `None` means the
    /// defaults.
    pub fn build(
        self,
        spec: Spec,
        config: Option<&Value>,
        seed: u64,
        device: &Device,
    ) -> Result<Box<dyn Algorithm>> {
        self.build_on(spec, config, seed, &Compute::Engine(device.clone()))
    }
    /// [`AlgoKind::build`] on the backend `compute` names.
    pub fn build_on(
        self,
        spec: Spec,
        config: Option<&Value>,
        seed: u64,
        compute: &Compute,
    ) -> Result<Box<dyn Algorithm>> {
        spec.validate()?;
        let empty = Value::Object(Default::default());
        (self.0.build)(spec, config.unwrap_or(&empty), seed, compute)
    }
}

impl PartialEq for AlgoKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for AlgoKind {}
impl std::hash::Hash for AlgoKind {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.name.hash(h)
    }
}
impl std::fmt::Debug for AlgoKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlgoKind({})", self.0.name)
    }
}
impl std::fmt::Display for AlgoKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::str::FromStr for AlgoKind {
    type Err = AlgoError;
    /// Case-insensitive; `+`, `-` and `_` are ignored (`TD3+BC` is `td3bc`).
    fn from_str(s: &str) -> Result<Self> {
        let key = s.to_ascii_lowercase().replace(['+', '-', '_'], "");
        ALGORITHMS
            .iter()
            .find(|i| i.name == key)
            .map(|i| AlgoKind(i))
            .ok_or_else(|| {
                AlgoError::setting(
                    "algo",
                    s,
                    &format!("one of {}", AlgoKind::names().join(", ")),
                )
            })
    }
}

impl serde::Serialize for AlgoKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}
impl<'de> serde::Deserialize<'de> for AlgoKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Builds `kind` for `spec` with `config` (a JSON object of fields to override; unknown fields
/// are errors) and `seed`.
pub fn build(
    kind: AlgoKind,
    spec: Spec,
    config: Option<&Value>,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn Algorithm>> {
    kind.build(spec, config, seed, device)
}

/// What every algorithm's `Config` provides to the registry: serde with defaults and range
/// checks.
pub trait AlgoConfig: serde::Serialize + serde::de::DeserializeOwned + Default {
    /// Checks every field's range; the error names the key (prefixed by `algo.`).
    fn validate(&self) -> Result<()>;
}

/// `C::default()` overridden by the JSON object `v` (unknown keys and wrong types are errors
/// naming the algorithm), validated.
pub fn parse_config<C: AlgoConfig>(algo: &str, v: &Value) -> Result<C> {
    let cfg: C = match v {
        Value::Null => C::default(),
        Value::Object(m) if m.is_empty() => C::default(),
        Value::Object(_) => serde_json::from_value(v.clone())
            .map_err(|e| AlgoError::Config(format!("{algo} configuration: {e}")))?,
        other => {
            return Err(AlgoError::setting(
                algo,
                other,
                "a table of configuration keys",
            ));
        }
    };
    cfg.validate()?;
    Ok(cfg)
}

/// [`parse_config`] back to JSON: the full, validated configuration.
pub fn resolve<C: AlgoConfig>(algo: &str, v: &Value) -> Result<Value> {
    let cfg: C = parse_config(algo, v)?;
    serde_json::to_value(cfg).map_err(|e| AlgoError::Config(e.to_string()))
}

/// The defaults of `C` as JSON.
pub fn defaults_of<C: AlgoConfig>() -> Value {
    serde_json::to_value(C::default()).unwrap_or(Value::Null)
}

/// `fit_to_run` of algorithms with nothing that follows the run's length.
pub fn fixed_length(_: &mut Value, _: usize) {}

/// `reduced` of algorithms whose only reduced setting is the width: `{"hidden": [h, h]}`.
pub fn reduced_width(hidden: usize, _steps: usize) -> Value {
    serde_json::json!({ "hidden": [hidden, hidden] })
}
