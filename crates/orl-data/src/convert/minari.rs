//! Minari datasets (Farama, minari 0.5): a directory holding `data/metadata.json` and either
//! `data/main_data.hdf5` (HDF5 backend) or `data/<episode_id>/part-0.arrow` (Arrow backend).
//!
//! Each episode stores `T + 1` observations (the final one included), so `s'` of every row is
//! known. HDF5 backend: groups `episode_{id}` with `observations (T+1, d)`, `actions (T, a)` or
//! `(T,)` int64, `rewards (T,)` float64, `terminations`/`truncations (T,)` bool. Arrow backend:
//! every column has `T + 1` rows, the last row of actions/rewards/flags being padding that is
//! dropped. An episode is terminal when its last `terminations` is true and a timeout when its
//! last `truncations` is. Rewards are float64 in Minari and float32 in orl; narrowing is noted in
//! the provenance. Only Box observation spaces and Box/Discrete action spaces are supported.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};
use arrow::ipc::reader::FileReader;
use serde_json::Value;

use super::h5::H5;
use super::sanitize_python_json;
use crate::dataset::{Actions, Columns, Dataset};
use crate::error::{DataError, Result};
use crate::meta::{ActionSpace, DatasetMeta, ObservationSpace};

/// One episode as read from either backend, with the padding already removed.
struct RawEpisode {
    id: i64,
    seed: Option<i64>,
    /// `(T + 1) * obs_dim`.
    observations: Vec<f32>,
    actions: Actions,
    rewards: Vec<f64>,
    terminations: Vec<bool>,
    truncations: Vec<bool>,
}

/// Resolves a dataset root, its `data/` folder, or `main_data.hdf5` to the `data/` folder.
fn data_dir(path: &Path) -> PathBuf {
    if path.is_file() {
        return path.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    if path.join("data").join("metadata.json").is_file() {
        return path.join("data");
    }
    path.to_path_buf()
}

fn space(path: &Path, key: &str, v: &Value) -> Result<Value> {
    let s = v
        .get(key)
        .ok_or_else(|| DataError::missing(path, "metadata field", key))?;
    match s {
        Value::String(js) => serde_json::from_str(&sanitize_python_json(js))
            .map_err(|e| DataError::invalid(path, format!("`{key}` is not valid JSON: {e}"))),
        other => Ok(other.clone()),
    }
}

fn bounds(v: Option<&Value>) -> Option<Vec<f64>> {
    let arr = v?.as_array()?;
    arr.iter()
        .map(|x| match x {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if s == "inf" => Some(f64::INFINITY),
            Value::String(s) if s == "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        })
        .collect()
}

fn box_dim(path: &Path, key: &str, s: &Value) -> Result<usize> {
    let shape: Vec<u64> = s
        .get("shape")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .ok_or_else(|| DataError::missing(path, "metadata field", format!("{key}.shape")))?;
    if shape.len() != 1 {
        return Err(DataError::invalid(
            path,
            format!("`{key}` has shape {shape:?}; only flat (1-D) Box spaces are supported"),
        ));
    }
    Ok(shape[0] as usize)
}

/// Reads a Minari dataset directory (either backend), or its `main_data.hdf5`.
pub fn read(path: &Path) -> Result<Dataset> {
    let dir = data_dir(path);
    let meta_path = dir.join("metadata.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|e| DataError::io(&meta_path, e))?;
    let md: Value = serde_json::from_str(&sanitize_python_json(&text))
        .map_err(|e| DataError::invalid(&meta_path, format!("not valid JSON: {e}")))?;
    let obs_space = space(&meta_path, "observation_space", &md)?;
    let act_space = space(&meta_path, "action_space", &md)?;
    let ty = |s: &Value| {
        s.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if ty(&obs_space) != "Box" {
        return Err(DataError::invalid(
            &meta_path,
            format!(
                "observation_space is `{}`; only Box is supported",
                ty(&obs_space)
            ),
        ));
    }
    let od = box_dim(&meta_path, "observation_space", &obs_space)?;
    let action_space = match ty(&act_space).as_str() {
        "Box" => ActionSpace::Continuous {
            dim: box_dim(&meta_path, "action_space", &act_space)?,
            low: bounds(act_space.get("low")),
            high: bounds(act_space.get("high")),
        },
        "Discrete" => {
            let start = act_space.get("start").and_then(Value::as_i64).unwrap_or(0);
            if start != 0 {
                return Err(DataError::invalid(
                    &meta_path,
                    format!("Discrete action space starts at {start}; only start 0 is supported"),
                ));
            }
            ActionSpace::Discrete {
                n: act_space.get("n").and_then(Value::as_u64).ok_or_else(|| {
                    DataError::missing(&meta_path, "metadata field", "action_space.n")
                })? as usize,
            }
        }
        other => {
            return Err(DataError::invalid(
                &meta_path,
                format!("action_space is `{other}`; only Box and Discrete are supported"),
            ));
        }
    };
    let format = md
        .get("data_format")
        .and_then(Value::as_str)
        .unwrap_or("hdf5")
        .to_string();
    let mut raw = match format.as_str() {
        "hdf5" => read_hdf5(&dir.join("main_data.hdf5"), od, &action_space)?,
        "arrow" => read_arrow(&dir, od, &action_space)?,
        other => {
            return Err(DataError::UnknownFormat {
                path: meta_path,
                detail: format!("Minari data_format `{other}`; expected hdf5 or arrow"),
            });
        }
    };
    raw.sort_by_key(|e| e.id);
    if raw.is_empty() {
        return Err(DataError::Empty {
            path: dir,
            detail: "no episodes".into(),
        });
    }

    let mut meta = DatasetMeta::new(
        ObservationSpace {
            dim: od,
            low: bounds(obs_space.get("low")),
            high: bounds(obs_space.get("high")),
        },
        action_space.clone(),
    );
    let env_spec = md.get("env_spec").and_then(|s| match s {
        Value::String(js) => serde_json::from_str::<Value>(&sanitize_python_json(js)).ok(),
        other => Some(other.clone()),
    });
    meta.env_id = env_spec
        .as_ref()
        .and_then(|s| s.get("id"))
        .and_then(Value::as_str)
        .map(String::from);
    meta.max_episode_steps = env_spec
        .as_ref()
        .and_then(|s| s.get("max_episode_steps"))
        .and_then(Value::as_u64);
    meta.generator_policy = md
        .get("algorithm_name")
        .and_then(Value::as_str)
        .map(String::from);
    meta.provenance.source_format = Some(format!("minari-{format}"));
    for k in [
        "dataset_id",
        "minari_version",
        "description",
        "code_permalink",
    ] {
        if let Some(v) = md.get(k) {
            meta.extra.insert(format!("minari_{k}"), v.clone());
        }
    }
    if raw.iter().all(|e| e.seed.is_some()) {
        meta.extra.insert(
            "episode_seeds".into(),
            raw.iter().map(|e| Value::from(e.seed)).collect(),
        );
    }

    let total: usize = raw.iter().map(|e| e.rewards.len()).sum();
    let mut cols = Columns {
        observations: Vec::with_capacity(total * od),
        next_observations: Vec::with_capacity(total * od),
        next_valid: None,
        actions: match &action_space {
            ActionSpace::Continuous { dim, .. } => Actions::Continuous {
                dim: *dim,
                values: Vec::with_capacity(total * dim),
            },
            ActionSpace::Discrete { .. } => Actions::Discrete(Vec::with_capacity(total)),
        },
        rewards: Vec::with_capacity(total),
        terminals: Vec::with_capacity(total),
        timeouts: Vec::with_capacity(total),
        behavior_log_prob: None,
    };
    let mut rewards64 = Vec::with_capacity(total);
    let mut episodes = Vec::with_capacity(raw.len());
    for e in raw {
        let t = e.rewards.len();
        cols.observations
            .extend_from_slice(&e.observations[..t * od]);
        cols.next_observations
            .extend_from_slice(&e.observations[od..(t + 1) * od]);
        match (&mut cols.actions, e.actions) {
            (Actions::Continuous { values, .. }, Actions::Continuous { values: v, .. }) => {
                values.extend(v)
            }
            (Actions::Discrete(a), Actions::Discrete(v)) => a.extend(v),
            _ => unreachable!("checked per episode"),
        }
        cols.rewards.extend(e.rewards.iter().map(|&r| r as f32));
        rewards64.extend(e.rewards);
        // Minari marks only the final step; flags on the last row decide how the episode ended.
        cols.terminals.extend(std::iter::repeat_n(false, t - 1));
        cols.terminals.push(e.terminations[t - 1]);
        cols.timeouts.extend(std::iter::repeat_n(false, t - 1));
        cols.timeouts.push(e.truncations[t - 1]);
        if e.terminations[..t - 1]
            .iter()
            .chain(&e.truncations[..t - 1])
            .any(|&b| b)
        {
            return Err(DataError::invalid(
                &dir,
                format!(
                    "episode {}: a termination/truncation flag is set before its last step",
                    e.id
                ),
            ));
        }
        episodes.push((e.id, t));
    }
    meta.provenance
        .notes
        .extend(super::narrowing_note("rewards", &rewards64));
    Dataset::new_at(&dir, meta, cols, &episodes)
}

fn check_len(path: &Path, key: &str, found: usize, expected: usize) -> Result<()> {
    if found != expected {
        return Err(DataError::shape(
            path,
            key,
            format!("{expected} rows"),
            format!("{found} rows"),
        ));
    }
    Ok(())
}

fn read_hdf5(path: &Path, od: usize, space: &ActionSpace) -> Result<Vec<RawEpisode>> {
    let f = H5::open(path)?;
    let mut out = Vec::new();
    for g in f.root_groups()? {
        let Some(id) = g
            .strip_prefix("episode_")
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let key = |k: &str| format!("{g}/{k}");
        let obs = f.floats(&key("observations"))?;
        let (r, _) = f.f64s(&key("rewards"))?;
        let t = r.len();
        if t == 0 {
            return Err(DataError::Empty {
                path: path.into(),
                detail: format!("`{g}` has 0 steps"),
            });
        }
        if obs.shape != [t + 1, od] {
            return Err(DataError::shape(
                path,
                key("observations"),
                format!("({}, {od}) (T+1 rows)", t + 1),
                format!("shape {:?}", obs.shape),
            ));
        }
        let actions = match space {
            ActionSpace::Continuous { dim, .. } => {
                let a = f.floats(&key("actions"))?;
                if a.shape != [t, *dim] {
                    return Err(DataError::shape(
                        path,
                        key("actions"),
                        format!("({t}, {dim})"),
                        format!("shape {:?}", a.shape),
                    ));
                }
                Actions::Continuous {
                    dim: *dim,
                    values: a.values,
                }
            }
            ActionSpace::Discrete { .. } => {
                let (a, shape) = f.ints(&key("actions"))?;
                check_len(
                    path,
                    &key("actions"),
                    shape.first().copied().unwrap_or(0),
                    t,
                )?;
                Actions::Discrete(a)
            }
        };
        let (term, s1) = f.bools(&key("terminations"))?;
        let (trunc, s2) = f.bools(&key("truncations"))?;
        check_len(
            path,
            &key("terminations"),
            s1.first().copied().unwrap_or(0),
            t,
        )?;
        check_len(
            path,
            &key("truncations"),
            s2.first().copied().unwrap_or(0),
            t,
        )?;
        let seed = f
            .file
            .group(&g)
            .ok()
            .and_then(|gr| gr.attrs().ok())
            .and_then(|a| match a.get("seed") {
                Some(hdf5_pure::AttrValue::I64(s)) => Some(*s),
                _ => None,
            });
        out.push(RawEpisode {
            id,
            seed,
            observations: obs.values,
            actions,
            rewards: r,
            terminations: term,
            truncations: trunc,
        });
    }
    Ok(out)
}

fn read_arrow(dir: &Path, od: usize, space: &ActionSpace) -> Result<Vec<RawEpisode>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let p = entry.map_err(|e| DataError::io(dir, e))?.path();
        let Some(id) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        if !p.is_dir() {
            continue;
        }
        let file = p.join("part-0.arrow");
        let f = File::open(&file).map_err(|e| DataError::io(&file, e))?;
        let reader =
            FileReader::try_new(f, None).map_err(|e| DataError::corrupt(&file, "Arrow IPC", e))?;
        let mut obs = Vec::new();
        let mut act_f = Vec::new();
        let mut act_i = Vec::new();
        let mut rew = Vec::new();
        let mut term = Vec::new();
        let mut trunc = Vec::new();
        for batch in reader {
            let b = batch.map_err(|e| DataError::corrupt(&file, "Arrow IPC", e))?;
            let col = |name: &str| {
                b.column_by_name(name)
                    .cloned()
                    .ok_or_else(|| DataError::missing(&file, "column", name))
            };
            let floats = |name: &str,
                          a: &arrow::array::ArrayRef,
                          dim: usize,
                          out: &mut Vec<f32>|
             -> Result<()> {
                let l = a.as_fixed_size_list_opt().filter(|l| {
                    l.value_length() as usize == dim && l.value_type() == DataType::Float32
                });
                let Some(l) = l else {
                    return Err(DataError::dtype(
                        &file,
                        name,
                        format!("FixedSizeList<float32>[{dim}]"),
                        a.data_type(),
                    ));
                };
                let vals = l.values().as_primitive::<Float32Type>().values();
                out.extend_from_slice(&vals[l.offset() * dim..(l.offset() + l.len()) * dim]);
                Ok(())
            };
            floats("observations", &col("observations")?, od, &mut obs)?;
            let a = col("actions")?;
            match space {
                ActionSpace::Continuous { dim, .. } => floats("actions", &a, *dim, &mut act_f)?,
                ActionSpace::Discrete { .. } => act_i.extend_from_slice(
                    a.as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| DataError::dtype(&file, "actions", "int64", a.data_type()))?
                        .values(),
                ),
            }
            let r = col("rewards")?;
            match r.data_type() {
                DataType::Float64 => {
                    rew.extend_from_slice(r.as_primitive::<Float64Type>().values())
                }
                DataType::Float32 => rew.extend(
                    r.as_primitive::<Float32Type>()
                        .values()
                        .iter()
                        .map(|&x| f64::from(x)),
                ),
                other => return Err(DataError::dtype(&file, "rewards", "double or float", other)),
            }
            for (name, dst) in [("terminations", &mut term), ("truncations", &mut trunc)] {
                let c = col(name)?;
                let bools = c
                    .as_boolean_opt()
                    .ok_or_else(|| DataError::dtype(&file, name, "bool", c.data_type()))?;
                dst.extend(bools.iter().map(|x| x.unwrap_or(false)));
            }
        }
        let meta_path = p.join("metadata.json");
        let em: Value = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|t| serde_json::from_str(&sanitize_python_json(&t)).ok())
            .unwrap_or(Value::Null);
        let rows = obs.len() / od.max(1);
        if rows < 2 {
            return Err(DataError::Empty {
                path: file,
                detail: format!("{rows} observation row(s); an episode needs T+1 >= 2"),
            });
        }
        let t = em
            .get("total_steps")
            .and_then(Value::as_u64)
            .map_or(rows - 1, |x| x as usize);
        if t + 1 != rows {
            return Err(DataError::shape(
                &file,
                "observations",
                format!("{} rows (total_steps + 1)", t + 1),
                format!("{rows} rows"),
            ));
        }
        // Every column has T+1 rows; the last row of the per-step columns is padding.
        for (key, len) in [
            ("rewards", rew.len()),
            ("terminations", term.len()),
            ("truncations", trunc.len()),
        ] {
            check_len(&file, key, len, t + 1)?;
        }
        rew.truncate(t);
        term.truncate(t);
        trunc.truncate(t);
        let actions = match space {
            ActionSpace::Continuous { dim, .. } => {
                check_len(&file, "actions", act_f.len() / dim, t + 1)?;
                act_f.truncate(t * dim);
                Actions::Continuous {
                    dim: *dim,
                    values: act_f,
                }
            }
            ActionSpace::Discrete { .. } => {
                check_len(&file, "actions", act_i.len(), t + 1)?;
                act_i.truncate(t);
                Actions::Discrete(act_i)
            }
        };
        let seed = em.get("seed").and_then(Value::as_i64);
        out.push(RawEpisode {
            id,
            seed,
            observations: obs,
            actions,
            rewards: rew,
            terminations: term,
            truncations: trunc,
        });
    }
    Ok(out)
}
