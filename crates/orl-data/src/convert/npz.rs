//! `.npz` archives with D4RL's key names (`observations`, `actions`, `rewards`, `terminals`,
//! `timeouts`, optionally `next_observations`, `infos/action_log_probs`), as written by
//! `np.savez(path, **d4rl.qlearning_dataset(env))`-style scripts, and the same keys written back.
//!
//! Each entry is an `.npy` file (NumPy format versions 1-3, little-endian, C order). The NPY
//! codec is written here: it is a 10-byte preamble, a Python-literal header and raw
//! little-endian data, and the crates that wrap it either lack `bool` arrays or pin an
//! unmaintained `zip`. Accepted dtypes: `<f4 <f8 |b1 |i1 |u1 <i2 <u2 <i4 <u4 <i8`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::{Flat, flat_meta, keys};
use crate::dataset::{Actions, Dataset};
use crate::error::{DataError, Result};
use crate::fsutil::atomic_write;

/// A decoded `.npy` array: shape plus values in one of the supported kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f4`.
    F32(Vec<f32>),
    /// `<f8`.
    F64(Vec<f64>),
    /// `|b1`.
    Bool(Vec<bool>),
    /// Any supported integer dtype, widened.
    Int(Vec<i64>),
    /// `|u1`, written for byte payloads (reading widens `|u1` to [`NpyData::Int`]).
    U8(Vec<u8>),
}

/// Borrowed values of one array, for encoding without a copy into [`NpyData`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NpyRef<'a> {
    /// `<f4`.
    F32(&'a [f32]),
    /// `<f8`.
    F64(&'a [f64]),
    /// `|b1`.
    Bool(&'a [bool]),
    /// `<i8`.
    Int(&'a [i64]),
    /// `|u1`.
    U8(&'a [u8]),
}

impl NpyRef<'_> {
    /// NumPy's `dtype.str` and the raw little-endian, C-order values: the body of a `.npy`
    /// payload, and what a Python caller turns back into an array (`np.frombuffer`).
    /// [`decode_npy_data`] is its inverse.
    pub fn encode(self) -> (&'static str, Vec<u8>) {
        match self {
            Self::F32(v) => ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Self::F64(v) => ("<f8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Self::Bool(v) => ("|b1", v.iter().map(|&b| u8::from(b)).collect()),
            Self::Int(v) => ("<i8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Self::U8(v) => ("|u1", v.to_vec()),
        }
    }
}

impl NpyData {
    /// The values, borrowed.
    pub fn as_ref(&self) -> NpyRef<'_> {
        match self {
            Self::F32(v) => NpyRef::F32(v),
            Self::F64(v) => NpyRef::F64(v),
            Self::Bool(v) => NpyRef::Bool(v),
            Self::Int(v) => NpyRef::Int(v),
            Self::U8(v) => NpyRef::U8(v),
        }
    }
}

/// One array of an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dtype string of the header, e.g. `<f4`.
    pub descr: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: NpyData,
}

fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'"))?;
    let rest = header[pos + key.len() + 2..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

/// Parses one `.npy` payload; `name` is used in errors.
pub fn parse_npy(path: &Path, name: &str, bytes: &[u8]) -> Result<NpyArray> {
    let bad = |d: String| DataError::corrupt(path, "npy", format!("`{name}`: {d}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic".into()));
    }
    let (hlen, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported NPY version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| bad("header runs past the end (truncated)".into()))?;
    let header =
        std::str::from_utf8(header).map_err(|e| bad(format!("header is not text: {e}")))?;
    let descr = header_field(header, "descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("header has no 'descr'".into()))?
        .to_string();
    if header_field(header, "fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(DataError::dtype(
            path,
            name,
            "C-order array",
            "Fortran-order array",
        ));
    }
    let shape_s = header_field(header, "shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("header has no 'shape'".into()))?;
    let shape = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|e| bad(format!("shape {shape_s:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = decode_npy_data(path, name, &descr, &shape, &bytes[start + hlen..])?;
    Ok(NpyArray { descr, shape, data })
}

/// Decodes the raw little-endian, C-order values of one array of dtype `descr` (NumPy's
/// `dtype.str`) and `shape`; `name` is used in errors. This is the body of a `.npy` payload,
/// and what a Python caller hands over for a NumPy array (`arr.tobytes()`).
pub fn decode_npy_data(
    path: &Path,
    name: &str,
    descr: &str,
    shape: &[usize],
    body: &[u8],
) -> Result<NpyData> {
    let bad = |d: String| DataError::corrupt(path, "npy", format!("`{name}`: {d}"));
    let count: usize = shape.iter().product();
    let need = |size: usize| -> Result<&[u8]> {
        body.get(..count * size).ok_or_else(|| {
            bad(format!(
                "data holds {} bytes, shape {shape:?} needs {} (truncated)",
                body.len(),
                count * size
            ))
        })
    };
    let ints = |size: usize, f: &dyn Fn(&[u8]) -> i64| -> Result<NpyData> {
        Ok(NpyData::Int(
            need(size)?.chunks_exact(size).map(f).collect(),
        ))
    };
    let data = match descr {
        "<f4" => NpyData::F32(
            need(4)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        "<f8" => NpyData::F64(
            need(8)?
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "|b1" => NpyData::Bool(need(1)?.iter().map(|&b| b != 0).collect()),
        "|i1" => ints(1, &|c| i64::from(c[0] as i8))?,
        "|u1" => ints(1, &|c| i64::from(c[0]))?,
        "<i2" => ints(2, &|c| i64::from(i16::from_le_bytes([c[0], c[1]])))?,
        "<u2" => ints(2, &|c| i64::from(u16::from_le_bytes([c[0], c[1]])))?,
        "<i4" => ints(4, &|c| {
            i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })?,
        "<u4" => ints(4, &|c| {
            i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })?,
        "<i8" => ints(8, &|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))?,
        other => {
            return Err(DataError::dtype(
                path,
                name,
                "<f4, <f8, |b1 or a little-endian integer",
                other,
            ));
        }
    };
    Ok(data)
}

/// Encodes one `.npy` (format version 1.0, header padded to 64 bytes as NumPy does).
pub fn encode_npy(shape: &[usize], data: &NpyData) -> Vec<u8> {
    let (descr, body) = data.as_ref().encode();
    let shape_s = match shape {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + body.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads every array of an `.npz` archive, keyed by name (the `.npy` suffix removed).
pub fn read_archive(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    read_archive_from(path, f)
}

fn read_archive_from<R: Read + Seek>(path: &Path, r: R) -> Result<Vec<(String, NpyArray)>> {
    let mut zip = ZipArchive::new(r).map_err(|e| DataError::corrupt(path, "npz (zip)", e))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| DataError::corrupt(path, "npz (zip)", e))?;
        let name = entry
            .name()
            .map_err(|e| DataError::corrupt(path, "npz (zip)", e))?
            .trim_end_matches(".npy")
            .to_string();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::corrupt(path, "npz (zip)", format!("`{name}`: {e}")))?;
        let arr = parse_npy(path, &name, &bytes)?;
        out.push((name, arr));
    }
    Ok(out)
}

/// Reads a D4RL-keyed `.npz`.
pub fn read(path: &Path) -> Result<Dataset> {
    from_arrays(path, read_archive(path)?)
}

/// A dataset from arrays under D4RL's keys (`observations`, `actions`, `rewards`,
/// `terminals`, optionally `timeouts`, `next_observations`, `infos/action_log_probs`,
/// `infos/episode_id`), validated as an `.npz` file is, with the same errors; `path` names
/// the source in them. Non-finite values are not checked here ([`Dataset::check_finite`]).
pub fn from_arrays(path: &Path, mut arrays: Vec<(String, NpyArray)>) -> Result<Dataset> {
    let mut take = |key: &str| {
        arrays
            .iter()
            .position(|(n, _)| n == key)
            .map(|i| arrays.swap_remove(i).1)
    };
    let req = |v: Option<NpyArray>, key: &str| {
        v.ok_or_else(|| DataError::missing(path, "npz array", key))
    };
    let mut notes = Vec::new();
    let floats =
        |a: NpyArray, key: &str, notes: &mut Vec<String>| -> Result<(Vec<f32>, Vec<usize>)> {
            match a.data {
                NpyData::F32(v) => Ok((v, a.shape)),
                NpyData::F64(v) => {
                    notes.extend(super::narrowing_note(key, &v));
                    Ok((v.into_iter().map(|x| x as f32).collect(), a.shape))
                }
                _ => Err(DataError::dtype(path, key, "<f4 or <f8", a.descr)),
            }
        };
    let bools = |a: NpyArray, key: &str| -> Result<Vec<bool>> {
        match a.data {
            NpyData::Bool(v) => Ok(v),
            NpyData::Int(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, x)| match x {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(DataError::invalid(
                        path,
                        format!("`{key}` must hold 0/1 but row {i} holds {x}"),
                    )),
                })
                .collect(),
            NpyData::F32(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, x)| {
                    if x == 0.0 {
                        Ok(false)
                    } else if x == 1.0 {
                        Ok(true)
                    } else {
                        Err(DataError::invalid(
                            path,
                            format!("`{key}` must hold 0/1 but row {i} holds {x}"),
                        ))
                    }
                })
                .collect(),
            NpyData::F64(_) | NpyData::U8(_) => {
                Err(DataError::dtype(path, key, "|b1 (bool)", a.descr))
            }
        }
    };
    let (obs, oshape) = floats(req(take(keys::OBS), keys::OBS)?, keys::OBS, &mut notes)?;
    let od = match oshape.as_slice() {
        [_, d] => *d,
        other => {
            return Err(DataError::shape(
                path,
                keys::OBS,
                "(N, obs_dim)",
                format!("shape {other:?}"),
            ));
        }
    };
    let a = req(take(keys::ACTIONS), keys::ACTIONS)?;
    let actions = match a.data {
        NpyData::Int(v) => {
            if a.shape.len() > 1 && a.shape[1..].iter().product::<usize>() != 1 {
                return Err(DataError::shape(
                    path,
                    keys::ACTIONS,
                    "(N,) or (N, 1) for integer actions",
                    format!("shape {:?}", a.shape),
                ));
            }
            Actions::Discrete(v)
        }
        _ => {
            let (v, s) = floats(a, keys::ACTIONS, &mut notes)?;
            let dim = if s.len() == 1 {
                1
            } else {
                s[1..].iter().product()
            };
            Actions::Continuous { dim, values: v }
        }
    };
    let (rewards, rshape) = floats(
        req(take(keys::REWARDS), keys::REWARDS)?,
        keys::REWARDS,
        &mut notes,
    )?;
    if rshape.len() > 1 && rshape[1..].iter().product::<usize>() != 1 {
        return Err(DataError::shape(
            path,
            keys::REWARDS,
            "(N,) or (N, 1)",
            format!("shape {rshape:?}"),
        ));
    }
    let terminals = bools(
        req(take(keys::TERMINALS), keys::TERMINALS)?,
        keys::TERMINALS,
    )?;
    let timeouts = take(keys::TIMEOUTS)
        .map(|a| bools(a, keys::TIMEOUTS))
        .transpose()?;
    let next_observations = take(keys::NEXT_OBS)
        .map(|a| floats(a, keys::NEXT_OBS, &mut notes).map(|x| x.0))
        .transpose()?;
    let log_probs = take(keys::LOG_PROBS)
        .or_else(|| take("behavior_log_prob"))
        .map(|a| match a.data {
            NpyData::F64(v) => Ok(v),
            NpyData::F32(v) => Ok(v.into_iter().map(f64::from).collect()),
            _ => Err(DataError::dtype(
                path,
                keys::LOG_PROBS,
                "<f4 or <f8",
                a.descr,
            )),
        })
        .transpose()?;
    let episode_ids = take(keys::EPISODE_ID)
        .map(|a| match a.data {
            NpyData::Int(v) => Ok(v),
            _ => Err(DataError::dtype(path, keys::EPISODE_ID, "<i8", a.descr)),
        })
        .transpose()?;
    let next_valid = take(keys::NEXT_VALID)
        .map(|a| bools(a, keys::NEXT_VALID))
        .transpose()?;
    let orl_meta = take(keys::ORL_META)
        .map(|a| match a.data {
            NpyData::Int(v) => String::from_utf8(v.into_iter().map(|b| b as u8).collect())
                .map_err(|e| DataError::invalid(path, format!("`{}`: {e}", keys::ORL_META))),
            _ => Err(DataError::dtype(path, keys::ORL_META, "|u1", a.descr)),
        })
        .transpose()?;
    let restored = orl_meta.is_some();
    let mut meta = flat_meta(path, orl_meta, od, &actions, &mut notes)?;
    if !restored {
        meta.provenance.source_format = Some("npz".into());
    }
    Flat {
        obs_dim: od,
        observations: obs,
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

/// Writes `ds` as a D4RL-keyed `.npz` (deflate-compressed, like `np.savez_compressed`), atomically.
pub fn write(ds: &Dataset, path: &Path) -> Result<()> {
    let flat = Flat::from_dataset(ds);
    let n = ds.len();
    let od = ds.obs_dim();
    let json = serde_json::to_string(ds.meta())
        .map_err(|e| DataError::invalid(path, format!("serialising metadata: {e}")))?;
    let mut entries: Vec<(&str, Vec<usize>, NpyData)> = vec![
        (keys::OBS, vec![n, od], NpyData::F32(flat.observations)),
        (
            keys::NEXT_OBS,
            vec![n, od],
            NpyData::F32(flat.next_observations.unwrap_or_default()),
        ),
        match flat.actions {
            Actions::Continuous { dim, values } => {
                (keys::ACTIONS, vec![n, dim], NpyData::F32(values))
            }
            Actions::Discrete(v) => (keys::ACTIONS, vec![n], NpyData::Int(v)),
        },
        (keys::REWARDS, vec![n], NpyData::F32(flat.rewards)),
        (keys::TERMINALS, vec![n], NpyData::Bool(flat.terminals)),
        (
            keys::TIMEOUTS,
            vec![n],
            NpyData::Bool(flat.timeouts.unwrap_or_else(|| vec![false; n])),
        ),
        (
            keys::EPISODE_ID,
            vec![n],
            NpyData::Int(flat.episode_ids.unwrap_or_default()),
        ),
    ];
    if let Some(lp) = flat.log_probs {
        entries.push((keys::LOG_PROBS, vec![n], NpyData::F64(lp)));
    }
    if let Some(v) = flat.next_valid {
        entries.push((keys::NEXT_VALID, vec![n], NpyData::Bool(v)));
    }
    // Stored as uint8 so NumPy users can read it with `bytes(a).decode()`.
    entries.push((
        keys::ORL_META,
        vec![json.len()],
        NpyData::U8(json.into_bytes()),
    ));
    atomic_write(path, |w| {
        let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .large_file(true);
        for (name, shape, data) in &entries {
            let bytes = encode_npy(shape, data);
            zip.start_file(format!("{name}.npy"), opts)
                .map_err(|e| DataError::invalid(path, format!("zip: {e}")))?;
            zip.write_all(&bytes).map_err(|e| DataError::io(path, e))?;
        }
        let cursor = zip
            .finish()
            .map_err(|e| DataError::invalid(path, format!("zip: {e}")))?;
        w.write_all(&cursor.into_inner())
            .map_err(|e| DataError::io(path, e))
    })
}
