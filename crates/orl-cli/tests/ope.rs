//! `orl ope` end to end: every estimator on a Pendulum dataset with logged propensities, the
//! undefined importance weights of a deterministic policy flagged, and a policy of the wrong
//! action kind refused with a clear error.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ok, orl};
use orl_algos::collect;
use orl_data::{WriteOptions, write_parquet};
use orl_envs::{OwnedAction, make};

fn pendulum(dir: &Path) -> String {
    common::pendulum(dir, 2000, 0.5)
}

fn cartpole(dir: &Path) -> String {
    let mut env = make("CartPole-v1").unwrap();
    let mut policy = |o: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
        Ok((OwnedAction::Discrete(i64::from(o[2] > 0.0)), None))
    };
    let ds = collect(&mut env, &mut policy, 300, 0).unwrap();
    let p = dir.join("cartpole.parquet");
    write_parquet(&ds, &p, &WriteOptions::default()).unwrap();
    p.display().to_string()
}

fn train(dir: &Path, data: &str, algo: &str, config: &str) -> String {
    let cfg = dir.join(format!("{algo}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let out = dir.join(algo);
    ok(&[
        "train",
        "--algo",
        algo,
        "--dataset",
        data,
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "100",
        "--batch-size",
        "64",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    out.display().to_string()
}

fn ope_config(dir: &Path) -> String {
    let p = dir.join("ope.toml");
    std::fs::write(
        &p,
        "gamma = 0.95\n[fqe]\nhidden = [32]\nsteps = 300\n[model]\nhidden = [32]\nsteps = 300\nrollouts = 2\n[behavior]\nhidden = [32]\nsteps = 200\n",
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn every_estimator_reports_a_value_and_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let data = pendulum(dir.path());
    let run = train(
        dir.path(),
        &data,
        "bc",
        "hidden = [32, 32]\nloss = \"nll\"\n",
    );
    let cfg = ope_config(dir.path());
    let json = ok(&[
        "ope",
        "--policy",
        &run,
        "--dataset",
        &data,
        "--config",
        &cfg,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["behavior_source"].as_str().unwrap().starts_with("logged"));
    let est = v["estimates"].as_array().unwrap();
    assert_eq!(est.len(), 9);
    for e in est {
        let name = e["estimator"].as_str().unwrap();
        let value = e["value"].as_f64().unwrap_or_else(|| panic!("{name}: {e}"));
        let (lo, hi) = (
            e["interval"]["low"].as_f64().unwrap(),
            e["interval"]["high"].as_f64().unwrap(),
        );
        assert!(value.is_finite() && lo <= hi, "{name}: {e}");
    }
    // The table form prints one row per estimator and says where mu came from.
    let table = ok(&[
        "ope",
        "--policy",
        &run,
        "--dataset",
        &data,
        "--config",
        &cfg,
        "--estimators",
        "wis,fqe",
    ]);
    assert!(table.contains("behaviour probabilities: logged"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("wis "))
            && table.lines().any(|l| l.starts_with("fqe ")),
        "{table}"
    );
}

#[test]
fn deterministic_policies_get_flagged_importance_weights_and_wrong_spaces_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = pendulum(dir.path());
    let run = train(dir.path(), &data, "td3bc", "hidden = [32, 32]\n");
    let cfg = ope_config(dir.path());
    let json = ok(&[
        "ope",
        "--policy",
        &run,
        "--dataset",
        &data,
        "--config",
        &cfg,
        "--estimators",
        "is,wis,fqe",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let est = v["estimates"].as_array().unwrap();
    for e in &est[..2] {
        assert!(e["value"].is_null(), "{e}");
        assert!(
            e["warnings"][0].as_str().unwrap().contains("deterministic"),
            "{e}"
        );
    }
    assert!(
        est[2]["value"].as_f64().is_some(),
        "FQE works for deterministic policies"
    );
    // A continuous policy on discrete data.
    let cp = cartpole(dir.path());
    let out = orl(&["ope", "--policy", &run, "--dataset", &cp, "--config", &cfg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("continuous") && err.contains("discrete"),
        "{err}"
    );
    // Unknown estimator names are refused.
    let out = orl(&[
        "ope",
        "--policy",
        &run,
        "--dataset",
        &data,
        "--estimators",
        "is,magic",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown estimator `magic`"));
}
