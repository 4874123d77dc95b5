//! Offline-RL datasets for orl.
//!
//! Overview: parse the Parquet format (see `docs/dataset-format.md`) into a columnar
//! [`Dataset`], convert D4RL/Minari/d3rlpy/npz files into it, sample named [`Batch`]es
//! from a seeded [`Replay`], and summarise a dataset in a [`Report`].
//!
//! This crate knows nothing of neural networks: it hands out plain `f32` buffers.
//!
//! ```
//! use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
//! use orl_data::{Replay, ReplayConfig, Report, WriteOptions, write_parquet};
//!
//! // Two episodes of a 1-D task: the first ends terminal, the second by a time limit.
//! let meta = DatasetMeta::new(
//!     ObservationSpace { dim: 1, low: None, high: None },
//!     ActionSpace::Discrete { n: 2 },
//! );
//! let cols = Columns {
//!     observations: vec![0.0, 1.0, 2.0, 0.0, 1.0],
//!     next_observations: vec![1.0, 2.0, 3.0, 1.0, 2.0],
//!     next_valid: None,
//!     actions: Actions::Discrete(vec![1, 1, 0, 1, 0]),
//!     rewards: vec![0.0, 0.0, 1.0, 0.0, 0.5],
//!     terminals: vec![false, false, true, false, false],
//!     timeouts: vec![false, false, false, false, true],
//!     behavior_log_prob: None,
//! };
//! let ds = Dataset::new(meta, cols, &[(0, 3), (1, 2)])?;
//!
//! // Parquet round trip.
//! let dir = tempfile::tempdir().expect("temp dir");
//! let path = dir.path().join("toy.parquet");
//! write_parquet(&ds, &path, &WriteOptions::default())?;
//! let ds = Dataset::open(&path)?;
//! assert_eq!(ds.episode_returns(), vec![1.0, 0.5]);
//!
//! // Report and seeded sampling.
//! assert_eq!(Report::new(&ds).episode_ends.terminal, 1);
//! let mut replay = Replay::new(ds, ReplayConfig::default(), 42)?;
//! let batch = replay.sample(8);
//! assert_eq!(batch.observations.len(), 8); // [B, obs_dim]
//! assert_eq!(batch.discrete_actions.len(), 8); // [B]
//! # Ok::<(), orl_data::DataError>(())
//! ```

mod buffer;
pub mod convert;
mod dataset;
mod error;
pub mod fsutil;
mod meta;
mod parquet_io;
mod replay;
pub mod report;

pub use buffer::{Transition, TransitionAction, TransitionBuffer};
pub use convert::{ConvertOptions, Format, OutputFormat};
pub use dataset::{Actions, Columns, Dataset, Episode};
pub use error::{DataError, Result};
pub use meta::{
    ActionSpace, CONVERTER_VERSION, DatasetMeta, FORMAT_VERSION, META_KEY, ObservationSpace,
    Provenance, VERSION_KEY,
};
pub use parquet_io::{
    Chunk, DatasetReader, OpenOptions, WriteOptions, arrow_schema, col, episodes_from_rows,
    from_record_batches, to_record_batch, write_parquet,
};
pub use replay::{Batch, ObsStats, Replay, ReplayConfig, RewardTransform, Sampling};
pub use report::Report;
