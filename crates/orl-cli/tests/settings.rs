//! Settings are validated before any work starts: `orl train` with a bad setting exits with
//! code 1 and a message naming it, never a panic and never "diverged"; and the recipe a run
//! records is the one `orl diagnose` reads back.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ok, orl};

/// `orl train` on a small Pendulum dataset with `extra` flags; returns (exit code, stderr).
fn train(dir: &Path, algo: &str, config: Option<&str>, extra: &[&str]) -> (Option<i32>, String) {
    let data = common::pendulum(dir, 500, 0.3);
    let out = dir.join(format!("run-{}", extra.join("_").replace(['-', '/'], "")));
    let mut args = vec![
        "train".to_string(),
        "--algo".into(),
        algo.into(),
        "--dataset".into(),
        data,
        "--quiet".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(c) = config {
        let p = dir.join(format!("{algo}-{}.toml", c.len()));
        std::fs::write(&p, c).unwrap();
        args.extend(["--config".into(), p.display().to_string()]);
    }
    if !extra.contains(&"--steps") {
        args.extend(["--steps".into(), "3".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = orl(&refs);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_setting_error(code: Option<i32>, err: &str, names: &[&str]) {
    assert_eq!(code, Some(1), "exit code for: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(!err.contains("diverged"), "reported as divergence: {err}");
    for n in names {
        assert!(err.contains(n), "`{n}` not named in: {err}");
    }
}

#[test]
fn bad_settings_exit_1_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, e) = train(d, "iql", Some("hidden = [0]\n"), &[]);
    assert_setting_error(c, &e, &["iql.hidden", "[0]"]);
    let (c, e) = train(d, "cql", Some("actor_lr = -0.001\n"), &[]);
    assert_setting_error(c, &e, &["cql.actor_lr", "-0.001", "> 0"]);
    let (c, e) = train(d, "bc", None, &["--batch-size", "0"]);
    assert_setting_error(c, &e, &["batch_size", "0"]);
    let (c, e) = train(d, "td3bc", None, &["--steps", "0"]);
    assert_setting_error(c, &e, &["steps", "0"]);
    let (c, e) = train(d, "iql", None, &["--eval-env", "Pendulum-v9"]);
    assert_setting_error(c, &e, &["eval_env", "Pendulum-v9", "Pendulum-v1"]);
    let (c, e) = train(d, "bcq", Some("tau = 2.0\n"), &[]);
    assert_setting_error(c, &e, &["bcq.tau", "(0, 1]"]);
    let (c, e) = train(d, "iql", None, &["--gamma", "1.5"]);
    assert_setting_error(c, &e, &["gamma", "1.5"]);
    let (c, e) = train(
        d,
        "iql",
        None,
        &["--eval-env", "Pendulum-v1", "--eval-episodes", "0"],
    );
    assert_setting_error(c, &e, &["eval_episodes", "0"]);
    let (c, e) = train(d, "iql", None, &["--log-every", "0"]);
    assert_setting_error(c, &e, &["log_every"]);
    let (c, e) = train(d, "iql", None, &["--reward-transform", "squash"]);
    assert_setting_error(c, &e, &["reward_transform", "squash"]);
    // Nothing was trained: no run folder holds a checkpoint.
    for entry in std::fs::read_dir(d).unwrap() {
        let p = entry.unwrap().path();
        assert!(
            !p.join("checkpoint.safetensors").exists(),
            "{}",
            p.display()
        );
    }
}

/// `orl diagnose` on a default IQL run (IQL's reward scaling with Pendulum's horizon 200)
/// reports the over-estimation ratio of the training log's last `diag_*` row: both compute it
/// from the recorded recipe.
#[test]
fn diagnose_reports_the_ratio_training_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::pendulum(dir.path(), 1000, 0.3);
    let cfg = dir.path().join("iql.toml");
    std::fs::write(&cfg, "hidden = [32, 32]\n").unwrap();
    let run = dir.path().join("iql");
    ok(&[
        "train",
        "--algo",
        "iql",
        "--dataset",
        &data,
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "60",
        "--log-every",
        "30",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    let recipe = &run_json["recipe"];
    assert_eq!(
        recipe["reward_transform"]["kind"], "return_range",
        "{recipe}"
    );
    assert_eq!(recipe["horizon"], 200);
    assert_eq!(
        recipe["config"]["actor_cosine_steps"], 60,
        "schedule over --steps"
    );
    let rows = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(rows.lines().last().unwrap()).unwrap();
    let logged = last["diag_overestimation_ratio"].as_f64().unwrap();
    let out = ok(&["diagnose", run.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let now = v["diagnostics"]["overestimation_ratio"].as_f64().unwrap();
    assert!(
        (now - logged).abs() <= 1e-9 * logged.abs().max(1.0),
        "diagnose {now} vs training log {logged}"
    );
    // Without the recipe's reward scaling the ratio would differ by the scale.
    assert!(v["diagnostics"]["return_mean"].as_f64().unwrap().abs() > 0.0);
}
