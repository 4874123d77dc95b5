//! Converts every dataset fixture that has an `*.expected.json` sidecar and reproduces every
//! count, length, return and statistic in it (tolerances from the fixtures' README: exact counts,
//! relative 1e-9 for sums and means, 1e-6 for standard deviations).
//!
//! The fixtures root is `$ORL_FIXTURES` (the folder that contains `datasets/`), defaulting to
//! `../shared/fixtures` beside the project root. Files are discovered, not listed. When `CI` or
//! `ORL_FIXTURES` is set, a missing folder fails the tests instead of skipping them.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use std::path::{Path, PathBuf};

use orl_data::convert::{self, ConvertOptions, Format};
use orl_data::{Dataset, Report, WriteOptions, write_parquet};
use orl_testkit::fixtures_root;
use serde_json::Value;

fn sidecars(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sidecars(&p, out);
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".expected.json"))
        {
            out.push(p);
        }
    }
}

/// The dataset a sidecar describes: its `file` key, else the file or directory named like it.
fn dataset_for(sidecar: &Path, v: &Value) -> Option<PathBuf> {
    let dir = sidecar.parent()?;
    if let Some(f) = v.get("file").and_then(Value::as_str) {
        return Some(dir.join(f));
    }
    let stem = sidecar
        .file_name()?
        .to_str()?
        .strip_suffix(".expected.json")?;
    let candidate = dir.join(stem);
    if candidate.exists() {
        return Some(candidate);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_stem().and_then(|s| s.to_str()) == Some(stem)
                && !p.to_string_lossy().ends_with(".json")
        })
}

struct Checker {
    name: String,
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    fn fail(&mut self, key: &str, msg: String) {
        self.failures.push(format!("{}: `{key}`: {msg}", self.name));
    }

    fn exact<T: PartialEq + std::fmt::Debug>(&mut self, key: &str, ours: T, theirs: T) {
        self.checked += 1;
        if ours != theirs {
            let (a, b) = (format!("{ours:?}"), format!("{theirs:?}"));
            self.fail(
                key,
                format!(
                    "ours {} != expected {}",
                    &a[..a.len().min(300)],
                    &b[..b.len().min(300)]
                ),
            );
        }
    }

    /// float32 quantities: the sidecar's double, cast to f32, must give our f32 bits exactly.
    fn f32_bits(&mut self, key: &str, ours: &[f64], theirs: &[f64]) {
        self.exact(
            key,
            ours.iter()
                .map(|&x| (x as f32).to_bits())
                .collect::<Vec<_>>(),
            theirs
                .iter()
                .map(|&x| (x as f32).to_bits())
                .collect::<Vec<_>>(),
        );
    }

    /// `|ours - theirs| <= rel * |theirs| + abs`, element-wise.
    fn close(&mut self, key: &str, ours: &[f64], theirs: &[f64], rel: f64, abs: &[f64]) {
        self.checked += 1;
        if ours.len() != theirs.len() {
            self.fail(
                key,
                format!("length {} != expected {}", ours.len(), theirs.len()),
            );
            return;
        }
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            let tol = rel * b.abs() + abs.get(i).copied().unwrap_or(0.0);
            // NaN differences fail too.
            if (a - b).abs().is_nan() || (a - b).abs() > tol {
                self.fail(
                    key,
                    format!(
                        "[{i}] ours {a:e} vs expected {b:e} (|diff| {:e} > tol {tol:e})",
                        (a - b).abs()
                    ),
                );
                return;
            }
        }
    }
}

fn nums(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_f64).collect(),
        other => other.as_f64().into_iter().collect(),
    }
}

fn col_f64(values: &[f32], dim: usize, d: usize) -> impl Iterator<Item = f64> + Clone + '_ {
    values.iter().skip(d).step_by(dim).map(|&x| f64::from(x))
}

fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let s = orl_data::report::Summary::of(values);
    (s.mean, s.std)
}

fn check(sidecar: &Path, ds: &Dataset, v: &Value, c: &mut Checker) {
    let eps: Vec<_> = ds.episodes().collect();
    let report = Report::new(ds);
    // float64 sources narrowed to the format's float32 rewards: bound the rounding rigorously,
    // |f32(x) - x| <= |x| * 2^-24 per value, so sums may differ by sum|x| * 2^-24.
    let narrowed = ds
        .meta()
        .provenance
        .notes
        .iter()
        .any(|n| n.contains("rewards") && n.contains("narrowed"));
    let ulp = if narrowed { 2f64.powi(-24) } else { 0.0 };
    let returns = ds.episode_returns();
    let abs_ret: Vec<f64> = eps
        .iter()
        .map(|e| {
            ds.rewards()[e.rows.clone()]
                .iter()
                .map(|&r| f64::from(r).abs())
                .sum::<f64>()
                * ulp
        })
        .collect();

    for (key, val) in v.as_object().into_iter().flatten() {
        if val.is_null() {
            continue;
        }
        match key.as_str() {
            "num_transitions" => c.exact(key, ds.len() as u64, val.as_u64().unwrap_or(u64::MAX)),
            "num_episodes" | "d3rlpy_reloaded_num_episodes" | "total_episodes_metadata" => {
                c.exact(key, eps.len() as u64, val.as_u64().unwrap_or(u64::MAX))
            }
            "total_steps_metadata" => {
                c.exact(key, ds.len() as u64, val.as_u64().unwrap_or(u64::MAX))
            }
            "num_stored_observations" => c.exact(
                key,
                (ds.len() + eps.len()) as u64,
                val.as_u64().unwrap_or(u64::MAX),
            ),
            "num_terminals" => c.exact(
                key,
                eps.iter().filter(|e| e.terminal).count() as u64,
                val.as_u64().unwrap_or(u64::MAX),
            ),
            "num_timeouts" => c.exact(
                key,
                eps.iter().filter(|e| e.timeout).count() as u64,
                val.as_u64().unwrap_or(u64::MAX),
            ),
            "num_unterminated_trailing" => {
                c.exact(
                    key,
                    u64::from(report.episode_ends.trailing_unterminated),
                    val.as_u64().unwrap_or(u64::MAX),
                );
                c.exact(
                    "unterminated episodes (all trailing)",
                    report.episode_ends.unterminated as u64,
                    val.as_u64().unwrap_or(u64::MAX),
                );
            }
            "trailing_incomplete_episode" => c.exact(
                key,
                report.episode_ends.trailing_unterminated,
                val.as_bool().unwrap_or(false),
            ),
            "num_complete_episodes" => c.exact(
                key,
                eps.iter().filter(|e| !e.is_unterminated()).count() as u64,
                val.as_u64().unwrap_or(u64::MAX),
            ),
            "episode_lengths" => c.exact(
                key,
                eps.iter().map(|e| e.len() as f64).collect::<Vec<_>>(),
                nums(val),
            ),
            "episode_terminal" => c.exact(
                key,
                eps.iter().map(|e| e.terminal).collect::<Vec<_>>(),
                val.as_array()
                    .map(|a| a.iter().filter_map(Value::as_bool).collect())
                    .unwrap_or_default(),
            ),
            "episode_timeout" => c.exact(
                key,
                eps.iter().map(|e| e.timeout).collect::<Vec<_>>(),
                val.as_array()
                    .map(|a| a.iter().filter_map(Value::as_bool).collect())
                    .unwrap_or_default(),
            ),
            "episode_returns" => c.close(key, &returns, &nums(val), 1e-9, &abs_ret),
            "sum_rewards" => c.close(
                key,
                &[report.reward_sum],
                &nums(val),
                1e-9,
                &[abs_ret.iter().sum()],
            ),
            "reward_mean" => c.close(
                key,
                &[report.rewards.mean],
                &nums(val),
                1e-9,
                &[abs_ret.iter().sum::<f64>() / ds.len() as f64],
            ),
            "reward_std" => c.close(
                key,
                &[report.rewards.std],
                &nums(val),
                1e-6,
                &[4.0 * ulp * report.rewards.max.abs().max(report.rewards.min.abs())],
            ),
            "reward_min" if narrowed => c.close(key, &[report.rewards.min], &nums(val), ulp, &[]),
            "reward_max" if narrowed => c.close(key, &[report.rewards.max], &nums(val), ulp, &[]),
            "reward_min" => c.f32_bits(key, &[report.rewards.min], &nums(val)),
            "reward_max" => c.f32_bits(key, &[report.rewards.max], &nums(val)),
            "obs_dim" => c.exact(key, ds.obs_dim() as u64, val.as_u64().unwrap_or(u64::MAX)),
            "qpos_dim" | "qvel_dim" => {}
            "obs_mean" => c.close(
                key,
                &report
                    .observations
                    .iter()
                    .map(|s| s.summary.mean)
                    .collect::<Vec<_>>(),
                &nums(val),
                1e-9,
                &[],
            ),
            "obs_std" => c.close(
                key,
                &report
                    .observations
                    .iter()
                    .map(|s| s.summary.std)
                    .collect::<Vec<_>>(),
                &nums(val),
                1e-6,
                &[],
            ),
            "obs_min" => c.f32_bits(
                key,
                &report
                    .observations
                    .iter()
                    .map(|s| s.summary.min)
                    .collect::<Vec<_>>(),
                &nums(val),
            ),
            "obs_max" => c.f32_bits(
                key,
                &report
                    .observations
                    .iter()
                    .map(|s| s.summary.max)
                    .collect::<Vec<_>>(),
                &nums(val),
            ),
            "first_observation" => c.f32_bits(
                key,
                &ds.observation(0)
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect::<Vec<_>>(),
                &nums(val),
            ),
            "last_observation" => c.f32_bits(
                key,
                &ds.observation(ds.len() - 1)
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect::<Vec<_>>(),
                &nums(val),
            ),
            "next_obs_mean" | "next_obs_std" => {
                let od = ds.obs_dim();
                let (m, s): (Vec<f64>, Vec<f64>) = (0..od)
                    .map(|d| mean_std(col_f64(ds.next_observations(), od, d)))
                    .unzip();
                if key == "next_obs_mean" {
                    c.close(key, &m, &nums(val), 1e-9, &[])
                } else {
                    c.close(key, &s, &nums(val), 1e-6, &[])
                }
            }
            "obs_mean_all_stored" | "obs_std_all_stored" => {
                // Minari stores T+1 observations per episode: the N transition observations plus each episode's final s'.
                let od = ds.obs_dim();
                let mut all: Vec<f32> = ds.observations().to_vec();
                for e in &eps {
                    let last = e.rows.end - 1;
                    all.extend_from_slice(&ds.next_observations()[last * od..(last + 1) * od]);
                }
                let (m, s): (Vec<f64>, Vec<f64>) =
                    (0..od).map(|d| mean_std(col_f64(&all, od, d))).unzip();
                if key.starts_with("obs_mean") {
                    c.close(key, &m, &nums(val), 1e-9, &[])
                } else {
                    c.close(key, &s, &nums(val), 1e-6, &[])
                }
            }
            "action_space" => c.exact(
                key,
                if ds.meta().action_space.is_discrete() {
                    "discrete"
                } else {
                    "continuous"
                },
                val.as_str().unwrap_or(""),
            ),
            "action_dim" => c.exact(key, ds.act_dim() as u64, val.as_u64().unwrap_or(u64::MAX)),
            "n_actions" => c.exact(
                key,
                match ds.meta().action_space {
                    orl_data::ActionSpace::Discrete { n } => n as u64,
                    _ => 0,
                },
                val.as_u64().unwrap_or(u64::MAX),
            ),
            "action_counts" => match &report.actions {
                orl_data::report::ActionCoverage::Discrete { counts } => c.exact(
                    key,
                    counts.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                    nums(val),
                ),
                _ => c.fail(key, "dataset is not discrete".into()),
            },
            "action_mean" | "action_std" => match &report.actions {
                orl_data::report::ActionCoverage::Continuous { dims, .. } => {
                    if key == "action_mean" {
                        c.close(
                            key,
                            &dims.iter().map(|s| s.summary.mean).collect::<Vec<_>>(),
                            &nums(val),
                            1e-9,
                            &[],
                        );
                    } else {
                        c.close(
                            key,
                            &dims.iter().map(|s| s.summary.std).collect::<Vec<_>>(),
                            &nums(val),
                            1e-6,
                            &[],
                        );
                    }
                }
                _ => c.fail(key, "dataset is not continuous".into()),
            },
            "d4rl_qlearning_dataset_len" => {
                // d4rl.qlearning_dataset: i in 0..N-1, skipping rows with timeouts[i].
                let n = (0..ds.len() - 1).filter(|&i| !ds.timeouts()[i]).count();
                c.exact(key, n as u64, val.as_u64().unwrap_or(u64::MAX));
            }
            "d3rlpy_reloaded_transition_count" => c.exact(
                key,
                report.quality.sampleable_transitions as u64,
                val.as_u64().unwrap_or(u64::MAX),
            ),
            // d3rlpy dumps do not store the environment; the other formats do.
            "env_id" if !sidecar.to_string_lossy().contains("d3rlpy") => c.exact(
                key,
                ds.meta().env_id.as_deref().unwrap_or(""),
                val.as_str().unwrap_or(""),
            ),
            "seed" if sidecar.to_string_lossy().contains("d4rl") => {
                c.exact(key, ds.meta().seed, val.as_i64())
            }
            "max_path" => c.exact(key, ds.meta().max_episode_steps, val.as_u64()),
            "episode_seeds" => c.exact(
                key,
                ds.meta()
                    .extra
                    .get("episode_seeds")
                    .map(nums)
                    .unwrap_or_default(),
                nums(val),
            ),
            "dataset_id" => c.exact(
                key,
                ds.meta()
                    .extra
                    .get("minari_dataset_id")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                val.as_str().unwrap_or(""),
            ),
            "d3rlpy_dataset_version" => c.exact(
                key,
                ds.meta()
                    .extra
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                val.as_str().unwrap_or(""),
            ),
            "hdf5_datasets" => {
                if let Some(lp) = val.get("infos/action_log_probs") {
                    c.exact(
                        "behavior_log_prob rows",
                        ds.behavior_log_prob().map(<[f64]>::len),
                        lp.get("shape")
                            .and_then(|s| s.get(0))
                            .and_then(Value::as_u64)
                            .map(|x| x as usize),
                    );
                }
            }
            _ => {}
        }
    }
}

#[test]
fn every_sidecar_is_reproduced() {
    let Some(root) = fixtures_root() else { return };
    let mut found = Vec::new();
    sidecars(&root.join("datasets"), &mut found);
    assert!(
        !found.is_empty(),
        "no *.expected.json under {}",
        root.join("datasets").display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for sidecar in &found {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(sidecar).expect("read sidecar"))
                .expect("sidecar JSON");
        let Some(data) = dataset_for(sidecar, &v) else {
            failures.push(format!("{}: no dataset beside it", sidecar.display()));
            continue;
        };
        let name = sidecar
            .strip_prefix(&root)
            .unwrap_or(sidecar)
            .display()
            .to_string();
        let converted = match convert::read(&data, Format::Auto, &ConvertOptions::default()) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: conversion failed: {e}"));
                continue;
            }
        };
        // Check the Parquet round trip too: what `orl convert` writes is what is compared.
        let out = tmp.path().join(format!(
            "{}.parquet",
            found.iter().position(|p| p == sidecar).unwrap_or(0)
        ));
        write_parquet(&converted, &out, &WriteOptions::default()).expect("write parquet");
        let reread = Dataset::open(&out).expect("read back parquet");
        assert_eq!(
            reread, converted,
            "{name}: Parquet round trip changed the dataset"
        );
        let mut c = Checker {
            name: name.clone(),
            failures: Vec::new(),
            checked: 0,
        };
        check(sidecar, &reread, &v, &mut c);
        eprintln!(
            "{name}: {} checks, {} failure(s)",
            c.checked,
            c.failures.len()
        );
        assert!(
            c.checked >= 15,
            "{name}: only {} sidecar fields were checked",
            c.checked
        );
        failures.extend(c.failures);
    }
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
