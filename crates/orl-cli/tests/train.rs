//! `orl train` end to end on a small Pendulum dataset: metrics files, checkpoint, `--resume`
//! equal to an uninterrupted run, `orl eval`, `orl diagnose`, `orl export` (with the exported
//! policy acting like the checkpoint), and the divergence guard keeping the last good
//! checkpoint.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ok, orl};
use orl_envs::OwnedAction;

fn dataset(dir: &Path) -> String {
    common::pendulum(dir, 1000, 0.3)
}

fn small_config(dir: &Path) -> String {
    let p = dir.join("td3bc.toml");
    std::fs::write(&p, "hidden = [32, 32]\n").unwrap();
    p.display().to_string()
}

#[test]
fn train_resume_eval_diagnose_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cfg = small_config(dir.path());
    let full = dir.path().join("full");
    let part = dir.path().join("part");
    let common = [
        "train",
        "--algo",
        "td3bc",
        "--dataset",
        &data,
        "--config",
        &cfg,
        "--seed",
        "3",
        "--batch-size",
        "32",
        "--log-every",
        "20",
        "--checkpoint-every",
        "40",
        "--quiet",
    ];
    let mut a: Vec<&str> = common.to_vec();
    a.extend([
        "--steps",
        "80",
        "--out",
        full.to_str().unwrap(),
        "--eval-env",
        "Pendulum-v1",
        "--eval-every",
        "80",
        "--eval-episodes",
        "2",
    ]);
    ok(&a);
    for f in [
        "run.json",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "metrics.csv",
        "status.json",
    ] {
        assert!(full.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(full.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    for col in [
        "critic_loss",
        "actor_loss",
        "q_mean",
        "td_error",
        "diag_overestimation_ratio",
        "diag_action_divergence",
        "eval_return",
        "updates_per_s",
    ] {
        assert!(
            csv.lines().next().unwrap().split(',').any(|c| c == col),
            "column {col} missing: {csv}"
        );
    }
    // Interrupted at 40 updates, then resumed to 80: the same final checkpoint tensors.
    let mut b: Vec<&str> = common.to_vec();
    b.extend(["--steps", "40", "--out", part.to_str().unwrap()]);
    ok(&b);
    let out = orl(&b);
    assert!(
        !out.status.success(),
        "a second run into the same folder must be refused"
    );
    let mut c: Vec<&str> = common.to_vec();
    c.extend(["--steps", "80", "--out", part.to_str().unwrap(), "--resume"]);
    ok(&c);
    let dev = orl_nets::Device::Cpu;
    let (t_full, _) =
        orl_nets::checkpoint::load(&full.join("checkpoint.safetensors"), &dev).unwrap();
    let (t_part, _) =
        orl_nets::checkpoint::load(&part.join("checkpoint.safetensors"), &dev).unwrap();
    assert_eq!(t_full.len(), t_part.len());
    for (k, v) in &t_full {
        let a: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = t_part[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(
            a, b,
            "tensor {k} differs between resumed and uninterrupted runs"
        );
    }
    // Evaluation, diagnosis, export.
    let e = ok(&[
        "eval",
        "--checkpoint",
        full.to_str().unwrap(),
        "--episodes",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(v["returns"].as_array().unwrap().len(), 2);
    let d = ok(&["diagnose", full.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(d.trim()).unwrap();
    assert!(v["diagnostics"]["q_mean"].as_f64().unwrap().is_finite());
    assert_eq!(v["history"].as_array().unwrap().len(), 4);
    let exported = dir.path().join("policy.safetensors");
    ok(&[
        "export",
        "--checkpoint",
        full.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    let policy = orl_nets::ExportedPolicy::load(&exported).unwrap();
    let obs = [0.3f32, -0.9, 1.5];
    let (mut agent, _) = {
        // The same checkpoint through the training code, acting on raw observations.
        let (_, meta) =
            orl_nets::checkpoint::load(&full.join("checkpoint.safetensors"), &dev).unwrap();
        let spec: orl_algos::Spec = serde_json::from_str(&meta["orl.spec"]).unwrap();
        let config: serde_json::Value = serde_json::from_str(&meta["orl.config"]).unwrap();
        let mut algo =
            orl_algos::build(orl_algos::AlgoKind::TD3BC, spec, Some(&config), 0, &dev).unwrap();
        algo.load(&full.join("checkpoint.safetensors")).unwrap();
        let norm: (Vec<f32>, Vec<f32>) = serde_json::from_str(&meta["orl.obs_norm"]).unwrap();
        (orl_algos::Agent::new(algo, Some(norm), dev.clone()), ())
    };
    let want = match agent.act_raw(&obs).unwrap().pop().unwrap() {
        OwnedAction::Continuous(v) => v,
        OwnedAction::Discrete(_) => unreachable!(),
    };
    let got = policy.act(&obs).unwrap();
    assert!(
        (got[0] - want[0]).abs() < 1e-5,
        "exported {got:?} vs checkpoint {want:?}"
    );
}

#[test]
fn divergence_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cfg = dir.path().join("explode.toml");
    // A learning rate this large drives the critic to infinity within a few dozen updates.
    std::fs::write(
        &cfg,
        "hidden = [32, 32]\ncritic_lr = 1e12\nactor_lr = 1e12\n",
    )
    .unwrap();
    let out_dir = dir.path().join("run");
    let out = orl(&[
        "train",
        "--algo",
        "td3bc",
        "--dataset",
        &data,
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "5000",
        "--batch-size",
        "32",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1000",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("diverged") && err.contains("last good checkpoint"),
        "{err}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "diverged");
    // The kept checkpoint loads and holds only finite numbers.
    let (t, _) = orl_nets::checkpoint::load(
        &out_dir.join("checkpoint.safetensors"),
        &orl_nets::Device::Cpu,
    )
    .unwrap();
    for (k, v) in t {
        let x: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        assert!(x.iter().all(|f| f.is_finite()), "{k} is not finite");
    }
}

#[test]
fn unknown_config_keys_and_wrong_action_kinds_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, "hiden = [32]\n").unwrap();
    let out = orl(&[
        "train",
        "--algo",
        "iql",
        "--dataset",
        &data,
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "5",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hiden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = orl(&[
        "train",
        "--algo",
        "dqn",
        "--dataset",
        &data,
        "--steps",
        "5",
        "--out",
        dir.path().join("y").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    // The CLI's possible values come from the algorithm registry.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dqn") && err.contains("possible values") && err.contains("td3bc"),
        "{err}"
    );
}

#[test]
fn bcq_exports_a_deterministic_policy_within_the_action_box() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cfg = dir.path().join("bcq.toml");
    std::fs::write(
        &cfg,
        "hidden = [16, 16]\nvae_hidden = [16, 16]\nn_act_samples = 8\n",
    )
    .unwrap();
    let run = dir.path().join("bcq");
    ok(&[
        "train",
        "--algo",
        "bcq",
        "--dataset",
        &data,
        "--config",
        cfg.to_str().unwrap(),
        "--steps",
        "30",
        "--batch-size",
        "32",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    let exported = dir.path().join("bcq.safetensors");
    let printed = ok(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(printed.contains("Bcq"), "{printed}");
    let policy = orl_nets::ExportedPolicy::load(&exported).unwrap();
    assert_eq!(policy.header.head, orl_nets::Head::Bcq);
    assert_eq!(policy.header.phi, Some(0.05));
    for obs in [[1.0f32, 0.0, 0.0], [-0.6, 0.8, 3.5], [0.0, -1.0, -8.0]] {
        let a = policy.act(&obs).unwrap();
        assert_eq!(a.len(), 1);
        assert!(a[0].abs() <= 2.0, "{a:?} outside Pendulum's [-2, 2]");
        assert_eq!(policy.act(&obs).unwrap(), a, "the export is deterministic");
    }
}
