//! `cargo xtask speed`: orl's update speed beside d3rlpy's and a jitted JAX update's, in one
//! run on one machine, one thread each, the peers pinned to one CPU (issue 15's acceptance table).
//!
//! Shapes: HalfCheetah (obs 17, act 6), batch 256 (BCQ 100, each algorithm's own batch size
//! from the registry), 256x256 networks (CQL too: orl's default is the paper's 3x256), CQL and BCQ with their
//! papers' 10 sampled actions. orl is timed on
//! presampled batches of a synthetic dataset (`update` only); d3rlpy 2.8.1 through `fit`
//! (sampling included, as its users run it); JAX through jitted updates written in the style of
//! JAX-CORL (`xtask/speed/peers.py`). The peers run in a virtual environment this task creates
//! under `target/speed/venv` (`pip install d3rlpy==2.8.1 jax[cpu]`; reused when present).
//!
//! `cargo xtask speed [--seconds S] [--rounds R] [--no-peers]`: about `S` seconds per (library,
//! algorithm) and round (default 5), `R` rounds (default 2) that alternate orl and the peers so
//! that a drift of the machine's speed (this VM's throughput varies by up to a quarter from one
//! hour to the next) reaches both sides alike; each figure is the median over the rounds.
//! Writes `target/speed/report.json` and `target/speed/report.md` (the table of
//! `docs/performance.md`, with the CPU model) and prints the table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::{AlgoKind, Spec, build};
use orl_data::{
    ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace, Replay, ReplayConfig,
};
use orl_nets::Device;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

/// The algorithms timed, with the peers that implement them.
const ALGOS: [(&str, bool, bool); 5] = [
    ("bc", true, false),
    ("td3bc", true, true),
    ("iql", true, true),
    ("cql", true, false),
    ("bcq", true, false),
];

/// `model name` and `family/model` of the first CPU (`/proc/cpuinfo`), for the record.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|n| n.trim() == k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let avx512 = info.contains(" avx512f");
    format!(
        "{} (family {}, model {}, {} logical CPUs, AVX-512 {})",
        field("model name"),
        field("cpu family"),
        field("model"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if avx512 { "yes" } else { "no" }
    )
}

/// A random dataset of HalfCheetah's shapes.
fn synthetic(n: usize) -> Result<Dataset> {
    let (od, ad) = (17, 6);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0);
    let mut draw =
        |k: usize, s: f32| -> Vec<f32> { (0..k).map(|_| rng.random_range(-s..s)).collect() };
    let observations = draw(n * od, 5.0);
    let mut next = observations[od..].to_vec();
    next.extend(draw(od, 5.0));
    let cols = Columns {
        observations,
        next_observations: next,
        next_valid: None,
        actions: Actions::Continuous {
            dim: ad,
            values: draw(n * ad, 1.0),
        },
        rewards: draw(n, 3.0),
        terminals: vec![false; n],
        timeouts: (0..n).map(|i| i % 1000 == 999).collect(),
        behavior_log_prob: None,
    };
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: od,
            low: None,
            high: None,
        },
        ActionSpace::Continuous {
            dim: ad,
            low: Some(vec![-1.0; ad]),
            high: Some(vec![1.0; ad]),
        },
    );
    let episodes: Vec<(i64, usize)> = (0..n / 1000).map(|k| (k as i64, 1000)).collect();
    Ok(Dataset::new(meta, cols, &episodes)?)
}

/// orl's updates/s of `name` at the shapes above, for about `seconds`.
fn orl_speed(name: &str, seconds: f64) -> Result<f64> {
    let kind: AlgoKind = name.parse()?;
    let mut replay = Replay::new(synthetic(20_000)?, ReplayConfig::default(), 0)?;
    let batches: Vec<_> = (0..32)
        .map(|_| replay.sample(kind.default_batch_size()))
        .collect();
    // 2x256 everywhere, as d3rlpy's defaults and issue 15's table (orl's CQL default is the
    // paper's 3x256); every other setting is the algorithm's default.
    let cfg = serde_json::json!({"hidden": [256, 256]});
    let mut algo = build(
        kind,
        Spec::continuous(17, 6, 1.0),
        Some(&cfg),
        0,
        &Device::Cpu,
    )?;
    let t = Instant::now();
    let mut warm = 0;
    while warm < 5 || t.elapsed().as_secs_f64() < 0.5 {
        algo.update(&batches[warm % 32])?;
        warm += 1;
    }
    let per = t.elapsed().as_secs_f64() / warm as f64;
    let n = ((seconds / per) as usize).max(5);
    let t = Instant::now();
    for i in 0..n {
        algo.update(&batches[i % 32])?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn venv(dir: &Path) -> Result<PathBuf> {
    let py = dir.join("venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args([
                "-c",
                "import d3rlpy, jax; assert d3rlpy.__version__ == '2.8.1'",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "creating {} (d3rlpy 2.8.1, jax[cpu]) ...",
            dir.join("venv").display()
        );
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir.join("venv"))
            .status()
            .context("running python3 -m venv")?;
        if !st.success() {
            bail!("python3 -m venv failed");
        }
        let st = Command::new(dir.join("venv/bin/pip"))
            .args(["install", "-q", "d3rlpy==2.8.1", "jax[cpu]"])
            .status()
            .context("running pip")?;
        if !st.success() {
            bail!("pip install d3rlpy==2.8.1 jax[cpu] failed");
        }
    }
    Ok(py)
}

/// Runs `args`.
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 5.0;
    let mut rounds = 2usize;
    let mut peers = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds: expected a number")?
            }
            "--rounds" => {
                rounds = it
                    .next()
                    .context("--rounds needs a value")?
                    .parse::<usize>()
                    .context("--rounds: expected a count")?
                    .max(1)
            }
            "--no-peers" => peers = false,
            other => {
                bail!("unknown option `{other}` (expected --seconds S, --rounds R, --no-peers)")
            }
        }
    }
    let dir = PathBuf::from("target/speed");
    std::fs::create_dir_all(&dir)?;
    let cpu = cpu_model();
    eprintln!("CPU: {cpu}");
    let py = if peers { Some(venv(&dir)?) } else { None };
    let mut ours: Vec<serde_json::Map<String, Value>> = Vec::new();
    let mut theirs: Vec<Value> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let mut o = serde_json::Map::new();
        for (name, ..) in ALGOS {
            let v = orl_speed(name, seconds)?;
            eprintln!("orl {name}: {v:.1} updates/s");
            o.insert(name.into(), json!(v));
        }
        ours.push(o);
        if let Some(py) = &py {
            theirs.push(run_peers(py, seconds)?);
        }
    }
    let median = |xs: &mut Vec<f64>| -> Option<f64> {
        xs.retain(|x| x.is_finite());
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        (n > 0).then(|| {
            if n % 2 == 1 {
                xs[n / 2]
            } else {
                0.5 * (xs[n / 2 - 1] + xs[n / 2])
            }
        })
    };
    let med_ours =
        |name: &str| median(&mut ours.iter().filter_map(|o| o.get(name)?.as_f64()).collect());
    let med_peer = |lib: &str, name: &str| {
        median(
            &mut theirs
                .iter()
                .filter_map(|p| p.get(lib)?.get(name)?.as_f64())
                .collect(),
        )
    };
    let mut md = format!(
        "CPU: {cpu}; one thread each; updates/s (HalfCheetah shapes obs 17 / act 6, batch 256, BCQ 100, 256x256 networks, CQL 10 sampled actions)\n\n| algorithm | orl | d3rlpy (`fit`) | JAX, jitted | orl / d3rlpy | orl / JAX |\n|---|---|---|---|---|---|\n"
    );
    for (name, ..) in ALGOS {
        let o = med_ours(name).unwrap_or(f64::NAN);
        let d = med_peer("d3rlpy", name);
        let j = med_peer("jax", name);
        let cell = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
        let ratio = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.2}", o / x));
        md.push_str(&format!(
            "| {name} | {o:.1} | {} | {} | {} | {} |\n",
            cell(d),
            cell(j),
            ratio(d),
            ratio(j)
        ));
    }
    md.push_str(&format!(
        "\nMedians over {rounds} alternating rounds of about {seconds} s per cell; every round's figures are in `target/speed/report.json`.\n"
    ));
    let report = json!({"cpu": cpu, "seconds": seconds, "rounds": rounds, "orl": ours,
        "peers": theirs, "commit": git_head()});
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    Ok(())
}

fn git_head() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// One run of `xtask/speed/peers.py`: `{"d3rlpy": {algo: updates/s}, "jax": {...}, "versions"}`.
fn run_peers(py: &Path, seconds: f64) -> Result<Value> {
    // The peers' own step counts: about `seconds` each at the speeds issue 15 measured.
    let steps = json!({"bc": (300.0 * seconds) as usize, "td3bc": (100.0 * seconds) as usize,
        "iql": (80.0 * seconds) as usize, "cql": (8.0 * seconds) as usize,
        "bcq": (20.0 * seconds) as usize});
    let d3: Vec<&str> = ALGOS.iter().filter(|a| a.1).map(|a| a.0).collect();
    let jx: Vec<&str> = ALGOS.iter().filter(|a| a.2).map(|a| a.0).collect();
    let arg = json!({"steps": steps, "d3rlpy": d3, "jax": jx}).to_string();
    let out = Command::new(py)
        .arg("xtask/speed/peers.py")
        .arg(arg)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .context("running xtask/speed/peers.py")?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if line.starts_with("d3rlpy ") || line.starts_with("jax ") || !out.status.success() {
            eprintln!("{line}");
        }
    }
    if !out.status.success() {
        bail!("xtask/speed/peers.py failed");
    }
    // The JSON is the last line (d3rlpy logs to stdout too).
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).context("parsing the peers' JSON")
}
