//! Training into a run folder: a stopped run keeps a loadable checkpoint and resumes to the
//! numbers of an uninterrupted run; a second run into the same folder is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests unwrap: a failure is the assertion

use orl_algos::{Agent, AlgoKind, RecipeRequest, Schedule};
use orl_app::{AppError, Observer, Silent, Stop, TrainJob, train};
use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
use serde_json::Value;

/// 8 episodes of 50 steps, obs 3, one continuous action a = 0.5 * s_0 + noise-free drift.
fn dataset() -> Dataset {
    let (n, od) = (400, 3);
    let obs: Vec<f32> = (0..n * od)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let next: Vec<f32> = obs.iter().map(|x| 0.9 * x).collect();
    let actions: Vec<f32> = (0..n).map(|i| 0.5 * obs[i * od]).collect();
    let rewards: Vec<f32> = actions.iter().map(|a| -a.abs()).collect();
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions: Actions::Continuous {
            dim: 1,
            values: actions,
        },
        rewards,
        terminals: vec![false; n],
        timeouts: (0..n).map(|i| i % 50 == 49).collect(),
        behavior_log_prob: None,
    };
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: od,
            low: None,
            high: None,
        },
        ActionSpace::Continuous {
            dim: 1,
            low: Some(vec![-1.0]),
            high: Some(vec![1.0]),
        },
    );
    let eps: Vec<(i64, usize)> = (0..8).map(|k| (k, 50)).collect();
    Dataset::new(meta, cols, &eps).unwrap()
}

fn job(out: &std::path::Path, steps: usize, resume: bool) -> TrainJob {
    TrainJob {
        algo: AlgoKind::TD3BC,
        request: RecipeRequest {
            config: Some(serde_json::json!({"hidden": [16, 16]})),
            replay_segment: Some(40),
            ..RecipeRequest::new(steps, 7)
        },
        schedule: Schedule {
            log_every: 20,
            diagnostics: false,
            eval: None,
            checkpoint_every: Some(40),
        },
        out: out.to_path_buf(),
        resume,
    }
}

/// Stops at update `at`.
struct StopAt(usize);
impl Observer for StopAt {
    fn updated(&mut self, step: usize) -> Result<(), Stop> {
        if step == self.0 {
            return Err(Stop("test stop".into()));
        }
        Ok(())
    }
}

fn actions(run: &std::path::Path) -> Vec<Vec<f32>> {
    let (mut agent, _, _) =
        Agent::from_checkpoint(&run.join("checkpoint.safetensors"), &orl_nets::Device::Cpu)
            .unwrap();
    agent.deterministic = true;
    let obs: Vec<f32> = (0..30).map(|i| (i as f32 / 15.0) - 1.0).collect();
    agent
        .act_raw(&obs)
        .unwrap()
        .into_iter()
        .map(|a| match a {
            orl_envs::OwnedAction::Continuous(v) => v,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn status(run: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap()
}

#[test]
fn a_stopped_run_keeps_its_checkpoint_and_resumes_to_the_uninterrupted_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (stopped, whole) = (dir.path().join("stopped"), dir.path().join("whole"));
    let err = train(&job(&stopped, 200, false), dataset(), &mut StopAt(95)).unwrap_err();
    match &err {
        AppError::Interrupted {
            step,
            checkpoint_step,
            reason,
            ..
        } => {
            assert_eq!((*step, *checkpoint_step), (95, 80));
            assert_eq!(reason, "test stop");
        }
        other => panic!("expected Interrupted, got {other}"),
    }
    let s = status(&stopped);
    assert_eq!(s["status"], "interrupted");
    assert!(s["message"].as_str().unwrap().contains("update 80"), "{s}");
    // The kept checkpoint loads; rows past it are dropped on resume.
    assert_eq!(actions(&stopped).len(), 10);
    let done = train(&job(&stopped, 200, true), dataset(), &mut Silent).unwrap();
    assert_eq!(done.steps, 200);
    assert_eq!(status(&stopped)["status"], "finished");
    train(&job(&whole, 200, false), dataset(), &mut Silent).unwrap();
    assert_eq!(actions(&stopped), actions(&whole));
    let rows = |run: &std::path::Path| {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["step"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&stopped), rows(&whole));
}

#[test]
fn a_second_run_into_a_folder_and_a_resume_of_nothing_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let err = train(&job(&run, 40, true), dataset(), &mut Silent).unwrap_err();
    assert!(matches!(err, AppError::NoCheckpoint { .. }), "{err}");
    train(&job(&run, 40, false), dataset(), &mut Silent).unwrap();
    let err = train(&job(&run, 40, false), dataset(), &mut Silent).unwrap_err();
    assert!(err.to_string().contains("already holds a run"), "{err}");
    // A resume with other settings names the first differing field.
    let mut other = job(&run, 40, true);
    other.request.seed = 8;
    let err = train(&other, dataset(), &mut Silent).unwrap_err();
    assert!(matches!(err, AppError::RecipeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("seed"), "{err}");
}
