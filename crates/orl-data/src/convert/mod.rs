//! Converters between the orl Parquet format and the formats users hold.
//!
//! | format | read | write | module |
//! |---|---|---|---|
//! | D4RL HDF5 (`observations`, `actions`, `rewards`, `terminals`, `timeouts`, ...) | yes | yes | [`d4rl`] |
//! | Minari dataset directory, HDF5 or Arrow backend | yes | no | [`minari`] |
//! | d3rlpy `ReplayBuffer.dump()` / `MDPDataset.dump()` HDF5 | yes | no | [`d3rlpy`] |
//! | `.npz` with D4RL's key names | yes | yes | [`npz`] |
//! | orl Parquet (file or directory) | yes | yes | [`crate::write_parquet`] |
//!
//! Every reader returns a validated [`Dataset`] whose provenance names the source file and its
//! sha256, and rejects NaN/inf unless [`ConvertOptions::allow_nonfinite`] is set. Every writer
//! writes to a temporary file and renames it, so a failed conversion leaves no output.

pub mod d3rlpy;
pub mod d4rl;
mod h5;
pub mod minari;
pub mod npz;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::dataset::{Actions, Columns, Dataset};
use crate::error::{DataError, Result};
use crate::meta::{ActionSpace, CONVERTER_VERSION, DatasetMeta, ObservationSpace};
use crate::parquet_io::{OpenOptions, WriteOptions, write_parquet};

/// A dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Detect from the file's signature and keys.
    Auto,
    /// D4RL-layout HDF5.
    D4rl,
    /// Minari dataset directory (HDF5 or Arrow backend).
    Minari,
    /// d3rlpy `dump()` HDF5.
    D3rlpy,
    /// NumPy `.npz` with D4RL key names.
    Npz,
    /// orl Parquet.
    Orl,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "d4rl" | "hdf5" | "h5" => Self::D4rl,
            "minari" => Self::Minari,
            "d3rlpy" => Self::D3rlpy,
            "npz" => Self::Npz,
            "orl" | "parquet" => Self::Orl,
            other => {
                return Err(format!(
                    "unknown format `{other}` (expected auto, d4rl, minari, d3rlpy, npz or parquet)"
                ));
            }
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::D4rl => "d4rl",
            Self::Minari => "minari",
            Self::D3rlpy => "d3rlpy",
            Self::Npz => "npz",
            Self::Orl => "parquet",
        })
    }
}

/// Options shared by every reader.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Keep NaN/inf values instead of failing. Default false (non-finite data is an error).
    pub allow_nonfinite: bool,
    /// Override or supply the environment id.
    pub env_id: Option<String>,
    /// Supply the reference random-policy return (D4RL's `REF_MIN_SCORE`).
    pub ref_min_score: Option<f64>,
    /// Supply the reference expert return (D4RL's `REF_MAX_SCORE`).
    pub ref_max_score: Option<f64>,
}

/// Guesses the format of `path` from its signature and contents.
pub fn detect(path: &Path) -> Result<Format> {
    if path.is_dir() {
        if path.join("data").join("metadata.json").is_file()
            || path.join("metadata.json").is_file() && path.join("main_data.hdf5").exists()
        {
            return Ok(Format::Minari);
        }
        if path.join("metadata.json").is_file() {
            return Ok(Format::Minari);
        }
        let has_parquet = std::fs::read_dir(path)
            .map_err(|e| DataError::io(path, e))?
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "parquet"));
        if has_parquet {
            return Ok(Format::Orl);
        }
        return Err(DataError::UnknownFormat {
            path: path.into(),
            detail: "directory is neither a Minari dataset (no data/metadata.json) nor a directory of orl *.parquet files".into(),
        });
    }
    let mut head = [0u8; 8];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let n = f.read(&mut head).map_err(|e| DataError::io(path, e))?;
        if n < 4 {
            return Err(DataError::UnknownFormat {
                path: path.into(),
                detail: format!("file has only {n} byte(s); expected HDF5, npz or Parquet"),
            });
        }
    }
    if &head[..4] == b"PAR1" {
        return Ok(Format::Orl);
    }
    if &head[..4] == b"PK\x03\x04" || &head[..4] == b"PK\x05\x06" {
        return Ok(Format::Npz);
    }
    if head == *b"\x89HDF\r\n\x1a\n" {
        let f = h5::H5::open(path)?;
        if f.has("observations") {
            return Ok(Format::D4rl);
        }
        if f.has("num_episodes") || f.has("observations_0") {
            return Ok(Format::D3rlpy);
        }
        if f.root_groups()?.iter().any(|g| g.starts_with("episode_")) {
            return Ok(Format::Minari);
        }
        return Err(DataError::UnknownFormat {
            path: path.into(),
            detail: "HDF5 file with neither D4RL keys (`observations`), d3rlpy keys (`num_episodes`, `observations_0`) nor Minari groups (`episode_0`)".into(),
        });
    }
    Err(DataError::UnknownFormat {
        path: path.into(),
        detail: "unrecognised signature; expected HDF5 (D4RL, Minari, d3rlpy), .npz, Parquet or a Minari directory".into(),
    })
}

/// Reads any supported input into a validated [`Dataset`].
pub fn read(path: &Path, format: Format, opts: &ConvertOptions) -> Result<Dataset> {
    let format = if format == Format::Auto {
        detect(path)?
    } else {
        format
    };
    let mut ds = match format {
        Format::Orl => {
            return Dataset::open_with(
                path,
                &OpenOptions {
                    allow_nonfinite: opts.allow_nonfinite,
                },
            )
            .map(|mut d| {
                apply_overrides(&mut d, opts);
                d
            });
        }
        Format::D4rl => d4rl::read(path)?,
        Format::Minari => minari::read(path)?,
        Format::D3rlpy => d3rlpy::read(path)?,
        Format::Npz => npz::read(path)?,
        Format::Auto => unreachable!("resolved above"),
    };
    if !opts.allow_nonfinite {
        ds.check_finite(path)?;
    }
    let prov = &mut ds.meta_mut().provenance;
    prov.source_file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    prov.source_sha256 = Some(crate::fsutil::sha256_path(path)?);
    prov.converter = Some("orl-data".into());
    prov.converter_version = Some(CONVERTER_VERSION.into());
    apply_overrides(&mut ds, opts);
    Ok(ds)
}

fn apply_overrides(ds: &mut Dataset, opts: &ConvertOptions) {
    let m = ds.meta_mut();
    if let Some(e) = &opts.env_id {
        m.env_id = Some(e.clone());
    }
    if opts.ref_min_score.is_some() {
        m.ref_min_score = opts.ref_min_score;
    }
    if opts.ref_max_score.is_some() {
        m.ref_max_score = opts.ref_max_score;
    }
}

/// Output formats of [`write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// orl Parquet.
    Parquet,
    /// D4RL-layout HDF5.
    D4rlHdf5,
    /// `.npz` with D4RL key names.
    Npz,
}

impl OutputFormat {
    /// From the output file's extension (`.parquet`, `.hdf5`/`.h5`, `.npz`).
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" => Some(Self::Parquet),
            "hdf5" | "h5" => Some(Self::D4rlHdf5),
            "npz" => Some(Self::Npz),
            _ => None,
        }
    }
}

/// Writes `ds` to `path` in `format`, atomically.
pub fn write(ds: &Dataset, path: &Path, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Parquet => write_parquet(ds, path, &WriteOptions::default()),
        OutputFormat::D4rlHdf5 => d4rl::write(ds, path),
        OutputFormat::Npz => npz::write(ds, path),
    }
}

/// Converts `input` to `output`, the rules of `orl convert`: a non-Parquet input is read as
/// `format` (auto-detected by default) and written in the format `output`'s extension names;
/// a Parquet input is written as `format` when it names a writable one (`d4rl`, `npz`), else
/// by the extension. Returns the dataset read.
pub fn convert(
    input: &Path,
    output: &Path,
    format: Format,
    opts: &ConvertOptions,
) -> Result<Dataset> {
    let unknown_ext = |extra: &str| DataError::UnknownFormat {
        path: output.into(),
        detail: format!(
            "cannot tell the output format from the extension; use .parquet, .hdf5, .h5 or .npz{extra}"
        ),
    };
    let (read_as, out_format) = if detect(input)? == Format::Orl {
        let out = match format {
            Format::D4rl => OutputFormat::D4rlHdf5,
            Format::Npz => OutputFormat::Npz,
            Format::Auto | Format::Orl => OutputFormat::from_extension(output)
                .ok_or_else(|| unknown_ext(", or pass a format"))?,
            other => {
                return Err(DataError::UnknownFormat {
                    path: output.into(),
                    detail: format!(
                        "format {other} cannot be written; orl writes parquet, d4rl (HDF5) and npz"
                    ),
                });
            }
        };
        (Format::Orl, out)
    } else {
        (
            format,
            OutputFormat::from_extension(output).ok_or_else(|| unknown_ext(""))?,
        )
    };
    let ds = read(input, read_as, opts)?;
    write(&ds, output, out_format)?;
    Ok(ds)
}

/// Arrays in D4RL's flat layout, shared by the HDF5 and npz readers.
pub(crate) struct Flat {
    pub obs_dim: usize,
    pub observations: Vec<f32>,
    pub next_observations: Option<Vec<f32>>,
    pub actions: Actions,
    pub rewards: Vec<f32>,
    pub terminals: Vec<bool>,
    pub timeouts: Option<Vec<bool>>,
    pub log_probs: Option<Vec<f64>>,
    /// orl extension `infos/episode_id`: exact episode split, including unterminated episodes mid-file.
    pub episode_ids: Option<Vec<i64>>,
    /// orl extension `infos/next_observation_valid`.
    pub next_valid: Option<Vec<bool>>,
}

/// Keys of the D4RL layout (and orl's extensions to it).
pub(crate) mod keys {
    pub const OBS: &str = "observations";
    pub const NEXT_OBS: &str = "next_observations";
    pub const ACTIONS: &str = "actions";
    pub const REWARDS: &str = "rewards";
    pub const TERMINALS: &str = "terminals";
    pub const TIMEOUTS: &str = "timeouts";
    pub const LOG_PROBS: &str = "infos/action_log_probs";
    pub const EPISODE_ID: &str = "infos/episode_id";
    pub const NEXT_VALID: &str = "infos/next_observation_valid";
    /// JSON of the orl [`crate::DatasetMeta`], kept so an export re-imports with its spaces.
    pub const ORL_META: &str = "orl_meta_json";
}

impl Flat {
    /// Splits into episodes following D4RL's conventions and validates.
    ///
    /// Episodes end after every row with `terminals[i]` or `timeouts[i]`; rows after the last
    /// flag form a trailing unterminated episode. When `next_observations` is absent (D4RL v0
    /// files), `s'` of row `i` is `observations[i+1]` inside an episode and unknown (null) on an
    /// episode's last row.
    pub fn into_dataset(
        self,
        path: &Path,
        mut meta: DatasetMeta,
        notes: Vec<String>,
    ) -> Result<Dataset> {
        let n = self.rewards.len();
        let od = self.obs_dim;
        let check = |key: &str, len: usize| -> Result<()> {
            if len != n {
                return Err(DataError::shape(
                    path,
                    key,
                    format!("{n} rows (the length of `rewards`)"),
                    format!("{len} rows"),
                ));
            }
            Ok(())
        };
        if n == 0 {
            return Err(DataError::Empty {
                path: path.into(),
                detail: "`rewards` has 0 rows".into(),
            });
        }
        check(keys::OBS, self.observations.len() / od.max(1))?;
        check(keys::ACTIONS, self.actions.len())?;
        check(keys::TERMINALS, self.terminals.len())?;
        let timeouts = self.timeouts.unwrap_or_else(|| vec![false; n]);
        check(keys::TIMEOUTS, timeouts.len())?;
        if let Some(v) = &self.next_observations {
            check(keys::NEXT_OBS, v.len() / od.max(1))?;
        }
        if let Some(v) = &self.log_probs {
            check(keys::LOG_PROBS, v.len())?;
        }
        if let Some(v) = &self.next_valid {
            check(keys::NEXT_VALID, v.len())?;
        }
        let episodes: Vec<(i64, usize)> = match &self.episode_ids {
            Some(ids) => {
                check(keys::EPISODE_ID, ids.len())?;
                let steps: Vec<i64> = {
                    let mut s = Vec::with_capacity(n);
                    let mut prev = None;
                    let mut k = 0i64;
                    for &id in ids {
                        if prev == Some(id) {
                            k += 1;
                        } else {
                            k = 0;
                        }
                        s.push(k);
                        prev = Some(id);
                    }
                    s
                };
                crate::parquet_io::episodes_from_rows(path, ids, &steps)?
            }
            None => {
                let mut eps = Vec::new();
                let mut start = 0;
                for (i, (&term, &tout)) in self.terminals.iter().zip(&timeouts).enumerate() {
                    if term || tout {
                        eps.push((eps.len() as i64, i + 1 - start));
                        start = i + 1;
                    }
                }
                if start < n {
                    eps.push((eps.len() as i64, n - start));
                }
                eps
            }
        };
        let (next_observations, next_valid) = match self.next_observations {
            Some(v) => (v, self.next_valid.filter(|v| v.iter().any(|x| !x))),
            None => {
                let mut next = vec![0f32; n * od];
                let mut valid = vec![true; n];
                let mut start = 0;
                for &(_, len) in &episodes {
                    let end = start + len;
                    next[start * od..(end - 1) * od]
                        .copy_from_slice(&self.observations[(start + 1) * od..end * od]);
                    valid[end - 1] = false;
                    start = end;
                }
                meta.provenance
                    .notes
                    .push("no `next_observations` in the source: s' = next row's observation inside episodes, null on each episode's last row".into());
                (next, Some(valid))
            }
        };
        meta.provenance.notes.extend(notes);
        let cols = Columns {
            observations: self.observations,
            next_observations,
            next_valid,
            actions: self.actions,
            rewards: self.rewards,
            terminals: self.terminals,
            timeouts,
            behavior_log_prob: self.log_probs,
        };
        Dataset::new_at(path, meta, cols, &episodes)
    }

    /// Flattens a dataset into D4RL's layout plus orl's extension keys.
    pub fn from_dataset(ds: &Dataset) -> Self {
        let c = ds.columns();
        let ids = ds.row_index().0;
        Self {
            obs_dim: ds.obs_dim(),
            observations: c.observations.clone(),
            next_observations: Some(c.next_observations.clone()),
            actions: c.actions.clone(),
            rewards: c.rewards.clone(),
            terminals: c.terminals.clone(),
            timeouts: Some(c.timeouts.clone()),
            log_probs: c.behavior_log_prob.clone(),
            episode_ids: Some(ids),
            next_valid: c.next_valid.clone(),
        }
    }
}

/// Metadata for flat arrays: restores the orl metadata of an earlier export when present,
/// otherwise derives spaces from the data (discrete `n` = largest action + 1, noted).
pub(crate) fn flat_meta(
    path: &Path,
    orl_meta: Option<String>,
    obs_dim: usize,
    actions: &Actions,
    notes: &mut Vec<String>,
) -> Result<DatasetMeta> {
    if let Some(json) = orl_meta {
        let m: DatasetMeta = serde_json::from_str(&json).map_err(|e| {
            DataError::invalid(
                path,
                format!("`{}` is not valid orl metadata: {e}", keys::ORL_META),
            )
        })?;
        if m.observation_space.dim != obs_dim
            || m.action_space.width() != actions_width(actions)
            || m.action_space.is_discrete() != matches!(actions, Actions::Discrete(_))
        {
            return Err(DataError::invalid(
                path,
                format!(
                    "`{}` describes other spaces than the arrays hold",
                    keys::ORL_META
                ),
            ));
        }
        return Ok(m);
    }
    let space = match actions {
        Actions::Continuous { dim, .. } => ActionSpace::Continuous {
            dim: *dim,
            low: None,
            high: None,
        },
        Actions::Discrete(v) => {
            let n = v.iter().copied().max().unwrap_or(0).max(0) as usize + 1;
            notes.push(format!("discrete action count inferred as {n} (largest action + 1); the source does not store it"));
            ActionSpace::Discrete { n }
        }
    };
    Ok(DatasetMeta::new(
        ObservationSpace {
            dim: obs_dim,
            low: None,
            high: None,
        },
        space,
    ))
}

fn actions_width(a: &Actions) -> usize {
    match a {
        Actions::Continuous { dim, .. } => *dim,
        Actions::Discrete(_) => 1,
    }
}

/// Note for float64 rewards narrowed to float32 (the format's reward type).
pub(crate) fn narrowing_note(key: &str, original: &[f64]) -> Option<String> {
    let mut max_err = 0f64;
    let mut changed = 0usize;
    for &x in original {
        let e = (f64::from(x as f32) - x).abs();
        if e > 0.0 {
            changed += 1;
            max_err = max_err.max(e);
        }
    }
    (changed > 0).then(|| format!("`{key}` stored as float64 in the source: {changed} value(s) narrowed to float32, largest absolute change {max_err:.3e}"))
}

/// Replaces the bare `Infinity`, `-Infinity` and `NaN` tokens Python's `json` writes with strings,
/// so the document parses as standard JSON.
pub(crate) fn sanitize_python_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        let rest = &s[i..];
        if c == '"' {
            in_str = true;
            out.push(c);
            i += 1;
        } else if rest.starts_with("-Infinity") {
            out.push_str("\"-inf\"");
            i += 9;
        } else if rest.starts_with("Infinity") {
            out.push_str("\"inf\"");
            i += 8;
        } else if rest.starts_with("NaN") {
            out.push_str("\"nan\"");
            i += 3;
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}
