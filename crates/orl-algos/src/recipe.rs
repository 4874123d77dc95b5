//! The training recipe: everything a run's numbers depend on, decided once.
//!
//! A [`Recipe`] is built from (algorithm, dataset, [`RecipeRequest`]) by [`Recipe::new`], which
//! is the only place that derives the action spec, the horizon, the reward transform, the
//! observation normalisation, the batch size, the seeds and the algorithm's full configuration.
//! Every setting is validated there, before any work starts. The recipe is serialised verbatim
//! into `run.json` and into every checkpoint (`orl.recipe`), and read back by `--resume`,
//! `orl eval`, `orl diagnose`, `orl export` and `orl ope`, so that nothing downstream re-derives
//! (and possibly re-derives differently) what training used.
//!
//! Precedence of the configuration: the algorithm's defaults (`impl Default`), then the
//! caller's protocol (`RecipeRequest::protocol`, e.g. the benchmark's reduced networks), then
//! the user's overrides (`RecipeRequest::config`, e.g. a `--config` file), then the settings that
//! follow the run's length ([`crate::AlgoInfo::fit_to_run`], IQL's schedule) unless one of the
//! two set them.

use orl_data::{ActionSpace, Dataset, ReplayConfig, RewardTransform};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Spec;
use crate::error::{AlgoError, Result};
use crate::registry::AlgoKind;
use crate::validate as v;

/// Default [`Recipe::replay_segment`]: the replay stream restarts every 10 000 updates (the
/// CLI's default checkpoint interval), so that a run resumed from any such checkpoint draws the
/// batches an uninterrupted run draws.
pub const DEFAULT_REPLAY_SEGMENT: usize = 10_000;

/// How to choose the reward transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewardChoice {
    /// The algorithm's published recipe ([`crate::RewardRecipe`]).
    #[default]
    Auto,
    /// Rewards as stored.
    None,
    /// `r * T / (G_max - G_min)`.
    ReturnRange,
}

impl std::str::FromStr for RewardChoice {
    type Err = AlgoError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(RewardChoice::Auto),
            "none" => Ok(RewardChoice::None),
            "return-range" => Ok(RewardChoice::ReturnRange),
            other => Err(AlgoError::setting(
                "reward_transform",
                other,
                "`auto`, `none` or `return-range`",
            )),
        }
    }
}

/// What a caller asks of a run; `None` takes the algorithm's recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeRequest {
    /// Gradient updates.
    pub steps: usize,
    /// The run's seed (initialisation, sampling, noise, evaluation starts).
    pub seed: u64,
    /// Settings of the caller's protocol (a JSON object), below the user's.
    pub protocol: Option<Value>,
    /// The user's settings (a JSON object, e.g. a `--config` TOML file).
    pub config: Option<Value>,
    /// Batch size (default: the algorithm's reference value).
    pub batch_size: Option<usize>,
    /// Standardise observations (default: as the algorithm's reference implementation).
    pub normalize_observations: Option<bool>,
    /// Reward transform.
    pub reward: RewardChoice,
    /// Discount (default [`ReplayConfig::default`]'s 0.99).
    pub gamma: Option<f32>,
    /// Environment to evaluate in (default: the dataset's, when orl has it).
    pub eval_env: Option<String>,
    /// Reference returns `(random, expert)` for normalised scores (default: the dataset's
    /// metadata, else D4RL's for the environment).
    pub ref_scores: Option<(f64, f64)>,
    /// Updates between restarts of the replay stream (default [`DEFAULT_REPLAY_SEGMENT`]).
    pub replay_segment: Option<usize>,
    /// Where the dataset came from (recorded only).
    pub dataset_path: Option<String>,
}

impl RecipeRequest {
    /// `steps` updates with `seed` and every other choice the algorithm's.
    pub fn new(steps: usize, seed: u64) -> Self {
        Self {
            steps,
            seed,
            protocol: None,
            config: None,
            batch_size: None,
            normalize_observations: None,
            reward: RewardChoice::Auto,
            gamma: None,
            eval_env: None,
            ref_scores: None,
            replay_segment: None,
            dataset_path: None,
        }
    }
}

/// The dataset a recipe was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    /// Path as given (recorded only).
    pub path: Option<String>,
    /// sha256 of the source the dataset was converted from, where its metadata records one.
    pub source_sha256: Option<String>,
    /// Transitions.
    pub rows: usize,
    /// Environment id of the dataset's metadata.
    pub env_id: Option<String>,
}

/// Everything a training run's numbers depend on. See the module doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The algorithm (registry name).
    pub algo: AlgoKind,
    /// Its full configuration (every key, defaults filled in).
    pub config: Value,
    /// Observation and action spaces.
    pub spec: Spec,
    /// Gradient updates.
    pub steps: usize,
    /// Transitions per update.
    pub batch_size: usize,
    /// The run's seed.
    pub seed: u64,
    /// Discount.
    pub gamma: f32,
    /// Observations standardised with the dataset's mean and std.
    pub normalize_observations: bool,
    /// The reward transform in effect.
    pub reward_transform: RewardTransform,
    /// Episode horizon `T` (the environment's time limit, else the longest episode).
    pub horizon: usize,
    /// Environment for evaluation, if orl has it.
    pub env_id: Option<String>,
    /// Reference returns `[random, expert]` for normalised scores.
    pub ref_scores: Option<(f64, f64)>,
    /// Updates between restarts of the replay stream.
    pub replay_segment: usize,
    /// The dataset.
    pub dataset: DatasetRef,
}

/// The action spec of a dataset. Continuous boxes are treated as symmetric with `max_action`
/// the largest `|bound|` (D4RL's boxes are symmetric); unknown bounds mean 1.
pub fn spec_of(ds: &Dataset) -> Result<Spec> {
    let od = ds.obs_dim();
    let spec = match &ds.meta().action_space {
        ActionSpace::Discrete { n } => Spec::discrete(od, *n),
        ActionSpace::Continuous { dim, low, high } => {
            let m = high
                .iter()
                .chain(low.iter())
                .flatten()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let m = if m > 0.0 && m.is_finite() { m } else { 1.0 };
            Spec::continuous(od, *dim, m)
        }
    };
    spec.validate()?;
    Ok(spec)
}

/// The environment to evaluate a dataset in: its `env_id` when orl has it, or the v5 MuJoCo
/// task of a D4RL name (`hopper-medium-v2` -> `Hopper-v5`).
pub fn eval_env_of(ds: &Dataset) -> Option<String> {
    let id = ds.meta().env_id.clone()?;
    if orl_envs::spec(&id).is_ok() {
        return Some(id);
    }
    let lower = id.to_ascii_lowercase();
    [
        ("hopper", "Hopper-v5"),
        ("halfcheetah", "HalfCheetah-v5"),
        ("walker2d", "Walker2d-v5"),
    ]
    .iter()
    .find(|(p, _)| lower.starts_with(p))
    .map(|(_, e)| (*e).to_string())
    .filter(|e| orl_envs::spec(e).is_ok())
}

/// Checks that this build can make environment `id`; the error names `key`.
pub fn check_env(key: &str, id: &str) -> Result<()> {
    let known = || {
        orl_envs::REGISTRY
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match orl_envs::spec(id) {
        Err(_) => Err(AlgoError::setting(
            key,
            id,
            &format!(
                "a registered environment id ({}; `orl envs` lists them)",
                known()
            ),
        )),
        Ok(s) if s.needs_mujoco && !orl_envs::MUJOCO_ENABLED => Err(AlgoError::setting(
            key,
            id,
            "an environment this build can make: MuJoCo tasks need the `mujoco` feature \
             (`cargo xtask setup-mujoco`, then build with `--features mujoco`)",
        )),
        Ok(_) => Ok(()),
    }
}

/// `a` with the keys of the JSON object `b` written over it.
fn merge(a: &mut Value, b: &Value, what: &str) -> Result<()> {
    match b {
        Value::Null => Ok(()),
        Value::Object(m) => {
            if let Value::Object(am) = a {
                for (k, v) in m {
                    am.insert(k.clone(), v.clone());
                }
            }
            Ok(())
        }
        other => Err(AlgoError::setting(
            what,
            other,
            "a table of configuration keys",
        )),
    }
}

/// splitmix64: decorrelated seeds from (seed, tag).
fn mix(seed: u64, tag: u64) -> u64 {
    let mut z = seed
        .wrapping_add(tag.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tag of a run's final evaluation ([`Recipe::eval_seed`]).
pub const FINAL_EVAL: u64 = u64::MAX;

impl Recipe {
    /// Builds and validates the recipe of `algo` on `ds` (see the module doc).
    pub fn new(algo: AlgoKind, ds: &Dataset, req: &RecipeRequest) -> Result<Self> {
        v::count("steps", req.steps, usize::MAX)?;
        let batch_size = req.batch_size.unwrap_or(algo.default_batch_size());
        v::count("batch_size", batch_size, 1 << 20)?;
        let gamma = req.gamma.unwrap_or(ReplayConfig::default().gamma);
        v::unit_open_closed("gamma", f64::from(gamma))?;
        let replay_segment = req.replay_segment.unwrap_or(DEFAULT_REPLAY_SEGMENT);
        v::count("replay_segment", replay_segment, usize::MAX)?;
        if let Some(id) = &req.eval_env {
            check_env("eval_env", id)?;
        }
        if let Some((lo, hi)) = req.ref_scores {
            v::ordered("ref_scores", lo, hi)?;
        }
        let spec = spec_of(ds)?;
        if !algo.supports(&spec) {
            return Err(AlgoError::setting(
                "algo",
                algo.name(),
                &format!(
                    "an algorithm for {} actions (the dataset's); {} handles only the other kind",
                    if spec.is_discrete() {
                        "discrete"
                    } else {
                        "continuous"
                    },
                    algo.name()
                ),
            ));
        }
        if ds.is_empty() {
            return Err(AlgoError::setting(
                "dataset",
                "0 rows",
                "at least one transition",
            ));
        }
        let env_id = req.eval_env.clone().or_else(|| eval_env_of(ds));
        let horizon = match env_id.as_deref().and_then(|id| orl_envs::spec(id).ok()) {
            Some(s) => s.max_episode_steps,
            None => ds
                .episode_lengths_with_ids()
                .iter()
                .map(|e| e.1)
                .max()
                .unwrap_or(1000),
        };
        let reward_transform = match req.reward {
            RewardChoice::Auto => algo.reward_transform(ds, horizon),
            RewardChoice::None => RewardTransform::None,
            RewardChoice::ReturnRange => RewardTransform::ReturnRange {
                max_episode_steps: horizon as f32,
            },
        };
        let mut config = Value::Object(Default::default());
        if let Some(p) = &req.protocol {
            merge(&mut config, p, algo.name())?;
        }
        if let Some(c) = &req.config {
            merge(&mut config, c, algo.name())?;
        }
        (algo.info().fit_to_run)(&mut config, req.steps);
        let config = (algo.info().resolve)(&config)?;
        let meta = ds.meta();
        let ref_scores = req
            .ref_scores
            .or(match (meta.ref_min_score, meta.ref_max_score) {
                (Some(a), Some(b)) if a < b => Some((a, b)),
                _ => None,
            })
            .or_else(|| {
                env_id
                    .as_deref()
                    .and_then(orl_envs::RefScores::d4rl)
                    .map(|r| (r.min, r.max))
            });
        Ok(Self {
            algo,
            config,
            spec,
            steps: req.steps,
            batch_size,
            seed: req.seed,
            gamma,
            normalize_observations: req
                .normalize_observations
                .unwrap_or(algo.normalizes_observations()),
            reward_transform,
            horizon,
            env_id,
            ref_scores,
            replay_segment,
            dataset: DatasetRef {
                path: req.dataset_path.clone(),
                source_sha256: meta.provenance.source_sha256.clone(),
                rows: ds.len(),
                env_id: meta.env_id.clone(),
            },
        })
    }

    /// The replay settings of the recipe.
    pub fn replay_config(&self) -> ReplayConfig {
        ReplayConfig {
            normalize_observations: self.normalize_observations,
            gamma: self.gamma,
            reward_transform: self.reward_transform,
            ..ReplayConfig::default()
        }
    }

    /// The replay seed of the segment starting at update `step` (a multiple of
    /// [`Recipe::replay_segment`]).
    pub fn replay_seed(&self, step: usize) -> u64 {
        mix(self.seed ^ 0x5851_F42D_4C95_7F2D, step as u64)
    }

    /// The reset seed of the first episode of the evaluation tagged `tag` (the update it
    /// happens at, or [`FINAL_EVAL`]); episode `i` starts from `eval_seed(tag) + i`. Derived
    /// from the run's seed, so that two training seeds are judged on different start states
    /// (the spread over seeds then measures the policies, not one set of starts), while two
    /// algorithms with the same seed share them (a paired comparison). Below 2^53.
    pub fn eval_seed(&self, tag: u64) -> u64 {
        mix(self.seed ^ 0xE7A1_5EED, tag) >> 11
    }

    /// The recipe with another length: a resumed run may go further. `fit_to_run` settings
    /// are not moved (the run's schedule was fixed when it started).
    pub fn with_steps(mut self, steps: usize) -> Result<Self> {
        v::count("steps", steps, usize::MAX)?;
        self.steps = steps;
        Ok(self)
    }

    /// The first field in which `self` and `other` differ, ignoring `steps` (what `--resume`
    /// may change): `None` when they agree.
    pub fn differs_from(&self, other: &Recipe) -> Option<String> {
        let a = serde_json::to_value(self).ok()?;
        let b = serde_json::to_value(other).ok()?;
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            return None;
        };
        a.iter()
            .filter(|(k, _)| k.as_str() != "steps")
            .find(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                format!(
                    "`{k}` ({} now, {} in the run)",
                    v,
                    b.get(k.as_str()).cloned().unwrap_or(Value::Null)
                )
            })
    }

    /// The recipe as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A recipe from JSON text (`run.json`'s `recipe`, a checkpoint's `orl.recipe`).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| AlgoError::Config(format!("bad recipe: {e}")))
    }
}
