//! Typed errors of `orl-nets`.

use std::path::PathBuf;

/// Result alias used throughout `orl-nets`.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Everything that can go wrong while building, running, saving or loading networks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor operation failed")]
    Candle(#[from] candle_core::Error),
    /// A checkpoint could not be read or written.
    #[error("cannot access checkpoint {path}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file is not valid safetensors, or lacks a tensor.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// File involved.
        path: PathBuf,
        /// What is wrong (names the tensor).
        reason: String,
    },
    /// Two parameters were registered under the same name.
    #[error("parameter `{0}` registered twice")]
    DuplicateParam(String),
    /// A loss or value became NaN or infinite.
    #[error("`{name}` is not finite ({value})")]
    NonFinite {
        /// Which quantity.
        name: String,
        /// Its value.
        value: f32,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}
