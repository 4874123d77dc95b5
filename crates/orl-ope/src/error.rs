//! Typed errors of `orl-ope`.

/// Result alias used throughout `orl-ope`.
pub type Result<T, E = OpeError> = std::result::Result<T, E>;

/// What can go wrong while preparing data or fitting the models of an estimate.
///
/// Problems of a single estimate that do not stop the others (all-zero weights, overflow, a
/// deterministic policy under importance sampling) are not errors: the estimate carries
/// `value: None` and a warning instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpeError {
    /// A network operation failed (shapes, device, ...).
    #[error("network operation failed")]
    Net(#[from] orl_nets::NetError),
    /// A tensor operation failed.
    #[error("tensor operation failed")]
    Candle(#[from] candle_core::Error),
    /// The policy and the dataset do not fit together (spaces, dimensions).
    #[error("policy and dataset do not match: {0}")]
    Mismatch(String),
    /// The dataset lacks something an estimator needs, or holds unusable values.
    #[error("dataset: {0}")]
    Data(String),
    /// An option is out of range or unknown.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A fitted model's loss became NaN or infinite.
    #[error("{model}: loss `{name}` is not finite at step {step}")]
    NonFinite {
        /// FQE, behaviour model or dynamics model.
        model: &'static str,
        /// Which loss.
        name: String,
        /// Update step.
        step: usize,
    },
}
