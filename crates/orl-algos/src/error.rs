//! Typed errors of `orl-algos`.

/// Result alias used throughout `orl-algos`.
pub type Result<T, E = AlgoError> = std::result::Result<T, E>;

/// Everything that can go wrong while training, acting, saving or loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlgoError {
    /// A network operation failed.
    #[error(transparent)]
    Net(#[from] orl_nets::NetError),
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
    /// The configuration or the data do not fit the algorithm.
    #[error("{0}")]
    Config(String),
    /// A checkpoint does not belong to this algorithm or configuration.
    #[error("checkpoint mismatch: {0}")]
    Checkpoint(String),
    /// Environment interaction failed (online SAC/DQN).
    #[error(transparent)]
    Env(#[from] orl_envs::EnvError),
}

impl From<candle_core::Error> for AlgoError {
    fn from(e: candle_core::Error) -> Self {
        AlgoError::Net(orl_nets::NetError::Candle(e))
    }
}
