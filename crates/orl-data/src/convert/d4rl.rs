//! D4RL-layout HDF5 (Fu et al. 2020, `d4rl/offline_env.py` and
//! `scripts/generation/mujoco/collect_data.py`).
//!
//! Read: `observations (N, obs_dim)`, `actions (N, act_dim)` (integers: discrete), `rewards (N,)`,
//! `terminals (N,)`, and when present `timeouts (N,)`, `next_observations (N, obs_dim)`,
//! `infos/action_log_probs (N,)` (-> `behavior_log_prob`), `metadata/env_id`, `metadata/seed`,
//! `metadata/algorithm`, `metadata/policy/description`. Unknown keys are ignored. Episodes end
//! after each row with `terminals` or `timeouts` set; the rows after the last flag (D4RL cuts its
//! arrays at exactly N) form a trailing episode that is neither terminal nor timeout.
//!
//! Write: the same keys, gzip level 4 chunks as D4RL writes them, booleans as h5py's enum, plus
//! three extension keys readers ignore: `infos/episode_id`, `infos/next_observation_valid` (when
//! some next observations are unknown) and `orl_meta_json` (the orl metadata as a UTF-8 byte array),
//! so an exported file re-imports bit for bit.

use std::io::Write;
use std::path::Path;

use hdf5_pure::{AttrValue, EnumTypeBuilder, FileBuilder, make_i8_type};

use super::h5::{H5, rows_width};
use super::{Flat, flat_meta, keys};
use crate::dataset::{Actions, Dataset};
use crate::error::{DataError, Result};
use crate::fsutil::atomic_write;

/// Reads a D4RL-layout HDF5 file.
pub fn read(path: &Path) -> Result<Dataset> {
    let f = H5::open(path)?;
    let mut notes = Vec::new();
    let obs = f.floats(keys::OBS)?;
    let (n, od) = match obs.shape.as_slice() {
        [n, d] => (*n, *d),
        other => {
            return Err(DataError::shape(
                path,
                keys::OBS,
                "a 2-D array (N, obs_dim)",
                format!("shape {other:?}"),
            ));
        }
    };
    if obs.narrowed {
        notes.push(format!("`{}` narrowed from float64 to float32", keys::OBS));
    }
    let act_shape = f.shape(keys::ACTIONS)?;
    let (na, ad) = rows_width(path, keys::ACTIONS, &act_shape)?;
    let actions = if f.is_integer(keys::ACTIONS)? {
        if ad != 1 {
            return Err(DataError::shape(
                path,
                keys::ACTIONS,
                "(N,) or (N, 1) for integer (discrete) actions",
                format!("shape {act_shape:?}"),
            ));
        }
        Actions::Discrete(f.ints(keys::ACTIONS)?.0)
    } else {
        let a = f.floats(keys::ACTIONS)?;
        Actions::Continuous {
            dim: ad,
            values: a.values,
        }
    };
    let _ = na;
    let (rewards, narrowed_note) = if f.is_integer(keys::REWARDS).unwrap_or(false) {
        return Err(DataError::dtype(
            path,
            keys::REWARDS,
            "float32 or float64",
            "integer",
        ));
    } else {
        let (r64, shape) = f.f64s(keys::REWARDS)?;
        let (nr, w) = rows_width(path, keys::REWARDS, &shape)?;
        if w != 1 {
            return Err(DataError::shape(
                path,
                keys::REWARDS,
                "(N,) or (N, 1)",
                format!("shape {shape:?}"),
            ));
        }
        let _ = nr;
        let note = super::narrowing_note(keys::REWARDS, &r64);
        (
            r64.into_iter().map(|x| x as f32).collect::<Vec<f32>>(),
            note,
        )
    };
    notes.extend(narrowed_note);
    let terminals = f.bools(keys::TERMINALS)?.0;
    let timeouts = if f.has(keys::TIMEOUTS) {
        Some(f.bools(keys::TIMEOUTS)?.0)
    } else {
        notes.push(
            "no `timeouts` key (D4RL v0 file): time-limit ends cannot be told from the data".into(),
        );
        None
    };
    let next_observations = if f.has(keys::NEXT_OBS) {
        let nx = f.floats(keys::NEXT_OBS)?;
        if nx.shape != [n, od] {
            return Err(DataError::shape(
                path,
                keys::NEXT_OBS,
                format!("({n}, {od}) like `observations`"),
                format!("shape {:?}", nx.shape),
            ));
        }
        Some(nx.values)
    } else {
        None
    };
    let log_probs = if f.has(keys::LOG_PROBS) {
        let (v, shape) = f.f64s(keys::LOG_PROBS)?;
        rows_width(path, keys::LOG_PROBS, &shape)?;
        Some(v)
    } else {
        None
    };
    let episode_ids = if f.has(keys::EPISODE_ID) {
        Some(f.ints(keys::EPISODE_ID)?.0)
    } else {
        None
    };
    let next_valid = if f.has(keys::NEXT_VALID) {
        Some(f.bools(keys::NEXT_VALID)?.0)
    } else {
        None
    };
    let orl_meta = if f.has(keys::ORL_META) {
        let (bytes, _) = f.ints(keys::ORL_META)?;
        Some(
            String::from_utf8(bytes.into_iter().map(|b| b as u8).collect())
                .map_err(|e| DataError::invalid(path, format!("`{}`: {e}", keys::ORL_META)))?,
        )
    } else {
        None
    };
    let restored = orl_meta.is_some();
    let mut meta = flat_meta(path, orl_meta, od, &actions, &mut notes)?;
    if !restored {
        meta.env_id = f
            .string("metadata/env_id")
            .or_else(|| match f.root_attrs().get("env_id") {
                Some(AttrValue::String(s)) => Some(s.clone()),
                _ => None,
            });
        meta.seed = f.int_scalar("metadata/seed");
        meta.generator_policy = match (
            f.string("metadata/algorithm"),
            f.string("metadata/policy/description"),
        ) {
            (Some(a), Some(d)) => Some(format!("{a}: {d}")),
            (a, d) => a.or(d),
        };
        if let Some(mp) = f.int_scalar("metadata/max_path") {
            meta.max_episode_steps = u64::try_from(mp).ok();
        }
        meta.provenance.source_format = Some("d4rl".into());
    }
    Flat {
        obs_dim: od,
        observations: obs.values,
        next_observations,
        actions,
        rewards,
        terminals,
        timeouts,
        log_probs,
        episode_ids,
        next_valid,
    }
    .into_dataset(path, meta, notes)
}

/// Rows per HDF5 chunk: about 1 MiB of the widest array, capped at N.
fn chunk_rows(n: usize, width: usize) -> u64 {
    let rows = (1 << 20) / (4 * width.max(1));
    rows.clamp(1, n.max(1)) as u64
}

/// Writes `ds` as a D4RL-layout HDF5 file, atomically.
pub fn write(ds: &Dataset, path: &Path) -> Result<()> {
    let flat = Flat::from_dataset(ds);
    let n = ds.len() as u64;
    let od = ds.obs_dim();
    let bool_type = EnumTypeBuilder::with_base(make_i8_type())
        .value("FALSE", 0)
        .value("TRUE", 1)
        .build()
        .map_err(|e| DataError::invalid(path, format!("building the HDF5 bool type: {e}")))?;
    let as_u8 = |v: &[bool]| v.iter().map(|&b| u8::from(b)).collect::<Vec<u8>>();
    let mut fb = FileBuilder::new();
    let f32_2d = |fb: &mut FileBuilder, key: &str, v: &[f32], w: usize| {
        fb.create_dataset(key)
            .with_f32_data(v)
            .with_shape(&[n, w as u64])
            .with_chunks(&[chunk_rows(n as usize, w), w as u64])
            .with_deflate(4);
    };
    f32_2d(&mut fb, keys::OBS, &flat.observations, od);
    f32_2d(
        &mut fb,
        keys::NEXT_OBS,
        flat.next_observations.as_deref().unwrap_or_default(),
        od,
    );
    match &flat.actions {
        Actions::Continuous { dim, values } => f32_2d(&mut fb, keys::ACTIONS, values, *dim),
        Actions::Discrete(v) => {
            fb.create_dataset(keys::ACTIONS)
                .with_i64_data(v)
                .with_shape(&[n])
                .with_chunks(&[chunk_rows(n as usize, 2)])
                .with_deflate(4);
        }
    }
    fb.create_dataset(keys::REWARDS)
        .with_f32_data(&flat.rewards)
        .with_shape(&[n])
        .with_chunks(&[chunk_rows(n as usize, 1)])
        .with_deflate(4);
    for (key, v) in [
        (keys::TERMINALS, &flat.terminals),
        (
            keys::TIMEOUTS,
            flat.timeouts.as_ref().unwrap_or(&flat.terminals),
        ),
    ] {
        fb.create_dataset(key)
            .with_enum_u8_data(bool_type.clone(), &as_u8(v))
            .with_shape(&[n])
            .with_chunks(&[chunk_rows(n as usize, 1)])
            .with_deflate(4);
    }
    let mut infos = fb.create_group("infos");
    if let Some(lp) = &flat.log_probs {
        infos
            .create_dataset("action_log_probs")
            .with_f64_data(lp)
            .with_shape(&[n])
            .with_chunks(&[chunk_rows(n as usize, 2)])
            .with_deflate(4);
    }
    if let Some(ids) = &flat.episode_ids {
        infos
            .create_dataset("episode_id")
            .with_i64_data(ids)
            .with_shape(&[n])
            .with_chunks(&[chunk_rows(n as usize, 2)])
            .with_deflate(4);
    }
    if let Some(valid) = &flat.next_valid {
        infos
            .create_dataset("next_observation_valid")
            .with_enum_u8_data(bool_type.clone(), &as_u8(valid))
            .with_shape(&[n])
            .with_chunks(&[chunk_rows(n as usize, 1)])
            .with_deflate(4);
    }
    fb.add_group(infos.finish());
    let meta = ds.meta();
    let mut md = fb.create_group("metadata");
    if let Some(e) = &meta.env_id {
        md.create_dataset("env_id")
            .with_ascii_strings(&[e.as_str()])
            .map_err(|e| DataError::invalid(path, format!("metadata/env_id: {e}")))?
            .with_shape(&[]);
    }
    if let Some(s) = meta.seed {
        md.create_dataset("seed")
            .with_i64_data(&[s])
            .with_shape(&[]);
    }
    fb.add_group(md.finish());
    let json = serde_json::to_string(meta)
        .map_err(|e| DataError::invalid(path, format!("serialising metadata: {e}")))?;
    fb.create_dataset(keys::ORL_META)
        .with_u8_data(json.as_bytes());
    fb.set_attr("format", AttrValue::String("d4rl".into()));
    fb.set_attr(
        "generator",
        AttrValue::String(format!("orl-data {}", crate::meta::CONVERTER_VERSION)),
    );
    let bytes = fb
        .finish()
        .map_err(|e| DataError::invalid(path, format!("encoding HDF5: {e}")))?;
    atomic_write(path, |w| {
        w.write_all(&bytes).map_err(|e| DataError::io(path, e))
    })
}
