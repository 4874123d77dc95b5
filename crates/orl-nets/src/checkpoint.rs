//! safetensors checkpoints: named tensors plus a string metadata map, written atomically
//! (temporary file in the same folder, then rename), so a crash never leaves a torn file.
//!
//! Tensor names are the parameter names of [`crate::ParamStore`] with a per-network prefix
//! (`actor.`, `critic.`, `critic_target.`, ...) and optimizer moments under `optim.<net>.m.` /
//! `optim.<net>.v.`; `docs/checkpoints.md` lists them per algorithm. All tensors are `F32`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{NetError, Result};

/// Writes `tensors` and `metadata` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut raw: Vec<Raw> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        raw.push((name.clone(), Dtype::F32, t.dims().to_vec(), bytes));
    }
    write_raw(path, &raw, metadata)
}

/// A named buffer to serialise: dtype, shape and little-endian bytes.
type Raw = (String, Dtype, Vec<usize>, Vec<u8>);

/// Serialises `raw` and `metadata` as safetensors and writes the file atomically.
fn write_raw(path: &Path, raw: &[Raw], metadata: &HashMap<String, String>) -> Result<()> {
    let bad = |reason: String| NetError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let views = raw
        .iter()
        .map(|(n, d, shape, bytes)| {
            TensorView::new(*d, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(format!("`{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let buf =
        safetensors::serialize(views, Some(metadata.clone())).map_err(|e| bad(e.to_string()))?;
    write_atomic(path, &buf)
}

/// Reads the safetensors file `path`, hands every tensor to `each` and returns the metadata.
fn read_each(
    path: &Path,
    mut each: impl FnMut(&str, &TensorView<'_>) -> Result<()>,
) -> Result<HashMap<String, String>> {
    let buf = std::fs::read(path).map_err(|source| NetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |e: safetensors::SafeTensorError| NetError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("not a safetensors file: {e}"),
    };
    let (_, meta) = SafeTensors::read_metadata(&buf).map_err(bad)?;
    let st = SafeTensors::deserialize(&buf).map_err(bad)?;
    for (name, view) in st.tensors() {
        each(&name, &view)?;
    }
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Writes `buf` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, buf: &[u8]) -> Result<()> {
    let io = |source| NetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, buf).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Reads a checkpoint: tensors by name and the metadata map.
pub fn load(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let mut out = HashMap::new();
    let meta = read_each(path, |name, view| {
        if view.dtype() != Dtype::F32 {
            return Err(NetError::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("tensor `{name}` has dtype {:?}, expected F32", view.dtype()),
            });
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(
            name.to_string(),
            Tensor::from_vec(data, view.shape(), device)?,
        );
        Ok(())
    })?;
    Ok((out, meta))
}

/// A typed array of state that is not a network parameter (a replay buffer, `f64`
/// log-probabilities, counters), kept bit for bit by [`save_arrays`] / [`load_arrays`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Array {
    /// `F32` tensor.
    F32(Vec<f32>),
    /// `F64` tensor.
    F64(Vec<f64>),
    /// `I64` tensor.
    I64(Vec<i64>),
    /// `U8` tensor (booleans as 0/1).
    U8(Vec<u8>),
}

impl Array {
    fn dtype_and_bytes(&self) -> (Dtype, Vec<u8>) {
        match self {
            Array::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Array::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Array::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Array::U8(v) => (Dtype::U8, v.clone()),
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::U8(v) => v.len(),
        }
    }
    /// `true` when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes one-dimensional typed `arrays` and `metadata` to the safetensors file `path`
/// atomically (the format of [`save`], other dtypes allowed).
pub fn save_arrays(
    path: &Path,
    arrays: &[(String, Array)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let raw: Vec<Raw> = arrays
        .iter()
        .map(|(n, a)| {
            let (d, bytes) = a.dtype_and_bytes();
            (n.clone(), d, vec![a.len()], bytes)
        })
        .collect();
    write_raw(path, &raw, metadata)
}

/// Reads a file written by [`save_arrays`]: arrays by name and the metadata map.
pub fn load_arrays(path: &Path) -> Result<(HashMap<String, Array>, HashMap<String, String>)> {
    let mut out = HashMap::new();
    let meta = read_each(path, |name, view| {
        let d = view.data();
        let a = match view.dtype() {
            Dtype::F32 => Array::F32(
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F64 => Array::F64(
                d.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            Dtype::I64 => Array::I64(
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            Dtype::U8 => Array::U8(d.to_vec()),
            other => {
                return Err(NetError::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "array `{name}` has dtype {other:?}, expected F32, F64, I64 or U8"
                    ),
                });
            }
        };
        out.insert(name.to_string(), a);
        Ok(())
    })?;
    Ok((out, meta))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod array_tests {
    use super::*;

    #[test]
    fn arrays_round_trip_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let arrays = vec![
            (
                "f".to_string(),
                Array::F32(vec![1.5, -0.0, f32::MIN_POSITIVE]),
            ),
            (
                "d".to_string(),
                Array::F64(vec![std::f64::consts::PI, -1e-300]),
            ),
            ("i".to_string(), Array::I64(vec![i64::MIN, 7])),
            ("b".to_string(), Array::U8(vec![0, 1, 1])),
            ("e".to_string(), Array::F64(vec![])),
        ];
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        save_arrays(&p, &arrays, &meta).unwrap();
        let (got, m) = load_arrays(&p).unwrap();
        assert_eq!(m, meta);
        for (n, a) in &arrays {
            assert_eq!(&got[n], a, "{n}");
        }
        std::fs::write(&p, b"not safetensors").unwrap();
        let e = load_arrays(&p).unwrap_err().to_string();
        assert!(e.contains("a.safetensors"), "{e}");
    }
}
