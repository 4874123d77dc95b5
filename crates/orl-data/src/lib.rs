//! Offline-RL datasets for orl.
//!
//! Overview: parse the Parquet format (see `docs/dataset-format.md`) into a columnar
//! [`Dataset`], convert D4RL/Minari/d3rlpy/npz files into it, sample named [`Batch`]es
//! from a seeded [`Replay`], and summarise a dataset in a [`Report`].
//!
//! This crate knows nothing of neural networks: it hands out plain `f32` buffers.

pub mod convert;
mod dataset;
mod error;
pub mod fsutil;
mod meta;
mod parquet_io;
mod replay;
pub mod report;

pub use dataset::{Actions, Columns, Dataset, Episode};
pub use error::{DataError, Result};
pub use meta::{
    ActionSpace, CONVERTER_VERSION, DatasetMeta, FORMAT_VERSION, META_KEY, ObservationSpace, Provenance,
    VERSION_KEY,
};
pub use replay::{Batch, ObsStats, Replay, ReplayConfig, RewardTransform, Sampling};
pub use report::Report;
pub use convert::{ConvertOptions, Format, OutputFormat};
pub use parquet_io::{
    Chunk, DatasetReader, OpenOptions, WriteOptions, arrow_schema, col, episodes_from_rows, write_parquet,
};
