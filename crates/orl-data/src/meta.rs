//! Dataset metadata: format version, spaces, provenance and reference scores.
//!
//! The metadata travels in the Parquet file's key-value metadata under the key
//! [`META_KEY`] as one JSON document (see `docs/dataset-format.md`), plus the
//! format version alone under [`VERSION_KEY`] so a reader can refuse a newer
//! major version before parsing anything else.

use serde::{Deserialize, Serialize};

/// Current version of the orl dataset format (`major.minor`).
///
/// A reader accepts any file with the same major version; a minor bump only adds
/// optional fields or columns.
pub const FORMAT_VERSION: &str = "1.0";
/// Parquet key-value metadata key holding [`FORMAT_VERSION`].
pub const VERSION_KEY: &str = "orl.format_version";
/// Parquet key-value metadata key holding the JSON-encoded [`DatasetMeta`].
pub const META_KEY: &str = "orl.meta";
/// Version of the converters, recorded in [`Provenance::converter_version`].
pub const CONVERTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The observation space: a box of `dim` float32 values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationSpace {
    /// Number of observation dimensions.
    pub dim: usize,
    /// Lower bounds per dimension when known (`-inf` allowed; serialised as JSON strings).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_f64_vec")]
    pub low: Option<Vec<f64>>,
    /// Upper bounds per dimension when known.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_f64_vec")]
    pub high: Option<Vec<f64>>,
}

/// The action space: continuous box or discrete set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionSpace {
    /// `dim` float32 values, optionally bounded.
    Continuous {
        /// Number of action dimensions.
        dim: usize,
        /// Lower bounds per dimension when known.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_f64_vec")]
        low: Option<Vec<f64>>,
        /// Upper bounds per dimension when known.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_f64_vec")]
        high: Option<Vec<f64>>,
    },
    /// One of `n` actions, stored as Int64 in `0..n`.
    Discrete {
        /// Number of actions.
        n: usize,
    },
}

impl ActionSpace {
    /// True for [`ActionSpace::Discrete`].
    pub fn is_discrete(&self) -> bool {
        matches!(self, Self::Discrete { .. })
    }

    /// Floats per action row: `dim` for continuous, 1 for discrete.
    pub fn width(&self) -> usize {
        match self {
            Self::Continuous { dim, .. } => *dim,
            Self::Discrete { .. } => 1,
        }
    }
}

/// Where the data came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Source format (`d4rl`, `minari-hdf5`, `minari-arrow`, `d3rlpy`, `npz`, `orl`, `generated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_format: Option<String>,
    /// File name (not the full path, which would leak the converting machine's layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
    /// sha256 of the source file (for a directory: of its files' hashes, in sorted path order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    /// Program that wrote the file (`orl-data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converter: Option<String>,
    /// Version of that program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converter_version: Option<String>,
    /// Anything the converter had to decide or lose (e.g. float64 rewards narrowed to float32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Everything a dataset says about itself besides its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Format version the file was written with ([`FORMAT_VERSION`]).
    pub format_version: String,
    /// Observation space.
    pub observation_space: ObservationSpace,
    /// Action space.
    pub action_space: ActionSpace,
    /// Gymnasium id of the environment (`Hopper-v5`) when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_id: Option<String>,
    /// Provenance of the data.
    #[serde(default)]
    pub provenance: Provenance,
    /// Behaviour policy that generated the data, when known (free text or a checkpoint name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_policy: Option<String>,
    /// Seed of the generating run, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Reference return of a random policy (D4RL's `REF_MIN_SCORE`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_min_score: Option<f64>,
    /// Reference return of an expert policy (D4RL's `REF_MAX_SCORE`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_max_score: Option<f64>,
    /// Registered `max_episode_steps` of the environment, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_episode_steps: Option<u64>,
    /// Free-form extra fields kept from the source (e.g. Minari's `dataset_id`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl DatasetMeta {
    /// Metadata with the given spaces and nothing else known.
    pub fn new(observation_space: ObservationSpace, action_space: ActionSpace) -> Self {
        Self {
            format_version: FORMAT_VERSION.to_string(),
            observation_space,
            action_space,
            env_id: None,
            provenance: Provenance::default(),
            generator_policy: None,
            seed: None,
            ref_min_score: None,
            ref_max_score: None,
            max_episode_steps: None,
            extra: serde_json::Map::new(),
        }
    }

    /// `100 * (ret - ref_min) / (ref_max - ref_min)`, D4RL's normalized score, when both references are known.
    pub fn normalized_score(&self, ret: f64) -> Option<f64> {
        match (self.ref_min_score, self.ref_max_score) {
            (Some(lo), Some(hi)) if hi != lo => Some(100.0 * (ret - lo) / (hi - lo)),
            _ => None,
        }
    }
}

/// Serialises `Option<Vec<f64>>` writing infinities as the strings `"inf"`/`"-inf"` (JSON has none).
mod opt_f64_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<f64>>, s: S) -> Result<S::Ok, S::Error> {
        let conv = |x: &f64| {
            if x.is_finite() {
                Num::F(*x)
            } else if x.is_nan() {
                Num::S("nan".into())
            } else if *x > 0.0 {
                Num::S("inf".into())
            } else {
                Num::S("-inf".into())
            }
        };
        v.as_ref()
            .map(|v| v.iter().map(conv).collect::<Vec<_>>())
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<f64>>, D::Error> {
        let raw: Option<Vec<Num>> = Option::deserialize(d)?;
        raw.map(|v| {
            v.into_iter()
                .map(|n| match n {
                    Num::F(x) => Ok(x),
                    Num::S(s) => match s.as_str() {
                        "inf" | "Infinity" => Ok(f64::INFINITY),
                        "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
                        "nan" | "NaN" => Ok(f64::NAN),
                        other => Err(serde::de::Error::custom(format!("not a number: {other:?}"))),
                    },
                })
                .collect()
        })
        .transpose()
    }
}
