//! d3rlpy `ReplayBuffer.dump()` files (d3rlpy 2.x, `d3rlpy/dataset/io.py`, dataset version "2.1").
//!
//! Layout: `columns` (vlen strings), `num_episodes` (int64 scalar), `version`, and per episode
//! `i`: `observations_{i} (T, obs_dim)` float32, `actions_{i} (T, act_dim)` float32 or
//! `(T, 1)` int64 (discrete), `rewards_{i} (T, 1)` float32, `terminated_{i}` scalar bool.
//!
//! d3rlpy stores the `T` observations at which actions were taken and no final next
//! observation. So `s'` of an episode's last row is unknown: orl stores it as null. A terminated
//! episode's last transition stays usable (it does not bootstrap); the last row of a
//! non-terminated episode is kept as data but cannot be sampled as a transition, exactly as
//! d3rlpy's own `transition_count` (T for terminated episodes, T - 1 otherwise). d3rlpy does not
//! record whether a non-terminated episode was cut by a time limit or by the end of collection;
//! orl marks such episodes `timeout`, the convention of d3rlpy's `timeouts` argument. The number
//! of discrete actions is not stored either and is inferred as the largest action + 1.

use std::path::Path;

use super::flat_meta;
use super::h5::{H5, rows_width};
use crate::dataset::{Actions, Columns, Dataset};
use crate::error::{DataError, Result};

/// Reads a d3rlpy dump.
pub fn read(path: &Path) -> Result<Dataset> {
    let f = H5::open(path)?;
    let count = match f.int_scalar("num_episodes") {
        Some(n) => usize::try_from(n)
            .map_err(|_| DataError::invalid(path, format!("`num_episodes` is {n}")))?,
        None if f.has("num_episodes") => {
            return Err(DataError::dtype(
                path,
                "num_episodes",
                "int64 scalar",
                "another type",
            ));
        }
        None => {
            // Older dumps: count the observations_{i} keys.
            let names = f.root_datasets()?;
            (0..)
                .take_while(|i| names.iter().any(|n| *n == format!("observations_{i}")))
                .count()
        }
    };
    if count == 0 {
        return Err(DataError::Empty {
            path: path.into(),
            detail: "`num_episodes` is 0".into(),
        });
    }
    let mut notes = Vec::new();
    let mut od = None;
    let mut discrete = None;
    let mut obs = Vec::new();
    let mut act_f = Vec::new();
    let mut act_i = Vec::new();
    let mut ad = 0;
    let mut rewards = Vec::new();
    let mut terminals = Vec::new();
    let mut timeouts = Vec::new();
    let mut episodes = Vec::with_capacity(count);
    let mut ends = Vec::with_capacity(count);
    for i in 0..count {
        let ok = format!("observations_{i}");
        let o = f.floats(&ok)?;
        let (t, d) = match o.shape.as_slice() {
            [t, d] => (*t, *d),
            other => {
                return Err(DataError::shape(
                    path,
                    &ok,
                    "(T, obs_dim)",
                    format!("shape {other:?}"),
                ));
            }
        };
        if t == 0 {
            return Err(DataError::Empty {
                path: path.into(),
                detail: format!("`{ok}` has 0 rows"),
            });
        }
        if *od.get_or_insert(d) != d {
            return Err(DataError::shape(
                path,
                &ok,
                format!("obs_dim {}", od.unwrap_or(0)),
                format!("obs_dim {d}"),
            ));
        }
        obs.extend(o.values);
        let ak = format!("actions_{i}");
        let is_int = f.is_integer(&ak)?;
        if *discrete.get_or_insert(is_int) != is_int {
            return Err(DataError::dtype(
                path,
                &ak,
                if is_int {
                    "float32 like episode 0"
                } else {
                    "int64 like episode 0"
                },
                if is_int { "integer" } else { "float" },
            ));
        }
        let (ta, w) = rows_width(path, &ak, &f.shape(&ak)?)?;
        if ta != t {
            return Err(DataError::shape(
                path,
                &ak,
                format!("{t} rows like `{ok}`"),
                format!("{ta} rows"),
            ));
        }
        if is_int {
            if w != 1 {
                return Err(DataError::shape(
                    path,
                    &ak,
                    "(T, 1) for discrete actions",
                    format!("width {w}"),
                ));
            }
            act_i.extend(f.ints(&ak)?.0);
        } else {
            if i == 0 {
                ad = w;
            } else if w != ad {
                return Err(DataError::shape(
                    path,
                    &ak,
                    format!("act_dim {ad}"),
                    format!("act_dim {w}"),
                ));
            }
            act_f.extend(f.floats(&ak)?.values);
        }
        let rk = format!("rewards_{i}");
        let (r, rs) = f.f64s(&rk)?;
        let (tr, rw) = rows_width(path, &rk, &rs)?;
        if tr != t || rw != 1 {
            return Err(DataError::shape(
                path,
                &rk,
                format!("({t}, 1)"),
                format!("shape {rs:?}"),
            ));
        }
        if let Some(note) = super::narrowing_note(&rk, &r) {
            notes.push(note);
        }
        rewards.extend(r.into_iter().map(|x| x as f32));
        let tk = format!("terminated_{i}");
        let (term, ts) = f.bools(&tk)?;
        if term.len() != 1 {
            return Err(DataError::shape(
                path,
                &tk,
                "a scalar",
                format!("shape {ts:?}"),
            ));
        }
        terminals.extend(std::iter::repeat_n(false, t - 1));
        terminals.push(term[0]);
        timeouts.extend(std::iter::repeat_n(false, t - 1));
        timeouts.push(!term[0]);
        episodes.push((i as i64, t));
        ends.push(obs.len() / d);
    }
    let od = od.unwrap_or(0);
    let n = rewards.len();
    // s' = next row's observation inside an episode; unknown (null, zeros) on each last row.
    let mut next = vec![0f32; n * od];
    let mut valid = vec![true; n];
    let mut start = 0;
    for &end in &ends {
        next[start * od..(end - 1) * od].copy_from_slice(&obs[(start + 1) * od..end * od]);
        valid[end - 1] = false;
        start = end;
    }
    let actions = if discrete == Some(true) {
        Actions::Discrete(act_i)
    } else {
        Actions::Continuous {
            dim: ad,
            values: act_f,
        }
    };
    let mut meta = flat_meta(path, None, od, &actions, &mut notes)?;
    meta.provenance.source_format = Some("d3rlpy".into());
    if let Some(v) = f.string("version") {
        meta.extra.insert("d3rlpy_dataset_version".into(), v.into());
    }
    notes.push("d3rlpy stores no final next observation: each episode's last s' is null; non-terminated episodes are marked timeout".into());
    meta.provenance.notes = notes;
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: Some(valid),
        actions,
        rewards,
        terminals,
        timeouts,
        behavior_log_prob: None,
    };
    Dataset::new_at(path, meta, cols, &episodes)
}
