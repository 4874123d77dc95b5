//! Training into a run folder: the one implementation behind `orl train` and `orl.train`.
//!
//! A new run writes `run.json` (the recipe and the schedule) and a checkpoint before the first
//! update, so that every later failure leaves a good one; then the [`Trainer`] runs, and
//! every logged row rewrites `metrics.jsonl` / `metrics.csv`, every checkpoint step rewrites
//! the checkpoint, and `status.json` says `running`, `finished`, `diverged` or `interrupted`.
//! A resume rebuilds the recipe from the same request at the stored run's length, refuses
//! when it differs from the stored one (naming the first differing field), loads the
//! checkpoint and drops the metric rows past it; resumed runs equal uninterrupted ones,
//! because checkpoints fall on the replay stream's restarts.
//!
//! The caller watches through an [`Observer`]: a progress bar, a Python callback. An observer
//! that returns [`Stop`] ends the run at once with [`AppError::Interrupted`]; the checkpoint
//! kept is the last scheduled one (a checkpoint between replay restarts could not be resumed
//! bit for bit, so none is written at the stop).

use std::path::PathBuf;

use orl_algos::{AlgoError, AlgoKind, Hooks, LogRow, Recipe, RecipeRequest, Schedule, Trainer};
use orl_data::Dataset;
use orl_nets::Device;
use serde_json::{Map, Value, json};

use crate::AppError;
use crate::run_dir::{RunDir, read_json, read_rows, write_json, write_rows};

/// What to train and where.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The algorithm.
    pub algo: AlgoKind,
    /// Updates, seed and the caller's settings; the recipe is derived from it.
    pub request: RecipeRequest,
    /// Logging, diagnostics, evaluation and checkpoint intervals.
    pub schedule: Schedule,
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint instead of starting one.
    pub resume: bool,
}

/// The caller asks the run to stop; `0` says why (shown in the error and in `status.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop(pub String);

/// What the caller sees of a run. Every method has a default that does nothing.
pub trait Observer {
    /// Before the first update: the update the run starts at (0, or a resumed run's) and the
    /// run's length.
    fn started(&mut self, _step: usize, _total: usize) {}
    /// After every update.
    fn updated(&mut self, _step: usize) -> Result<(), Stop> {
        Ok(())
    }
    /// After every logged row (the flat object written to `metrics.jsonl`).
    fn logged(&mut self, _row: &Map<String, Value>) -> Result<(), Stop> {
        Ok(())
    }
    /// After every checkpoint written.
    fn checkpointed(&mut self, _step: usize) {}
}

/// An observer that watches nothing.
pub struct Silent;
impl Observer for Silent {}

/// A finished run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The run folder.
    pub run: PathBuf,
    /// The recipe it ran.
    pub recipe: Recipe,
    /// Updates done.
    pub steps: usize,
    /// The last logged row.
    pub last_row: Option<Map<String, Value>>,
}

/// The recipe `job` asks for on `ds` with `steps` updates (validated).
pub fn recipe_of(job: &TrainJob, ds: &Dataset, steps: usize) -> Result<Recipe, AppError> {
    let req = RecipeRequest {
        steps,
        ..job.request.clone()
    };
    Ok(Recipe::new(job.algo, ds, &req)?)
}

/// Trains `job` on `ds` into its run folder (see the module doc).
pub fn train(
    job: &TrainJob,
    ds: Dataset,
    observer: &mut dyn Observer,
) -> Result<TrainSummary, AppError> {
    let recipe = recipe_of(job, &ds, job.request.steps)?;
    job.schedule.validate(&recipe)?;
    let run = RunDir::new(&job.out);
    let ck = run.checkpoint();
    let (mut trainer, rows) = if job.resume {
        if !ck.exists() {
            return Err(AppError::NoCheckpoint { path: ck });
        }
        let old = read_json(&run.run_json())?;
        let saved: Recipe = serde_json::from_value(old["recipe"].clone())
            .map_err(|e| AppError::bad_file(&run.run_json(), format!("no valid `recipe`: {e}")))?;
        // Compared at the run's own length: settings that follow the length (IQL's schedule)
        // were fixed when it started.
        if let Some(difference) = recipe_of(job, &ds, saved.steps)?.differs_from(&saved) {
            return Err(AppError::RecipeMismatch {
                path: run.root.clone(),
                difference,
            });
        }
        let mut t = Trainer::new(saved.with_steps(job.request.steps)?, ds, &Device::Cpu)?;
        t.resume(&ck)?;
        let step = t.step();
        let mut rows = read_rows(&run.metrics_jsonl())?;
        rows.retain(|r| {
            r.get("step")
                .and_then(Value::as_u64)
                .is_some_and(|s| s as usize <= step)
        });
        (t, rows)
    } else {
        if ck.exists() {
            return Err(AppError::RunExists { path: run.root });
        }
        let s = &job.schedule;
        let record = json!({
            "recipe": recipe,
            "schedule": {"log_every": s.log_every,
                         "eval_every": s.eval.map(|e| e.every),
                         "eval_episodes": s.eval.map(|e| e.episodes),
                         "checkpoint_every": s.checkpoint_every},
            "orl_version": env!("CARGO_PKG_VERSION"),
            "device": "cpu",
        });
        write_json(&run.run_json(), &record)?;
        let t = Trainer::new(recipe, ds, &Device::Cpu)?;
        // A first checkpoint before any update, so that a divergence always leaves a good one.
        t.save_checkpoint(&ck)?;
        (t, Vec::new())
    };
    write_status(&run, "running", "")?;
    observer.started(trainer.step(), trainer.recipe().steps);
    let mut hooks = RunHooks {
        checkpoint_step: trainer.step(),
        run,
        rows,
        observer,
    };
    let schedule = job.schedule.clone();
    match trainer.run(&schedule, &mut hooks) {
        Ok(()) => {}
        Err(HookError::App(e @ AppError::Diverged { .. })) => return Err(e),
        Err(HookError::App(e)) => {
            let _ = write_status(&hooks.run, "failed", &e.to_string());
            return Err(e);
        }
        Err(HookError::Stopped(Stop(reason))) => {
            let e = AppError::Interrupted {
                step: trainer.step(),
                checkpoint_step: hooks.checkpoint_step,
                checkpoint: hooks.run.checkpoint(),
                reason,
            };
            write_status(&hooks.run, "interrupted", &e.to_string())?;
            return Err(e);
        }
    }
    write_status(&hooks.run, "finished", "")?;
    Ok(TrainSummary {
        run: hooks.run.root.clone(),
        recipe: trainer.recipe().clone(),
        steps: trainer.step(),
        last_row: hooks.rows.last().cloned(),
    })
}

/// Writes `status.json`.
fn write_status(run: &RunDir, status: &str, message: &str) -> Result<(), AppError> {
    write_json(
        &run.status(),
        &json!({"status": status, "message": message}),
    )
}

/// Why the loop stopped early.
enum HookError {
    App(AppError),
    Stopped(Stop),
}

impl From<AlgoError> for HookError {
    fn from(e: AlgoError) -> Self {
        Self::App(e.into())
    }
}

impl From<AppError> for HookError {
    fn from(e: AppError) -> Self {
        Self::App(e)
    }
}

/// Writes the run folder as the loop goes and tells the observer.
struct RunHooks<'a> {
    run: RunDir,
    rows: Vec<Map<String, Value>>,
    observer: &'a mut dyn Observer,
    /// The update of the last checkpoint written.
    checkpoint_step: usize,
}

impl Hooks for RunHooks<'_> {
    type Error = HookError;
    fn on_update(&mut self, t: &Trainer) -> Result<(), HookError> {
        self.observer.updated(t.step()).map_err(HookError::Stopped)
    }
    fn on_log(&mut self, _: &Trainer, row: &LogRow) -> Result<(), HookError> {
        let row = row.to_json();
        self.rows.push(row);
        write_rows(
            &self.run.metrics_jsonl(),
            &self.run.metrics_csv(),
            &self.rows,
        )?;
        let last = self.rows.last().cloned().unwrap_or_default();
        self.observer.logged(&last).map_err(HookError::Stopped)
    }
    fn on_checkpoint(&mut self, t: &Trainer) -> Result<(), HookError> {
        t.save_checkpoint(&self.run.checkpoint())?;
        self.checkpoint_step = t.step();
        self.observer.checkpointed(t.step());
        Ok(())
    }
    fn on_diverged(&mut self, _: &Trainer, e: &AlgoError) -> Result<(), HookError> {
        let err = AppError::Diverged {
            cause: e.to_string(),
            checkpoint: self.run.checkpoint(),
        };
        write_status(&self.run, "diverged", &err.to_string())?;
        Err(HookError::App(err))
    }
}
