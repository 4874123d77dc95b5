//! Typed errors of `orl-algos`.

use std::path::PathBuf;

/// Result alias used throughout `orl-algos`.
pub type Result<T, E = AlgoError> = std::result::Result<T, E>;

/// Everything that can go wrong while training, acting, saving or loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlgoError {
    /// A network operation failed.
    #[error(transparent)]
    Net(#[from] orl_nets::NetError),
    /// Reading or sampling the dataset failed.
    #[error(transparent)]
    Data(#[from] orl_data::DataError),
    /// A loss became NaN or infinite: training diverged at `step`.
    #[error("training diverged at update {step}: {name} is {value}")]
    Diverged {
        /// The update that produced it.
        step: usize,
        /// Which loss.
        name: String,
        /// Its value.
        value: f32,
    },
    /// A setting (a config key or a training option) is out of its range. Raised before any
    /// work starts.
    #[error("setting `{key}` = {value}: expected {expected}")]
    Setting {
        /// The key as the user wrote it (`iql.hidden`, `batch_size`, `eval_env`, ...).
        key: String,
        /// The offending value, as text.
        value: String,
        /// What the setting accepts.
        expected: String,
    },
    /// The configuration or the data do not fit the algorithm.
    #[error("{0}")]
    Config(String),
    /// A checkpoint does not belong to this algorithm or configuration, or is malformed.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Environment interaction failed (online SAC/DQN, evaluation).
    #[error(transparent)]
    Env(#[from] orl_envs::EnvError),
}

impl AlgoError {
    /// A [`AlgoError::Setting`] error.
    pub fn setting(key: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        AlgoError::Setting {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
    /// A [`AlgoError::Checkpoint`] error about `path`.
    pub fn checkpoint(path: &std::path::Path, reason: impl Into<String>) -> Self {
        AlgoError::Checkpoint {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl From<candle_core::Error> for AlgoError {
    fn from(e: candle_core::Error) -> Self {
        AlgoError::Net(orl_nets::NetError::Candle(e))
    }
}
