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
    let io = |source| NetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push((name.clone(), t.dims().to_vec(), raw));
    }
    let views = bytes
        .iter()
        .map(|(n, shape, raw)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (n.clone(), v))
                .map_err(|e| NetError::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!("tensor `{n}`: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let buf = safetensors::serialize(views, Some(metadata.clone())).map_err(|e| {
        NetError::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
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
    std::fs::write(&tmp, &buf).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Reads a checkpoint: tensors by name and the metadata map.
pub fn load(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let buf = std::fs::read(path).map_err(|source| NetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| NetError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let (_, meta) = SafeTensors::read_metadata(&buf)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st =
        SafeTensors::deserialize(&buf).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, Tensor::from_vec(data, view.shape(), device)?);
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}
