//! `cargo xtask <task>`: project automation. One file per task under `src/`.
//!
//! Tasks:
//! - `bench-d4rl`: the benchmark grid on the dataset suite (quick: Pendulum-v1; classic: +
//!   CartPole, Acrobot; locomotion/full with the `mujoco` feature; `--dataset-dir`).
//! - `learn-pendulum`: the Pendulum-v1 learning check of the algorithms.
//! - `ope-bench`: every off-policy estimator against true values (DOPE metrics).
//! - `train-behaviours`: SAC/DQN behaviour policies of the dataset suite (`datasets/policies/`).
//! - `gen-datasets`: the dataset suite of `datasets/manifest.json`, sha256-checked.
//! - `speed`: orl's update speed beside d3rlpy's and jitted JAX's, one thread each.
//! - `setup-mujoco`: fetch the MuJoCo 3.17.0 shared library for the `mujoco` feature.
//!
//! `cargo xtask <task> --help` prints the task's reference (its module doc).

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

/// One `cargo xtask` task: the registry below is the one list of them (dispatch, `--help` and
/// the tests read it), as `orl-envs`' registry is for environments.
struct Task {
    name: &'static str,
    /// The line of `cargo xtask --help`.
    summary: &'static str,
    /// Trains networks: runs one thread per job (`orl_nets::threads`) unless the caller chose.
    trains: bool,
    run: fn(&[String]) -> Result<()>,
    /// The task's source file, whose module doc (`//!` lines) is its reference and its
    /// `--help`: the help cannot drift from the doc.
    source: &'static str,
}

static TASKS: &[Task] = &[
    Task {
        name: "bench-d4rl",
        summary: "benchmark grid: --suite quick (default, Pendulum-v1) | classic | locomotion | full (MuJoCo: --features mujoco); --dataset-dir for real D4RL files",
        trains: true,
        run: bench_d4rl::run,
        source: include_str!("bench_d4rl.rs"),
    },
    Task {
        name: "learn-pendulum",
        summary: "Pendulum-v1 learning check: CQL, IQL, TD3+BC, BCQ must beat BC",
        trains: true,
        run: learn_pendulum::run,
        source: include_str!("learn_pendulum.rs"),
    },
    Task {
        name: "ope-bench",
        summary: "off-policy estimators judged against true values (Spearman, regret@1)",
        trains: true,
        run: ope_bench::run,
        source: include_str!("ope_bench.rs"),
    },
    Task {
        name: "train-behaviours",
        summary: "SAC/DQN behaviour policies into datasets/policies (resumable per environment)",
        trains: true,
        run: train_behaviours::run,
        source: include_str!("train_behaviours.rs"),
    },
    Task {
        name: "gen-datasets",
        summary: "build the datasets of datasets/manifest.json (default 1M transitions), sha256-checked; --verify rebuilds every recorded one and checks it",
        trains: false,
        run: gen_datasets::run,
        source: include_str!("gen_datasets.rs"),
    },
    Task {
        name: "speed",
        summary: "orl's updates/s beside d3rlpy 2.8.1 and jitted JAX, one thread each (creates target/speed/venv)",
        trains: true,
        run: speed::run,
        source: include_str!("speed.rs"),
    },
    Task {
        name: "setup-mujoco",
        summary: "fetch the MuJoCo 3.17.0 library into third_party/mujoco/lib (for --features mujoco)",
        trains: false,
        run: setup_mujoco::run,
        source: include_str!("setup_mujoco.rs"),
    },
];

/// `cargo xtask --help`: every task with its summary line.
fn usage() -> String {
    let width = TASKS.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let mut s = String::from(
        "usage: cargo xtask <task> [options]   (cargo xtask <task> --help: the task's reference)\n\ntasks:\n",
    );
    for t in TASKS {
        s.push_str(&format!("  {:width$}  {}\n", t.name, t.summary));
    }
    s
}

/// A task's module doc as plain text: its leading `//!` lines without the marker.
fn task_doc(task: &Task) -> String {
    let mut doc = String::new();
    for line in task.source.lines().take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!");
        doc.push_str(text.strip_prefix(' ').unwrap_or(text));
        doc.push('\n');
    }
    doc
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = args.first().map(String::as_str) else {
        print!("{}", usage());
        return Ok(());
    };
    if matches!(first, "-h" | "--help") {
        print!("{}", usage());
        return Ok(());
    }
    let Some(task) = TASKS.iter().find(|t| t.name == first) else {
        bail!("unknown task `{first}`; run `cargo xtask --help`");
    };
    if args[1..].iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", task_doc(task));
        return Ok(());
    }
    // Training tasks run one thread per job and parallelise across jobs
    // (`orl_nets::threads`): re-run with RAYON_NUM_THREADS=1 unless the caller chose a value.
    if task.trains
        && let Some(code) =
            orl_nets::threads::reexec_with_threads(orl_nets::threads::resolve_threads(None))?
    {
        std::process::exit(code);
    }
    (task.run)(&args[1..])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task's doc opens with its own command line (the reference `--help` prints), and
    /// every task is listed in `--help` and in the crate doc above.
    #[test]
    fn every_task_documents_its_command_line() {
        let crate_doc = include_str!("main.rs");
        for t in TASKS {
            let doc = task_doc(t);
            assert!(
                doc.starts_with(&format!("`cargo xtask {}", t.name)),
                "{}: its module doc must open with `cargo xtask {} ...`, found {:?}",
                t.name,
                t.name,
                doc.lines().next()
            );
            assert!(usage().contains(&format!("  {} ", t.name)), "{}", t.name);
            assert!(
                crate_doc.contains(&format!("//! - `{}`", t.name)),
                "{}: missing from the crate doc's task list",
                t.name
            );
        }
    }
}
