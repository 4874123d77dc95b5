//! `cargo xtask gen-datasets [--transitions N] [--env ID|all] [--datasets a,b] [--out DIR]`:
//! builds the dataset suite of `datasets/manifest.json` deterministically and checks every
//! file's sha256 against the manifest.
//!
//! `cargo xtask gen-datasets --verify [--max-transitions N] [--max-mujoco-transitions M]`:
//! rebuilds from scratch every (dataset, size) whose sha256 the manifest records (up to `N`
//! rows, MuJoCo datasets up to `M`: their 1M-row files take about a minute each) and checks each
//! ([`verify`]): run it on a second machine to confirm it generates the same bytes.
//!
//! Recipes per environment (D4RL's, Fu et al. 2020): `random` (uniform actions), `medium` and
//! `expert` (rollouts of the committed behaviour policies, `datasets/policies/`), `medium-replay`
//! (the medium policy's own training buffer, committed as a compact Parquet archive,
//! `buffer_archive.rs`) and `medium-expert` (medium
//! and expert concatenated, so twice `N` rows). `N` defaults to D4RL's 1 000 000. Every row
//! logs the acting policy's `behavior_log_prob`; every file records the environment's reference
//! returns (random and expert, 100 episodes) as `ref_min_score` / `ref_max_score`.
//!
//! Files go to the git-ignored `target/datasets/` as `<name>-<N>.parquet`. The first build of a
//! (dataset, N) records its sha256 in the manifest; later builds must reproduce it or fail.
//! Reproducibility across machines rests on: the committed policy files, plain-Rust `f32`
//! inference with `libm` (`behaviour_policy.rs`), seeded `Pcg64Mcg` streams, the pure-Rust
//! environments, and the locked Parquet writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::collect;
use orl_data::{Dataset, WriteOptions, write_parquet};
use orl_envs::make;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde_json::{Value, json};

use crate::behaviour_policy::{self, Behaviour};
use crate::train_behaviours::{datasets_dir, random_policy, stem};

/// D4RL's dataset size.
pub const DEFAULT_TRANSITIONS: usize = 1_000_000;
const RECIPES: [&str; 5] = [
    "random",
    "medium",
    "medium-replay",
    "medium-expert",
    "expert",
];

fn manifest_path() -> PathBuf {
    datasets_dir().join("manifest.json")
}

fn read_manifest() -> Result<Value> {
    let p = manifest_path();
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{}: not JSON", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({
            "format_version": 1,
            "about": "Dataset recipes of the orl suite; `cargo xtask gen-datasets` builds them and checks each file's sha256 (keyed by the number of transitions N).",
            "default_transitions": DEFAULT_TRANSITIONS,
            "environments": {},
            "datasets": {},
        })),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write_manifest(v: &Value) -> Result<()> {
    crate::write_atomic(
        &manifest_path(),
        (serde_json::to_string_pretty(v)? + "\n").as_bytes(),
    )
}

/// Adds (or refreshes) an environment and its five dataset recipes in the manifest, keeping
/// recorded hashes of recipes whose policies did not change.
pub fn register_env(env: &str, record: &Value) -> Result<()> {
    let mut m = read_manifest()?;
    let s = stem(env);
    m["environments"][env] = json!({
        "record": format!("policies/{s}.json"),
        "algo": record["algo"],
        "random_return": record["random"]["return_100"],
        "medium_return": record["medium"]["return_100"],
        "expert_return": record["expert"]["return_100"],
    });
    let seeds = [("random", 1), ("medium", 2), ("expert", 3)];
    for recipe in RECIPES {
        let mut d = json!({"env": env, "recipe": recipe, "sha256": {}});
        match recipe {
            "medium-replay" => {
                d["source"] = json!(format!("policies/{s}-medium-replay.archive.parquet"))
            }
            "medium-expert" => d["parts"] = json!([format!("{s}-medium"), format!("{s}-expert")]),
            _ => {
                let seed = seeds.iter().find(|x| x.0 == recipe).map_or(0, |x| x.1);
                d["seed"] = json!(seed);
                if recipe != "random" {
                    d["policy"] = json!(format!("policies/{s}-{recipe}.safetensors"));
                }
            }
        }
        // Retraining changes the policies: recorded hashes no longer apply.
        m["datasets"][format!("{s}-{recipe}")] = d;
    }
    write_manifest(&m)?;
    // Files built from the old policies would otherwise be reused and their hashes recorded.
    let cache = default_cache_dir();
    if let Ok(entries) = std::fs::read_dir(&cache) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with(&format!("{s}-")) && f.ends_with(".parquet") {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing stale {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// `target/datasets/`: the git-ignored cache the datasets are built into.
pub fn default_cache_dir() -> PathBuf {
    crate::workspace_root().join("target/datasets")
}

fn sha256_file(p: &Path) -> Result<String> {
    Ok(orl_data::fsutil::sha256_file(p)?)
}

fn rollouts(env: &str, b: &Behaviour, n: usize, seed: u64) -> Result<Dataset> {
    let mut e = make(env)?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut f = |o: &[f32]| -> orl_algos::Result<(orl_envs::OwnedAction, Option<f64>)> {
        let (a, lp) = b.act(o, &mut rng);
        Ok((a, Some(lp)))
    };
    Ok(collect(&mut *e, &mut f, n, seed)?)
}

/// Builds dataset `name` with `n` transitions per rollout part (without writing it).
fn build(m: &Value, name: &str, n: usize) -> Result<Dataset> {
    build_from(m, name, n, None)
}

/// [`build`], reading the parts of a medium-expert dataset from `cache` (`<part>-<n>.parquet`,
/// as [`generate`] writes them) where they exist instead of rolling them out again.
fn build_from(m: &Value, name: &str, n: usize, cache: Option<&Path>) -> Result<Dataset> {
    let d = &m["datasets"][name];
    let env = d["env"]
        .as_str()
        .context("manifest: dataset without `env`")?;
    let recipe = d["recipe"].as_str().unwrap_or_default();
    let seed = d["seed"].as_u64().unwrap_or(0);
    let mut ds = match recipe {
        "random" => rollouts(env, &random_policy(env)?, n, seed)?,
        "medium" | "expert" => {
            let p = datasets_dir().join(d["policy"].as_str().context("manifest: no `policy`")?);
            rollouts(env, &behaviour_policy::load(&p)?.0, n, seed)?
        }
        "medium-replay" => {
            let p = datasets_dir().join(d["source"].as_str().context("manifest: no `source`")?);
            crate::buffer_archive::read(&p)?
        }
        "medium-expert" => {
            let parts = d["parts"].as_array().context("manifest: no `parts`")?;
            let ds = parts
                .iter()
                .map(|p| {
                    let p = p.as_str().unwrap_or_default();
                    match cache.map(|c| c.join(format!("{p}-{n}.parquet"))) {
                        Some(f) if f.exists() => {
                            Dataset::open(&f).with_context(|| format!("reading {}", f.display()))
                        }
                        _ => build(m, p, n),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Dataset::concat(ds, true)?
        }
        other => bail!("manifest: unknown recipe `{other}` for {name}"),
    };
    let e = &m["environments"][env];
    let meta = ds.meta_mut();
    meta.env_id = Some(env.to_string());
    meta.ref_min_score = e["random_return"].as_f64();
    meta.ref_max_score = e["expert_return"].as_f64();
    meta.max_episode_steps = orl_envs::spec(env).ok().map(|s| s.max_episode_steps as u64);
    meta.generator_policy = Some(format!("orl {name} (datasets/manifest.json)"));
    meta.seed = Some(seed as i64);
    Ok(ds)
}

/// One generated file.
pub struct Generated {
    /// Dataset name (`pendulum-v1-medium`).
    pub name: String,
    /// Environment id.
    pub env: String,
    /// The Parquet file.
    pub path: PathBuf,
    /// Reference returns `(random, expert)`.
    pub refs: (f64, f64),
    /// Hex sha256 of the file.
    pub sha256: String,
}

/// Generates (or reuses and verifies) the named datasets with `n` transitions into `out`.
pub fn generate(names: &[String], n: usize, out: &Path) -> Result<Vec<Generated>> {
    // The parts of every medium-expert first (built, or reused and verified, into `out`), so
    // that it is concatenated from their files rather than rolled out a second time.
    let parts: Vec<String> = {
        let m = read_manifest()?;
        names
            .iter()
            .filter(|x| m["datasets"][x.as_str()]["recipe"] == "medium-expert")
            .flat_map(|x| {
                m["datasets"][x.as_str()]["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    if !parts.is_empty() {
        generate(&parts, n, out)?;
    }
    let mut m = read_manifest()?;
    std::fs::create_dir_all(out)?;
    let mut res = Vec::new();
    let mut changed = false;
    for name in names {
        let d = m["datasets"].get(name).cloned().with_context(|| {
            format!(
                "no dataset `{name}` in {}; run `cargo xtask train-behaviours` first",
                manifest_path().display()
            )
        })?;
        let recipe = d["recipe"].as_str().unwrap_or_default().to_string();
        let key = if recipe == "medium-replay" {
            "all".to_string()
        } else {
            n.to_string()
        };
        let file = if recipe == "medium-replay" {
            out.join(format!("{name}.parquet"))
        } else {
            out.join(format!("{name}-{n}.parquet"))
        };
        if !file.exists() {
            let t = Instant::now();
            let ds = build_from(&m, name, n, Some(out))?;
            write_parquet(&ds, &file, &WriteOptions::default())
                .with_context(|| format!("writing {}", file.display()))?;
            println!(
                "  built {} ({} transitions, {} episodes) in {:.1} s",
                file.display(),
                ds.len(),
                ds.num_episodes(),
                t.elapsed().as_secs_f64()
            );
        }
        let sha = sha256_file(&file)?;
        match d["sha256"][&key].as_str() {
            Some(expected) if expected != sha => bail!(
                "{}: sha256 {sha} differs from the manifest's {expected} for {name} (N = {key}); delete the file to rebuild, or investigate what changed",
                file.display()
            ),
            Some(_) => println!("  {name} (N = {key}): sha256 verified"),
            None => {
                m["datasets"][name]["sha256"][&key] = json!(&sha);
                changed = true;
                println!("  {name} (N = {key}): sha256 {sha} recorded in the manifest");
            }
        }
        let env = d["env"].as_str().unwrap_or_default().to_string();
        let e = &m["environments"][&env];
        res.push(Generated {
            name: name.clone(),
            env,
            path: file,
            refs: (
                e["random_return"].as_f64().unwrap_or(f64::NAN),
                e["expert_return"].as_f64().unwrap_or(f64::NAN),
            ),
            sha256: sha,
        });
    }
    if changed {
        write_manifest(&m)?;
    }
    Ok(res)
}

/// Names of the datasets of `env` (all environments for `None`), in recipe order.
pub fn names_for(env: Option<&str>) -> Result<Vec<String>> {
    let m = read_manifest()?;
    let mut by_env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(ds) = m["datasets"].as_object() {
        for (name, d) in ds {
            let e = d["env"].as_str().unwrap_or_default();
            if env.is_none_or(|x| x == e) {
                by_env.entry(e.to_string()).or_default().push(name.clone());
            }
        }
    }
    let mut out = Vec::new();
    for (_, mut v) in by_env {
        v.sort_by_key(|n| {
            RECIPES
                .iter()
                .position(|r| n.ends_with(&format!("-{r}")))
                .unwrap_or(9)
        });
        out.extend(v);
    }
    if out.is_empty() {
        bail!(
            "no datasets{} in {}",
            env.map(|e| format!(" for {e}")).unwrap_or_default(),
            manifest_path().display()
        );
    }
    Ok(out)
}

/// Rebuilds every (dataset, N) whose sha256 the manifest records, with `N <= max_n` and, for
/// datasets simulated by MuJoCo, `N <= max_mujoco_n` (every
/// medium-replay, rewritten whole from its committed buffer, counts as N = 0), one at a time
/// into `dir` (removed afterwards), and compares each file with the manifest: the
/// reproducibility promise of the suite, checked on whatever machine runs it. Never reuses a
/// cached file and never writes the manifest. Datasets simulated by MuJoCo are skipped, with a
/// message, in a build without the `mujoco` feature. Returns the number of files checked; a
/// mismatch fails after every file was checked, naming each one.
pub fn verify(max_n: usize, max_mujoco_n: usize, dir: &Path) -> Result<usize> {
    verify_against(&read_manifest()?, max_n, max_mujoco_n, dir)
}

/// [`verify`] against manifest `m`.
fn verify_against(m: &Value, max_n: usize, max_mujoco_n: usize, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (mut checked, mut skipped, mut bad) = (0, BTreeMap::<String, usize>::new(), Vec::new());
    let datasets = m["datasets"].as_object().cloned().unwrap_or_default();
    for (name, d) in &datasets {
        let env = d["env"].as_str().unwrap_or_default();
        let hashes = d["sha256"].as_object().cloned().unwrap_or_default();
        for (key, expected) in &hashes {
            let n = if key == "all" {
                0
            } else {
                key.parse::<usize>().with_context(|| {
                    format!("manifest: {name}: sha256 key `{key}` is neither `all` nor a row count")
                })?
            };
            let mujoco = orl_envs::spec(env).is_ok_and(|s| s.needs_mujoco);
            if n > max_n || (mujoco && n > max_mujoco_n) {
                continue;
            }
            if !orl_envs::MUJOCO_ENABLED && mujoco {
                *skipped.entry(env.to_string()).or_default() += 1;
                continue;
            }
            let t = Instant::now();
            let file = dir.join(format!("{name}-{key}.parquet"));
            let ds = build(m, name, n.max(1))?;
            write_parquet(&ds, &file, &WriteOptions::default())
                .with_context(|| format!("writing {}", file.display()))?;
            let sha = sha256_file(&file)?;
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
            checked += 1;
            if Some(sha.as_str()) == expected.as_str() {
                println!(
                    "  {name} (N = {key}): sha256 reproduced ({:.1} s)",
                    t.elapsed().as_secs_f64()
                );
            } else {
                println!(
                    "  {name} (N = {key}): sha256 {sha} DIFFERS from the manifest's {expected}"
                );
                bad.push(format!("{name} (N = {key})"));
            }
        }
    }
    for (env, k) in &skipped {
        println!("  {k} files of {env} skipped: it needs MuJoCo (`--features mujoco`)");
    }
    if !bad.is_empty() {
        bail!(
            "{} of {checked} datasets do not reproduce the manifest's sha256: {}",
            bad.len(),
            bad.join(", ")
        );
    }
    Ok(checked)
}

/// Runs the task.
pub fn run(args: &[String]) -> Result<()> {
    let mut n = DEFAULT_TRANSITIONS;
    let mut env: Option<String> = None;
    let mut names: Option<Vec<String>> = None;
    let mut out = default_cache_dir();
    let (mut verify_all, mut max_n, mut max_mujoco_n) = (false, usize::MAX, usize::MAX);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--transitions" => n = val()?.parse()?,
            "--env" => env = Some(val()?.clone()),
            "--datasets" => names = Some(val()?.split(',').map(String::from).collect()),
            "--out" => out = PathBuf::from(val()?),
            "--verify" => verify_all = true,
            "--max-transitions" => max_n = val()?.parse()?,
            "--max-mujoco-transitions" => max_mujoco_n = val()?.parse()?,
            other => bail!("gen-datasets: unknown argument `{other}`"),
        }
    }
    if (max_n, max_mujoco_n) != (usize::MAX, usize::MAX) && !verify_all {
        bail!(
            "gen-datasets: --max-transitions and --max-mujoco-transitions apply to --verify (use --transitions to build)"
        );
    }
    if verify_all {
        let dir = crate::workspace_root().join("target/datasets-verify");
        let k = verify(max_n, max_mujoco_n, &dir)?;
        let _ = std::fs::remove_dir(&dir);
        println!("{k} datasets reproduce the manifest's sha256");
        return Ok(());
    }
    let names = match names {
        Some(v) => v,
        None => names_for(env.as_deref().filter(|e| *e != "all"))?,
    };
    let g = generate(&names, n, &out)?;
    println!("{} datasets in {}", g.len(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dataset whose 1000-transition hash the manifest records (and every medium-replay,
    /// rewritten whole from its committed buffer) is rebuilt from the committed policies into a
    /// fresh folder and must reproduce it byte for byte ([`verify`]): the reproducibility
    /// promise of the suite, checked on whatever machine runs the tests. With the `mujoco`
    /// feature (`cargo test -p xtask --features mujoco`, run by `.ci/run`) this includes the
    /// locomotion datasets, which are simulated by the MuJoCo library.
    #[test]
    fn small_datasets_reproduce_the_manifest_hashes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let checked = verify(1000, 1000, dir.path())?;
        let expected = if orl_envs::MUJOCO_ENABLED { 30 } else { 15 };
        assert!(
            checked >= expected,
            "the manifest records too few 1000-row hashes: {checked} checked"
        );
        Ok(())
    }

    /// A file that does not reproduce its recorded hash fails the check, naming the dataset.
    #[test]
    fn a_changed_hash_fails_verification() -> Result<()> {
        let mut m = read_manifest()?;
        // Two datasets are enough; the rest of the manifest is dropped to keep the test short.
        let keep = ["pendulum-v1-random", "pendulum-v1-medium-replay"];
        let all = m["datasets"].as_object().cloned().unwrap_or_default();
        m["datasets"] = all
            .into_iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .collect();
        let dir = tempfile::tempdir()?;
        assert_eq!(verify_against(&m, 1000, usize::MAX, dir.path())?, 2);
        m["datasets"]["pendulum-v1-random"]["sha256"]["1000"] = json!("0".repeat(64));
        let r = verify_against(&m, 1000, usize::MAX, dir.path());
        let e = format!("{:#}", r.err().context("a wrong hash passed verification")?);
        assert!(e.contains("pendulum-v1-random (N = 1000)"), "{e}");
        Ok(())
    }
}
