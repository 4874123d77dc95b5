//! `cargo xtask <task>`: project automation. One file per task under `src/`.
//!
//! Tasks:
//! - `bench-d4rl`: the benchmark grid on the dataset suite (quick: Pendulum-v1; classic: +
//!   CartPole, Acrobot; locomotion/full with the `mujoco` feature; `--dataset-dir`).
//! - `learn-pendulum`: the Pendulum-v1 learning check of the algorithms.
//! - `ope-bench`: every off-policy estimator against true values (DOPE metrics).
//! - `train-behaviours`: SAC/DQN behaviour policies of the dataset suite (`datasets/policies/`).
//! - `gen-datasets`: the dataset suite of `datasets/manifest.json`, sha256-checked.
//! - `setup-mujoco`: fetch the MuJoCo 3.17.0 shared library for the `mujoco` feature.

#[cfg(test)]
mod architecture;
mod behaviour_policy;
mod bench_d4rl;
mod buffer_archive;
mod gen_datasets;
mod learn_pendulum;
mod ope_bench;
mod published;
mod setup_mujoco;
mod speed;
mod train_behaviours;

use std::path::PathBuf;

use anyhow::{Result, bail};

/// mimalloc as the global allocator: candle allocates a fresh buffer for every op's output,
/// and glibc's malloc returns large freed blocks to the OS, paying page faults again on the next
/// one; mimalloc keeps them (25-50% more updates/s, `docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Training tasks run one thread per job and parallelise across jobs
    // (`orl_nets::threads`): re-run with RAYON_NUM_THREADS=1 unless the caller chose a value.
    if matches!(
        args.first().map(String::as_str),
        Some("bench-d4rl" | "ope-bench" | "learn-pendulum" | "train-behaviours" | "speed")
    ) && let Some(code) =
        orl_nets::threads::reexec_with_threads(orl_nets::threads::resolve_threads(None))?
    {
        std::process::exit(code);
    }
    match args.first().map(String::as_str) {
        Some("bench-d4rl") => bench_d4rl::run(&args[1..]),
        Some("setup-mujoco") => setup_mujoco::run(&args[1..]),
        Some("learn-pendulum") => learn_pendulum::run(&args[1..]),
        Some("ope-bench") => ope_bench::run(&args[1..]),
        Some("train-behaviours") => train_behaviours::run(&args[1..]),
        Some("gen-datasets") => gen_datasets::run(&args[1..]),
        Some("speed") => speed::run(&args[1..]),
        Some("-h" | "--help") | None => {
            println!(
                "usage: cargo xtask <task>\n\ntasks:\n  bench-d4rl     benchmark grid: --suite quick (default, Pendulum-v1) | classic | locomotion | full (MuJoCo: --features mujoco); --dataset-dir for real D4RL files\n  learn-pendulum Pendulum-v1 learning check: CQL, IQL, TD3+BC, BCQ must beat BC\n  ope-bench      off-policy estimators judged against true values (Spearman, regret@1)\n  train-behaviours  SAC/DQN behaviour policies into datasets/policies (resumable per environment)\n  gen-datasets   build the datasets of datasets/manifest.json (default 1M transitions), sha256-checked; --verify rebuilds every recorded one and checks it\n  speed          orl's updates/s beside d3rlpy 2.8.1 and jitted JAX, one thread each (creates target/speed/venv)
  setup-mujoco   fetch the MuJoCo 3.17.0 library into third_party/mujoco/lib (for --features mujoco)"
            );
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`; run `cargo xtask --help`"),
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename; `orl_app::run_dir`), so
/// an interrupted task never leaves a torn report.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    Ok(orl_app::run_dir::atomic_write(path, bytes)?)
}

/// The font of every plot (DejaVu Sans, bundled with `orl-app`), embedded once.
pub static PLOT_FONT: &[u8] = orl_app::plot::FONT;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().map(PathBuf::from).unwrap_or(xtask)
}
