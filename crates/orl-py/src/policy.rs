//! `orl._orl.Policy` (a trained agent loaded from a checkpoint), `train`, and `evaluate` on
//! an orl environment.
//!
//! Training runs with the GIL released (`Python::detach`): other Python threads go on, and
//! the interpreter is entered again only to call the caller's `callback` with each logged row
//! and its `progress` hook at most every 0.2 s, where pending signals are also checked, so
//! Ctrl-C stops the run within that time. A Python exception from either (a
//! `KeyboardInterrupt` included) stops the run through `orl_app`'s [`Stop`]; the run folder
//! keeps its last scheduled checkpoint and says `interrupted`, and the exception is raised
//! again, with orl's note on what was kept.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use orl_algos::{Agent, AlgoKind, EvalPlan, RecipeRequest, RewardChoice, Schedule};
use orl_app::{AppError, Observer, RunDir, Stop, TrainJob};
use orl_data::convert::npz::{NpyData, NpyRef, decode_npy_data};
use orl_envs::{EvalReport, OwnedAction, RefScores};
use orl_nets::{Device, ExportHeader, save_export};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::dataset::{PyDataset, Wire};
use crate::errors;

/// A trained policy: acts on batches of observations.
///
/// The agent sits behind a mutex, so that a policy can be used from several Python threads
/// and long calls (evaluation, OPE) can release the GIL; calls on one policy take turns.
#[pyclass(module = "orl._orl", name = "Policy")]
pub struct PyPolicy {
    agent: Mutex<Agent>,
    /// The checkpoint it was loaded from.
    pub(crate) checkpoint: PathBuf,
    /// The recipe's discount, when the checkpoint holds a recipe.
    pub(crate) gamma: Option<f64>,
    meta: std::collections::HashMap<String, String>,
}

impl PyPolicy {
    /// Loads the agent at `path` (a run folder or a `.safetensors` checkpoint).
    pub(crate) fn load(path: &std::path::Path) -> PyResult<Self> {
        let ck = RunDir::resolve_checkpoint(path);
        let (mut agent, recipe, meta) =
            Agent::from_checkpoint(&ck, &Device::Cpu).map_err(errors::algo)?;
        agent.deterministic = true;
        Ok(Self {
            agent: Mutex::new(agent),
            checkpoint: ck,
            gamma: recipe.map(|r| f64::from(r.gamma)),
            meta,
        })
    }

    /// The agent, locked (a panic in an earlier call does not poison it for later ones: every
    /// call starts from the agent's parameters, which no call changes).
    pub(crate) fn agent(&self) -> MutexGuard<'_, Agent> {
        self.agent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The environment the policy was trained for, from its checkpoint.
    pub(crate) fn env_id(&self) -> Option<String> {
        self.meta.get(orl_algos::keys::ENV_ID).cloned()
    }

    /// Reference scores from the checkpoint, else D4RL's for `env`.
    pub(crate) fn reference(&self, env: &str) -> Option<RefScores> {
        match self.meta.get(orl_algos::keys::REF_SCORES) {
            Some(s) => serde_json::from_str::<[f64; 2]>(s)
                .ok()
                .map(|[min, max]| RefScores { min, max }),
            None => RefScores::d4rl(env),
        }
    }
}

#[pymethods]
impl PyPolicy {
    /// Actions for a batch of observations given as `(float32 bytes, rows)`: returns
    /// `(dtype, shape, bytes)` (continuous `<f4` `[rows, act_dim]`, discrete `<i8` `[rows]`).
    fn _act<'py>(
        &self,
        py: Python<'py>,
        observations: Bound<'py, PyBytes>,
        rows: usize,
    ) -> PyResult<Wire<'py>> {
        let mut agent = self.agent();
        let (od, discrete) = {
            let spec = agent.algo.spec();
            (spec.obs_dim, spec.is_discrete())
        };
        let bytes = observations.as_bytes();
        if bytes.len() != rows * od * 4 {
            return Err(errors::value(format!(
                "observations: expected shape (batch, {od}) float32, got {} values for {rows} rows",
                bytes.len() / 4
            )));
        }
        let obs = match decode_npy_data(
            Path::new("<numpy>"),
            "observations",
            "<f4",
            &[rows, od],
            bytes,
        )
        .map_err(errors::data)?
        {
            NpyData::F32(v) => v,
            _ => return Err(errors::value("observations: expected float32")),
        };
        if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
            return Err(errors::value(format!(
                "observations: row {} column {} is not finite",
                i / od,
                i % od
            )));
        }
        let actions = agent.act_raw(&obs).map_err(errors::algo)?;
        let (mut floats, mut ints, mut width) = (Vec::new(), Vec::new(), 0);
        for a in &actions {
            match a {
                OwnedAction::Continuous(v) => {
                    width = v.len();
                    floats.extend_from_slice(v);
                }
                OwnedAction::Discrete(i) => ints.push(*i),
            }
        }
        let (descr, shape, bytes) = if discrete {
            let (d, b) = NpyRef::Int(&ints).encode();
            (d, vec![rows], b)
        } else {
            let (d, b) = NpyRef::F32(&floats).encode();
            (d, vec![rows, width], b)
        };
        Ok((descr, shape, PyBytes::new(py, &bytes)))
    }

    /// Writes the acting network as one safetensors file with a JSON header, observation
    /// normalisation folded in (`orl export`).
    fn export(&self, path: PathBuf) -> PyResult<()> {
        let agent = self.agent();
        let mut model = agent
            .algo
            .policy_model()
            .map_err(errors::algo)?
            .ok_or_else(|| {
                errors::value(format!(
                    "{}'s policy cannot be exported (only the offline algorithms' and the behaviour policies' can)",
                    agent.algo.name()
                ))
            })?;
        if let Some((mean, std)) = &agent.obs_norm {
            model
                .fold_normalization(mean, std)
                .map_err(|e| errors::algo(e.into()))?;
        }
        let spec = agent.algo.spec();
        let n_actions = match spec.action {
            orl_algos::ActionSpec::Discrete { n } => n,
            orl_algos::ActionSpec::Continuous { .. } => 0,
        };
        let header = ExportHeader::for_model(
            &model,
            agent.algo.name(),
            spec.obs_dim,
            n_actions,
            &self.checkpoint.display().to_string(),
        );
        save_export(&path, &model, &header).map_err(|e| errors::algo(e.into()))
    }

    /// Sample actions (`False`, the default, takes the policy's mode).
    #[getter]
    fn stochastic(&self) -> bool {
        !self.agent().deterministic
    }

    #[setter]
    fn set_stochastic(&self, v: bool) {
        self.agent().deterministic = !v;
    }

    /// The algorithm's name.
    #[getter]
    fn algo(&self) -> &'static str {
        self.agent().algo.name()
    }

    /// Observation width.
    #[getter]
    fn obs_dim(&self) -> usize {
        self.agent().algo.spec().obs_dim
    }

    /// True for discrete actions.
    #[getter]
    fn is_discrete(&self) -> bool {
        self.agent().algo.spec().is_discrete()
    }

    /// The environment the policy was trained for (from its checkpoint), if known.
    #[getter]
    fn env_id_(&self) -> Option<String> {
        self.env_id()
    }

    /// The checkpoint file.
    #[getter]
    fn checkpoint(&self) -> PathBuf {
        self.checkpoint.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Policy({}, {})",
            self.agent().algo.name(),
            self.checkpoint.display()
        )
    }
}

/// Loads the policy of a run folder or checkpoint file.
#[pyfunction]
pub fn load(path: PathBuf) -> PyResult<PyPolicy> {
    PyPolicy::load(&path)
}

/// Calls the Python hooks from inside the training loop.
struct PyObserver {
    callback: Option<Py<PyAny>>,
    progress: Option<Py<PyAny>>,
    last: Instant,
    /// The Python exception that stopped the run.
    error: Option<PyErr>,
}

impl PyObserver {
    fn stop(&mut self, e: PyErr) -> Stop {
        let reason = Python::attach(|py| {
            e.get_type(py)
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "an exception".into())
        });
        self.error = Some(e);
        Stop(format!("{reason} raised in Python"))
    }
}

impl Observer for PyObserver {
    fn started(&mut self, step: usize, total: usize) {
        if let Some(p) = &self.progress {
            let r = Python::attach(|py| p.call1(py, (step, total)).map(|_| ()));
            if let Err(e) = r {
                self.error = Some(e);
            }
        }
    }
    fn updated(&mut self, step: usize) -> Result<(), Stop> {
        if let Some(e) = self.error.take() {
            return Err(self.stop(e));
        }
        if self.last.elapsed() < Duration::from_millis(200) {
            return Ok(());
        }
        self.last = Instant::now();
        let r = Python::attach(|py| {
            py.check_signals()?;
            if let Some(p) = &self.progress {
                p.call1(py, (step, py.None()))?;
            }
            Ok::<_, PyErr>(())
        });
        r.map_err(|e| self.stop(e))
    }
    fn logged(&mut self, row: &serde_json::Map<String, serde_json::Value>) -> Result<(), Stop> {
        let Some(cb) = &self.callback else {
            return Ok(());
        };
        let text = serde_json::Value::Object(row.clone()).to_string();
        let r = Python::attach(|py| {
            let row = py.import("json")?.call_method1("loads", (text,))?;
            cb.call1(py, (row,)).map(|_| ())
        });
        r.map_err(|e| self.stop(e))
    }
}

/// `orl train` as a function: trains `algo` on `dataset` into the run folder `out`.
#[pyfunction]
#[pyo3(signature = (algo, dataset, out, steps, seed, config_json=None, batch_size=None,
    normalize_observations=None, reward_transform="auto", gamma=None, eval_env=None,
    eval_every=5000, eval_episodes=10, log_every=1000, checkpoint_every=None, resume=false,
    dataset_path=None, callback=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn _train(
    py: Python<'_>,
    algo: &str,
    dataset: &PyDataset,
    out: PathBuf,
    steps: usize,
    seed: u64,
    config_json: Option<String>,
    batch_size: Option<usize>,
    normalize_observations: Option<bool>,
    reward_transform: &str,
    gamma: Option<f32>,
    eval_env: Option<String>,
    eval_every: usize,
    eval_episodes: usize,
    log_every: usize,
    checkpoint_every: Option<usize>,
    resume: bool,
    dataset_path: Option<String>,
    callback: Option<Py<PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Py<PyDict>> {
    crate::ensure_threads(None)?;
    let kind: AlgoKind = algo.parse().map_err(errors::algo)?;
    let config = config_json
        .map(|t| serde_json::from_str::<serde_json::Value>(&t))
        .transpose()
        .map_err(|e| errors::value(format!("config: not JSON-serialisable: {e}")))?;
    let checkpoint_every = checkpoint_every.unwrap_or(orl_algos::DEFAULT_REPLAY_SEGMENT);
    let request = RecipeRequest {
        config,
        batch_size,
        normalize_observations,
        reward: reward_transform
            .parse::<RewardChoice>()
            .map_err(errors::algo)?,
        gamma,
        eval_env: eval_env.clone(),
        replay_segment: Some(checkpoint_every),
        dataset_path,
        ..RecipeRequest::new(steps, seed)
    };
    let job = TrainJob {
        algo: kind,
        request,
        schedule: Schedule {
            log_every,
            diagnostics: true,
            eval: eval_env.as_ref().map(|_| EvalPlan {
                every: eval_every,
                episodes: eval_episodes,
            }),
            checkpoint_every: Some(checkpoint_every),
        },
        out,
        resume,
    };
    let ds = dataset.inner.clone();
    let mut observer = PyObserver {
        callback,
        progress,
        last: Instant::now(),
        error: None,
    };
    let result = py.detach(|| orl_app::train(&job, ds, &mut observer));
    match result {
        Ok(s) => {
            let text = serde_json::json!({
                "run": s.run.display().to_string(),
                "steps": s.steps,
                "last_row": s.last_row,
                "recipe": s.recipe,
            })
            .to_string();
            let d = py.import("json")?.call_method1("loads", (text,))?;
            Ok(d.cast_into::<PyDict>()?.unbind())
        }
        Err(e @ AppError::Interrupted { .. }) => match observer.error.take() {
            Some(py_err) => {
                let note = errors::message(&e);
                let _ = py_err
                    .value(py)
                    .call_method1("add_note", (format!("orl: {note}"),));
                Err(py_err)
            }
            None => Err(errors::app(e)),
        },
        Err(e) => Err(errors::app(e)),
    }
}

/// The evaluation report as JSON text.
fn report_json(env: &str, seed: u64, r: &EvalReport) -> String {
    serde_json::json!({
        "env": env, "episodes": r.returns.len(), "seed": seed,
        "returns": r.returns, "lengths": r.lengths,
        "mean": r.mean, "std": r.std, "min": r.min, "max": r.max,
        "normalized_mean": r.normalized_mean, "normalized_std": r.normalized_std,
    })
    .to_string()
}

/// Evaluates `policy` on the orl environment `env` (a Gymnasium id): episode `i` is reset
/// with `seed + i`. Returns the report as JSON text.
#[pyfunction]
#[pyo3(signature = (policy, env, episodes=10, seed=0))]
pub fn _evaluate_orl(
    py: Python<'_>,
    policy: &PyPolicy,
    env: &str,
    episodes: usize,
    seed: u64,
) -> PyResult<String> {
    if episodes == 0 {
        return Err(errors::value("episodes: expected at least 1, got 0"));
    }
    crate::ensure_threads(None)?;
    let reference = policy.reference(env);
    let mut e = orl_envs::make(env).map_err(errors::env)?;
    let mut guard = policy.agent();
    let agent: &mut Agent = &mut guard;
    let (returns, lengths) = py
        .detach(|| -> orl_envs::Result<(Vec<f64>, Vec<usize>)> {
            let mut returns = Vec::with_capacity(episodes);
            let mut lengths = Vec::with_capacity(episodes);
            for i in 0..episodes {
                let (ret, len) = orl_envs::run_episode(&mut e, agent, seed + i as u64, i)?;
                returns.push(ret);
                lengths.push(len);
            }
            Ok((returns, lengths))
        })
        .map_err(errors::env)?;
    Ok(report_json(
        env,
        seed,
        &EvalReport::from_episodes(returns, lengths, reference),
    ))
}

/// The report of episodes run by the Python side (a Gymnasium environment object), as JSON
/// text; `reference` is `(random, expert)` or the policy's.
#[pyfunction]
#[pyo3(signature = (policy, env_name, seed, returns, lengths, reference=None))]
pub fn _report(
    policy: &PyPolicy,
    env_name: &str,
    seed: u64,
    returns: Vec<f64>,
    lengths: Vec<usize>,
    reference: Option<(f64, f64)>,
) -> String {
    let reference = reference
        .map(|(min, max)| RefScores { min, max })
        .or_else(|| policy.reference(env_name));
    report_json(
        env_name,
        seed,
        &EvalReport::from_episodes(returns, lengths, reference),
    )
}
