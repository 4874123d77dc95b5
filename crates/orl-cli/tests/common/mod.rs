//! Helpers shared by the `orl` end-to-end tests: running the binary, and a small Pendulum
//! dataset logged by the swing-up controller with its propensities.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::process::Command;

use orl_algos::{collect, pendulum_controller};
use orl_data::{WriteOptions, write_parquet};
use orl_envs::{OwnedAction, make};

/// Runs `orl args` with one candle thread.
pub fn orl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_orl"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// Runs `orl args`, fails the test on a non-zero exit, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = orl(args);
    assert!(
        out.status.success(),
        "orl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `transitions` rows of the Pendulum swing-up controller with action noise `noise` (and its
/// log-probabilities), written to `dir/pendulum.parquet`; returns the path.
pub fn pendulum(dir: &Path, transitions: usize, noise: f64) -> String {
    let mut env = make("Pendulum-v1").unwrap();
    let mut k = 0u32;
    let mut policy = |o: &[f32]| -> orl_algos::Result<(OwnedAction, Option<f64>)> {
        k = k.wrapping_add(1);
        let z = ((k * 7919 % 1000) as f64 / 500.0) - 1.0;
        let (a, lp) = pendulum_controller(o, noise, z);
        Ok((OwnedAction::Continuous(vec![a]), Some(lp)))
    };
    let ds = collect(&mut env, &mut policy, transitions, 0).unwrap();
    let p = dir.join("pendulum.parquet");
    write_parquet(&ds, &p, &WriteOptions::default()).unwrap();
    p.display().to_string()
}
