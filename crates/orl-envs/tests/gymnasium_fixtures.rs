//! Replays every recorded Gymnasium episode under the fixtures root (`classic/*.json` and
//! `mujoco/*.json`): set the recorded initial state, apply the recorded actions, and require
//! every observation to match bit for bit in the file's dtype, every reward exactly (Pendulum
//! within 1e-9, see the fixtures' README) and every terminated/truncated flag.
//!
//! The root is `$ORL_FIXTURES`, defaulting to `../shared/fixtures` beside the project root.
//! Files are discovered, not listed. The MuJoCo test exists only with `--features mujoco` (CI
//! runs it); without the feature it is compiled out rather than passing as a no-op. When `CI`
//! or `ORL_FIXTURES` is set, a missing fixtures folder fails the tests instead of skipping them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests unwrap: a failure is the assertion

use std::path::{Path, PathBuf};

use orl_envs::{Action, Env, make};
use orl_testkit::fixtures_root;
use serde_json::Value;

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Compares an observation bit for bit in `dtype`.
fn same_bits(ours: &[f64], theirs: &[f64], dtype: &str) -> bool {
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|(&a, &b)| match dtype {
            "float32" => f64::from(a as f32) == a && (a as f32).to_bits() == (b as f32).to_bits(),
            _ => a.to_bits() == b.to_bits(),
        })
}

/// Replays every episode of one fixture file; returns (episodes, steps, rewards off by > 0).
fn replay_file(path: &Path) -> (usize, usize, usize) {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let id = file["env_id"].as_str().unwrap();
    let dtype = file["dtype"].as_str().unwrap();
    let reward_tol = if id == "Pendulum-v1" { 1e-9 } else { 0.0 };
    let mut env = make(id).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        env.max_episode_steps(),
        file["max_episode_steps"].as_u64().map(|v| v as usize),
        "{id}: time limit"
    );
    let discrete = file["action_space"]["type"] == "Discrete";
    let (mut n_steps, mut inexact) = (0, 0);
    let episodes = file["episodes"].as_array().unwrap();
    for (e, ep) in episodes.iter().enumerate() {
        let state: Vec<f64> = match ep.get("initial_state") {
            Some(s) => floats(s),
            None => [floats(&ep["qpos0"]), floats(&ep["qvel0"])].concat(),
        };
        env.reset(Some(ep["seed"].as_u64().unwrap()));
        let mut obs = Vec::new();
        env.set_state(&state, &mut obs).unwrap();
        let initial = floats(&ep["initial_obs"]);
        assert!(
            same_bits(&obs, &initial, dtype),
            "{id} ep {e}: initial obs {obs:?} vs {initial:?}"
        );
        for (t, step) in ep["steps"].as_array().unwrap().iter().enumerate() {
            let action32: Vec<f32>;
            let action = if discrete {
                Action::Discrete(step["action"].as_i64().unwrap())
            } else {
                action32 = floats(&step["action"]).iter().map(|&v| v as f32).collect();
                Action::Continuous(&action32)
            };
            let s = env.step(action).unwrap();
            let want = floats(&step["obs"]);
            assert!(
                same_bits(&s.observation, &want, dtype),
                "{id} ep {e} step {t}: obs\n ours   {:?}\n theirs {want:?}",
                s.observation
            );
            let r = step["reward"].as_f64().unwrap();
            assert!(
                (s.reward - r).abs() <= reward_tol,
                "{id} ep {e} step {t}: reward {} vs {r}",
                s.reward
            );
            if s.reward != r {
                inexact += 1;
            }
            assert_eq!(
                s.terminated,
                step["terminated"].as_bool().unwrap(),
                "{id} ep {e} step {t}: terminated"
            );
            assert_eq!(
                s.truncated,
                step["truncated"].as_bool().unwrap(),
                "{id} ep {e} step {t}: truncated"
            );
            n_steps += 1;
        }
        assert_eq!(
            ep["steps"].as_array().unwrap().len(),
            ep["num_steps"].as_u64().unwrap() as usize,
            "{id} ep {e}: step count"
        );
    }
    (episodes.len(), n_steps, inexact)
}

fn replay_folder(sub: &str) -> usize {
    let Some(root) = fixtures_root() else {
        return 0;
    };
    let files = json_files(&root.join(sub));
    assert!(
        !files.is_empty(),
        "no {sub}/*.json under {}",
        root.display()
    );
    for f in &files {
        let (eps, steps, inexact) = replay_file(f);
        eprintln!(
            "{}: {eps} episodes, {steps} steps replayed, {inexact} rewards not bit-equal",
            f.display()
        );
    }
    files.len()
}

#[test]
fn classic_control_matches_gymnasium_step_for_step() {
    replay_folder("classic");
}

#[cfg(feature = "mujoco")]
#[test]
fn mujoco_locomotion_matches_gymnasium_step_for_step() {
    replay_folder("mujoco");
}

/// orl's `reset(Some(seed))` puts each classic environment in exactly the start state
/// Gymnasium's `reset(seed=seed)` recorded (`initial_state`, bit for bit): the resets draw
/// from NumPy's generator (`orl_envs::np_random`) as Gymnasium's do.
#[test]
fn classic_resets_draw_gymnasium_s_start_states_bit_for_bit() {
    let Some(root) = fixtures_root() else { return };
    let checked = for_each_reset(&root.join("classic"), |env_id, seed, ep, state| {
        let want = floats(&ep["initial_state"]);
        assert!(
            same_bits(state, &want, "float64"),
            "{env_id} seed {seed}: {state:?} vs Gymnasium's {want:?}"
        );
    });
    assert!(checked >= 25, "only {checked} episodes checked");
}

/// Resets orl's environment of every recorded episode under `folder` with the episode's seed
/// and hands `(env_id, seed, episode, state)` to `check`; returns the episodes checked.
fn for_each_reset(folder: &Path, mut check: impl FnMut(&str, u64, &Value, &[f64])) -> usize {
    let files = json_files(folder);
    assert!(!files.is_empty(), "no fixtures under {}", folder.display());
    let mut checked = 0;
    for path in files {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let env_id = file["env_id"].as_str().unwrap();
        let mut env = make(env_id).unwrap();
        let mut obs = Vec::new();
        for ep in file["episodes"].as_array().unwrap() {
            let seed = ep["seed"].as_u64().unwrap();
            env.reset_into(Some(seed), &mut obs);
            check(env_id, seed, ep, &env.state());
            checked += 1;
        }
    }
    checked
}

/// The same for MuJoCo locomotion (`qpos0`, `qvel0` after `reset(seed=seed)`): Hopper and
/// Walker2d draw both from NumPy's `uniform`, HalfCheetah its `qvel` noise from NumPy's
/// `standard_normal` (the ziggurat, `orl_envs::np_random`); all match bit for bit.
#[cfg(feature = "mujoco")]
#[test]
fn mujoco_resets_draw_gymnasium_s_start_states() {
    let Some(root) = fixtures_root() else { return };
    let checked = for_each_reset(&root.join("mujoco"), |env_id, seed, ep, state| {
        let (qpos, qvel) = (floats(&ep["qpos0"]), floats(&ep["qvel0"]));
        let (got_pos, got_vel) = state.split_at(qpos.len());
        assert!(
            same_bits(got_pos, &qpos, "float64"),
            "{env_id} seed {seed}: qpos {got_pos:?} vs Gymnasium's {qpos:?}"
        );
        assert_eq!(got_vel.len(), qvel.len(), "{env_id}: qvel length");
        assert!(
            same_bits(got_vel, &qvel, "float64"),
            "{env_id} seed {seed}: qvel {got_vel:?} vs Gymnasium's {qvel:?}"
        );
    });
    assert!(checked >= 9, "only {checked} episodes checked");
}
