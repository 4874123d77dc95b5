//! The layout of a training run folder (`orl train --out runs/NAME`):
//!
//! ```text
//! runs/NAME/run.json                 what was run: algorithm, config, seed, dataset, replay settings, versions
//! runs/NAME/checkpoint.safetensors   latest checkpoint (atomic; the last good one survives a divergence)
//! runs/NAME/metrics.jsonl            one JSON object per logged step
//! runs/NAME/metrics.csv              the same as CSV (regenerated atomically at every log)
//! runs/NAME/status.json              running | finished | diverged, with the message
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    orl_data::fsutil::atomic_write(path, |w| {
        use std::io::Write;
        w.write_all(bytes)
            .map_err(|source| orl_data::DataError::Io {
                path: path.to_path_buf(),
                source,
            })
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Reads the JSONL metric rows.
pub fn read_rows(path: &Path) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))
        })
        .collect()
}

/// Writes `rows` as JSONL and as CSV (columns: `step` first, then the union of keys sorted).
pub fn write_rows(
    jsonl: &Path,
    csv: &Path,
    rows: &[serde_json::Map<String, serde_json::Value>],
) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r)?);
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
