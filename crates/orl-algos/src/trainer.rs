//! The one training loop: a [`Trainer`] runs a [`Recipe`] on its dataset, with [`Hooks`] for
//! progress, logged rows (averaged metrics, diagnostics, evaluation), checkpoints and the
//! divergence guard. `orl train`, `bench-d4rl`, `learn-pendulum` and `ope-bench` all run
//! through it; none builds a spec, a replay or a loop of its own.
//!
//! Per update `t = 0, 1, ...`: at `t % replay_segment == 0` the replay stream restarts from
//! `recipe.replay_seed(t)` (so that a run resumed from a checkpoint at such a step draws the
//! batches an uninterrupted one does); one batch of `batch_size`; one `update`. After update
//! `t + 1`: a log row every `log_every` (and at the end), an evaluation every `eval.every` (and
//! at the end) from the reset seeds `recipe.eval_seed(t + 1) + i`, a checkpoint every
//! `checkpoint_every` (and at the end).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use orl_data::{Batch, Dataset, Replay};
use serde_json::{Value, json};

use crate::agent::{Agent, normalize_observations};
use crate::common::Metrics;
use crate::diagnostics::{Diagnostics, diagnose, probe_rows, returns_to_go};
use crate::error::{AlgoError, Result};
use crate::recipe::{Recipe, check_env, spec_of};
use crate::validate as v;

/// Checkpoint metadata keys the trainer writes beside the algorithm's own.
pub mod keys {
    /// The run's [`crate::Recipe`] as JSON.
    pub const RECIPE: &str = "orl.recipe";
    /// Observation normalisation: JSON `[[mean...], [std...]]`.
    pub const OBS_NORM: &str = "orl.obs_norm";
    /// The dataset path.
    pub const DATASET: &str = "orl.dataset";
    /// The evaluation environment id.
    pub const ENV_ID: &str = "orl.env_id";
    /// Reference scores `[min, max]`.
    pub const REF_SCORES: &str = "orl.ref_scores";
}

/// Rows of the dataset the diagnostics probe during training and in `orl diagnose`.
pub const DIAGNOSTIC_ROWS: usize = 1000;

/// Periodic evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalPlan {
    /// Evaluate every this many updates (and at the end).
    pub every: usize,
    /// Episodes per evaluation.
    pub episodes: usize,
}

/// What happens around the updates.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// A log row every this many updates (and at the end).
    pub log_every: usize,
    /// Add the diagnostics (Q vs return-to-go, policy vs data) to every row.
    pub diagnostics: bool,
    /// Evaluation in the recipe's environment.
    pub eval: Option<EvalPlan>,
    /// Call [`Hooks::on_checkpoint`] every this many updates (and at the end).
    pub checkpoint_every: Option<usize>,
}

impl Schedule {
    /// No rows, no evaluation, no checkpoints: just the updates.
    pub fn quiet(steps: usize) -> Self {
        Self {
            log_every: steps.max(1),
            diagnostics: false,
            eval: None,
            checkpoint_every: None,
        }
    }
    /// Checks every interval and count (> 0) and that the evaluation environment can be made.
    pub fn validate(&self, recipe: &Recipe) -> Result<()> {
        v::count("log_every", self.log_every, usize::MAX)?;
        if let Some(e) = &self.eval {
            v::count("eval_every", e.every, usize::MAX)?;
            v::count("eval_episodes", e.episodes, 1_000_000)?;
            match &recipe.env_id {
                Some(id) => check_env("eval_env", id)?,
                None => {
                    return Err(AlgoError::setting(
                        "eval_env",
                        "none",
                        "an environment to evaluate in (the dataset names none orl has)",
                    ));
                }
            }
        }
        if let Some(c) = self.checkpoint_every {
            v::count("checkpoint_every", c, usize::MAX)?;
        }
        Ok(())
    }
}

/// Returns of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSummary {
    /// Undiscounted return of each episode.
    pub returns: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their (population) std.
    pub std: f64,
    /// `100 (mean - random) / (expert - random)` with the recipe's reference scores.
    pub normalized: Option<f64>,
    /// The reset seed of the first episode.
    pub first_seed: u64,
}

/// One logged row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Updates done.
    pub step: usize,
    /// Metrics averaged over the updates since the last row.
    pub metrics: BTreeMap<String, f64>,
    /// Updates per second over those updates (update time only).
    pub updates_per_s: f64,
    /// Seconds since the loop started.
    pub wall_s: f64,
    /// Diagnostics, when the schedule asks for them.
    pub diagnostics: Option<Diagnostics>,
    /// Evaluation, when one falls on this row.
    pub eval: Option<EvalSummary>,
}

impl LogRow {
    /// The row as the flat JSON object of `metrics.jsonl` (`diag_*`, `eval_*` keys).
    pub fn to_json(&self) -> serde_json::Map<String, Value> {
        let mut row: serde_json::Map<String, Value> = self
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        row.insert("updates_per_s".into(), json!(self.updates_per_s));
        row.insert("wall_s".into(), json!(self.wall_s));
        row.insert("step".into(), json!(self.step));
        if let Some(d) = &self.diagnostics {
            row.insert("diag_q_mean".into(), json!(d.q_mean));
            row.insert("diag_return_mean".into(), json!(d.return_mean));
            row.insert(
                "diag_overestimation_ratio".into(),
                json!(d.overestimation_ratio),
            );
            row.insert("diag_action_divergence".into(), json!(d.action_divergence));
            row.insert(
                "diag_data_log_likelihood".into(),
                json!(d.data_log_likelihood),
            );
        }
        if let Some(e) = &self.eval {
            row.insert("eval_return".into(), json!(e.mean));
            row.insert("eval_return_std".into(), json!(e.std));
            row.insert("eval_normalized".into(), json!(e.normalized));
        }
        row
    }
}

/// What a caller does around the loop. Every method has a default that does nothing; errors
/// stop the loop and are returned by [`Trainer::run`].
pub trait Hooks {
    /// The caller's error type (`anyhow::Error` in binaries).
    type Error: From<AlgoError>;
    /// After every update.
    fn on_update(&mut self, _trainer: &Trainer) -> Result<(), Self::Error> {
        Ok(())
    }
    /// After every logged row.
    fn on_log(&mut self, _trainer: &Trainer, _row: &LogRow) -> Result<(), Self::Error> {
        Ok(())
    }
    /// At every checkpoint step of the schedule.
    fn on_checkpoint(&mut self, _trainer: &Trainer) -> Result<(), Self::Error> {
        Ok(())
    }
    /// When an update diverged (a NaN/inf loss); the parameters are those before it. The loop
    /// then returns the [`AlgoError::Diverged`] error.
    fn on_diverged(&mut self, _trainer: &Trainer, _error: &AlgoError) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {
    type Error = AlgoError;
}

/// The fixed probe of the diagnostics: rows of the dataset and their discounted return-to-go
/// in the units the critic learns (the recipe's reward transform and discount).
#[derive(Debug, Clone)]
pub struct DiagnosticProbe {
    rows: Vec<usize>,
    returns: Vec<f64>,
    truncated: Vec<bool>,
}

impl DiagnosticProbe {
    /// The probe of `recipe` on `ds` (`rows` rows spread evenly; the trainer uses
    /// [`DIAGNOSTIC_ROWS`]). Training and `orl diagnose` both build it here, so that they
    /// report the same numbers for the same checkpoint.
    pub fn new(recipe: &Recipe, ds: &Dataset, rows: usize) -> Result<Self> {
        let replay = Replay::new(ds.clone(), recipe.replay_config(), 0)?;
        Ok(Self::from_replay(recipe, &replay, rows))
    }
    fn from_replay(recipe: &Recipe, replay: &Replay, rows: usize) -> Self {
        let (scale, shift) = (replay.reward_scale(), replay.reward_shift());
        let (returns, truncated) = returns_to_go(replay.dataset(), f64::from(recipe.gamma), |r| {
            f64::from(r * scale + shift)
        });
        Self {
            rows: probe_rows(replay.dataset().len(), rows),
            returns,
            truncated,
        }
    }
    /// The diagnostics of `agent` on `ds` (the dataset the probe was built on).
    pub fn run(&self, agent: &mut Agent, ds: &Dataset) -> Result<Diagnostics> {
        let stats = agent.obs_norm.clone();
        let norm = move |o: &[f32]| normalize_observations(o, stats.as_ref());
        diagnose(
            &mut *agent.algo,
            ds,
            &self.rows,
            &norm,
            &self.returns,
            &self.truncated,
        )
    }
}

/// A recipe being trained: the agent, its replay and the loop.
pub struct Trainer {
    recipe: Recipe,
    agent: Agent,
    replay: Replay,
    batch: Batch,
    probe: Option<DiagnosticProbe>,
    update_s: f64,
}

impl Trainer {
    /// The agent of `recipe` built fresh (seeded by `recipe.seed`) on `ds`, which must have the
    /// recipe's spaces.
    pub fn new(recipe: Recipe, ds: Dataset, device: &Device) -> Result<Self> {
        let spec = spec_of(&ds)?;
        if spec != recipe.spec {
            return Err(AlgoError::Config(format!(
                "the dataset's spaces {spec:?} differ from the recipe's {:?}",
                recipe.spec
            )));
        }
        let replay = Replay::new(ds, recipe.replay_config(), recipe.replay_seed(0))?;
        let obs_norm = replay.obs_stats().map(|s| (s.mean.clone(), s.std.clone()));
        let algo = recipe.algo.build(
            recipe.spec.clone(),
            Some(&recipe.config),
            recipe.seed,
            device,
        )?;
        Ok(Self {
            agent: Agent::new(algo, obs_norm, device.clone()),
            recipe,
            replay,
            batch: Batch::default(),
            probe: None,
            update_s: 0.0,
        })
    }

    /// Continues from the checkpoint at `path` (written by [`Trainer::save_checkpoint`] for the
    /// same recipe): restores the full training state and the replay stream at its step.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let meta = self.agent.algo.load(path)?;
        if let Some(text) = meta.get(keys::RECIPE) {
            let saved =
                Recipe::from_json(text).map_err(|e| AlgoError::checkpoint(path, e.to_string()))?;
            if let Some(d) = self.recipe.differs_from(&saved) {
                return Err(AlgoError::checkpoint(
                    path,
                    format!("made for another recipe: {d}"),
                ));
            }
        }
        let step = self.step();
        self.replay.reseed(self.recipe.replay_seed(step));
        Ok(())
    }

    /// The recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }
    /// The agent (algorithm and observation normalisation).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }
    /// The agent, mutable.
    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }
    /// The trained agent.
    pub fn into_agent(self) -> Agent {
        self.agent
    }
    /// The replay (its dataset, statistics and reward scale).
    pub fn replay(&self) -> &Replay {
        &self.replay
    }
    /// Updates done.
    pub fn step(&self) -> usize {
        self.agent.algo.steps()
    }
    /// Seconds spent in updates (sampling and `update`) by this trainer.
    pub fn update_seconds(&self) -> f64 {
        self.update_s
    }
    /// The metadata [`Trainer::save_checkpoint`] adds: recipe, normalisation, environment,
    /// reference scores, dataset path.
    pub fn checkpoint_meta(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(keys::RECIPE.into(), self.recipe.to_json());
        if let Some(n) = &self.agent.obs_norm {
            m.insert(
                keys::OBS_NORM.into(),
                serde_json::to_string(n).unwrap_or_default(),
            );
        }
        if let Some(e) = &self.recipe.env_id {
            m.insert(keys::ENV_ID.into(), e.clone());
        }
        if let Some((a, b)) = self.recipe.ref_scores {
            m.insert(
                keys::REF_SCORES.into(),
                serde_json::to_string(&[a, b]).unwrap_or_default(),
            );
        }
        if let Some(p) = &self.recipe.dataset.path {
            m.insert(keys::DATASET.into(), p.clone());
        }
        m
    }

    /// Saves the full training state with [`Trainer::checkpoint_meta`] (atomic).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.agent.algo.save(path, &self.checkpoint_meta())
    }

    /// The diagnostics of the current agent on the training data.
    pub fn diagnose(&mut self) -> Result<Diagnostics> {
        if self.probe.is_none() {
            self.probe = Some(DiagnosticProbe::from_replay(
                &self.recipe,
                &self.replay,
                DIAGNOSTIC_ROWS,
            ));
        }
        let probe = self
            .probe
            .as_ref()
            .ok_or_else(|| AlgoError::Config("no probe".into()))?;
        probe.run(&mut self.agent, self.replay.dataset())
    }

    /// Evaluates the current policy (deterministic, as [`Agent`] acts by default) over
    /// `episodes` episodes from the reset seeds `recipe.eval_seed(tag) + i`, with the acting
    /// noise reseeded from the same seed; `None` without an environment.
    pub fn evaluate(&mut self, episodes: usize, tag: u64) -> Result<Option<EvalSummary>> {
        let Some(id) = self.recipe.env_id.clone() else {
            return Ok(None);
        };
        let mut env = orl_envs::make(&id)?;
        let first = self.recipe.eval_seed(tag);
        self.agent.algo.reseed_acting(first);
        let returns: Vec<f64> = (0..episodes)
            .map(|i| {
                orl_envs::run_episode(&mut env, &mut self.agent, first + i as u64, i).map(|r| r.0)
            })
            .collect::<std::result::Result<_, _>>()?;
        let n = returns.len().max(1) as f64;
        let mean = returns.iter().sum::<f64>() / n;
        let std = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        Ok(Some(EvalSummary {
            normalized: self
                .recipe
                .ref_scores
                .map(|(lo, hi)| 100.0 * (mean - lo) / (hi - lo)),
            returns,
            mean,
            std,
            first_seed: first,
        }))
    }

    /// Trains up to `recipe.steps` updates following `schedule` (see the module doc).
    pub fn run<H: Hooks>(&mut self, schedule: &Schedule, hooks: &mut H) -> Result<(), H::Error> {
        schedule.validate(&self.recipe)?;
        let total = self.recipe.steps;
        let segment = self.recipe.replay_segment;
        let mut window: Vec<Metrics> = Vec::new();
        let mut window_s = 0.0;
        let start = Instant::now();
        while self.step() < total {
            let step = self.step();
            let t = Instant::now();
            if step > 0 && step.is_multiple_of(segment) {
                self.replay.reseed(self.recipe.replay_seed(step));
            }
            self.replay
                .sample_into(&mut self.batch, self.recipe.batch_size);
            let m = match self.agent.algo.update(&self.batch) {
                Ok(m) => m,
                Err(e @ AlgoError::Diverged { .. }) => {
                    hooks.on_diverged(self, &e)?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            let dt = t.elapsed().as_secs_f64();
            self.update_s += dt;
            window_s += dt;
            window.push(m);
            hooks.on_update(self)?;
            let done = self.step();
            let last = done == total;
            if done.is_multiple_of(schedule.log_every) || last {
                let diagnostics = if schedule.diagnostics {
                    Some(self.diagnose()?)
                } else {
                    None
                };
                let eval = match &schedule.eval {
                    Some(p) if done.is_multiple_of(p.every) || last => {
                        self.evaluate(p.episodes, done as u64)?
                    }
                    _ => None,
                };
                let row = LogRow {
                    step: done,
                    metrics: average(&window),
                    updates_per_s: window.len() as f64 / window_s.max(1e-9),
                    wall_s: start.elapsed().as_secs_f64(),
                    diagnostics,
                    eval,
                };
                hooks.on_log(self, &row)?;
                window.clear();
                window_s = 0.0;
            }
            if let Some(c) = schedule.checkpoint_every
                && (done.is_multiple_of(c) || last)
            {
                hooks.on_checkpoint(self)?;
            }
        }
        Ok(())
    }
}

/// Mean of each metric over `window` (metrics absent from some updates, such as TD3+BC's
/// delayed actor loss, average over the updates that have them).
fn average(window: &[Metrics]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<&str, (f64, usize)> = Default::default();
    for m in window {
        for (k, v) in m.iter() {
            let e = sums.entry(k).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k.to_string(), s / n as f64))
        .collect()
}

impl Agent {
    /// Loads the agent saved at `path` by [`Trainer::save_checkpoint`] (or any
    /// [`crate::Algorithm::save`]); returns it with the recipe (where the checkpoint holds one)
    /// and the checkpoint's metadata.
    pub fn from_checkpoint(
        path: &Path,
        device: &Device,
    ) -> Result<(Agent, Option<Recipe>, HashMap<String, String>)> {
        let (_, meta) = orl_nets::checkpoint::load(path, device)?;
        let get = |k: &str| {
            meta.get(k).ok_or_else(|| {
                AlgoError::checkpoint(path, format!("not an orl checkpoint (no `{k}`)"))
            })
        };
        let kind: crate::AlgoKind = get("orl.algo")?
            .parse()
            .map_err(|e: AlgoError| AlgoError::checkpoint(path, e.to_string()))?;
        let spec: crate::Spec = serde_json::from_str(get("orl.spec")?)
            .map_err(|e| AlgoError::checkpoint(path, format!("bad `orl.spec`: {e}")))?;
        let config: Value = serde_json::from_str(get("orl.config")?)
            .map_err(|e| AlgoError::checkpoint(path, format!("bad `orl.config`: {e}")))?;
        let mut algo = kind.build(spec, Some(&config), 0, device)?;
        algo.load(path)?;
        let obs_norm = match meta.get(keys::OBS_NORM) {
            Some(s) => Some(
                serde_json::from_str::<(Vec<f32>, Vec<f32>)>(s).map_err(|e| {
                    AlgoError::checkpoint(path, format!("bad `{}`: {e}", keys::OBS_NORM))
                })?,
            ),
            None => None,
        };
        let recipe = match meta.get(keys::RECIPE) {
            Some(t) => {
                Some(Recipe::from_json(t).map_err(|e| AlgoError::checkpoint(path, e.to_string()))?)
            }
            None => None,
        };
        Ok((Agent::new(algo, obs_norm, device.clone()), recipe, meta))
    }
}
