//! The layout of a training run folder (`orl train --out runs/NAME`, `orl.train(out=...)`):
//!
//! ```text
//! runs/NAME/run.json                 what was run: algorithm, config, seed, dataset, replay settings, versions
//! runs/NAME/checkpoint.safetensors   latest checkpoint (atomic; the last good one survives a divergence)
//! runs/NAME/metrics.jsonl            one JSON object per logged step
//! runs/NAME/metrics.csv              the same as CSV (regenerated atomically at every log)
//! runs/NAME/status.json              running | finished | diverged | interrupted, with the message
//! ```
//!
//! Every file is replaced atomically (a temporary file, then a rename), so a reader never sees
//! a half-written one and a stopped run leaves the last complete version of each.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::AppError;

type Result<T> = std::result::Result<T, AppError>;

/// Paths of a run folder.
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run folder `root` (not created).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    /// `run.json`.
    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }
    /// `checkpoint.safetensors`.
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }
    /// `metrics.jsonl`.
    pub fn metrics_jsonl(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// `metrics.csv`.
    pub fn metrics_csv(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// `status.json`.
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// A checkpoint path given either a run folder or a `.safetensors` file.
    pub fn resolve_checkpoint(p: &Path) -> PathBuf {
        if p.is_dir() {
            RunDir::new(p).checkpoint()
        } else {
            p.to_path_buf()
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename (`orl_data::fsutil`).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| AppError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    orl_data::fsutil::atomic_write(path, |w| {
        use std::io::Write;
        w.write_all(bytes)
            .map_err(|source| orl_data::DataError::Io {
                path: path.to_path_buf(),
                source,
            })
    })?;
    Ok(())
}

/// Reads a JSON file of the run folder.
pub fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|source| AppError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| AppError::bad_file(path, format!("not JSON: {e}")))
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| AppError::bad_file(path, format!("cannot serialise: {e}")))?;
    atomic_write(path, text.as_bytes())
}

/// Reads the JSONL metric rows.
pub fn read_rows(path: &Path) -> Result<Vec<Map<String, Value>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|source| AppError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| AppError::bad_file(path, format!("line {} is not JSON: {e}", i + 1)))
        })
        .collect()
}

/// Writes `rows` as JSONL and as CSV (columns: `step` first, then the union of keys sorted).
pub fn write_rows(jsonl: &Path, csv: &Path, rows: &[Map<String, Value>]) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&Value::Object(r.clone()).to_string());
        text.push('\n');
    }
    atomic_write(jsonl, text.as_bytes())?;
    let keys: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| k.as_str() != "step")
        .collect();
    let mut out = String::from("step");
    for k in &keys {
        out.push(',');
        out.push_str(k);
    }
    out.push('\n');
    for r in rows {
        out.push_str(&r.get("step").map(|v| v.to_string()).unwrap_or_default());
        for k in &keys {
            out.push(',');
            if let Some(v) = r.get(*k).filter(|v| !v.is_null()) {
                out.push_str(&v.to_string());
            }
        }
        out.push('\n');
    }
    atomic_write(csv, out.as_bytes())
}
